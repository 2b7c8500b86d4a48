//! MQTT as a broker source: an MQTT 5 subscription at QoS 1 in a
//! persistent session, each node one client of it.
//!
//! - **Sharing**: by default each node subscribes to the shared
//!   subscription `$share/switchyard/<topic>` (MQTT 5; Mosquitto 2 has
//!   them), so the broker hands each message to one node. `sharedGroup: ""`
//!   subscribes every node to the topic itself: each node then takes every
//!   message, which only `eventId` keeps single.
//! - **Persistent session**: each node connects with `clean_start = false`
//!   and a session expiry interval (`sessionExpirySecs`, default one day),
//!   under a client id that stays the same across restarts (derived from
//!   what the source reads and the node id, unless `clientId` is set). So
//!   QoS 1 messages that arrive while the node is down (stopped, crashed,
//!   restarting) are kept by the broker in its session and delivered when
//!   it comes back, and those delivered but not acknowledged are delivered
//!   again. The node id must therefore be stable (`SWITCHYARD_NODE_ID`, or
//!   a fixed listen port). Limits: the broker keeps a bounded queue per
//!   offline session (Mosquitto: `max_queued_messages`, 1000 by default,
//!   beyond which it drops), keeps sessions across its own restarts only
//!   with `persistence true`, and forgets a session (and what it held) once
//!   it has been offline longer than its expiry. With a shared subscription
//!   the broker may still route a share of new messages to a node that is
//!   down (Mosquitto does, into its session): those wait for that node to
//!   come back, and are lost if it never does before its session expires.
//! - **Ack after commit**: manual acknowledgements; a message's PUBACK is
//!   sent only after it is committed (or its rejection recorded), in the
//!   order the messages came. MQTT has no negative acknowledgement: a
//!   message the store could not take now is left unacknowledged and the
//!   connection is closed, so that the broker sends it again when the
//!   session resumes.
//! - **Dead letters**: with `deadLetterTopic`, a rejected message is
//!   published there (QoS 1, its body and user properties, plus
//!   `rejected-code`, `rejected-reason` and `original-topic` user
//!   properties) and acknowledged only once the broker acknowledged the
//!   dead letter. An MQTT broker drops what no subscription matches, so
//!   something must subscribe to the dead-letter topic (in a persistent
//!   session) to keep them. Without one, a rejected message is acknowledged
//!   once the rejected log holds it.
//! - **No message key**: MQTT packet ids are reused and a redelivery may
//!   carry another, so nothing names a message across redeliveries;
//!   producers should set `eventId` (or `switchyard-event-id`) so that a
//!   message delivered twice (a crash between commit and PUBACK) is
//!   accepted once.
//! - **Bounded memory**: the broker may send at most [`RECEIVE_MAXIMUM`]
//!   unacknowledged messages of at most [`MAX_PACKET_BYTES`] each (a larger
//!   one is discarded by the broker, as MQTT 5 prescribes, and never seen
//!   here). Brokers do not all keep to that (Mosquitto 2.0.11 overruns it),
//!   so what is received and not yet taken is also held to
//!   [`MAX_BUFFERED_MESSAGES`] and [`MAX_BUFFERED_BYTES`]: beyond, the
//!   connection is dropped and the unacknowledged messages come again on
//!   the next. QoS 0 messages (published at QoS 0) carry no guarantee:
//!   those buffered when a connection drops are lost.
//! - Retained messages are not taken (a subscription sends none), and TLS
//!   (`mqtts://`) is not in this build.
//!
//! User properties are the headers (so `switchyard-event-type` may be one),
//! and the content type property is the `content-type` header.

use futures_util::future::BoxFuture;
use rumqttc::Outgoing;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{
    Filter, Packet, PubAckReason, Publish, PublishProperties, RetainForwardRule,
    SubscribeReasonCode,
};
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchyard_engine::broker_intake::{
    BrokerConfigError, BrokerConsumer, BrokerMessage, Settlement,
};
use tokio::sync::{Notify, mpsc};

/// Where an MQTT source reads.
#[derive(Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MqttConfig {
    /// `mqtt://[user:password@]host[:port]` (port 1883 by default).
    pub url: String,
    /// A topic filter; `+` and `#` wildcards allowed.
    pub topic: String,
    /// The client id, the same on every connection so the broker keeps the
    /// session. Default: `switchyard-` and a hash of the server, topic,
    /// shared group and node id, so each node has its own. Set it only for
    /// a single node: two clients with one id take the session from each
    /// other.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The shared subscription group (`$share/<group>/<topic>`), so that
    /// nodes share the messages [default: `switchyard`]; `""` subscribes
    /// each node to every message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_group: Option<String>,
    /// Where rejected messages are published; none by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_topic: Option<String>,
    /// Seconds between keep-alive pings, 5 to 65535 [default: 15]; a
    /// silent broker is noticed within about twice this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_alive_secs: Option<u16>,
    /// Seconds the broker keeps the session (and queues messages for it)
    /// while the node is disconnected [default: 86400]; `0` ends it at
    /// disconnect, which loses what is published while a node is down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_expiry_secs: Option<u32>,
}

impl std::fmt::Debug for MqttConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttConfig")
            .field("topic", &self.topic)
            .field("shared_group", &self.shared_group)
            .finish_non_exhaustive()
    }
}

/// The server to connect to, read from the URL.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Server {
    host: String,
    port: u16,
    credentials: Option<(String, String)>,
}

const DEFAULT_SHARED_GROUP: &str = "switchyard";
const DEFAULT_KEEP_ALIVE_SECS: u16 = 15;
const DEFAULT_SESSION_EXPIRY_SECS: u32 = 86_400;
/// Unacknowledged messages the broker may send at once (MQTT 5 Receive
/// Maximum): the bound on what this source buffers.
pub const RECEIVE_MAXIMUM: u16 = 100;
/// The largest packet the broker may send (MQTT 5 Maximum Packet Size),
/// in bytes: above the default message limit, so a too large message is
/// recorded as rejected rather than silently discarded by the broker.
pub const MAX_PACKET_BYTES: u32 = 4 << 20;
/// Received messages held at most, in number and in payload bytes: a
/// broker keeping to [`RECEIVE_MAXIMUM`] never comes near; one that does
/// not has its connection dropped.
pub const MAX_BUFFERED_MESSAGES: usize = 5000;
pub const MAX_BUFFERED_BYTES: usize = 64 << 20;

impl MqttConfig {
    /// Refuses what can never work, naming the field: a URL that is not
    /// `mqtt://host[:port]`, an empty or malformed topic filter, a shared
    /// group with `/`, `+` or `#`, a dead-letter topic that is not a topic
    /// name or that the filter matches (each rejected message would be read
    /// and rejected again, for ever), a keep-alive under 5 s.
    pub fn check(&self) -> Result<(), BrokerConfigError> {
        self.server()?;
        check_filter(&self.topic).map_err(|e| BrokerConfigError::new("topic", e))?;
        if self.topic.starts_with("$share/") {
            return Err(BrokerConfigError::new(
                "topic",
                "give the topic itself; the shared subscription's group is sharedGroup",
            ));
        }
        if let Some(group) = &self.shared_group
            && group.contains(['/', '+', '#'])
        {
            return Err(BrokerConfigError::new(
                "sharedGroup",
                "must not contain '/', '+' or '#'",
            ));
        }
        if let Some(id) = &self.client_id
            && (id.is_empty() || id.len() > 65_535)
        {
            return Err(BrokerConfigError::new(
                "clientId",
                "must be 1 to 65535 bytes long",
            ));
        }
        if let Some(dead) = &self.dead_letter_topic {
            check_topic_name(dead).map_err(|e| BrokerConfigError::new("deadLetterTopic", e))?;
            if topic_matches(&self.topic, dead) {
                return Err(BrokerConfigError::new(
                    "deadLetterTopic",
                    format!(
                        "the topic filter '{}' matches it, so dead letters would be read again",
                        self.topic
                    ),
                ));
            }
        }
        if self.keep_alive_secs.is_some_and(|k| k < 5) {
            return Err(BrokerConfigError::new(
                "keepAliveSecs",
                "must be at least 5",
            ));
        }
        Ok(())
    }

    fn server(&self) -> Result<Server, BrokerConfigError> {
        let refused = |why: &str| BrokerConfigError::new("url", why.to_owned());
        let url = url::Url::parse(&self.url).map_err(|e| refused(&e.to_string()))?;
        match url.scheme() {
            "mqtt" | "tcp" => {}
            "mqtts" | "ssl" | "wss" | "ws" => {
                return Err(refused(
                    "only mqtt://host:port is supported (TLS and WebSocket are not in this build)",
                ));
            }
            _ => return Err(refused("must be mqtt://[user:password@]host[:port]")),
        }
        let host = match url.host() {
            Some(url::Host::Domain(d)) if !d.is_empty() => d.to_owned(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            _ => return Err(refused("has no host")),
        };
        if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
            return Err(refused("must have no path, query or fragment"));
        }
        let decode =
            |s: &str| percent_decode(s).ok_or_else(|| refused("user or password is not UTF-8"));
        let credentials = if url.username().is_empty() && url.password().is_none() {
            None
        } else {
            Some((
                decode(url.username())?,
                decode(url.password().unwrap_or(""))?,
            ))
        };
        Ok(Server {
            host,
            port: url.port().unwrap_or(1883),
            credentials,
        })
    }

    /// The server, topic and shared group: one source per subscription.
    pub fn reads(&self) -> String {
        format!(
            "mqtt {} {} {}",
            crate::url_without_secrets(&self.url),
            self.topic,
            self.shared_group()
        )
    }

    /// Shown without the URL's password.
    pub fn redacted(&self) -> Self {
        Self {
            url: crate::redact_url(&self.url),
            ..self.clone()
        }
    }

    fn shared_group(&self) -> &str {
        self.shared_group.as_deref().unwrap_or(DEFAULT_SHARED_GROUP)
    }

    /// What is subscribed to: the shared subscription, or the topic.
    pub fn subscription(&self) -> String {
        match self.shared_group() {
            "" => self.topic.clone(),
            group => format!("$share/{group}/{}", self.topic),
        }
    }

    /// The client id of node `consumer`: `clientId`, or one derived from
    /// what the source reads and the node (23 characters, the most every
    /// broker must accept).
    pub fn client_id(&self, consumer: &str) -> String {
        if let Some(id) = &self.client_id {
            return id.clone();
        }
        let hash = fnv1a(format!("{}\n{consumer}", self.reads()).as_bytes());
        format!("switchyard-{:012x}", hash & 0xffff_ffff_ffff)
    }
}

/// FNV-1a, 64 bits: a hash that stays the same across builds (the client
/// id, hence the broker's session, depends on it).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = s.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Checks an MQTT topic filter: not empty, `#` only as the whole last
/// level, `+` only as a whole level, no NUL.
pub fn check_filter(filter: &str) -> Result<(), String> {
    if filter.is_empty() {
        return Err("must not be empty".into());
    }
    if filter.contains('\0') {
        return Err("must not contain NUL".into());
    }
    let levels: Vec<&str> = filter.split('/').collect();
    for (i, level) in levels.iter().enumerate() {
        if level.contains('#') && (*level != "#" || i + 1 != levels.len()) {
            return Err("'#' must be a whole level and the last one".into());
        }
        if level.contains('+') && *level != "+" {
            return Err("'+' must be a whole level".into());
        }
    }
    Ok(())
}

/// Checks an MQTT topic name (what is published to): not empty, no
/// wildcards, no NUL.
pub fn check_topic_name(topic: &str) -> Result<(), String> {
    if topic.is_empty() {
        return Err("must not be empty".into());
    }
    if topic.contains(['+', '#', '\0']) {
        return Err("a topic name must not contain '+', '#' or NUL".into());
    }
    Ok(())
}

/// Whether the topic filter `filter` matches the topic name `topic`, as
/// a broker decides: `+` is one level, `#` the rest (including none), a
/// filter starting with a wildcard does not match a `$` topic, and a
/// shared subscription (`$share/<group>/<filter>`) matches what its filter
/// does.
pub fn topic_matches(filter: &str, topic: &str) -> bool {
    let filter = match filter.strip_prefix("$share/") {
        Some(rest) => match rest.split_once('/') {
            Some((_, f)) => f,
            None => return false,
        },
        None => filter,
    };
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut topic_levels = topic.split('/');
    for level in filter.split('/') {
        if level == "#" {
            return true;
        }
        match topic_levels.next() {
            Some(t) if level == "+" || level == t => {}
            _ => return false,
        }
    }
    topic_levels.next().is_none()
}

/// The headers of a received message: its user properties, and its
/// content type as `content-type`.
pub fn headers_of(properties: Option<&PublishProperties>) -> Vec<(String, String)> {
    let Some(p) = properties else {
        return Vec::new();
    };
    let mut headers = p.user_properties.clone();
    if let Some(ct) = &p.content_type {
        headers.push(("content-type".into(), ct.clone()));
    }
    headers
}

/// The properties of a dead letter: the original's user properties and
/// content type, then why it was rejected and where it came from.
fn dead_letter_properties(
    original: Option<&PublishProperties>,
    topic: &str,
    code: &str,
    reason: &str,
) -> PublishProperties {
    let mut user_properties = original
        .map(|p| p.user_properties.clone())
        .unwrap_or_default();
    user_properties.push(("rejected-code".into(), code.into()));
    user_properties.push(("rejected-reason".into(), reason.into()));
    user_properties.push(("original-topic".into(), topic.into()));
    PublishProperties {
        content_type: original.and_then(|p| p.content_type.clone()),
        payload_format_indicator: original.and_then(|p| p.payload_format_indicator),
        user_properties,
        ..Default::default()
    }
}

/// What the event loop's task reports besides messages.
#[derive(Debug)]
enum Control {
    ConnAck {
        session_present: bool,
    },
    SubAck(Vec<SubscribeReasonCode>),
    /// One of our publishes (a dead letter) went out under this packet id.
    Sent(u16),
    /// The broker acknowledged the publish with this packet id.
    Acked(u16, PubAckReason),
    /// The connection is gone.
    Failed(String),
}

/// Messages received and not yet handed out, filled by the event loop's
/// task (which never waits on it: it must go on sending acks and reading
/// acks of dead letters) and drained by [`MqttConsumer::receive`].
#[derive(Default)]
struct Buffer {
    /// A message, or why the connection ended (last).
    queue: Mutex<VecDeque<Result<Publish, String>>>,
    bytes: AtomicUsize,
    ready: Notify,
}

impl Buffer {
    fn locked(&self) -> std::sync::MutexGuard<'_, VecDeque<Result<Publish, String>>> {
        match self.queue.lock() {
            Ok(l) => l,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Adds a message; `false` when the buffer went over its bound (the
    /// connection is then to be dropped).
    fn push(&self, item: Result<Publish, String>) -> bool {
        let size = item.as_ref().map_or(0, |p| p.payload.len());
        let mut queue = self.locked();
        queue.push_back(item);
        let bytes = self.bytes.fetch_add(size, Ordering::Relaxed) + size;
        let within = queue.len() <= MAX_BUFFERED_MESSAGES && bytes <= MAX_BUFFERED_BYTES;
        drop(queue);
        self.ready.notify_one();
        within
    }

    fn take(&self, max: usize) -> Vec<Result<Publish, String>> {
        let mut queue = self.locked();
        let n = max.min(queue.len());
        let out: Vec<_> = queue.drain(..n).collect();
        let size: usize = out
            .iter()
            .map(|m| m.as_ref().map_or(0, |p| p.payload.len()))
            .sum();
        self.bytes.fetch_sub(size, Ordering::Relaxed);
        out
    }
}

/// One open connection: the client, and the task running its event loop.
struct Connection {
    client: AsyncClient,
    buffer: Arc<Buffer>,
    control: mpsc::UnboundedReceiver<Control>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        // A clean DISCONNECT keeps the session; what was not acknowledged
        // comes again on the next connection. The task ends once it is
        // sent, or at once when the request cannot be queued.
        if self.client.try_disconnect().is_err() {
            self.task.abort();
        }
    }
}

/// How long connecting and subscribing may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a receive waits for the first message.
const RECEIVE_WAIT: Duration = Duration::from_secs(1);
/// How long the broker may take to acknowledge dead letters.
const DEAD_LETTER_TIMEOUT: Duration = Duration::from_secs(10);

/// An MQTT source's client on one node.
pub struct MqttConsumer {
    config: MqttConfig,
    server: Server,
    client_id: String,
    conn: Option<Connection>,
    /// Messages received on the current connection and not yet settled.
    pending: HashMap<u64, Publish>,
    next: u64,
    /// A session was established before: a later connection without one
    /// means the broker forgot it.
    had_session: bool,
}

impl MqttConsumer {
    /// Connects as node `consumer` and subscribes.
    pub async fn connect(config: MqttConfig, consumer: String) -> Result<Self, String> {
        let server = config.server().map_err(|e| e.to_string())?;
        let client_id = config.client_id(&consumer);
        let mut me = Self {
            config,
            server,
            client_id,
            conn: None,
            pending: HashMap::new(),
            next: 0,
            had_session: false,
        };
        me.open().await?;
        Ok(me)
    }

    fn options(&self) -> MqttOptions {
        let mut options = MqttOptions::new(&self.client_id, &self.server.host, self.server.port);
        options
            .set_keep_alive(Duration::from_secs(u64::from(
                self.config
                    .keep_alive_secs
                    .unwrap_or(DEFAULT_KEEP_ALIVE_SECS)
                    .max(5),
            )))
            .set_clean_start(false)
            .set_session_expiry_interval(Some(
                self.config
                    .session_expiry_secs
                    .unwrap_or(DEFAULT_SESSION_EXPIRY_SECS),
            ))
            .set_receive_maximum(Some(RECEIVE_MAXIMUM))
            .set_max_packet_size(Some(MAX_PACKET_BYTES))
            .set_manual_acks(true)
            // Our own publishes are dead letters only; a small window
            // keeps the client's per-connection table small.
            .set_outgoing_inflight_upper_limit(RECEIVE_MAXIMUM)
            .set_connection_timeout(CONNECT_TIMEOUT.as_secs());
        if let Some((user, password)) = &self.server.credentials {
            options.set_credentials(user, password);
        }
        options
    }

    /// Opens a connection, waits for the broker's CONNACK and SUBACK.
    async fn open(&mut self) -> Result<(), String> {
        self.pending.clear();
        // The request channel holds every ack and dead letter a batch can
        // make, so settling never waits on a full channel.
        let requests = usize::from(RECEIVE_MAXIMUM) + 1100;
        let (client, mut eventloop) = AsyncClient::new(self.options(), requests);
        let buffer = Arc::new(Buffer::default());
        let message_tx = buffer.clone();
        let (control_tx, control) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                let event = match eventloop.poll().await {
                    Ok(e) => e,
                    Err(e) => {
                        let why = e.to_string();
                        let _ = control_tx.send(Control::Failed(why.clone()));
                        message_tx.push(Err(why));
                        return;
                    }
                };
                let sent = match event {
                    Event::Incoming(Packet::Publish(p)) => {
                        if !message_tx.push(Ok(p)) {
                            // The broker sends beyond the Receive Maximum
                            // (Mosquitto 2.0.11 can): rather than hold
                            // without bound, the connection ends and the
                            // unacknowledged messages come again.
                            let why = format!(
                                "more than {MAX_BUFFERED_MESSAGES} messages or {MAX_BUFFERED_BYTES} bytes received and not yet taken; the broker does not keep to the Receive Maximum of {RECEIVE_MAXIMUM}"
                            );
                            let _ = control_tx.send(Control::Failed(why.clone()));
                            message_tx.push(Err(why));
                            return;
                        }
                        Ok(())
                    }
                    Event::Incoming(Packet::ConnAck(c)) => control_tx.send(Control::ConnAck {
                        session_present: c.session_present,
                    }),
                    Event::Incoming(Packet::SubAck(s)) => {
                        control_tx.send(Control::SubAck(s.return_codes))
                    }
                    Event::Incoming(Packet::PubAck(a)) => {
                        control_tx.send(Control::Acked(a.pkid, a.reason))
                    }
                    Event::Outgoing(Outgoing::Publish(pkid)) => {
                        control_tx.send(Control::Sent(pkid))
                    }
                    Event::Outgoing(Outgoing::Disconnect) => return,
                    _ => Ok(()),
                };
                if sent.is_err() {
                    return;
                }
            }
        });
        let mut conn = Connection {
            client,
            buffer,
            control,
            task,
        };
        let subscription = self.config.subscription();
        // The connection is dropped (and its task stopped) on any failure.
        let ready = tokio::time::timeout(CONNECT_TIMEOUT, async {
            let session_present = loop {
                match conn.control.recv().await {
                    Some(Control::ConnAck { session_present }) => break session_present,
                    Some(Control::Failed(e)) => return Err(e),
                    Some(_) => {}
                    None => return Err("the connection closed".to_owned()),
                }
            };
            let filter = Filter {
                path: subscription.clone(),
                qos: QoS::AtLeastOnce,
                nolocal: false,
                preserve_retain: false,
                retain_forward_rule: RetainForwardRule::Never,
            };
            conn.client
                .subscribe_many(vec![filter])
                .await
                .map_err(|e| e.to_string())?;
            loop {
                match conn.control.recv().await {
                    Some(Control::SubAck(codes)) => {
                        return match codes.first() {
                            Some(SubscribeReasonCode::Success(QoS::AtLeastOnce))
                            | Some(SubscribeReasonCode::Success(QoS::ExactlyOnce)) => {
                                Ok(session_present)
                            }
                            Some(SubscribeReasonCode::Success(QoS::AtMostOnce)) => Err(format!(
                                "the broker granted {subscription} QoS 0 only; QoS 1 is needed"
                            )),
                            other => Err(format!(
                                "the broker refused the subscription to {subscription}: {other:?}"
                            )),
                        };
                    }
                    Some(Control::Failed(e)) => return Err(e),
                    Some(_) => {}
                    None => return Err("the connection closed".to_owned()),
                }
            }
        })
        .await;
        let session_present = match ready {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => return Err(format!("{}:{}: {e}", self.server.host, self.server.port)),
            Err(_) => {
                return Err(format!(
                    "{}:{}: no CONNACK and SUBACK within {} s",
                    self.server.host,
                    self.server.port,
                    CONNECT_TIMEOUT.as_secs()
                ));
            }
        };
        if self.had_session && !session_present {
            tracing::warn!(
                client_id = %self.client_id,
                "the MQTT broker no longer had this source's session; messages published while disconnected may be lost"
            );
        }
        self.had_session = true;
        self.conn = Some(conn);
        Ok(())
    }

    async fn read(&mut self, max: usize) -> Result<Vec<(u64, BrokerMessage)>, String> {
        if self.conn.is_none() {
            self.open().await?;
        }
        let Some(conn) = self.conn.as_mut() else {
            return Err("not connected".into());
        };
        let deadline = tokio::time::Instant::now() + RECEIVE_WAIT;
        let got = loop {
            let got = conn.buffer.take(max.max(1));
            if !got.is_empty() {
                break got;
            }
            // A notice given before this wait is kept for it.
            if tokio::time::timeout_at(deadline, conn.buffer.ready.notified())
                .await
                .is_err()
            {
                return Ok(Vec::new());
            }
        };
        let mut out = Vec::with_capacity(got.len());
        for m in got {
            match m {
                Ok(publish) => {
                    let message = BrokerMessage {
                        body: publish.payload.clone(),
                        headers: headers_of(publish.properties.as_ref()),
                        key: None,
                    };
                    self.next += 1;
                    // A QoS 0 message needs no ack; it is settled as any.
                    self.pending.insert(self.next, publish);
                    out.push((self.next, message));
                }
                Err(e) => {
                    // What was read on this connection comes again on the
                    // next; the messages of this batch are not handed out.
                    self.drop_connection();
                    return Err(format!("connection lost: {e}"));
                }
            }
        }
        Ok(out)
    }

    fn drop_connection(&mut self) {
        self.conn = None;
        self.pending.clear();
    }

    /// Publishes the dead letters and waits until the broker acknowledged
    /// each: the result per dead letter, in order.
    async fn dead_letters(
        conn: &mut Connection,
        topic: &str,
        letters: Vec<(Publish, &'static str, String)>,
    ) -> Result<Vec<bool>, String> {
        let n = letters.len();
        for (original, code, reason) in letters {
            let from = String::from_utf8_lossy(&original.topic).into_owned();
            let properties =
                dead_letter_properties(original.properties.as_ref(), &from, code, &reason);
            conn.client
                .publish_with_properties(
                    topic,
                    QoS::AtLeastOnce,
                    false,
                    original.payload.clone(),
                    properties,
                )
                .await
                .map_err(|e| e.to_string())?;
        }
        // Only dead letters are published on this connection, one by one
        // in order, so the k-th publish sent is the k-th dead letter; its
        // PUBACK comes after it was sent.
        let mut sent: HashMap<u16, usize> = HashMap::new();
        let mut results: Vec<Option<bool>> = vec![None; n];
        let mut sent_count = 0;
        let waited = tokio::time::timeout(DEAD_LETTER_TIMEOUT, async {
            while results.iter().any(Option::is_none) {
                match conn.control.recv().await {
                    Some(Control::Sent(pkid)) if sent_count < n => {
                        sent.insert(pkid, sent_count);
                        sent_count += 1;
                    }
                    Some(Control::Acked(pkid, reason)) => {
                        if let Some(k) = sent.remove(&pkid) {
                            // No subscriber is not a failure of the
                            // publish: the broker took it.
                            results[k] = Some(matches!(
                                reason,
                                PubAckReason::Success | PubAckReason::NoMatchingSubscribers
                            ));
                        }
                    }
                    Some(Control::Failed(e)) => return Err(e),
                    None => return Err("the connection closed".to_owned()),
                    Some(_) => {}
                }
            }
            Ok(())
        })
        .await;
        match waited {
            Ok(Ok(())) => Ok(results.into_iter().map(|r| r == Some(true)).collect()),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(format!(
                "the broker did not acknowledge the dead letters within {} s",
                DEAD_LETTER_TIMEOUT.as_secs()
            )),
        }
    }

    async fn settle_all(&mut self, outcomes: Vec<(u64, Settlement)>) -> Result<(), String> {
        let Some(conn) = self.conn.as_mut() else {
            // Read on a connection since lost: unacknowledged, they come
            // again when the session resumes.
            return Ok(());
        };
        let mut batch = Vec::with_capacity(outcomes.len());
        for (handle, outcome) in outcomes {
            if let Some(publish) = self.pending.remove(&handle) {
                batch.push((publish, outcome));
            }
        }
        let dead_letter_topic = self.config.dead_letter_topic.clone();
        let dead_letter_topic = dead_letter_topic.as_deref();
        let letters: Vec<_> = batch
            .iter()
            .filter_map(|(publish, outcome)| match (dead_letter_topic, outcome) {
                (Some(_), Settlement::Rejected(r)) => {
                    Some((publish.clone(), r.code, r.reason.clone()))
                }
                _ => None,
            })
            .collect();
        let mut written = Vec::new().into_iter();
        if let (Some(topic), false) = (dead_letter_topic, letters.is_empty()) {
            written = Self::dead_letters(conn, topic, letters)
                .await
                .map_err(|e| format!("writing dead letters to {topic} failed: {e}"))?
                .into_iter();
        }
        // In the order received, as MQTT asks of PUBACKs; one left out
        // comes again once the connection is made anew.
        let mut refused_dead_letter = false;
        let mut left = false;
        for (publish, outcome) in &batch {
            let ack = match outcome {
                Settlement::Accepted { .. } => true,
                Settlement::Rejected(_) if dead_letter_topic.is_some() => {
                    let ok = written.next().unwrap_or(false);
                    refused_dead_letter |= !ok;
                    ok
                }
                // The rejected log holds it: nothing else to keep.
                Settlement::Rejected(_) => true,
                Settlement::Later(_) => false,
            };
            if ack {
                conn.client.ack(publish).await.map_err(|e| e.to_string())?;
            } else {
                left = true;
            }
        }
        if left {
            // MQTT has no negative acknowledgement: the broker sends an
            // unacknowledged message again only on a new connection.
            self.close().await;
        }
        if refused_dead_letter {
            return Err(format!(
                "the broker refused a dead letter on {}",
                dead_letter_topic.unwrap_or_default()
            ));
        }
        Ok(())
    }

    /// Closes the connection after what was queued on it (acks) is sent.
    async fn close(&mut self) {
        self.pending.clear();
        if let Some(mut conn) = self.conn.take() {
            if conn.client.disconnect().await.is_ok() {
                let _ = tokio::time::timeout(Duration::from_secs(5), &mut conn.task).await;
            }
            conn.task.abort();
        }
    }
}

impl BrokerConsumer for MqttConsumer {
    fn receive(&mut self, max: usize) -> BoxFuture<'_, Result<Vec<(u64, BrokerMessage)>, String>> {
        Box::pin(self.read(max))
    }

    fn settle(&mut self, outcomes: Vec<(u64, Settlement)>) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let settled = self.settle_all(outcomes).await;
            if settled.is_err() {
                // What was not acknowledged comes again on a new connection.
                self.close().await;
            }
            settled
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_engine::broker_intake::BrokerKinds as _;

    fn config(extra: serde_json::Value) -> Result<MqttConfig, BrokerConfigError> {
        let mut v = serde_json::json!({"url": "mqtt://127.0.0.1:1883", "topic": "orders/#"});
        if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            for (k, x) in e {
                o.insert(k.clone(), x.clone());
            }
        }
        let c: MqttConfig =
            serde_json::from_value(v).map_err(|e| BrokerConfigError::new("", e.to_string()))?;
        c.check().map(|()| c)
    }

    fn refused(extra: serde_json::Value) -> String {
        config(extra).unwrap_err().field
    }

    #[test]
    fn configurations_are_refused_naming_the_field() {
        assert!(config(serde_json::json!({})).is_ok());
        for url in [
            "mqtts://127.0.0.1:8883",
            "ws://h:80",
            "http://h",
            "mqtt://",
            "mqtt://h:1883/path",
            "mqtt://h:1883?x=1",
            "not a url",
        ] {
            assert_eq!(refused(serde_json::json!({ "url": url })), "url", "{url}");
        }
        for topic in ["", "a/#/b", "a/b#", "a+/b", "#/a", "$share/g/a", "a\0b"] {
            assert_eq!(
                refused(serde_json::json!({ "topic": topic })),
                "topic",
                "{topic}"
            );
        }
        for group in ["a/b", "a+", "#"] {
            assert_eq!(
                refused(serde_json::json!({ "sharedGroup": group })),
                "sharedGroup"
            );
        }
        for dead in ["orders/dead", "", "dead/+", "dead/#"] {
            assert_eq!(
                refused(serde_json::json!({ "deadLetterTopic": dead })),
                "deadLetterTopic",
                "{dead}"
            );
        }
        assert!(config(serde_json::json!({"deadLetterTopic": "dead/orders"})).is_ok());
        assert_eq!(
            refused(serde_json::json!({"keepAliveSecs": 4})),
            "keepAliveSecs"
        );
        assert_eq!(refused(serde_json::json!({"clientId": ""})), "clientId");
        // Unknown fields, through the registry.
        let e = crate::BrokerConfig::parse(&serde_json::json!({
            "type": "mqtt", "url": "mqtt://h", "topic": "t", "qos": 2
        }))
        .unwrap_err();
        assert!(e.message.contains("qos"), "{e}");
        let e = crate::BrokerConfig::parse(&serde_json::json!({
            "type": "mqtt", "url": "mqtt://h", "topic": "t", "keepAliveSecs": "soon"
        }))
        .unwrap_err();
        assert_eq!(e.field, "keepAliveSecs");
    }

    #[test]
    fn urls_give_the_server_and_hide_the_password() {
        let c = config(serde_json::json!({"url": "mqtt://us%40er:p%2Fss@broker.local"})).unwrap();
        assert_eq!(
            c.server().unwrap(),
            Server {
                host: "broker.local".into(),
                port: 1883,
                credentials: Some(("us@er".into(), "p/ss".into())),
            }
        );
        let shown = crate::Kinds.redact(&serde_json::json!({
            "type": "mqtt", "url": "mqtt://u:hunter2@127.0.0.1:1883", "topic": "t"
        }));
        assert_eq!(shown["url"], "mqtt://u:********@127.0.0.1:1883");
        assert_eq!(shown["type"], "mqtt");
        let reads = crate::Kinds
            .reads(&serde_json::json!({
                "type": "mqtt", "url": "mqtt://u:hunter2@127.0.0.1:1883", "topic": "t/+"
            }))
            .unwrap();
        assert_eq!(reads, "mqtt mqtt://127.0.0.1:1883 t/+ switchyard");
    }

    #[test]
    fn subscriptions_and_client_ids() {
        let shared = config(serde_json::json!({})).unwrap();
        assert_eq!(shared.subscription(), "$share/switchyard/orders/#");
        let own = config(serde_json::json!({"sharedGroup": ""})).unwrap();
        assert_eq!(own.subscription(), "orders/#");
        let a = shared.client_id("node-a");
        assert_eq!(a, shared.client_id("node-a"), "stable");
        assert_ne!(a, shared.client_id("node-b"), "one session per node");
        assert_ne!(a, own.client_id("node-a"), "one session per subscription");
        assert!(a.len() <= 23 && a.starts_with("switchyard-"), "{a}");
        // Fixed across builds: the broker's session hangs on it.
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        let fixed = config(serde_json::json!({"clientId": "mine"})).unwrap();
        assert_eq!(fixed.client_id("node-a"), "mine");
    }

    #[test]
    fn topic_filters_match_as_a_broker_does() {
        let cases = [
            ("a/b", "a/b", true),
            ("a/b", "a/c", false),
            ("a/+", "a/b", true),
            ("a/+", "a/b/c", false),
            ("a/+", "a", false),
            ("a/+", "a/", true),
            ("+/+", "/x", true),
            ("a/#", "a", true),
            ("a/#", "a/b/c", true),
            ("a/#", "ab", false),
            ("#", "anything/at/all", true),
            ("#", "$SYS/x", false),
            ("+/x", "$SYS/x", false),
            ("$SYS/#", "$SYS/x", true),
            ("$share/g/a/+", "a/b", true),
            ("$share/g/a/+", "b/b", false),
            ("$share/g", "g", false),
            ("a/+/c", "a/b/c", true),
            ("a/+/c", "a/b/d", false),
        ];
        for (filter, topic, expected) in cases {
            assert_eq!(topic_matches(filter, topic), expected, "{filter} {topic}");
        }
    }

    #[test]
    fn user_properties_and_content_type_are_headers() {
        let properties = PublishProperties {
            user_properties: vec![
                ("switchyard-event-type".into(), "order.paid".into()),
                ("switchyard-event-id".into(), "e1".into()),
            ],
            content_type: Some("application/json".into()),
            ..Default::default()
        };
        assert_eq!(
            headers_of(Some(&properties)),
            vec![
                ("switchyard-event-type".to_owned(), "order.paid".to_owned()),
                ("switchyard-event-id".to_owned(), "e1".to_owned()),
                ("content-type".to_owned(), "application/json".to_owned()),
            ]
        );
        assert!(headers_of(None).is_empty());
        let dead = dead_letter_properties(Some(&properties), "orders/1", "not_json", "why");
        assert_eq!(dead.content_type.as_deref(), Some("application/json"));
        assert_eq!(
            &dead.user_properties[2..],
            &[
                ("rejected-code".to_owned(), "not_json".to_owned()),
                ("rejected-reason".to_owned(), "why".to_owned()),
                ("original-topic".to_owned(), "orders/1".to_owned()),
            ]
        );
    }
}
