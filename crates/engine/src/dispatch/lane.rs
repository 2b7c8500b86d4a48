//! The per-endpoint lane: the one place that decides whether a delivery to
//! an endpoint may be sent now. Every delivery passes through
//! [`Lanes::admit`] after its endpoint is looked up and before it is signed,
//! whether it came from intake, the poller or a manual resend.
//!
//! Decisions today:
//! - a disabled endpoint is refused (the delivery fails at once);
//! - a rate limit (`rateLimit`, deliveries per second, the endpoint's or else
//!   its application's) and a concurrency limit (`concurrencyLimit`,
//!   deliveries in flight at once) are enforced: a delivery over either
//!   waits, parked in memory (at most about a second of the endpoint's rate,
//!   or [`MAX_PARKED`]), or put back in the store due when its turn should
//!   come. Waiting never records an attempt, never consumes a retry and
//!   never fails the delivery.
//!
//! Partition leases give each endpoint one owning node at a time, so the
//! lane's state on that node is the endpoint's state cluster-wide. A rate
//! limiter lives only in memory: after a takeover the new owner starts with
//! a full burst (a tenth of a second of the rate), which is the most a
//! takeover can add.
//!
//! - a circuit breaker (`circuitBreaker`, see `switchyard_core::breaker`):
//!   while it is open, or half-open with its probe out, deliveries go back to
//!   the store due when it may let them through (one millisecond apart, in
//!   the order they came), recording no attempt; every state it enters is
//!   stored, so a node taking the endpoint over resumes it.
//!
//! FIFO order is to decide here too, with the same answers.

use crate::cache::CachedEndpoint;
use governor::clock::Clock as _;
use governor::nanos::Nanos;
use governor::{Quota, RateLimiter};
use std::collections::{HashMap, VecDeque};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchyard_core::breaker::{BreakerConfig, Circuit, CircuitDecision, CircuitSnapshot};
use switchyard_core::clock::Clock;
use switchyard_core::{AppId, EndpointId};
use switchyard_store::{Deferral, DeliveryTask};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

/// The most deliveries parked in memory per endpoint: about one second of
/// its rate, within these bounds (without a rate, the most). More wait in
/// the store.
const MIN_PARKED: usize = 1;
const MAX_PARKED: usize = 1_000;
/// How long a delivery held back by the concurrency limit alone, with the
/// memory queue full, waits in the store before it is looked at again.
const CONCURRENCY_RETRY: Duration = Duration::from_secs(1);

/// What the lane decided for one delivery.
#[derive(Debug)]
pub(crate) enum Admission {
    /// Send now; the permit (when the endpoint has a concurrency limit)
    /// is held until the request is over.
    Send(DeliveryTask, Option<OwnedSemaphorePermit>),
    /// Never send: the delivery fails at once with this reason, since
    /// retrying could not change it.
    Refuse(DeliveryTask, String),
    /// Parked until its turn; `start_pump` asks the caller to start the
    /// endpoint's pump (see [`Lanes::next_ready`]), which none runs yet.
    Parked { start_pump: bool },
    /// Not now: back to the store, due at the deferral's time.
    Defer(Deferral),
}

/// What an endpoint's pump does next.
#[derive(Debug)]
pub(crate) enum PumpStep {
    /// This parked delivery may go now, holding this permit while it is sent.
    Send(DeliveryTask, Option<OwnedSemaphorePermit>),
    /// Nothing may go before this much time has passed.
    Wait(Duration),
    /// Nothing may go before a request to the endpoint is over: wait for a
    /// permit of this semaphore and hand it to the next step.
    WaitForSlot(Arc<Semaphore>),
    /// The breaker holds this parked delivery back: to the store with it.
    Defer(Deferral),
    /// Nothing is parked; the pump stops (a later park starts a new one).
    Done,
}

/// A breaker that entered a new state, to be stored.
#[derive(Debug, Clone)]
pub(crate) struct CircuitChange {
    pub app_id: AppId,
    pub endpoint_id: EndpointId,
    pub snapshot: CircuitSnapshot,
}

/// The engine's clock as the rate limiter reads it, in nanoseconds.
#[derive(Clone)]
struct LimiterClock(Arc<dyn Clock>);

impl governor::clock::Clock for LimiterClock {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        Nanos::from(Duration::from_millis(self.0.now_ms()))
    }
}

type Limiter = RateLimiter<
    governor::state::NotKeyed,
    governor::state::InMemoryState,
    LimiterClock,
    governor::middleware::NoOpMiddleware<Nanos>,
>;

/// The limits an endpoint's lane enforces.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Limits {
    rate: Option<NonZeroU32>,
    concurrency: Option<NonZeroU32>,
    breaker: Option<BreakerConfig>,
}

impl Limits {
    fn of(endpoint: &CachedEndpoint) -> Self {
        Self {
            rate: endpoint.rate_limit.and_then(NonZeroU32::new),
            concurrency: endpoint
                .endpoint
                .concurrency_limit
                .and_then(NonZeroU32::new),
            breaker: endpoint.endpoint.circuit_breaker,
        }
    }

    fn none(&self) -> bool {
        self.rate.is_none() && self.concurrency.is_none() && self.breaker.is_none()
    }
}

/// One limited endpoint's state on its owning node.
struct Lane {
    limits: Limits,
    limiter: Option<Limiter>,
    /// One permit per delivery the endpoint may have in flight.
    slots: Option<Arc<Semaphore>>,
    circuit: Option<Circuit>,
    app_id: AppId,
    parked: VecDeque<DeliveryTask>,
    pumping: bool,
    /// The latest time, in microseconds, given to a deferred delivery, so
    /// deferred deliveries come back one per turn rather than all at once.
    deferred_until_us: u64,
}

impl Lane {
    fn new(limits: Limits, endpoint: &CachedEndpoint, clock: &LimiterClock) -> Self {
        let limiter = limits.rate.map(|rate| new_limiter(rate, clock));
        Self {
            limits,
            limiter,
            slots: limits
                .concurrency
                .map(|n| Arc::new(Semaphore::new(n.get() as usize))),
            circuit: limits.breaker.map(|_| stored_circuit(endpoint)),
            app_id: endpoint.endpoint.app_id.clone(),
            parked: VecDeque::new(),
            pumping: false,
            deferred_until_us: 0,
        }
    }

    /// Takes the endpoint's current limits, keeping what did not change: the
    /// rate limiter's count if the rate is the same, the concurrency
    /// semaphore (resized, so requests in flight still count) if there still
    /// is a limit, the breaker's state if there still is a breaker.
    /// A breaker state stored after this lane's (a reset through the API,
    /// or another node's change before this one took the endpoint over)
    /// wins over the one in memory.
    fn refresh(&mut self, limits: Limits, endpoint: &CachedEndpoint, clock: &LimiterClock) {
        if let (Some(circuit), Some(stored)) = (self.circuit.as_mut(), endpoint.circuit.as_ref())
            && stored.since > circuit.snapshot().since
        {
            *circuit = Circuit::resume(stored.clone());
        }
        if self.limits == limits {
            return;
        }
        if self.limits.rate != limits.rate {
            self.limiter = limits.rate.map(|rate| new_limiter(rate, clock));
        }
        match (self.limits.concurrency, limits.concurrency) {
            (Some(old), Some(new)) => {
                if let Some(slots) = &self.slots
                    && old != new
                {
                    resize(slots, old.get(), new.get());
                }
            }
            (_, new) => self.slots = new.map(|n| Arc::new(Semaphore::new(n.get() as usize))),
        }
        if limits.breaker.is_none() {
            self.circuit = None;
        } else if self.circuit.is_none() {
            self.circuit = Some(stored_circuit(endpoint));
        }
        self.limits = limits;
    }

    fn park_limit(&self) -> usize {
        self.limits.rate.map_or(MAX_PARKED, |rate| {
            (rate.get() as usize).clamp(MIN_PARKED, MAX_PARKED)
        })
    }

    /// When a delivery arriving now behind the parked ones gets its turn, in
    /// ms since the epoch; each call hands out the next turn.
    fn next_turn_ms(&mut self, now_ms: u64) -> u64 {
        let Some(rate) = self.limits.rate else {
            // No rate to plan turns by: look again in a while.
            return now_ms + CONCURRENCY_RETRY.as_millis() as u64;
        };
        let interval_us = (1_000_000 / u64::from(rate.get())).max(1);
        let behind_parked = now_ms * 1_000 + (self.parked.len() as u64 + 1) * interval_us;
        let turn = behind_parked.max(self.deferred_until_us + interval_us);
        self.deferred_until_us = turn;
        turn.div_ceil(1_000)
    }

    /// Until when the breaker holds deliveries back, if it does.
    fn blocked_until(&self, now_ms: u64) -> Option<u64> {
        match (&self.circuit, &self.limits.breaker) {
            (Some(circuit), Some(config)) => circuit.blocked_until(config, now_ms),
            _ => None,
        }
    }

    /// A deferral to `until` (ms), one millisecond after the last one handed
    /// out, so held-back deliveries come back in the order they came.
    fn defer_until(&mut self, task: DeliveryTask, until: u64) -> Deferral {
        let turn = (until * 1_000).max(self.deferred_until_us + 1_000);
        self.deferred_until_us = turn;
        Deferral {
            msg_id: task.msg_id,
            endpoint_id: task.endpoint_id,
            run_at: turn.div_ceil(1_000),
        }
    }

    /// Lets the breaker have its say on one delivery about to be sent: it
    /// may hold it back (until the time given), or let it go, having moved
    /// to half-open (the state entered is returned, to be stored).
    fn breaker_admits(&mut self, now_ms: u64) -> Result<Option<CircuitSnapshot>, u64> {
        let (Some(circuit), Some(config)) = (self.circuit.as_mut(), self.limits.breaker.as_ref())
        else {
            return Ok(None);
        };
        let before = circuit.snapshot().state;
        match circuit.admit(config, now_ms) {
            CircuitDecision::Send => Ok(None),
            CircuitDecision::Probe => {
                Ok((circuit.snapshot().state != before).then(|| circuit.snapshot().clone()))
            }
            CircuitDecision::WaitUntil(until) => Err(until),
        }
    }

    /// A permit, when the endpoint has a concurrency limit and one is free
    /// (`Err` when it has one and none is).
    fn try_slot(&self) -> Result<Option<OwnedSemaphorePermit>, ()> {
        match &self.slots {
            None => Ok(None),
            Some(slots) => slots.clone().try_acquire_owned().map(Some).map_err(|_| ()),
        }
    }

    /// Whether the rate lets one more delivery go now (and counts it); if
    /// not, how long until it would.
    fn rate_allows(&self, clock: &LimiterClock) -> Result<(), Duration> {
        match &self.limiter {
            None => Ok(()),
            Some(limiter) => limiter
                .check()
                .map_err(|not_until| not_until.wait_time_from(clock.now())),
        }
    }
}

/// The endpoint's breaker as last stored (closed if never stored).
fn stored_circuit(endpoint: &CachedEndpoint) -> Circuit {
    Circuit::resume(
        endpoint
            .circuit
            .clone()
            .unwrap_or_else(|| CircuitSnapshot::closed(0)),
    )
}

/// A burst of a tenth of a second of the rate: the clock has millisecond
/// steps, so a rate over 1,000/s needs a burst above one to be reachable at
/// all; over a minute the burst adds under 0.2 %.
fn new_limiter(rate: NonZeroU32, clock: &LimiterClock) -> Limiter {
    let burst = NonZeroU32::new(rate.get() / 10).unwrap_or(NonZeroU32::MIN);
    RateLimiter::direct_with_clock(Quota::per_second(rate).allow_burst(burst), clock.clone())
}

/// Changes a concurrency semaphore from `old` to `new` permits. Lowering
/// takes the surplus out as requests in flight end, so they keep counting.
fn resize(slots: &Arc<Semaphore>, old: u32, new: u32) {
    if new > old {
        slots.add_permits((new - old) as usize);
    } else if let Ok(handle) = tokio::runtime::Handle::try_current() {
        let slots = slots.clone();
        handle.spawn(async move {
            if let Ok(surplus) = slots.acquire_many_owned(old - new).await {
                surplus.forget();
            }
        });
    }
}

/// The lanes of the endpoints this node is sending to. An endpoint without
/// a rate limit, concurrency limit or breaker has no lane state and costs
/// no lock.
pub(crate) struct Lanes {
    clock: LimiterClock,
    lanes: Mutex<HashMap<EndpointId, Lane>>,
    /// Breaker states to store, in the order they were entered.
    changes: mpsc::UnboundedSender<CircuitChange>,
}

impl Lanes {
    pub fn new(clock: Arc<dyn Clock>, changes: mpsc::UnboundedSender<CircuitChange>) -> Self {
        Self {
            clock: LimiterClock(clock),
            lanes: Mutex::new(HashMap::new()),
            changes,
        }
    }

    /// Passes a state a breaker entered on to be stored.
    fn report(&self, app_id: AppId, endpoint_id: &EndpointId, snapshot: Option<CircuitSnapshot>) {
        if let Some(snapshot) = snapshot {
            let _ = self.changes.send(CircuitChange {
                app_id,
                endpoint_id: endpoint_id.clone(),
                snapshot,
            });
        }
    }

    /// Counts a sent delivery's result in the endpoint's breaker, if it has
    /// one; a change of state is reported to be stored.
    /// `sent_at`: when the request went out (ms), so that in half-open only
    /// the probe's result decides.
    pub fn record(&self, endpoint: &EndpointId, sent_at: u64, success: bool, error: &str) {
        let Ok(mut lanes) = self.lanes.lock() else {
            return;
        };
        let Some(lane) = lanes.get_mut(endpoint) else {
            return;
        };
        let (Some(circuit), Some(config)) = (lane.circuit.as_mut(), lane.limits.breaker.as_ref())
        else {
            return;
        };
        if circuit
            .record_sent_at(config, self.clock.0.now_ms(), sent_at, success, error)
            .is_some()
        {
            let snapshot = circuit.snapshot().clone();
            let app_id = lane.app_id.clone();
            drop(lanes);
            self.report(app_id, endpoint, Some(snapshot));
        }
    }

    /// Decides for one delivery bound for `endpoint`.
    pub fn admit(&self, endpoint: &CachedEndpoint, task: DeliveryTask) -> Admission {
        // Manual resends included: a disabled endpoint receives nothing.
        if endpoint.endpoint.disabled {
            return Admission::Refuse(task, "endpoint is disabled".to_owned());
        }
        let limits = Limits::of(endpoint);
        if limits.none() {
            return Admission::Send(task, None);
        }
        let Ok(mut lanes) = self.lanes.lock() else {
            return Admission::Send(task, None);
        };
        let lane = lanes
            .entry(task.endpoint_id.clone())
            .or_insert_with(|| Lane::new(limits, endpoint, &self.clock));
        lane.refresh(limits, endpoint, &self.clock);
        let now = self.clock.0.now_ms();
        // A manual resend is the operator's call: the breaker lets it
        // through. It is never deferred either: while its delivery is being
        // sent it has no row of its own, and a deferral would move that row.
        let manual = task.manual;
        if !manual && let Some(until) = lane.blocked_until(now) {
            return Admission::Defer(lane.defer_until(task, until));
        }
        // Parked deliveries go first: a newcomer never overtakes them.
        if lane.parked.is_empty()
            && let Ok(permit) = lane.try_slot()
            && lane.rate_allows(&self.clock).is_ok()
        {
            let decision = if manual {
                Ok(None)
            } else {
                lane.breaker_admits(now)
            };
            let app_id = lane.app_id.clone();
            let (admission, entered) = match decision {
                Ok(entered) => (Admission::Send(task, permit), entered),
                Err(until) => (Admission::Defer(lane.defer_until(task, until)), None),
            };
            drop(lanes);
            self.report(app_id, &endpoint.endpoint.id, entered);
            return admission;
        }
        if manual || lane.parked.len() < lane.park_limit() {
            lane.parked.push_back(task);
            let start_pump = !lane.pumping;
            lane.pumping = true;
            return Admission::Parked { start_pump };
        }
        let run_at = lane.next_turn_ms(now);
        Admission::Defer(Deferral {
            msg_id: task.msg_id,
            endpoint_id: task.endpoint_id,
            run_at,
        })
    }

    /// The next step of `endpoint`'s pump: the first parked delivery once
    /// the limits allow it. `slot` is a permit the pump already waited for
    /// (see [`PumpStep::WaitForSlot`]); it is used or kept for the next step.
    pub fn next_ready(
        &self,
        current: &CachedEndpoint,
        slot: &mut Option<OwnedSemaphorePermit>,
    ) -> PumpStep {
        let endpoint = &current.endpoint.id;
        let Ok(mut lanes) = self.lanes.lock() else {
            return PumpStep::Done;
        };
        let Some(lane) = lanes.get_mut(endpoint) else {
            return PumpStep::Done;
        };
        if lane.parked.is_empty() {
            lane.pumping = false;
            return PumpStep::Done;
        }
        // The endpoint's limits as they are now: a limit raised or removed
        // while deliveries wait here applies to them at once.
        lane.refresh(Limits::of(current), current, &self.clock);
        let now = self.clock.0.now_ms();
        let front_manual = lane.parked.front().is_some_and(|t| t.manual);
        if !front_manual
            && let Some(until) = lane.blocked_until(now)
            && let Some(task) = lane.parked.pop_front()
        {
            return PumpStep::Defer(lane.defer_until(task, until));
        }
        // A permit of a semaphore the lane replaced (the limit changed)
        // does not count.
        if let (Some(held), Some(slots)) = (slot.as_ref(), lane.slots.as_ref())
            && !std::ptr::eq(held.semaphore().as_ref(), slots.as_ref())
        {
            *slot = None;
        }
        if slot.is_none() {
            match lane.try_slot() {
                Ok(permit) => *slot = permit,
                Err(()) => {
                    if let Some(slots) = &lane.slots {
                        return PumpStep::WaitForSlot(slots.clone());
                    }
                }
            }
        }
        if let Err(wait) = lane.rate_allows(&self.clock) {
            return PumpStep::Wait(wait);
        }
        let Some(task) = lane.parked.pop_front() else {
            return PumpStep::Done;
        };
        let decision = if task.manual {
            Ok(None)
        } else {
            lane.breaker_admits(now)
        };
        let (step, entered) = match decision {
            Ok(entered) => (PumpStep::Send(task, slot.take()), entered),
            Err(until) => (PumpStep::Defer(lane.defer_until(task, until)), None),
        };
        let app_id = lane.app_id.clone();
        drop(lanes);
        self.report(app_id, endpoint, entered);
        step
    }

    /// Drops a deleted endpoint's lane, handing back what it parked.
    pub fn forget(&self, endpoint: &EndpointId) -> Vec<DeliveryTask> {
        let Ok(mut lanes) = self.lanes.lock() else {
            return Vec::new();
        };
        lanes
            .remove(endpoint)
            .map(|lane| lane.parked.into_iter().collect())
            .unwrap_or_default()
    }

    /// Takes every parked delivery of `endpoint` out (the node no longer
    /// owns it) and stops its pump.
    pub fn release(&self, endpoint: &EndpointId) -> Vec<DeliveryTask> {
        let Ok(mut lanes) = self.lanes.lock() else {
            return Vec::new();
        };
        match lanes.get_mut(endpoint) {
            Some(lane) => {
                lane.pumping = false;
                lane.parked.drain(..).collect()
            }
            None => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_core::clock::ManualClock;
    use switchyard_core::{AppId, MessageId};
    use switchyard_store::Endpoint;

    fn endpoint(disabled: bool, rate_limit: Option<u32>) -> CachedEndpoint {
        limited(disabled, rate_limit, None)
    }

    fn limited(
        disabled: bool,
        rate_limit: Option<u32>,
        concurrency: Option<u32>,
    ) -> CachedEndpoint {
        CachedEndpoint::new(
            Endpoint {
                id: EndpointId::generate_at(1),
                app_id: AppId::generate_at(1),
                uid: None,
                url: switchyard_core::EndpointUrl::parse("https://example.com/hook").unwrap(),
                description: String::new(),
                disabled,
                disabled_reason: None,
                filter_types: None,
                channels: None,
                rate_limit,
                concurrency_limit: concurrency,
                circuit_breaker: None,
                fifo: false,
                metadata: Default::default(),
                headers: Default::default(),
                auth: Default::default(),
                payload_filter: None,
                secret: switchyard_core::signing::EndpointSecret::generate(),
                retired_secrets: Vec::new(),
                created_at: 1,
                updated_at: 1,
            },
            None,
            1,
        )
    }

    /// Lanes whose breaker changes nobody reads.
    fn lanes_on(clock: Arc<ManualClock>) -> Lanes {
        Lanes::new(clock, mpsc::unbounded_channel().0)
    }

    fn task(ep: &CachedEndpoint, n: u64) -> DeliveryTask {
        DeliveryTask {
            app_id: ep.endpoint.app_id.clone(),
            msg_id: MessageId::generate_at(n),
            endpoint_id: ep.endpoint.id.clone(),
            attempts: 0,
            payload: bytes::Bytes::new(),
            forward: None,
            manual: false,
            fifo: false,
        }
    }

    #[test]
    fn a_disabled_endpoint_is_refused() {
        let lanes = lanes_on(Arc::new(ManualClock::starting_now()));
        let ep = endpoint(true, None);
        assert!(matches!(
            lanes.admit(&ep, task(&ep, 1)),
            Admission::Refuse(_, reason) if reason == "endpoint is disabled"
        ));
        let ep = endpoint(false, None);
        assert!(matches!(
            lanes.admit(&ep, task(&ep, 1)),
            Admission::Send(..)
        ));
    }

    /// Over simulated seconds, a rate-limited endpoint gets exactly its
    /// rate (plus the one-off burst); the excess is parked up to a second
    /// of the rate, then deferred one turn apart, and nothing is dropped.
    #[test]
    fn the_rate_limit_holds_and_the_excess_waits() {
        let clock = Arc::new(ManualClock::starting_now());
        let lanes = lanes_on(clock.clone());
        let ep = endpoint(false, Some(20));
        let start = clock.now_ms();
        let (mut sent, mut parked, mut deferred) = (0, 0, Vec::new());
        for n in 0..100 {
            match lanes.admit(&ep, task(&ep, n)) {
                Admission::Send(..) => sent += 1,
                Admission::Parked { start_pump } => {
                    assert_eq!(start_pump, parked == 0);
                    parked += 1;
                }
                Admission::Defer(d) => deferred.push(d.run_at),
                Admission::Refuse(..) => panic!("refused"),
            }
        }
        // Burst 2 (a tenth of a second of 20/s), then 20 parked, 78 deferred.
        assert_eq!((sent, parked, deferred.len()), (2, 20, 78));
        // Deferred ones come back 50 ms apart, after the parked ones.
        assert_eq!(deferred[0], start + 21 * 50);
        assert!(
            deferred.windows(2).all(|w| w[1] - w[0] == 50),
            "{deferred:?}"
        );

        // The pump lets one go per 50 ms of the engine clock.
        let mut pumped = 0;
        for _ in 0..10_000 {
            match lanes.next_ready(&ep, &mut None) {
                PumpStep::Send(..) => pumped += 1,
                PumpStep::Wait(d) => {
                    assert!(d <= Duration::from_millis(50), "{d:?}");
                    clock.advance(d);
                }
                PumpStep::WaitForSlot(_) => panic!("no concurrency limit"),
                PumpStep::Defer(_) => panic!("no breaker"),
                PumpStep::Done => break,
            }
        }
        assert_eq!(pumped, 20);
        let elapsed = clock.now_ms() - start;
        assert!((950..=1_000).contains(&elapsed), "{elapsed} ms");
        assert!(matches!(lanes.next_ready(&ep, &mut None), PumpStep::Done));
    }

    #[test]
    fn endpoints_without_a_rate_limit_keep_no_state() {
        let lanes = lanes_on(Arc::new(ManualClock::starting_now()));
        let ep = endpoint(false, None);
        for n in 0..1_000 {
            assert!(matches!(
                lanes.admit(&ep, task(&ep, n)),
                Admission::Send(..)
            ));
        }
        assert!(lanes.lanes.lock().unwrap().is_empty());
    }

    #[test]
    fn released_lanes_hand_back_what_they_parked() {
        let lanes = lanes_on(Arc::new(ManualClock::starting_now()));
        let ep = endpoint(false, Some(1));
        assert!(matches!(
            lanes.admit(&ep, task(&ep, 1)),
            Admission::Send(..)
        ));
        assert!(matches!(
            lanes.admit(&ep, task(&ep, 2)),
            Admission::Parked { start_pump: true }
        ));
        assert_eq!(lanes.release(&ep.endpoint.id).len(), 1);
        assert!(matches!(lanes.next_ready(&ep, &mut None), PumpStep::Done));
    }

    /// With a concurrency limit of 2, a third delivery waits until one of
    /// the two in flight is over, then goes with the freed permit.
    #[test]
    fn the_concurrency_limit_holds_deliveries_until_a_request_ends() {
        let lanes = lanes_on(Arc::new(ManualClock::starting_now()));
        let ep = limited(false, None, Some(2));
        let mut in_flight = Vec::new();
        for n in 0..2 {
            match lanes.admit(&ep, task(&ep, n)) {
                Admission::Send(_, Some(permit)) => in_flight.push(permit),
                other => panic!("{other:?}"),
            }
        }
        assert!(matches!(
            lanes.admit(&ep, task(&ep, 2)),
            Admission::Parked { start_pump: true }
        ));
        let mut slot = None;
        let PumpStep::WaitForSlot(slots) = lanes.next_ready(&ep, &mut slot) else {
            panic!("the third must wait for a slot");
        };
        assert!(slots.clone().try_acquire_owned().is_err());
        in_flight.pop();
        slot = slots.try_acquire_owned().ok();
        assert!(slot.is_some());
        assert!(matches!(
            lanes.next_ready(&ep, &mut slot),
            PumpStep::Send(_, Some(_))
        ));
        assert!(matches!(lanes.next_ready(&ep, &mut slot), PumpStep::Done));
        // Beyond what memory holds, the rest waits in the store.
        let (mut sent, mut parked, mut deferred) = (Vec::new(), 0, 0);
        for n in 3..(3 + MAX_PARKED as u64 + 6) {
            match lanes.admit(&ep, task(&ep, n)) {
                Admission::Send(_, permit) => sent.push(permit),
                Admission::Parked { .. } => parked += 1,
                Admission::Defer(_) => deferred += 1,
                Admission::Refuse(..) => panic!("refused"),
            }
        }
        // One permit was free; the rest fills memory, then the store.
        assert_eq!((sent.len(), parked, deferred), (1, MAX_PARKED, 5));
    }

    /// Two failures open the breaker: deliveries go back to the store due
    /// at the end of the cool-down (in order, a millisecond apart) with no
    /// attempt; then one probe goes, and its success closes the breaker.
    /// Each state entered is reported to be stored.
    #[test]
    fn the_circuit_breaker_holds_deliveries_and_a_probe_closes_it() {
        use switchyard_core::breaker::CircuitState;
        let clock = Arc::new(ManualClock::starting_now());
        let (tx, mut changes) = mpsc::unbounded_channel();
        let lanes = Lanes::new(clock.clone(), tx);
        let mut ep = endpoint(false, None);
        ep.endpoint.circuit_breaker = Some(BreakerConfig {
            consecutive_failures: 2,
            cooldown_secs: 10,
            ..BreakerConfig::default()
        });
        let id = ep.endpoint.id.clone();
        for n in 0..2 {
            assert!(matches!(
                lanes.admit(&ep, task(&ep, n)),
                Admission::Send(..)
            ));
        }
        lanes.record(&id, clock.now_ms(), false, "HTTP 500");
        assert!(changes.try_recv().is_err());
        lanes.record(&id, clock.now_ms(), false, "HTTP 503");
        let opened = changes.try_recv().unwrap();
        assert_eq!(opened.snapshot.state, CircuitState::Open);
        assert_eq!(opened.snapshot.last_error.as_deref(), Some("HTTP 503"));
        let open_at = clock.now_ms();
        let Admission::Defer(first) = lanes.admit(&ep, task(&ep, 2)) else {
            panic!("an open breaker holds deliveries back");
        };
        let Admission::Defer(second) = lanes.admit(&ep, task(&ep, 3)) else {
            panic!("still open");
        };
        assert_eq!(first.run_at, open_at + 10_000);
        assert_eq!(second.run_at, open_at + 10_001);
        clock.advance(Duration::from_secs(10));
        assert!(matches!(
            lanes.admit(&ep, task(&ep, 4)),
            Admission::Send(..)
        ));
        assert_eq!(
            changes.try_recv().unwrap().snapshot.state,
            CircuitState::HalfOpen
        );
        assert!(
            matches!(lanes.admit(&ep, task(&ep, 5)), Admission::Defer(_)),
            "one probe at a time"
        );
        lanes.record(&id, clock.now_ms(), true, "");
        assert_eq!(
            changes.try_recv().unwrap().snapshot.state,
            CircuitState::Closed
        );
        assert!(matches!(
            lanes.admit(&ep, task(&ep, 6)),
            Admission::Send(..)
        ));
    }

    /// A manual resend waits in memory however full it is (it may have no
    /// row of its own to defer), and the breaker lets it through; removing
    /// a limit lets parked deliveries go at once.
    #[test]
    fn manual_resends_are_never_deferred_and_lifted_limits_free_the_parked() {
        let lanes = lanes_on(Arc::new(ManualClock::starting_now()));
        let ep = endpoint(false, Some(1));
        assert!(matches!(
            lanes.admit(&ep, task(&ep, 0)),
            Admission::Send(..)
        ));
        assert!(matches!(
            lanes.admit(&ep, task(&ep, 1)),
            Admission::Parked { .. }
        ));
        assert!(matches!(
            lanes.admit(&ep, task(&ep, 2)),
            Admission::Defer(_)
        ));
        let mut resend = task(&ep, 3);
        resend.manual = true;
        assert!(matches!(lanes.admit(&ep, resend), Admission::Parked { .. }));
        let mut lifted = ep.endpoint.clone();
        lifted.rate_limit = None;
        let unlimited_ep = CachedEndpoint::new(lifted, None, 1);
        for _ in 0..2 {
            assert!(matches!(
                lanes.next_ready(&unlimited_ep, &mut None),
                PumpStep::Send(..)
            ));
        }
        assert!(matches!(
            lanes.next_ready(&unlimited_ep, &mut None),
            PumpStep::Done
        ));
    }
}
