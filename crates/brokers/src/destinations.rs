//! Broker destinations: endpoints whose URL names a broker instead of an
//! HTTP server. Each broker's destination lives in its folder and is added
//! here with one line; the binary hands [`all`] to the engine
//! (`EngineConfig::destinations`), which lets endpoint URLs use their
//! schemes and delivers to them like to HTTP endpoints (filters, retries,
//! attempt log, resend and recover).

#[cfg(feature = "redis")]
use std::sync::Arc;
use switchyard_engine::destination::Destinations;

/// Every broker destination compiled in, by the schemes it serves.
pub fn all() -> Destinations {
    #[allow(unused_mut)]
    let mut all = Destinations::default();
    #[cfg(feature = "redis")]
    all.register(
        crate::redis::destination::SCHEMES,
        Arc::new(crate::redis::destination::RedisStreamDestination::default()),
    );
    all
}
