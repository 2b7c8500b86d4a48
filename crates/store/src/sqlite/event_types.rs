//! Event types on SQLite.

use super::*;
use rusqlite::{Connection, params};

fn write_event_type(conn: &Connection, et: &EventType, mode: &str) -> Result<()> {
    conn.prepare_cached(&format!(
        "{mode} INTO event_types ({ET_COLS}) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9)"
    ))?
    .execute(params![
        et.name.as_str(),
        et.description,
        et.archived,
        et.deprecated,
        opt_json_text(&et.schemas)?,
        opt_json_text(&et.feature_flags)?,
        et.group_name,
        et.created_at as i64,
        et.updated_at as i64,
    ])
    .map_err(|e| conflict_or(e, &format!("event type '{}'", et.name)))?;
    Ok(())
}

#[async_trait]
impl EventTypeStore for SqliteStore {
    async fn insert_event_type(&self, et: EventType) -> Result<EventType> {
        self.write(move |conn| {
            write_event_type(conn, &et, "INSERT")?;
            Ok(et)
        })
        .await
    }

    async fn put_event_type(&self, et: EventType) -> Result<EventType> {
        self.write(move |conn| {
            write_event_type(conn, &et, "INSERT OR REPLACE")?;
            Ok(et)
        })
        .await
    }

    async fn get_event_type(&self, name: &EventTypeName) -> Result<Option<EventType>> {
        let name = name.to_string();
        self.read(move |conn| {
            query_first(
                conn,
                &format!("SELECT {ET_COLS} FROM event_types WHERE name = ?"),
                [name],
                |r| event_type_from_row(r),
            )
        })
        .await
    }

    async fn list_event_types(
        &self,
        page: &PageRequest,
        include_archived: bool,
    ) -> Result<Page<EventType>> {
        let q = query::event_types(page, include_archived);
        let rows = self.list(q, |r| event_type_from_row(r)).await?;
        Ok(paginate(rows, page.limit, |e| e.name.to_string()))
    }

    async fn delete_event_type(&self, name: &EventTypeName) -> Result<bool> {
        let name = name.to_string();
        self.write(move |conn| {
            Ok(conn.execute("DELETE FROM event_types WHERE name = ?", [name])? > 0)
        })
        .await
    }
}
