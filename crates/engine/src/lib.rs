//! The one pipeline: accept (match endpoints, validate, commit message and
//! deliveries together) and dispatch (sign, send, record, retry).

mod accept;
mod cache;
mod client;
mod dispatch;
mod schema;

pub use accept::{AcceptInput, AcceptResult};
pub use client::DeliveryClientConfig;

use std::sync::Arc;
use std::time::Duration;
use switchyard_core::netguard::NetworkPolicy;
use switchyard_core::retry::RetrySchedule;
use switchyard_store::{Store, StoreError};

#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub retry_schedule: RetrySchedule,
    pub network_policy: NetworkPolicy,
    pub request_timeout: Duration,
    pub max_connections_per_host: usize,
    /// Deliveries sent at once across all endpoints.
    pub max_in_flight: usize,
    /// How often the database is polled for due retries.
    pub poll_interval: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            retry_schedule: RetrySchedule::default(),
            network_policy: NetworkPolicy::default(),
            request_timeout: Duration::from_secs(15),
            max_connections_per_host: 64,
            max_in_flight: 1024,
            poll_interval: Duration::from_millis(200),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The running gateway core shared by every API handler.
pub struct Engine {
    store: Arc<dyn Store>,
    endpoints: cache::EndpointCache,
    apps: cache::AppCache,
    schemas: schema::SchemaCache,
    dispatcher: dispatch::Dispatcher,
}

impl Engine {
    /// Builds the engine and starts its dispatcher, poller and result writer.
    pub async fn start(
        store: Arc<dyn Store>,
        config: EngineConfig,
    ) -> Result<Arc<Self>, EngineError> {
        let endpoints = cache::EndpointCache::new(store.clone());
        let dispatcher =
            dispatch::Dispatcher::start(store.clone(), endpoints.clone(), config).await?;
        Ok(Arc::new(Self {
            store: store.clone(),
            endpoints,
            apps: cache::AppCache::default(),
            schemas: schema::SchemaCache::default(),
            dispatcher,
        }))
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// An application by id or uid, from cache.
    pub async fn find_app(
        &self,
        id_or_uid: &str,
    ) -> Result<Option<switchyard_store::Application>, EngineError> {
        Ok(self.apps.get(self.store.as_ref(), id_or_uid).await?)
    }

    /// Must be called after an application is changed or deleted.
    pub fn app_changed(&self, app: &switchyard_core::AppId) {
        self.apps.clear();
        self.endpoints.invalidate(app);
    }

    /// Must be called after any change to an application's endpoints.
    pub fn endpoints_changed(&self, app: &switchyard_core::AppId) {
        self.endpoints.invalidate(app);
    }

    /// Must be called after any change to an event type.
    pub fn event_type_changed(&self, name: &str) {
        self.schemas.invalidate(name);
    }

    /// Sends a message to an endpoint once more, now, as a manual attempt.
    /// Normally the resend is queued durably; when that delivery is being sent
    /// at this very moment, the extra attempt is handed straight to the dispatcher.
    pub async fn resend(
        &self,
        message: &switchyard_store::Message,
        endpoint: &switchyard_core::EndpointId,
    ) -> Result<(), EngineError> {
        let now = switchyard_core::timefmt::now_ms();
        if self
            .store
            .requeue(&message.app_id, &message.id, endpoint, now)
            .await?
        {
            self.dispatcher.wake();
        } else {
            self.dispatcher.submit(switchyard_store::DeliveryTask {
                app_id: message.app_id.clone(),
                msg_id: message.id.clone(),
                endpoint_id: endpoint.clone(),
                attempts: 0,
                payload: message.payload.as_deref().unwrap_or("{}").into(),
                manual: true,
            });
        }
        Ok(())
    }

    /// Wakes the poller so requeued deliveries go out without waiting.
    pub fn wake_dispatcher(&self) {
        self.dispatcher.wake();
    }
}
