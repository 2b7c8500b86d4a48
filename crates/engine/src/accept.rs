//! Intake: validate a message, match it to endpoints and commit it together
//! with its deliveries; then hand the deliveries to the dispatcher.

use crate::{Engine, EngineError, schema};
use serde_json::value::RawValue;
use std::sync::Arc;
use switchyard_core::matching::endpoint_matches;
use switchyard_core::timefmt::now_ms;
use switchyard_core::{AppId, MessageId};
use switchyard_store::{Accepted, DeliveryTask, Message, NewMessage};

pub struct AcceptInput {
    pub app_id: AppId,
    pub event_type: String,
    pub event_id: Option<String>,
    pub channels: Option<Vec<String>>,
    pub tags: Option<Vec<String>>,
    /// The payload exactly as the producer sent it; this text is what endpoints receive.
    pub payload: Box<RawValue>,
    pub idempotency_key: Option<String>,
}

pub struct AcceptResult {
    pub message: Message,
    /// False when an earlier request with the same key or event id created it.
    pub created: bool,
}

impl Engine {
    pub async fn accept(&self, input: AcceptInput) -> Result<AcceptResult, EngineError> {
        self.check_schema(&input.event_type, input.payload.get())
            .await?;
        let endpoints = self.endpoints.for_app(&input.app_id).await?;
        let channels = input.channels.clone().unwrap_or_default();
        let matched: Vec<_> = endpoints
            .iter()
            .filter(|e| {
                endpoint_matches(
                    e.endpoint.disabled,
                    e.endpoint.filter_types.as_deref(),
                    e.endpoint.channels.as_deref(),
                    &input.event_type,
                    &channels,
                )
            })
            .map(|e| e.endpoint.id.clone())
            .collect();
        let now = now_ms();
        let payload: Arc<str> = Arc::from(input.payload.get());
        let message = Message {
            id: MessageId::generate_at(now),
            app_id: input.app_id.clone(),
            event_type: input.event_type,
            event_id: input.event_id,
            channels: input.channels,
            tags: input.tags,
            payload: Some(payload.to_string()),
            created_at: now,
        };
        let dispatch_now = self.dispatcher.has_room();
        let accepted = self
            .store
            .accept(NewMessage {
                message,
                idempotency_key: input.idempotency_key,
                endpoints: matched.clone(),
                dispatch_now,
            })
            .await?;
        Ok(match accepted {
            Accepted::Created(message) => {
                if dispatch_now {
                    for endpoint_id in matched {
                        self.dispatcher.submit(DeliveryTask {
                            app_id: message.app_id.clone(),
                            msg_id: message.id.clone(),
                            endpoint_id,
                            attempts: 0,
                            payload: payload.clone(),
                            manual: false,
                        });
                    }
                } else if !matched.is_empty() {
                    self.dispatcher.wake();
                }
                AcceptResult {
                    message,
                    created: true,
                }
            }
            Accepted::Existing(message) => AcceptResult {
                message,
                created: false,
            },
        })
    }

    /// Rejects a payload that violates its event type's latest schema.
    async fn check_schema(&self, event_type: &str, payload: &str) -> Result<(), EngineError> {
        let validator = match self.schemas.get(event_type) {
            Some(v) => v,
            None => {
                let compiled = match self.store.get_event_type(event_type).await? {
                    Some(et) => et
                        .schemas
                        .as_ref()
                        .and_then(schema::latest_schema)
                        .and_then(|s| schema::compile(s).ok())
                        .map(Arc::new),
                    None => None,
                };
                self.schemas.put(event_type, compiled.clone());
                compiled
            }
        };
        let Some(validator) = validator else {
            return Ok(());
        };
        let value: serde_json::Value =
            serde_json::from_str(payload).map_err(|e| EngineError::Invalid {
                field: "payload".into(),
                message: e.to_string(),
            })?;
        if let Some(error) = validator.iter_errors(&value).next() {
            let path = error.instance_path.to_string();
            return Err(EngineError::Invalid {
                field: format!("payload{path}"),
                message: format!("does not match the schema of event type '{event_type}': {error}"),
            });
        }
        Ok(())
    }

    /// Checks that every schema in an event type's `schemas` map compiles.
    pub fn validate_schemas(schemas: &serde_json::Value) -> Result<(), String> {
        let map = schemas
            .as_object()
            .ok_or("schemas must be an object mapping versions to JSON Schemas")?;
        for (version, schema) in map {
            schema::compile(schema).map_err(|e| format!("version {version}: {e}"))?;
        }
        Ok(())
    }
}
