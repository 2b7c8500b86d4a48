//! Cluster membership and partition leases on PostgreSQL, shared by all
//! nodes; events between nodes travel by `NOTIFY`.

use super::*;
use tokio::sync::broadcast;

#[async_trait]
impl ClusterStore for PgStore {
    async fn lease(&self, r: &LeaseRequest) -> Result<LeaseGrant> {
        let now = r.now_ms as i64;
        let expires = (r.now_ms + r.ttl_ms) as i64;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        tx.execute(
            "INSERT INTO nodes (node_id, address, started_at, heartbeat_at) VALUES ($1, $2, $3, $3)
             ON CONFLICT (node_id) DO UPDATE SET address = $2, heartbeat_at = $3,
               started_at = CASE WHEN $4 THEN $3 ELSE nodes.started_at END",
            &[&r.node_id, &r.address, &now, &r.fresh],
        )
        .await?;
        let live: i64 = tx
            .query_one(
                "SELECT COUNT(*) FROM nodes WHERE heartbeat_at >= $1",
                &[&(now - r.ttl_ms as i64)],
            )
            .await?
            .try_get(0)?;
        let live_nodes = u32::try_from(live).unwrap_or(u32::MAX);
        let fair = fair_share(live_nodes);
        let mut owned = partitions_of(
            &tx.query(
                "UPDATE leases SET expires_at = $2,
                   acquired_at = CASE WHEN $3 THEN $4 ELSE acquired_at END
                 WHERE node_id = $1 RETURNING partition",
                &[&r.node_id, &expires, &r.fresh, &now],
            )
            .await?,
        )?;
        let mut acquired = if r.fresh { owned.clone() } else { Vec::new() };
        if owned.len() < fair {
            // SKIP LOCKED and the repeated condition make concurrent nodes
            // take disjoint partitions.
            let taken = partitions_of(
                &tx.query(
                    "UPDATE leases SET node_id = $1, expires_at = $2, acquired_at = $3
                     WHERE partition IN (
                       SELECT partition FROM leases WHERE node_id IS NULL OR expires_at < $3
                       ORDER BY partition LIMIT $4 FOR UPDATE SKIP LOCKED)
                     AND (node_id IS NULL OR expires_at < $3)
                     RETURNING partition",
                    &[&r.node_id, &expires, &now, &((fair - owned.len()) as i64)],
                )
                .await?,
            )?;
            owned.extend_from_slice(&taken);
            acquired.extend(taken);
        }
        if !acquired.is_empty() {
            tx.execute(
                "UPDATE deliveries SET status = 1 WHERE status = 3 AND partition = ANY($1)",
                &[&partitions_param(&acquired)],
            )
            .await?;
        }
        let stranded = tx
            .execute(
                "UPDATE deliveries d SET status = 1 FROM leases l
                 WHERE d.status = 3 AND d.partition = l.partition AND l.node_id = $1
                   AND d.updated_at < l.acquired_at - $2",
                &[&r.node_id, &(lease_margin_ms(r.ttl_ms) as i64)],
            )
            .await? as usize;
        if r.fresh && owned.len() < fair {
            // A newcomer short of its share: the others should shed theirs now.
            tx.execute(
                "SELECT pg_notify($1, $2)",
                &[&CHANNEL, &ClusterEvent::Leases.encode()],
            )
            .await?;
        }
        tx.commit().await?;
        owned.sort_unstable();
        acquired.sort_unstable();
        Ok(LeaseGrant {
            surplus: surplus_of(&owned, fair),
            owned,
            acquired,
            stranded,
            live_nodes,
        })
    }

    async fn release_partitions(&self, node_id: &str, partitions: &[u16]) -> Result<()> {
        if partitions.is_empty() {
            return Ok(());
        }
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let released = partitions_of(
            &tx.query(
                "UPDATE leases SET node_id = NULL, expires_at = 0
                 WHERE node_id = $1 AND partition = ANY($2) RETURNING partition",
                &[&node_id, &partitions_param(partitions)],
            )
            .await?,
        )?;
        tx.execute(
            "UPDATE deliveries SET status = 1 WHERE status = 3 AND partition = ANY($1)",
            &[&partitions_param(&released)],
        )
        .await?;
        for event in [ClusterEvent::Due, ClusterEvent::Leases] {
            tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &event.encode()])
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn leave(&self, node_id: &str) -> Result<()> {
        let all: Vec<u16> = (0..switchyard_core::PARTITIONS).collect();
        self.client()
            .await?
            .execute(
                "UPDATE nodes SET heartbeat_at = 0 WHERE node_id = $1",
                &[&node_id],
            )
            .await?;
        self.release_partitions(node_id, &all).await
    }

    async fn cluster(&self, now_ms: u64) -> Result<Vec<NodeInfo>> {
        let client = self.client().await?;
        let mut nodes = client
            .query(
                "SELECT node_id, address, started_at, heartbeat_at FROM nodes ORDER BY node_id",
                &[],
            )
            .await?
            .iter()
            .map(node_from_row)
            .collect::<Result<Vec<_>>>()?;
        let rows = client
            .query(
                "SELECT partition, node_id FROM leases WHERE node_id IS NOT NULL AND expires_at >= $1 ORDER BY partition",
                &[&(now_ms as i64)],
            )
            .await?;
        let leases = partitions_of(&rows)?
            .into_iter()
            .zip(rows.iter())
            .map(|(p, row)| Ok((p, row.try_get::<_, String>(1)?)))
            .collect::<Result<Vec<_>>>()?;
        attach_leases(&mut nodes, leases);
        Ok(nodes)
    }

    async fn publish(&self, event: &ClusterEvent) -> Result<()> {
        let client = self.client().await?;
        client
            .execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &event.encode()])
            .await?;
        Ok(())
    }

    fn subscribe(&self) -> Option<broadcast::Receiver<ClusterEvent>> {
        Some(self.events.subscribe())
    }

    async fn ping(&self) -> Result<()> {
        self.client().await?.execute("SELECT 1", &[]).await?;
        Ok(())
    }
}
