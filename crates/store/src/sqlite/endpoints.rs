//! Endpoints on SQLite.

use super::*;
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, params};

fn get_endpoint_sync(conn: &Connection, app: &str, id_or_uid: &str) -> Result<Option<Endpoint>> {
    let column = key_column(EndpointId::parse(id_or_uid).is_some());
    query_first(
        conn,
        &format!("SELECT {EP_COLS} FROM endpoints WHERE app_id = ? AND {column} = ?"),
        [app, id_or_uid],
        |r| endpoint_from_row(r),
    )
}

fn write_endpoint(conn: &Connection, ep: &Endpoint, insert: bool) -> Result<()> {
    let sql = if insert {
        format!(
            "INSERT INTO endpoints ({EP_COLS}) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16)"
        )
    } else {
        "UPDATE endpoints SET app_id=?2, uid=?3, url=?4, description=?5, disabled=?6, filter_types=?7, channels=?8, rate_limit=?9, metadata=?10, headers=?11, secret=?12, retired_secrets=?13, created_at=?14, updated_at=?15, payload_filter=?16 WHERE id=?1".to_string()
    };
    let changed = conn
        .prepare_cached(&sql)?
        .execute(params![
            ep.id.as_str(),
            ep.app_id.as_str(),
            ep.uid,
            ep.url,
            ep.description,
            ep.disabled,
            opt_json_text(&ep.filter_types)?,
            opt_json_text(&ep.channels)?,
            ep.rate_limit,
            json_text(&ep.metadata)?,
            json_text(&ep.headers)?,
            ep.secret,
            json_text(&ep.retired_secrets)?,
            ep.created_at as i64,
            ep.updated_at as i64,
            opt_json_text(&ep.payload_filter)?,
        ])
        .map_err(|e| conflict_or(e, "an endpoint with this uid"))?;
    if changed == 0 {
        return Err(StoreError::NotFound("endpoint".into()));
    }
    Ok(())
}

#[async_trait]
impl EndpointStore for SqliteStore {
    async fn insert_endpoint(&self, ep: Endpoint) -> Result<Endpoint> {
        self.write(move |conn| {
            write_endpoint(conn, &ep, true)?;
            Ok(ep)
        })
        .await
    }

    async fn get_endpoint(&self, app: &AppId, id_or_uid: &str) -> Result<Option<Endpoint>> {
        let (app, key) = (app.to_string(), id_or_uid.to_owned());
        self.read(move |conn| get_endpoint_sync(conn, &app, &key))
            .await
    }

    async fn list_endpoints(&self, app: &AppId, page: &PageRequest) -> Result<Page<Endpoint>> {
        let (app, page) = (app.to_string(), page.clone());
        self.read(move |conn| {
            let mut sql = format!("SELECT {EP_COLS} FROM endpoints WHERE app_id = ?");
            let mut args = vec![SqlValue::Text(app)];
            keyset(&mut sql, &mut args, "id", &page);
            let rows = query_all(conn, &sql, args, |r| endpoint_from_row(r))?;
            Ok(paginate(rows, page.limit, |e| e.id.to_string()))
        })
        .await
    }

    async fn all_endpoints(&self, app: Option<&AppId>) -> Result<Vec<Endpoint>> {
        let app = app.map(|a| a.to_string());
        self.read(move |conn| match app {
            Some(app) => query_all(
                conn,
                &format!("SELECT {EP_COLS} FROM endpoints WHERE app_id = ? ORDER BY id"),
                vec![SqlValue::Text(app)],
                |r| endpoint_from_row(r),
            ),
            None => query_all(
                conn,
                &format!("SELECT {EP_COLS} FROM endpoints ORDER BY id"),
                vec![],
                |r| endpoint_from_row(r),
            ),
        })
        .await
    }

    async fn update_endpoint(&self, ep: Endpoint) -> Result<Endpoint> {
        self.write(move |conn| {
            write_endpoint(conn, &ep, false)?;
            Ok(ep)
        })
        .await
    }

    async fn delete_endpoint(&self, app: &AppId, id: &EndpointId) -> Result<bool> {
        let (app, id) = (app.to_string(), id.to_string());
        self.write(move |conn| {
            let gone = conn.execute(
                "DELETE FROM endpoints WHERE app_id = ? AND id = ?",
                [&app, &id],
            )? > 0;
            // Undelivered work for a deleted endpoint has nowhere to go; the
            // attempt log stays for inspection.
            conn.execute(
                "DELETE FROM deliveries WHERE endpoint_id = ? AND status IN (1, 3)",
                [&id],
            )?;
            Ok(gone)
        })
        .await
    }
}
