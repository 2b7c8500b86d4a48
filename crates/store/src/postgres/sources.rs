//! Incoming-webhook sources on PostgreSQL.

use super::apps::{delete_app_rows, insert_app_row};
use super::*;

async fn write_source(
    client: &impl deadpool_postgres::GenericClient,
    keys: &Keyring,
    s: &Source,
    insert: bool,
) -> Result<()> {
    let sql = if insert {
        format!(
            "INSERT INTO sources ({SOURCE_COLS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13)"
        )
    } else {
        "UPDATE sources SET uid=$2, name=$3, kind=$4, config=$5, settings=$6, metadata=$7, app_id=$8,
           token=$9, retired_tokens=$10, retired_secrets=$11, created_at=$12, updated_at=$13 WHERE id=$1"
            .to_string()
    };
    let sealed = sealed_source(keys, s)?;
    let stmt = client.prepare_cached(&sql).await?;
    let changed = client
        .execute(
            &stmt,
            &[
                &s.id.as_str(),
                &s.uid.as_ref().map(Uid::as_str),
                &s.name,
                &s.kind,
                &sealed.config,
                &json_text(&s.settings)?,
                &json_text(&s.metadata)?,
                &s.app_id.as_str(),
                &sealed.token,
                &sealed.retired_tokens,
                &sealed.retired_secrets,
                &(s.created_at as i64),
                &(s.updated_at as i64),
            ],
        )
        .await
        .map_err(conflict_or("a source with this uid"))?;
    if changed == 0 {
        return Err(StoreError::NotFound("source".into()));
    }
    Ok(())
}

#[async_trait]
impl SourceStore for PgStore {
    async fn insert_source(&self, source: Source, app: Application) -> Result<Source> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        insert_app_row(&tx, &app).await?;
        write_source(&tx, &self.keys, &source, true).await?;
        tx.commit().await?;
        Ok(source)
    }

    async fn get_source(&self, id_or_uid: &str) -> Result<Option<Source>> {
        let client = self.client().await?;
        fetch_one(
            &client,
            &format!(
                "SELECT {SOURCE_COLS} FROM sources WHERE {} = $1",
                key_column(SourceId::parse(id_or_uid).is_some())
            ),
            &[&id_or_uid],
            |r| source_from_row(r, &self.keys),
        )
        .await
    }

    async fn list_sources(&self, page: &PageRequest) -> Result<Page<Source>> {
        let rows = self
            .list(query::sources(page), |r| source_from_row(r, &self.keys))
            .await?;
        Ok(paginate(rows, page.limit, |s| s.id.to_string()))
    }

    async fn all_sources(&self) -> Result<Vec<Source>> {
        let q = Query::new(format!("SELECT {SOURCE_COLS} FROM sources ORDER BY id"));
        self.list(q, |r| source_from_row(r, &self.keys)).await
    }

    async fn update_source(&self, source: Source) -> Result<Source> {
        write_source(&self.client().await?, &self.keys, &source, false).await?;
        Ok(source)
    }

    async fn delete_source(&self, id: &SourceId) -> Result<bool> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let Some(row) = tx
            .query_opt(
                "SELECT app_id FROM sources WHERE id = $1 FOR UPDATE",
                &[&id.as_str()],
            )
            .await?
        else {
            return Ok(false);
        };
        let app: String = row.try_get(0)?;
        delete_app_rows(&tx, &app).await?;
        tx.execute("DELETE FROM sources WHERE id = $1", &[&id.as_str()])
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn add_source_stats(&self, deltas: Vec<(SourceId, SourceStats)>) -> Result<()> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "UPDATE sources SET accepted = accepted + $2, duplicates = duplicates + $3,
                   rejected = rejected + $4,
                   last_rejection = COALESCE($5, last_rejection),
                   last_rejection_at = COALESCE($6, last_rejection_at)
                 WHERE id = $1",
            )
            .await?;
        for (id, d) in &deltas {
            client
                .execute(
                    &stmt,
                    &[
                        &id.as_str(),
                        &(d.accepted as i64),
                        &(d.duplicates as i64),
                        &(d.rejected as i64),
                        &d.last_rejection,
                        &d.last_rejection_at.map(|t| t as i64),
                    ],
                )
                .await?;
        }
        Ok(())
    }

    async fn source_stats(&self, id: &SourceId) -> Result<Option<SourceStats>> {
        let client = self.client().await?;
        fetch_one(
            &client,
            &format!("SELECT {SOURCE_STATS_COLS} FROM sources WHERE id = $1"),
            &[&id.as_str()],
            source_stats_from_row,
        )
        .await
    }
}
