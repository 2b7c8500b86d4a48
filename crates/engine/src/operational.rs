//! Operational webhooks: Switchyard's own events (an endpoint created,
//! updated, deleted, disabled or enabled; a message failing, exhausted or
//! recovered; a circuit breaker opened or closed) sent to endpoints the
//! operator configures through `/api/v1/operational-webhook/endpoint`.
//!
//! They take the same durable path as every other message: the events are
//! messages of one application of Switchyard's own (uid
//! [`OPERATIONAL_APP_UID`]), whose endpoints are the operational endpoints,
//! so they are stored before anyone is told, signed, retried on the retry
//! schedule, rate limited and logged as attempts like any other delivery.
//! Event names and payload shapes are Svix's (its `EndpointCreatedEvent`,
//! `EndpointDisabledEvent`, `MessageAttemptExhaustedEvent`, ... in the
//! Svix OpenAPI document): `{"type": …, "timestamp": …, "data": {…}}`.
//! `endpoint.circuit.opened` and `endpoint.circuit.closed` are Switchyard's.
//!
//! Events about the operational application's own endpoints and messages
//! are never sent: they would feed themselves.

use crate::accept::{AcceptEventType, AcceptInput, PayloadDocument};
use crate::{Engine, EngineError};
use serde_json::{Map, Value, json};
use std::sync::Weak;
use std::time::Duration;
use switchyard_core::timefmt::format_ms;
use switchyard_core::{AppId, EndpointId, EventTypeName, MessageEventType, Uid};
use switchyard_store::{Application, Attempt, CircuitSnapshot, CircuitState, Endpoint, StoreError};
use tokio::sync::{mpsc, oneshot};

/// The uid of the application operational webhooks are messages of. It has
/// an id's prefix, which users cannot give a uid, so it never collides with
/// theirs; the application is reachable as `/api/v1/app/app_operational`
/// (its messages and attempts can be listed there).
pub const OPERATIONAL_APP_UID: &str = "app_operational";

/// Every operational event type, as an operational endpoint's
/// `eventTypes` may name them.
pub const OPERATIONAL_EVENT_TYPES: [&str; 10] = [
    "endpoint.created",
    "endpoint.updated",
    "endpoint.deleted",
    "endpoint.enabled",
    "endpoint.disabled",
    "message.attempt.failing",
    "message.attempt.exhausted",
    "message.attempt.recovered",
    "endpoint.circuit.opened",
    "endpoint.circuit.closed",
];

/// Refuses, for an endpoint of the operational application, an event-type
/// filter entry that no operational event matches (a typo would silently
/// receive nothing) and channels (operational events have none, so such an
/// endpoint would receive nothing).
/// Whether `app` is the operational application.
pub(crate) fn is_operational(app: &Application) -> bool {
    app.uid.as_ref().map(|u| u.as_str()) == Some(OPERATIONAL_APP_UID)
}

pub(crate) fn check_operational_endpoint(
    app: &Application,
    ep: &Endpoint,
) -> Result<(), EngineError> {
    if !is_operational(app) {
        return Ok(());
    }
    for pattern in ep.filter_types.iter().flatten() {
        if !OPERATIONAL_EVENT_TYPES.iter().any(|t| pattern.matches(t)) {
            return Err(EngineError::invalid(
                "eventTypes",
                format!(
                    "'{}' matches no operational event; they are {}",
                    pattern.as_str(),
                    OPERATIONAL_EVENT_TYPES.join(", ")
                ),
            ));
        }
    }
    if ep.channels.is_some() {
        return Err(EngineError::invalid(
            "channels",
            "operational events have no channels; leave this out",
        ));
    }
    Ok(())
}

/// Failed attempts in a row after which `message.attempt.failing` is sent
/// (Svix: "after it's failed four times").
pub const FAILING_AFTER_ATTEMPTS: u32 = 4;

/// Something operators are told of.
#[derive(Debug, Clone)]
pub(crate) enum OperationalEvent {
    EndpointCreated(EndpointRef),
    EndpointUpdated(EndpointRef),
    EndpointDeleted(EndpointRef),
    EndpointEnabled(EndpointRef),
    /// `fail_since`: when the failure streak that disabled it started (an
    /// automatic disable); `None` when disabled through the API.
    EndpointDisabled {
        endpoint: EndpointRef,
        fail_since: Option<u64>,
    },
    AttemptFailing(Attempt),
    AttemptExhausted(Attempt),
    AttemptRecovered(Attempt),
    CircuitOpened {
        endpoint: EndpointRef,
        snapshot: CircuitSnapshot,
    },
    CircuitClosed {
        endpoint: EndpointRef,
        snapshot: CircuitSnapshot,
    },
}

/// An endpoint named in an event; its application's uid, and its own when
/// not known yet, are looked up when the event is sent.
#[derive(Debug, Clone)]
pub(crate) struct EndpointRef {
    pub app_id: AppId,
    pub endpoint_id: EndpointId,
    pub endpoint_uid: Option<Uid>,
}

impl EndpointRef {
    pub fn of(ep: &Endpoint) -> Self {
        Self {
            app_id: ep.app_id.clone(),
            endpoint_id: ep.id.clone(),
            endpoint_uid: ep.uid.clone(),
        }
    }

    pub fn ids(app_id: AppId, endpoint_id: EndpointId) -> Self {
        Self {
            app_id,
            endpoint_id,
            endpoint_uid: None,
        }
    }
}

impl OperationalEvent {
    /// The event type operational endpoints filter on.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::EndpointCreated(_) => "endpoint.created",
            Self::EndpointUpdated(_) => "endpoint.updated",
            Self::EndpointDeleted(_) => "endpoint.deleted",
            Self::EndpointEnabled(_) => "endpoint.enabled",
            Self::EndpointDisabled { .. } => "endpoint.disabled",
            Self::AttemptFailing(_) => "message.attempt.failing",
            Self::AttemptExhausted(_) => "message.attempt.exhausted",
            Self::AttemptRecovered(_) => "message.attempt.recovered",
            Self::CircuitOpened { .. } => "endpoint.circuit.opened",
            Self::CircuitClosed { .. } => "endpoint.circuit.closed",
        }
    }

    fn app_id(&self) -> &AppId {
        match self {
            Self::EndpointCreated(e)
            | Self::EndpointUpdated(e)
            | Self::EndpointDeleted(e)
            | Self::EndpointEnabled(e)
            | Self::EndpointDisabled { endpoint: e, .. }
            | Self::CircuitOpened { endpoint: e, .. }
            | Self::CircuitClosed { endpoint: e, .. } => &e.app_id,
            Self::AttemptFailing(a) | Self::AttemptExhausted(a) | Self::AttemptRecovered(a) => {
                &a.app_id
            }
        }
    }

    /// An id that is the same each time the same thing is reported (the
    /// attempt, the breaker's state and when it was entered), so that an
    /// event reported twice is one message. Events of API changes, reported
    /// once each, have none.
    fn event_id(&self) -> Option<String> {
        let attempt = |kind: &str, a: &Attempt| format!("{kind}.{}", a.id);
        match self {
            Self::AttemptFailing(a) => Some(attempt("failing", a)),
            Self::AttemptExhausted(a) => Some(attempt("exhausted", a)),
            Self::AttemptRecovered(a) => Some(attempt("recovered", a)),
            Self::CircuitOpened { endpoint, snapshot } => Some(format!(
                "circuit-opened.{}.{}",
                endpoint.endpoint_id, snapshot.since
            )),
            Self::CircuitClosed { endpoint, snapshot } => Some(format!(
                "circuit-closed.{}.{}",
                endpoint.endpoint_id, snapshot.since
            )),
            _ => None,
        }
    }
}

/// Operational events from the dispatcher, handed over in batches; `stored`
/// is answered once they are stored (or given up, when the engine stops).
pub(crate) struct EventBatch {
    pub events: Vec<OperationalEvent>,
    pub stored: oneshot::Sender<()>,
}

/// Stores the dispatcher's events for as long as the engine runs.
pub(crate) async fn run(engine: Weak<Engine>, mut batches: mpsc::UnboundedReceiver<EventBatch>) {
    while let Some(batch) = batches.recv().await {
        let Some(engine) = engine.upgrade() else {
            return;
        };
        // At once: their commits share the group commit.
        futures_util::future::join_all(
            batch
                .events
                .into_iter()
                .map(|event| engine.tell_operators_until_stored(event)),
        )
        .await;
        let _ = batch.stored.send(());
    }
}

impl Engine {
    /// The application operational webhooks are messages of, created the
    /// first time it is asked for (by any node: a race is settled by the
    /// uid, and the loser reads the winner's).
    pub async fn operational_app(&self) -> Result<Application, EngineError> {
        if let Some(app) = self.find_app(OPERATIONAL_APP_UID).await? {
            return Ok(app);
        }
        let now = self.now_ms();
        let app = Application {
            id: AppId::generate_at(now),
            uid: Some(Uid::from_trusted(OPERATIONAL_APP_UID.to_owned())),
            name: "Switchyard operational webhooks".to_owned(),
            rate_limit: None,
            metadata: Default::default(),
            created_at: now,
            updated_at: now,
        };
        match self.store.insert_app(app).await {
            Ok(app) => {
                self.app_changed(&app.id);
                Ok(app)
            }
            Err(StoreError::Conflict(_)) => self
                .find_app(OPERATIONAL_APP_UID)
                .await?
                .ok_or(EngineError::NotFound("application")),
            Err(e) => Err(e.into()),
        }
    }

    /// Reports an event of a change just stored, before the caller answers
    /// (so an answered change has its event stored); if that fails, it is
    /// stored in the background, retried until it is.
    pub(crate) async fn tell_operators(&self, event: OperationalEvent) {
        match self.store_operational_event(&event).await {
            Ok(()) => {}
            Err(e) => {
                tracing::warn!(error = %e, event = event.type_name(), "storing an operational webhook failed; retrying in the background");
                let (stored, _) = oneshot::channel();
                let _ = self.operational.send(EventBatch {
                    events: vec![event],
                    stored,
                });
            }
        }
    }

    async fn tell_operators_until_stored(&self, event: OperationalEvent) {
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.store_operational_event(&event).await {
                Ok(()) => return,
                Err(EngineError::Store(e)) => {
                    tracing::warn!(error = %e, event = event.type_name(), "storing an operational webhook failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
                // Only a store error can change by retrying.
                Err(e) => {
                    tracing::error!(error = %e, event = event.type_name(), "an operational webhook could not be stored");
                    return;
                }
            }
        }
    }

    /// Stores the event as a message of the operational application, for
    /// its endpoints that subscribe to it; nothing when no operational
    /// endpoint was ever configured.
    async fn store_operational_event(&self, event: &OperationalEvent) -> Result<(), EngineError> {
        let Some(ops) = self
            .apps
            .get_or_absent(self.store.as_ref(), OPERATIONAL_APP_UID)
            .await?
        else {
            return Ok(());
        };
        if event.app_id() == &ops.id {
            return Ok(());
        }
        let body = json!({
            "type": event.type_name(),
            "timestamp": format_ms(self.now_ms()),
            "data": self.event_data(event).await?,
        });
        let payload = serde_json::to_vec(&body)
            .map_err(|e| EngineError::invalid("payload", e.to_string()))?;
        let name = EventTypeName::parse(event.type_name())
            .map_err(|e| EngineError::invalid("eventType", e.to_string()))?;
        self.accept(AcceptInput {
            app_id: ops.id,
            event_type: AcceptEventType::Provider(MessageEventType::from(name)),
            event_id: event.event_id(),
            channels: None,
            tags: None,
            payload: payload.into(),
            idempotency_key: None,
            forward: None,
            document: PayloadDocument::Parsed(Some(body)),
        })
        .await?;
        Ok(())
    }

    /// The event's `data`, in Svix's field names; uids the event did not
    /// carry are looked up (absent ones are left out, as Svix does).
    async fn event_data(&self, event: &OperationalEvent) -> Result<Value, EngineError> {
        let mut data = Map::new();
        let app_uid = |data: &mut Map<String, Value>, uid: Option<Uid>| {
            if let Some(uid) = uid {
                data.insert("appUid".into(), json!(uid.as_str()));
            }
        };
        match event {
            OperationalEvent::AttemptFailing(a)
            | OperationalEvent::AttemptExhausted(a)
            | OperationalEvent::AttemptRecovered(a) => {
                let at = a;
                data.insert("appId".into(), json!(at.app_id.as_str()));
                app_uid(&mut data, self.app_uid(&at.app_id).await?);
                data.insert("msgId".into(), json!(at.msg_id.as_str()));
                data.insert("msgEventId".into(), json!(self.msg_event_id(at).await?));
                data.insert("endpointId".into(), json!(at.endpoint_id.as_str()));
                data.insert(
                    "lastAttempt".into(),
                    json!({
                        "id": at.id.as_str(),
                        "timestamp": format_ms(at.created_at),
                        "responseStatusCode": at.response_status_code,
                    }),
                );
            }
            OperationalEvent::EndpointCreated(e)
            | OperationalEvent::EndpointUpdated(e)
            | OperationalEvent::EndpointDeleted(e)
            | OperationalEvent::EndpointEnabled(e)
            | OperationalEvent::EndpointDisabled { endpoint: e, .. }
            | OperationalEvent::CircuitOpened { endpoint: e, .. }
            | OperationalEvent::CircuitClosed { endpoint: e, .. } => {
                data.insert("appId".into(), json!(e.app_id.as_str()));
                app_uid(&mut data, self.app_uid(&e.app_id).await?);
                data.insert("endpointId".into(), json!(e.endpoint_id.as_str()));
                let endpoint_uid = match &e.endpoint_uid {
                    Some(uid) => Some(uid.clone()),
                    None => self
                        .endpoints
                        .get(&e.app_id, &e.endpoint_id)
                        .await?
                        .and_then(|c| c.endpoint.uid.clone()),
                };
                if let Some(uid) = endpoint_uid {
                    data.insert("endpointUid".into(), json!(uid.as_str()));
                }
            }
        }
        match event {
            OperationalEvent::EndpointDisabled { fail_since, .. } => {
                let trigger = if fail_since.is_some() {
                    "automatic"
                } else {
                    "manual"
                };
                data.insert("trigger".into(), json!(trigger));
                if let Some(since) = fail_since {
                    data.insert("failSince".into(), json!(format_ms(*since)));
                }
            }
            OperationalEvent::CircuitOpened { snapshot, .. }
            | OperationalEvent::CircuitClosed { snapshot, .. } => {
                data.insert("state".into(), json!(snapshot.state.as_str()));
                data.insert("since".into(), json!(format_ms(snapshot.since)));
                data.insert("lastError".into(), json!(snapshot.last_error));
                data.insert(
                    "consecutiveFailures".into(),
                    json!(snapshot.consecutive_failures),
                );
            }
            _ => {}
        }
        Ok(Value::Object(data))
    }

    async fn app_uid(&self, app: &AppId) -> Result<Option<Uid>, EngineError> {
        Ok(self.find_app(app.as_str()).await?.and_then(|a| a.uid))
    }

    async fn msg_event_id(&self, attempt: &Attempt) -> Result<Option<String>, EngineError> {
        Ok(self
            .store
            .get_message(&attempt.app_id, attempt.msg_id.as_str())
            .await?
            .and_then(|m| m.event_id))
    }
}

/// The event, if any, an attempt's outcome is: the
/// [`FAILING_AFTER_ATTEMPTS`]th failure in a row, the last retry failing
/// (exhausted), or a scheduled attempt's success after the failing event
/// (a manual resend's success after that is not reported: the delivery's
/// stored count cannot tell whether it recovered before). A delivery refused
/// without a request (its endpoint disabled, its path refused) exhausted
/// no retries and is none of these.
pub(crate) fn attempt_event(outcome: &switchyard_store::Outcome) -> Option<OperationalEvent> {
    use switchyard_store::DeliveryStatus;
    if !outcome.sent {
        return None;
    }
    let before = outcome.attempts_before;
    let attempt = || outcome.attempt.clone();
    let manual = outcome.attempt.manual;
    match outcome.delivery_status {
        DeliveryStatus::Pending if !manual && before + 1 == FAILING_AFTER_ATTEMPTS => {
            Some(OperationalEvent::AttemptFailing(attempt()))
        }
        DeliveryStatus::Fail if !manual => Some(OperationalEvent::AttemptExhausted(attempt())),
        DeliveryStatus::Success if !manual && before >= FAILING_AFTER_ATTEMPTS => {
            Some(OperationalEvent::AttemptRecovered(attempt()))
        }
        _ => None,
    }
}

/// The event a breaker entering a state is: opened, or closed; half-open
/// (a probe going out) is not reported.
pub(crate) fn circuit_event(
    app_id: &AppId,
    endpoint_id: &EndpointId,
    snapshot: &CircuitSnapshot,
) -> Option<OperationalEvent> {
    let endpoint = EndpointRef::ids(app_id.clone(), endpoint_id.clone());
    match snapshot.state {
        CircuitState::Open => Some(OperationalEvent::CircuitOpened {
            endpoint,
            snapshot: snapshot.clone(),
        }),
        CircuitState::Closed => Some(OperationalEvent::CircuitClosed {
            endpoint,
            snapshot: snapshot.clone(),
        }),
        CircuitState::HalfOpen => None,
    }
}
