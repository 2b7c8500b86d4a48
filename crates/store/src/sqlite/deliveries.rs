//! Deliveries on SQLite: the dispatch queue and views of it.

use super::*;
use rusqlite::params;
use switchyard_core::{id_floor_for_time, partition_of};

/// Makes the endpoint's (?1) first FIFO delivery waiting behind another due
/// at ?2.
const PROMOTE_NEXT_FIFO: &str = "UPDATE deliveries SET next_attempt_at = ?2
     WHERE endpoint_id = ?1 AND msg_id = (
       SELECT msg_id FROM deliveries
       WHERE fifo = 1 AND status IN (1, 3) AND status = 1 AND next_attempt_at IS NULL
         AND endpoint_id = ?1
       ORDER BY msg_id LIMIT 1)";

#[async_trait]
impl DeliveryStore for SqliteStore {
    async fn claim_due(
        &self,
        now_ms: u64,
        limit: usize,
        partitions: &[u16],
    ) -> Result<Vec<DeliveryTask>> {
        if partitions.is_empty() {
            return Ok(Vec::new());
        }
        let partitions = json_text(&partitions)?;
        self.write_fast(move |conn| {
            let mut tasks = TaskReader::default();
            let due = query_all(
                conn,
                "SELECT d.msg_id, d.endpoint_id, d.app_id, d.attempts, d.manual, d.fifo, m.payload, m.forward
                 FROM deliveries d JOIN messages m ON m.app_id = d.app_id AND m.id = d.msg_id
                 WHERE d.status = 1 AND d.next_attempt_at <= ?
                   AND d.partition IN (SELECT value FROM json_each(?))
                   AND (d.fifo = 0 OR NOT EXISTS (
                     SELECT 1 FROM deliveries e
                     WHERE e.fifo = 1 AND e.status IN (1, 3) AND e.endpoint_id = d.endpoint_id
                       AND (e.msg_id < d.msg_id OR e.status = 3)))
                 ORDER BY d.next_attempt_at LIMIT ?",
                params![now_ms as i64, partitions, limit as i64],
                |r| tasks.read(r),
            )?;
            let mut mark = conn.prepare_cached(
                "UPDATE deliveries SET status = 3, updated_at = ? WHERE msg_id = ? AND endpoint_id = ?",
            )?;
            for task in &due {
                mark.execute(params![
                    now_ms as i64,
                    task.msg_id.as_str(),
                    task.endpoint_id.as_str()
                ])?;
            }
            Ok(due)
        })
        .await
    }

    async fn record_outcomes(&self, outcomes: Vec<Outcome>) -> Result<()> {
        self.write_fast(move |conn| {
            let mut insert = conn.prepare_cached(&format!(
                "INSERT INTO attempts ({}) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11)",
                ATTEMPT_COLS.replace("a.", "")
            ))?;
            let mut update = conn.prepare_cached(
                "UPDATE deliveries SET status = ?3, attempts = attempts + ?4, next_attempt_at = ?5, manual = 0, updated_at = ?6, held = 0
                 WHERE msg_id = ?1 AND endpoint_id = ?2",
            )?;
            let mut promote = conn.prepare_cached(PROMOTE_NEXT_FIFO)?;
            for o in &outcomes {
                let a = &o.attempt;
                insert.execute(params![
                    a.id.as_str(),
                    a.app_id.as_str(),
                    a.msg_id.as_str(),
                    a.endpoint_id.as_str(),
                    a.url.as_deref().unwrap_or(""),
                    a.status as u8,
                    a.response_status_code,
                    a.response,
                    a.response_duration_ms as i64,
                    a.manual,
                    a.created_at as i64
                ])?;
                update.execute(params![
                    a.msg_id.as_str(),
                    a.endpoint_id.as_str(),
                    o.delivery_status as u8,
                    if a.manual { 0 } else { 1 },
                    o.next_attempt_at.map(|t| t as i64),
                    a.created_at as i64
                ])?;
                if finishes_fifo(o) {
                    promote.execute(params![a.endpoint_id.as_str(), a.created_at as i64])?;
                }
            }
            Ok(())
        })
        .await
    }

    async fn repair_fifo_heads(&self, now_ms: u64) -> Result<u64> {
        // The same repair as PostgreSQL's, which SQLite's single writer
        // makes needless but keeps the backends alike: one index probe per
        // FIFO endpoint with open deliveries (a skip scan of
        // deliveries_fifo_open).
        self.write(move |conn| {
            Ok(conn.execute(
                "WITH RECURSIVE heads(ep, msg) AS (
                   SELECT * FROM (SELECT endpoint_id, msg_id FROM deliveries
                                  WHERE fifo = 1 AND status IN (1, 3)
                                  ORDER BY endpoint_id, msg_id LIMIT 1)
                   UNION ALL
                   SELECT (SELECT endpoint_id FROM deliveries
                           WHERE fifo = 1 AND status IN (1, 3) AND endpoint_id > heads.ep
                           ORDER BY endpoint_id, msg_id LIMIT 1),
                          (SELECT msg_id FROM deliveries
                           WHERE fifo = 1 AND status IN (1, 3) AND endpoint_id > heads.ep
                           ORDER BY endpoint_id, msg_id LIMIT 1)
                   FROM heads WHERE heads.ep IS NOT NULL)
                 UPDATE deliveries SET next_attempt_at = ?1, updated_at = ?1
                 WHERE status = 1 AND next_attempt_at IS NULL
                   AND (endpoint_id, msg_id) IN (SELECT ep, msg FROM heads WHERE ep IS NOT NULL)",
                params![now_ms as i64],
            )? as u64)
        })
        .await
    }

    async fn defer(&self, deferrals: Vec<Deferral>, now_ms: u64) -> Result<()> {
        if deferrals.is_empty() {
            return Ok(());
        }
        self.write_fast(move |conn| {
            let mut update = conn.prepare_cached(
                "UPDATE deliveries SET status = 1, next_attempt_at = ?3, updated_at = ?4, held = 1
                 WHERE msg_id = ?1 AND endpoint_id = ?2 AND status = 3",
            )?;
            for d in &deferrals {
                update.execute(params![
                    d.msg_id.as_str(),
                    d.endpoint_id.as_str(),
                    d.run_at as i64,
                    now_ms as i64
                ])?;
            }
            Ok(())
        })
        .await
    }

    async fn release_held(&self, ep: &EndpointId, now_ms: u64) -> Result<u64> {
        let ep = ep.to_string();
        self.write(move |conn| {
            Ok(conn.execute(
                "UPDATE deliveries SET next_attempt_at = ?2, updated_at = ?2, held = 0
                 WHERE endpoint_id = ?1 AND status = 1 AND held = 1 AND next_attempt_at > ?2",
                params![ep, now_ms as i64],
            )? as u64)
        })
        .await
    }

    async fn due_now(&self, ep: &EndpointId, now_ms: u64) -> Result<u64> {
        let ep = ep.to_string();
        self.write(move |conn| {
            Ok(conn.execute(
                "UPDATE deliveries SET next_attempt_at = ?2, updated_at = ?2
                 WHERE endpoint_id = ?1 AND status = 1 AND next_attempt_at > ?2",
                params![ep, now_ms as i64],
            )? as u64)
        })
        .await
    }

    async fn requeue(
        &self,
        app: &AppId,
        msg: &MessageId,
        ep: &EndpointId,
        now_ms: u64,
        fifo: bool,
    ) -> Result<bool> {
        let (app, msg, ep) = (app.to_string(), msg.to_string(), ep.clone());
        self.write(move |conn| {
            conn.prepare_cached(
                "INSERT INTO deliveries (msg_id, endpoint_id, app_id, status, attempts, next_attempt_at, partition, manual, updated_at, fifo)
                 VALUES (?1, ?2, ?3, 1, 0, ?4, ?5, 1, ?4, ?6)
                 ON CONFLICT (msg_id, endpoint_id) DO UPDATE SET status = 1, next_attempt_at = ?4,
                   manual = 1, updated_at = ?4
                 WHERE status <> 3",
            )?
            .execute(params![msg, ep.as_str(), app, now_ms as i64, partition_of(&ep), fifo])
            .map(|changed| changed > 0)
            .map_err(StoreError::from)
        })
        .await
    }

    async fn recover(
        &self,
        ep: &EndpointId,
        since_ms: u64,
        until_ms: Option<u64>,
        now_ms: u64,
    ) -> Result<u64> {
        let ep = ep.to_string();
        let low = id_floor_for_time(MessageId::PREFIX, since_ms);
        let high = id_floor_for_time(MessageId::PREFIX, until_ms.unwrap_or(now_ms + 1));
        self.write(move |conn| {
            Ok(conn.execute(
                "UPDATE deliveries SET status = 1, attempts = 0, next_attempt_at = ?4, updated_at = ?4
                 WHERE endpoint_id = ?1 AND status = 2 AND msg_id >= ?2 AND msg_id < ?3",
                params![ep, low, high, now_ms as i64],
            )? as u64)
        })
        .await
    }

    async fn endpoint_stats(&self, ep: &EndpointId) -> Result<EndpointStats> {
        let ep = ep.to_string();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT status, COUNT(*) FROM deliveries WHERE endpoint_id = ? GROUP BY status",
            )?;
            let mut rows = stmt.query([ep])?;
            let mut stats = EndpointStats::default();
            while let Some(row) = rows.next()? {
                stats.set(row.status("status")?, row.get::<_, i64>(1)?.max(0) as u64);
            }
            Ok(stats)
        })
        .await
    }

    async fn deliveries_of_message(
        &self,
        app: &AppId,
        msg: &MessageId,
        page: &PageRequest,
    ) -> Result<Page<DeliveryView>> {
        let q = query::deliveries_of_message(app, msg, page);
        let keys = self.keys.clone();
        let rows = self
            .list(q, move |r| destination_from_row(r, &keys))
            .await?;
        Ok(paginate(rows, page.limit, |d| d.endpoint_id.to_string()))
    }

    async fn deliveries_of_endpoint(
        &self,
        ep: &EndpointId,
        filter: &MessageFilter,
        status: Option<u8>,
    ) -> Result<Page<DeliveryView>> {
        let with_content = filter.with_content;
        let q = query::deliveries_of_endpoint(ep, filter, status);
        let rows = self
            .list(q, move |row| attempted_message_from_row(row, with_content))
            .await?;
        Ok(paginate(rows, filter.page.limit, |d| d.msg_id.to_string()))
    }
}
