//! Housekeeping on every node: forgets expired idempotency records and
//! deletes messages finished longer ago than the retention period.

use std::sync::Arc;
use std::time::Duration;
use switchyard_store::Store;

/// How long an `Idempotency-Key` is remembered (Svix: 24 hours).
pub const IDEMPOTENCY_WINDOW: Duration = Duration::from_secs(24 * 3600);
/// How often housekeeping runs.
const INTERVAL: Duration = Duration::from_secs(600);
/// Messages deleted per transaction when purging: small enough that intake
/// sharing the writer waits milliseconds, not seconds.
const PURGE_BATCH: usize = 1_000;

/// Runs forever: every ten minutes, one pass (the first at once).
/// `retention`: `None` keeps messages for ever.
pub(crate) async fn run(
    store: Arc<dyn Store>,
    retention: Option<Duration>,
    clock: Arc<dyn switchyard_core::clock::Clock>,
) {
    let mut tick = tokio::time::interval(INTERVAL);
    loop {
        tick.tick().await;
        pass(store.as_ref(), retention, clock.now_ms()).await;
    }
}

/// How long an expired or revoked token is kept (listed as expired).
const EXPIRED_TOKENS_KEPT: Duration = Duration::from_secs(30 * 86_400);

async fn pass(store: &dyn Store, retention: Option<Duration>, now: u64) {
    let cutoff = now.saturating_sub(IDEMPOTENCY_WINDOW.as_millis() as u64);
    if let Err(e) = store.purge_idempotency(cutoff).await {
        tracing::warn!(error = %e, "purging idempotency records failed");
    }
    // Expired tokens stay listed (as expired) for a while, then go.
    let cutoff = now.saturating_sub(EXPIRED_TOKENS_KEPT.as_millis() as u64);
    if let Err(e) = store.purge_tokens(cutoff).await {
        tracing::warn!(error = %e, "purging expired tokens failed");
    }
    // The rejected log: kept as long as messages, and at most
    // REJECTIONS_KEPT per source (a flood of poison stays bounded).
    let rejections_cutoff = retention.map(|r| now.saturating_sub(r.as_millis() as u64));
    if let Err(e) = store
        .trim_broker_rejections(rejections_cutoff, crate::REJECTIONS_KEPT)
        .await
    {
        tracing::warn!(error = %e, "trimming the broker rejected log failed");
    }
    let Some(retention) = retention else {
        return;
    };
    let cutoff = now.saturating_sub(retention.as_millis() as u64);
    let mut purged = 0;
    loop {
        match store.purge_messages(cutoff, PURGE_BATCH).await {
            Ok(n) => {
                purged += n;
                if n < PURGE_BATCH as u64 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "purging messages past retention failed");
                break;
            }
        }
    }
    if purged > 0 {
        tracing::info!(messages = purged, "purged messages past retention");
    }
}
