use std::collections::BTreeMap;
use switchyard_core::{AppId, AttemptId, EndpointId, MessageId};

pub type Metadata = BTreeMap<String, String>;

#[derive(Debug, Clone, PartialEq)]
pub struct Application {
    pub id: AppId,
    pub uid: Option<String>,
    pub name: String,
    pub rate_limit: Option<u32>,
    pub metadata: Metadata,
    pub created_at: u64,
    pub updated_at: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EventType {
    pub name: String,
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

/// A secret that still signs until `expires_at` after a rotation.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RetiredSecret {
    pub secret: String,
    pub expires_at: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    pub id: EndpointId,
    pub app_id: AppId,
    pub uid: Option<String>,
    pub url: String,
    pub description: String,
    pub disabled: bool,
    pub filter_types: Option<Vec<String>>,
    pub channels: Option<Vec<String>>,
    pub rate_limit: Option<u32>,
    pub metadata: Metadata,
    pub headers: BTreeMap<String, String>,
    /// `whsec_…`
    pub secret: String,
    pub retired_secrets: Vec<RetiredSecret>,
    pub created_at: u64,
    pub updated_at: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub id: MessageId,
    pub app_id: AppId,
    pub event_type: String,
    pub event_id: Option<String>,
    pub channels: Option<Vec<String>>,
    pub tags: Option<Vec<String>>,
    /// The payload JSON text as received; `None` once expunged.
    pub payload: Option<String>,
    pub created_at: u64,
}

#[derive(Debug, Clone)]
pub struct NewMessage {
    pub message: Message,
    pub idempotency_key: Option<String>,
    /// Matched endpoints; one delivery each.
    pub endpoints: Vec<EndpointId>,
    /// Whether this node will send the deliveries straight away (stored as
    /// `sending`) or leave them `pending` for the poller.
    pub dispatch_now: bool,
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
    pub payload: std::sync::Arc<str>,
    pub manual: bool,
}

#[derive(Debug, Clone)]
pub struct Attempt {
    pub id: AttemptId,
    pub app_id: AppId,
    pub msg_id: MessageId,
    pub endpoint_id: EndpointId,
    pub url: String,
    pub status: DeliveryStatus,
    pub response_status_code: i32,
    pub response: String,
    pub response_duration_ms: u64,
    pub manual: bool,
    pub created_at: u64,
}

/// The result of one attempt and where it leaves the delivery.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub attempt: Attempt,
    /// `Success`, `Fail` (retries exhausted) or `Pending` with `next_attempt_at`.
    pub delivery_status: DeliveryStatus,
    pub next_attempt_at: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointStats {
    pub success: u64,
    pub pending: u64,
    pub sending: u64,
    pub fail: u64,
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
