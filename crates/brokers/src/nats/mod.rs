//! NATS JetStream as a broker source: one durable pull consumer on one
//! stream, shared by every node (each node fetches from it, so nodes share
//! the stream, and what a dead node fetched and did not acknowledge is
//! delivered again once `ackWaitMs` runs out).
//!
//! A message's payload is the broker message's body and its NATS headers
//! are the headers (the first value of each). A message is acknowledged
//! only after it is committed; one that can never be a message is
//! published to the dead-letter subject with the reason (as
//! `Switchyard-Rejected-Code` and `Switchyard-Rejected-Reason` headers) and
//! then terminated (`+TERM`: not delivered again); one the store could not
//! take is given back (`-NAK` with a delay) to be delivered again.
//!
//! The stream is the operator's: Switchyard creates it only when the
//! configuration lists its `subjects` (and leaves an existing one as it
//! is). The consumer is created when missing.

use async_nats::connection::State;
use async_nats::header::HeaderMap;
use async_nats::jetstream::{self, AckKind, consumer::PullConsumer};
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use switchyard_engine::broker_intake::{
    BrokerConfigError, BrokerConsumer, BrokerMessage, Settlement, broker_key,
};

/// Where a NATS JetStream source reads.
#[derive(Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NatsConfig {
    /// `nats://[user:password@]host[:port]`, `nats://token@host[:port]`, or
    /// `tls://...` for a TLS connection.
    pub url: String,
    /// The JetStream stream read.
    pub stream: String,
    /// The durable pull consumer every node reads through (created when
    /// missing, with explicit acknowledgement, from the stream's first
    /// message).
    pub consumer: String,
    /// Only messages on subjects this matches (`*` and `>` wildcards) are
    /// read; all of the stream's when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter_subject: Option<String>,
    /// How long a fetched message may stay unacknowledged before it is
    /// delivered again (to any node), in ms [default: 30000]. Applied when
    /// the consumer is created, and to an existing one whose value differs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ack_wait_ms: Option<u64>,
    /// Where rejected messages are published; `switchyard.dead.<stream>`
    /// when absent. It must not be a subject the stream itself stores, or
    /// each rejected message would be read and rejected again, for ever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_subject: Option<String>,
    /// When given, the stream is created with these subjects if it does
    /// not exist (file storage, limits retention); without it, a missing
    /// stream is an error. An existing stream is never changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subjects: Option<Vec<String>>,
}

impl std::fmt::Debug for NatsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsConfig")
            .field("stream", &self.stream)
            .field("consumer", &self.consumer)
            .finish_non_exhaustive()
    }
}

/// How long a fetch waits for messages when none are waiting.
const FETCH_EXPIRES: Duration = Duration::from_secs(1);
/// How long past [`FETCH_EXPIRES`] a fetch may take before the server
/// counts as gone.
const FETCH_GRACE: Duration = Duration::from_secs(2);
/// How long a message given back (`-NAK`) waits before it is delivered
/// again.
const NAK_DELAY: Duration = Duration::from_secs(1);
/// Longest wait for acknowledgements, dead letters and API requests.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_ACK_WAIT_MS: u64 = 30_000;

impl NatsConfig {
    /// Refuses what can never work, naming the field: a URL that is not
    /// `nats://` or `tls://` with a host; an empty stream or consumer name,
    /// or one with a character NATS refuses in names (whitespace, `.`, `*`,
    /// `>`, path separators, control characters); subjects that are not
    /// subjects (the dead-letter subject may have no wildcard); an
    /// `ackWaitMs` of 0; and a dead-letter subject the stream would store
    /// (matched by `subjects` or by `filterSubject`). Whether the stream's
    /// actual subjects take the dead-letter subject is checked on connect.
    pub fn check(&self) -> Result<(), BrokerConfigError> {
        server(&self.url).map_err(|e| BrokerConfigError::new("url", e))?;
        check_name("stream", &self.stream)?;
        check_name("consumer", &self.consumer)?;
        if let Some(filter) = &self.filter_subject {
            check_subject("filterSubject", filter, true)?;
        }
        if self.ack_wait_ms == Some(0) {
            return Err(BrokerConfigError::new(
                "ackWaitMs",
                "must be at least 1 (ms)",
            ));
        }
        if let Some(subjects) = &self.subjects {
            if subjects.is_empty() {
                return Err(BrokerConfigError::new(
                    "subjects",
                    "must list at least one subject (or be left out)",
                ));
            }
            for (i, subject) in subjects.iter().enumerate() {
                check_subject(&format!("subjects[{i}]"), subject, true)?;
            }
        }
        let dead = self.dead_letter_subject();
        check_subject("deadLetterSubject", &dead, false)?;
        let captured = self
            .subjects
            .iter()
            .flatten()
            .chain(self.filter_subject.as_ref())
            .find(|pattern| subject_matches(pattern, &dead));
        if let Some(pattern) = captured {
            return Err(BrokerConfigError::new(
                "deadLetterSubject",
                format!(
                    "'{dead}' is matched by the stream's subject '{pattern}': each rejected message would be read and rejected again; choose a subject the stream does not store"
                ),
            ));
        }
        Ok(())
    }

    /// The server, stream and consumer: one source per durable consumer.
    pub fn reads(&self) -> String {
        format!(
            "nats {} {} {}",
            crate::url_without_secrets(&self.url),
            self.stream,
            self.consumer
        )
    }

    /// Shown without the URL's password or token.
    pub fn redacted(&self) -> Self {
        Self {
            url: redact_nats_url(&self.url),
            ..self.clone()
        }
    }

    /// Where rejected messages are published.
    pub fn dead_letter_subject(&self) -> String {
        self.dead_letter_subject
            .clone()
            .unwrap_or_else(|| format!("switchyard.dead.{}", self.stream))
    }

    fn ack_wait(&self) -> Duration {
        Duration::from_millis(self.ack_wait_ms.unwrap_or(DEFAULT_ACK_WAIT_MS))
    }
}

/// The URL as the client is given it (no credentials), and the
/// credentials: a user and password, or a token (a user alone).
fn server(url: &str) -> Result<(url::Url, Credentials), String> {
    let usage = "must be nats://[user:password@]host[:port], nats://token@host[:port] or tls://...";
    let mut parsed = url::Url::parse(url).map_err(|e| format!("{e}; {usage}"))?;
    if !matches!(parsed.scheme(), "nats" | "tls") {
        return Err(format!("the scheme '{}' {usage}", parsed.scheme()));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(format!("has no host; {usage}"));
    }
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8()
            .map(|s| s.into_owned())
            .map_err(|_| format!("its user information is not UTF-8; {usage}"))
    };
    let credentials = match (parsed.username(), parsed.password()) {
        ("", None) => Credentials::None,
        (user, Some(password)) => Credentials::User(decode(user)?, decode(password)?),
        (token, None) => Credentials::Token(decode(token)?),
    };
    let _ = parsed.set_username("");
    let _ = parsed.set_password(None);
    Ok((parsed, credentials))
}

enum Credentials {
    None,
    User(String, String),
    Token(String),
}

/// `url` with the password, or a token (a user without a password),
/// replaced by `********`; an unparseable URL is `********` whole.
pub fn redact_nats_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_none() && !parsed.username().is_empty() => {
            if parsed.set_username("********").is_err() {
                return "********".into();
            }
            parsed.to_string()
        }
        _ => crate::redact_url(url),
    }
}

fn check_name(field: &str, name: &str) -> Result<(), BrokerConfigError> {
    if name.is_empty() {
        return Err(BrokerConfigError::new(field, "must not be empty"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || matches!(c, '.' | '*' | '>' | '/' | '\\'))
    {
        return Err(BrokerConfigError::new(
            field,
            format!(
                "must not contain {c:?}: NATS names may not hold whitespace, '.', '*', '>' or path separators"
            ),
        ));
    }
    Ok(())
}

/// A subject: dot-separated non-empty tokens without whitespace; with
/// `wildcards`, a token may be `*`, and the last one `>`.
fn check_subject(field: &str, subject: &str, wildcards: bool) -> Result<(), BrokerConfigError> {
    let refuse = |why: String| Err(BrokerConfigError::new(field, why));
    if subject.is_empty() {
        return refuse("must not be empty".into());
    }
    if subject.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return refuse(format!(
            "'{subject}' holds whitespace, which a subject may not"
        ));
    }
    let tokens: Vec<&str> = subject.split('.').collect();
    for (i, token) in tokens.iter().enumerate() {
        if token.is_empty() {
            return refuse(format!(
                "'{subject}' has an empty token (two dots, or a dot at an end)"
            ));
        }
        let wildcard = *token == "*" || *token == ">";
        if wildcard && !wildcards {
            return refuse(format!(
                "'{subject}' must be a plain subject, without '*' or '>'"
            ));
        }
        if *token == ">" && i + 1 != tokens.len() {
            return refuse(format!("'{subject}': '>' may only be the last token"));
        }
        if !wildcard && token.contains(['*', '>']) {
            return refuse(format!("'{subject}': '*' and '>' must be whole tokens"));
        }
    }
    Ok(())
}

/// Whether the plain subject `subject` is matched by `pattern`, whose
/// tokens may be `*` (any one token) and, last, `>` (one or more tokens).
pub fn subject_matches(pattern: &str, subject: &str) -> bool {
    let mut pattern = pattern.split('.');
    let mut subject = subject.split('.');
    loop {
        match (pattern.next(), subject.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(p), Some(s)) if p == s => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// A message's NATS headers as broker headers: the first value of each,
/// sorted by name.
pub fn headers_of(headers: Option<&HeaderMap>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = headers
        .into_iter()
        .flat_map(|h| h.iter())
        .filter_map(|(name, values)| {
            values
                .first()
                .map(|v| (name.to_string(), v.as_str().to_owned()))
        })
        .collect();
    out.sort();
    out
}

/// The headers a dead letter carries: the producer's (all values), less
/// the `Nats-` ones (a `Nats-Expected-*` of the original would make the
/// dead letter's publish fail, a `Nats-Msg-Id` would be deduplicated
/// against other messages), plus the reason and where it came from.
fn dead_letter_headers(
    original: Option<&HeaderMap>,
    code: &str,
    reason: &str,
    stream: &str,
    sequence: Option<u64>,
) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, values) in original.into_iter().flat_map(|h| h.iter()) {
        let text: &str = name.as_ref();
        if text.len() >= 5 && text[..5].eq_ignore_ascii_case("nats-") {
            continue;
        }
        if text
            .to_ascii_lowercase()
            .starts_with("switchyard-rejected-")
        {
            continue;
        }
        for value in values {
            headers.append(name.clone(), value.clone());
        }
    }
    headers.insert("Switchyard-Rejected-Code", code);
    headers.insert("Switchyard-Rejected-Reason", reason);
    headers.insert("Switchyard-Original-Stream", stream);
    if let Some(sequence) = sequence {
        headers.insert("Switchyard-Original-Sequence", sequence.to_string());
        // Publishing it again after a lost PubAck stores it once (within
        // the dead-letter stream's duplicate window).
        headers.insert(
            async_nats::header::NATS_MESSAGE_ID,
            format!("switchyard-dead-{stream}-{sequence}"),
        );
    }
    headers
}

/// A durable pull consumer read by this node.
pub struct NatsConsumer {
    client: async_nats::Client,
    js: jetstream::Context,
    config: NatsConfig,
    /// The server, for error messages.
    server: String,
    consumer: PullConsumer,
    /// The consumer or stream went away (or a fetch failed): set up again
    /// before the next fetch.
    stale: bool,
    /// The stream that stores the dead-letter subject, if one does: dead
    /// letters then wait for its PubAck.
    dead_letter_stream: Option<String>,
    /// The batch being settled, by handle.
    pending: HashMap<u64, jetstream::Message>,
    next: u64,
}

impl NatsConsumer {
    /// Connects (as `node`, the connection's name), creates the stream
    /// when `subjects` says so, refuses a dead-letter subject the stream
    /// stores, and creates the consumer when missing.
    pub async fn connect(config: NatsConfig, node: String) -> Result<Self, String> {
        let (url, credentials) = server(&config.url)?;
        let server = url.to_string();
        let mut options = async_nats::ConnectOptions::new()
            .name(format!("switchyard {node}"))
            .connection_timeout(REQUEST_TIMEOUT)
            .request_timeout(Some(REQUEST_TIMEOUT))
            .max_reconnects(None);
        options = match credentials {
            Credentials::None => options,
            Credentials::User(user, password) => options.user_and_password(user, password),
            Credentials::Token(token) => options.token(token),
        };
        let client = options
            .connect(url.as_str())
            .await
            .map_err(|e| format!("connecting to {server}: {e}"))?;
        let js = jetstream::new(client.clone());
        let (consumer, dead_letter_stream) = setup(&js, &config).await?;
        Ok(Self {
            client,
            js,
            config,
            server,
            consumer,
            stale: false,
            dead_letter_stream,
            pending: HashMap::new(),
            next: 0,
        })
    }

    async fn fetch(&mut self, max: usize) -> Result<Vec<(u64, BrokerMessage)>, String> {
        // Anything left from an earlier batch was settled or given up on
        // (delivered again after the ack wait).
        self.pending.clear();
        if self.client.connection_state() != State::Connected {
            // The client reconnects by itself; a short wait spares an
            // error for a blip.
            tokio::time::sleep(Duration::from_millis(250)).await;
            if self.client.connection_state() != State::Connected {
                return Err(format!(
                    "not connected to the NATS server at {}",
                    self.server
                ));
            }
        }
        if self.stale {
            let (consumer, dead_letter_stream) = setup(&self.js, &self.config).await?;
            self.consumer = consumer;
            self.dead_letter_stream = dead_letter_stream;
            self.stale = false;
        }
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + FETCH_EXPIRES + FETCH_GRACE;
        // No-wait with an expiry: the server answers as soon as it has any
        // message, with up to `max` of them, or after the expiry with none.
        let request = self
            .consumer
            .fetch()
            .max_messages(max)
            .expires(FETCH_EXPIRES)
            .messages();
        let mut batch = match tokio::time::timeout_at(deadline, request).await {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => {
                self.stale = true;
                return Err(format!("fetching from {}: {e}", self.config.stream));
            }
            Err(_) => return Err(self.no_answer()),
        };
        let mut out = Vec::new();
        loop {
            match tokio::time::timeout_at(deadline, batch.next()).await {
                Ok(Some(Ok(message))) => {
                    let sequence = message.info().map(|i| i.stream_sequence).ok();
                    let Some(sequence) = sequence else {
                        // Not a JetStream delivery (no ack subject): nothing
                        // to settle it with.
                        continue;
                    };
                    self.next += 1;
                    out.push((
                        self.next,
                        BrokerMessage {
                            body: message.payload.clone(),
                            headers: headers_of(message.headers.as_ref()),
                            // The stream sequence stays the same across
                            // redeliveries: a message read twice (a crash
                            // between commit and ack) is one message even
                            // without an eventId.
                            key: Some(broker_key(&format!(
                                "nats:{}:{sequence}",
                                self.config.stream
                            ))),
                        },
                    ));
                    self.pending.insert(self.next, message);
                }
                Ok(None) => break,
                Ok(Some(Err(e))) => {
                    if out.is_empty() {
                        // The consumer or stream was deleted, or the
                        // server refused the request: set up again first.
                        self.stale = true;
                        return Err(format!("fetching from {}: {e}", self.config.stream));
                    }
                    break;
                }
                Err(_) => {
                    if out.is_empty() {
                        return Err(self.no_answer());
                    }
                    break;
                }
            }
        }
        if out.is_empty() && started.elapsed() < Duration::from_millis(100) {
            // The server answered at once with nothing (other nodes' pull
            // requests waiting): do not spin.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(out)
    }

    fn no_answer(&self) -> String {
        let secs = (FETCH_EXPIRES + FETCH_GRACE).as_secs();
        match self.client.connection_state() {
            State::Connected => format!(
                "the NATS server at {} did not answer a fetch within {secs} s",
                self.server
            ),
            _ => format!("lost the connection to the NATS server at {}", self.server),
        }
    }

    async fn settle_all(&mut self, outcomes: Vec<(u64, Settlement)>) -> Result<(), String> {
        let mut acks = Vec::new();
        let mut naks = Vec::new();
        let mut dead = Vec::new();
        for (handle, outcome) in outcomes {
            let Some(message) = self.pending.remove(&handle) else {
                continue;
            };
            match outcome {
                Settlement::Accepted { .. } => acks.push(message),
                Settlement::Rejected(r) => dead.push((message, r.code, r.reason)),
                Settlement::Later(_) => naks.push(message),
            }
        }
        let mut failed = None;
        let mut terms = Vec::new();
        if !dead.is_empty() {
            let written = self.dead_letter(&dead).await;
            for ((message, ..), written) in dead.into_iter().zip(written) {
                match written {
                    Ok(()) => terms.push(message),
                    Err(e) => {
                        failed.get_or_insert(e);
                        naks.push(message);
                    }
                }
            }
        }
        // Each is one publish into the client's buffer; the one flush
        // below sends them together.
        let sends = acks
            .iter()
            .map(|m| (m, AckKind::Ack))
            .chain(terms.iter().map(|m| (m, AckKind::Term)))
            .chain(naks.iter().map(|m| (m, AckKind::Nak(Some(NAK_DELAY)))));
        for (message, kind) in sends {
            message
                .ack_with(kind)
                .await
                .map_err(|e| format!("acknowledging: {e}"))?;
        }
        self.flush("acknowledging").await?;
        match failed {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Publishes each rejected message to the dead-letter subject; one
    /// result per message. Into a stream, each waits for its PubAck (all
    /// in flight at once); otherwise they are sent with one flush.
    async fn dead_letter(
        &self,
        dead: &[(jetstream::Message, &'static str, String)],
    ) -> Vec<Result<(), String>> {
        let subject = self.config.dead_letter_subject();
        let failure =
            |e: &dyn std::fmt::Display| format!("writing the dead letter to {subject} failed: {e}");
        let letter = |(message, code, reason): &(jetstream::Message, &'static str, String)| {
            let sequence = message.info().ok().map(|i| i.stream_sequence);
            dead_letter_headers(
                message.headers.as_ref(),
                code,
                reason,
                &self.config.stream,
                sequence,
            )
        };
        if self.dead_letter_stream.is_some() {
            let mut acks = Vec::with_capacity(dead.len());
            for entry in dead {
                let sent = self
                    .js
                    .publish_with_headers(subject.clone(), letter(entry), entry.0.payload.clone())
                    .await;
                acks.push(sent);
            }
            let waits = acks.into_iter().map(|sent| async {
                match sent {
                    Ok(ack) => ack.await.map(|_| ()).map_err(|e| failure(&e)),
                    Err(e) => Err(failure(&e)),
                }
            });
            return futures_util::future::join_all(waits).await;
        }
        let mut results = Vec::with_capacity(dead.len());
        for entry in dead {
            let sent = self
                .client
                .publish_with_headers(subject.clone(), letter(entry), entry.0.payload.clone())
                .await;
            results.push(sent.map_err(|e| failure(&e)));
        }
        if let Err(e) = self.flush("writing dead letters").await {
            for result in &mut results {
                if result.is_ok() {
                    *result = Err(failure(&e));
                }
            }
        }
        results
    }

    async fn flush(&self, what: &str) -> Result<(), String> {
        match tokio::time::timeout(REQUEST_TIMEOUT, self.client.flush()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("{what}: flushing to {}: {e}", self.server)),
            Err(_) => Err(format!(
                "{what}: the connection to {} did not flush within {} s",
                self.server,
                REQUEST_TIMEOUT.as_secs()
            )),
        }
    }

    async fn waiting(&self) -> Result<Option<u64>, String> {
        let info = self
            .consumer
            .get_info()
            .await
            .map_err(|e| format!("consumer info of {}: {e}", self.config.consumer))?;
        Ok(Some(info.num_pending + info.num_ack_pending as u64))
    }
}

/// Finds (or creates, when `subjects` is set) the stream, refuses a
/// dead-letter subject it stores, finds or creates the consumer, and tells
/// which stream (if any) stores the dead-letter subject.
async fn setup(
    js: &jetstream::Context,
    config: &NatsConfig,
) -> Result<(PullConsumer, Option<String>), String> {
    let stream = match &config.subjects {
        Some(subjects) => js
            .get_or_create_stream(jetstream::stream::Config {
                name: config.stream.clone(),
                subjects: subjects.clone(),
                ..Default::default()
            })
            .await
            .map_err(|e| format!("creating the stream {}: {e}", config.stream))?,
        None => js.get_stream(&config.stream).await.map_err(|e| {
            format!(
                "the stream {} cannot be read (create it, or list its subjects in the source so that Switchyard creates it): {e}",
                config.stream
            )
        })?,
    };
    let dead = config.dead_letter_subject();
    if let Some(pattern) = stream
        .cached_info()
        .config
        .subjects
        .iter()
        .find(|pattern| subject_matches(pattern, &dead))
    {
        return Err(format!(
            "deadLetterSubject: '{dead}' is stored by the stream {} itself (its subject '{pattern}'): each rejected message would be read and rejected again; choose a subject outside the stream",
            config.stream
        ));
    }
    let dead_letter_stream = match js.stream_by_subject(dead.clone()).await {
        Ok(name) => Some(name),
        Err(e) if e.kind() == jetstream::context::GetStreamByNameErrorKind::NotFound => None,
        Err(e) => return Err(format!("finding the stream of {dead}: {e}")),
    };
    let wanted = jetstream::consumer::pull::Config {
        durable_name: Some(config.consumer.clone()),
        ack_policy: jetstream::consumer::AckPolicy::Explicit,
        ack_wait: config.ack_wait(),
        deliver_policy: jetstream::consumer::DeliverPolicy::All,
        filter_subject: config.filter_subject.clone().unwrap_or_default(),
        // Several nodes with a batch of up to 1000 each in flight.
        max_ack_pending: 20_000,
        ..Default::default()
    };
    let consumer: PullConsumer = stream
        .get_or_create_consumer(&config.consumer, wanted.clone())
        .await
        .map_err(|e| format!("the consumer {} of {}: {e}", config.consumer, config.stream))?;
    let found = &consumer.cached_info().config;
    if found.ack_policy != jetstream::consumer::AckPolicy::Explicit {
        return Err(format!(
            "the consumer {} exists with the ack policy {:?}; a source needs explicit acknowledgement (delete it, or name another consumer)",
            config.consumer, found.ack_policy
        ));
    }
    if found.filter_subject != wanted.filter_subject {
        return Err(format!(
            "the consumer {} exists with the filter subject '{}', not '{}' (delete it, or name another consumer)",
            config.consumer, found.filter_subject, wanted.filter_subject
        ));
    }
    if found.ack_wait != wanted.ack_wait {
        use jetstream::consumer::FromConsumer as _;
        let kept = jetstream::consumer::pull::Config::try_from_consumer_config(found.clone())
            .map_err(|e| format!("the consumer {}: {e}", config.consumer))?;
        let updated = jetstream::consumer::pull::Config {
            ack_wait: wanted.ack_wait,
            ..kept
        };
        return stream
            .create_consumer(updated)
            .await
            .map(|c| (c, dead_letter_stream))
            .map_err(|e| {
                format!(
                    "updating the ack wait of the consumer {}: {e}",
                    config.consumer
                )
            });
    }
    Ok((consumer, dead_letter_stream))
}

impl BrokerConsumer for NatsConsumer {
    fn receive(&mut self, max: usize) -> BoxFuture<'_, Result<Vec<(u64, BrokerMessage)>, String>> {
        Box::pin(self.fetch(max))
    }

    fn settle(&mut self, outcomes: Vec<(u64, Settlement)>) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(self.settle_all(outcomes))
    }

    /// The consumer's messages not yet delivered (`num_pending`) plus those
    /// delivered and not yet acknowledged (`num_ack_pending`).
    fn backlog(&mut self) -> BoxFuture<'_, Result<Option<u64>, String>> {
        Box::pin(self.waiting())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> NatsConfig {
        NatsConfig {
            url: "nats://127.0.0.1:4222".into(),
            stream: "ORDERS".into(),
            consumer: "switchyard".into(),
            filter_subject: None,
            ack_wait_ms: None,
            dead_letter_subject: None,
            subjects: None,
        }
    }

    fn refused(c: NatsConfig) -> BrokerConfigError {
        c.check().expect_err("refused")
    }

    #[test]
    fn each_refused_setting_is_named() {
        assert!(config().check().is_ok());
        for url in ["", "not a url", "http://127.0.0.1:4222", "nats://"] {
            let e = refused(NatsConfig {
                url: url.into(),
                ..config()
            });
            assert_eq!(e.field, "url", "{url}: {e}");
        }
        for bad in ["", "ORD ERS", "ORD.ERS", "ORD*", "ORD>", "a/b", "tab\t"] {
            let e = refused(NatsConfig {
                stream: bad.into(),
                ..config()
            });
            assert_eq!(e.field, "stream", "{bad:?}: {e}");
            let e = refused(NatsConfig {
                consumer: bad.into(),
                ..config()
            });
            assert_eq!(e.field, "consumer", "{bad:?}: {e}");
        }
        for bad in ["", "a..b", ".a", "a.", "a b", "a.>.b", "a*.b", "a.b>"] {
            let e = refused(NatsConfig {
                filter_subject: Some(bad.into()),
                ..config()
            });
            assert_eq!(e.field, "filterSubject", "{bad:?}: {e}");
        }
        for bad in ["", "dead.*", "dead.>", "a..b", "dead letters"] {
            let e = refused(NatsConfig {
                dead_letter_subject: Some(bad.into()),
                ..config()
            });
            assert_eq!(e.field, "deadLetterSubject", "{bad:?}: {e}");
        }
        let e = refused(NatsConfig {
            ack_wait_ms: Some(0),
            ..config()
        });
        assert_eq!(e.field, "ackWaitMs");
        let e = refused(NatsConfig {
            subjects: Some(vec![]),
            ..config()
        });
        assert_eq!(e.field, "subjects");
        let e = refused(NatsConfig {
            subjects: Some(vec!["orders.*".into(), "bad subject".into()]),
            ..config()
        });
        assert_eq!(e.field, "subjects[1]");
        // Credentials and TLS are fine.
        for url in [
            "nats://user:secret@127.0.0.1:4222",
            "nats://s3cr3tt0ken@localhost",
            "tls://nats.example.com:4222",
        ] {
            assert!(
                NatsConfig {
                    url: url.into(),
                    ..config()
                }
                .check()
                .is_ok(),
                "{url}"
            );
        }
    }

    #[test]
    fn a_dead_letter_subject_the_stream_would_store_is_refused() {
        let with = |subjects: &[&str], filter: Option<&str>, dead: Option<&str>| NatsConfig {
            subjects: (!subjects.is_empty())
                .then(|| subjects.iter().map(|s| s.to_string()).collect()),
            filter_subject: filter.map(str::to_owned),
            dead_letter_subject: dead.map(str::to_owned),
            ..config()
        };
        let captured = [
            (vec!["orders.>"], None, Some("orders.dead")),
            (vec!["orders.*"], None, Some("orders.dead")),
            (vec!["*.dead"], None, Some("orders.dead")),
            (vec![">"], None, None),
            (vec!["switchyard.dead.ORDERS"], None, None),
            (vec!["a", "switchyard.*.ORDERS"], None, None),
            (vec![], Some("orders.>"), Some("orders.dead.letters")),
        ];
        for (subjects, filter, dead) in captured {
            let e = refused(with(&subjects, filter, dead));
            assert_eq!(e.field, "deadLetterSubject", "{subjects:?} {dead:?}: {e}");
            assert!(e.message.contains("rejected again"), "{e}");
        }
        let apart = [
            (vec!["orders.>"], None, None),
            (vec!["orders.*"], None, Some("orders.dead.letters")),
            (vec!["orders"], None, Some("orders.dead")),
            (vec!["orders.>"], Some("orders.new"), Some("dead.orders")),
        ];
        for (subjects, filter, dead) in apart {
            assert!(
                with(&subjects, filter, dead).check().is_ok(),
                "{subjects:?} {dead:?}"
            );
        }
    }

    #[test]
    fn wildcards_match_as_nats_matches_them() {
        let cases = [
            ("a.b.c", "a.b.c", true),
            ("a.b", "a.b.c", false),
            ("a.b.c", "a.b", false),
            ("a.*.c", "a.b.c", true),
            ("a.*", "a.b.c", false),
            ("a.>", "a.b.c", true),
            ("a.>", "a", false),
            (">", "a", true),
            ("*", "a.b", false),
            ("*.*", "a.b", true),
            ("a.*.>", "a.b", false),
            ("a.*.>", "a.b.c.d", true),
            ("A.b", "a.b", false),
        ];
        for (pattern, subject, expected) in cases {
            assert_eq!(
                subject_matches(pattern, subject),
                expected,
                "{pattern} ~ {subject}"
            );
        }
    }

    #[test]
    fn headers_are_read_with_their_first_value() {
        let mut h = HeaderMap::new();
        h.insert("switchyard-event-type", "order.paid");
        h.append("X-Many", "one");
        h.append("X-Many", "two");
        h.insert("Nats-Msg-Id", "m1");
        assert_eq!(
            headers_of(Some(&h)),
            vec![
                ("Nats-Msg-Id".to_owned(), "m1".to_owned()),
                ("X-Many".to_owned(), "one".to_owned()),
                ("switchyard-event-type".to_owned(), "order.paid".to_owned()),
            ]
        );
        assert!(headers_of(None).is_empty());
    }

    #[test]
    fn dead_letters_carry_the_reason_and_not_the_producers_nats_headers() {
        let mut h = HeaderMap::new();
        h.insert("switchyard-event-type", "order.paid");
        h.append("X-Many", "one");
        h.append("X-Many", "two");
        h.insert("Nats-Expected-Last-Sequence", "41");
        h.insert("Switchyard-Rejected-Code", "forged");
        let out = dead_letter_headers(
            Some(&h),
            "not_json",
            "expected value\r\nat line 1",
            "ORDERS",
            Some(42),
        );
        let all = |n: &str| {
            out.get_all(n)
                .map(|v| v.as_str().to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(all("Switchyard-Rejected-Code"), ["not_json"]);
        // A header value cannot hold a line break.
        assert_eq!(
            all("Switchyard-Rejected-Reason"),
            ["expected value  at line 1"]
        );
        assert_eq!(all("X-Many"), ["one", "two"]);
        assert_eq!(all("switchyard-event-type"), ["order.paid"]);
        assert!(all("Nats-Expected-Last-Sequence").is_empty());
        assert_eq!(all("Switchyard-Original-Sequence"), ["42"]);
        assert_eq!(all("Nats-Msg-Id"), ["switchyard-dead-ORDERS-42"]);
    }

    #[test]
    fn secrets_are_not_shown_or_compared() {
        let c = NatsConfig {
            url: "nats://user:hunter2@127.0.0.1:4222".into(),
            ..config()
        };
        assert_eq!(c.redacted().url, "nats://user:********@127.0.0.1:4222");
        let t = NatsConfig {
            url: "nats://t0k3n@127.0.0.1:4222".into(),
            ..config()
        };
        assert_eq!(t.redacted().url, "nats://********@127.0.0.1:4222");
        assert_eq!(t.reads(), "nats nats://127.0.0.1:4222 ORDERS switchyard");
        assert!(!c.reads().contains("hunter2"));
        let Ok((url, Credentials::User(user, password))) = server("nats://u%40x:p%3Aw@h:1") else {
            panic!("user and password")
        };
        assert_eq!((user.as_str(), password.as_str()), ("u@x", "p:w"));
        assert_eq!(url.as_str(), "nats://h:1");
        assert!(matches!(
            server("nats://tok@h"),
            Ok((_, Credentials::Token(t))) if t == "tok"
        ));
    }
}

#[cfg(test)]
mod registry_tests {
    use crate::{BrokerConfig, Kinds};
    use switchyard_engine::broker_intake::BrokerKinds;

    #[test]
    fn the_kind_is_read_through_the_registry() {
        let ok = serde_json::json!({
            "type": "nats", "url": "nats://u:hunter2@127.0.0.1:4222", "stream": "ORDERS",
            "consumer": "switchyard", "ackWaitMs": 5000, "deadLetterSubject": "dead.orders"
        });
        assert!(matches!(
            BrokerConfig::parse(&ok),
            Ok(BrokerConfig::Nats(_))
        ));
        assert_eq!(
            Kinds.reads(&ok).unwrap(),
            "nats nats://127.0.0.1:4222 ORDERS switchyard"
        );
        let shown = Kinds.redact(&ok);
        assert_eq!(shown["type"], "nats");
        assert_eq!(shown["ackWaitMs"], 5000);
        assert!(!shown.to_string().contains("hunter2"), "{shown}");
        let refused = |v: serde_json::Value| BrokerConfig::parse(&v).unwrap_err();
        let e = refused(serde_json::json!({"type": "nats", "url": "nats://h", "stream": "S"}));
        assert!(e.message.contains("consumer"), "{e}");
        let e = refused(
            serde_json::json!({"type": "nats", "url": "nats://h", "stream": "S", "consumer": "c", "ackWaitMs": "soon"}),
        );
        assert_eq!(e.field, "ackWaitMs", "{e}");
        let e = refused(
            serde_json::json!({"type": "nats", "url": "nats://h", "stream": "S", "consumer": "c", "group": "g"}),
        );
        assert!(e.message.contains("group"), "{e}");
    }
}
