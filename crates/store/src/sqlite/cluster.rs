//! Cluster membership and partition leases on SQLite. One process uses a
//! file (see `lock_database`), so there is no other node to tell of events;
//! the lease bookkeeping is still the same as on PostgreSQL, so both
//! backends pass one conformance suite.

use super::*;
use rusqlite::{Connection, params};

#[async_trait]
impl ClusterStore for SqliteStore {
    async fn lease(&self, request: &LeaseRequest) -> Result<LeaseGrant> {
        let r = request.clone();
        self.write(move |conn| {
            let now = r.now_ms as i64;
            let expires = (r.now_ms + r.ttl_ms) as i64;
            conn.prepare_cached(
                "INSERT INTO nodes (node_id, address, started_at, heartbeat_at) VALUES (?1, ?2, ?3, ?3)
                 ON CONFLICT (node_id) DO UPDATE SET address = ?2, heartbeat_at = ?3,
                   started_at = CASE WHEN ?4 THEN ?3 ELSE started_at END",
            )?
            .execute(params![r.node_id, r.address, now, r.fresh])?;
            let live_nodes: u32 = conn
                .prepare_cached("SELECT COUNT(*) FROM nodes WHERE heartbeat_at >= ?")?
                .query_row([now - r.ttl_ms as i64], |row| row.get(0))?;
            let fair = fair_share(live_nodes);
            let mut owned = column_u16(
                conn,
                "UPDATE leases SET expires_at = ?2,
                   acquired_at = CASE WHEN ?3 THEN ?4 ELSE acquired_at END
                 WHERE node_id = ?1 RETURNING partition",
                params![r.node_id, expires, r.fresh, now],
            )?;
            let mut acquired = if r.fresh { owned.clone() } else { Vec::new() };
            if owned.len() < fair {
                let taken = column_u16(
                    conn,
                    "UPDATE leases SET node_id = ?1, expires_at = ?2, acquired_at = ?3
                     WHERE partition IN (
                       SELECT partition FROM leases WHERE node_id IS NULL OR expires_at < ?3
                       ORDER BY partition LIMIT ?4)
                     RETURNING partition",
                    params![r.node_id, expires, now, (fair - owned.len()) as i64],
                )?;
                owned.extend_from_slice(&taken);
                acquired.extend(taken);
            }
            if !acquired.is_empty() {
                conn.prepare_cached(
                    "UPDATE deliveries SET status = 1 WHERE status = 3
                     AND partition IN (SELECT value FROM json_each(?))",
                )?
                .execute([json_text(&acquired)?])?;
            }
            let stranded = conn
                .prepare_cached(
                    "UPDATE deliveries SET status = 1 WHERE status = 3
                     AND partition IN (SELECT partition FROM leases WHERE node_id = ?1)
                     AND updated_at < (SELECT l.acquired_at FROM leases l
                                       WHERE l.partition = deliveries.partition) - ?2",
                )?
                .execute(params![r.node_id, lease_margin_ms(r.ttl_ms) as i64])?;
            owned.sort_unstable();
            acquired.sort_unstable();
            Ok(LeaseGrant {
                surplus: surplus_of(&owned, fair),
                owned,
                acquired,
                stranded,
                live_nodes,
            })
        })
        .await
    }

    async fn release_partitions(&self, node_id: &str, partitions: &[u16]) -> Result<()> {
        if partitions.is_empty() {
            return Ok(());
        }
        let (node_id, partitions) = (node_id.to_owned(), json_text(&partitions)?);
        self.write(move |conn| {
            let released = column_u16(
                conn,
                "UPDATE leases SET node_id = NULL, expires_at = 0
                 WHERE node_id = ?1 AND partition IN (SELECT value FROM json_each(?2))
                 RETURNING partition",
                params![node_id, partitions],
            )?;
            conn.prepare_cached(
                "UPDATE deliveries SET status = 1 WHERE status = 3
                 AND partition IN (SELECT value FROM json_each(?))",
            )?
            .execute([json_text(&released)?])?;
            Ok(())
        })
        .await
    }

    async fn leave(&self, node_id: &str) -> Result<()> {
        let all: Vec<u16> = (0..switchyard_core::PARTITIONS).collect();
        let id = node_id.to_owned();
        self.write(move |conn| {
            conn.execute("UPDATE nodes SET heartbeat_at = 0 WHERE node_id = ?", [id])?;
            Ok(())
        })
        .await?;
        self.release_partitions(node_id, &all).await
    }

    async fn cluster(&self, now_ms: u64) -> Result<Vec<NodeInfo>> {
        self.read(move |conn| {
            let mut nodes = query_all(
                conn,
                "SELECT node_id, address, started_at, heartbeat_at FROM nodes ORDER BY node_id",
                [],
                |r| node_from_row(r),
            )?;
            let leases = query_all(
                conn,
                "SELECT partition, node_id FROM leases WHERE node_id IS NOT NULL AND expires_at >= ? ORDER BY partition",
                [now_ms as i64],
                |row| Ok((row.get::<_, u16>(0)?, row.get::<_, String>(1)?)),
            )?;
            attach_leases(&mut nodes, leases);
            Ok(nodes)
        })
        .await
    }

    async fn publish(&self, _event: &ClusterEvent) -> Result<()> {
        // One process per file: the engine has already acted on its own change.
        Ok(())
    }

    fn subscribe(&self) -> Option<tokio::sync::broadcast::Receiver<ClusterEvent>> {
        None
    }

    async fn ping(&self) -> Result<()> {
        self.read(|conn| Ok(conn.query_row("SELECT 1", [], |_| Ok(()))?))
            .await
    }
}

fn column_u16(conn: &Connection, sql: &str, args: impl rusqlite::Params) -> Result<Vec<u16>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query(args)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(row.get(0)?);
    }
    Ok(out)
}
