//! The shared backend: any number of stateless nodes on one PostgreSQL
//! database. Message intake is group-committed like on SQLite (concurrent
//! accepts share a transaction of multi-row inserts); wake-ups and cache
//! invalidations travel between nodes with `LISTEN/NOTIFY`.

mod apps;
mod attempts;
mod broker_sources;
mod cluster;
mod deliveries;
mod endpoints;
mod event_types;
mod listen;
mod messages;
#[cfg(feature = "testing")]
mod scratch;
mod settings;
mod sources;
mod tls;
mod tokens;

use crate::query::{self, Arg, Dialect, Query};
use crate::rows::*;
use crate::*;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use messages::{AcceptJob, run_accepts};
use std::sync::Arc;
use std::time::Duration;
use switchyard_core::sealing::Keyring;
use tokio::sync::{broadcast, mpsc};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

#[cfg(feature = "testing")]
pub use scratch::{ScratchDatabase, test_database, test_server_url};

/// Schema steps in order; `switchyard_schema` records those applied.
const MIGRATIONS: [&str; 12] = [
    include_str!("schema.sql"),
    include_str!("schema2.sql"),
    include_str!("schema3.sql"),
    include_str!("schema4.sql"),
    include_str!("schema5.sql"),
    include_str!("schema6.sql"),
    include_str!("schema7.sql"),
    include_str!("schema8.sql"),
    include_str!("schema9.sql"),
    include_str!("schema10.sql"),
    include_str!("schema11.sql"),
    include_str!("schema12.sql"),
];

const SCHEMA_VERSION: i32 = MIGRATIONS.len() as i32;

/// Any constant shared by all nodes: serialises migrations across them.
const MIGRATION_LOCK: i64 = 0x5357_5943_4844;

/// The channel every node listens on.
const CHANNEL: &str = "switchyard";

/// Batched statements join a few hundred keys against tables of millions of
/// rows. Before statistics exist (a new database) or when they are stale, the
/// planner may pick a hash join over a full scan, whose cost grows with the
/// table; per-key index lookups are always right here, for every statement
/// of ours, so this is set for the whole session. JIT is off: short statements gain nothing from it, and the cost penalty of
/// a disabled plan type would otherwise make every such plan look worth compiling.
const INDEX_JOINS_ONLY: &str =
    "-c enable_hashjoin=off -c enable_mergejoin=off -c enable_seqscan=off -c jit=off";

#[derive(Debug, Clone)]
pub struct PgOptions {
    pub url: String,
    pub pool_size: usize,
    /// How long a request waits for a connection (or to connect) before the
    /// database counts as unavailable.
    pub connect_timeout: Duration,
}

impl PgOptions {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            pool_size: 16,
            connect_timeout: Duration::from_secs(5),
        }
    }
}

#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
    accepts: mpsc::UnboundedSender<AcceptJob>,
    events: broadcast::Sender<ClusterEvent>,
    _listener: Arc<AbortOnDrop>,
    /// Seals and opens the secret columns (`rows::SEALED`).
    keys: Arc<Keyring>,
}

struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl PgStore {
    /// Connects, migrates (once across concurrently starting nodes) and
    /// starts listening for other nodes' events.
    pub async fn connect(options: &PgOptions) -> Result<Self> {
        let (mut config, tls) = tls::parse(&options.url)?;
        config.connect_timeout(options.connect_timeout);
        if config.get_application_name().is_none() {
            config.application_name("switchyard");
        }
        let session = match config.get_options() {
            Some(own) => format!("{own} {INDEX_JOINS_ONLY}"),
            None => INDEX_JOINS_ONLY.to_owned(),
        };
        config.options(&session);
        let manager = Manager::from_config(
            config.clone(),
            tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(2))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(options.connect_timeout))
            .create_timeout(Some(options.connect_timeout))
            .recycle_timeout(Some(options.connect_timeout))
            .build()
            .map_err(|e| StoreError::Unavailable(format!("database pool: {e}")))?;
        migrate(&pool).await?;
        let (events, _) = broadcast::channel(1024);
        let listener = tokio::spawn(listen::run(config, tls, events.clone()));
        let (accepts, jobs) = mpsc::unbounded_channel();
        tokio::spawn(run_accepts(pool.clone(), jobs));
        Ok(Self {
            pool,
            accepts,
            events,
            _listener: Arc::new(AbortOnDrop(listener.abort_handle())),
            keys: Arc::new(Keyring::plain()),
        })
    }

    /// Seals secrets with `keys` from now on (see [`Keyring`]); without
    /// this they are stored plain.
    pub fn with_keyring(mut self, keys: Arc<Keyring>) -> Self {
        self.keys = keys;
        self
    }

    async fn client(&self) -> Result<deadpool_postgres::Object> {
        Ok(self.pool.get().await?)
    }
}

async fn migrate(pool: &Pool) -> Result<()> {
    let client = pool.get().await?;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let result = async {
        client
            .batch_execute("CREATE TABLE IF NOT EXISTS switchyard_schema (version INTEGER NOT NULL)")
            .await?;
        let version: i32 = client
            .query_one(
                "SELECT COALESCE(MAX(version), 0) FROM switchyard_schema",
                &[],
            )
            .await?
            .try_get(0)?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::Database(format!(
                "the database has schema version {version}, newer than this binary ({SCHEMA_VERSION})"
            )));
        }
        for (done, step) in (1..).zip(MIGRATIONS).skip(usize::try_from(version).unwrap_or(0)) {
            client
                .batch_execute(&format!(
                    "BEGIN; {step} INSERT INTO switchyard_schema (version) VALUES ({done}); COMMIT;"
                ))
                .await?;
        }
        Ok(())
    }
    .await;
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await?;
    result
}

// ---- row mapping -----------------------------------------------------------

impl Columns for Row {
    fn opt_text(&self, column: &str) -> Result<Option<String>> {
        Ok(self.try_get(column)?)
    }

    fn opt_bytes(&self, column: &str) -> Result<Option<bytes::Bytes>> {
        Ok(self
            .try_get::<_, Option<Vec<u8>>>(column)?
            .map(bytes::Bytes::from))
    }

    fn flag(&self, column: &str) -> Result<bool> {
        Ok(self.try_get(column)?)
    }

    fn opt_int(&self, column: &str) -> Result<Option<i64>> {
        use tokio_postgres::types::Type;
        let kind = self
            .columns()
            .iter()
            .find(|c| c.name() == column)
            .map(|c| c.type_().clone())
            .ok_or_else(|| StoreError::Corrupt(format!("no column {column}")))?;
        Ok(match kind {
            Type::INT2 => self.try_get::<_, Option<i16>>(column)?.map(i64::from),
            Type::INT4 => self.try_get::<_, Option<i32>>(column)?.map(i64::from),
            _ => self.try_get::<_, Option<i64>>(column)?,
        })
    }
}

fn unique_violation(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION)
}

fn conflict_or(what: &str) -> impl FnOnce(tokio_postgres::Error) -> StoreError + '_ {
    move |e| {
        if unique_violation(&e) {
            StoreError::Conflict(what.into())
        } else {
            e.into()
        }
    }
}

/// PostgreSQL's way with the shared listings: `$N` placeholders, arrays and
/// `jsonb`.
pub(crate) struct Postgres;

impl Dialect for Postgres {
    fn placeholder(n: usize) -> String {
        format!("${n}")
    }

    fn one_of(q: &mut Query<Self>, column: &str, values: &[String]) {
        let p = q.bind(Arg::TextArray(values.to_vec()));
        q.push(&format!(" AND {column} = ANY({p})"));
    }

    fn json_array_has(q: &mut Query<Self>, column: &str, value: &str) {
        let p = q.bind(Arg::Text(value.to_owned()));
        q.push(&format!(" AND {column}::jsonb ? {p}"));
    }
}

/// A shared listing's argument as the driver takes it.
fn pg_arg(arg: &Arg) -> &(dyn ToSql + Sync) {
    match arg {
        Arg::Text(v) => v,
        Arg::Int2(v) => v,
        Arg::Int8(v) => v,
        Arg::TextArray(v) => v,
    }
}

impl PgStore {
    /// Runs one of the shared listings.
    async fn list<T>(&self, q: Query<Postgres>, map: impl Fn(&Row) -> Result<T>) -> Result<Vec<T>> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(q.sql()).await?;
        let args: Vec<&(dyn ToSql + Sync)> = q.args().iter().map(pg_arg).collect();
        client.query(&stmt, &args).await?.iter().map(map).collect()
    }
}

/// At most one row of a cached statement, as a record.
async fn fetch_one<T>(
    client: &impl deadpool_postgres::GenericClient,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
    map: impl Fn(&Row) -> Result<T>,
) -> Result<Option<T>> {
    let stmt = client.prepare_cached(sql).await?;
    client
        .query_opt(&stmt, params)
        .await?
        .map(|r| map(&r))
        .transpose()
}

fn partitions_param(partitions: &[u16]) -> Vec<i32> {
    partitions.iter().map(|&p| i32::from(p)).collect()
}

fn partitions_of(rows: &[Row]) -> Result<Vec<u16>> {
    rows.iter()
        .map(|r| {
            let p: i32 = r.try_get(0)?;
            u16::try_from(p).map_err(|_| StoreError::Corrupt(format!("partition {p}")))
        })
        .collect()
}

/// `postgres host/dbname` for a database URL, without credentials, for logs
/// and error messages.
pub fn describe_url(url: &str) -> String {
    match tls::settings(url) {
        Ok((config, _, _)) => format!(
            "postgres {}/{}",
            match config.get_hosts().first() {
                Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
                Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
                None => "localhost".into(),
            },
            config.get_dbname().unwrap_or("")
        ),
        Err(_) => "postgres (invalid URL)".into(),
    }
}
