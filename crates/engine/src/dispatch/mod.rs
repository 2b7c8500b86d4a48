//! Dispatch: deliveries arrive from intake (in memory, right after their
//! commit) or from the poller (due retries, deliveries left after a restart).
//! Each is signed and sent; outcomes are written back in batches.

use crate::cache::EndpointCache;
pub mod destination;
mod egress;
pub(crate) mod http;
mod lane;
mod oauth;
pub mod proxy;
pub mod tls;

use crate::cluster::Partitions;
use crate::operational::{EventBatch, OperationalEvent, attempt_event, circuit_event};
use crate::{EngineConfig, EngineError};
use destination::{Delivery, Destinations, Egress, Scheme, SendResult};
use http::{DeliveryClient, DeliveryClientConfig};
use lane::{Admission, CircuitChange, Lanes, PumpStep};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use switchyard_core::clock::Clock;
use switchyard_core::forward::ForwardPath;
use switchyard_core::retry::RetrySchedule;
use switchyard_core::{AttemptId, EndpointUrl};
use switchyard_store::{
    Attempt, ClusterEvent, Deferral, DeliveryStatus, DeliveryTask, Forward, Outcome, Store,
};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

/// Above this many queued deliveries intake leaves new ones to the poller
/// instead of queueing them in memory.
const QUEUE_HIGH_WATER: usize = 10_000;
const CLAIM_BATCH: usize = 1_000;
const CLAIM_GATHER: Duration = Duration::from_millis(10);
const OUTCOME_BATCH: usize = 4_096;
/// How often a node looks for FIFO queues left with nothing due (see
/// `DeliveryStore::repair_fifo_heads`): the longest such a queue waits.
const FIFO_REPAIR_EVERY: Duration = Duration::from_secs(5);

struct Inner {
    store: Arc<dyn Store>,
    endpoints: EndpointCache,
    destinations: Destinations,
    /// The network as broker destinations reach it.
    egress: Egress,
    retry: RetrySchedule,
    queue: mpsc::UnboundedSender<DeliveryTask>,
    queued: AtomicUsize,
    /// One permit per delivery being sent: the global in-flight cap.
    slots: Arc<Semaphore>,
    wake: Notify,
    outcomes: mpsc::UnboundedSender<Outcome>,
    /// Deliveries the lanes held back, on their way back to the store.
    deferrals: mpsc::UnboundedSender<Deferral>,
    partitions: Arc<Partitions>,
    clock: Arc<dyn Clock>,
    lanes: Lanes,
    /// Refuse unencrypted URLs at delivery (`EngineConfig::https_only`).
    https_only: bool,
    /// Operational events, to the engine, which stores them.
    operational: mpsc::UnboundedSender<EventBatch>,
}

#[derive(Clone)]
pub(crate) struct Dispatcher {
    inner: Arc<Inner>,
}

impl Dispatcher {
    pub async fn start(
        store: Arc<dyn Store>,
        endpoints: EndpointCache,
        partitions: Arc<Partitions>,
        config: &EngineConfig,
        operational: mpsc::UnboundedSender<EventBatch>,
    ) -> Result<Self, EngineError> {
        let client = DeliveryClient::new(&DeliveryClientConfig {
            timeout: config.request_timeout,
            max_connections_per_host: config.max_connections_per_host,
            policy: config.network_policy.clone(),
            extra_roots_pem: config.delivery_ca_pem.clone(),
            proxy: config.egress_proxy.clone(),
            https_only: config.https_only,
        })
        .map_err(|e| EngineError::invalid("http client", e))?;
        let egress = Egress::new(
            &config.network_policy,
            config.request_timeout,
            config.delivery_ca_pem.as_deref(),
            config.egress_proxy.as_ref(),
        )
        .map_err(|e| EngineError::invalid("broker destinations", e))?;
        let mut destinations = config.destinations.clone();
        destinations.register(
            &[Scheme::plain("http"), Scheme::tls("https")],
            Arc::new(client),
        );
        let (queue, queue_rx) = mpsc::unbounded_channel();
        let (outcomes, outcomes_rx) = mpsc::unbounded_channel();
        let (deferrals, deferrals_rx) = mpsc::unbounded_channel();
        let (circuit_changes, circuit_changes_rx) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            store,
            endpoints,
            destinations,
            egress,
            retry: config.retry_schedule.clone(),
            queue,
            queued: AtomicUsize::new(0),
            slots: Arc::new(Semaphore::new(config.max_in_flight.max(1))),
            wake: Notify::new(),
            outcomes,
            deferrals,
            partitions,
            clock: config.clock.clone(),
            lanes: Lanes::new(config.clock.clone(), circuit_changes),
            https_only: config.https_only,
            operational,
        });
        tokio::spawn(run_senders(inner.clone(), queue_rx));
        tokio::spawn(run_poller(inner.clone(), config.poll_interval));
        tokio::spawn(run_recorder(inner.clone(), outcomes_rx));
        tokio::spawn(run_deferrer(inner.clone(), deferrals_rx));
        tokio::spawn(run_circuit_recorder(inner.clone(), circuit_changes_rx));
        Ok(Self { inner })
    }

    pub fn has_room(&self) -> bool {
        self.inner.queued.load(Ordering::Relaxed) < QUEUE_HIGH_WATER
    }

    /// Sends a delivery this node owns. The caller has counted it in flight
    /// (`Partitions::begin`); the count ends once its outcome is stored.
    pub fn submit(&self, task: DeliveryTask) {
        // With a free slot and nothing waiting, send from here and skip the
        // hop through the queue.
        if self.inner.queued.load(Ordering::Relaxed) == 0
            && let Ok(slot) = self.inner.slots.clone().try_acquire_owned()
        {
            let inner = self.inner.clone();
            tokio::spawn(async move {
                deliver(&inner, task, Gate::Ask).await;
                drop(slot);
            });
            return;
        }
        self.inner.queued.fetch_add(1, Ordering::Relaxed);
        if let Err(unsent) = self.inner.queue.send(task) {
            self.inner.queued.fetch_sub(1, Ordering::Relaxed);
            self.inner.partitions.end(&unsent.0.endpoint_id);
        }
    }

    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    /// Every destination this node delivers to, http(s) included.
    pub fn destinations(&self) -> &Destinations {
        &self.inner.destinations
    }
}

async fn run_senders(inner: Arc<Inner>, mut queue: mpsc::UnboundedReceiver<DeliveryTask>) {
    while let Some(task) = queue.recv().await {
        // A partition handed over (or lost) while this waited belongs to
        // another node now; the row stays `sending` until the hand-over
        // makes it pending for the new owner.
        if !task.manual && !inner.partitions.owns(&task.endpoint_id) {
            inner.queued.fetch_sub(1, Ordering::Relaxed);
            inner.partitions.end(&task.endpoint_id);
            continue;
        }
        let Ok(slot) = inner.slots.clone().acquire_owned().await else {
            break;
        };
        inner.queued.fetch_sub(1, Ordering::Relaxed);
        let inner = inner.clone();
        tokio::spawn(async move {
            deliver(&inner, task, Gate::Ask).await;
            drop(slot);
        });
    }
}

async fn run_poller(inner: Arc<Inner>, interval: Duration) {
    let mut repaired_at = tokio::time::Instant::now();
    loop {
        if repaired_at.elapsed() >= FIFO_REPAIR_EVERY {
            repaired_at = tokio::time::Instant::now();
            match inner.store.repair_fifo_heads(inner.clock.now_ms()).await {
                Ok(0) => {}
                Ok(n) => tracing::warn!(
                    queues = n,
                    "FIFO queues found with nothing due; their next delivery is due now"
                ),
                Err(e) => tracing::warn!(error = %e, "checking FIFO queues failed"),
            }
        }
        let room = QUEUE_HIGH_WATER.saturating_sub(inner.queued.load(Ordering::Relaxed));
        let mut full_batch = false;
        let owned = inner.partitions.owned();
        if room > 0 && !owned.is_empty() {
            let claim = inner.partitions.claiming();
            match inner
                .store
                .claim_due(inner.clock.now_ms(), room.min(CLAIM_BATCH), &owned)
                .await
            {
                Ok(tasks) => {
                    full_batch = tasks.len() == room.min(CLAIM_BATCH);
                    for task in tasks {
                        inner.partitions.begin(&task.endpoint_id);
                        inner.queued.fetch_add(1, Ordering::Relaxed);
                        let _ = inner.queue.send(task);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "polling for due deliveries failed"),
            }
            drop(claim);
        }
        if !full_batch {
            // Wake-ups arrive per commit on every node; a short pause lets
            // them gather into one claim instead of many tiny ones.
            tokio::time::sleep(CLAIM_GATHER).await;
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = inner.wake.notified() => {}
            }
        }
    }
}

async fn run_recorder(inner: Arc<Inner>, mut outcomes: mpsc::UnboundedReceiver<Outcome>) {
    let mut batch = Vec::with_capacity(OUTCOME_BATCH);
    let mut health = Health::default();
    while outcomes.recv_many(&mut batch, OUTCOME_BATCH).await > 0 {
        let streaks = health.changes(&batch, inner.clock.now_ms());
        // Operators are told of failing, exhausted and recovered deliveries
        // before the outcomes are stored: a crash in between makes them
        // told again (of the new attempt), never not at all.
        let events: Vec<_> = batch.iter().filter_map(attempt_event).collect();
        tell_operators(&inner, events).await;
        // Outcomes stay in memory until stored: losing one would leave its
        // delivery "sending" until the next restart.
        until_stored("recording attempts", batch.len(), || {
            inner.store.record_outcomes(batch.clone())
        })
        .await;
        let mut fifo = false;
        for outcome in batch.drain(..) {
            fifo |= outcome.fifo;
            inner.partitions.end(&outcome.attempt.endpoint_id);
        }
        // A FIFO endpoint's next delivery waits for this one's outcome to
        // be stored: claim it now rather than at the next poll.
        if fifo {
            inner.wake.notify_one();
        }
        if !streaks.is_empty()
            && let Err(e) = inner.store.mark_failing(streaks).await
        {
            // Written again within a minute (see `Health`).
            tracing::warn!(error = %e, "recording endpoints' failure streaks failed");
            health.forget();
        }
    }
}

/// Retries a store write until it succeeds (what it writes exists only in
/// memory until then), waiting 0.1 s, then twice as long each time, up to
/// 5 s. `items` is how many records the write holds, for the log.
async fn until_stored<F, Fut>(what: &str, items: usize, mut write: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), switchyard_store::StoreError>>,
{
    let mut backoff = Duration::from_millis(100);
    while let Err(e) = write().await {
        tracing::warn!(error = %e, items, "{what} failed; retrying");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Hands operational events to the engine and waits until they are stored
/// (or the engine has stopped).
async fn tell_operators(inner: &Inner, events: Vec<OperationalEvent>) {
    if events.is_empty() {
        return;
    }
    let (stored, done) = oneshot::channel();
    if inner
        .operational
        .send(EventBatch { events, stored })
        .is_ok()
    {
        let _ = done.await;
    }
}

/// Hands a held-back delivery to the deferrer; if it has stopped (the
/// engine is shutting down) the delivery stays `sending` for the next
/// owner, and stops counting as in flight here.
fn defer(inner: &Inner, deferral: Deferral) {
    if let Err(unsent) = inner.deferrals.send(deferral) {
        inner.partitions.end(&unsent.0.endpoint_id);
    }
}

/// What the recorder last wrote of each endpoint's failure streak (for
/// auto-disable), so that only a change is written: a streak starting
/// (the first failed attempt after a success) or ending (a success). Each
/// endpoint's state is written again at least once a minute, so a change
/// made elsewhere (re-enabling clears the streak) is caught up with.
#[derive(Default)]
struct Health {
    /// Endpoint → (failing, when that was last written).
    known: std::collections::HashMap<switchyard_core::EndpointId, (bool, u64)>,
}

/// How long a written state is trusted before it is written again.
const HEALTH_REFRESH_MS: u64 = 60_000;

impl Health {
    /// The writes a batch of outcomes calls for, in order: `Some(t)` starts
    /// a streak at `t` (kept if one is running), `None` ends it.
    fn changes(
        &mut self,
        batch: &[Outcome],
        now: u64,
    ) -> Vec<(switchyard_core::EndpointId, Option<u64>)> {
        // Per endpoint: the first failure after its last success in this
        // batch (`None`: it ended succeeding), and whether it succeeded at all.
        let mut last: std::collections::HashMap<&switchyard_core::EndpointId, (Option<u64>, bool)> =
            std::collections::HashMap::new();
        for o in batch.iter().filter(|o| o.sent) {
            let (since, succeeded) = last.entry(&o.attempt.endpoint_id).or_default();
            if o.attempt.status == DeliveryStatus::Success {
                (*since, *succeeded) = (None, true);
            } else if since.is_none() {
                *since = Some(o.attempt.created_at);
            }
        }
        let mut out = Vec::new();
        for (ep, (since, succeeded)) in last {
            let failing = since.is_some();
            let fresh = self.known.get(ep).is_some_and(|&(was, at)| {
                was == failing
                    && now.saturating_sub(at) < HEALTH_REFRESH_MS
                    && !(failing && succeeded)
            });
            if fresh {
                continue;
            }
            if failing && succeeded {
                // A success then failures: the old streak ended, a new one began.
                out.push((ep.clone(), None));
            }
            out.push((ep.clone(), since));
            self.known.insert(ep.clone(), (failing, now));
        }
        out
    }

    fn forget(&mut self) {
        self.known.clear();
    }
}

/// Writes held-back deliveries back to the store in batches; each stays
/// counted in flight until its deferral is stored.
async fn run_deferrer(inner: Arc<Inner>, mut deferrals: mpsc::UnboundedReceiver<Deferral>) {
    let mut batch = Vec::with_capacity(OUTCOME_BATCH);
    while deferrals.recv_many(&mut batch, OUTCOME_BATCH).await > 0 {
        until_stored("deferring deliveries", batch.len(), || {
            inner.store.defer(batch.clone(), inner.clock.now_ms())
        })
        .await;
        for deferral in batch.drain(..) {
            inner.partitions.end(&deferral.endpoint_id);
        }
    }
}

/// Stores each state a breaker enters, in order, and announces it like an
/// endpoint change, so every node's cache holds it and a node taking the
/// endpoint over resumes from it.
async fn run_circuit_recorder(
    inner: Arc<Inner>,
    mut changes: mpsc::UnboundedReceiver<CircuitChange>,
) {
    while let Some(change) = changes.recv().await {
        let snapshot = &change.snapshot;
        tracing::warn!(
            endpoint = %change.endpoint_id,
            state = snapshot.state.as_str(),
            last_error = snapshot.last_error.as_deref().unwrap_or(""),
            "circuit breaker changed state"
        );
        // Before it is stored, as in the recorder (a repeat has the same
        // event id: the state and its time).
        let events = circuit_event(&change.app_id, &change.endpoint_id, snapshot);
        tell_operators(&inner, events.into_iter().collect()).await;
        until_stored("storing a circuit breaker's state", 1, || {
            inner
                .store
                .save_circuit(&change.app_id, &change.endpoint_id, snapshot)
        })
        .await;
        inner.endpoints.invalidate(&change.app_id);
        if let Err(e) = inner
            .store
            .publish(&ClusterEvent::EndpointsChanged(change.app_id.clone()))
            .await
        {
            tracing::warn!(error = %e, "could not tell other nodes of a breaker's state");
        }
    }
}

/// Sends an endpoint's parked deliveries as its lane lets them go, then
/// stops. A delivery whose partition this node lost is dropped here: its row
/// is still marked sending, and the hand-over makes it pending for the new
/// owner.
fn spawn_pump(
    inner: Arc<Inner>,
    app: switchyard_core::AppId,
    endpoint: switchyard_core::EndpointId,
) {
    tokio::spawn(async move {
        let mut slot = None;
        loop {
            // The endpoint as it is now (limits changed, or deleted).
            let current = match inner.endpoints.get(&app, &endpoint).await {
                Ok(Some(current)) => current,
                Ok(None) => {
                    // Deleted: its deliveries went with it.
                    for dropped in inner.lanes.forget(&endpoint) {
                        inner.partitions.end(&dropped.endpoint_id);
                    }
                    return;
                }
                Err(e) => {
                    tracing::warn!(endpoint = %endpoint, error = %e, "endpoint lookup failed; will retry");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            match inner.lanes.next_ready(&current, &mut slot) {
                PumpStep::Send(task, permit) => {
                    if !task.manual && !inner.partitions.owns(&endpoint) {
                        inner.partitions.end(&endpoint);
                        for dropped in inner.lanes.release(&endpoint) {
                            inner.partitions.end(&dropped.endpoint_id);
                        }
                        return;
                    }
                    let Ok(slot) = inner.slots.clone().acquire_owned().await else {
                        return;
                    };
                    let inner = inner.clone();
                    tokio::spawn(async move {
                        deliver(&inner, task, Gate::Passed(permit)).await;
                        drop(slot);
                    });
                }
                // Looked at again after a while: the limit may be raised
                // or removed meanwhile.
                PumpStep::WaitForSlot(slots) => {
                    slot = tokio::time::timeout(Duration::from_millis(500), slots.acquire_owned())
                        .await
                        .ok()
                        .and_then(Result::ok);
                }
                PumpStep::Defer(deferral) => defer(&inner, deferral),
                // The wait is on the engine clock; at least a millisecond,
                // so a clock that stands still (tests) does not spin.
                PumpStep::Wait(wait) => {
                    tokio::time::sleep(wait.max(Duration::from_millis(1))).await
                }
                PumpStep::Done => return,
            }
        }
    });
}

fn signed_headers(
    endpoint: &crate::cache::CachedEndpoint,
    msg_id: &str,
    body: &[u8],
    forward: Option<&Forward>,
    now: u64,
) -> Result<HeaderMap, String> {
    let timestamp = (now / 1000) as i64;
    let signature = endpoint
        .live_secrets(now)
        .map(|s| s.sign(msg_id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ");
    let mut headers = HeaderMap::with_capacity(8 + endpoint.endpoint.headers.len());
    let mut content_type = HeaderValue::from_static("application/json");
    // The provider's headers first, so the endpoint's own custom headers win.
    for (name, value) in forward.map(|f| f.headers.as_slice()).unwrap_or_default() {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) else {
            continue;
        };
        if name == CONTENT_TYPE {
            content_type = value;
        } else {
            headers.append(name, value);
        }
    }
    for (name, value) in &endpoint.endpoint.headers {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) else {
            return Err(format!("custom header '{name}' is not a valid HTTP header"));
        };
        headers.insert(name, value);
    }
    headers.insert(CONTENT_TYPE, content_type);
    let text = |s: &str| HeaderValue::from_str(s).map_err(|e| e.to_string());
    headers.insert("webhook-id", text(msg_id)?);
    headers.insert("webhook-timestamp", text(&timestamp.to_string())?);
    headers.insert("webhook-signature", text(&signature)?);
    Ok(headers)
}

/// Whether a delivery still needs its lane's decision.
enum Gate {
    Ask,
    /// The lane let it go (its pump sends it), with the endpoint's
    /// concurrency permit when it has a limit.
    Passed(Option<OwnedSemaphorePermit>),
}

/// Sends one delivery, or hands it to its endpoint's lane.
async fn deliver(inner: &Arc<Inner>, task: DeliveryTask, gate: Gate) {
    let endpoint = match inner.endpoints.get(&task.app_id, &task.endpoint_id).await {
        Ok(Some(e)) => e,
        // Deleted: its pending deliveries were removed with it, and its
        // lane (if it had limits) goes too.
        Ok(None) => {
            for dropped in inner.lanes.forget(&task.endpoint_id) {
                inner.partitions.end(&dropped.endpoint_id);
            }
            inner.partitions.end(&task.endpoint_id);
            return;
        }
        Err(e) => {
            tracing::warn!(endpoint = %task.endpoint_id, error = %e, "endpoint lookup failed; will retry");
            let mut outcome = retry_later(
                inner,
                &task,
                None,
                0,
                format!("internal error: {e}"),
                Duration::ZERO,
                None,
            );
            outcome.sent = false;
            let _ = inner.outcomes.send(outcome);
            return;
        }
    };
    // A broker destination has no path to extend: its URL names a server
    // and a stream, topic or queue.
    let url = match task.forward.as_deref() {
        Some(f) if !f.path.is_empty() && endpoint.endpoint.url.is_http() => {
            with_path(&endpoint.endpoint.url, &f.path)
        }
        _ => Ok(endpoint.endpoint.url.clone()),
    }
    .and_then(|url| {
        if !inner.https_only || inner.destinations.is_tls(&url) {
            Ok(url)
        } else if url.is_http() {
            Err("not sent: https-only mode (SWITCHYARD_HTTPS_ONLY) refuses http URLs".to_owned())
        } else {
            Err(format!(
                "not sent: https-only mode (SWITCHYARD_HTTPS_ONLY) refuses unencrypted {} URLs",
                url.scheme().to_ascii_lowercase()
            ))
        }
    });
    let admission = match gate {
        Gate::Passed(permit) if !endpoint.endpoint.disabled => Admission::Send(task, permit),
        _ => inner.lanes.admit(&endpoint, task),
    };
    // Neither a lane's refusal nor a refused path can change by retrying:
    // the delivery fails at once. The permit is held until the request ends.
    let (task, refused, _permit) = match (admission, &url) {
        (Admission::Refuse(task, reason), _) => (task, Some(reason), None),
        (Admission::Send(task, permit), Err(reason)) => (task, Some(reason.clone()), permit),
        (Admission::Send(task, permit), Ok(_)) => (task, None, permit),
        (Admission::Parked { start_pump }, _) => {
            if start_pump {
                spawn_pump(
                    inner.clone(),
                    endpoint.endpoint.app_id.clone(),
                    endpoint.endpoint.id.clone(),
                );
            }
            return;
        }
        (Admission::Defer(deferral), _) => {
            defer(inner, deferral);
            return;
        }
    };
    let url = url.unwrap_or_else(|_| endpoint.endpoint.url.clone());
    if let Some(reason) = refused {
        let attempt = attempt_of(
            &task,
            Some(&url),
            DeliveryStatus::Fail,
            0,
            reason,
            Duration::ZERO,
            inner.clock.now_ms(),
        );
        let _ = inner.outcomes.send(Outcome {
            attempt,
            delivery_status: DeliveryStatus::Fail,
            next_attempt_at: None,
            sent: false,
            fifo: task.fifo || endpoint.endpoint.fifo,
            attempts_before: task.attempts,
        });
        return;
    }
    // Every delivery of a fan-out sends the one payload the message was
    // stored with: cloning `Bytes` shares it.
    let body = task.payload.clone();
    let sent_at = inner.clock.now_ms();
    let result = match signed_headers(
        &endpoint,
        task.msg_id.as_str(),
        &body,
        task.forward.as_deref(),
        inner.clock.now_ms(),
    ) {
        Ok(headers) => match inner.destinations.for_url(&url) {
            Some(destination) => {
                destination
                    .send(Delivery {
                        url: &url,
                        headers,
                        body,
                        endpoint: endpoint.endpoint.id.as_str(),
                        auth: &endpoint.endpoint.auth,
                        egress: &inner.egress,
                    })
                    .await
            }
            None => SendResult::failed(format!("no destination serves the URL {url}")),
        },
        Err(reason) => SendResult::failed(reason),
    };
    let success = (200..300).contains(&result.status);
    if endpoint.endpoint.circuit_breaker.is_some() {
        let error = if success {
            String::new()
        } else if result.status == 0 {
            result.body.clone()
        } else {
            format!("HTTP {}", result.status)
        };
        inner
            .lanes
            .record(&task.endpoint_id, sent_at, success, &error);
    }
    let mut outcome = if success {
        Outcome {
            attempt: attempt_of(
                &task,
                Some(&url),
                DeliveryStatus::Success,
                result.status,
                result.body,
                result.duration,
                inner.clock.now_ms(),
            ),
            delivery_status: DeliveryStatus::Success,
            next_attempt_at: None,
            sent: true,
            fifo: false,
            attempts_before: task.attempts,
        }
    } else {
        tracing::debug!(endpoint = %task.endpoint_id, msg = %task.msg_id, status = result.status, reason = %result.body, "delivery attempt failed");
        retry_later(
            inner,
            &task,
            Some(&url),
            result.status,
            result.body,
            result.duration,
            result.retry_after,
        )
    };
    outcome.fifo = task.fifo || endpoint.endpoint.fifo;
    let _ = inner.outcomes.send(outcome);
}

/// The destination URL with an ingested request's path suffix and query
/// added by the one rule that checked them at intake; a stored suffix is
/// checked again since rows from older versions were stored unchecked.
/// The endpoint URL with a forwarded path and query joined on; the path
/// segments are strictly re-encoded, so the result is a URL of the same
/// scheme and host.
fn with_path(base: &EndpointUrl, stored: &str) -> Result<EndpointUrl, String> {
    ForwardPath::from_stored(stored)
        .and_then(|p| p.join(base))
        .map(EndpointUrl::from_trusted)
        .map_err(|e| format!("forwarded path refused, not sent: {e}"))
}

fn attempt_of(
    task: &DeliveryTask,
    url: Option<&EndpointUrl>,
    status: DeliveryStatus,
    code: u16,
    response: String,
    duration: Duration,
    now: u64,
) -> Attempt {
    Attempt {
        id: AttemptId::generate_at(now),
        app_id: task.app_id.clone(),
        msg_id: task.msg_id.clone(),
        endpoint_id: task.endpoint_id.clone(),
        url: url.cloned(),
        status,
        response_status_code: i32::from(code),
        response,
        response_duration_ms: duration.as_millis() as u64,
        manual: task.manual,
        created_at: now,
    }
}

/// A failed attempt: schedule the next one, or fail the delivery for good.
fn retry_later(
    inner: &Inner,
    task: &DeliveryTask,
    url: Option<&EndpointUrl>,
    code: u16,
    response: String,
    duration: Duration,
    retry_after: Option<Duration>,
) -> Outcome {
    let now = inner.clock.now_ms();
    let attempt = attempt_of(
        task,
        url,
        DeliveryStatus::Fail,
        code,
        response,
        duration,
        now,
    );
    let jitter = rand::random::<f64>() * 2.0 - 1.0;
    // A manual attempt is not counted, and its failure leaves the delivery
    // the retries it had: the next is the one it was waiting for (or, if
    // it was never attempted, the first retry); one that had used them all
    // fails again.
    let attempts_made = if task.manual {
        task.attempts.max(1)
    } else {
        task.attempts + 1
    };
    let next = inner.retry.next_delay(attempts_made, jitter, retry_after);
    match next {
        Some(delay) => Outcome {
            attempt,
            delivery_status: DeliveryStatus::Pending,
            next_attempt_at: Some(now + delay.as_millis() as u64),
            sent: true,
            fifo: false,
            attempts_before: task.attempts,
        },
        None => Outcome {
            attempt,
            delivery_status: DeliveryStatus::Fail,
            next_attempt_at: None,
            sent: true,
            fifo: false,
            attempts_before: task.attempts,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::{EndpointUrl, with_path};
    use crate::{
        AcceptEventType, AcceptInput, AppInput, EndpointInput, EngineConfig, PayloadDocument,
    };
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;
    use switchyard_core::MessageEventType;
    use switchyard_core::clock::ManualClock;
    use switchyard_core::netguard::NetworkPolicy;
    use switchyard_store::{AttemptFilter, DeliveryStatus, PageRequest};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A loopback HTTP receiver answering each request with the next status
    /// of `statuses` (the last one repeats), counting the requests.
    async fn receiver(statuses: Vec<u16>) -> (String, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let count = Arc::new(AtomicUsize::new(0));
        let seen = count.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let n = seen.fetch_add(1, Ordering::SeqCst);
                let status = statuses[n.min(statuses.len() - 1)];
                // The request is small; one read takes its head and body.
                let mut buf = vec![0; 64 << 10];
                let _ = socket.read(&mut buf).await;
                let reply = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
                let _ = socket.write_all(reply.as_bytes()).await;
            }
        });
        (url, count)
    }

    /// Waits (a bounded number of short pauses) until `done` holds.
    async fn eventually(what: &str, mut done: impl AsyncFnMut() -> bool) {
        // 30 s: long enough for a loaded machine, bounded so a real fault
        // still fails.
        for _ in 0..3000 {
            if done().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("timed out waiting until {what}");
    }

    /// An engine on a manual clock that may deliver to loopback, with one
    /// application whose one endpoint is a receiver answering `statuses`.
    struct Setup {
        engine: Arc<crate::Engine>,
        _dir: tempfile::TempDir,
        clock: Arc<ManualClock>,
        app: switchyard_core::AppId,
        endpoint: switchyard_core::EndpointId,
        received: Arc<AtomicUsize>,
    }

    async fn setup(
        statuses: Vec<u16>,
        retry_schedule: Option<switchyard_core::retry::RetrySchedule>,
    ) -> Setup {
        let clock = Arc::new(ManualClock::starting_now());
        let mut config = EngineConfig {
            clock: clock.clone(),
            network_policy: NetworkPolicy::parse("127.0.0.0/8").unwrap(),
            poll_interval: Duration::from_millis(10),
            ..EngineConfig::default()
        };
        if let Some(schedule) = retry_schedule {
            config.retry_schedule = schedule;
        }
        let (engine, dir) = crate::test_engine_with(config).await;
        let (url, received) = receiver(statuses).await;
        let (app, _) = engine
            .create_app(
                AppInput {
                    name: "a".into(),
                    ..AppInput::default()
                },
                false,
            )
            .await
            .unwrap();
        let endpoint = engine
            .create_endpoint(
                app.id.as_str(),
                EndpointInput {
                    url,
                    ..EndpointInput::default()
                },
            )
            .await
            .unwrap();
        Setup {
            engine,
            _dir: dir,
            clock,
            app: app.id,
            endpoint: endpoint.id,
            received,
        }
    }

    impl Setup {
        /// Accepts one `{}` message for the application.
        async fn send(&self) {
            self.engine
                .accept(AcceptInput {
                    app_id: self.app.clone(),
                    event_type: AcceptEventType::Provider(MessageEventType::from_provider(
                        "order.paid",
                    )),
                    event_id: None,
                    channels: None,
                    tags: None,
                    payload: bytes::Bytes::from_static(b"{}"),
                    idempotency_key: None,
                    forward: None,
                    document: PayloadDocument::Json,
                })
                .await
                .unwrap();
        }
    }

    /// The retry schedule runs on the engine's clock: a failed delivery is
    /// sent again only once the clock passes its due time (5 s, then 5 min,
    /// each ±10 %), however often the poller looks, and no test sleeps for it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn retries_follow_the_engine_clock() {
        let s = setup(vec![500, 503, 200], None).await;
        s.send().await;
        let (engine, clock, endpoint, received) = (&s.engine, &s.clock, &s.endpoint, &s.received);
        let attempts = || {
            let engine = engine.clone();
            let endpoint = endpoint.clone();
            async move {
                engine
                    .list_attempts(&AttemptFilter {
                        endpoint_id: Some(endpoint),
                        page: PageRequest {
                            limit: 10,
                            ..PageRequest::default()
                        },
                        ..AttemptFilter::default()
                    })
                    .await
                    .unwrap()
                    .data
            }
        };
        let recorded = |n: usize| {
            let attempts = &attempts;
            async move || attempts().await.len() == n
        };
        eventually("the first attempt is recorded", recorded(1)).await;

        // Not due: the poller is woken and polls many times, nothing is sent.
        clock.advance(Duration::from_millis(4_400));
        engine.wake_dispatcher();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(received.load(Ordering::SeqCst), 1);

        clock.advance(Duration::from_millis(1_200));
        engine.wake_dispatcher();
        eventually("the second attempt is recorded", recorded(2)).await;

        clock.advance(Duration::from_secs(260));
        engine.wake_dispatcher();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(received.load(Ordering::SeqCst), 2);

        clock.advance(Duration::from_secs(80));
        engine.wake_dispatcher();
        eventually("the third attempt is recorded", recorded(3)).await;
        let mut listed = attempts().await;
        listed.sort_by_key(|a| a.created_at);
        let statuses: Vec<_> = listed.iter().map(|a| a.status).collect();
        assert_eq!(
            statuses,
            [
                DeliveryStatus::Fail,
                DeliveryStatus::Fail,
                DeliveryStatus::Success
            ]
        );
        // Attempt times are the engine clock's, not the system's.
        let gaps: Vec<u64> = listed
            .windows(2)
            .map(|w| w[1].created_at - w[0].created_at)
            .collect();
        assert!((5_500..=5_700).contains(&gaps[0]), "{gaps:?}");
        assert!((340_000..=340_100).contains(&gaps[1]), "{gaps:?}");
    }

    /// An endpoint whose every attempt failed for the auto-disable time is
    /// disabled with the reason, on the engine clock; re-enabling clears the
    /// reason and the streak, and recover sends what failed meanwhile.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_endpoint_failing_for_the_window_is_disabled() {
        let s = setup(
            vec![500, 500, 200],
            Some(switchyard_core::retry::RetrySchedule::new(vec![])),
        )
        .await;
        let (engine, clock, received) = (&s.engine, &s.clock, &s.received);
        let (app, endpoint) = (&s.app, &s.endpoint);
        s.send().await;
        eventually("the first attempt", async || {
            received.load(Ordering::SeqCst) == 1
        })
        .await;
        // Not yet: the streak is young.
        clock.advance(Duration::from_secs(4 * 86_400));
        assert_eq!(engine.disable_failing_endpoints().await.unwrap(), 0);
        s.send().await;
        eventually("the second attempt", async || {
            received.load(Ordering::SeqCst) == 2
        })
        .await;
        clock.advance(Duration::from_secs(86_400));
        // The streak started at the first failure, five days ago.
        // Once the second attempt's result is written (the receiver saw it
        // first); on a loaded machine that may take a while.
        eventually("the endpoint is disabled", async || {
            engine.disable_failing_endpoints().await.unwrap() == 1
        })
        .await;
        let ep = engine
            .endpoint(app.as_str(), endpoint.as_str())
            .await
            .unwrap();
        assert!(ep.disabled);
        assert!(
            ep.disabled_reason
                .as_deref()
                .unwrap_or("")
                .contains("432000 s"),
            "{:?}",
            ep.disabled_reason
        );
        // Re-enabled: no reason, no streak, and the failed messages recovered.
        let ep = engine
            .patch_endpoint(
                app.as_str(),
                endpoint.as_str(),
                crate::EndpointPatch {
                    disabled: Some(false),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!((ep.disabled, ep.disabled_reason), (false, None));
        clock.advance(Duration::from_secs(10 * 86_400));
        assert_eq!(engine.disable_failing_endpoints().await.unwrap(), 0);
        assert_eq!(
            engine
                .recover_endpoint(app.as_str(), endpoint.as_str(), 0, None)
                .await
                .unwrap(),
            2
        );
        eventually("both are sent again", async || {
            received.load(Ordering::SeqCst) == 4
        })
        .await;
    }

    fn url(s: &str) -> EndpointUrl {
        EndpointUrl::parse(s).unwrap()
    }

    #[test]
    fn ingested_paths_extend_the_destination() {
        let ok = |base, path| with_path(&url(base), path).unwrap();
        assert_eq!(ok("http://svc/hook", "/a/b?x=1"), "http://svc/hook/a/b?x=1");
        assert_eq!(ok("http://svc/hook/", "/a"), "http://svc/hook/a");
        assert_eq!(ok("http://svc/hook?k=v", "?x=1"), "http://svc/hook?k=v&x=1");
        assert_eq!(ok("http://svc/hook?k=v", "/"), "http://svc/hook?k=v");
        assert_eq!(ok("http://svc/hook", "/orders/"), "http://svc/hook/orders/");
    }

    #[test]
    fn unsafe_stored_paths_are_not_sent() {
        // As a version before the intake check stored the request.
        let refused = with_path(
            &url("http://127.0.0.1:19511/stripe/hook"),
            "/%2e%2e/%2e%2e/admin?q=1",
        )
        .unwrap_err();
        assert!(refused.contains("dot segment"), "{refused}");
        assert!(with_path(&url("http://svc/hook"), "/a/..;x/b").is_err());
        assert!(with_path(&url("http://svc/hook"), "/a%2f..%2f..%2fadmin").is_err());
    }
}
