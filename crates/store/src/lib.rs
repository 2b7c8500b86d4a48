//! Persistence: the `Store` trait every backend implements (one trait per
//! aggregate), the records it keeps, the embedded SQLite backend and, with
//! the `postgres` cargo feature (on by default), the PostgreSQL backend.
//!
//! The `testing` cargo feature adds what tests need and production code must
//! not: the storage `conformance` suite and, with `postgres`, scratch
//! databases (`postgres::test_database`).

#[cfg(feature = "testing")]
pub mod conformance;
mod error;
mod model;
#[cfg(feature = "postgres")]
pub mod postgres;
mod query;
mod rows;
pub mod sqlite;

pub use error::StoreError;
pub use model::*;
pub use switchyard_core::breaker::{CircuitSnapshot, CircuitState};

use async_trait::async_trait;
use switchyard_core::{
    AppId, AttemptId, BrokerSourceId, EndpointId, EndpointUrl, EventTypeName, MessageEventType,
    MessageId, RejectionId, SourceId, TokenId, Uid,
};

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Everything the engine needs from a database: one trait per aggregate,
/// each implemented by every backend (`sqlite/<aggregate>.rs`,
/// `postgres/<aggregate>.rs`). Backends must behave identically, which the
/// conformance suite checks; writes that the caller is told succeeded are
/// durable. Holders of an `Arc<dyn Store>` call the methods with
/// [`prelude`] in scope.
pub trait Store:
    AppStore
    + EventTypeStore
    + EndpointStore
    + MessageStore
    + DeliveryStore
    + AttemptStore
    + IdempotencyStore
    + SettingStore
    + SourceStore
    + BrokerSourceStore
    + TokenStore
    + ClusterStore
{
}

impl<T> Store for T where
    T: AppStore
        + EventTypeStore
        + EndpointStore
        + MessageStore
        + DeliveryStore
        + AttemptStore
        + IdempotencyStore
        + SettingStore
        + SourceStore
        + BrokerSourceStore
        + TokenStore
        + ClusterStore
{
}

/// The store traits, for calling their methods on an `Arc<dyn Store>`:
/// `use switchyard_store::prelude::*;`.
pub mod prelude {
    pub use crate::{
        AppStore, AttemptStore, BrokerSourceStore, ClusterStore, DeliveryStore, EndpointStore,
        EventTypeStore, IdempotencyStore, MessageStore, SettingStore, SourceStore, Store,
        TokenStore,
    };
}

/// Applications. `id_or_uid` lookups accept either form.
#[async_trait]
pub trait AppStore: Send + Sync + 'static {
    async fn insert_app(&self, app: Application) -> Result<Application>;
    async fn get_app(&self, id_or_uid: &str) -> Result<Option<Application>>;
    async fn list_apps(&self, page: &PageRequest) -> Result<Page<Application>>;
    async fn update_app(&self, app: Application) -> Result<Application>;
    /// Removes the application with its endpoints, messages, deliveries and attempts.
    async fn delete_app(&self, id: &AppId) -> Result<bool>;
}

/// Event types, by name.
#[async_trait]
pub trait EventTypeStore: Send + Sync + 'static {
    async fn insert_event_type(&self, et: EventType) -> Result<EventType>;
    async fn put_event_type(&self, et: EventType) -> Result<EventType>;
    async fn get_event_type(&self, name: &EventTypeName) -> Result<Option<EventType>>;
    async fn list_event_types(
        &self,
        page: &PageRequest,
        include_archived: bool,
    ) -> Result<Page<EventType>>;
    async fn delete_event_type(&self, name: &EventTypeName) -> Result<bool>;
}

/// Endpoints, within their application.
#[async_trait]
pub trait EndpointStore: Send + Sync + 'static {
    async fn insert_endpoint(&self, ep: Endpoint) -> Result<Endpoint>;
    /// Inserts the endpoint unless its application already has `max`
    /// endpoints (then `None`): the count and the insert are one step, so
    /// concurrent creates cannot pass the bound together.
    async fn insert_endpoint_within(&self, ep: Endpoint, max: usize) -> Result<Option<Endpoint>>;
    async fn get_endpoint(&self, app: &AppId, id_or_uid: &str) -> Result<Option<Endpoint>>;
    async fn list_endpoints(&self, app: &AppId, page: &PageRequest) -> Result<Page<Endpoint>>;
    /// Every endpoint of every application, for the dispatcher's cache.
    async fn all_endpoints(&self, app: Option<&AppId>) -> Result<Vec<Endpoint>>;
    /// Writes every field of `ep`, except `disabled` and `disabled_reason`
    /// unless `set_disabled`: an update that does not enable or disable the
    /// endpoint must not undo an auto-disable made meanwhile. Writes only if
    /// the stored `updated_at` is still `read_at` (the row the change was
    /// made on), else [`StoreError::Stale`], so two read-modify-writes
    /// cannot both succeed with one of them lost; `ep.updated_at` must be
    /// greater than `read_at`.
    async fn update_endpoint(
        &self,
        ep: Endpoint,
        set_disabled: bool,
        read_at: u64,
    ) -> Result<Endpoint>;
    async fn delete_endpoint(&self, app: &AppId, id: &EndpointId) -> Result<bool>;
    /// Records where endpoints' failure streaks start and end, in order:
    /// `Some(t)` starts one at `t` unless one is running, `None` ends it.
    async fn mark_failing(&self, changes: Vec<(EndpointId, Option<u64>)>) -> Result<()>;
    /// Disables every enabled endpoint failing since `failing_before` or
    /// earlier, with `reason`, and returns them with when their failure
    /// streak started.
    async fn disable_failing(
        &self,
        failing_before: u64,
        reason: &str,
        now_ms: u64,
    ) -> Result<Vec<(AppId, EndpointId, u64)>>;
    /// The stored circuit-breaker states of an application's endpoints
    /// (those never stored are closed).
    async fn circuits(&self, app: &AppId) -> Result<Vec<(EndpointId, CircuitSnapshot)>>;
    /// Stores an endpoint's breaker state (replacing the one before).
    async fn save_circuit(
        &self,
        app: &AppId,
        ep: &EndpointId,
        snapshot: &CircuitSnapshot,
    ) -> Result<()>;
}

/// Messages: intake, reads and retention.
#[async_trait]
pub trait MessageStore: Send + Sync + 'static {
    /// Stores a message and its deliveries in one commit, or returns the message
    /// an earlier call stored under the same idempotency key or event id.
    async fn accept(&self, msg: NewMessage) -> Result<Accepted>;
    async fn get_message(&self, app: &AppId, id_or_event_id: &str) -> Result<Option<Message>>;
    async fn list_messages(&self, app: &AppId, filter: &MessageFilter) -> Result<Page<Message>>;
    async fn expunge_message_content(&self, app: &AppId, id: &MessageId) -> Result<bool>;
    /// Deletes up to `limit` messages created before `before_ms`, with their
    /// deliveries and attempts, and returns how many went. A message with a
    /// delivery still pending or being sent is kept until it is finished.
    async fn purge_messages(&self, before_ms: u64, limit: usize) -> Result<u64>;
}

/// Deliveries: the queue the dispatcher claims from, and views of it.
#[async_trait]
pub trait DeliveryStore: Send + Sync + 'static {
    /// Marks up to `limit` due pending deliveries in the given partitions as
    /// sending and returns them. A FIFO delivery is taken only when no FIFO
    /// delivery of its endpoint is being sent and none with a smaller
    /// message id is pending, so each FIFO endpoint has at most one in
    /// flight, in message order.
    async fn claim_due(
        &self,
        now_ms: u64,
        limit: usize,
        partitions: &[u16],
    ) -> Result<Vec<DeliveryTask>>;
    /// Writes attempts and moves their deliveries on, all in one commit.
    async fn record_outcomes(&self, outcomes: Vec<Outcome>) -> Result<()>;
    /// Puts claimed deliveries back to pending, each due at its `run_at`,
    /// without an attempt: the attempt count and the manual flag stay as
    /// they were. Only deliveries still marked sending change, so one that
    /// a hand-over already made pending is left to its new owner.
    async fn defer(&self, deferrals: Vec<Deferral>, now_ms: u64) -> Result<()>;
    /// Makes due the first delivery of every FIFO endpoint whose first open
    /// delivery waits with no due time, and returns how many. Each one
    /// ending makes the next due in its own commit, but on PostgreSQL a
    /// delivery accepted on one connection while the one before it ends on
    /// another can see it still open, while that end's look for a next one
    /// does not see it yet; nothing would then make it due. The dispatcher
    /// runs this every few seconds. SQLite has one writer, so this cannot
    /// happen there and it only checks.
    async fn repair_fifo_heads(&self, now_ms: u64) -> Result<u64>;
    /// Makes the (message, endpoint) delivery pending now as a manual
    /// resend (one never made is stored, with `fifo`); its scheduled
    /// attempts and their count stay as they were. Returns false when the
    /// delivery is being sent right now, in which case nothing changed.
    async fn requeue(
        &self,
        app: &AppId,
        msg: &MessageId,
        ep: &EndpointId,
        now_ms: u64,
        fifo: bool,
    ) -> Result<bool>;
    /// Makes the endpoint's pending deliveries that are due later (held back
    /// by its circuit breaker, or waiting for a retry) due at `now_ms`;
    /// returns how many.
    async fn due_now(&self, ep: &EndpointId, now_ms: u64) -> Result<u64>;
    /// Makes the endpoint's deliveries that a control put back in the queue
    /// (and not since attempted) due at `now_ms`, for when its limits
    /// change; returns how many.
    async fn release_held(&self, ep: &EndpointId, now_ms: u64) -> Result<u64>;
    /// Makes the endpoint's failed deliveries in the window pending again.
    async fn recover(
        &self,
        ep: &EndpointId,
        since_ms: u64,
        until_ms: Option<u64>,
        now_ms: u64,
    ) -> Result<u64>;
    async fn endpoint_stats(&self, ep: &EndpointId) -> Result<EndpointStats>;
    async fn deliveries_of_message(
        &self,
        app: &AppId,
        msg: &MessageId,
        page: &PageRequest,
    ) -> Result<Page<DeliveryView>>;
    async fn deliveries_of_endpoint(
        &self,
        ep: &EndpointId,
        filter: &MessageFilter,
        status: Option<u8>,
    ) -> Result<Page<DeliveryView>>;
}

/// The attempt log.
#[async_trait]
pub trait AttemptStore: Send + Sync + 'static {
    async fn list_attempts(&self, filter: &AttemptFilter) -> Result<Page<Attempt>>;
    async fn get_attempt(
        &self,
        app: &AppId,
        msg: &MessageId,
        id: &AttemptId,
    ) -> Result<Option<Attempt>>;
}

/// Saved responses of non-message POSTs, replayed for a repeated idempotency key.
#[async_trait]
pub trait IdempotencyStore: Send + Sync + 'static {
    async fn idempotent_response(&self, key: &str) -> Result<Option<StoredResponse>>;
    async fn save_idempotent_response(&self, key: &str, response: StoredResponse) -> Result<()>;
    /// Deletes idempotency records older than `before_ms`.
    async fn purge_idempotency(&self, before_ms: u64) -> Result<u64>;
}

/// Small settings by key (the hashed admin token, for one).
#[async_trait]
pub trait SettingStore: Send + Sync + 'static {
    async fn get_setting(&self, key: &str) -> Result<Option<String>>;
    /// Stores the setting unless one exists; returns whether it was stored.
    async fn init_setting(&self, key: &str, value: &str) -> Result<bool>;
    async fn replace_setting(&self, key: &str, value: &str) -> Result<()>;
    /// Re-seals every stored secret (endpoint secrets, source configs and
    /// tokens, and their retired ones) under the store's current encryption
    /// key, or opens them to plain text when the store has none; values
    /// already in that form are left alone. Returns how many values were
    /// rewritten. Safe while other nodes write: a value is replaced only if
    /// it is still the one read, else it is read again.
    async fn reseal_secrets(&self) -> Result<u64>;
    /// How many stored secret values each key seals, per column: one scan
    /// of every secret column, for the check at start that no value is
    /// sealed with a key the node lacks.
    async fn sealed_counts(&self) -> Result<Vec<SealedCount>>;
}

/// API tokens and app-portal sessions (the admin token is a setting).
#[async_trait]
pub trait TokenStore: Send + Sync + 'static {
    async fn insert_token(&self, token: ApiToken) -> Result<ApiToken>;
    /// The token whose SHA-256 (lower-case hex) this is, expired or not.
    async fn token_by_hash(&self, sha256_hex: &str) -> Result<Option<ApiToken>>;
    async fn get_token(&self, id: &TokenId) -> Result<Option<ApiToken>>;
    /// Tokens of one kind, by id.
    async fn list_tokens(&self, kind: TokenKind, page: &PageRequest) -> Result<Page<ApiToken>>;
    /// Makes a token expire at `at_ms` unless it expires sooner; whether it
    /// exists.
    async fn expire_token(&self, id: &TokenId, at_ms: u64) -> Result<bool>;
    /// As [`TokenStore::expire_token`] for every app-portal token of `app`
    /// (of those sessions only, when given); how many were changed.
    async fn expire_app_tokens(
        &self,
        app: &AppId,
        sessions: Option<&[String]>,
        at_ms: u64,
    ) -> Result<u64>;
    /// Deletes tokens that expired before `before_ms`.
    async fn purge_tokens(&self, before_ms: u64) -> Result<u64>;
}

/// Incoming-webhook sources.
#[async_trait]
pub trait SourceStore: Send + Sync + 'static {
    /// Stores a source together with the application its destinations live in.
    async fn insert_source(&self, source: Source, app: Application) -> Result<Source>;
    /// By id (`src_…`) or uid.
    async fn get_source(&self, id_or_uid: &str) -> Result<Option<Source>>;
    async fn list_sources(&self, page: &PageRequest) -> Result<Page<Source>>;
    /// Every source, for the ingest route's token lookup.
    async fn all_sources(&self) -> Result<Vec<Source>>;
    async fn update_source(&self, source: Source) -> Result<Source>;
    /// Removes the source and its application (destinations, messages, attempts).
    async fn delete_source(&self, id: &SourceId) -> Result<bool>;
    /// Adds counted requests to the sources' totals.
    async fn add_source_stats(&self, deltas: Vec<(SourceId, SourceStats)>) -> Result<()>;
    async fn source_stats(&self, id: &SourceId) -> Result<Option<SourceStats>>;
}

/// Broker sources, their counts and their rejected log.
#[async_trait]
pub trait BrokerSourceStore: Send + Sync + 'static {
    /// `Conflict` when the uid is taken or another source reads the same
    /// ([`BrokerSource::reads`]).
    async fn insert_broker_source(&self, source: BrokerSource) -> Result<BrokerSource>;
    /// By id (`bsrc_…`) or uid.
    async fn get_broker_source(&self, id_or_uid: &str) -> Result<Option<BrokerSource>>;
    async fn list_broker_sources(&self, page: &PageRequest) -> Result<Page<BrokerSource>>;
    /// Every source, for the nodes that run them.
    async fn all_broker_sources(&self) -> Result<Vec<BrokerSource>>;
    /// Writes the source if its `updated_at` is still `read_at` (the one
    /// the change was made on): `Stale` when another change came first,
    /// `NotFound` when it is gone, `Conflict` as for inserts.
    async fn update_broker_source(
        &self,
        source: BrokerSource,
        read_at: u64,
    ) -> Result<BrokerSource>;
    /// Removes the source, its counts and its rejected log.
    async fn delete_broker_source(&self, id: &BrokerSourceId) -> Result<bool>;
    /// Adds counts to the sources' totals; a backlog or last error replaces
    /// the stored one when it is newer. Sources gone meanwhile are skipped.
    async fn add_broker_source_stats(
        &self,
        deltas: Vec<(BrokerSourceId, BrokerSourceStats)>,
    ) -> Result<()>;
    async fn broker_source_stats(&self, id: &BrokerSourceId) -> Result<Option<BrokerSourceStats>>;
    /// Records rejected broker messages, all or none.
    async fn insert_broker_rejections(&self, rejections: Vec<BrokerRejection>) -> Result<()>;
    /// Newest first.
    async fn list_broker_rejections(
        &self,
        source: &BrokerSourceId,
        page: &PageRequest,
    ) -> Result<Page<BrokerRejection>>;
    /// Deletes rejections older than `before_ms`, and beyond the newest
    /// `keep` of each source; how many.
    async fn trim_broker_rejections(&self, before_ms: Option<u64>, keep: u64) -> Result<u64>;
}

/// Cluster membership, partition leases, events between nodes, and the
/// database's health.
#[async_trait]
pub trait ClusterStore: Send + Sync + 'static {
    /// Records the node's heartbeat, renews its leases and takes free or
    /// expired partitions up to its fair share, all in one transaction.
    ///
    /// It also makes pending again any `sending` delivery in the node's
    /// partitions that was last written more than `lease_margin_ms` before the
    /// node took the partition. Only the previous holder can have written it:
    /// one that decided to send while its lease was valid but whose commit
    /// landed after the takeover had already reset the partition.
    async fn lease(&self, request: &LeaseRequest) -> Result<LeaseGrant>;
    /// Gives up partitions the node has drained: their deliveries still marked
    /// `sending` become pending and the leases are freed for other nodes.
    async fn release_partitions(&self, node_id: &str, partitions: &[u16]) -> Result<()>;
    /// The node is shutting down: all its partitions are released as above
    /// and it no longer counts as live, so the others take over at once.
    async fn leave(&self, node_id: &str) -> Result<()>;
    /// Known nodes, with the partitions whose leases are valid at `now_ms`.
    async fn cluster(&self, now_ms: u64) -> Result<Vec<NodeInfo>>;
    /// Tells every node (this one included, where the backend can).
    async fn publish(&self, event: &ClusterEvent) -> Result<()>;
    /// Events published by other nodes; `None` for a single-process backend.
    fn subscribe(&self) -> Option<tokio::sync::broadcast::Receiver<ClusterEvent>>;
    /// Succeeds when the database answers.
    async fn ping(&self) -> Result<()>;
}

/// How long before its lease expires a node stops dispatching, so that what it
/// decided to send was decided at least this long before any takeover.
pub fn lease_margin_ms(ttl_ms: u64) -> u64 {
    ttl_ms / 5
}

/// Shared by the backends so that both pick partitions and surplus the same way.
pub(crate) fn fair_share(live_nodes: u32) -> usize {
    let live = live_nodes.max(1) as usize;
    (switchyard_core::PARTITIONS as usize).div_ceil(live)
}

/// The highest-numbered partitions beyond the fair share.
pub(crate) fn surplus_of(owned: &[u16], fair: usize) -> Vec<u16> {
    let mut sorted = owned.to_vec();
    sorted.sort_unstable();
    sorted.split_off(fair.min(sorted.len()))
}

/// Whether an outcome ends a FIFO delivery (it succeeded or failed for
/// good), so the next one waiting behind it (stored without a due time)
/// becomes due.
pub(crate) fn finishes_fifo(o: &Outcome) -> bool {
    o.fifo
        && matches!(
            o.delivery_status,
            DeliveryStatus::Success | DeliveryStatus::Fail
        )
}

/// The status a new delivery is stored with.
pub(crate) fn initial_status(d: &NewDelivery) -> DeliveryStatus {
    if d.send_now {
        DeliveryStatus::Sending
    } else {
        DeliveryStatus::Pending
    }
}

/// Hands each valid lease to its node's entry.
pub(crate) fn attach_leases(nodes: &mut [NodeInfo], leases: Vec<(u16, String)>) {
    for (partition, owner) in leases {
        if let Some(node) = nodes.iter_mut().find(|n| n.node_id == owner) {
            node.partitions.push(partition);
        }
    }
}
