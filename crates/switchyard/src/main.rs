//! The `switchyard` binary: CLI, configuration and wiring.

mod config;
mod listen;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::Context;
use axum::ServiceExt;
use clap::{Parser, Subcommand};
use config::{ServeArgs, Settings};
use std::sync::Arc;
use std::time::Duration;
use switchyard_api::{AppState, normalize_path, router};
use switchyard_core::sealing::Keyring;
use switchyard_engine::admin::{admin_token, rotate_admin_token};
use switchyard_engine::encryption::{EncryptionState, check_encryption, reseal_secrets};
use switchyard_engine::{ClusterConfig, Engine, EngineConfig};
use switchyard_store::Store;
#[cfg(feature = "postgres")]
use switchyard_store::postgres::{PgOptions, PgStore};
use switchyard_store::sqlite::SqliteStore;
use tower::Layer;

#[derive(Parser)]
#[command(name = "switchyard", version, about = "Webhook gateway")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve(ServeArgs),
    /// Create or upgrade the database schema, then exit.
    Migrate(ServeArgs),
    /// Replace the stored admin token with a new one and print it.
    RotateToken(ServeArgs),
    /// Encrypt every stored secret with the first key of
    /// SWITCHYARD_ENCRYPTION_KEY (the older keys after it still decrypt),
    /// then exit; afterwards the older keys may be removed. On SQLite, stop
    /// the server first.
    ResealSecrets(ServeArgs),
    /// Print a new random key for SWITCHYARD_ENCRYPTION_KEY.
    GenerateEncryptionKey,
    /// Receive webhooks on 127.0.0.1 and print each one, checking its
    /// signature when given the endpoint's secret (for trying things out).
    Listen(listen::ListenArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // tokio-postgres logs every statement's parameters at debug level, and
    // they include secrets (plain ones without an encryption key): its
    // debug output is off unless RUST_LOG names it.
    let mut filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    if !std::env::var("RUST_LOG").is_ok_and(|v| v.contains("tokio_postgres"))
        && let Ok(quiet) = "tokio_postgres=info".parse()
    {
        filter = filter.add_directive(quiet);
    }
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, never in log files.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve(Settings::load(args)?).await,
            Command::Listen(args) => listen::listen(args).await,
            Command::Migrate(args) => {
                let settings = Settings::load(args)?;
                open_store(&settings).await?;
                println!("database at {} is up to date", settings.database_name());
                Ok(())
            }
            Command::RotateToken(args) => {
                let settings = Settings::load(args)?;
                let store = open_store(&settings).await?;
                println!("{}", rotate_admin_token(store.as_ref()).await?);
                Ok(())
            }
            Command::ResealSecrets(args) => {
                let settings = Settings::load(args)?;
                let store = open_store(&settings).await?;
                let changed = reseal_secrets(store.as_ref(), &settings.keyring).await?;
                println!(
                    "{changed} secret values re-encrypted with key {}; the older keys may now be removed",
                    settings.keyring.current_key_id().unwrap_or("none")
                );
                Ok(())
            }
            Command::GenerateEncryptionKey => {
                println!("{}", Keyring::generate_key());
                Ok(())
            }
        }
    })
}

/// PostgreSQL when a database URL is set, else the embedded SQLite file;
/// either way migrated to this binary's schema.
async fn open_store(settings: &Settings) -> anyhow::Result<Arc<dyn Store>> {
    if let Some(url) = &settings.database_url {
        return open_postgres(url, settings).await;
    }
    std::fs::create_dir_all(&settings.data_dir)
        .with_context(|| format!("creating data directory {}", settings.data_dir.display()))?;
    let store = SqliteStore::open(settings.database_path(), settings.durability)
        .with_context(|| format!("opening {}", settings.database_path().display()))?
        .with_keyring(settings.keyring.clone());
    Ok(Arc::new(store))
}

#[cfg(feature = "postgres")]
async fn open_postgres(url: &str, settings: &Settings) -> anyhow::Result<Arc<dyn Store>> {
    let store = PgStore::connect(&PgOptions {
        pool_size: settings.database_pool_size,
        ..PgOptions::new(url)
    })
    .await
    .with_context(|| format!("opening {}", settings.database_name()))?
    .with_keyring(settings.keyring.clone());
    Ok(Arc::new(store))
}

/// A build without the `postgres` feature refuses a database URL rather
/// than quietly using SQLite: nodes meant to share one database would each
/// keep their own.
#[cfg(not(feature = "postgres"))]
async fn open_postgres(_url: &str, _settings: &Settings) -> anyhow::Result<Arc<dyn Store>> {
    anyhow::bail!(
        "a PostgreSQL database URL is set (--database-url or SWITCHYARD_DATABASE_URL), \
         but this switchyard was built without PostgreSQL support; rebuild it with the \
         cargo feature `postgres` (on by default), or unset the URL to use the embedded \
         SQLite database"
    )
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    // Signals are caught from the start: a SIGTERM while the engine starts
    // (it already holds leases by then) still ends with a hand-over.
    let stop = shutdown_signal()?;
    let store = open_store(&settings).await?;
    match check_encryption(store.as_ref(), &settings.keyring).await? {
        EncryptionState::Plain => tracing::warn!(
            "secrets are stored unencrypted: set SWITCHYARD_ENCRYPTION_KEY (see `switchyard generate-encryption-key`) to encrypt them at rest"
        ),
        EncryptionState::Sealing { reseal_pending } => tracing::info!(
            key = settings.keyring.current_key_id().unwrap_or_default(),
            reseal_pending,
            "secrets are encrypted at rest{}",
            if reseal_pending {
                "; secrets stored before this key stay as they were until `switchyard reseal-secrets` runs"
            } else {
                ""
            }
        ),
    }
    let admin = admin_token(store.as_ref(), settings.admin_token.as_deref()).await?;
    if let Some(token) = &admin.generated {
        println!("Generated admin token (shown once, stored hashed): {token}");
    }
    let listener = tokio::net::TcpListener::bind(&settings.listen)
        .await
        .with_context(|| format!("binding {}", settings.listen))?;
    let addr = listener.local_addr()?;
    let node_id = settings
        .node_id
        .clone()
        .unwrap_or_else(|| format!("{}-{}", hostname(), addr.port()));
    let engine = Engine::start(
        store.clone(),
        EngineConfig {
            retry_schedule: settings.retry_schedule.clone(),
            network_policy: settings.network_policy.clone(),
            request_timeout: settings.request_timeout,
            max_connections_per_host: settings.max_connections_per_host,
            cluster: ClusterConfig {
                node_id: node_id.clone(),
                address: addr.to_string(),
                lease_ttl: settings.lease_ttl,
            },
            retention: settings.retention,
            auto_disable_after: settings.auto_disable_after,
            max_endpoints_per_app: settings.max_endpoints_per_app,
            https_only: settings.https_only,
            signature_scheme: settings.signature_scheme,
            delivery_ca_pem: settings.delivery_ca_pem.clone(),
            egress_proxy: settings.egress_proxy.clone(),
            max_payload_bytes: settings.max_payload_bytes,
            destinations: switchyard_brokers::destinations::all(),
            ..EngineConfig::default()
        },
    )
    .await?;
    let (stop_sources, sources_stop) = tokio::sync::watch::channel(false);
    engine.register_broker_kinds(Arc::new(switchyard_brokers::Kinds));
    for source in &settings.broker_sources {
        let uid = source.uid.clone().unwrap_or_default();
        engine
            .declare_broker_source(&uid, source.clone())
            .await
            .with_context(|| format!("broker_sources '{uid}'"))?;
    }
    let mut supervisor = tokio::spawn(switchyard_engine::supervise_broker_sources(
        engine.clone(),
        node_id.clone(),
        sources_stop.clone(),
    ));
    let app = router(AppState {
        engine: engine.clone(),
        admin_token_sha256: admin.sha256,
        max_body_bytes: settings.max_payload_bytes,
        public_url: settings.public_url.clone().map(Into::into),
    });
    let app = tower::util::MapRequestLayer::new(normalize_path).layer(app);
    println!("switchyard listening on http://{addr}");
    tracing::info!(%addr, node = %node_id, database = %settings.database_name(), admin_token = admin.origin, "switchyard started");
    axum::serve(
        listener,
        ServiceExt::<axum::extract::Request>::into_make_service(app),
    )
    .with_graceful_shutdown(stop)
    .await?;
    // Sources stop reading; what they took is committed or left unacknowledged.
    let _ = stop_sources.send(true);
    if tokio::time::timeout(std::time::Duration::from_secs(10), &mut supervisor)
        .await
        .is_err()
    {
        supervisor.abort();
        tracing::warn!(
            "broker sources did not stop within 10 s; what they read and did not settle comes back from the broker"
        );
    }
    engine.flush_counters().await;
    if let Err(e) = engine.leave().await {
        tracing::warn!(error = %e, "could not hand partitions over; others take them when the leases expire");
    }
    Ok(())
}

/// The machine's name, for a node id that stays the same across restarts.
fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".into())
}

/// How long in-flight requests may run after a stop signal before the process
/// exits anyway. Exiting then is as safe as a crash (nothing acknowledged is
/// lost; leases expire and others take the partitions over).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Starts, on its own OS thread (so it fires even if every runtime worker is
/// busy), the deadline after which a stopping process exits.
fn start_shutdown_deadline() {
    let spawned = std::thread::Builder::new()
        .name("shutdown-deadline".into())
        .spawn(|| {
            std::thread::sleep(SHUTDOWN_GRACE);
            tracing::warn!(
                grace_secs = SHUTDOWN_GRACE.as_secs(),
                "requests still running after the shutdown grace period; exiting without waiting for them"
            );
            std::process::exit(1);
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "could not start the shutdown deadline");
    }
}

/// Resolves on SIGINT or SIGTERM, and starts the [`SHUTDOWN_GRACE`] deadline
/// then. The handlers are installed by this call, not when the future is
/// first polled.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate =
            signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
        let mut interrupt = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
        Ok(async move {
            tokio::select! {
                _ = terminate.recv() => {},
                _ = interrupt.recv() => {},
            }
            tracing::info!("shutting down");
            start_shutdown_deadline();
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("shutting down");
            start_shutdown_deadline();
        })
    }
}
