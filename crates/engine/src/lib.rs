//! The one pipeline: accept (match endpoints, validate, commit message and
//! deliveries together) and dispatch (sign, send, record, retry).

mod accept;
pub mod access;
pub mod admin;
mod apps;
pub mod broker_intake;
mod broker_sources;
mod cache;
mod cluster;
mod dispatch;
pub mod encryption;
pub mod endpoint_auth;
mod endpoints;
mod event_types;
mod housekeeping;
mod ingest;
pub mod limits;
mod messages;
mod operational;
mod publish;
mod schema;
mod source_admin;
mod sources;

pub use accept::{AcceptEventType, AcceptInput, AcceptResult, PayloadDocument};
pub use apps::{AppInput, AppPatch, check_rate_limit, parse_uid};
pub use broker_sources::{
    BrokerSourceInput, BrokerSourcePatch, BrokerSourceStatus, MAX_BROKER_SOURCES, REJECTIONS_KEPT,
    supervise_broker_sources,
};
pub use cluster::ClusterConfig;
pub use dispatch::destination;
pub use dispatch::http::DeliveryClientConfig;
pub use dispatch::proxy::ProxyConfig;
pub use dispatch::tls::check_ca_bundle;
pub use endpoints::{CircuitView, EndpointInput, EndpointPatch, parse_channels};
pub use event_types::{EventTypeInput, EventTypePatch};
pub use housekeeping::IDEMPOTENCY_WINDOW;
pub use ingest::{IngestError, IngestRefusal, IngestReply, IngestRequest};
pub use operational::{FAILING_AFTER_ATTEMPTS, OPERATIONAL_APP_UID, OPERATIONAL_EVENT_TYPES};
pub use publish::{CheckedFields, MAX_EVENT_ID_CHARS, MAX_TAG_CHARS, MessageRequest};
pub use source_admin::{RotatedSecret, SourceInput};
pub use sources::{IngestOutcome, IngestSource};

use std::sync::Arc;
use std::time::Duration;
use switchyard_core::clock::{Clock, SystemClock};
use switchyard_core::netguard::NetworkPolicy;
use switchyard_core::retry::RetrySchedule;
use switchyard_core::signing::SignatureScheme;
use switchyard_core::{EventTypeName, SourceId};
use switchyard_store::{ClusterEvent, Store, StoreError};

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
    pub cluster: ClusterConfig,
    /// Finished messages older than this are deleted by housekeeping;
    /// `None` keeps them.
    pub retention: Option<Duration>,
    /// An endpoint failing this long without a success is disabled; `None`
    /// never disables. Default 5 days.
    pub auto_disable_after: Option<Duration>,
    /// Endpoints an application may have (see [`limits`]).
    pub max_endpoints_per_app: usize,
    /// Deliver only over https: http endpoint URLs are refused when set and
    /// deliveries to ones stored before fail without a request.
    pub https_only: bool,
    /// The scheme of secrets generated for new endpoints (a rotation keeps
    /// an endpoint's scheme): `v1` HMAC by default, or `v1a` ed25519.
    pub signature_scheme: SignatureScheme,
    /// CA certificates (PEM) that deliveries trust besides the Mozilla
    /// roots (`SWITCHYARD_DELIVERY_CA_FILE`).
    pub delivery_ca_pem: Option<String>,
    /// An HTTP proxy every delivery goes through (see [`dispatch::proxy`]).
    pub egress_proxy: Option<dispatch::proxy::ProxyConfig>,
    /// Largest message body a broker source accepts, as `POST /msg`
    /// (`SWITCHYARD_MAX_PAYLOAD_BYTES`).
    pub max_payload_bytes: usize,
    /// Broker destinations, registered by the binary by the URL schemes
    /// they serve (`redis`, `rediss`, ...): endpoint URLs may use those
    /// schemes besides http(s). The engine adds its HTTP client for `http`
    /// and `https` itself.
    pub destinations: destination::Destinations,
    /// Where the engine reads the time: the system clock, or a
    /// [`switchyard_core::clock::ManualClock`] in tests that move time on
    /// instead of sleeping.
    pub clock: Arc<dyn Clock>,
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
            cluster: ClusterConfig::default(),
            retention: None,
            auto_disable_after: Some(Duration::from_secs(5 * 86_400)),
            max_endpoints_per_app: limits::DEFAULT_MAX_ENDPOINTS_PER_APP,
            https_only: false,
            signature_scheme: SignatureScheme::Hmac,
            delivery_ca_pem: None,
            egress_proxy: None,
            max_payload_bytes: 1 << 20,
            destinations: destination::Destinations::default(),
            clock: Arc::new(SystemClock),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// Like `Invalid`, for a place inside a request value whose keys may
    /// themselves contain dots: `loc` is the path from the body's field
    /// down (e.g. `["payload", "items", "0", "id"]`).
    #[error("{}: {message}", loc.join("/"))]
    InvalidAt { loc: Vec<String>, message: String },
    /// The change conflicts with the current state (too many rotations, a
    /// source type without a secret); the text says how.
    #[error("{0}")]
    Conflict(String),
    /// A presented token that is unknown or expired (401).
    #[error("token refused: {0:?}")]
    Unauthorized(access::TokenRefusal),
    /// A valid token that does not reach what was asked (403).
    #[error("{0}")]
    Forbidden(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl EngineError {
    /// A refused value of the request field `field` (dotted for nested
    /// fields, e.g. `schemas.1`), with why.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        EngineError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// The running gateway core shared by every API handler.
pub struct Engine {
    store: Arc<dyn Store>,
    endpoints: cache::EndpointCache,
    apps: cache::AppCache,
    schemas: schema::SchemaCache,
    sources: sources::SourceCache,
    /// Grants of tokens other than the admin token ([`access`]).
    grants: access::GrantCache,
    dispatcher: dispatch::Dispatcher,
    partitions: Arc<cluster::Partitions>,
    cluster: ClusterConfig,
    /// Nudges the lease keeper, and stops it for good on `leave` so that no
    /// round runs after the hand-over.
    lease_keeper: cluster::LeaseKeeper,
    /// Whether other processes share the database and must hear of changes.
    shared: bool,
    clock: Arc<dyn Clock>,
    https_only: bool,
    /// Judges address literals in broker URLs when they are set.
    network_policy: NetworkPolicy,
    /// Every destination this node delivers to, by URL scheme.
    destinations: destination::Destinations,
    max_payload_bytes: usize,
    signature_scheme: SignatureScheme,
    max_endpoints_per_app: usize,
    auto_disable_after: Option<Duration>,
    /// Operational events on their way to being stored (`operational::run`).
    operational: tokio::sync::mpsc::UnboundedSender<operational::EventBatch>,
    /// The broker kinds this binary has, handed over by the binary.
    broker_kinds: std::sync::OnceLock<Arc<dyn broker_intake::BrokerKinds>>,
    /// Wakes this node's broker-source supervisor after a change.
    broker_sources_wake: tokio::sync::Notify,
}

impl Engine {
    /// Builds the engine and starts its dispatcher, poller, result writer
    /// and lease keeper. Returns once the first lease round is done (or has
    /// failed for a few seconds: dispatch then starts when the database is back).
    pub async fn start(
        store: Arc<dyn Store>,
        config: EngineConfig,
    ) -> Result<Arc<Self>, EngineError> {
        let endpoints = cache::EndpointCache::new(store.clone(), config.clock.clone());
        let partitions = Arc::new(cluster::Partitions::new());
        let (operational, operational_events) = tokio::sync::mpsc::unbounded_channel();
        let dispatcher = dispatch::Dispatcher::start(
            store.clone(),
            endpoints.clone(),
            partitions.clone(),
            &config,
            operational.clone(),
        )
        .await?;
        let events = store.subscribe();
        let engine = Arc::new(Self {
            store: store.clone(),
            endpoints,
            apps: cache::AppCache::default(),
            schemas: schema::SchemaCache::default(),
            sources: sources::SourceCache::new(store.clone(), config.clock.clone()),
            grants: access::GrantCache::default(),
            dispatcher: dispatcher.clone(),
            partitions: partitions.clone(),
            cluster: config.cluster.clone(),
            lease_keeper: cluster::LeaseKeeper::default(),
            shared: events.is_some(),
            clock: config.clock.clone(),
            auto_disable_after: config.auto_disable_after,
            max_endpoints_per_app: config.max_endpoints_per_app,
            https_only: config.https_only,
            network_policy: config.network_policy.clone(),
            destinations: dispatcher.destinations().clone(),
            max_payload_bytes: config.max_payload_bytes,
            signature_scheme: config.signature_scheme,
            operational,
            broker_kinds: std::sync::OnceLock::new(),
            broker_sources_wake: tokio::sync::Notify::new(),
        });
        tokio::spawn(operational::run(
            Arc::downgrade(&engine),
            operational_events,
        ));
        let (first_grant, granted) = tokio::sync::oneshot::channel();
        let waker = dispatcher.clone();
        tokio::spawn(cluster::run_leases(
            store.clone(),
            partitions,
            config.cluster.clone(),
            config.request_timeout + Duration::from_secs(5),
            move || waker.wake(),
            first_grant,
            engine.lease_keeper.clone(),
        ));
        if let Some(events) = events {
            tokio::spawn(follow_cluster_events(Arc::downgrade(&engine), events));
        }
        tokio::spawn(sources::run_flusher(Arc::downgrade(&engine)));
        tokio::spawn(housekeeping::run(
            store.clone(),
            config.retention,
            config.clock.clone(),
        ));
        if let Some(after) = config.auto_disable_after {
            tokio::spawn(run_auto_disable(Arc::downgrade(&engine), after));
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), granted).await;
        Ok(engine)
    }

    /// The engine's current time in Unix milliseconds, from its clock: what
    /// every stored time and due time is written with.
    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// This node's id and the lease time.
    pub fn cluster_config(&self) -> &ClusterConfig {
        &self.cluster
    }

    /// Hands every partition back before the process exits, so the other
    /// nodes take over at once instead of after the lease time. Deliveries
    /// still in flight here are sent again by their new owners.
    pub async fn leave(&self) -> Result<(), EngineError> {
        // A lease round after the release would take partitions back (this
        // node's own release notice triggers one) and hold them until their
        // leases expire: stop the keeper first, waiting out a round in flight.
        self.lease_keeper.stop().await;
        self.partitions.stop_all();
        self.store.leave(&self.cluster.node_id).await?;
        Ok(())
    }

    /// Partitions this node dispatches now.
    pub fn owned_partitions(&self) -> Vec<u16> {
        self.partitions.owned()
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
        self.tell_others(ClusterEvent::AppChanged(app.clone()));
    }

    /// Must be called after any change to an application's endpoints.
    pub fn endpoints_changed(&self, app: &switchyard_core::AppId) {
        self.endpoints.invalidate(app);
        self.tell_others(ClusterEvent::EndpointsChanged(app.clone()));
    }

    /// Must be called after any change to an event type.
    pub fn event_type_changed(&self, name: &EventTypeName) {
        self.schemas.invalidate(name);
        self.tell_others(ClusterEvent::EventTypeChanged(name.clone()));
    }

    /// Must be called after any change to a source.
    pub fn sources_changed(&self) {
        self.sources.invalidate();
        self.tell_others(ClusterEvent::SourcesChanged);
    }

    /// The source a request to `/ingest/{key}` is for: by live token or id.
    pub async fn find_source(&self, key: &str) -> Result<Option<Arc<IngestSource>>, EngineError> {
        Ok(self.sources.find(key).await?)
    }

    pub fn count_ingest(&self, source_id: &SourceId, outcome: IngestOutcome<'_>) {
        self.sources.count(source_id, outcome);
    }

    /// A source's counters, including those not yet written.
    pub async fn source_stats(
        &self,
        source_id: &SourceId,
    ) -> Result<Option<switchyard_store::SourceStats>, EngineError> {
        let Some(mut stats) = self.store.source_stats(source_id).await? else {
            return Ok(None);
        };
        sources::merge(&mut stats, &self.sources.unflushed(source_id));
        Ok(Some(stats))
    }

    /// Writes pending source counters now (on shutdown).
    pub async fn flush_counters(&self) {
        self.sources.flush().await;
    }

    fn tell_others(&self, event: ClusterEvent) {
        if !self.shared {
            return;
        }
        let store = self.store.clone();
        tokio::spawn(async move {
            if let Err(e) = store.publish(&event).await {
                tracing::warn!(error = %e, ?event, "could not tell other nodes");
            }
        });
    }

    /// Applies another node's change to this node's caches.
    fn apply(&self, event: ClusterEvent) {
        match event {
            ClusterEvent::Due => self.dispatcher.wake(),
            ClusterEvent::Leases => self.lease_keeper.nudge(),
            ClusterEvent::AppChanged(app) => {
                self.apps.clear();
                self.endpoints.invalidate(&app);
            }
            ClusterEvent::EndpointsChanged(app) => self.endpoints.invalidate(&app),
            ClusterEvent::EventTypeChanged(name) => self.schemas.invalidate(&name),
            ClusterEvent::SourcesChanged => self.sources.invalidate(),
            ClusterEvent::BrokerSourcesChanged => self.broker_sources_wake.notify_one(),
            ClusterEvent::TokensChanged => self.grants.clear(),
            ClusterEvent::Resync => {
                // A missed `Leases` would otherwise wait for the next renewal.
                self.lease_keeper.nudge();
                self.apps.clear();
                self.endpoints.invalidate_all();
                self.schemas.invalidate_all();
                self.sources.invalidate();
                self.grants.clear();
                self.dispatcher.wake();
                self.broker_sources_wake.notify_one();
            }
        }
    }

    /// Sends a message to an endpoint once more, now (see
    /// `DeliveryStore::requeue`). Normally the resend is queued durably;
    /// when that delivery is being sent at this very moment, the extra
    /// attempt is handed straight to the dispatcher, except to a FIFO
    /// endpoint, which takes one request at a time.
    ///
    /// Errors: [`EngineError::Conflict`] for that FIFO case.
    pub async fn resend(
        &self,
        message: &switchyard_store::Message,
        endpoint: &switchyard_core::EndpointId,
    ) -> Result<(), EngineError> {
        let now = self.now_ms();
        let fifo = self
            .endpoints
            .get(&message.app_id, endpoint)
            .await?
            .is_some_and(|e| e.endpoint.fifo);
        if self
            .store
            .requeue(&message.app_id, &message.id, endpoint, now, fifo)
            .await?
        {
            self.wake_dispatcher();
        } else if fifo {
            return Err(EngineError::Conflict(format!(
                "message {} is being sent to FIFO endpoint {endpoint} right now, and a FIFO endpoint takes one request at a time; resend it once this attempt has ended",
                message.id
            )));
        } else {
            self.partitions.begin(endpoint);
            self.dispatcher.submit(switchyard_store::DeliveryTask {
                app_id: message.app_id.clone(),
                msg_id: message.id.clone(),
                endpoint_id: endpoint.clone(),
                attempts: 0,
                payload: message
                    .payload
                    .clone()
                    .unwrap_or_else(|| bytes::Bytes::from_static(b"{}")),
                forward: message.forward.clone().map(Arc::new),
                manual: true,
                // A second attempt beside the one being sent, which
                // moves the queue on when it ends.
                fifo: false,
            });
        }
        Ok(())
    }

    /// Wakes the pollers (this node's and, through the database, the
    /// others') so requeued deliveries go out without waiting.
    pub fn wake_dispatcher(&self) {
        self.dispatcher.wake();
        self.tell_others(ClusterEvent::Due);
    }
}

async fn follow_cluster_events(
    engine: std::sync::Weak<Engine>,
    mut events: tokio::sync::broadcast::Receiver<ClusterEvent>,
) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        let event = match events.recv().await {
            Ok(event) => event,
            // Fell behind: some events are lost, so act as on a reconnect.
            Err(RecvError::Lagged(_)) => ClusterEvent::Resync,
            Err(RecvError::Closed) => return,
        };
        let Some(engine) = engine.upgrade() else {
            return;
        };
        engine.apply(event);
    }
}

/// An engine on a fresh embedded database, for the services' tests; the
/// directory lives as long as the returned guard.
/// Looks for endpoints to auto-disable, a quarter of the window apart (at
/// least every minute, at most every second), while the engine lives.
async fn run_auto_disable(engine: std::sync::Weak<Engine>, after: Duration) {
    let every = (after / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
    loop {
        tokio::time::sleep(every).await;
        let Some(engine) = engine.upgrade() else {
            return;
        };
        if let Err(e) = engine.disable_failing_endpoints().await {
            tracing::warn!(error = %e, "looking for endpoints to disable failed");
        }
    }
}

#[cfg(test)]
pub(crate) async fn test_engine() -> (Arc<Engine>, tempfile::TempDir) {
    test_engine_with(EngineConfig::default()).await
}

/// As [`test_engine`], with the given configuration (a manual clock, a
/// network policy that lets deliveries reach a loopback receiver, ...).
#[cfg(test)]
pub(crate) async fn test_engine_with(config: EngineConfig) -> (Arc<Engine>, tempfile::TempDir) {
    use switchyard_store::sqlite::{Durability, SqliteStore};
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = SqliteStore::open(dir.path().join("db"), Durability::Normal).expect("open store");
    let engine = Engine::start(Arc::new(store), config)
        .await
        .expect("start engine");
    (engine, dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A node that has handed its partitions over runs no lease round that
    /// would take them back (its own release notice used to trigger one, and
    /// the partitions stayed leased to a stopped node until they expired).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_lease_round_runs_after_leave() {
        let (engine, _dir) = test_engine().await;
        let held = |nodes: Vec<switchyard_store::NodeInfo>| -> usize {
            nodes.iter().map(|n| n.partitions.len()).sum()
        };
        let now = switchyard_core::timefmt::now_ms;
        assert_eq!(held(engine.cluster_nodes(now()).await.unwrap()), 256);
        engine.leave().await.unwrap();
        engine.lease_keeper.nudge();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(held(engine.cluster_nodes(now()).await.unwrap()), 0);
    }

    /// A rotated-out ingest token keeps working for its 48 h grace period on
    /// the engine's clock, then stops; the new one works throughout.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_rotated_source_token_expires_on_the_engine_clock() {
        let clock = Arc::new(switchyard_core::clock::ManualClock::starting_now());
        let (engine, _dir) = test_engine_with(EngineConfig {
            clock: clock.clone(),
            ..EngineConfig::default()
        })
        .await;
        let input = SourceInput {
            name: "n".into(),
            kind: "none".into(),
            ..SourceInput::default()
        };
        let source = engine.create_source(input, None).await.unwrap();
        let rotated = engine
            .rotate_source_token(source.id.as_str())
            .await
            .unwrap();
        let finds = async |token: &str| engine.find_source(token).await.unwrap().is_some();
        clock.advance(Duration::from_secs(47 * 3600));
        assert!(finds(&source.token).await, "inside the grace period");
        assert!(finds(&rotated.token).await);
        clock.advance(Duration::from_secs(2 * 3600));
        assert!(!finds(&source.token).await, "after the grace period");
        assert!(finds(&rotated.token).await);
    }
}
