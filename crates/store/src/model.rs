use std::collections::BTreeMap;
use switchyard_core::signing::EndpointSecret;
use switchyard_core::{
    AppId, AttemptId, BrokerSourceId, Channel, EndpointId, EndpointUrl, EventTypeName,
    EventTypePattern, MessageEventType, MessageId, RejectionId, SourceId, Uid,
};

pub type Metadata = BTreeMap<String, String>;

#[derive(Debug, Clone, PartialEq)]
pub struct Application {
    pub id: AppId,
    pub uid: Option<Uid>,
    pub name: String,
    pub rate_limit: Option<u32>,
    pub metadata: Metadata,
    pub created_at: u64,
    pub updated_at: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EventType {
    pub name: EventTypeName,
    pub description: String,
    pub archived: bool,
    pub deprecated: bool,
    /// Version → JSON Schema, as the API received it.
    pub schemas: Option<serde_json::Value>,
    pub feature_flags: Option<Vec<String>>,
    pub group_name: Option<String>,
    pub created_at: u64,
    pub updated_at: u64,
}

/// A secret that still signs (endpoints, `S` = [`EndpointSecret`]) or is
/// still accepted (source tokens and provider secrets, kept as text) until
/// `expires_at` (Unix ms) after a rotation.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RetiredSecret<S = String> {
    pub secret: S,
    pub expires_at: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    pub id: EndpointId,
    pub app_id: AppId,
    pub uid: Option<Uid>,
    pub url: EndpointUrl,
    pub description: String,
    pub disabled: bool,
    /// Why Switchyard disabled it (auto-disable); `None` when enabled or
    /// disabled through the API.
    pub disabled_reason: Option<String>,
    pub filter_types: Option<Vec<EventTypePattern>>,
    pub channels: Option<Vec<Channel>>,
    /// Deliveries per second; `None` takes the application's.
    pub rate_limit: Option<u32>,
    /// Deliveries in flight at once; `None` is unlimited (within the
    /// per-host connection cap).
    pub concurrency_limit: Option<u32>,
    /// Circuit-breaker settings; `None` is no breaker.
    pub circuit_breaker: Option<switchyard_core::breaker::BreakerConfig>,
    /// First in, first out: the endpoint's deliveries are sent one at a
    /// time, in message-creation order (message id order), and one that
    /// fails holds back the rest until it succeeds or runs out of retries.
    /// Covers the deliveries made while it is set.
    pub fifo: bool,
    pub metadata: Metadata,
    pub headers: BTreeMap<String, String>,
    /// Credentials sent besides the signature (basic, bearer, OAuth 2.0,
    /// mTLS); stored sealed.
    pub auth: switchyard_core::endpoint_auth::EndpointAuth,
    /// A payload filter (see `switchyard_core::filter`), as written by the user.
    pub payload_filter: Option<serde_json::Value>,
    pub secret: EndpointSecret,
    pub retired_secrets: Vec<RetiredSecret<EndpointSecret>>,
    pub created_at: u64,
    pub updated_at: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub id: MessageId,
    pub app_id: AppId,
    pub event_type: MessageEventType,
    pub event_id: Option<String>,
    pub channels: Option<Vec<Channel>>,
    pub tags: Option<Vec<String>>,
    /// The payload bytes as received (JSON for the API; any body, UTF-8 or
    /// not, for ingested webhooks); `None` once expunged.
    pub payload: Option<bytes::Bytes>,
    /// For ingested webhooks: what to pass on besides the body.
    pub forward: Option<Forward>,
    pub created_at: u64,
}

/// What an ingested webhook carries to its destinations besides the body:
/// the provider's headers that pass the source's allow-list, and the path
/// suffix and query string it was posted with.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Forward {
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    #[serde(default)]
    pub path: String,
}

#[derive(Debug, Clone)]
pub struct NewMessage {
    pub message: Message,
    pub idempotency_key: Option<String>,
    /// Matched endpoints; one delivery each.
    pub deliveries: Vec<NewDelivery>,
}

#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub endpoint_id: EndpointId,
    /// Whether this node will send it straight away (stored as `sending`) or
    /// leave it `pending` for whichever node owns its partition. Never for
    /// a FIFO endpoint: only a claim can tell whether it is next.
    pub send_now: bool,
    /// Its endpoint is FIFO ([`Endpoint::fifo`]): claimed only when no
    /// earlier FIFO delivery of the endpoint is pending or being sent.
    pub fifo: bool,
}

#[derive(Debug, Clone)]
pub enum Accepted {
    Created(Message),
    /// An earlier call with the same idempotency key or event id stored this.
    Existing(Message),
}

/// Delivery status, numbered as the Svix API numbers message status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum DeliveryStatus {
    Success = 0,
    Pending = 1,
    Fail = 2,
    Sending = 3,
}

impl DeliveryStatus {
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0 => Self::Success,
            1 => Self::Pending,
            2 => Self::Fail,
            3 => Self::Sending,
            _ => return None,
        })
    }

    pub fn text(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Pending => "pending",
            Self::Fail => "fail",
            Self::Sending => "sending",
        }
    }
}

/// What the dispatcher needs to send one delivery.
#[derive(Debug, Clone)]
pub struct DeliveryTask {
    pub app_id: AppId,
    pub msg_id: MessageId,
    pub endpoint_id: EndpointId,
    /// Attempts made so far.
    pub attempts: u32,
    /// Shared by every delivery of the message (cloning is a reference count).
    pub payload: bytes::Bytes,
    pub forward: Option<std::sync::Arc<Forward>>,
    pub manual: bool,
    /// Stored as a FIFO delivery ([`NewDelivery::fifo`]); only claims
    /// return those.
    pub fifo: bool,
}

#[derive(Debug, Clone)]
pub struct Attempt {
    pub id: AttemptId,
    pub app_id: AppId,
    pub msg_id: MessageId,
    pub endpoint_id: EndpointId,
    /// The URL the attempt was sent to (the endpoint's, with an ingested
    /// request's path joined on); `None` when it failed before the endpoint
    /// could be read (a store error), which the API shows as `""`.
    pub url: Option<EndpointUrl>,
    pub status: DeliveryStatus,
    pub response_status_code: i32,
    pub response: String,
    pub response_duration_ms: u64,
    pub manual: bool,
    pub created_at: u64,
}

/// A claimed delivery that a per-endpoint control held back (a rate limit,
/// an open circuit breaker): it goes back to pending, due at `run_at` (ms
/// since the epoch), with no attempt recorded and none counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deferral {
    pub msg_id: MessageId,
    pub endpoint_id: EndpointId,
    pub run_at: u64,
}

/// The result of one attempt and where it leaves the delivery.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub attempt: Attempt,
    /// `Success`, `Fail` (retries exhausted) or `Pending` with `next_attempt_at`.
    pub delivery_status: DeliveryStatus,
    pub next_attempt_at: Option<u64>,
    /// Whether the request was made: false when the delivery failed before
    /// sending (refused by its lane, or its endpoint could not be read),
    /// which says nothing of the endpoint's health.
    pub sent: bool,
    /// The delivery is FIFO ([`DeliveryTask::fifo`]), or its endpoint is
    /// now: storing this may let the endpoint's next delivery go.
    pub fifo: bool,
    /// Scheduled attempts the delivery had before this one.
    pub attempts_before: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointStats {
    pub success: u64,
    pub pending: u64,
    pub sending: u64,
    pub fail: u64,
}

impl EndpointStats {
    pub(crate) fn set(&mut self, status: DeliveryStatus, count: u64) {
        match status {
            DeliveryStatus::Success => self.success = count,
            DeliveryStatus::Pending => self.pending = count,
            DeliveryStatus::Fail => self.fail = count,
            DeliveryStatus::Sending => self.sending = count,
        }
    }
}

/// A delivery joined with its endpoint or its message, for the
/// "attempted destinations" and "attempted messages" listings.
#[derive(Debug, Clone)]
pub struct DeliveryView {
    pub msg_id: MessageId,
    pub endpoint_id: EndpointId,
    pub status: DeliveryStatus,
    pub next_attempt_at: Option<u64>,
    pub endpoint: Option<Endpoint>,
    pub message: Option<Message>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    #[default]
    Ascending,
    Descending,
}

#[derive(Debug, Clone, Default)]
pub struct PageRequest {
    pub limit: usize,
    /// The id (or name) after which to continue, exclusive.
    pub iterator: Option<String>,
    pub order: Order,
}

#[derive(Debug, Clone)]
pub struct Page<T> {
    pub data: Vec<T>,
    /// The cursor for the next page (the last item's key).
    pub iterator: Option<String>,
    pub done: bool,
}

#[derive(Debug, Clone, Default)]
pub struct MessageFilter {
    pub page: PageRequest,
    pub event_types: Option<Vec<String>>,
    pub channel: Option<String>,
    pub before_ms: Option<u64>,
    pub after_ms: Option<u64>,
    pub with_content: bool,
}

#[derive(Debug, Clone, Default)]
pub struct AttemptFilter {
    pub app_id: Option<AppId>,
    pub endpoint_id: Option<EndpointId>,
    pub msg_id: Option<MessageId>,
    pub status: Option<u8>,
    pub event_types: Option<Vec<String>>,
    pub channel: Option<String>,
    pub before_ms: Option<u64>,
    pub after_ms: Option<u64>,
    pub page: PageRequest,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    pub status: u16,
    pub body: String,
    pub created_at: u64,
}

/// One node's heartbeat and request for its share of the partitions.
#[derive(Debug, Clone)]
pub struct LeaseRequest {
    pub node_id: String,
    /// Where the node serves its API, for the cluster listing.
    pub address: String,
    pub now_ms: u64,
    pub ttl_ms: u64,
    /// Treat every partition granted as newly acquired: the node has no
    /// deliveries of its own in flight (it has just started, or lost contact
    /// long enough to drop them).
    pub fresh: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseGrant {
    /// Every partition this node holds a lease on now, ascending.
    pub owned: Vec<u16>,
    /// Those new to it; their deliveries left `sending` by another owner were
    /// made pending again.
    pub acquired: Vec<u16>,
    /// Deliveries made pending again because a node committed them as
    /// `sending` after it had lost their partition to this one.
    pub stranded: usize,
    /// Partitions held beyond this node's fair share, which it should drain
    /// and release so newer nodes get theirs.
    pub surplus: Vec<u16>,
    pub live_nodes: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub node_id: String,
    pub address: String,
    pub started_at: u64,
    pub heartbeat_at: u64,
    /// Partitions whose lease has not expired.
    pub partitions: Vec<u16>,
}

/// An incoming-webhook source: where a provider posts, how its requests are
/// verified, and the application whose endpoints are its destinations.
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    pub id: SourceId,
    pub uid: Option<Uid>,
    pub name: String,
    /// The verifier type (`stripe`, `github`, `generic-webhook`, ...).
    pub kind: String,
    /// The type's settings, secrets included, as the user wrote them.
    pub config: serde_json::Value,
    /// Switchyard's own options (event type, dedupe, forwarding, limits, response).
    pub settings: serde_json::Value,
    pub metadata: Metadata,
    pub app_id: AppId,
    /// The secret part of the ingest URL.
    pub token: String,
    /// Earlier tokens still accepted until they expire.
    pub retired_tokens: Vec<RetiredSecret>,
    /// Earlier verification secrets (the config's secret before a rotation)
    /// still accepted until they expire.
    pub retired_secrets: Vec<RetiredSecret>,
    pub created_at: u64,
    pub updated_at: u64,
}

impl Source {
    /// Moves retired secrets out of a config that still holds them under
    /// [`switchyard_core::source::LEGACY_RETIRED_SECRETS_KEY`] (`[{"secret":
    /// "…", "expiresAt": ms}]`, as written before they became
    /// [`Source::retired_secrets`]). Entries without a string secret and a
    /// whole expiry were never accepted and are dropped.
    pub fn take_legacy_retired_secrets(config: &mut serde_json::Value) -> Vec<RetiredSecret> {
        let legacy = config
            .as_object_mut()
            .and_then(|c| c.remove(switchyard_core::source::LEGACY_RETIRED_SECRETS_KEY));
        let Some(serde_json::Value::Array(entries)) = legacy else {
            return Vec::new();
        };
        entries
            .iter()
            .filter_map(|e| {
                Some(RetiredSecret {
                    secret: e.get("secret")?.as_str()?.to_owned(),
                    expires_at: e.get("expiresAt")?.as_u64()?,
                })
            })
            .collect()
    }
}

/// Counters of what a source received, added to in batches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceStats {
    pub accepted: u64,
    pub duplicates: u64,
    pub rejected: u64,
    pub last_rejection: Option<String>,
    pub last_rejection_at: Option<u64>,
}

/// A broker source: a queue, stream or subscription whose messages are
/// accepted as `POST /msg` would accept them.
#[derive(Debug, Clone, PartialEq)]
pub struct BrokerSource {
    pub id: BrokerSourceId,
    pub uid: Option<Uid>,
    pub name: String,
    /// The application (id or uid) every message goes to; `None` lets each
    /// message name its own.
    pub app: Option<String>,
    /// Messages taken at once, 1 to 1000.
    pub batch_size: u32,
    /// Paused sources are not read by any node.
    pub paused: bool,
    /// The broker configuration (`{"type": ..., ...}`), credentials
    /// included; sealed at rest.
    pub broker: serde_json::Value,
    /// What the source reads (broker, queue or stream, group), unique among
    /// sources: two sources reading the same would share its messages.
    pub reads: String,
    pub metadata: Metadata,
    pub created_at: u64,
    pub updated_at: u64,
}

/// What the nodes reading a broker source counted, added to in batches.
/// Counts are totals since the source was created; the backlog and the
/// last error are the latest any node reported.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BrokerSourceStats {
    pub received: u64,
    /// Committed as new messages.
    pub accepted: u64,
    /// Already committed under their `eventId` (redeliveries).
    pub duplicates: u64,
    pub rejected: u64,
    /// Left with the broker because the store could not take them.
    pub deferred: u64,
    /// Messages waiting in the broker, where it reports them, and when.
    pub backlog: Option<u64>,
    pub backlog_at: Option<u64>,
    pub last_error: Option<String>,
    pub last_error_at: Option<u64>,
}

/// A broker message that could never become a message, kept with why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerRejection {
    pub id: RejectionId,
    pub source_id: BrokerSourceId,
    /// When it was rejected, Unix ms.
    pub at: u64,
    /// A stable code (`invalid_json`, `unknown_app`, `too_large`, ...).
    pub code: String,
    pub reason: String,
    /// The message's body, at most [`REJECTED_BODY_KEPT`] bytes of it.
    pub body: bytes::Bytes,
    /// The body's whole size in bytes.
    pub body_size: u64,
    /// The message's text headers.
    pub headers: Vec<(String, String)>,
}

/// Bytes of a rejected message's body kept in the rejected log.
pub const REJECTED_BODY_KEPT: usize = 64 * 1024;

/// Changes other nodes must hear about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterEvent {
    /// Deliveries were stored pending; their owners should poll.
    Due,
    /// A node joined or handed partitions back: every node should run its
    /// lease round now rather than at its next renewal.
    Leases,
    AppChanged(AppId),
    EndpointsChanged(AppId),
    EventTypeChanged(EventTypeName),
    SourcesChanged,
    /// A broker source was created, changed, paused or deleted: every node
    /// should start or stop reading it now.
    BrokerSourcesChanged,
    /// A token was expired or revoked: drop cached grants.
    TokensChanged,
    /// Events may have been missed (the listener reconnected): drop caches.
    Resync,
}

impl ClusterEvent {
    pub fn encode(&self) -> String {
        match self {
            Self::Due => "due".into(),
            Self::Leases => "leases".into(),
            Self::AppChanged(id) => format!("app:{id}"),
            Self::EndpointsChanged(app) => format!("endpoints:{app}"),
            Self::EventTypeChanged(name) => format!("event_type:{name}"),
            Self::SourcesChanged => "sources".into(),
            Self::BrokerSourcesChanged => "broker_sources".into(),
            Self::TokensChanged => "tokens".into(),
            Self::Resync => "resync".into(),
        }
    }

    pub fn decode(text: &str) -> Option<Self> {
        Some(match text.split_once(':') {
            None if text == "due" => Self::Due,
            None if text == "leases" => Self::Leases,
            None if text == "resync" => Self::Resync,
            None if text == "sources" => Self::SourcesChanged,
            None if text == "broker_sources" => Self::BrokerSourcesChanged,
            None if text == "tokens" => Self::TokensChanged,
            Some(("app", id)) => Self::AppChanged(AppId::parse(id)?),
            Some(("endpoints", app)) => Self::EndpointsChanged(AppId::parse(app)?),
            Some(("event_type", name)) => Self::EventTypeChanged(EventTypeName::parse(name).ok()?),
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::ClusterEvent;
    use switchyard_core::{AppId, EventTypeName};

    #[test]
    fn cluster_events_round_trip() {
        for e in [
            ClusterEvent::Due,
            ClusterEvent::SourcesChanged,
            ClusterEvent::TokensChanged,
            ClusterEvent::Leases,
            ClusterEvent::Resync,
            ClusterEvent::AppChanged(AppId::generate()),
            ClusterEvent::EndpointsChanged(AppId::generate()),
            ClusterEvent::EventTypeChanged(EventTypeName::parse("b.c-d_1").unwrap()),
        ] {
            assert_eq!(ClusterEvent::decode(&e.encode()), Some(e));
        }
        for junk in ["nonsense", "app:ep_1", "endpoints:", "event_type:a b"] {
            assert_eq!(ClusterEvent::decode(junk), None, "{junk}");
        }
    }
}

#[cfg(test)]
mod source_tests {
    use super::*;
    use serde_json::json;

    /// A config written before retired secrets had their own field gives
    /// them up: the accepted entries become typed, the key leaves the config.
    #[test]
    fn legacy_retired_secrets_leave_the_config() {
        let mut config = json!({
            "secret": "new",
            "retiredSecrets": [
                {"secret": "old", "expiresAt": 1000},
                {"secret": 5, "expiresAt": 1000},
                {"secret": "no-expiry"},
            ],
        });
        let retired = Source::take_legacy_retired_secrets(&mut config);
        assert_eq!(
            retired,
            [RetiredSecret {
                secret: "old".into(),
                expires_at: 1000
            }]
        );
        assert_eq!(config, json!({"secret": "new"}));
        assert!(Source::take_legacy_retired_secrets(&mut config).is_empty());
        let mut odd = json!({"retiredSecrets": "junk"});
        assert!(Source::take_legacy_retired_secrets(&mut odd).is_empty());
        assert_eq!(odd, json!({}));
    }
}

/// Who an API token is for: an API client an admin created, or an
/// app-portal session (`POST /api/v1/auth/app-portal-access/{app_id}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Api,
    AppPortal,
}

impl TokenKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Api => "api",
            Self::AppPortal => "app-portal",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "api" => Some(Self::Api),
            "app-portal" => Some(Self::AppPortal),
            _ => None,
        }
    }
}

/// A token other than the admin token, and what it may do. The token itself
/// is never stored: only its SHA-256 (hex) and its first characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiToken {
    pub id: switchyard_core::TokenId,
    pub kind: TokenKind,
    pub name: String,
    /// SHA-256 of the token, lower-case hex.
    pub token_sha256: String,
    /// The token's first characters followed by `…`, to tell tokens apart.
    pub censored: String,
    /// The one application it reaches; `None`: all of them.
    pub app_id: Option<AppId>,
    /// Reads only.
    pub read_only: bool,
    /// App-portal capabilities (`ViewBase`, …); `None`: all of them.
    pub capabilities: Option<Vec<String>>,
    /// An app-portal session, to expire together.
    pub session_id: Option<String>,
    pub created_at: u64,
    /// Unix ms after which it is refused; `None`: never.
    pub expires_at: Option<u64>,
}

/// Stored secret values of one column sealed with one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedCount {
    /// `table.column`.
    pub column: String,
    /// The key id (8 hex digits); `None` for values stored plain.
    pub key_id: Option<String>,
    pub count: u64,
}
