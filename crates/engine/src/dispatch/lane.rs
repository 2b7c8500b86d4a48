//! The per-endpoint lane: the one place that decides whether a delivery to
//! an endpoint may be sent now. Every delivery passes through
//! [`Lanes::admit`] after its endpoint is looked up and before it is signed,
//! whether it came from intake, the poller or a manual resend.
//!
//! Today the lane refuses deliveries to disabled endpoints. The per-endpoint
//! controls (rate limit, concurrency limit, circuit breaker, FIFO) are to
//! decide here as well, adding the state they need and a "not yet" answer
//! that puts the delivery back to pending without an attempt. Partition
//! leases give each endpoint one owning node at a time, so the lane's state
//! on that node will be the endpoint's state cluster-wide.

use crate::cache::CachedEndpoint;

/// What the lane decided for one delivery.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Send now.
    Send,
    /// Never send: the delivery fails at once with this reason, since
    /// retrying could not change it.
    Refuse(String),
}

/// The lanes of the endpoints this node is sending to. Stateless until the
/// delivery controls give it something to keep; nothing is counted on the
/// hot path that no decision reads.
pub(crate) struct Lanes;

impl Lanes {
    /// Decides for one delivery bound for `endpoint`.
    pub fn admit(&self, endpoint: &CachedEndpoint) -> Admission {
        // Manual resends included: a disabled endpoint receives nothing.
        if endpoint.endpoint.disabled {
            return Admission::Refuse("endpoint is disabled".to_owned());
        }
        Admission::Send
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_core::{AppId, EndpointId};
    use switchyard_store::Endpoint;

    fn endpoint(disabled: bool) -> CachedEndpoint {
        CachedEndpoint::new(
            Endpoint {
                id: EndpointId::generate_at(1),
                app_id: AppId::generate_at(1),
                uid: None,
                url: switchyard_core::EndpointUrl::parse("https://example.com/hook").unwrap(),
                description: String::new(),
                disabled,
                filter_types: None,
                channels: None,
                rate_limit: None,
                metadata: Default::default(),
                headers: Default::default(),
                payload_filter: None,
                secret: switchyard_core::signing::EndpointSecret::generate(),
                retired_secrets: Vec::new(),
                created_at: 1,
                updated_at: 1,
            },
            1,
        )
    }

    #[test]
    fn a_disabled_endpoint_is_refused() {
        let lanes = Lanes;
        let ep = endpoint(true);
        assert_eq!(
            lanes.admit(&ep),
            Admission::Refuse("endpoint is disabled".into())
        );
        assert_eq!(lanes.admit(&endpoint(false)), Admission::Send);
    }
}
