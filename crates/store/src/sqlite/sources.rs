//! Incoming-webhook sources on SQLite.

use super::apps::{delete_app_rows, insert_app_row};
use super::*;
use rusqlite::{Connection, OptionalExtension, params};

fn write_source(conn: &Connection, keys: &Keyring, s: &Source, insert: bool) -> Result<()> {
    let sql = if insert {
        format!(
            "INSERT INTO sources ({SOURCE_COLS}) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13)"
        )
    } else {
        "UPDATE sources SET uid=?2, name=?3, kind=?4, config=?5, settings=?6, metadata=?7, app_id=?8,
           token=?9, retired_tokens=?10, retired_secrets=?11, created_at=?12, updated_at=?13 WHERE id=?1"
            .to_string()
    };
    let sealed = sealed_source(keys, s)?;
    let changed = conn
        .prepare_cached(&sql)?
        .execute(params![
            s.id.as_str(),
            s.uid.as_ref().map(Uid::as_str),
            s.name,
            s.kind,
            sealed.config,
            json_text(&s.settings)?,
            json_text(&s.metadata)?,
            s.app_id.as_str(),
            sealed.token,
            sealed.retired_tokens,
            sealed.retired_secrets,
            s.created_at as i64,
            s.updated_at as i64,
        ])
        .map_err(|e| conflict_or(e, "a source with this uid"))?;
    if changed == 0 {
        return Err(StoreError::NotFound("source".into()));
    }
    Ok(())
}

#[async_trait]
impl SourceStore for SqliteStore {
    async fn insert_source(&self, source: Source, app: Application) -> Result<Source> {
        let keys = self.keys.clone();
        self.write(move |conn| {
            insert_app_row(conn, &app)?;
            write_source(conn, &keys, &source, true)?;
            Ok(source)
        })
        .await
    }

    async fn get_source(&self, id_or_uid: &str) -> Result<Option<Source>> {
        let key = id_or_uid.to_owned();
        let keys = self.keys.clone();
        self.read(move |conn| {
            query_first(
                conn,
                &format!(
                    "SELECT {SOURCE_COLS} FROM sources WHERE {} = ?",
                    key_column(SourceId::parse(&key).is_some())
                ),
                [&key],
                |r| source_from_row(r, &keys),
            )
        })
        .await
    }

    async fn list_sources(&self, page: &PageRequest) -> Result<Page<Source>> {
        let keys = self.keys.clone();
        let rows = self
            .list(query::sources(page), move |r| source_from_row(r, &keys))
            .await?;
        Ok(paginate(rows, page.limit, |s| s.id.to_string()))
    }

    async fn all_sources(&self) -> Result<Vec<Source>> {
        let keys = self.keys.clone();
        self.read(move |conn| {
            query_all(
                conn,
                &format!("SELECT {SOURCE_COLS} FROM sources ORDER BY id"),
                [],
                |r| source_from_row(r, &keys),
            )
        })
        .await
    }

    async fn update_source(&self, source: Source) -> Result<Source> {
        let keys = self.keys.clone();
        self.write(move |conn| {
            write_source(conn, &keys, &source, false)?;
            Ok(source)
        })
        .await
    }

    async fn delete_source(&self, id: &SourceId) -> Result<bool> {
        let id = id.to_string();
        self.write(move |conn| {
            let app: Option<String> = conn
                .query_row("SELECT app_id FROM sources WHERE id = ?", [&id], |r| {
                    r.get(0)
                })
                .optional()?;
            let Some(app) = app else {
                return Ok(false);
            };
            delete_app_rows(conn, &app)?;
            conn.execute("DELETE FROM sources WHERE id = ?", [&id])?;
            Ok(true)
        })
        .await
    }

    async fn add_source_stats(&self, deltas: Vec<(SourceId, SourceStats)>) -> Result<()> {
        self.write(move |conn| {
            let mut stmt = conn.prepare_cached(
                "UPDATE sources SET accepted = accepted + ?2, duplicates = duplicates + ?3,
                   rejected = rejected + ?4,
                   last_rejection = COALESCE(?5, last_rejection),
                   last_rejection_at = COALESCE(?6, last_rejection_at)
                 WHERE id = ?1",
            )?;
            for (id, d) in &deltas {
                stmt.execute(params![
                    id.as_str(),
                    d.accepted as i64,
                    d.duplicates as i64,
                    d.rejected as i64,
                    d.last_rejection,
                    d.last_rejection_at.map(|t| t as i64)
                ])?;
            }
            Ok(())
        })
        .await
    }

    async fn source_stats(&self, id: &SourceId) -> Result<Option<SourceStats>> {
        let id = id.to_string();
        self.read(move |conn| {
            query_first(
                conn,
                &format!("SELECT {SOURCE_STATS_COLS} FROM sources WHERE id = ?"),
                [&id],
                |r| source_stats_from_row(r),
            )
        })
        .await
    }
}
