//! Per-application endpoint cache, used for fan-out at accept time and for
//! URL, headers and secrets at send time. Invalidated on every change.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use switchyard_core::clock::Clock;
use switchyard_core::filter::Filter;
use switchyard_core::signing::EndpointSecret;
use switchyard_core::{AppId, EndpointId};
use switchyard_store::{CircuitSnapshot, Endpoint, Store, StoreError};

pub(crate) struct CachedEndpoint {
    pub endpoint: Endpoint,
    /// The current secret, then retired ones still inside their grace period
    /// at load time (expiry is re-checked when signing).
    pub secrets: Vec<(EndpointSecret, Option<u64>)>,
    pub payload_filter: Option<Filter>,
    /// Deliveries per second the lane lets through: the endpoint's
    /// `rateLimit`, or else its application's.
    pub rate_limit: Option<u32>,
    /// The breaker state last stored for the endpoint, if any (only read
    /// for endpoints with a breaker).
    pub circuit: Option<CircuitSnapshot>,
}

impl CachedEndpoint {
    pub(crate) fn new(endpoint: Endpoint, app_rate_limit: Option<u32>, now: u64) -> Self {
        let mut secrets = vec![(endpoint.secret.clone(), None)];
        for retired in &endpoint.retired_secrets {
            if retired.expires_at > now {
                secrets.push((retired.secret.clone(), Some(retired.expires_at)));
            }
        }
        // The API checks filters before storing them; one that no longer
        // parses is ignored (the endpoint gets everything) rather than
        // silently dropping events.
        let payload_filter = endpoint
            .payload_filter
            .as_ref()
            .and_then(|f| match Filter::parse(f) {
                Ok(f) => Some(f),
                Err(e) => {
                    tracing::error!(endpoint = %endpoint.id, error = %e, "stored payload filter does not parse");
                    None
                }
            });
        Self {
            rate_limit: endpoint.rate_limit.or(app_rate_limit),
            circuit: None,
            endpoint,
            secrets,
            payload_filter,
        }
    }

    pub fn live_secrets(&self, now: u64) -> impl Iterator<Item = &EndpointSecret> {
        self.secrets
            .iter()
            .filter(move |(_, expires)| expires.is_none_or(|at| at > now))
            .map(|(s, _)| s)
    }
}

pub(crate) type AppEndpoints = Arc<Vec<Arc<CachedEndpoint>>>;

#[derive(Clone)]
pub(crate) struct EndpointCache {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    /// The generation lets a load that raced with an invalidation be dropped
    /// instead of caching stale endpoints.
    inner: Arc<RwLock<(u64, HashMap<AppId, AppEndpoints>)>>,
}

impl EndpointCache {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            clock,
            inner: Arc::new(RwLock::new((0, HashMap::new()))),
        }
    }

    pub async fn for_app(&self, app: &AppId) -> Result<AppEndpoints, StoreError> {
        let generation = match self.inner.read() {
            Ok(guard) => {
                if let Some(eps) = guard.1.get(app) {
                    return Ok(eps.clone());
                }
                guard.0
            }
            Err(_) => 0,
        };
        let endpoints = self.store.all_endpoints(Some(app)).await?;
        // Endpoints inherit their application's rate limit; an application
        // change invalidates its endpoints, so this stays current.
        let app_rate_limit = if endpoints.is_empty() {
            None
        } else {
            self.store
                .get_app(app.as_str())
                .await?
                .and_then(|a| a.rate_limit)
        };
        let mut circuits: HashMap<EndpointId, CircuitSnapshot> =
            if endpoints.iter().any(|e| e.circuit_breaker.is_some()) {
                self.store.circuits(app).await?.into_iter().collect()
            } else {
                HashMap::new()
            };
        let now = self.clock.now_ms();
        let loaded: AppEndpoints = Arc::new(
            endpoints
                .into_iter()
                .map(|e| {
                    let circuit = circuits.remove(&e.id);
                    let mut cached = CachedEndpoint::new(e, app_rate_limit, now);
                    cached.circuit = circuit;
                    Arc::new(cached)
                })
                .collect(),
        );
        if let Ok(mut guard) = self.inner.write()
            && guard.0 == generation
        {
            guard.1.insert(app.clone(), loaded.clone());
        }
        Ok(loaded)
    }

    pub async fn get(
        &self,
        app: &AppId,
        id: &EndpointId,
    ) -> Result<Option<Arc<CachedEndpoint>>, StoreError> {
        Ok(self
            .for_app(app)
            .await?
            .iter()
            .find(|e| &e.endpoint.id == id)
            .cloned())
    }

    pub fn invalidate(&self, app: &AppId) {
        if let Ok(mut guard) = self.inner.write() {
            guard.0 += 1;
            guard.1.remove(app);
        }
    }

    pub fn invalidate_all(&self) {
        if let Ok(mut guard) = self.inner.write() {
            guard.0 += 1;
            guard.1.clear();
        }
    }
}

/// Applications by id and by uid, for the message hot path. Cleared whole on
/// any application change (changes are rare; lookups are per message).
#[derive(Default)]
pub(crate) struct AppCache {
    inner: RwLock<(u64, HashMap<String, switchyard_store::Application>)>,
    /// Keys [`AppCache::get_or_absent`] found no application for, until the
    /// next change of any application.
    absent: RwLock<std::collections::HashSet<String>>,
}

impl AppCache {
    pub async fn get(
        &self,
        store: &dyn Store,
        key: &str,
    ) -> Result<Option<switchyard_store::Application>, StoreError> {
        let generation = match self.inner.read() {
            Ok(guard) => {
                if let Some(app) = guard.1.get(key) {
                    return Ok(Some(app.clone()));
                }
                guard.0
            }
            Err(_) => 0,
        };
        let found = store.get_app(key).await?;
        if let Some(app) = &found
            && let Ok(mut guard) = self.inner.write()
            && guard.0 == generation
        {
            guard.1.insert(key.to_owned(), app.clone());
        }
        Ok(found)
    }

    /// As [`AppCache::get`], remembering that there is none: for the
    /// operational application, looked up for every operational event
    /// whether or not anyone configured an operational endpoint. Its
    /// creation anywhere clears the cache (every node is told).
    pub async fn get_or_absent(
        &self,
        store: &dyn Store,
        key: &str,
    ) -> Result<Option<switchyard_store::Application>, StoreError> {
        if self.absent.read().is_ok_and(|a| a.contains(key)) {
            return Ok(None);
        }
        let generation = self.inner.read().map_or(0, |g| g.0);
        let found = self.get(store, key).await?;
        if found.is_none()
            && self.inner.read().map_or(0, |g| g.0) == generation
            && let Ok(mut absent) = self.absent.write()
        {
            absent.insert(key.to_owned());
        }
        Ok(found)
    }

    pub fn clear(&self) {
        if let Ok(mut guard) = self.inner.write() {
            guard.0 += 1;
            guard.1.clear();
        }
        if let Ok(mut absent) = self.absent.write() {
            absent.clear();
        }
    }
}
