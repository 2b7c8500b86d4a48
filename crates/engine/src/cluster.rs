//! Membership: this node's heartbeat, its partition leases, and the local
//! view of which partitions it may dispatch. One owner per partition (and so
//! per endpoint) is what keeps a delivery from being sent by two nodes.
//!
//! Handing a partition over is a drain: the node stops dispatching it, waits
//! until nothing of it is in flight or queued, then releases the lease (the
//! store makes anything still marked `sending` pending again in the same
//! transaction). A node that dies simply stops renewing; the others take
//! over once its leases expire.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::time::Duration;
use switchyard_core::timefmt::now_ms;
use switchyard_core::{EndpointId, PARTITIONS, partition_of};
use switchyard_store::{LeaseRequest, Store};

/// What this node may dispatch, and how much of each partition it has in
/// flight (queued, being sent, or sent with the outcome not yet stored).
pub(crate) struct Partitions {
    owned: Vec<AtomicBool>,
    in_flight: Vec<AtomicU32>,
    /// Claims running now, whose tasks are not counted in `in_flight` yet.
    claiming: AtomicUsize,
}

impl Partitions {
    pub fn new() -> Self {
        Self {
            owned: (0..PARTITIONS).map(|_| AtomicBool::new(false)).collect(),
            in_flight: (0..PARTITIONS).map(|_| AtomicU32::new(0)).collect(),
            claiming: AtomicUsize::new(0),
        }
    }

    pub fn owns(&self, endpoint: &EndpointId) -> bool {
        self.owned[usize::from(partition_of(endpoint))].load(Ordering::Acquire)
    }

    pub fn owned(&self) -> Vec<u16> {
        (0..PARTITIONS)
            .filter(|&p| self.owned[usize::from(p)].load(Ordering::Acquire))
            .collect()
    }

    fn set_owned(&self, owned: &[u16]) {
        let mut wanted = vec![false; usize::from(PARTITIONS)];
        for &p in owned {
            if let Some(slot) = wanted.get_mut(usize::from(p)) {
                *slot = true;
            }
        }
        for (flag, want) in self.owned.iter().zip(wanted) {
            flag.store(want, Ordering::Release);
        }
    }

    /// Stops dispatching everything (the node is leaving).
    pub fn stop_all(&self) {
        self.set_owned(&[]);
    }

    pub fn begin(&self, endpoint: &EndpointId) {
        self.in_flight[usize::from(partition_of(endpoint))].fetch_add(1, Ordering::AcqRel);
    }

    pub fn end(&self, endpoint: &EndpointId) {
        let _ = self.in_flight[usize::from(partition_of(endpoint))].fetch_update(
            Ordering::AcqRel,
            Ordering::Acquire,
            |n| n.checked_sub(1),
        );
    }

    fn idle(&self, partition: u16) -> bool {
        self.claiming.load(Ordering::Acquire) == 0
            && self.in_flight[usize::from(partition)].load(Ordering::Acquire) == 0
    }

    /// Marks a claim as running until the guard drops.
    pub fn claiming(self: &Arc<Self>) -> ClaimGuard {
        self.claiming.fetch_add(1, Ordering::AcqRel);
        ClaimGuard(self.clone())
    }
}

pub(crate) struct ClaimGuard(Arc<Partitions>);

impl Drop for ClaimGuard {
    fn drop(&mut self) {
        self.0.claiming.fetch_sub(1, Ordering::AcqRel);
    }
}

#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// Stable across restarts of the same node, unique among live ones.
    pub node_id: String,
    /// Where this node serves its API, shown in the cluster listing.
    pub address: String,
    /// A node silent for this long is dead and its partitions are taken over.
    pub lease_ttl: Duration,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            node_id: "local".into(),
            address: String::new(),
            lease_ttl: Duration::from_secs(10),
        }
    }
}

const DRAIN_CHECK: Duration = Duration::from_millis(100);

/// Controls the lease keeper: an early round when the cluster changed, and
/// a stop for good before the node hands its partitions over (each round
/// runs under the lock, and a stopped keeper runs no more).
#[derive(Clone, Default)]
pub(crate) struct LeaseKeeper {
    round: Arc<tokio::sync::Mutex<bool>>,
    early: Arc<tokio::sync::Notify>,
}

impl LeaseKeeper {
    /// Runs a round now instead of at the next renewal.
    pub fn nudge(&self) {
        self.early.notify_one();
    }

    /// Waits for a round in flight, then stops the keeper.
    pub async fn stop(&self) {
        *self.round.lock().await = true;
    }
}

/// Keeps this node's leases and its local partition view up to date.
pub(crate) async fn run_leases(
    store: Arc<dyn Store>,
    partitions: Arc<Partitions>,
    config: ClusterConfig,
    drain_limit: Duration,
    wake: impl Fn(),
    first_grant: tokio::sync::oneshot::Sender<()>,
    keeper: LeaseKeeper,
) {
    let mut first_grant = Some(first_grant);
    let ttl_ms = config.lease_ttl.as_millis().max(1) as u64;
    // Renew well before expiry, and stop dispatching a little before the
    // leases could have lapsed in the database's eyes.
    let renew_every = Duration::from_millis((ttl_ms / 4).max(100));
    let safety_ms = switchyard_store::lease_margin_ms(ttl_ms);
    let mut fresh = true;
    let mut valid_until = 0u64;
    let mut draining: HashMap<u16, u64> = HashMap::new();
    loop {
        let stopped = keeper.round.lock().await;
        if *stopped {
            return;
        }
        let started = now_ms();
        let request = LeaseRequest {
            node_id: config.node_id.clone(),
            address: config.address.clone(),
            now_ms: started,
            ttl_ms,
            fresh,
        };
        match store.lease(&request).await {
            Ok(grant) => {
                if fresh {
                    tracing::info!(node = %config.node_id, partitions = grant.owned.len(), live_nodes = grant.live_nodes, "partition leases acquired");
                }
                fresh = false;
                if let Some(signal) = first_grant.take() {
                    let _ = signal.send(());
                }
                valid_until = started + ttl_ms - safety_ms;
                draining.retain(|p, _| grant.owned.contains(p));
                for &p in &grant.surplus {
                    draining.entry(p).or_insert(started);
                }
                let keep: Vec<u16> = grant
                    .owned
                    .iter()
                    .copied()
                    .filter(|p| !draining.contains_key(p))
                    .collect();
                partitions.set_owned(&keep);
                if grant.stranded > 0 {
                    tracing::warn!(
                        deliveries = grant.stranded,
                        "deliveries committed by a node after it lost their partition are pending again"
                    );
                }
                if !grant.acquired.is_empty() || grant.stranded > 0 {
                    tracing::debug!(acquired = ?grant.acquired, "took over partitions");
                    wake();
                }
                let drain_ms = drain_limit.as_millis() as u64;
                let ready: Vec<u16> = draining
                    .iter()
                    .filter(|&(&p, &since)| partitions.idle(p) || started - since > drain_ms)
                    .map(|(&p, _)| p)
                    .collect();
                if !ready.is_empty() {
                    match store.release_partitions(&config.node_id, &ready).await {
                        Ok(()) => {
                            tracing::info!(released = ready.len(), "handed partitions over");
                            for p in ready {
                                draining.remove(&p);
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "releasing partitions failed"),
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "renewing partition leases failed");
                if now_ms() > valid_until && !partitions.owned().is_empty() {
                    tracing::warn!(
                        "partition leases lapsed: dispatch paused until the database is back"
                    );
                    partitions.set_owned(&[]);
                    draining.clear();
                    // Whatever was in flight is abandoned; the next grant must
                    // make it due again.
                    fresh = true;
                }
            }
        }
        drop(stopped);
        // A draining partition is dispatched by nobody until it is released,
        // so its idleness is checked often rather than once per renewal.
        let pause = if draining.is_empty() {
            renew_every
        } else {
            renew_every.min(DRAIN_CHECK)
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = keeper.early.notified() => {}
        }
    }
}
