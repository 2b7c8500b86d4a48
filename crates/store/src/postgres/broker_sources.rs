//! Broker sources, their counts and their rejected log on PostgreSQL.

use super::*;
use switchyard_core::id_floor_for_time;

const CONFLICT: &str = "a broker source with this uid, or one that reads the same";

async fn write_broker_source(
    client: &impl deadpool_postgres::GenericClient,
    keys: &Keyring,
    s: &BrokerSource,
    read_at: Option<u64>,
) -> Result<u64> {
    let sql = match read_at {
        None => format!(
            "INSERT INTO broker_sources ({BROKER_SOURCE_COLS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)"
        ),
        Some(_) => "UPDATE broker_sources SET uid=$2, name=$3, app=$4, batch_size=$5, paused=$6,
               broker=$7, reads=$8, metadata=$9, created_at=$10, updated_at=$11
             WHERE id=$1 AND updated_at=$12"
            .to_string(),
    };
    let broker = sealed_broker(keys, s)?;
    let metadata = json_text(&s.metadata)?;
    let batch = i64::from(s.batch_size);
    let (created, updated) = (s.created_at as i64, s.updated_at as i64);
    let read_at = read_at.map(|t| t as i64);
    let id = s.id.as_str();
    let uid = s.uid.as_ref().map(Uid::as_str);
    let mut args: Vec<&(dyn ToSql + Sync)> = vec![
        &id, &uid, &s.name, &s.app, &batch, &s.paused, &broker, &s.reads, &metadata, &created,
        &updated,
    ];
    if let Some(at) = &read_at {
        args.push(at);
    }
    let stmt = client.prepare_cached(&sql).await?;
    client
        .execute(&stmt, &args)
        .await
        .map_err(conflict_or(CONFLICT))
}

#[async_trait]
impl BrokerSourceStore for PgStore {
    async fn insert_broker_source(&self, source: BrokerSource) -> Result<BrokerSource> {
        write_broker_source(&self.client().await?, &self.keys, &source, None).await?;
        Ok(source)
    }

    async fn get_broker_source(&self, id_or_uid: &str) -> Result<Option<BrokerSource>> {
        let client = self.client().await?;
        fetch_one(
            &client,
            &format!(
                "SELECT {BROKER_SOURCE_COLS} FROM broker_sources WHERE {} = $1",
                key_column(BrokerSourceId::parse(id_or_uid).is_some())
            ),
            &[&id_or_uid],
            |r| broker_source_from_row(r, &self.keys),
        )
        .await
    }

    async fn list_broker_sources(&self, page: &PageRequest) -> Result<Page<BrokerSource>> {
        let rows = self
            .list(query::broker_sources(page), |r| {
                broker_source_from_row(r, &self.keys)
            })
            .await?;
        Ok(paginate(rows, page.limit, |s| s.id.to_string()))
    }

    async fn all_broker_sources(&self) -> Result<Vec<BrokerSource>> {
        let q = Query::new(format!(
            "SELECT {BROKER_SOURCE_COLS} FROM broker_sources ORDER BY id"
        ));
        self.list(q, |r| broker_source_from_row(r, &self.keys))
            .await
    }

    async fn update_broker_source(
        &self,
        source: BrokerSource,
        read_at: u64,
    ) -> Result<BrokerSource> {
        let client = self.client().await?;
        if write_broker_source(&client, &self.keys, &source, Some(read_at)).await? == 1 {
            return Ok(source);
        }
        let exists = client
            .query_opt(
                "SELECT 1 FROM broker_sources WHERE id = $1",
                &[&source.id.as_str()],
            )
            .await?
            .is_some();
        Err(if exists {
            StoreError::Stale("broker source".into())
        } else {
            StoreError::NotFound("broker source".into())
        })
    }

    async fn delete_broker_source(&self, id: &BrokerSourceId) -> Result<bool> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        tx.execute(
            "DELETE FROM broker_rejections WHERE source_id = $1",
            &[&id.as_str()],
        )
        .await?;
        let gone = tx
            .execute("DELETE FROM broker_sources WHERE id = $1", &[&id.as_str()])
            .await?;
        tx.commit().await?;
        Ok(gone > 0)
    }

    async fn add_broker_source_stats(
        &self,
        deltas: Vec<(BrokerSourceId, BrokerSourceStats)>,
    ) -> Result<()> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "UPDATE broker_sources SET received = received + $2, accepted = accepted + $3,
                   duplicates = duplicates + $4, rejected = rejected + $5, deferred = deferred + $6,
                   backlog = CASE WHEN $8::BIGINT >= COALESCE(backlog_at, 0) THEN COALESCE($7::BIGINT, backlog) ELSE backlog END,
                   backlog_at = CASE WHEN $8::BIGINT >= COALESCE(backlog_at, 0) THEN COALESCE($8::BIGINT, backlog_at) ELSE backlog_at END,
                   last_error = CASE WHEN $10::BIGINT >= COALESCE(last_error_at, 0) THEN COALESCE($9::TEXT, last_error) ELSE last_error END,
                   last_error_at = CASE WHEN $10::BIGINT >= COALESCE(last_error_at, 0) THEN COALESCE($10::BIGINT, last_error_at) ELSE last_error_at END
                 WHERE id = $1",
            )
            .await?;
        for (id, d) in &deltas {
            client
                .execute(
                    &stmt,
                    &[
                        &id.as_str(),
                        &(d.received as i64),
                        &(d.accepted as i64),
                        &(d.duplicates as i64),
                        &(d.rejected as i64),
                        &(d.deferred as i64),
                        &d.backlog.map(|b| b as i64),
                        &d.backlog_at.map(|t| t as i64),
                        &d.last_error,
                        &d.last_error_at.map(|t| t as i64),
                    ],
                )
                .await?;
        }
        Ok(())
    }

    async fn broker_source_stats(&self, id: &BrokerSourceId) -> Result<Option<BrokerSourceStats>> {
        let client = self.client().await?;
        fetch_one(
            &client,
            &format!("SELECT {BROKER_SOURCE_STATS_COLS} FROM broker_sources WHERE id = $1"),
            &[&id.as_str()],
            broker_source_stats_from_row,
        )
        .await
    }

    async fn insert_broker_rejections(&self, rejections: Vec<BrokerRejection>) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let stmt = tx
            .prepare_cached(&format!(
                "INSERT INTO broker_rejections ({REJECTION_COLS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8)"
            ))
            .await?;
        for r in &rejections {
            tx.execute(
                &stmt,
                &[
                    &r.id.as_str(),
                    &r.source_id.as_str(),
                    &(r.at as i64),
                    &r.code,
                    &r.reason,
                    &&r.body[..],
                    &(r.body_size as i64),
                    &json_text(&r.headers)?,
                ],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn list_broker_rejections(
        &self,
        source: &BrokerSourceId,
        page: &PageRequest,
    ) -> Result<Page<BrokerRejection>> {
        let rows = self
            .list(query::broker_rejections(source, page), rejection_from_row)
            .await?;
        Ok(paginate(rows, page.limit, |r| r.id.to_string()))
    }

    async fn trim_broker_rejections(&self, before_ms: Option<u64>, keep: u64) -> Result<u64> {
        let client = self.client().await?;
        let mut gone = 0;
        if let Some(ms) = before_ms {
            let floor = id_floor_for_time(RejectionId::PREFIX, ms);
            gone += client
                .execute("DELETE FROM broker_rejections WHERE id < $1", &[&floor])
                .await?;
        }
        gone += client
            .execute(
                "DELETE FROM broker_rejections WHERE id IN (
                   SELECT id FROM (
                     SELECT id, ROW_NUMBER() OVER (PARTITION BY source_id ORDER BY id DESC) AS n
                     FROM broker_rejections) ranked WHERE n > $1)",
                &[&(keep as i64)],
            )
            .await?;
        Ok(gone)
    }
}
