//! Deliveries on PostgreSQL: the dispatch queue and views of it.

use super::*;
use std::collections::HashMap;
use switchyard_core::{id_floor_for_time, partition_of};

#[async_trait]
impl DeliveryStore for PgStore {
    async fn claim_due(
        &self,
        now_ms: u64,
        limit: usize,
        partitions: &[u16],
    ) -> Result<Vec<DeliveryTask>> {
        if partitions.is_empty() {
            return Ok(Vec::new());
        }
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "WITH due AS (
                   SELECT msg_id, endpoint_id FROM deliveries d
                   WHERE status = 1 AND next_attempt_at <= $1 AND partition = ANY($3)
                     AND (NOT fifo OR NOT EXISTS (
                       SELECT 1 FROM deliveries e
                       WHERE e.fifo AND e.status IN (1, 3) AND e.endpoint_id = d.endpoint_id
                         AND (e.msg_id < d.msg_id OR e.status = 3)))
                   ORDER BY next_attempt_at LIMIT $2 FOR UPDATE SKIP LOCKED),
                 claimed AS (
                   UPDATE deliveries d SET status = 3, updated_at = $1 FROM due
                   WHERE d.msg_id = due.msg_id AND d.endpoint_id = due.endpoint_id
                   RETURNING d.msg_id, d.endpoint_id, d.app_id, d.attempts, d.manual, d.fifo)
                 SELECT c.msg_id, c.endpoint_id, c.app_id, c.attempts, c.manual, c.fifo,
                   m.payload, m.forward
                 FROM claimed c LEFT JOIN messages m ON m.app_id = c.app_id AND m.id = c.msg_id",
            )
            .await?;
        let rows = client
            .query(
                &stmt,
                &[
                    &(now_ms as i64),
                    &(limit as i64),
                    &partitions_param(partitions),
                ],
            )
            .await?;
        let mut tasks = TaskReader::default();
        rows.iter().map(|r| tasks.read(r)).collect()
    }

    async fn record_outcomes(&self, outcomes: Vec<Outcome>) -> Result<()> {
        if outcomes.is_empty() {
            return Ok(());
        }
        let mut a_ids = Vec::with_capacity(outcomes.len());
        let mut a_apps = Vec::with_capacity(outcomes.len());
        let mut a_msgs = Vec::with_capacity(outcomes.len());
        let mut a_eps = Vec::with_capacity(outcomes.len());
        let mut a_urls = Vec::with_capacity(outcomes.len());
        let mut a_status = Vec::with_capacity(outcomes.len());
        let mut a_codes = Vec::with_capacity(outcomes.len());
        let mut a_responses = Vec::with_capacity(outcomes.len());
        let mut a_durations = Vec::with_capacity(outcomes.len());
        let mut a_manual = Vec::with_capacity(outcomes.len());
        let mut a_at = Vec::with_capacity(outcomes.len());
        // One update per delivery, as if the batch's outcomes were applied in
        // order: the last decides the state, every scheduled one counts.
        let mut updates: HashMap<(&str, &str), (i16, i32, Option<i64>, i64)> = HashMap::new();
        for o in &outcomes {
            let a = &o.attempt;
            a_ids.push(a.id.as_str());
            a_apps.push(a.app_id.as_str());
            a_msgs.push(a.msg_id.as_str());
            a_eps.push(a.endpoint_id.as_str());
            a_urls.push(a.url.as_deref().unwrap_or(""));
            a_status.push(a.status as i16);
            a_codes.push(a.response_status_code);
            a_responses.push(a.response.as_str());
            a_durations.push(a.response_duration_ms as i64);
            a_manual.push(a.manual);
            a_at.push(a.created_at as i64);
            let counted = if a.manual { 0 } else { 1 };
            let entry = updates
                .entry((a.msg_id.as_str(), a.endpoint_id.as_str()))
                .or_insert((0, 0, None, 0));
            *entry = (
                o.delivery_status as i16,
                entry.1 + counted,
                o.next_attempt_at.map(|t| t as i64),
                a.created_at as i64,
            );
        }
        let mut u_msgs = Vec::with_capacity(updates.len());
        let mut u_eps = Vec::with_capacity(updates.len());
        let mut u_status = Vec::with_capacity(updates.len());
        let mut u_counted = Vec::with_capacity(updates.len());
        let mut u_next = Vec::with_capacity(updates.len());
        let mut u_at = Vec::with_capacity(updates.len());
        for ((msg, ep), (status, counted, next, at)) in updates {
            u_msgs.push(msg);
            u_eps.push(ep);
            u_status.push(status);
            u_counted.push(counted);
            u_next.push(next);
            u_at.push(at);
        }
        // FIFO deliveries that finish make the next one waiting behind each
        // due, in the same transaction (lost, it would wait forever).
        let promote: Vec<&str> = outcomes
            .iter()
            .filter(|o| finishes_fifo(o))
            .map(|o| o.attempt.endpoint_id.as_str())
            .collect();
        let now = outcomes
            .iter()
            .map(|o| o.attempt.created_at)
            .max()
            .unwrap_or(0) as i64;
        // One statement (one round trip, one commit) when none does.
        let mut client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "WITH a AS (
                   INSERT INTO attempts ({})
                   SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int2[],
                                        $7::int4[], $8::text[], $9::int8[], $10::bool[], $11::int8[]))
                 UPDATE deliveries d SET status = u.s, attempts = d.attempts + u.c, next_attempt_at = u.n,
                   manual = FALSE, updated_at = u.t, held = FALSE
                 FROM UNNEST($12::text[], $13::text[], $14::int2[], $15::int4[], $16::int8[], $17::int8[]) AS u(m, e, s, c, n, t)
                 WHERE d.msg_id = u.m AND d.endpoint_id = u.e",
                ATTEMPT_COLS.replace("a.", "")
            ))
            .await?;
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 17] = [
            &a_ids,
            &a_apps,
            &a_msgs,
            &a_eps,
            &a_urls,
            &a_status,
            &a_codes,
            &a_responses,
            &a_durations,
            &a_manual,
            &a_at,
            &u_msgs,
            &u_eps,
            &u_status,
            &u_counted,
            &u_next,
            &u_at,
        ];
        if promote.is_empty() {
            client.execute(&stmt, &params).await?;
            return Ok(());
        }
        let tx = client.transaction().await?;
        tx.execute(&stmt, &params).await?;
        let stmt = tx
            .prepare_cached(
                "UPDATE deliveries d SET next_attempt_at = $2
                 FROM (SELECT e.ep, (SELECT b.msg_id FROM deliveries b
                                     WHERE b.fifo AND b.status IN (1, 3) AND b.status = 1
                                       AND b.next_attempt_at IS NULL AND b.endpoint_id = e.ep
                                     ORDER BY b.msg_id LIMIT 1) AS msg
                       FROM UNNEST($1::text[]) AS e(ep)) n
                 WHERE d.endpoint_id = n.ep AND d.msg_id = n.msg",
            )
            .await?;
        tx.execute(&stmt, &[&promote, &now]).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn repair_fifo_heads(&self, now_ms: u64) -> Result<u64> {
        let client = self.client().await?;
        // One index probe per FIFO endpoint with open deliveries (a skip
        // scan of deliveries_fifo_open), however long their queues are.
        let stmt = client
            .prepare_cached(
                "WITH RECURSIVE heads AS (
                   (SELECT endpoint_id, msg_id FROM deliveries
                    WHERE fifo AND status IN (1, 3) ORDER BY endpoint_id, msg_id LIMIT 1)
                   UNION ALL
                   SELECT n.endpoint_id, n.msg_id FROM heads h, LATERAL (
                     SELECT endpoint_id, msg_id FROM deliveries
                     WHERE fifo AND status IN (1, 3) AND endpoint_id > h.endpoint_id
                     ORDER BY endpoint_id, msg_id LIMIT 1) n)
                 UPDATE deliveries d SET next_attempt_at = $1, updated_at = $1
                 FROM heads
                 WHERE d.endpoint_id = heads.endpoint_id AND d.msg_id = heads.msg_id
                   AND d.status = 1 AND d.next_attempt_at IS NULL",
            )
            .await?;
        Ok(client.execute(&stmt, &[&(now_ms as i64)]).await?)
    }

    async fn defer(&self, deferrals: Vec<Deferral>, now_ms: u64) -> Result<()> {
        if deferrals.is_empty() {
            return Ok(());
        }
        let msgs: Vec<&str> = deferrals.iter().map(|d| d.msg_id.as_str()).collect();
        let eps: Vec<&str> = deferrals.iter().map(|d| d.endpoint_id.as_str()).collect();
        let runs: Vec<i64> = deferrals.iter().map(|d| d.run_at as i64).collect();
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "UPDATE deliveries d SET status = 1, next_attempt_at = u.n, updated_at = $4, held = TRUE
                 FROM UNNEST($1::text[], $2::text[], $3::int8[]) AS u(m, e, n)
                 WHERE d.msg_id = u.m AND d.endpoint_id = u.e AND d.status = 3",
            )
            .await?;
        client
            .execute(&stmt, &[&msgs, &eps, &runs, &(now_ms as i64)])
            .await?;
        Ok(())
    }

    async fn release_held(&self, ep: &EndpointId, now_ms: u64) -> Result<u64> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "UPDATE deliveries SET next_attempt_at = $2, updated_at = $2, held = FALSE
                 WHERE endpoint_id = $1 AND status = 1 AND held AND next_attempt_at > $2",
            )
            .await?;
        Ok(client
            .execute(&stmt, &[&ep.as_str(), &(now_ms as i64)])
            .await?)
    }

    async fn due_now(&self, ep: &EndpointId, now_ms: u64) -> Result<u64> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "UPDATE deliveries SET next_attempt_at = $2, updated_at = $2
                 WHERE endpoint_id = $1 AND status = 1 AND next_attempt_at > $2",
            )
            .await?;
        Ok(client
            .execute(&stmt, &[&ep.as_str(), &(now_ms as i64)])
            .await?)
    }

    async fn requeue(
        &self,
        app: &AppId,
        msg: &MessageId,
        ep: &EndpointId,
        now_ms: u64,
        fifo: bool,
    ) -> Result<bool> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "INSERT INTO deliveries (msg_id, endpoint_id, app_id, status, attempts, next_attempt_at, partition, manual, updated_at, fifo)
                 VALUES ($1, $2, $3, 1, 0, $4, $5, TRUE, $4, $6)
                 ON CONFLICT (msg_id, endpoint_id) DO UPDATE SET status = 1, next_attempt_at = $4,
                   manual = TRUE, updated_at = $4
                 WHERE deliveries.status <> 3",
            )
            .await?;
        Ok(client
            .execute(
                &stmt,
                &[
                    &msg.as_str(),
                    &ep.as_str(),
                    &app.as_str(),
                    &(now_ms as i64),
                    &i32::from(partition_of(ep)),
                    &fifo,
                ],
            )
            .await?
            > 0)
    }

    async fn recover(
        &self,
        ep: &EndpointId,
        since_ms: u64,
        until_ms: Option<u64>,
        now_ms: u64,
    ) -> Result<u64> {
        let low = id_floor_for_time(MessageId::PREFIX, since_ms);
        let high = id_floor_for_time(MessageId::PREFIX, until_ms.unwrap_or(now_ms + 1));
        let client = self.client().await?;
        Ok(client
            .execute(
                "UPDATE deliveries SET status = 1, attempts = 0, next_attempt_at = $4, updated_at = $4
                 WHERE endpoint_id = $1 AND status = 2 AND msg_id >= $2 AND msg_id < $3",
                &[&ep.as_str(), &low, &high, &(now_ms as i64)],
            )
            .await?)
    }

    async fn endpoint_stats(&self, ep: &EndpointId) -> Result<EndpointStats> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT status, COUNT(*) AS n FROM deliveries WHERE endpoint_id = $1 GROUP BY status",
                &[&ep.as_str()],
            )
            .await?;
        let mut stats = EndpointStats::default();
        for row in rows {
            stats.set(row.status("status")?, row.ms("n")?);
        }
        Ok(stats)
    }

    async fn deliveries_of_message(
        &self,
        app: &AppId,
        msg: &MessageId,
        page: &PageRequest,
    ) -> Result<Page<DeliveryView>> {
        let q = query::deliveries_of_message(app, msg, page);
        let rows = self
            .list(q, |r| destination_from_row(r, &self.keys))
            .await?;
        Ok(paginate(rows, page.limit, |d| d.endpoint_id.to_string()))
    }

    async fn deliveries_of_endpoint(
        &self,
        ep: &EndpointId,
        filter: &MessageFilter,
        status: Option<u8>,
    ) -> Result<Page<DeliveryView>> {
        let q = query::deliveries_of_endpoint(ep, filter, status);
        let rows = self
            .list(q, |row| {
                attempted_message_from_row(row, filter.with_content)
            })
            .await?;
        Ok(paginate(rows, filter.page.limit, |d| d.msg_id.to_string()))
    }
}
