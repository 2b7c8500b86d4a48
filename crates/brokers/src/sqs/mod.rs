//! Amazon SQS (or an SQS-compatible server: ElasticMQ, LocalStack, moto) as
//! a broker source, read by long polling.
//!
//! A message's body is the broker message's body; its message attributes
//! of type `String` or `Number` (custom types such as `String.json`
//! included) are headers, so `switchyard-event-type` may be an attribute.
//! `Binary` attributes are left out.
//!
//! Settling:
//! - accepted (committed) messages are deleted (`DeleteMessageBatch`);
//! - rejected messages are recorded in the rejected log by the engine
//!   first; then, with `deadLetterQueueUrl`, sent there with the reason as
//!   the attributes `rejected-code` and `rejected-reason` (and
//!   `original-message-id`), and deleted only once that send succeeded.
//!   Without `deadLetterQueueUrl` they are deleted after being recorded:
//!   the rejected log (body, attributes, reason) is then their dead-letter
//!   place. They are not left for the queue's redrive policy, which would
//!   only move them after `maxReceiveCount` receives, each one rejected
//!   and recorded again;
//! - messages the store could not take are made visible again after a
//!   few seconds (`ChangeMessageVisibility`), to be read again.
//!
//! A queue's redrive policy still matters: each read of a message counts
//! as a receive, so a long store outage can move good messages to the
//! redrive dead-letter queue. Give it a `maxReceiveCount` that covers the
//! outages to be ridden out, or none.
//!
//! Several nodes read one queue as competing consumers: SQS hands each
//! message to one of them until its visibility timeout runs out. A node
//! that dies holding messages loses none: they become visible again when
//! their visibility timeout ends, and another node reads them. A message
//! read twice (after a crash between commit and delete, or a batch slower
//! than the visibility timeout) is one message, by its `eventId` or, without
//! one, by its SQS message id.

use aws_sdk_sqs::Client;
use aws_sdk_sqs::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry,
    MessageAttributeValue, QueueAttributeName,
};
use futures_util::future::BoxFuture;
use std::collections::HashMap;
use std::time::Duration;
use switchyard_engine::broker_intake::{
    BrokerConfigError, BrokerConsumer, BrokerMessage, Settlement, broker_key,
};

/// Where an SQS source reads.
#[derive(Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SqsConfig {
    /// The queue's URL (`https://sqs.<region>.amazonaws.com/<account>/<name>`).
    pub queue_url: String,
    /// The region requests are signed for [default: `us-east-1`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Where requests go, for SQS-compatible servers (`http://127.0.0.1:9324`);
    /// AWS's own endpoint for the region when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_url: Option<String>,
    /// Static credentials; when both are absent, the environment's
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` (and `AWS_SESSION_TOKEN`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_access_key: Option<String>,
    /// How long one receive waits for messages (long polling), in seconds,
    /// 0 to 20 [default: 1, so that stopping or pausing is prompt].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_time_seconds: Option<u32>,
    /// How long a received message stays hidden from other consumers, in
    /// seconds, 0 to 43200; the queue's own setting when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visibility_timeout_secs: Option<u32>,
    /// Where rejected messages are sent, with the reason as attributes;
    /// when absent they are deleted once recorded in the rejected log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_queue_url: Option<String>,
}

impl std::fmt::Debug for SqsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqsConfig")
            .field("queue_url", &self.queue_url)
            .field("region", &self.region)
            .field("endpoint_url", &self.endpoint_url)
            .finish_non_exhaustive()
    }
}

/// Longest long-polling wait SQS allows, in seconds.
const MAX_WAIT_SECS: u32 = 20;
/// Longest visibility timeout SQS allows (12 hours), in seconds.
const MAX_VISIBILITY_SECS: u32 = 43_200;
/// Most messages (and batch entries) one SQS request takes.
const SQS_BATCH: usize = 10;
/// Most receive calls made to fill one batch.
const MAX_RECEIVES: usize = 10;
/// How soon a message the store could not take comes back, in seconds.
const LATER_VISIBILITY_SECS: i32 = 5;
/// Most message attributes SQS lets a message carry.
const MAX_ATTRIBUTES: usize = 10;
/// Longest reason a dead letter carries, in characters: the rest is in the
/// rejected log, and a dead letter must stay within SQS's message size.
const MAX_REASON_CHARS: usize = 1024;

/// `text` as SQS takes an attribute value: not empty, characters SQS
/// refuses (most control characters, non-characters) replaced by U+FFFD, at
/// most `max` characters. A value SQS refuses would make the dead-letter
/// send fail for ever.
fn attribute_text(text: &str, max: usize) -> String {
    let allowed = |c: char| {
        matches!(c, '\t' | '\n' | '\r')
            || ('\u{20}'..='\u{D7FF}').contains(&c)
            || ('\u{E000}'..='\u{FFFD}').contains(&c)
            || c >= '\u{10000}'
    };
    let clean: String = text
        .chars()
        .take(max)
        .map(|c| if allowed(c) { c } else { '\u{FFFD}' })
        .collect();
    if clean.is_empty() { "-".into() } else { clean }
}

fn http_url(field: &str, url: &str) -> Result<url::Url, BrokerConfigError> {
    let parsed = url::Url::parse(url).map_err(|e| BrokerConfigError::new(field, e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(BrokerConfigError::new(
            field,
            "must be an http:// or https:// URL with a host",
        ));
    }
    Ok(parsed)
}

/// The queue's name: the URL's last path segment.
fn queue_name(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    let name = parsed.path_segments()?.rev().find(|s| !s.is_empty())?;
    Some(name.to_owned())
}

impl SqsConfig {
    /// Refuses what can never work, naming the field: URLs that do not
    /// parse or name no queue, a dead-letter queue that is the queue itself
    /// (each rejected message would be read and rejected again, for ever),
    /// numbers beyond SQS's limits, half a pair of credentials.
    pub fn check(&self) -> Result<(), BrokerConfigError> {
        http_url("queueUrl", &self.queue_url)?;
        if queue_name(&self.queue_url).is_none() {
            return Err(BrokerConfigError::new(
                "queueUrl",
                "names no queue (its path must end with the queue's name)",
            ));
        }
        if let Some(region) = &self.region
            && (region.is_empty()
                || !region
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-'))
        {
            return Err(BrokerConfigError::new(
                "region",
                "must be a region name such as us-east-1",
            ));
        }
        if let Some(endpoint) = &self.endpoint_url {
            http_url("endpointUrl", endpoint)?;
        }
        match (&self.access_key_id, &self.secret_access_key) {
            (Some(id), _) if id.is_empty() => {
                return Err(BrokerConfigError::new("accessKeyId", "must not be empty"));
            }
            (_, Some(secret)) if secret.is_empty() => {
                return Err(BrokerConfigError::new(
                    "secretAccessKey",
                    "must not be empty",
                ));
            }
            (Some(_), None) => {
                return Err(BrokerConfigError::new(
                    "secretAccessKey",
                    "is required with accessKeyId",
                ));
            }
            (None, Some(_)) => {
                return Err(BrokerConfigError::new(
                    "accessKeyId",
                    "is required with secretAccessKey",
                ));
            }
            _ => {}
        }
        if self.wait_time_seconds.is_some_and(|w| w > MAX_WAIT_SECS) {
            return Err(BrokerConfigError::new(
                "waitTimeSeconds",
                format!("must be at most {MAX_WAIT_SECS}"),
            ));
        }
        if self
            .visibility_timeout_secs
            .is_some_and(|v| v > MAX_VISIBILITY_SECS)
        {
            return Err(BrokerConfigError::new(
                "visibilityTimeoutSecs",
                format!("must be at most {MAX_VISIBILITY_SECS}"),
            ));
        }
        if let Some(dead) = &self.dead_letter_queue_url {
            http_url("deadLetterQueueUrl", dead)?;
            if queue_name(dead).is_none() {
                return Err(BrokerConfigError::new(
                    "deadLetterQueueUrl",
                    "names no queue (its path must end with the queue's name)",
                ));
            }
            if same_url(dead, &self.queue_url) {
                return Err(BrokerConfigError::new(
                    "deadLetterQueueUrl",
                    "must not be the queue itself",
                ));
            }
        }
        Ok(())
    }

    /// The queue: one source per queue.
    pub fn reads(&self) -> String {
        format!("sqs {}", crate::url_without_secrets(&self.queue_url))
    }

    /// Shown without the secret access key.
    pub fn redacted(&self) -> Self {
        Self {
            secret_access_key: self.secret_access_key.as_ref().map(|_| "********".into()),
            ..self.clone()
        }
    }

    fn region(&self) -> String {
        self.region.clone().unwrap_or_else(|| "us-east-1".into())
    }

    fn wait(&self) -> u32 {
        self.wait_time_seconds.unwrap_or(1).min(MAX_WAIT_SECS)
    }
}

/// Two URLs naming the same queue, however spelled (case of the host, a
/// trailing slash, a default port).
fn same_url(a: &str, b: &str) -> bool {
    match (url::Url::parse(a), url::Url::parse(b)) {
        (Ok(a), Ok(b)) => {
            a.host_str() == b.host_str()
                && a.port_or_known_default() == b.port_or_known_default()
                && a.path().trim_end_matches('/') == b.path().trim_end_matches('/')
        }
        _ => a == b,
    }
}

/// A message's attributes as headers: `String` and `Number` values (and
/// their custom subtypes), by name; `Binary` ones left out.
pub fn attribute_headers(
    attributes: Option<&HashMap<String, MessageAttributeValue>>,
) -> Vec<(String, String)> {
    let mut headers: Vec<(String, String)> = attributes
        .into_iter()
        .flatten()
        .filter(|(_, v)| {
            let kind = v.data_type();
            kind.starts_with("String") || kind.starts_with("Number")
        })
        .filter_map(|(name, v)| Some((name.clone(), v.string_value()?.to_owned())))
        .collect();
    // HashMap order is random; a stable order keeps the rejected log and
    // dead letters readable.
    headers.sort();
    headers
}

/// The attributes a dead letter carries: ours (the reason) and as many of
/// the producer's as SQS allows beside them.
fn dead_letter_attributes(
    headers: &[(String, String)],
    code: &str,
    reason: &str,
    message_id: &str,
) -> Result<HashMap<String, MessageAttributeValue>, String> {
    let text = |v: &str| {
        MessageAttributeValue::builder()
            .data_type("String")
            .string_value(attribute_text(v, usize::MAX))
            .build()
            .map_err(|e| e.to_string())
    };
    let mut attributes = HashMap::new();
    attributes.insert("rejected-code".to_owned(), text(code)?);
    attributes.insert(
        "rejected-reason".to_owned(),
        text(&attribute_text(reason, MAX_REASON_CHARS))?,
    );
    attributes.insert("original-message-id".to_owned(), text(message_id)?);
    for (name, value) in headers {
        if attributes.len() >= MAX_ATTRIBUTES {
            break;
        }
        if !attributes.contains_key(name) && !value.is_empty() {
            attributes.insert(name.clone(), text(value)?);
        }
    }
    Ok(attributes)
}

fn sdk_error<E: std::error::Error>(what: &str, e: E) -> String {
    format!("{what}: {}", DisplayErrorContext(e))
}

/// One received message as [`SqsConsumer::settle`] needs it.
struct Held {
    receipt: String,
    message_id: String,
    message: BrokerMessage,
}

/// Reads one SQS queue; see the module's documentation.
pub struct SqsConsumer {
    client: Client,
    config: SqsConfig,
    queue: String,
    pending: HashMap<u64, Held>,
    next: u64,
}

impl SqsConsumer {
    /// Makes the client and asks for the queue's attributes once, so that
    /// a queue that does not exist or refuses the credentials is reported
    /// (and retried) by the source's supervisor. Nodes need no name of
    /// their own: SQS shares the queue among its consumers.
    pub async fn connect(config: SqsConfig) -> Result<Self, String> {
        let credentials = match (&config.access_key_id, &config.secret_access_key) {
            (Some(id), Some(secret)) => {
                Credentials::new(id, secret, None, None, "switchyard-config")
            }
            _ => {
                let var = |n: &str| std::env::var(n).ok().filter(|v| !v.is_empty());
                match (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
                    (Some(id), Some(secret)) => Credentials::new(
                        id,
                        secret,
                        var("AWS_SESSION_TOKEN"),
                        None,
                        "switchyard-environment",
                    ),
                    _ => {
                        return Err("no credentials: set accessKeyId and secretAccessKey, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment".into());
                    }
                }
            }
        };
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let timeouts = aws_sdk_sqs::config::timeout::TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(5))
            // A receive waits up to its long-polling time before answering.
            .operation_attempt_timeout(Duration::from_secs(u64::from(config.wait()) + 10))
            .build();
        let mut builder = aws_sdk_sqs::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(config.region()))
            .credentials_provider(credentials)
            .http_client(http)
            .timeout_config(timeouts)
            // The source backs off and retries itself; one quick retry
            // here rides out a dropped connection.
            .retry_config(aws_sdk_sqs::config::retry::RetryConfig::standard().with_max_attempts(2));
        if let Some(endpoint) = &config.endpoint_url {
            builder = builder.endpoint_url(endpoint);
        }
        let client = Client::from_conf(builder.build());
        let queue = queue_name(&config.queue_url).unwrap_or_default();
        let consumer = Self {
            client,
            config,
            queue,
            pending: HashMap::new(),
            next: 0,
        };
        consumer.queue_backlog().await?;
        Ok(consumer)
    }

    /// Receives up to `max` messages: one long-polling receive, then, while
    /// full batches of ten come back, more receives that do not wait.
    async fn read(&mut self, max: usize) -> Result<Vec<(u64, BrokerMessage)>, String> {
        // Handles from a batch that was never settled (the engine stopped
        // mid-batch) are of no use any more: those messages come back.
        self.pending.clear();
        let mut out = Vec::new();
        for call in 0..MAX_RECEIVES {
            let want = max.saturating_sub(out.len()).min(SQS_BATCH);
            if want == 0 {
                break;
            }
            let mut request = self
                .client
                .receive_message()
                .queue_url(&self.config.queue_url)
                .max_number_of_messages(want as i32)
                .message_attribute_names("All")
                .wait_time_seconds(if call == 0 {
                    self.config.wait() as i32
                } else {
                    0
                });
            if let Some(v) = self.config.visibility_timeout_secs {
                request = request.visibility_timeout(v as i32);
            }
            let reply = match request.send().await {
                Ok(r) => r,
                // What was received already is settled; the error shows
                // again on the next call if it lasts.
                Err(_) if !out.is_empty() => break,
                Err(e) => return Err(sdk_error("ReceiveMessage", e)),
            };
            let got = reply.messages();
            for m in got {
                let (Some(receipt), Some(id)) = (m.receipt_handle(), m.message_id()) else {
                    continue;
                };
                let message = BrokerMessage {
                    body: m.body().unwrap_or_default().as_bytes().to_vec().into(),
                    headers: attribute_headers(m.message_attributes()),
                    // The message id stays the same across redeliveries,
                    // so one read twice is one message even without an
                    // eventId.
                    key: Some(broker_key(&format!("sqs:{}:{id}", self.queue))),
                };
                self.next += 1;
                self.pending.insert(
                    self.next,
                    Held {
                        receipt: receipt.to_owned(),
                        message_id: id.to_owned(),
                        message: message.clone(),
                    },
                );
                out.push((self.next, message));
            }
            if got.len() < want {
                break;
            }
        }
        Ok(out)
    }

    async fn settle_all(&mut self, outcomes: Vec<(u64, Settlement)>) -> Result<(), String> {
        let mut delete = Vec::new();
        let mut later = Vec::new();
        let mut failed: Option<String> = None;
        for (handle, outcome) in outcomes {
            let Some(held) = self.pending.remove(&handle) else {
                continue;
            };
            match outcome {
                Settlement::Accepted { .. } => delete.push(held.receipt),
                Settlement::Rejected(rejection) => {
                    let Some(dead) = &self.config.dead_letter_queue_url else {
                        // Recorded in the rejected log already: that is
                        // where it stays.
                        delete.push(held.receipt);
                        continue;
                    };
                    match self
                        .dead_letter(dead, &held, rejection.code, &rejection.reason)
                        .await
                    {
                        Ok(()) => delete.push(held.receipt),
                        // Left in the queue, to come back and be sent again.
                        Err(e) => {
                            failed.get_or_insert(format!(
                                "sending the dead letter to {dead} failed: {e}"
                            ));
                        }
                    }
                }
                Settlement::Later(_) => later.push(held.receipt),
            }
        }
        for chunk in delete.chunks(SQS_BATCH) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, receipt)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(receipt)
                        .build()
                        .map_err(|e| e.to_string())
                })
                .collect::<Result<Vec<_>, _>>()?;
            match self
                .client
                .delete_message_batch()
                .queue_url(&self.config.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
            {
                Ok(reply) => {
                    if let Some(f) = reply.failed().first() {
                        failed.get_or_insert(format!(
                            "DeleteMessageBatch: {} of {} failed: {} {}",
                            reply.failed().len(),
                            chunk.len(),
                            f.code(),
                            f.message().unwrap_or_default()
                        ));
                    }
                }
                Err(e) => {
                    failed.get_or_insert(sdk_error("DeleteMessageBatch", e));
                }
            }
        }
        for chunk in later.chunks(SQS_BATCH) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, receipt)| {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(receipt)
                        .visibility_timeout(LATER_VISIBILITY_SECS)
                        .build()
                        .map_err(|e| e.to_string())
                })
                .collect::<Result<Vec<_>, _>>()?;
            // When this fails the messages come back anyway, at the end of
            // their visibility timeout.
            if let Err(e) = self
                .client
                .change_message_visibility_batch()
                .queue_url(&self.config.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
            {
                failed.get_or_insert(sdk_error("ChangeMessageVisibilityBatch", e));
            }
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Sends a rejected message to the dead-letter queue, the reason in its
    /// attributes. A FIFO dead-letter queue gets one message group and the
    /// original message id as deduplication id, so a message rejected twice
    /// (sent, then not deleted) lands there once within SQS's five-minute
    /// window.
    async fn dead_letter(
        &self,
        dead: &str,
        held: &Held,
        code: &str,
        reason: &str,
    ) -> Result<(), String> {
        let attributes =
            dead_letter_attributes(&held.message.headers, code, reason, &held.message_id)?;
        let mut send = self
            .client
            .send_message()
            .queue_url(dead)
            .message_body(String::from_utf8_lossy(&held.message.body))
            .set_message_attributes(Some(attributes));
        if queue_name(dead).is_some_and(|n| n.ends_with(".fifo")) {
            send = send
                .message_group_id("switchyard-rejected")
                .message_deduplication_id(&held.message_id);
        }
        send.send()
            .await
            .map(|_| ())
            .map_err(|e| sdk_error("SendMessage", e))
    }

    /// Messages waiting (`ApproximateNumberOfMessages`) plus those received
    /// and not yet deleted (`ApproximateNumberOfMessagesNotVisible`); both
    /// are SQS's estimates.
    async fn queue_backlog(&self) -> Result<Option<u64>, String> {
        let reply = self
            .client
            .get_queue_attributes()
            .queue_url(&self.config.queue_url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .map_err(|e| sdk_error("GetQueueAttributes", e))?;
        let Some(attributes) = reply.attributes() else {
            return Ok(None);
        };
        let count =
            |name: &QueueAttributeName| attributes.get(name).and_then(|v| v.parse::<u64>().ok());
        Ok(
            match (
                count(&QueueAttributeName::ApproximateNumberOfMessages),
                count(&QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
            ) {
                (Some(a), Some(b)) => Some(a + b),
                (Some(a), None) | (None, Some(a)) => Some(a),
                (None, None) => None,
            },
        )
    }
}

impl BrokerConsumer for SqsConsumer {
    fn backlog(&mut self) -> BoxFuture<'_, Result<Option<u64>, String>> {
        Box::pin(self.queue_backlog())
    }

    fn receive(&mut self, max: usize) -> BoxFuture<'_, Result<Vec<(u64, BrokerMessage)>, String>> {
        Box::pin(self.read(max.max(1)))
    }

    fn settle(&mut self, outcomes: Vec<(u64, Settlement)>) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(self.settle_all(outcomes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: serde_json::Value) -> Result<SqsConfig, BrokerConfigError> {
        let mut v = serde_json::json!({
            "type": "sqs",
            "queueUrl": "http://127.0.0.1:9324/000000000000/orders",
        });
        if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        match crate::BrokerConfig::parse(&v)? {
            crate::BrokerConfig::Sqs(c) => Ok(c),
            #[allow(unreachable_patterns)]
            _ => unreachable!(),
        }
    }

    fn refused(extra: serde_json::Value) -> BrokerConfigError {
        config(extra).unwrap_err()
    }

    #[test]
    fn configurations_are_checked_naming_the_field() {
        let c = config(serde_json::json!({})).unwrap();
        assert_eq!(c.region(), "us-east-1");
        assert_eq!(c.wait(), 1);
        assert_eq!(
            refused(serde_json::json!({"queueUrl": "not a url"})).field,
            "queueUrl"
        );
        assert_eq!(
            refused(serde_json::json!({"queueUrl": "ftp://host/1/q"})).field,
            "queueUrl"
        );
        assert_eq!(
            refused(serde_json::json!({"queueUrl": "http://127.0.0.1:9324/"})).field,
            "queueUrl"
        );
        assert_eq!(
            refused(serde_json::json!({"endpointUrl": "localhost:9324"})).field,
            "endpointUrl"
        );
        assert_eq!(refused(serde_json::json!({"region": ""})).field, "region");
        assert_eq!(
            refused(serde_json::json!({"region": "us east"})).field,
            "region"
        );
        assert_eq!(
            refused(serde_json::json!({"waitTimeSeconds": 21})).field,
            "waitTimeSeconds"
        );
        assert_eq!(
            refused(serde_json::json!({"waitTimeSeconds": -1})).field,
            "waitTimeSeconds"
        );
        assert_eq!(
            refused(serde_json::json!({"visibilityTimeoutSecs": 43201})).field,
            "visibilityTimeoutSecs"
        );
        assert_eq!(
            refused(serde_json::json!({"visibilityTimeoutSecs": "soon"})).field,
            "visibilityTimeoutSecs"
        );
        assert_eq!(
            refused(serde_json::json!({"accessKeyId": "AKIA"})).field,
            "secretAccessKey"
        );
        assert_eq!(
            refused(serde_json::json!({"secretAccessKey": "s"})).field,
            "accessKeyId"
        );
        // The same queue, spelled differently.
        let e = refused(serde_json::json!({
            "deadLetterQueueUrl": "http://127.0.0.1:9324/000000000000/orders/"
        }));
        assert_eq!(e.field, "deadLetterQueueUrl", "{e}");
        assert_eq!(
            refused(serde_json::json!({"deadLetterQueueUrl": "nowhere"})).field,
            "deadLetterQueueUrl"
        );
        let e = refused(serde_json::json!({"colour": 1}));
        assert!(e.message.contains("colour"), "{e}");
        let c = config(serde_json::json!({
            "region": "eu-west-1",
            "endpointUrl": "http://127.0.0.1:5000",
            "accessKeyId": "AKIA",
            "secretAccessKey": "hunter2",
            "waitTimeSeconds": 20,
            "visibilityTimeoutSecs": 30,
            "deadLetterQueueUrl": "http://127.0.0.1:9324/000000000000/orders-dead",
        }))
        .unwrap();
        assert_eq!(c.wait(), 20);
        assert_eq!(c.reads(), "sqs http://127.0.0.1:9324/000000000000/orders");
    }

    #[test]
    fn the_secret_key_is_not_shown() {
        use switchyard_engine::broker_intake::BrokerKinds;
        let shown = crate::Kinds.redact(&serde_json::json!({
            "type": "sqs",
            "queueUrl": "https://sqs.us-east-1.amazonaws.com/1/orders",
            "accessKeyId": "AKIA",
            "secretAccessKey": "hunter2",
        }));
        assert_eq!(shown["type"], "sqs");
        assert_eq!(shown["accessKeyId"], "AKIA");
        assert_eq!(shown["secretAccessKey"], "********");
        assert!(!shown.to_string().contains("hunter2"));
    }

    #[test]
    fn text_and_number_attributes_become_headers() {
        let value = |kind: &str, text: Option<&str>| {
            let b = MessageAttributeValue::builder().data_type(kind);
            let b = match text {
                Some(t) => b.string_value(t),
                None => b.binary_value(aws_sdk_sqs::primitives::Blob::new(vec![0u8, 1])),
            };
            b.build().unwrap()
        };
        let attributes: HashMap<String, MessageAttributeValue> = [
            ("switchyard-event-type", value("String", Some("order.paid"))),
            ("count", value("Number", Some("42"))),
            ("doc", value("String.json", Some("{}"))),
            ("blob", value("Binary", None)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let headers = attribute_headers(Some(&attributes));
        let pairs: Vec<(&str, &str)> = headers
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("count", "42"),
                ("doc", "{}"),
                ("switchyard-event-type", "order.paid")
            ]
        );
        assert!(attribute_headers(None).is_empty());
    }

    #[test]
    fn dead_letters_carry_the_reason_within_the_attribute_limit() {
        let headers: Vec<(String, String)> = (0..12)
            .map(|i| (format!("h{i:02}"), format!("v{i}")))
            .collect();
        let attributes = dead_letter_attributes(&headers, "not_json", "", "m-1").unwrap();
        assert_eq!(attributes.len(), MAX_ATTRIBUTES);
        assert_eq!(attributes["rejected-code"].string_value(), Some("not_json"));
        assert_eq!(attributes["rejected-reason"].string_value(), Some("-"));
        assert_eq!(
            attributes["original-message-id"].string_value(),
            Some("m-1")
        );
        assert_eq!(attributes["h00"].string_value(), Some("v0"));
        let long = "x".repeat(5000);
        let attributes = dead_letter_attributes(&[], "bad_field", &long, "m-2").unwrap();
        assert_eq!(
            attributes["rejected-reason"].string_value().map(str::len),
            Some(MAX_REASON_CHARS)
        );
        assert_eq!(
            attribute_text("a\u{1}b\u{FFFF}c\n", 100),
            "a\u{FFFD}b\u{FFFD}c\n"
        );
        assert_eq!(attribute_text("", 100), "-");
    }
}
