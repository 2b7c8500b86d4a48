//! The per-endpoint lane: the one place that decides whether a delivery to
//! an endpoint may be sent now. Every delivery passes through
//! [`Lanes::admit`] after its endpoint is looked up and before it is signed,
//! whether it came from intake, the poller or a manual resend.
//!
//! Today the lane refuses deliveries to disabled endpoints and counts each
//! endpoint's deliveries in flight. The per-endpoint controls (rate limit,
//! concurrency limit, circuit breaker, FIFO) are to decide here as well,
//! adding a "not yet" answer that puts the delivery back to pending without
//! an attempt. Partition leases give each endpoint one owning node at a
//! time, so the lane's state on that node is the endpoint's state
//! cluster-wide.

use crate::cache::CachedEndpoint;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use switchyard_core::EndpointId;

/// What the lane decided for one delivery.
pub(crate) enum Admission {
    /// Send now; the pass holds the endpoint's in-flight count until dropped
    /// (after the outcome is handed to the recorder).
    Send(LanePass),
    /// Never send: the delivery fails at once with this reason, since
    /// retrying could not change it.
    Refuse(String),
}

/// The lanes of the endpoints this node is sending to.
#[derive(Default)]
pub(crate) struct Lanes {
    /// Only endpoints with a delivery in flight have an entry, so the map is
    /// bounded by the global in-flight cap, not by the number of endpoints.
    in_flight: Arc<Mutex<HashMap<EndpointId, usize>>>,
}

impl Lanes {
    /// Decides for one delivery bound for `endpoint`.
    pub fn admit(&self, endpoint: &CachedEndpoint) -> Admission {
        // Manual resends included: a disabled endpoint receives nothing.
        if endpoint.endpoint.disabled {
            return Admission::Refuse("endpoint is disabled".to_owned());
        }
        Admission::Send(self.enter(&endpoint.endpoint.id))
    }

    /// Deliveries to `endpoint` between admission and their recorded outcome.
    #[cfg(test)]
    pub fn in_flight(&self, endpoint: &EndpointId) -> usize {
        self.in_flight
            .lock()
            .map(|m| m.get(endpoint).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    fn enter(&self, endpoint: &EndpointId) -> LanePass {
        if let Ok(mut map) = self.in_flight.lock() {
            *map.entry(endpoint.clone()).or_insert(0) += 1;
        }
        LanePass {
            lanes: self.in_flight.clone(),
            endpoint: endpoint.clone(),
        }
    }
}

/// A delivery's place in its endpoint's lane; leaving it (drop) frees the place.
pub(crate) struct LanePass {
    lanes: Arc<Mutex<HashMap<EndpointId, usize>>>,
    endpoint: EndpointId,
}

impl Drop for LanePass {
    fn drop(&mut self) {
        let Ok(mut map) = self.lanes.lock() else {
            return;
        };
        if let Some(n) = map.get_mut(&self.endpoint) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.endpoint);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_core::AppId;
    use switchyard_store::Endpoint;

    fn endpoint(disabled: bool) -> CachedEndpoint {
        CachedEndpoint::new(
            Endpoint {
                id: EndpointId::generate_at(1),
                app_id: AppId::generate_at(1),
                uid: None,
                url: "https://example.com/hook".into(),
                description: String::new(),
                disabled,
                filter_types: None,
                channels: None,
                rate_limit: None,
                metadata: Default::default(),
                headers: Default::default(),
                payload_filter: None,
                secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
                retired_secrets: Vec::new(),
                created_at: 1,
                updated_at: 1,
            },
            1,
        )
    }

    #[test]
    fn a_disabled_endpoint_is_refused() {
        let lanes = Lanes::default();
        let ep = endpoint(true);
        assert!(matches!(lanes.admit(&ep), Admission::Refuse(r) if r == "endpoint is disabled"));
        assert_eq!(lanes.in_flight(&ep.endpoint.id), 0);
    }

    #[test]
    fn passes_count_deliveries_in_flight_until_dropped() {
        let lanes = Lanes::default();
        let ep = endpoint(false);
        let id = &ep.endpoint.id;
        let (Admission::Send(first), Admission::Send(second)) =
            (lanes.admit(&ep), lanes.admit(&ep))
        else {
            panic!("an enabled endpoint is admitted");
        };
        assert_eq!(lanes.in_flight(id), 2);
        drop(first);
        assert_eq!(lanes.in_flight(id), 1);
        drop(second);
        assert_eq!(lanes.in_flight(id), 0);
        // Idle endpoints leave no entry behind.
        assert!(lanes.in_flight.lock().unwrap().is_empty());
    }
}
