//! Event types on PostgreSQL.

use super::*;

#[async_trait]
impl EventTypeStore for PgStore {
    async fn insert_event_type(&self, et: EventType) -> Result<EventType> {
        self.write_event_type(&et, "").await?;
        Ok(et)
    }

    async fn put_event_type(&self, et: EventType) -> Result<EventType> {
        self.write_event_type(
            &et,
            " ON CONFLICT (name) DO UPDATE SET description = EXCLUDED.description, archived = EXCLUDED.archived,
              deprecated = EXCLUDED.deprecated, schemas = EXCLUDED.schemas, feature_flags = EXCLUDED.feature_flags,
              group_name = EXCLUDED.group_name, created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at",
        )
        .await?;
        Ok(et)
    }

    async fn get_event_type(&self, name: &EventTypeName) -> Result<Option<EventType>> {
        let client = self.client().await?;
        fetch_one(
            &client,
            &format!("SELECT {ET_COLS} FROM event_types WHERE name = $1"),
            &[&name.as_str()],
            event_type_from_row,
        )
        .await
    }

    async fn list_event_types(
        &self,
        page: &PageRequest,
        include_archived: bool,
    ) -> Result<Page<EventType>> {
        let q = query::event_types(page, include_archived);
        let rows = self.list(q, event_type_from_row).await?;
        Ok(paginate(rows, page.limit, |e| e.name.to_string()))
    }

    async fn delete_event_type(&self, name: &EventTypeName) -> Result<bool> {
        let client = self.client().await?;
        Ok(client
            .execute("DELETE FROM event_types WHERE name = $1", &[&name.as_str()])
            .await?
            > 0)
    }
}

impl PgStore {
    async fn write_event_type(&self, et: &EventType, on_conflict: &str) -> Result<()> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "INSERT INTO event_types ({ET_COLS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9){on_conflict}"
            ))
            .await?;
        client
            .execute(
                &stmt,
                &[
                    &et.name.as_str(),
                    &et.description,
                    &et.archived,
                    &et.deprecated,
                    &opt_json_text(&et.schemas)?,
                    &opt_json_text(&et.feature_flags)?,
                    &et.group_name,
                    &(et.created_at as i64),
                    &(et.updated_at as i64),
                ],
            )
            .await
            .map_err(conflict_or(&format!("event type '{}'", et.name)))?;
        Ok(())
    }
}
