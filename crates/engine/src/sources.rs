//! Incoming-webhook sources on the request path: compiled sources by ingest
//! token and id, loaded whole and dropped on any change, and the counters of
//! accepted, duplicate and rejected requests, written to the store in
//! batches so a flood of bad signatures costs no database writes per request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use switchyard_core::SourceId;
use switchyard_core::clock::Clock;
use switchyard_core::source::{Plan, compile};
use switchyard_store::{Source, SourceStats, Store, StoreError};

/// A source ready for requests.
pub struct IngestSource {
    pub source: Source,
    pub plan: Plan,
}

struct Index {
    by_key: HashMap<String, Arc<IngestSource>>,
    loaded: Instant,
}

/// A lookup that misses reloads at most this often, so requests with made-up
/// tokens cannot turn into a database query each, while a source just made
/// on another node (whose change notice may still be on its way) is found.
const MISS_RELOAD_INTERVAL: Duration = Duration::from_millis(250);

pub(crate) struct SourceCache {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    inner: RwLock<(u64, Option<Arc<Index>>)>,
    counters: Mutex<HashMap<SourceId, SourceStats>>,
}

/// What became of one request to a source.
pub enum IngestOutcome<'a> {
    Accepted,
    Duplicate,
    Rejected(&'a str),
}

impl SourceCache {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            clock,
            inner: RwLock::new((0, None)),
            counters: Mutex::new(HashMap::new()),
        }
    }

    /// The source whose live token, or id, is `key`.
    pub async fn find(&self, key: &str) -> Result<Option<Arc<IngestSource>>, StoreError> {
        let (generation, index) = match self.inner.read() {
            Ok(g) => (g.0, g.1.clone()),
            Err(_) => (0, None),
        };
        if let Some(index) = &index {
            if let Some(found) = lookup(index, key, self.clock.now_ms()) {
                return Ok(Some(found));
            }
            if index.loaded.elapsed() < MISS_RELOAD_INTERVAL {
                return Ok(None);
            }
        }
        let index = Arc::new(self.load().await?);
        let found = lookup(&index, key, self.clock.now_ms());
        if let Ok(mut g) = self.inner.write()
            && g.0 == generation
        {
            g.1 = Some(index);
        }
        Ok(found)
    }

    async fn load(&self) -> Result<Index, StoreError> {
        let mut by_key = HashMap::new();
        for source in self.store.all_sources().await? {
            let plan = match compile(&source.kind, &source.config, &source.settings) {
                Ok(plan) => plan.with_retired_secrets(
                    source
                        .retired_secrets
                        .iter()
                        .map(|r| (r.secret.as_str(), r.expires_at)),
                ),
                Err(e) => {
                    tracing::error!(source = %source.id, error = %e, "stored source does not compile; its requests are refused");
                    continue;
                }
            };
            let compiled = Arc::new(IngestSource { source, plan });
            let s = &compiled.source;
            by_key.insert(s.id.to_string(), compiled.clone());
            by_key.insert(s.token.clone(), compiled.clone());
            for retired in &s.retired_tokens {
                by_key.insert(retired.secret.clone(), compiled.clone());
            }
        }
        Ok(Index {
            by_key,
            loaded: Instant::now(),
        })
    }

    pub fn invalidate(&self) {
        if let Ok(mut g) = self.inner.write() {
            g.0 += 1;
            g.1 = None;
        }
    }

    pub fn count(&self, source_id: &SourceId, outcome: IngestOutcome<'_>) {
        let Ok(mut counters) = self.counters.lock() else {
            return;
        };
        let entry = counters.entry(source_id.clone()).or_default();
        match outcome {
            IngestOutcome::Accepted => entry.accepted += 1,
            IngestOutcome::Duplicate => entry.duplicates += 1,
            IngestOutcome::Rejected(reason) => {
                entry.rejected += 1;
                entry.last_rejection = Some(reason.to_owned());
                entry.last_rejection_at = Some(self.clock.now_ms());
            }
        }
    }

    /// Counts not yet written, for a stats answer that is up to date.
    pub fn unflushed(&self, source_id: &SourceId) -> SourceStats {
        self.counters
            .lock()
            .ok()
            .and_then(|c| c.get(source_id).cloned())
            .unwrap_or_default()
    }

    /// Writes the counters gathered since the last flush; on failure they
    /// are kept for the next one.
    pub async fn flush(&self) {
        let taken: Vec<(SourceId, SourceStats)> = match self.counters.lock() {
            Ok(mut c) if !c.is_empty() => c.drain().collect(),
            _ => return,
        };
        if let Err(e) = self.store.add_source_stats(taken.clone()).await {
            tracing::warn!(error = %e, "could not write source counters; keeping them");
            if let Ok(mut c) = self.counters.lock() {
                for (id, delta) in taken {
                    merge(c.entry(id).or_default(), &delta);
                }
            }
        }
    }
}

fn lookup(index: &Index, key: &str, now: u64) -> Option<Arc<IngestSource>> {
    let found = index.by_key.get(key)?;
    if found.source.token == key || found.source.id.as_str() == key {
        return Some(found.clone());
    }
    // A retired token: valid until its expiry.
    found
        .source
        .retired_tokens
        .iter()
        .any(|r| r.secret == key && r.expires_at > now)
        .then(|| found.clone())
}

/// Adds `delta` to `total`; the later rejection wins.
pub fn merge(total: &mut SourceStats, delta: &SourceStats) {
    total.accepted += delta.accepted;
    total.duplicates += delta.duplicates;
    total.rejected += delta.rejected;
    if delta.last_rejection_at >= total.last_rejection_at && delta.last_rejection.is_some() {
        total.last_rejection = delta.last_rejection.clone();
        total.last_rejection_at = delta.last_rejection_at;
    }
}

pub(crate) async fn run_flusher(engine: std::sync::Weak<crate::Engine>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let Some(engine) = engine.upgrade() else {
            return;
        };
        engine.sources.flush().await;
    }
}
