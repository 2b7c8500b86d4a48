//! Redis Streams as a destination: each attempt adds one entry to a stream.
//!
//! URL: `redis://host[:port][/db]?stream=<name>[&maxlen=<n>]`, or `rediss://`
//! for TLS (port 6379 when absent, database 0 when absent). `stream` is
//! required (1 to [`MAX_STREAM_BYTES`] bytes, percent-encoded as any query
//! value); `maxlen` (1 to [`MAX_MAXLEN`]) trims the stream to about that
//! many entries as entries are added (`MAXLEN ~`). Nothing else may be in
//! the query, so a misspelt parameter is refused rather than ignored.
//!
//! Each attempt runs `XADD <stream> [MAXLEN ~ n] * body <payload>
//! webhook-id <id> webhook-timestamp <ts> webhook-signature <sigs>
//! content-type <type>` followed by the endpoint's custom headers (and an
//! ingested request's forwarded headers) as fields, names in lowercase.
//! Consumers verify the Standard Webhooks signature over
//! `webhook-id.webhook-timestamp.body` as an HTTP receiver would, and dedupe
//! on `webhook-id`. Success is status 200 with the entry id as the response
//! body; no answer (refused by the network policy, unreachable, timed out,
//! an error reply such as `WRONGTYPE`) is status 0 with the reason, so the
//! retry schedule and the circuit breaker treat it as any failed delivery.
//!
//! Credentials are never in the URL (every endpoint read shows it): the
//! endpoint's `http-auth` basic username and password are sent with
//! `AUTH` (an empty username authenticates as the default user).
//! Connections are made through the engine's [`Egress`] (network policy,
//! timeout, TLS roots, egress proxy) and kept per server and credentials,
//! at most [`MAX_SERVERS`] of them; one that fails is dropped and the next
//! attempt connects again.

use redis::aio::MultiplexedConnection;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;
use switchyard_core::endpoint_auth::{EndpointAuth, HttpAuth};
use switchyard_engine::destination::{
    Delivery, Destination, Egress, Scheme, SendFuture, SendResult,
};

/// The schemes this destination serves: `redis` (plain) and `rediss` (TLS).
pub const SCHEMES: &[Scheme] = &[Scheme::plain("redis"), Scheme::tls("rediss")];

/// Longest stream name, in bytes.
pub const MAX_STREAM_BYTES: usize = 1024;
/// Largest `maxlen`.
pub const MAX_MAXLEN: u64 = 1_000_000_000;
/// Servers (with their credentials) whose connection is kept; past this
/// the least recently used is closed.
pub const MAX_SERVERS: usize = 256;
const DEFAULT_PORT: u16 = 6379;

/// Where a Redis stream destination URL adds its entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisStreamTarget {
    /// `rediss`: TLS, checked against `host`.
    pub tls: bool,
    /// A name or an address literal (IPv6 in brackets).
    pub host: String,
    pub port: u16,
    pub db: u16,
    pub stream: String,
    /// `MAXLEN ~ n` on each `XADD`.
    pub maxlen: Option<u64>,
}

impl RedisStreamTarget {
    /// Reads a `redis://` or `rediss://` URL (see the module docs), or says
    /// what is wrong with it.
    pub fn parse(url: &url::Url) -> Result<Self, String> {
        let tls = match url.scheme() {
            "redis" => false,
            "rediss" => true,
            other => return Err(format!("{other}:// is not a Redis URL")),
        };
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or("a Redis URL names its server: redis://host:port/?stream=<name>")?
            .to_owned();
        if !url.username().is_empty() || url.password().is_some() {
            return Err(
                "a Redis URL must not hold credentials; set them with the endpoint's http-auth (basic)"
                    .into(),
            );
        }
        let db = match url.path() {
            "" | "/" => 0,
            path => path
                .strip_prefix('/')
                .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|n| n.parse::<u16>().ok())
                .ok_or_else(|| {
                    format!(
                        "the path must be empty or a database number (/0 to /65535), not {path}"
                    )
                })?,
        };
        let mut stream = None;
        let mut maxlen = None;
        for (key, value) in url.query_pairs() {
            match key.as_ref() {
                "stream" if stream.is_none() => stream = Some(value.into_owned()),
                "maxlen" if maxlen.is_none() => {
                    maxlen = Some(
                        value
                            .parse::<u64>()
                            .ok()
                            .filter(|n| (1..=MAX_MAXLEN).contains(n))
                            .ok_or_else(|| {
                                format!("maxlen must be a whole number from 1 to {MAX_MAXLEN}")
                            })?,
                    )
                }
                "stream" | "maxlen" => return Err(format!("{key} is given twice")),
                other => {
                    return Err(format!(
                        "'{other}' is not a Redis destination parameter; it takes stream and maxlen"
                    ));
                }
            }
        }
        let stream = stream.ok_or(
            "a Redis destination names the stream to add to: redis://host:port/?stream=<name>",
        )?;
        if stream.is_empty() || stream.len() > MAX_STREAM_BYTES {
            return Err(format!("stream must be 1 to {MAX_STREAM_BYTES} bytes long"));
        }
        if stream.chars().any(char::is_control) {
            return Err("stream must not contain control characters".into());
        }
        Ok(Self {
            tls,
            host,
            port: url.port().unwrap_or(DEFAULT_PORT),
            db,
            stream,
            maxlen,
        })
    }

    /// `host:port` as attempts show it.
    fn server(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// The entry's fields, in order: `body`, the Standard Webhooks headers,
/// `content-type`, then every other header as it comes. `authorization` is
/// never a field: credentials go to the server, not to consumers.
pub fn entry_fields<'a>(
    body: &'a [u8],
    headers: impl IntoIterator<Item = (&'a str, &'a [u8])>,
) -> Vec<(&'a str, &'a [u8])> {
    const FIRST: [&str; 4] = [
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "content-type",
    ];
    let headers: Vec<(&str, &[u8])> = headers
        .into_iter()
        .filter(|(name, _)| !name.eq_ignore_ascii_case("authorization"))
        .collect();
    let mut fields = Vec::with_capacity(headers.len() + 1);
    fields.push(("body", body));
    for first in FIRST {
        fields.extend(
            headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(first)),
        );
    }
    fields.extend(
        headers
            .iter()
            .filter(|(n, _)| !FIRST.iter().any(|f| n.eq_ignore_ascii_case(f))),
    );
    fields
}

/// The `AUTH` an endpoint's credentials call for: `(username, password)`,
/// no username for the default user.
fn credentials(auth: &EndpointAuth) -> Result<Option<(Option<String>, String)>, String> {
    if auth.oauth.is_some() {
        return Err(
            "OAuth2 credentials do not apply to a Redis destination; use http-auth basic (username and password)"
                .into(),
        );
    }
    if auth.mtls.is_some() {
        return Err("a TLS client certificate is not supported for Redis destinations".into());
    }
    match &auth.http {
        None => Ok(None),
        Some(HttpAuth::Basic { username, password }) => Ok(Some((
            Some(username.clone()).filter(|u| !u.is_empty()),
            password.clone(),
        ))),
        Some(HttpAuth::Bearer { .. }) => Err(
            "a bearer token does not apply to a Redis destination; use http-auth basic (username and password)"
                .into(),
        ),
    }
}

/// One server as a set of credentials sees it.
#[derive(Clone, PartialEq, Eq, Hash)]
struct ServerKey {
    tls: bool,
    host: String,
    port: u16,
    db: u16,
    auth: Option<(Option<String>, String)>,
}

struct Kept {
    conn: MultiplexedConnection,
    used: Instant,
}

/// Redis Streams delivery, registered for [`SCHEMES`].
#[derive(Default)]
pub struct RedisStreamDestination {
    connections: Mutex<HashMap<ServerKey, Kept>>,
}

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

impl RedisStreamDestination {
    /// The kept connection to `key`'s server, or a new one.
    async fn connection(
        &self,
        key: &ServerKey,
        egress: &Egress,
    ) -> Result<MultiplexedConnection, String> {
        if let Some(kept) = locked(&self.connections).get_mut(key) {
            kept.used = Instant::now();
            return Ok(kept.conn.clone());
        }
        let stream = egress.connect(&key.host, key.port, key.tls).await?;
        let mut info = redis::RedisConnectionInfo::default().set_db(i64::from(key.db));
        if let Some((username, password)) = &key.auth {
            if let Some(username) = username {
                info = info.set_username(username);
            }
            info = info.set_password(password);
        }
        let config =
            redis::AsyncConnectionConfig::new().set_response_timeout(Some(egress.timeout()));
        let (conn, driver) = MultiplexedConnection::new_with_config(&info, stream, config)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(driver);
        let mut kept = locked(&self.connections);
        if kept.len() >= MAX_SERVERS
            && let Some(oldest) = kept
                .iter()
                .min_by_key(|(_, k)| k.used)
                .map(|(key, _)| key.clone())
        {
            kept.remove(&oldest);
        }
        kept.insert(
            key.clone(),
            Kept {
                conn: conn.clone(),
                used: Instant::now(),
            },
        );
        Ok(conn)
    }

    async fn send_one(&self, delivery: Delivery<'_>) -> SendResult {
        let started = Instant::now();
        let failed = |reason: String| SendResult {
            duration: started.elapsed(),
            ..SendResult::failed(reason)
        };
        let target = match url::Url::parse(delivery.url)
            .map_err(|e| e.to_string())
            .and_then(|u| RedisStreamTarget::parse(&u))
        {
            Ok(t) => t,
            Err(e) => return failed(format!("not sent: {e}")),
        };
        let auth = match credentials(delivery.auth) {
            Ok(a) => a,
            Err(e) => return failed(format!("not sent: {e}")),
        };
        let key = ServerKey {
            tls: target.tls,
            host: target.host.clone(),
            port: target.port,
            db: target.db,
            auth,
        };
        let fields = entry_fields(
            &delivery.body,
            delivery
                .headers
                .iter()
                .map(|(name, value)| (name.as_str(), value.as_bytes())),
        );
        let mut xadd = redis::cmd("XADD");
        xadd.arg(&target.stream);
        if let Some(n) = target.maxlen {
            xadd.arg("MAXLEN").arg("~").arg(n);
        }
        xadd.arg("*");
        for (name, value) in fields {
            xadd.arg(name).arg(value);
        }
        let egress = delivery.egress;
        let sent = tokio::time::timeout(egress.timeout(), async {
            let mut conn = self.connection(&key, egress).await?;
            xadd.query_async::<String>(&mut conn).await.map_err(|e| {
                // An error reply leaves the connection usable; anything
                // else (closed, timed out, garbled) is connected anew.
                if e.code().is_none() {
                    locked(&self.connections).remove(&key);
                }
                e.to_string()
            })
        })
        .await;
        match sent {
            Ok(Ok(entry_id)) => SendResult {
                status: 200,
                body: entry_id,
                retry_after: None,
                duration: started.elapsed(),
            },
            Ok(Err(reason)) => failed(format!("redis {}: {reason}", target.server())),
            Err(_) => {
                locked(&self.connections).remove(&key);
                failed(format!(
                    "redis {}: timed out: no answer within {} ms",
                    target.server(),
                    egress.timeout().as_millis()
                ))
            }
        }
    }
}

impl Destination for RedisStreamDestination {
    fn send<'a>(&'a self, delivery: Delivery<'a>) -> SendFuture<'a> {
        Box::pin(self.send_one(delivery))
    }

    fn check_url(&self, url: &url::Url) -> Result<(), String> {
        RedisStreamTarget::parse(url).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<RedisStreamTarget, String> {
        RedisStreamTarget::parse(&url::Url::parse(s).unwrap())
    }

    #[test]
    fn urls_name_a_server_and_a_stream() {
        assert_eq!(
            parse("redis://127.0.0.1/?stream=orders").unwrap(),
            RedisStreamTarget {
                tls: false,
                host: "127.0.0.1".into(),
                port: 6379,
                db: 0,
                stream: "orders".into(),
                maxlen: None,
            }
        );
        let t = parse("rediss://cache.internal:6380/3?stream=a%20b%26c&maxlen=1000").unwrap();
        assert!(t.tls);
        assert_eq!((t.host.as_str(), t.port, t.db), ("cache.internal", 6380, 3));
        assert_eq!((t.stream.as_str(), t.maxlen), ("a b&c", Some(1000)));
        assert_eq!(parse("redis://[::1]:7000?stream=s").unwrap().host, "[::1]");
    }

    #[test]
    fn what_cannot_be_delivered_is_refused_saying_why() {
        let refused = |s: &str| parse(s).unwrap_err();
        assert!(refused("redis://h/").contains("stream"));
        assert!(refused("redis://h/?stream=").contains("1 to 1024"));
        assert!(refused(&format!("redis://h/?stream={}", "x".repeat(1025))).contains("1 to 1024"));
        assert!(refused("redis://h/?stream=s&stream=t").contains("twice"));
        assert!(refused("redis://h/?steam=s").contains("'steam'"));
        assert!(refused("redis://h/?stream=s&maxlen=0").contains("maxlen"));
        assert!(refused("redis://h/?stream=s&maxlen=1000000001").contains("maxlen"));
        assert!(refused("redis://h/?stream=s&maxlen=-1").contains("maxlen"));
        assert!(refused("redis://h/db?stream=s").contains("database number"));
        assert!(refused("redis://h/1/2?stream=s").contains("database number"));
        assert!(refused("redis://h/70000?stream=s").contains("database number"));
        assert!(refused("redis://h/?stream=a%0Ab").contains("control"));
        assert!(refused("redis://u:p@h/?stream=s").contains("http-auth"));
        assert!(refused("amqp://h/?stream=s").contains("not a Redis URL"));
    }

    #[test]
    fn headers_become_fields_after_the_body_and_signature() {
        let headers: Vec<(&str, &[u8])> = vec![
            ("x-tenant", b"acme"),
            ("content-type", b"application/json"),
            ("webhook-signature", b"v1,abc"),
            ("authorization", b"Basic c2VjcmV0"),
            ("webhook-id", b"msg_1"),
            ("stripe-signature", b"t=1,v1=x"),
            ("webhook-timestamp", b"1700000000"),
        ];
        let fields = entry_fields(b"{\"a\":1}", headers);
        let names: Vec<&str> = fields.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            [
                "body",
                "webhook-id",
                "webhook-timestamp",
                "webhook-signature",
                "content-type",
                "x-tenant",
                "stripe-signature"
            ]
        );
        assert_eq!(fields[0].1, b"{\"a\":1}");
        assert_eq!(fields[3].1, b"v1,abc");
    }

    #[test]
    fn credentials_come_from_basic_http_auth_only() {
        assert_eq!(credentials(&EndpointAuth::default()), Ok(None));
        let basic = |u: &str| EndpointAuth {
            http: Some(HttpAuth::Basic {
                username: u.into(),
                password: "pw".into(),
            }),
            ..Default::default()
        };
        assert_eq!(
            credentials(&basic("app")),
            Ok(Some((Some("app".into()), "pw".into())))
        );
        assert_eq!(credentials(&basic("")), Ok(Some((None, "pw".into()))));
        let bearer = EndpointAuth {
            http: Some(HttpAuth::Bearer { token: "t".into() }),
            ..Default::default()
        };
        assert!(credentials(&bearer).unwrap_err().contains("basic"));
    }
}
