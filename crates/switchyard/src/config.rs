//! Settings from flags, `SWITCHYARD_*` variables and an optional TOML file,
//! in that order of precedence.

use anyhow::{Context, bail};
use clap::Args;
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use switchyard_core::netguard::NetworkPolicy;
use switchyard_core::retry::RetrySchedule;
use switchyard_core::sealing::Keyring;
use switchyard_core::signing::SignatureScheme;
use switchyard_engine::broker_intake::BrokerKinds;
use switchyard_store::sqlite::Durability;

#[derive(Args, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeArgs {
    /// TOML file with any of the settings below (keys in snake_case).
    #[arg(long, env = "SWITCHYARD_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8071].
    #[arg(long, env = "SWITCHYARD_LISTEN")]
    pub listen: Option<String>,
    /// Directory holding the SQLite database [default: ./data].
    #[arg(long, env = "SWITCHYARD_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Admin API token; when unset one is generated on first start.
    #[arg(long, env = "SWITCHYARD_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Internal networks deliveries may reach, comma-separated CIDRs.
    #[arg(long, env = "SWITCHYARD_ALLOWED_NETWORKS")]
    pub allowed_networks: Option<String>,
    /// Delays between attempts, e.g. "5s,5m,30m,2h,5h,10h,10h" or seconds "1,1,1".
    #[arg(long, env = "SWITCHYARD_RETRY_SCHEDULE")]
    pub retry_schedule: Option<String>,
    /// Per-attempt timeout in seconds [default: 15].
    #[arg(long, env = "SWITCHYARD_REQUEST_TIMEOUT_SECS")]
    pub request_timeout_secs: Option<u64>,
    /// Largest accepted request body in bytes [default: 1048576].
    #[arg(long, env = "SWITCHYARD_MAX_PAYLOAD_BYTES")]
    pub max_payload_bytes: Option<usize>,
    /// Open connections per destination host [default: 64].
    #[arg(long, env = "SWITCHYARD_MAX_CONNECTIONS_PER_HOST")]
    pub max_connections_per_host: Option<usize>,
    /// "normal" (survives process crashes) or "full" (fsync every commit) [default: normal].
    #[arg(long, env = "SWITCHYARD_DURABILITY")]
    pub durability: Option<String>,
    /// PostgreSQL URL (postgres://user@host:port/db); when set, used instead
    /// of SQLite, and several nodes may share the database.
    #[arg(long, env = "SWITCHYARD_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Connections this node keeps to PostgreSQL [default: 16].
    #[arg(long, env = "SWITCHYARD_DATABASE_POOL_SIZE")]
    pub database_pool_size: Option<usize>,
    /// This node's id, stable across restarts [default: <hostname>-<port>].
    #[arg(long, env = "SWITCHYARD_NODE_ID")]
    pub node_id: Option<String>,
    /// Seconds after which a silent node's partitions are taken over [default: 10].
    #[arg(long, env = "SWITCHYARD_LEASE_TTL_SECS")]
    pub lease_ttl_secs: Option<u64>,
    /// The URL providers reach this server at, for ingest URLs and for
    /// schemes that sign the URL (Twilio) [default: http://<listen>].
    #[arg(long, env = "SWITCHYARD_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Days messages, their attempts and their event-id deduplication are
    /// kept once delivered or failed; 0 keeps them forever [default: 90].
    #[arg(long, env = "SWITCHYARD_RETENTION_DAYS")]
    pub retention_days: Option<u64>,
    /// Seconds an endpoint may fail without a single success before it is
    /// disabled; 0 never disables [default: 432000, 5 days].
    #[arg(long, env = "SWITCHYARD_AUTO_DISABLE_AFTER_SECS")]
    pub auto_disable_after_secs: Option<u64>,
    /// Deliver only to https URLs: http endpoints are refused when created
    /// and not sent to [default: false].
    #[arg(long, env = "SWITCHYARD_HTTPS_ONLY", num_args = 0..=1, default_missing_value = "true")]
    pub https_only: Option<bool>,
    /// Endpoints an application may have [default: 1000].
    #[arg(long, env = "SWITCHYARD_MAX_ENDPOINTS_PER_APP")]
    pub max_endpoints_per_app: Option<usize>,
    /// Keys that encrypt secrets at rest (endpoint secrets, source
    /// secrets and tokens): base64 of 32 bytes each, comma-separated, the
    /// current key first and older ones after it. Unset stores them plain.
    /// `switchyard generate-encryption-key` makes one.
    #[arg(long, env = "SWITCHYARD_ENCRYPTION_KEY", hide_env_values = true)]
    pub encryption_key: Option<String>,
    /// Signatures of endpoints created without a secret: "hmac" (Standard
    /// Webhooks v1, whsec_ secrets) or "ed25519" (v1a, whsk_ keys whose
    /// whpk_ public key the API shows) [default: hmac].
    #[arg(long, env = "SWITCHYARD_SIGNATURE_SCHEME")]
    pub signature_scheme: Option<String>,
    /// A PEM file of CA certificates that deliveries and OAuth token
    /// requests trust besides the built-in Mozilla roots (an internal CA).
    #[arg(long, env = "SWITCHYARD_DELIVERY_CA_FILE")]
    pub delivery_ca_file: Option<PathBuf>,
    /// An HTTP proxy every delivery and token request goes through,
    /// `http://[user:password@]host:port`. Switchyard still resolves each
    /// endpoint's name and applies the SSRF guard, then asks the proxy to
    /// CONNECT to the address it allowed.
    #[arg(long, env = "SWITCHYARD_EGRESS_PROXY", hide_env_values = true)]
    pub egress_proxy: Option<String>,
    /// Broker sources, declared in the TOML file only (`[[broker_sources]]`).
    #[arg(skip)]
    #[serde(default)]
    pub broker_sources: Vec<BrokerSourceFile>,
}

/// A broker source declared in the TOML file: messages written to the
/// broker are accepted as `POST /msg` would accept them (see
/// `switchyard_core::envelope` for their shape).
///
/// ```toml
/// [[broker_sources]]
/// name = "orders"
/// app = "shop"            # optional: else each message names its app
/// batch_size = 100        # optional: messages taken at once [default: 100]
/// broker = { type = "redis", url = "redis://127.0.0.1:6379", stream = "orders", group = "switchyard" }
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerSourceFile {
    pub name: String,
    #[serde(default)]
    pub app: Option<String>,
    #[serde(default)]
    pub batch_size: Option<usize>,
    /// The broker's `type` and settings, in snake_case here and camelCase
    /// in the API (`dead_letter_stream` is `deadLetterStream`).
    pub broker: toml::Table,
}

/// A TOML table's keys in camelCase, at every depth: the API's spelling
/// of the same settings.
fn camel_case_keys(value: toml::Value) -> serde_json::Value {
    match value {
        toml::Value::Table(t) => serde_json::Value::Object(
            t.into_iter()
                .map(|(k, v)| {
                    let mut camel = String::with_capacity(k.len());
                    let mut upper = false;
                    for c in k.chars() {
                        if c == '_' {
                            upper = true;
                        } else if upper {
                            camel.extend(c.to_uppercase());
                            upper = false;
                        } else {
                            camel.push(c);
                        }
                    }
                    (camel, camel_case_keys(v))
                })
                .collect(),
        ),
        toml::Value::Array(a) => a.into_iter().map(camel_case_keys).collect(),
        toml::Value::String(s) => s.into(),
        toml::Value::Integer(i) => i.into(),
        toml::Value::Float(f) => f.into(),
        toml::Value::Boolean(b) => b.into(),
        toml::Value::Datetime(d) => d.to_string().into(),
    }
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: String,
    pub data_dir: PathBuf,
    pub admin_token: Option<String>,
    pub network_policy: NetworkPolicy,
    pub retry_schedule: RetrySchedule,
    pub request_timeout: Duration,
    pub max_payload_bytes: usize,
    pub max_connections_per_host: usize,
    pub durability: Durability,
    pub database_url: Option<String>,
    // Read by the PostgreSQL backend only.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub database_pool_size: usize,
    pub node_id: Option<String>,
    pub lease_ttl: Duration,
    /// Without a trailing slash.
    pub public_url: Option<String>,
    /// `None` keeps messages forever.
    pub retention: Option<Duration>,
    pub auto_disable_after: Option<Duration>,
    pub max_endpoints_per_app: usize,
    pub https_only: bool,
    /// Seals secrets at rest; empty when no key is configured.
    pub keyring: Arc<Keyring>,
    pub signature_scheme: SignatureScheme,
    /// The PEM text of `delivery_ca_file`, checked.
    pub delivery_ca_pem: Option<String>,
    pub egress_proxy: Option<switchyard_engine::ProxyConfig>,
    /// Checked, with each broker's settings in the API's spelling; the
    /// name is the uid.
    pub broker_sources: Vec<switchyard_engine::BrokerSourceInput>,
}

impl Settings {
    pub fn load(args: ServeArgs) -> anyhow::Result<Self> {
        let file: ServeArgs = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading config file {}", path.display()))?;
                toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?
            }
            None => ServeArgs::default(),
        };
        macro_rules! pick {
            ($field:ident) => {
                args.$field.or(file.$field)
            };
        }
        let network_policy = match pick!(allowed_networks) {
            Some(list) => {
                NetworkPolicy::parse(&list).map_err(|e| anyhow::anyhow!("allowed_networks: {e}"))?
            }
            None => NetworkPolicy::default(),
        };
        let retry_schedule = match pick!(retry_schedule) {
            Some(s) => {
                RetrySchedule::parse(&s).map_err(|e| anyhow::anyhow!("retry_schedule: {e}"))?
            }
            None => RetrySchedule::default(),
        };
        let durability = match pick!(durability).as_deref() {
            None | Some("normal") => Durability::Normal,
            Some("full") => Durability::Full,
            Some(other) => bail!("durability: '{other}' is not 'normal' or 'full'"),
        };
        let max_payload_bytes = pick!(max_payload_bytes).unwrap_or(1 << 20);
        if max_payload_bytes == 0 {
            bail!("max_payload_bytes must be positive");
        }
        let lease_ttl_secs = pick!(lease_ttl_secs).unwrap_or(10);
        if lease_ttl_secs == 0 {
            bail!("lease_ttl_secs must be positive");
        }
        let node_id = pick!(node_id).filter(|n| !n.is_empty());
        if let Some(id) = &node_id
            && (id.len() > 128 || id.chars().any(|c| c.is_control() || c == ':'))
        {
            bail!("node_id must be at most 128 characters, without ':' or control characters");
        }
        let public_url = pick!(public_url)
            .filter(|u| !u.is_empty())
            .map(|u| u.trim_end_matches('/').to_owned());
        if let Some(u) = &public_url
            && !(u.starts_with("http://") || u.starts_with("https://"))
        {
            bail!("public_url must start with http:// or https://");
        }
        let retention = match pick!(retention_days).unwrap_or(90) {
            0 => None,
            days if days > 100 * 365 => {
                bail!("retention_days must be at most 36500 (0 keeps forever)")
            }
            days => Some(Duration::from_secs(days * 86_400)),
        };
        let auto_disable_after = match pick!(auto_disable_after_secs).unwrap_or(5 * 86_400) {
            0 => None,
            secs if secs > 365 * 86_400 => {
                bail!("auto_disable_after_secs must be at most 31536000 (0 never disables)")
            }
            secs => Some(Duration::from_secs(secs)),
        };
        let max_endpoints_per_app = pick!(max_endpoints_per_app)
            .unwrap_or(switchyard_engine::limits::DEFAULT_MAX_ENDPOINTS_PER_APP);
        if !(1..=1_000_000).contains(&max_endpoints_per_app) {
            bail!("max_endpoints_per_app must be 1 to 1000000");
        }
        let keyring = Keyring::parse(pick!(encryption_key).as_deref().unwrap_or(""))
            .map_err(|e| anyhow::anyhow!("encryption_key: {e}"))?;
        let signature_scheme = match pick!(signature_scheme).as_deref() {
            None | Some("hmac") => SignatureScheme::Hmac,
            Some("ed25519") => SignatureScheme::Ed25519,
            Some(other) => bail!("signature_scheme: '{other}' is not 'hmac' or 'ed25519'"),
        };
        let delivery_ca_pem = match pick!(delivery_ca_file) {
            None => None,
            Some(path) => {
                let pem = std::fs::read_to_string(&path)
                    .with_context(|| format!("reading delivery_ca_file {}", path.display()))?;
                switchyard_engine::check_ca_bundle(&pem)
                    .map_err(|e| anyhow::anyhow!("delivery_ca_file {}: {e}", path.display()))?;
                Some(pem)
            }
        };
        let egress_proxy = pick!(egress_proxy)
            .filter(|p| !p.is_empty())
            .map(|p| switchyard_engine::ProxyConfig::parse(&p))
            .transpose()
            .map_err(|e| anyhow::anyhow!("egress_proxy: {e}"))?;
        let mut broker_sources = Vec::new();
        let mut names = std::collections::HashSet::new();
        let mut reads = std::collections::HashSet::new();
        for source in file.broker_sources {
            let name = source.name;
            if name.is_empty() {
                bail!("broker_sources: a source has an empty name");
            }
            if !names.insert(name.clone()) {
                bail!("broker_sources: the name '{name}' is used twice");
            }
            let broker = camel_case_keys(toml::Value::Table(source.broker));
            let kinds = switchyard_brokers::Kinds;
            kinds
                .check(&broker)
                .map_err(|e| anyhow::anyhow!("broker_sources '{name}': broker.{e}"))?;
            // One node is one consumer: two sources reading the same queue
            // or group would take each other's messages.
            let what = kinds
                .reads(&broker)
                .map_err(|e| anyhow::anyhow!("broker_sources '{name}': broker.{e}"))?;
            if !reads.insert(what) {
                bail!("broker_sources '{name}': another source already reads what it reads");
            }
            let batch_size = source.batch_size.unwrap_or(100);
            if !(1..=1000).contains(&batch_size) {
                bail!("broker_sources '{name}': batch_size must be 1 to 1000");
            }
            // The name is the source's uid in the API.
            switchyard_engine::parse_uid("name", Some(name.clone()))
                .map_err(|e| anyhow::anyhow!("broker_sources '{name}': {e}"))?;
            broker_sources.push(switchyard_engine::BrokerSourceInput {
                name: name.clone(),
                uid: Some(name),
                app: source.app,
                batch_size: Some(batch_size as u32),
                paused: None,
                broker,
                metadata: None,
            });
        }
        Ok(Self {
            broker_sources,
            delivery_ca_pem,
            egress_proxy,
            keyring: Arc::new(keyring),
            signature_scheme,
            retention,
            auto_disable_after,
            max_endpoints_per_app,
            https_only: pick!(https_only).unwrap_or(false),
            public_url,
            database_url: pick!(database_url).filter(|u| !u.is_empty()),
            database_pool_size: pick!(database_pool_size).unwrap_or(16).max(2),
            node_id,
            lease_ttl: Duration::from_secs(lease_ttl_secs),
            listen: pick!(listen).unwrap_or_else(|| "127.0.0.1:8071".into()),
            data_dir: pick!(data_dir).unwrap_or_else(|| PathBuf::from("data")),
            admin_token: pick!(admin_token).filter(|t| !t.is_empty()),
            network_policy,
            retry_schedule,
            request_timeout: Duration::from_secs(pick!(request_timeout_secs).unwrap_or(15).max(1)),
            max_payload_bytes,
            max_connections_per_host: pick!(max_connections_per_host).unwrap_or(64).max(1),
            durability,
        })
    }

    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("switchyard.db")
    }

    /// The database for messages, without any password in it.
    pub fn database_name(&self) -> String {
        match &self.database_url {
            #[cfg(feature = "postgres")]
            Some(url) => switchyard_store::postgres::describe_url(url),
            #[cfg(not(feature = "postgres"))]
            Some(_) => "postgres (not supported by this build)".into(),
            None => self.database_path().display().to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_retention(days: Option<u64>) -> anyhow::Result<Settings> {
        Settings::load(ServeArgs {
            retention_days: days,
            ..ServeArgs::default()
        })
    }

    #[test]
    fn retention_defaults_to_ninety_days_and_zero_keeps_everything() {
        let day = Duration::from_secs(86_400);
        assert_eq!(with_retention(None).unwrap().retention, Some(90 * day));
        assert_eq!(with_retention(Some(7)).unwrap().retention, Some(7 * day));
        assert_eq!(with_retention(Some(0)).unwrap().retention, None);
        assert!(with_retention(Some(u64::MAX)).is_err());
    }
}
