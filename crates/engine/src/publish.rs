//! Messages from producers, however they arrive (`POST
//! /api/v1/app/{app}/msg`, or a broker source reading an envelope): the
//! rules a message request is held to, in one place, before intake
//! ([`Engine::accept`]) checks its schema, matches endpoints and commits it.

use crate::accept::{AcceptEventType, AcceptInput, AcceptResult, PayloadDocument};
use crate::apps::AppInput;
use crate::{Engine, EngineError, limits};
use switchyard_core::EventTypeName;

/// Longest event id, in characters (as Svix).
pub const MAX_EVENT_ID_CHARS: usize = 256;
/// Longest tag, in characters.
pub const MAX_TAG_CHARS: usize = 128;

/// A message as a producer asks for it, unchecked.
#[derive(Debug, Clone, Default)]
pub struct MessageRequest {
    /// `invoice.paid`: an [`EventTypeName`].
    pub event_type: String,
    /// JSON text of an object, sent to endpoints byte for byte.
    pub payload: bytes::Bytes,
    /// 1 to [`MAX_EVENT_ID_CHARS`] characters; a second message with the same
    /// one (per application) is not stored or sent again.
    pub event_id: Option<String>,
    /// At most 10 channels.
    pub channels: Option<Vec<String>>,
    /// At most [`limits::MAX_TAGS`], each 1 to [`MAX_TAG_CHARS`] characters.
    pub tags: Option<Vec<String>>,
    /// Replays the first answer to a request with the same key.
    pub idempotency_key: Option<String>,
    /// Creates the application named by uid when there is none yet.
    pub application: Option<AppInput>,
}

fn check_chars(field: &str, value: &str, max: usize) -> Result<(), EngineError> {
    if value.is_empty() || value.chars().count() > max {
        return Err(EngineError::invalid(
            field,
            format!("must be at least 1 and at most {max} characters"),
        ));
    }
    Ok(())
}

impl MessageRequest {
    /// The request's own fields checked (the application and the schema
    /// are checked on publishing), so a caller with checks of its own (the
    /// HTTP layer's) can run these first and refuse in the same order.
    pub fn check_fields(&self) -> Result<CheckedFields, EngineError> {
        let event_type = EventTypeName::parse(&self.event_type)
            .map_err(|e| EngineError::invalid("eventType", e.to_string()))?;
        if !self.payload.trim_ascii_start().starts_with(b"{") {
            return Err(EngineError::invalid("payload", "must be a JSON object"));
        }
        if let Some(event_id) = &self.event_id {
            check_chars("eventId", event_id, MAX_EVENT_ID_CHARS)?;
        }
        let channels = crate::parse_channels("channels", self.channels.clone())?;
        if let Some(tags) = &self.tags {
            if tags.len() > limits::MAX_TAGS {
                return Err(EngineError::invalid(
                    "tags",
                    format!(
                        "has {} tags; at most {} are allowed",
                        tags.len(),
                        limits::MAX_TAGS
                    ),
                ));
            }
            for tag in tags {
                check_chars("tags", tag, MAX_TAG_CHARS)?;
            }
        }
        Ok(CheckedFields {
            event_type,
            channels,
        })
    }
}

/// What [`MessageRequest::check_fields`] parsed, for
/// [`Engine::publish_checked`], so nothing is parsed twice.
pub struct CheckedFields {
    event_type: EventTypeName,
    channels: Option<Vec<switchyard_core::Channel>>,
}

impl Engine {
    /// Checks a message request and accepts it for the application
    /// `app_key` (id or uid). Errors name the request field:
    /// [`EngineError::Invalid`] for a value, [`EngineError::NotFound`] for
    /// the application, and whatever intake refuses (schemas).
    pub async fn publish(
        &self,
        app_key: &str,
        request: MessageRequest,
    ) -> Result<AcceptResult, EngineError> {
        let checked = request.check_fields()?;
        self.publish_checked(app_key, request, checked).await
    }

    /// [`Self::publish`] of a request whose fields were checked already.
    pub async fn publish_checked(
        &self,
        app_key: &str,
        request: MessageRequest,
        checked: CheckedFields,
    ) -> Result<AcceptResult, EngineError> {
        let CheckedFields {
            event_type,
            channels,
        } = checked;
        let app = self.app_for_message(app_key, request.application).await?;
        self.accept(AcceptInput {
            app_id: app.id,
            event_type: AcceptEventType::Checked(event_type),
            event_id: request.event_id,
            channels,
            tags: request.tags,
            payload: request.payload,
            idempotency_key: request.idempotency_key,
            forward: None,
            document: PayloadDocument::Json,
        })
        .await
    }
}
