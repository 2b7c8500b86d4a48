//! Intake: validate a message, match it to endpoints and commit it together
//! with its deliveries; then hand the deliveries to the dispatcher.

use crate::schema::{SchemaState, Verdict};
use crate::{Engine, EngineError, schema};
use serde_json::Value;
use std::sync::Arc;
use switchyard_core::json::{DocumentError, parse_document};
use switchyard_core::matching::endpoint_matches;
use switchyard_core::{AppId, Channel, EventTypeName, MessageEventType, MessageId};
use switchyard_store::{Accepted, DeliveryTask, Forward, Message, NewDelivery, NewMessage};

pub struct AcceptInput {
    pub app_id: AppId,
    pub event_type: AcceptEventType,
    pub event_id: Option<String>,
    pub channels: Option<Vec<Channel>>,
    pub tags: Option<Vec<String>>,
    /// The payload exactly as the producer sent it; this text is what endpoints receive.
    pub payload: bytes::Bytes,
    pub idempotency_key: Option<String>,
    /// For ingested webhooks: provider headers and path passed on.
    pub forward: Option<Forward>,
    /// How schema checks and payload filters read the payload.
    pub document: PayloadDocument,
}

/// A message's event type, and whether its payload answers to a schema.
pub enum AcceptEventType {
    /// A registered-style name (API messages): the payload is checked
    /// against the latest schema of that event type, if it has one.
    Checked(EventTypeName),
    /// A provider's name (ingested webhooks): the event is the provider's
    /// and is taken as it comes.
    Provider(MessageEventType),
}

/// The parsed copy of a payload that decisions are made on. Whichever way
/// it is made, it comes from [`switchyard_core::json::parse_document`], so a
/// payload whose keys repeat (where that copy and a receiver's reading of
/// the delivered bytes could differ) is never accepted.
pub enum PayloadDocument {
    /// The payload is JSON text (API messages): accept parses it and refuses
    /// duplicate object keys with [`EngineError::InvalidAt`] naming the key
    /// under `payload`.
    Json,
    /// Parsed by the caller (ingested bodies, by
    /// `switchyard_core::source::document_of`); `None` for a body that is
    /// no document (XML, plain text), which payload filters see as `null`.
    Parsed(Option<Value>),
}

pub struct AcceptResult {
    pub message: Message,
    /// False when an earlier request with the same key or event id created it.
    pub created: bool,
}

impl Engine {
    pub async fn accept(&self, input: AcceptInput) -> Result<AcceptResult, EngineError> {
        let document = match input.document {
            PayloadDocument::Parsed(doc) => doc.unwrap_or(Value::Null),
            PayloadDocument::Json => parse_document(&input.payload).map_err(|e| match e {
                DocumentError::DuplicateKey(d) => EngineError::InvalidAt {
                    message: format!(
                        "duplicate key '{}': object keys must be unique (RFC 8259 section 4)",
                        d.key()
                    ),
                    loc: std::iter::once("payload".to_owned())
                        .chain(d.path)
                        .collect(),
                },
                DocumentError::Syntax(message) => EngineError::invalid("payload", message),
            })?,
        };
        let event_type = match input.event_type {
            AcceptEventType::Checked(name) => {
                self.check_schema(&name, &document).await?;
                MessageEventType::from(name)
            }
            AcceptEventType::Provider(name) => name,
        };
        let endpoints = self.endpoints.for_app(&input.app_id).await?;
        let channels = input.channels.clone().unwrap_or_default();
        let mut matched = Vec::new();
        for e in endpoints.iter() {
            if !endpoint_matches(
                e.endpoint.disabled,
                e.endpoint.filter_types.as_deref(),
                e.endpoint.channels.as_deref(),
                &event_type,
                &channels,
            ) {
                continue;
            }
            if let Some(filter) = &e.payload_filter
                && !filter.matches(&document)
            {
                continue;
            }
            matched.push((e.endpoint.id.clone(), e.endpoint.fifo));
        }
        let now = self.now_ms();
        let payload = input.payload;
        let forward = input.forward.map(Arc::new);
        let message = Message {
            id: MessageId::generate_at(now),
            app_id: input.app_id.clone(),
            event_type,
            event_id: input.event_id,
            channels: input.channels,
            tags: input.tags,
            payload: Some(payload.clone()),
            forward: forward.as_deref().cloned(),
            created_at: now,
        };
        // Deliveries in partitions this node owns are sent from memory right
        // after the commit; the rest are left pending for their owners.
        let has_room = self.dispatcher.has_room();
        let deliveries: Vec<NewDelivery> = matched
            .into_iter()
            .map(|(endpoint_id, fifo)| {
                // A FIFO delivery goes out when a claim finds it next.
                let send_now = has_room && !fifo && self.partitions.owns(&endpoint_id);
                if send_now {
                    self.partitions.begin(&endpoint_id);
                }
                NewDelivery {
                    endpoint_id,
                    send_now,
                    fifo,
                }
            })
            .collect();
        let accepted = self
            .store
            .accept(NewMessage {
                message,
                idempotency_key: input.idempotency_key,
                deliveries: deliveries.clone(),
            })
            .await;
        let not_sent = || {
            for d in deliveries.iter().filter(|d| d.send_now) {
                self.partitions.end(&d.endpoint_id);
            }
        };
        let accepted = match accepted {
            Ok(Accepted::Created(message)) => message,
            Ok(Accepted::Existing(message)) => {
                not_sent();
                return Ok(AcceptResult {
                    message,
                    created: false,
                });
            }
            Err(e) => {
                not_sent();
                return Err(e.into());
            }
        };
        let mut left_pending = false;
        for d in deliveries {
            if d.send_now {
                self.dispatcher.submit(DeliveryTask {
                    app_id: accepted.app_id.clone(),
                    msg_id: accepted.id.clone(),
                    endpoint_id: d.endpoint_id,
                    attempts: 0,
                    payload: payload.clone(),
                    forward: forward.clone(),
                    manual: false,
                    fifo: false,
                });
            } else {
                left_pending = true;
            }
        }
        if left_pending {
            self.dispatcher.wake();
        }
        Ok(AcceptResult {
            message: accepted,
            created: true,
        })
    }

    /// Rejects a payload that violates its event type's latest schema, and
    /// any payload of an event type whose stored schema is refused.
    async fn check_schema(
        &self,
        event_type: &EventTypeName,
        payload: &Value,
    ) -> Result<(), EngineError> {
        let state = match self.schemas.get(event_type) {
            Some(state) => state,
            None => {
                let state = match self.store.get_event_type(event_type).await? {
                    Some(et) => match et.schemas.as_ref().and_then(schema::latest_schema) {
                        Some(s) => match schema::compile(s) {
                            Ok(compiled) => SchemaState::Usable(Arc::new(compiled)),
                            Err(reason) => SchemaState::Refused(Arc::from(reason)),
                        },
                        None => SchemaState::None,
                    },
                    None => SchemaState::None,
                };
                self.schemas.put(event_type, state.clone());
                state
            }
        };
        let compiled = match state {
            SchemaState::None => return Ok(()),
            SchemaState::Usable(compiled) => compiled,
            SchemaState::Refused(reason) => {
                return Err(EngineError::invalid(
                    "eventType",
                    format!(
                        "the schema of event type '{event_type}' is refused ({reason}); update the event type"
                    ),
                ));
            }
        };
        match compiled.check(payload) {
            Verdict::Valid => Ok(()),
            // The location as a list, like every other error's `loc`
            // (`/a/0` -> payload, a, 0; RFC 6901 escapes undone).
            Verdict::Invalid { path, reason } => Err(EngineError::InvalidAt {
                loc: std::iter::once("payload".to_owned())
                    .chain(
                        path.split('/')
                            .skip(1)
                            .map(|t| t.replace("~1", "/").replace("~0", "~")),
                    )
                    .collect(),
                message: format!(
                    "does not match the schema of event type '{event_type}': {reason}"
                ),
            }),
            Verdict::TooCostly(reason) => Err(EngineError::invalid(
                "payload",
                format!("{reason} (event type '{event_type}')"),
            )),
        }
    }
}
