//! RabbitMQ (AMQP 0-9-1) as a broker source: a consumer on one queue, with
//! manual acknowledgements and a prefetch window.
//!
//! - **Messages**: the body is the broker message's body; AMQP headers whose
//!   values are text (long and short strings that are UTF-8, integers,
//!   floats, booleans, rendered as text) are its headers, so
//!   `switchyard-event-type` may be a header. Binary, decimal, timestamp,
//!   array and table values are left out: they cannot name anything. The
//!   `type` property is *not* read as the event type: its presence would
//!   switch an envelope body to the header form, and producers set it for
//!   their own reasons.
//! - **Acknowledged after commit**: a delivery is acked only once the engine
//!   has committed it; consecutive acks share one `basic.ack` with
//!   `multiple`. Until then it is unacked, and a crash or a lost connection
//!   gives it back to the queue (RabbitMQ requeues what a closed channel
//!   held).
//! - **Idempotency**: a redelivery is one message through its `eventId`.
//!   Without one, the `message_id` property names the message
//!   (`amqp:<queue>:<message_id>`). AMQP has no other stable name for a
//!   message (a delivery tag is per channel and changes on redelivery), so a
//!   message with neither that is redelivered after a crash between commit
//!   and ack becomes a second message.
//! - **Dead letters**: a message that can never be a message is published,
//!   with its properties, headers and body and the headers
//!   `x-switchyard-rejected-code` and `x-switchyard-rejected-reason`, to
//!   `deadLetterExchange` (default: the default exchange) with
//!   `deadLetterRoutingKey` (default: `<queue>.dead`, a durable queue
//!   Switchyard declares). It is published mandatory and persistent with
//!   publisher confirms, and the original is acked only after the broker
//!   confirmed the dead letter; an unroutable or refused dead letter leaves
//!   the original in the queue (requeued) and the settle fails naming the
//!   dead-letter target.
//! - **Several nodes**: every node is a competing consumer of the same
//!   queue; RabbitMQ spreads messages over them and requeues what a dead
//!   node held unacked. Nothing else is needed.
//! - **Backlog**: the queue's ready messages (a passive `queue.declare`);
//!   AMQP does not report the unacked ones, so they are not counted.

use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::uri::AMQPUri;
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};
use std::collections::HashMap;
use std::time::Duration;
use switchyard_engine::broker_intake::{
    BrokerConfigError, BrokerConsumer, BrokerMessage, Settlement, broker_key,
};

/// Where a RabbitMQ source reads.
#[derive(Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RabbitMqConfig {
    /// `amqp://user:password@host:port/vhost` (or `amqps://`); the vhost is
    /// percent-encoded, `%2f` for `/`.
    pub url: String,
    pub queue: String,
    /// Unacked messages the broker may hand this node at once, 1 to 10000
    /// [default: 250]. Keep it above the source's `batch_size`, so the next
    /// batch is on its way while one is being committed; memory holds up
    /// to this many messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefetch: Option<u32>,
    /// The exchange rejected messages are published to [default: the
    /// default exchange, `""`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_exchange: Option<String>,
    /// Their routing key [default: `<queue>.dead`]; with the default
    /// exchange it is the dead-letter queue's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_routing_key: Option<String>,
    /// Declare the queue (and, with the default exchange, the dead-letter
    /// queue) durable when missing [default: true]. An existing queue is
    /// used as it is, whatever its type and arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub declare: Option<bool>,
}

impl std::fmt::Debug for RabbitMqConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RabbitMqConfig")
            .field("queue", &self.queue)
            .field("prefetch", &self.prefetch)
            .finish_non_exhaustive()
    }
}

/// Longest name AMQP carries (a short string).
const MAX_NAME: usize = 255;
/// Default prefetch: two and a half default batches (100).
const DEFAULT_PREFETCH: u32 = 250;

impl RabbitMqConfig {
    /// Refuses what can never work, naming the field: a URL that does not
    /// parse as `amqp://` or `amqps://`, an empty queue, names longer than
    /// AMQP carries (255 bytes), a prefetch outside 1 to 10000, and a
    /// dead-letter target that is the queue itself (each rejected message
    /// would be read and rejected again, for ever).
    pub fn check(&self) -> Result<(), BrokerConfigError> {
        self.url
            .parse::<AMQPUri>()
            .map_err(|e| BrokerConfigError::new("url", e))?;
        if self.queue.is_empty() {
            return Err(BrokerConfigError::new("queue", "must not be empty"));
        }
        if self.queue.len() > MAX_NAME {
            return Err(BrokerConfigError::new(
                "queue",
                format!("must be at most {MAX_NAME} bytes"),
            ));
        }
        if let Some(p) = self.prefetch
            && !(1..=10_000).contains(&p)
        {
            return Err(BrokerConfigError::new("prefetch", "must be 1 to 10000"));
        }
        let exchange = self.dead_letter_exchange();
        if exchange.len() > MAX_NAME {
            return Err(BrokerConfigError::new(
                "deadLetterExchange",
                format!("must be at most {MAX_NAME} bytes"),
            ));
        }
        let key = self.dead_letter_routing_key();
        if key.len() > MAX_NAME {
            return Err(BrokerConfigError::new(
                "deadLetterRoutingKey",
                format!("must be at most {MAX_NAME} bytes (the default is <queue>.dead)"),
            ));
        }
        if exchange.is_empty() {
            // The default exchange routes by queue name.
            if key.is_empty() {
                return Err(BrokerConfigError::new(
                    "deadLetterRoutingKey",
                    "must name the dead-letter queue when deadLetterExchange is the default exchange",
                ));
            }
            if key == self.queue {
                return Err(BrokerConfigError::new(
                    "deadLetterRoutingKey",
                    "must not be the queue itself",
                ));
            }
        }
        Ok(())
    }

    /// The server (scheme, host and port, without credentials), vhost and
    /// queue: one source per queue.
    pub fn reads(&self) -> String {
        let (scheme, port, vhost) = match self.url.parse::<AMQPUri>() {
            Ok(u) => (u.scheme.to_string(), u.authority.port, u.vhost),
            Err(_) => (String::new(), 0, String::new()),
        };
        let host = url::Url::parse(&self.url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
            .unwrap_or_default();
        format!(
            "rabbitmq {scheme}://{host}:{port} vhost {vhost} queue {}",
            self.queue
        )
    }

    /// Shown without the URL's password.
    pub fn redacted(&self) -> Self {
        Self {
            url: crate::redact_url(&self.url),
            ..self.clone()
        }
    }

    /// The exchange rejected messages go to (`""`: the default one).
    pub fn dead_letter_exchange(&self) -> &str {
        self.dead_letter_exchange.as_deref().unwrap_or("")
    }

    /// The routing key rejected messages go with.
    pub fn dead_letter_routing_key(&self) -> String {
        self.dead_letter_routing_key
            .clone()
            .unwrap_or_else(|| format!("{}.dead", self.queue))
    }

    fn declares(&self) -> bool {
        self.declare.unwrap_or(true)
    }

    /// The dead-letter target, in messages.
    fn dead_letter_target(&self) -> String {
        match self.dead_letter_exchange() {
            "" => format!("queue {}", self.dead_letter_routing_key()),
            exchange => format!(
                "exchange {exchange} (routing key {})",
                self.dead_letter_routing_key()
            ),
        }
    }
}

/// How long one receive waits for the first message.
const WAIT: Duration = Duration::from_secs(1);
/// How long opening a connection, or a dead letter's confirm, may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// A connection with its consuming channel.
struct Link {
    /// Kept so the connection lives as long as the link; dropping it closes
    /// the connection, and RabbitMQ requeues what it held unacked.
    _connection: Connection,
    channel: Channel,
    consumer: lapin::Consumer,
    /// Publishes dead letters (in confirm mode) and asks for the backlog:
    /// a channel of its own, since a refused publish or declare closes the
    /// channel it was sent on. Opened when needed.
    side: Option<Channel>,
}

/// What settling a message needs after the engine took it.
struct Held {
    tag: u64,
    body: bytes::Bytes,
    properties: BasicProperties,
}

/// A consumer of one queue, as one node of a source.
pub struct RabbitMqConsumer {
    config: RabbitMqConfig,
    /// This node's id, to name the connection and the consumer tag.
    consumer: String,
    /// `None` after the connection or channel failed: opened anew before
    /// the next read.
    link: Option<Link>,
    /// Messages handed out and not yet settled, by handle. Handles are this
    /// consumer's own count, not delivery tags, so a handle from before a
    /// reconnect never names a delivery of the new channel.
    held: HashMap<u64, Held>,
    next: u64,
}

fn amqp_error(e: lapin::Error) -> String {
    e.to_string()
}

fn name(s: &str) -> Result<ShortString, String> {
    ShortString::try_new(s).map_err(|e| e.to_string())
}

impl RabbitMqConsumer {
    /// Connects as `consumer` (this node's id), declares the queues when
    /// asked to, and starts consuming.
    pub async fn connect(config: RabbitMqConfig, consumer: String) -> Result<Self, String> {
        let link = open(&config, &consumer).await?;
        Ok(Self {
            config,
            consumer,
            link: Some(link),
            held: HashMap::new(),
            next: 0,
        })
    }

    async fn read(&mut self, max: usize) -> Result<Vec<(u64, BrokerMessage)>, String> {
        let link = match &mut self.link {
            Some(link) => link,
            None => {
                // What the old channel held is back in the queue.
                self.held.clear();
                self.link.insert(open(&self.config, &self.consumer).await?)
            }
        };
        let mut out = Vec::new();
        let Ok(mut next) = tokio::time::timeout(WAIT, link.consumer.next()).await else {
            return Ok(out);
        };
        // Then only what is already here: a batch never waits for more.
        loop {
            let delivery = match next {
                Some(Ok(d)) => d,
                Some(Err(e)) => {
                    self.link = None;
                    return Err(amqp_error(e));
                }
                None => {
                    self.link = None;
                    return Err(format!(
                        "RabbitMQ cancelled the consumer of queue {} (deleted?)",
                        self.config.queue
                    ));
                }
            };
            let lapin::message::Delivery {
                delivery_tag,
                data,
                properties,
                ..
            } = delivery;
            let message = BrokerMessage {
                body: data.into(),
                headers: properties.headers().as_ref().map(texts).unwrap_or_default(),
                key: properties
                    .message_id()
                    .as_ref()
                    .filter(|id| !id.as_str().is_empty())
                    .map(|id| broker_key(&format!("amqp:{}:{}", self.config.queue, id))),
            };
            self.next += 1;
            self.held.insert(
                self.next,
                Held {
                    tag: delivery_tag,
                    body: message.body.clone(),
                    properties,
                },
            );
            out.push((self.next, message));
            if out.len() >= max {
                break;
            }
            match link.consumer.next().now_or_never() {
                Some(n) => next = n,
                None => break,
            }
        }
        Ok(out)
    }

    async fn settle_all(&mut self, outcomes: Vec<(u64, Settlement)>) -> Result<(), String> {
        let Some(link) = &mut self.link else {
            // The channel is gone, and its unacked messages with it.
            self.held.clear();
            return Ok(());
        };
        // Each message's delivery tag and whether it is acked (else
        // requeued), in the order received.
        let mut verdicts: Vec<(u64, bool)> = Vec::with_capacity(outcomes.len());
        let mut confirms = Vec::new();
        let mut failed = None;
        for (handle, outcome) in outcomes {
            let Some(held) = self.held.remove(&handle) else {
                continue;
            };
            match outcome {
                Settlement::Accepted { .. } => verdicts.push((held.tag, true)),
                // Requeued; read again after the back-off.
                Settlement::Later(_) => verdicts.push((held.tag, false)),
                Settlement::Rejected(rejection) => {
                    // Published now, confirmed below all together.
                    let published = publish_dead(
                        link,
                        &self.config,
                        held.body,
                        held.properties,
                        rejection.code,
                        &rejection.reason,
                    );
                    match published.await {
                        Ok(confirm) => confirms.push((verdicts.len(), confirm)),
                        Err(e) => {
                            failed.get_or_insert(e);
                        }
                    }
                    verdicts.push((held.tag, false));
                }
            }
        }
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        for (at, confirm) in confirms {
            let problem = match tokio::time::timeout_at(deadline, confirm).await {
                Ok(Ok(Confirmation::Ack(None))) => {
                    verdicts[at].1 = true;
                    continue;
                }
                Ok(Ok(Confirmation::Ack(Some(_)))) => "it could not be routed".to_owned(),
                Ok(Ok(Confirmation::Nack(_))) => "the broker refused it".to_owned(),
                Ok(Ok(Confirmation::NotRequested)) => "it was not confirmed".to_owned(),
                Ok(Err(e)) => {
                    link.side = None;
                    amqp_error(e)
                }
                Err(_) => {
                    link.side = None;
                    format!("no confirm within {} s", TIMEOUT.as_secs())
                }
            };
            failed.get_or_insert(format!(
                "writing the dead letter to {} failed: {problem}",
                self.config.dead_letter_target()
            ));
        }
        // A run of acks (or requeues) is one frame with `multiple`, which
        // also covers every unsettled delivery below it on the channel: so
        // only when no message received is left out of this settle.
        let whole = self.held.is_empty();
        let channel = &link.channel;
        let mut run: Option<(u64, bool)> = None;
        for (tag, ack) in verdicts {
            if !whole {
                settle_one(channel, tag, ack, false).await?;
                continue;
            }
            if let Some((last, kind)) = run
                && kind != ack
            {
                settle_one(channel, last, kind, true).await?;
            }
            run = Some((tag, ack));
        }
        if let Some((last, kind)) = run {
            settle_one(channel, last, kind, true).await?;
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Acks (or requeues) `tag`, and with `multiple` every unsettled delivery
/// below it.
async fn settle_one(channel: &Channel, tag: u64, ack: bool, multiple: bool) -> Result<(), String> {
    if ack {
        channel
            .basic_ack(tag, BasicAckOptions { multiple })
            .await
            .map_err(amqp_error)
    } else {
        channel
            .basic_nack(
                tag,
                BasicNackOptions {
                    multiple,
                    requeue: true,
                },
            )
            .await
            .map_err(amqp_error)
    }
}

/// Publishes a rejected message's dead letter, mandatory and persistent,
/// on the side channel (opened in confirm mode when needed).
async fn publish_dead(
    link: &mut Link,
    config: &RabbitMqConfig,
    body: bytes::Bytes,
    properties: BasicProperties,
    code: &str,
    reason: &str,
) -> Result<lapin::PublisherConfirm, String> {
    let failed = |e: String| {
        format!(
            "writing the dead letter to {} failed: {e}",
            config.dead_letter_target()
        )
    };
    let side = side_channel(link).await.map_err(failed)?;
    // The producer's headers are kept; ours replace any of the same name.
    let mut headers = properties.headers().clone().unwrap_or_default();
    headers.insert(
        "x-switchyard-rejected-code".into(),
        AMQPValue::LongString(code.into()),
    );
    headers.insert(
        "x-switchyard-rejected-reason".into(),
        AMQPValue::LongString(reason.into()),
    );
    let properties = properties.with_headers(headers).with_delivery_mode(2);
    let published = side
        .basic_publish(
            name(config.dead_letter_exchange()).map_err(failed)?,
            name(&config.dead_letter_routing_key()).map_err(failed)?,
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            &body,
            properties,
        )
        .await;
    published.map_err(|e| {
        link.side = None;
        failed(amqp_error(e))
    })
}

/// The side channel, opened (in confirm mode) when there is none or the
/// last one was closed.
async fn side_channel(link: &mut Link) -> Result<Channel, String> {
    if let Some(side) = &link.side
        && side.status().connected()
    {
        return Ok(side.clone());
    }
    let side = link
        ._connection
        .create_channel()
        .await
        .map_err(amqp_error)?;
    side.confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(amqp_error)?;
    link.side = Some(side.clone());
    Ok(side)
}

/// Opens a connection and a consuming channel on the queue, declaring the
/// queues first when the configuration asks for it.
async fn open(config: &RabbitMqConfig, consumer: &str) -> Result<Link, String> {
    let properties = ConnectionProperties::default()
        .with_connection_name(LongString::from(format!("switchyard {consumer}")));
    let connection = tokio::time::timeout(TIMEOUT, Connection::connect(&config.url, properties))
        .await
        .map_err(|_| format!("no answer from RabbitMQ within {} s", TIMEOUT.as_secs()))?
        .map_err(amqp_error)?;
    if config.declares() {
        ensure_queue(&connection, &config.queue).await?;
        if config.dead_letter_exchange().is_empty() {
            ensure_queue(&connection, &config.dead_letter_routing_key()).await?;
        }
    }
    let channel = connection.create_channel().await.map_err(amqp_error)?;
    let prefetch = config.prefetch.unwrap_or(DEFAULT_PREFETCH).clamp(1, 10_000);
    channel
        .basic_qos(
            u16::try_from(prefetch).unwrap_or(u16::MAX),
            BasicQosOptions::default(),
        )
        .await
        .map_err(amqp_error)?;
    let tag = ShortString::try_new(format!("switchyard-{consumer}")).unwrap_or_default();
    let consumer = channel
        .basic_consume(
            name(&config.queue)?,
            tag,
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(amqp_error)?;
    Ok(Link {
        _connection: connection,
        channel,
        consumer,
        side: None,
    })
}

/// Declares `queue` durable. An existing queue of another type or with
/// other arguments refuses that declaration; then it is only checked to
/// exist (passively) and used as it is. Each try is on a channel of its own,
/// as a refused declaration closes its channel.
async fn ensure_queue(connection: &Connection, queue: &str) -> Result<(), String> {
    let channel = connection.create_channel().await.map_err(amqp_error)?;
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    let declared = channel
        .queue_declare(name(queue)?, durable, FieldTable::default())
        .await;
    let Err(refused) = declared else {
        return Ok(());
    };
    let probe = connection.create_channel().await.map_err(amqp_error)?;
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    match probe
        .queue_declare(name(queue)?, passive, FieldTable::default())
        .await
    {
        Ok(_) => Ok(()),
        Err(_) => Err(format!("declaring queue {queue} failed: {refused}")),
    }
}

/// The headers whose values are text, as text.
fn texts(table: &FieldTable) -> Vec<(String, String)> {
    table
        .inner()
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), text(v)?)))
        .collect()
}

fn text(value: &AMQPValue) -> Option<String> {
    Some(match value {
        AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes()).ok()?.to_owned(),
        AMQPValue::ShortString(s) => s.as_str().to_owned(),
        AMQPValue::Boolean(b) => b.to_string(),
        AMQPValue::ShortShortInt(n) => n.to_string(),
        AMQPValue::ShortShortUInt(n) => n.to_string(),
        AMQPValue::ShortInt(n) => n.to_string(),
        AMQPValue::ShortUInt(n) => n.to_string(),
        AMQPValue::LongInt(n) => n.to_string(),
        AMQPValue::LongUInt(n) => n.to_string(),
        AMQPValue::LongLongInt(n) => n.to_string(),
        AMQPValue::Float(n) => n.to_string(),
        AMQPValue::Double(n) => n.to_string(),
        _ => return None,
    })
}

impl BrokerConsumer for RabbitMqConsumer {
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
                // An ack or requeue failed: the channel is gone; its
                // unacked messages are back in the queue.
                self.link = None;
            }
            settled
        })
    }

    fn backlog(&mut self) -> BoxFuture<'_, Result<Option<u64>, String>> {
        Box::pin(async move {
            let Some(link) = &mut self.link else {
                return Ok(None);
            };
            let side = side_channel(link).await?;
            let passive = QueueDeclareOptions {
                passive: true,
                ..Default::default()
            };
            match side
                .queue_declare(name(&self.config.queue)?, passive, FieldTable::default())
                .await
            {
                Ok(queue) => Ok(Some(u64::from(queue.message_count()))),
                Err(e) => {
                    link.side = None;
                    Err(amqp_error(e))
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(v: serde_json::Value) -> Result<RabbitMqConfig, BrokerConfigError> {
        let c: RabbitMqConfig =
            serde_json::from_value(v).map_err(|e| BrokerConfigError::new("", e.to_string()))?;
        c.check().map(|_| c)
    }

    const URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

    #[test]
    fn configurations_that_cannot_work_are_refused_naming_the_field() {
        let refused = |v: serde_json::Value| config(v).unwrap_err().field;
        let ok = config(serde_json::json!({"url": URL, "queue": "orders"})).unwrap();
        assert_eq!(ok.dead_letter_routing_key(), "orders.dead");
        assert_eq!(ok.dead_letter_exchange(), "");
        assert!(ok.declares());
        config(serde_json::json!({"url": "amqps://u:p@mq.example.com/prod", "queue": "q", "prefetch": 10000})).unwrap();
        config(serde_json::json!({"url": URL, "queue": "q", "deadLetterExchange": "dlx", "deadLetterRoutingKey": "q"})).unwrap();

        assert_eq!(
            refused(serde_json::json!({"url": "http://x/", "queue": "q"})),
            "url"
        );
        assert_eq!(
            refused(serde_json::json!({"url": "not a url", "queue": "q"})),
            "url"
        );
        assert_eq!(
            refused(serde_json::json!({"url": URL, "queue": ""})),
            "queue"
        );
        assert_eq!(
            refused(serde_json::json!({"url": URL, "queue": "q".repeat(256)})),
            "queue"
        );
        assert_eq!(
            refused(serde_json::json!({"url": URL, "queue": "q".repeat(252)})),
            "deadLetterRoutingKey"
        );
        for p in [0, 10_001] {
            assert_eq!(
                refused(serde_json::json!({"url": URL, "queue": "q", "prefetch": p})),
                "prefetch"
            );
        }
        assert_eq!(
            refused(serde_json::json!({"url": URL, "queue": "q", "deadLetterRoutingKey": "q"})),
            "deadLetterRoutingKey"
        );
        assert_eq!(
            refused(
                serde_json::json!({"url": URL, "queue": "q", "deadLetterExchange": "", "deadLetterRoutingKey": ""})
            ),
            "deadLetterRoutingKey"
        );
        assert_eq!(
            refused(
                serde_json::json!({"url": URL, "queue": "q", "deadLetterExchange": "x".repeat(256)})
            ),
            "deadLetterExchange"
        );
    }

    #[test]
    fn reads_names_the_server_vhost_and_queue_without_credentials() {
        let c = config(
            serde_json::json!({"url": "amqp://user:hunter2@MQ.local/%2f", "queue": "orders"}),
        )
        .unwrap();
        assert_eq!(
            c.reads(),
            "rabbitmq amqp://mq.local:5672 vhost / queue orders"
        );
        // The same queue however the URL spells the server.
        let same = config(
            serde_json::json!({"url": "amqp://other:pw@mq.local:5672/%2F", "queue": "orders"}),
        )
        .unwrap();
        assert_eq!(same.reads(), c.reads());
        let shown = c.redacted();
        assert_eq!(shown.url, "amqp://user:********@MQ.local/%2f");
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn text_headers_are_kept_and_binary_ones_left_out() {
        let mut table = FieldTable::default();
        table.insert(
            "switchyard-event-type".into(),
            AMQPValue::LongString("order.paid".into()),
        );
        table.insert("short".into(), AMQPValue::ShortString("s".into()));
        table.insert("n".into(), AMQPValue::LongLongInt(-42));
        table.insert("u".into(), AMQPValue::ShortShortUInt(7));
        table.insert("f".into(), AMQPValue::Double(1.5));
        table.insert("ok".into(), AMQPValue::Boolean(true));
        table.insert("bin".into(), AMQPValue::ByteArray(vec![0, 1].into()));
        table.insert(
            "not-utf8".into(),
            AMQPValue::LongString(vec![0xff, 0xfe].into()),
        );
        table.insert("ts".into(), AMQPValue::Timestamp(1));
        table.insert(
            "nested".into(),
            AMQPValue::FieldTable(FieldTable::default()),
        );
        table.insert("void".into(), AMQPValue::Void);
        let mut got = texts(&table);
        got.sort();
        let want: Vec<(String, String)> = [
            ("f", "1.5"),
            ("n", "-42"),
            ("ok", "true"),
            ("short", "s"),
            ("switchyard-event-type", "order.paid"),
            ("u", "7"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        assert_eq!(got, want);
    }
}
