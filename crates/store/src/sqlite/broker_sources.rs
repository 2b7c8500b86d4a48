//! Broker sources, their counts and their rejected log on SQLite.

use super::*;
use rusqlite::{Connection, params};
use switchyard_core::id_floor_for_time;

const CONFLICT: &str = "a broker source with this uid, or one that reads the same";

fn write_broker_source(
    conn: &Connection,
    keys: &Keyring,
    s: &BrokerSource,
    read_at: Option<u64>,
) -> Result<usize> {
    let sql = match read_at {
        None => format!(
            "INSERT INTO broker_sources ({BROKER_SOURCE_COLS}) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11)"
        ),
        Some(_) => "UPDATE broker_sources SET uid=?2, name=?3, app=?4, batch_size=?5, paused=?6,
               broker=?7, reads=?8, metadata=?9, created_at=?10, updated_at=?11
             WHERE id=?1 AND updated_at=?12"
            .to_string(),
    };
    let broker = sealed_broker(keys, s)?;
    let mut stmt = conn.prepare_cached(&sql)?;
    let common = params![
        s.id.as_str(),
        s.uid.as_ref().map(Uid::as_str),
        s.name,
        s.app,
        i64::from(s.batch_size),
        s.paused,
        broker,
        s.reads,
        json_text(&s.metadata)?,
        s.created_at as i64,
        s.updated_at as i64,
    ];
    let changed = match read_at {
        None => stmt.execute(common),
        Some(at) => {
            let mut all = common.to_vec();
            let at = at as i64;
            all.push(&at);
            stmt.execute(all.as_slice())
        }
    };
    changed.map_err(|e| conflict_or(e, CONFLICT))
}

#[async_trait]
impl BrokerSourceStore for SqliteStore {
    async fn insert_broker_source(&self, source: BrokerSource) -> Result<BrokerSource> {
        let keys = self.keys.clone();
        self.write(move |conn| {
            write_broker_source(conn, &keys, &source, None)?;
            Ok(source)
        })
        .await
    }

    async fn get_broker_source(&self, id_or_uid: &str) -> Result<Option<BrokerSource>> {
        let key = id_or_uid.to_owned();
        let keys = self.keys.clone();
        self.read(move |conn| {
            query_first(
                conn,
                &format!(
                    "SELECT {BROKER_SOURCE_COLS} FROM broker_sources WHERE {} = ?",
                    key_column(BrokerSourceId::parse(&key).is_some())
                ),
                [&key],
                |r| broker_source_from_row(r, &keys),
            )
        })
        .await
    }

    async fn list_broker_sources(&self, page: &PageRequest) -> Result<Page<BrokerSource>> {
        let keys = self.keys.clone();
        let rows = self
            .list(query::broker_sources(page), move |r| {
                broker_source_from_row(r, &keys)
            })
            .await?;
        Ok(paginate(rows, page.limit, |s| s.id.to_string()))
    }

    async fn all_broker_sources(&self) -> Result<Vec<BrokerSource>> {
        let keys = self.keys.clone();
        self.read(move |conn| {
            query_all(
                conn,
                &format!("SELECT {BROKER_SOURCE_COLS} FROM broker_sources ORDER BY id"),
                [],
                |r| broker_source_from_row(r, &keys),
            )
        })
        .await
    }

    async fn update_broker_source(
        &self,
        source: BrokerSource,
        read_at: u64,
    ) -> Result<BrokerSource> {
        let keys = self.keys.clone();
        self.write(move |conn| {
            if write_broker_source(conn, &keys, &source, Some(read_at))? == 1 {
                return Ok(source);
            }
            let exists: bool = conn.query_row(
                "SELECT EXISTS (SELECT 1 FROM broker_sources WHERE id = ?)",
                [source.id.as_str()],
                |r| r.get(0),
            )?;
            Err(if exists {
                StoreError::Stale("broker source".into())
            } else {
                StoreError::NotFound("broker source".into())
            })
        })
        .await
    }

    async fn delete_broker_source(&self, id: &BrokerSourceId) -> Result<bool> {
        let id = id.to_string();
        self.write(move |conn| {
            conn.execute("DELETE FROM broker_rejections WHERE source_id = ?", [&id])?;
            Ok(conn.execute("DELETE FROM broker_sources WHERE id = ?", [&id])? > 0)
        })
        .await
    }

    async fn add_broker_source_stats(
        &self,
        deltas: Vec<(BrokerSourceId, BrokerSourceStats)>,
    ) -> Result<()> {
        self.write(move |conn| {
            let mut stmt = conn.prepare_cached(
                "UPDATE broker_sources SET received = received + ?2, accepted = accepted + ?3,
                   duplicates = duplicates + ?4, rejected = rejected + ?5, deferred = deferred + ?6,
                   backlog = CASE WHEN ?8 >= COALESCE(backlog_at, 0) THEN COALESCE(?7, backlog) ELSE backlog END,
                   backlog_at = CASE WHEN ?8 >= COALESCE(backlog_at, 0) THEN COALESCE(?8, backlog_at) ELSE backlog_at END,
                   last_error = CASE WHEN ?10 >= COALESCE(last_error_at, 0) THEN COALESCE(?9, last_error) ELSE last_error END,
                   last_error_at = CASE WHEN ?10 >= COALESCE(last_error_at, 0) THEN COALESCE(?10, last_error_at) ELSE last_error_at END
                 WHERE id = ?1",
            )?;
            for (id, d) in &deltas {
                stmt.execute(params![
                    id.as_str(),
                    d.received as i64,
                    d.accepted as i64,
                    d.duplicates as i64,
                    d.rejected as i64,
                    d.deferred as i64,
                    d.backlog.map(|b| b as i64),
                    d.backlog_at.map(|t| t as i64),
                    d.last_error,
                    d.last_error_at.map(|t| t as i64),
                ])?;
            }
            Ok(())
        })
        .await
    }

    async fn broker_source_stats(&self, id: &BrokerSourceId) -> Result<Option<BrokerSourceStats>> {
        let id = id.to_string();
        self.read(move |conn| {
            query_first(
                conn,
                &format!("SELECT {BROKER_SOURCE_STATS_COLS} FROM broker_sources WHERE id = ?"),
                [&id],
                |r| broker_source_stats_from_row(r),
            )
        })
        .await
    }

    async fn insert_broker_rejections(&self, rejections: Vec<BrokerRejection>) -> Result<()> {
        self.write(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "INSERT INTO broker_rejections ({REJECTION_COLS}) VALUES (?1,?2,?3,?4,?5,?6,?7,?8)"
            ))?;
            for r in &rejections {
                stmt.execute(params![
                    r.id.as_str(),
                    r.source_id.as_str(),
                    r.at as i64,
                    r.code,
                    r.reason,
                    &r.body[..],
                    r.body_size as i64,
                    json_text(&r.headers)?,
                ])?;
            }
            Ok(())
        })
        .await
    }

    async fn list_broker_rejections(
        &self,
        source: &BrokerSourceId,
        page: &PageRequest,
    ) -> Result<Page<BrokerRejection>> {
        let rows = self
            .list(query::broker_rejections(source, page), |r| {
                rejection_from_row(r)
            })
            .await?;
        Ok(paginate(rows, page.limit, |r| r.id.to_string()))
    }

    async fn trim_broker_rejections(&self, before_ms: Option<u64>, keep: u64) -> Result<u64> {
        let floor = before_ms.map(|ms| id_floor_for_time(RejectionId::PREFIX, ms));
        self.write(move |conn| {
            let mut gone = 0;
            if let Some(floor) = &floor {
                gone += conn.execute("DELETE FROM broker_rejections WHERE id < ?", [floor])?;
            }
            gone += conn.execute(
                "DELETE FROM broker_rejections WHERE id IN (
                   SELECT id FROM (
                     SELECT id, ROW_NUMBER() OVER (PARTITION BY source_id ORDER BY id DESC) AS n
                     FROM broker_rejections) WHERE n > ?)",
                [keep as i64],
            )?;
            Ok(gone as u64)
        })
        .await
    }
}
