//! Applications on SQLite.

use super::*;
use rusqlite::{Connection, params};

fn get_app_sync(conn: &Connection, id_or_uid: &str) -> Result<Option<Application>> {
    let column = key_column(AppId::parse(id_or_uid).is_some());
    query_first(
        conn,
        &format!("SELECT {APP_COLS} FROM applications WHERE {column} = ?"),
        [id_or_uid],
        |r| app_from_row(r),
    )
}

pub(super) fn insert_app_row(conn: &Connection, app: &Application) -> Result<()> {
    conn.prepare_cached(&format!(
        "INSERT INTO applications ({APP_COLS}) VALUES (?1,?2,?3,?4,?5,?6,?7)"
    ))?
    .execute(params![
        app.id.as_str(),
        app.uid.as_ref().map(Uid::as_str),
        app.name,
        app.rate_limit,
        json_text(&app.metadata)?,
        app.created_at as i64,
        app.updated_at as i64
    ])
    .map_err(|e| conflict_or(e, "an application with this uid"))?;
    Ok(())
}

/// Removes an application with its endpoints, messages, deliveries and
/// attempts; true when the application existed.
pub(super) fn delete_app_rows(conn: &Connection, app: &str) -> Result<bool> {
    for table in ["attempts", "deliveries", "messages", "endpoints"] {
        conn.execute(&format!("DELETE FROM {table} WHERE app_id = ?"), [app])?;
    }
    Ok(conn.execute("DELETE FROM applications WHERE id = ?", [app])? > 0)
}

#[async_trait]
impl AppStore for SqliteStore {
    async fn insert_app(&self, app: Application) -> Result<Application> {
        self.write(move |conn| {
            insert_app_row(conn, &app)?;
            Ok(app)
        })
        .await
    }

    async fn get_app(&self, id_or_uid: &str) -> Result<Option<Application>> {
        let key = id_or_uid.to_owned();
        self.read(move |conn| get_app_sync(conn, &key)).await
    }

    async fn list_apps(&self, page: &PageRequest) -> Result<Page<Application>> {
        let rows = self.list(query::apps(page), |r| app_from_row(r)).await?;
        Ok(paginate(rows, page.limit, |a| a.id.to_string()))
    }

    async fn update_app(&self, app: Application) -> Result<Application> {
        self.write(move |conn| {
            let changed = conn
                .prepare_cached(
                    "UPDATE applications SET uid=?2, name=?3, rate_limit=?4, metadata=?5, updated_at=?6 WHERE id=?1",
                )?
                .execute(params![
                    app.id.as_str(),
                    app.uid.as_ref().map(Uid::as_str),
                    app.name,
                    app.rate_limit,
                    json_text(&app.metadata)?,
                    app.updated_at as i64
                ])
                .map_err(|e| conflict_or(e, "an application with this uid"))?;
            if changed == 0 {
                return Err(StoreError::NotFound("application".into()));
            }
            Ok(app)
        })
        .await
    }

    async fn delete_app(&self, id: &AppId) -> Result<bool> {
        let id = id.to_string();
        self.write(move |conn| delete_app_rows(conn, &id)).await
    }
}
