//! From a broker message to an accepted message: the one decision every
//! broker source makes for each message it reads, whatever the broker.
//! The answer tells the source how to settle the message with its broker:
//! acknowledge it (the message and its deliveries are committed, or were
//! by an earlier delivery of the same `eventId`), dead-letter it (it can
//! never become a message; the reason goes to the rejected log), or leave
//! it for later (the store could not take it now; the source backs off).

use crate::publish::MessageRequest;
use crate::{Engine, EngineError};
use futures_util::future::BoxFuture;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchyard_core::envelope::{Rejection, read_envelope};
use switchyard_core::{BrokerSourceId, MessageId};
use switchyard_store::{BrokerSourceStats, StoreError};

/// One message as a broker delivered it: the body and the headers (AMQP
/// headers, NATS headers, Kafka headers, SQS and Pub/Sub attributes, MQTT 5
/// user properties) whose values are text.
#[derive(Debug, Clone, Default)]
pub struct BrokerMessage {
    pub body: bytes::Bytes,
    pub headers: Vec<(String, String)>,
    /// Names this message in its broker (stream and entry id, topic and
    /// offset, ...): used as the idempotency key when the message has no
    /// `eventId`, so reading it twice makes one message.
    pub key: Option<String>,
}

/// The idempotency key of a broker message named `name` in its broker. It
/// starts with a control character, which an `Idempotency-Key` header
/// cannot carry, so no API request can take a broker message's key (and
/// make the broker message count as already accepted).
pub fn broker_key(name: &str) -> String {
    format!("\u{1f}broker:{name}")
}

/// How a source settles a broker message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settlement {
    /// Committed (or already committed under its `eventId`): acknowledge.
    Accepted { message: MessageId, created: bool },
    /// Never a message: dead-letter it where the broker can, record it.
    Rejected(Rejection),
    /// Not taken now (the store is unavailable): do not acknowledge, so the
    /// broker delivers it again, and slow down.
    Later(String),
}

impl Engine {
    /// Reads `message` as an envelope and publishes it as `POST /msg`
    /// would, for the application the source is bound to (`bound_app`, id
    /// or uid) or, for an unbound source, the one the message names. A
    /// bound source refuses a message naming another application.
    pub async fn take_broker_message(
        &self,
        bound_app: Option<&str>,
        message: &BrokerMessage,
    ) -> Settlement {
        if message.body.len() > self.max_payload_bytes {
            return Settlement::Rejected(Rejection::new(
                "too_large",
                format!(
                    "the message is {} bytes; at most {} are accepted (SWITCHYARD_MAX_PAYLOAD_BYTES)",
                    message.body.len(),
                    self.max_payload_bytes
                ),
            ));
        }
        let envelope = match read_envelope(&message.body, &message.headers) {
            Ok(e) => e,
            Err(rejection) => return Settlement::Rejected(rejection),
        };
        let app = match (bound_app, envelope.app.as_deref()) {
            (Some(bound), Some(named)) if bound != named => {
                // A uid and an id of the same application are one.
                match (self.find_app(bound).await, self.find_app(named).await) {
                    (Ok(Some(a)), Ok(Some(b))) if a.id == b.id => bound.to_owned(),
                    (Err(e), _) => return Settlement::Later(e.to_string()),
                    // A name the store cannot even look up (a NUL) is the
                    // message's fault, not the store's.
                    (_, Err(e)) => return settle_error(e),
                    _ => {
                        return Settlement::Rejected(Rejection::new(
                            "app_mismatch",
                            format!(
                                "the source is bound to application '{bound}'; the message names '{named}'"
                            ),
                        ));
                    }
                }
            }
            (Some(bound), _) => bound.to_owned(),
            (None, Some(named)) => named.to_owned(),
            (None, None) => {
                return Settlement::Rejected(Rejection::new(
                    "missing_app",
                    "the source is bound to no application and the message names none (set app in the envelope or the switchyard-app header)",
                ));
            }
        };
        let request = MessageRequest {
            event_type: envelope.event_type,
            payload: envelope.payload,
            event_id: envelope.event_id,
            channels: envelope.channels,
            tags: envelope.tags,
            idempotency_key: message.key.clone(),
            application: None,
        };
        match self.publish(&app, request).await {
            Ok(accepted) => Settlement::Accepted {
                message: accepted.message.id,
                created: accepted.created,
            },
            // A bound application that does not exist is the source's
            // configuration, not the message's fault: kept, not dead-lettered.
            Err(EngineError::NotFound("application")) if bound_app.is_some() => Settlement::Later(
                format!("the source is bound to application '{app}', which does not exist"),
            ),
            Err(e) => settle_error(e),
        }
    }
}

/// A broker's consumer as a source runs it. Each broker implements it
/// with its own client: reading in batches, and settling each message as
/// [`Settlement`] says (acknowledge; dead-letter where the broker has a
/// mechanism, else acknowledge after the rejection is recorded; release
/// for redelivery).
pub trait BrokerConsumer: Send {
    /// Up to `max` messages, each with a handle that names it to
    /// [`Self::settle`]; an empty batch when none came within about a
    /// second. An error is the broker's (connection lost, ...).
    fn receive(&mut self, max: usize) -> BoxFuture<'_, Result<Vec<(u64, BrokerMessage)>, String>>;
    /// Settles messages received before, in the order received.
    fn settle(&mut self, outcomes: Vec<(u64, Settlement)>) -> BoxFuture<'_, Result<(), String>>;
    /// Messages waiting in the broker for this source (not yet delivered
    /// to any consumer, plus delivered and not yet acknowledged), where the
    /// broker reports it; `None` where it does not. Asked every few
    /// seconds between batches, so it must be one cheap request.
    fn backlog(&mut self) -> BoxFuture<'_, Result<Option<u64>, String>> {
        Box::pin(async { Ok(None) })
    }
}

impl<C: BrokerConsumer + ?Sized> BrokerConsumer for Box<C> {
    fn receive(&mut self, max: usize) -> BoxFuture<'_, Result<Vec<(u64, BrokerMessage)>, String>> {
        (**self).receive(max)
    }

    fn settle(&mut self, outcomes: Vec<(u64, Settlement)>) -> BoxFuture<'_, Result<(), String>> {
        (**self).settle(outcomes)
    }

    fn backlog(&mut self) -> BoxFuture<'_, Result<Option<u64>, String>> {
        (**self).backlog()
    }
}

/// A broker configuration refused: the field inside the configuration
/// (`url`, `stream`, ...; empty for the whole of it) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerConfigError {
    pub field: String,
    pub message: String,
}

impl BrokerConfigError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for BrokerConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

/// The broker kinds this binary was built with. The engine stores and
/// runs sources without knowing any broker; the `switchyard-brokers` crate
/// implements this for the kinds compiled in, and the binary hands it over.
///
/// A broker configuration is a JSON object whose `type` names the kind
/// (`{"type": "redis", "url": ..., "stream": ..., "group": ...}`).
pub trait BrokerKinds: Send + Sync {
    /// Refuses a configuration that can never work, naming the field.
    fn check(&self, broker: &serde_json::Value) -> Result<(), BrokerConfigError>;
    /// What the configuration reads, as one string (broker address, queue
    /// or stream, group): two sources reading the same would take each
    /// other's messages, so only one may.
    fn reads(&self, broker: &serde_json::Value) -> Result<String, BrokerConfigError>;
    /// The configuration as an API reader may see it: passwords in URLs
    /// and other secrets replaced by `********`.
    fn redact(&self, broker: &serde_json::Value) -> serde_json::Value;
    /// Opens a consumer of a checked configuration as `consumer` (this
    /// node's id: nodes share the source through the broker's own means).
    fn connect(
        &self,
        broker: &serde_json::Value,
        consumer: &str,
    ) -> BoxFuture<'static, Result<Box<dyn BrokerConsumer>, String>>;
}

/// One source as a node runs it.
#[derive(Debug, Clone)]
pub struct SourceRun {
    pub id: BrokerSourceId,
    /// The source's name, in log lines.
    pub name: String,
    /// The application every message goes to (id or uid); `None` lets each
    /// message name its own.
    pub app: Option<String>,
    /// Messages taken at once, 1 to 1000.
    pub batch: usize,
    /// The checked broker configuration.
    pub broker: serde_json::Value,
    /// This node's consumer name.
    pub consumer: String,
}

/// Runs a source until `stop` turns true: connects (backing off from
/// 100 ms to 5 s while the broker does not answer), then reads through
/// [`run_consumer`].
pub async fn run_source(
    engine: Arc<Engine>,
    kinds: Arc<dyn BrokerKinds>,
    run: SourceRun,
    stats: Arc<SourceStats>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(100);
    let consumer = loop {
        if *stop.borrow() {
            return;
        }
        match kinds.connect(&run.broker, &run.consumer).await {
            Ok(c) => break c,
            Err(e) => {
                stats.error(engine.now_ms(), format!("broker: {e}"));
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => return,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    };
    tracing::info!(source = %run.name, "reading the broker source");
    run_consumer(engine, &run, consumer, stats, stop).await;
}

/// What a node counted for a source since it last handed its counts over
/// ([`SourceStats::take`]), and its last error and backlog.
#[derive(Debug, Default)]
pub struct SourceStats {
    /// The source's name, in log lines.
    pub name: String,
    received: AtomicU64,
    accepted: AtomicU64,
    duplicates: AtomicU64,
    rejected: AtomicU64,
    deferred: AtomicU64,
    /// The broker's or the store's last complaint, with when (Unix ms).
    last_error: Mutex<Option<(u64, String)>>,
    /// The broker's last report of waiting messages, with when.
    backlog: Mutex<Option<(u64, u64)>>,
}

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(l) => l,
        Err(poisoned) => poisoned.into_inner(),
    }
}

impl SourceStats {
    pub fn named(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            ..Self::default()
        }
    }

    fn error(&self, at: u64, text: String) {
        tracing::warn!(source = %self.name, error = %text, "broker source trouble; backing off");
        *locked(&self.last_error) = Some((at, text));
    }

    /// Puts counts that could not be stored back, to go with the next.
    pub(crate) fn add_back(&self, d: BrokerSourceStats) {
        self.received.fetch_add(d.received, Ordering::Relaxed);
        self.accepted.fetch_add(d.accepted, Ordering::Relaxed);
        self.duplicates.fetch_add(d.duplicates, Ordering::Relaxed);
        self.rejected.fetch_add(d.rejected, Ordering::Relaxed);
        self.deferred.fetch_add(d.deferred, Ordering::Relaxed);
        if let (Some(at), Some(e)) = (d.last_error_at, d.last_error) {
            locked(&self.last_error).get_or_insert((at, e));
        }
        if let (Some(at), Some(n)) = (d.backlog_at, d.backlog) {
            locked(&self.backlog).get_or_insert((at, n));
        }
    }

    /// The counts since the last call (set back to zero), and the last
    /// error and backlog if new since then.
    pub fn take(&self) -> BrokerSourceStats {
        let take = |c: &AtomicU64| c.swap(0, Ordering::Relaxed);
        let error = locked(&self.last_error).take();
        let backlog = locked(&self.backlog).take();
        BrokerSourceStats {
            received: take(&self.received),
            accepted: take(&self.accepted),
            duplicates: take(&self.duplicates),
            rejected: take(&self.rejected),
            deferred: take(&self.deferred),
            backlog: backlog.map(|(_, n)| n),
            backlog_at: backlog.map(|(at, _)| at),
            last_error_at: error.as_ref().map(|(at, _)| *at),
            last_error: error.map(|(_, e)| e),
        }
    }
}

/// Longest pause between tries while the broker or the store fails.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// How often a running source asks its broker for the backlog.
const BACKLOG_EVERY: Duration = Duration::from_secs(5);

/// Runs a source until `stop` turns true: reads a batch of at most
/// `run.batch` messages, takes them all at once (their commits share the
/// store's group commit), records the rejected ones in the rejected log,
/// then settles the batch. So a message is acknowledged only after it is
/// committed (or its rejection is), memory holds one batch, and while the
/// broker or the store fails the source backs off (100 ms doubling to 5 s)
/// instead of reading on: the broker keeps what was not taken.
pub async fn run_consumer(
    engine: Arc<Engine>,
    run: &SourceRun,
    mut consumer: impl BrokerConsumer,
    stats: Arc<SourceStats>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let batch = run.batch.clamp(1, 1000);
    let mut backoff = Duration::ZERO;
    let mut backlog_asked: Option<tokio::time::Instant> = None;
    loop {
        if *stop.borrow() {
            return;
        }
        if !backoff.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.changed() => return,
            }
        }
        if backlog_asked.is_none_or(|at| at.elapsed() >= BACKLOG_EVERY) {
            backlog_asked = Some(tokio::time::Instant::now());
            match tokio::time::timeout(Duration::from_secs(2), consumer.backlog()).await {
                Ok(Ok(Some(n))) => *locked(&stats.backlog) = Some((engine.now_ms(), n)),
                Ok(Ok(None)) => {}
                Ok(Err(e)) => stats.error(engine.now_ms(), format!("broker: backlog: {e}")),
                Err(_) => stats.error(engine.now_ms(), "broker: backlog: no answer in 2 s".into()),
            }
        }
        let received = tokio::select! {
            r = consumer.receive(batch) => r,
            _ = stop.changed() => return,
        };
        let messages = match received {
            Ok(m) => m,
            Err(e) => {
                stats.error(engine.now_ms(), format!("broker: {e}"));
                backoff = next_backoff(backoff);
                continue;
            }
        };
        if messages.is_empty() {
            // The broker answers again: no reason to wait between reads.
            backoff = Duration::ZERO;
            continue;
        }
        stats
            .received
            .fetch_add(messages.len() as u64, Ordering::Relaxed);
        let mut settled = futures_util::future::join_all(
            messages
                .iter()
                .map(|(_, m)| engine.take_broker_message(run.app.as_deref(), m)),
        )
        .await;
        let rejected: Vec<(&BrokerMessage, &Rejection)> = messages
            .iter()
            .zip(&settled)
            .filter_map(|((_, m), s)| match s {
                Settlement::Rejected(r) => Some((m, r)),
                _ => None,
            })
            .collect();
        if !rejected.is_empty() {
            let first = rejected[0].1;
            tracing::warn!(source = %run.name, count = rejected.len(), code = first.code, reason = %first.reason, "broker messages rejected; recorded in the rejected log");
            if let Err(e) = engine.record_broker_rejections(&run.id, &rejected).await {
                // Kept with the broker until their rejection is recorded.
                let why = format!("recording rejected messages failed: {e}");
                for s in settled.iter_mut() {
                    if matches!(s, Settlement::Rejected(_)) {
                        *s = Settlement::Later(why.clone());
                    }
                }
            }
        }
        let mut store_trouble = None;
        for settlement in &settled {
            let counter = match settlement {
                Settlement::Accepted { created: true, .. } => &stats.accepted,
                Settlement::Accepted { created: false, .. } => &stats.duplicates,
                Settlement::Rejected(_) => &stats.rejected,
                Settlement::Later(e) => {
                    store_trouble = Some(e.clone());
                    &stats.deferred
                }
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
        let outcomes = messages.into_iter().map(|(h, _)| h).zip(settled).collect();
        if let Err(e) = consumer.settle(outcomes).await {
            // Unsettled messages come back; their eventId keeps them single.
            stats.error(engine.now_ms(), format!("broker: settling failed: {e}"));
            backoff = next_backoff(backoff);
            continue;
        }
        match store_trouble {
            Some(e) => {
                stats.error(engine.now_ms(), format!("store: {e}"));
                backoff = next_backoff(backoff);
            }
            None => backoff = Duration::ZERO,
        }
    }
}

fn next_backoff(current: Duration) -> Duration {
    if current.is_zero() {
        Duration::from_millis(100)
    } else {
        (current * 2).min(MAX_BACKOFF)
    }
}

/// What a refused publish means for the broker message.
fn settle_error(e: EngineError) -> Settlement {
    let rejected =
        |code, e: &EngineError| Settlement::Rejected(Rejection::new(code, e.to_string()));
    match &e {
        EngineError::NotFound(_) => rejected("unknown_app", &e),
        EngineError::Invalid { .. } | EngineError::InvalidAt { .. } => {
            rejected("invalid_message", &e)
        }
        EngineError::Conflict(_) => rejected("conflict", &e),
        EngineError::Store(StoreError::Unrepresentable(_)) => rejected("invalid_message", &e),
        // Everything else is the store's trouble, not the message's.
        EngineError::Store(_) | EngineError::Unauthorized(_) | EngineError::Forbidden(_) => {
            Settlement::Later(e.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apps::AppInput;

    fn msg(body: &str, headers: &[(&str, &str)]) -> BrokerMessage {
        BrokerMessage {
            key: None,
            body: bytes::Bytes::copy_from_slice(body.as_bytes()),
            headers: headers
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
        }
    }

    fn code(s: &Settlement) -> &'static str {
        match s {
            Settlement::Rejected(r) => r.code,
            other => panic!("not rejected: {other:?}"),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn broker_messages_are_held_to_the_rules_of_post_msg() {
        let (engine, _dir) = crate::test_engine().await;
        let app_input = |uid: &str| AppInput {
            name: uid.into(),
            uid: Some(uid.into()),
            ..Default::default()
        };
        let (shop, _) = engine.create_app(app_input("shop"), false).await.unwrap();
        engine.create_app(app_input("other"), false).await.unwrap();

        let first = engine
            .take_broker_message(
                None,
                &msg(
                    r#"{"app":"shop","eventType":"order.paid","payload":{"n":1},"eventId":"e1"}"#,
                    &[],
                ),
            )
            .await;
        let Settlement::Accepted { message, created } = first else {
            panic!("{first:?}")
        };
        assert!(created);
        // A redelivery (after a crash before the ack) is the same message.
        let again = engine
            .take_broker_message(
                Some("shop"),
                &msg(
                    r#"{"eventType":"order.paid","payload":{"n":1},"eventId":"e1"}"#,
                    &[],
                ),
            )
            .await;
        assert_eq!(
            again,
            Settlement::Accepted {
                message: message.clone(),
                created: false
            }
        );
        // The header form, bound by id while the header names the uid.
        let by_header = engine
            .take_broker_message(
                Some(shop.id.as_str()),
                &msg(
                    r#"{"n":2}"#,
                    &[
                        ("switchyard-event-type", "order.paid"),
                        ("switchyard-app", "shop"),
                    ],
                ),
            )
            .await;
        assert!(matches!(
            by_header,
            Settlement::Accepted { created: true, .. }
        ));

        let cases = [
            (None, msg("nope", &[]), "not_json"),
            (
                None,
                msg(r#"{"eventType":"a.b","payload":{}}"#, &[]),
                "missing_app",
            ),
            (
                None,
                msg(r#"{"app":"ghost","eventType":"a.b","payload":{}}"#, &[]),
                "unknown_app",
            ),
            (
                Some("shop"),
                msg(r#"{"app":"other","eventType":"a.b","payload":{}}"#, &[]),
                "app_mismatch",
            ),
            (
                Some("shop"),
                msg(r#"{"eventType":"bad type!","payload":{}}"#, &[]),
                "invalid_message",
            ),
            (
                Some("shop"),
                msg(r#"{"eventType":"a.b","payload":[1]}"#, &[]),
                "invalid_message",
            ),
            (
                Some("shop"),
                msg(r#"{"eventType":"a.b","payload":{"k":1,"k":2}}"#, &[]),
                "invalid_message",
            ),
            (
                Some("shop"),
                msg(
                    &format!(
                        r#"{{"eventType":"a.b","payload":{{}},"eventId":"{}"}}"#,
                        "x".repeat(300)
                    ),
                    &[],
                ),
                "invalid_message",
            ),
        ];
        for (bound, m, expected) in cases {
            let settled = engine.take_broker_message(bound, &m).await;
            assert_eq!(code(&settled), expected, "{:?}", m.body);
        }
        // A source bound to an application that does not exist keeps its
        // messages with the broker rather than dead-lettering them all.
        let ghost = engine
            .take_broker_message(
                Some("ghost"),
                &msg(r#"{"eventType":"a.b","payload":{}}"#, &[]),
            )
            .await;
        assert!(matches!(ghost, Settlement::Later(_)), "{ghost:?}");
        // Over the body limit of POST /msg: never a message.
        let huge = format!(
            r#"{{"eventType":"a.b","payload":{{"x":"{}"}}}}"#,
            "x".repeat(1 << 20)
        );
        assert_eq!(
            code(
                &engine
                    .take_broker_message(Some("shop"), &msg(&huge, &[]))
                    .await
            ),
            "too_large"
        );
        // Without an eventId, the broker's name for the message keeps a
        // second reading of it from becoming a second message.
        let keyed = BrokerMessage {
            key: Some(broker_key("redis:s:1-0")),
            ..msg(r#"{"eventType":"a.b","payload":{}}"#, &[])
        };
        let first = engine.take_broker_message(Some("shop"), &keyed).await;
        let second = engine.take_broker_message(Some("shop"), &keyed).await;
        assert!(matches!(first, Settlement::Accepted { created: true, .. }));
        assert!(matches!(
            second,
            Settlement::Accepted { created: false, .. }
        ));
    }

    /// An in-memory broker: hands out its queue in batches and records how
    /// each message was settled.
    struct FakeBroker {
        queue: std::collections::VecDeque<BrokerMessage>,
        next: u64,
        settled: Arc<Mutex<Vec<(u64, Settlement)>>>,
        /// To check that what is acknowledged is already stored.
        engine: Arc<Engine>,
        app: switchyard_core::AppId,
    }

    impl BrokerConsumer for FakeBroker {
        fn receive(
            &mut self,
            max: usize,
        ) -> BoxFuture<'_, Result<Vec<(u64, BrokerMessage)>, String>> {
            Box::pin(async move {
                let mut out = Vec::new();
                while out.len() < max {
                    let Some(m) = self.queue.pop_front() else {
                        break;
                    };
                    self.next += 1;
                    out.push((self.next, m));
                }
                if out.is_empty() {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Ok(out)
            })
        }

        fn settle(
            &mut self,
            outcomes: Vec<(u64, Settlement)>,
        ) -> BoxFuture<'_, Result<(), String>> {
            Box::pin(async move {
                for (_, outcome) in &outcomes {
                    if let Settlement::Accepted { message, .. } = outcome {
                        let stored = self.engine.message(&self.app, message.as_str()).await;
                        assert!(stored.is_ok(), "acknowledged before it was stored");
                    }
                }
                self.settled.lock().unwrap().extend(outcomes);
                Ok(())
            })
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_source_settles_every_message_after_taking_it() {
        let (engine, _dir) = crate::test_engine().await;
        let input = AppInput {
            name: "shop".into(),
            uid: Some("shop".into()),
            ..Default::default()
        };
        let (shop, _) = engine.create_app(input, false).await.unwrap();
        let mut queue = std::collections::VecDeque::new();
        for i in 0..50 {
            let body = if i % 10 == 3 {
                "poison".to_owned()
            } else {
                // Each message twice in a row: the second is a redelivery.
                format!(
                    r#"{{"eventType":"order.paid","payload":{{"i":{}}},"eventId":"e{}"}}"#,
                    i / 2,
                    i / 2
                )
            };
            queue.push_back(msg(&body, &[]));
        }
        let settled = Arc::new(Mutex::new(Vec::new()));
        let broker = FakeBroker {
            queue,
            next: 0,
            settled: settled.clone(),
            engine: engine.clone(),
            app: shop.id.clone(),
        };
        let stats = Arc::new(SourceStats::default());
        let (stop_tx, stop) = tokio::sync::watch::channel(false);
        let run = SourceRun {
            id: BrokerSourceId::generate_at(engine.now_ms()),
            name: "orders".into(),
            app: Some("shop".into()),
            batch: 8,
            broker: serde_json::json!({}),
            consumer: "node".into(),
        };
        let runner = tokio::spawn({
            let (engine, run, stats) = (engine.clone(), run.clone(), stats.clone());
            async move { run_consumer(engine, &run, broker, stats, stop).await }
        });
        for _ in 0..200 {
            if settled.lock().unwrap().len() == 50 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        stop_tx.send(true).unwrap();
        runner.await.unwrap();
        let settled = settled.lock().unwrap().clone();
        // Every message settled once, in the order received.
        assert_eq!(
            settled.iter().map(|(h, _)| *h).collect::<Vec<_>>(),
            (1..=50).collect::<Vec<_>>()
        );
        let poison = settled
            .iter()
            .filter(|(_, s)| matches!(s, Settlement::Rejected(_)))
            .count();
        assert_eq!(poison, 5);
        // Each rejection is in the rejected log, with its body and reason.
        let log = engine
            .store
            .list_broker_rejections(
                &run.id,
                &switchyard_store::PageRequest {
                    limit: 100,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(log.data.len(), 5);
        assert!(
            log.data
                .iter()
                .all(|r| &r.body[..] == b"poison" && r.code == "not_json" && r.body_size == 6)
        );
        let counted = stats.take();
        assert_eq!(counted.received, 50);
        assert_eq!(counted.rejected, 5);
        assert_eq!(counted.accepted + counted.duplicates, 45);
        assert_eq!(stats.take().received, 0, "taken once");
        // What was acknowledged is stored, once per eventId.
        let stored = engine
            .list_messages(
                &shop.id,
                &switchyard_store::MessageFilter {
                    page: switchyard_store::PageRequest {
                        limit: 100,
                        ..Default::default()
                    },
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(stored.data.len() as u64, counted.accepted);
        assert_eq!(counted.accepted, 25);
    }

    /// A store that cannot take the message now is no reason to dead-letter
    /// it: the broker keeps it.
    #[test]
    fn store_trouble_leaves_the_message_with_the_broker() {
        for e in [
            StoreError::Unavailable("connection refused".into()),
            StoreError::Database("deadlock detected".into()),
        ] {
            assert!(matches!(
                settle_error(EngineError::Store(e)),
                Settlement::Later(_)
            ));
        }
        assert!(matches!(
            settle_error(EngineError::Store(StoreError::Unrepresentable(
                "NUL".into()
            ))),
            Settlement::Rejected(_)
        ));
    }
}
