//! Redis Streams as a broker source: a consumer group on one stream, each
//! node a consumer of it (so nodes share the stream and a node's pending
//! entries are reclaimed by the others with `XAUTOCLAIM` when it dies).
//!
//! An entry's `body` field is the broker message's body; its other fields
//! are headers (so `switchyard-event-type` may be a field). Entries are
//! acknowledged (`XACK`) only after they are committed; one that can never
//! be a message is moved to the dead-letter stream (`XADD` with the reason,
//! then `XACK`, in one `MULTI`).

pub mod destination;

use futures_util::future::BoxFuture;
use redis::Value;
use redis::aio::MultiplexedConnection;
use std::collections::HashMap;
use std::time::Duration;
use switchyard_engine::broker_intake::{
    BrokerConfigError, BrokerConsumer, BrokerMessage, Settlement, broker_key,
};

/// Where a Redis Streams source reads.
#[derive(Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RedisStreamConfig {
    /// `redis://[user:password@]host:port[/db]`.
    pub url: String,
    pub stream: String,
    /// The consumer group (created at the stream's beginning when missing).
    pub group: String,
    /// Where rejected entries go; `<stream>:dead` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_stream: Option<String>,
    /// Pending entries idle this long (another node died holding them) are
    /// claimed, in ms [default: 60000].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim_idle_ms: Option<u64>,
}

impl std::fmt::Debug for RedisStreamConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStreamConfig")
            .field("stream", &self.stream)
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}

impl RedisStreamConfig {
    /// Refuses what can never work, naming the field: a URL that does not
    /// parse, an empty stream or group, a dead-letter stream that is the
    /// stream itself (each rejected entry would be read and rejected again,
    /// for ever).
    pub fn check(&self) -> Result<(), BrokerConfigError> {
        redis::Client::open(self.url.as_str())
            .map_err(|e| BrokerConfigError::new("url", e.to_string()))?;
        if self.stream.is_empty() {
            return Err(BrokerConfigError::new("stream", "must not be empty"));
        }
        if self.group.is_empty() {
            return Err(BrokerConfigError::new("group", "must not be empty"));
        }
        if self.dead_letter_stream() == self.stream {
            return Err(BrokerConfigError::new(
                "deadLetterStream",
                "must not be the stream itself",
            ));
        }
        Ok(())
    }

    /// The server, stream and group: one source per group of a stream.
    pub fn reads(&self) -> String {
        format!(
            "redis {} {} {}",
            crate::url_without_secrets(&self.url),
            self.stream,
            self.group
        )
    }

    /// Shown without the URL's password.
    pub fn redacted(&self) -> Self {
        Self {
            url: crate::redact_url(&self.url),
            ..self.clone()
        }
    }

    /// Where rejected entries go.
    pub fn dead_letter_stream(&self) -> String {
        self.dead_letter_stream
            .clone()
            .unwrap_or_else(|| format!("{}:dead", self.stream))
    }
}

/// How long one read waits for new entries, in ms.
const BLOCK_MS: u64 = 1000;
/// Longest time between two reclaim passes.
const RECLAIM_EVERY: Duration = Duration::from_secs(5);

pub struct RedisStreamConsumer {
    client: redis::Client,
    conn: MultiplexedConnection,
    /// The connection failed: connect anew before the next command.
    broken: bool,
    config: RedisStreamConfig,
    consumer: String,
    /// Handles of the batch being settled: entry id, and what a dead letter
    /// needs.
    pending: HashMap<u64, (String, BrokerMessage)>,
    next: u64,
    last_reclaim: Option<std::time::Instant>,
    /// Still reading this consumer's own pending entries (left by a crash
    /// of this node) before new ones.
    own_backlog: bool,
}

fn redis_error(e: redis::RedisError) -> String {
    e.to_string()
}

impl RedisStreamConsumer {
    /// Connects as `consumer` (this node's id) and makes sure the group
    /// exists.
    pub async fn connect(config: RedisStreamConfig, consumer: String) -> Result<Self, String> {
        let client = redis::Client::open(config.url.as_str()).map_err(redis_error)?;
        let mut conn = open(&client).await?;
        ensure_group(&mut conn, &config).await?;
        Ok(Self {
            client,
            conn,
            broken: false,
            config,
            consumer,
            pending: HashMap::new(),
            next: 0,
            last_reclaim: None,
            own_backlog: true,
        })
    }

    /// Turns stream entries (`[id, [field, value, ...]]`) into handles.
    fn take_entries(&mut self, entries: &[Value], out: &mut Vec<(u64, BrokerMessage)>) {
        for entry in entries {
            let Value::Array(parts) = entry else { continue };
            let (Some(id), Some(Value::Array(fields))) = (parts.first(), parts.get(1)) else {
                continue;
            };
            let Some(id) = text(id) else { continue };
            let mut message = BrokerMessage {
                // Names the entry, so one read twice (after a crash between
                // commit and XACK) is one message even without an eventId.
                key: Some(broker_key(&format!("redis:{}:{}", self.config.stream, id))),
                ..Default::default()
            };
            for pair in fields.chunks(2) {
                let [name, value] = pair else { continue };
                let (Some(name), Some(value)) = (text(name), bytes(value)) else {
                    continue;
                };
                if name == "body" {
                    message.body = value.into();
                } else if let Ok(value) = String::from_utf8(value) {
                    message.headers.push((name, value));
                }
            }
            self.next += 1;
            self.pending.insert(self.next, (id, message.clone()));
            out.push((self.next, message));
        }
    }

    async fn read(&mut self, max: usize) -> Result<Vec<(u64, BrokerMessage)>, String> {
        if self.broken {
            self.conn = open(&self.client).await?;
            self.broken = false;
            // What this consumer had read and not settled is pending again.
            self.own_backlog = true;
            self.pending.clear();
        }
        let read = self.read_on(max).await;
        if let Err(e) = &read {
            if e.contains("NOGROUP") {
                // The stream or the group was deleted: made again.
                ensure_group(&mut self.conn, &self.config).await?;
                self.own_backlog = true;
            } else {
                self.broken = true;
            }
        }
        read
    }

    async fn read_on(&mut self, max: usize) -> Result<Vec<(u64, BrokerMessage)>, String> {
        let mut out = Vec::new();
        let idle = Duration::from_millis(self.config.claim_idle_ms.unwrap_or(60_000));
        if self
            .last_reclaim
            .is_none_or(|at| at.elapsed() >= idle.min(RECLAIM_EVERY))
        {
            self.last_reclaim = Some(std::time::Instant::now());
            // Entries another consumer (a dead node) held too long.
            let reply: Value = redis::cmd("XAUTOCLAIM")
                .arg(&self.config.stream)
                .arg(&self.config.group)
                .arg(&self.consumer)
                .arg(self.config.claim_idle_ms.unwrap_or(60_000))
                .arg("0-0")
                .arg("COUNT")
                .arg(max)
                .query_async(&mut self.conn)
                .await
                .map_err(redis_error)?;
            if let Value::Array(parts) = reply
                && let Some(Value::Array(entries)) = parts.get(1)
            {
                self.take_entries(entries, &mut out);
            }
            if !out.is_empty() {
                return Ok(out);
            }
        }
        let from = if self.own_backlog { "0" } else { ">" };
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(&self.config.group)
            .arg(&self.consumer)
            .arg("COUNT")
            .arg(max);
        if !self.own_backlog {
            cmd.arg("BLOCK").arg(BLOCK_MS);
        }
        let reply: Value = cmd
            .arg("STREAMS")
            .arg(&self.config.stream)
            .arg(from)
            .query_async(&mut self.conn)
            .await
            .map_err(redis_error)?;
        // `[[stream, [entries...]]]`, or nil when the block ran out.
        if let Value::Array(streams) = reply {
            for stream in streams {
                if let Value::Array(parts) = stream
                    && let Some(Value::Array(entries)) = parts.get(1)
                {
                    self.take_entries(entries, &mut out);
                }
            }
        }
        if self.own_backlog && out.is_empty() {
            self.own_backlog = false;
        }
        Ok(out)
    }

    async fn settle_all(&mut self, outcomes: Vec<(u64, Settlement)>) -> Result<(), String> {
        let dead = self.config.dead_letter_stream();
        let mut acks = Vec::new();
        let mut failed = None;
        let mut deferred = false;
        for (handle, outcome) in outcomes {
            let Some((id, message)) = self.pending.remove(&handle) else {
                continue;
            };
            match outcome {
                Settlement::Accepted { .. } => acks.push(id),
                Settlement::Rejected(rejection) => {
                    // The producer's fields first and ours last, so a reader
                    // that keeps the last of a repeated field sees ours.
                    let mut add = redis::cmd("XADD");
                    add.arg(&dead).arg("*").arg("body").arg(&message.body[..]);
                    for (name, value) in &message.headers {
                        add.arg(name).arg(value);
                    }
                    add.arg("rejected-code")
                        .arg(rejection.code)
                        .arg("rejected-reason")
                        .arg(&rejection.reason)
                        .arg("original-id")
                        .arg(&id);
                    // Acknowledged only once the dead letter is written; a
                    // failed write leaves the entry pending, to be read again.
                    match add.query_async::<Value>(&mut self.conn).await {
                        Ok(_) => acks.push(id),
                        Err(e) => {
                            failed.get_or_insert(format!(
                                "writing the dead letter to {dead} failed: {}",
                                redis_error(e)
                            ));
                        }
                    }
                }
                // Stays pending; read again after the back-off.
                Settlement::Later(_) => deferred = true,
            }
        }
        if deferred || failed.is_some() {
            self.own_backlog = true;
        }
        if !acks.is_empty() {
            let _: Value = redis::cmd("XACK")
                .arg(&self.config.stream)
                .arg(&self.config.group)
                .arg(&acks)
                .query_async(&mut self.conn)
                .await
                .map_err(redis_error)?;
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Creates the group when it is missing (first start, or the stream or
/// group was deleted meanwhile), at the stream's beginning: an entry
/// written before the group existed is read too, not skipped.
async fn ensure_group(
    conn: &mut MultiplexedConnection,
    config: &RedisStreamConfig,
) -> Result<(), String> {
    let created: Result<Value, _> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&config.stream)
        .arg(&config.group)
        .arg("0")
        .arg("MKSTREAM")
        .query_async(conn)
        .await;
    match created {
        Err(e) if e.code() != Some("BUSYGROUP") => Err(redis_error(e)),
        _ => Ok(()),
    }
}

/// A connection whose reads may block for [`BLOCK_MS`] (the default 500 ms
/// reply timeout would cut them off).
async fn open(client: &redis::Client) -> Result<MultiplexedConnection, String> {
    let settings = redis::AsyncConnectionConfig::new()
        .set_response_timeout(Some(Duration::from_millis(BLOCK_MS + 4000)))
        .set_connection_timeout(Some(Duration::from_secs(5)));
    client
        .get_multiplexed_async_connection_with_config(&settings)
        .await
        .map_err(redis_error)
}

fn text(v: &Value) -> Option<String> {
    bytes(v).and_then(|b| String::from_utf8(b).ok())
}

fn bytes(v: &Value) -> Option<Vec<u8>> {
    match v {
        Value::BulkString(b) => Some(b.clone()),
        Value::SimpleString(s) => Some(s.clone().into_bytes()),
        _ => None,
    }
}

/// A field of a reply that is a map (RESP3) or a flat list of names and
/// values (RESP2).
fn field<'a>(reply: &'a Value, name: &str) -> Option<&'a Value> {
    match reply {
        Value::Map(pairs) => pairs
            .iter()
            .find(|(k, _)| text(k).as_deref() == Some(name))
            .map(|(_, v)| v),
        Value::Array(flat) => flat
            .chunks(2)
            .find(|pair| text(&pair[0]).as_deref() == Some(name))
            .and_then(|pair| pair.get(1)),
        _ => None,
    }
}

fn int(v: &Value) -> Option<u64> {
    match v {
        Value::Int(n) => u64::try_from(*n).ok(),
        other => text(other)?.parse().ok(),
    }
}

impl RedisStreamConsumer {
    /// The group's lag (entries not yet delivered to it) plus its pending
    /// entries (delivered, not acknowledged), from `XINFO GROUPS`; `None`
    /// when Redis cannot tell the lag (before 7.0, or after entries were
    /// deleted from the middle of the stream).
    async fn group_backlog(&mut self) -> Result<Option<u64>, String> {
        let reply: Value = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(&self.config.stream)
            .query_async(&mut self.conn)
            .await
            .map_err(redis_error)?;
        let Value::Array(groups) = reply else {
            return Ok(None);
        };
        for group in &groups {
            if field(group, "name").and_then(text).as_deref() != Some(self.config.group.as_str()) {
                continue;
            }
            let lag = field(group, "lag").and_then(int);
            let pending = field(group, "pending").and_then(int).unwrap_or(0);
            return Ok(lag.map(|lag| lag + pending));
        }
        Ok(None)
    }
}

impl BrokerConsumer for RedisStreamConsumer {
    fn backlog(&mut self) -> BoxFuture<'_, Result<Option<u64>, String>> {
        Box::pin(self.group_backlog())
    }

    fn receive(&mut self, max: usize) -> BoxFuture<'_, Result<Vec<(u64, BrokerMessage)>, String>> {
        Box::pin(self.read(max))
    }

    fn settle(&mut self, outcomes: Vec<(u64, Settlement)>) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let settled = self.settle_all(outcomes).await;
            if settled
                .as_ref()
                .is_err_and(|e| !e.starts_with("writing the dead letter"))
            {
                self.broken = true;
            }
            settled
        })
    }
}
