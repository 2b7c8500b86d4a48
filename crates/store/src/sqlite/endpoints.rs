//! Endpoints on SQLite.

use super::*;
use rusqlite::{Connection, params};

fn get_endpoint_sync(
    conn: &Connection,
    keys: &Keyring,
    app: &str,
    id_or_uid: &str,
) -> Result<Option<Endpoint>> {
    let column = key_column(EndpointId::parse(id_or_uid).is_some());
    query_first(
        conn,
        &format!("SELECT {EP_COLS} FROM endpoints WHERE app_id = ? AND {column} = ?"),
        [app, id_or_uid],
        |r| endpoint_from_row(r, keys),
    )
}

fn write_endpoint(
    conn: &Connection,
    keys: &Keyring,
    ep: &Endpoint,
    insert: bool,
    set_disabled: bool,
    read_at: Option<u64>,
) -> Result<()> {
    let sql = if insert {
        format!(
            "INSERT INTO endpoints ({EP_COLS}) SELECT ?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18,?19,?21,?22 WHERE ?20 IS NOT NULL AND ?23 IS NOT NULL"
        )
    } else {
        "UPDATE endpoints SET app_id=?2, uid=?3, url=?4, description=?5, disabled=CASE WHEN ?20 THEN ?6 ELSE disabled END, filter_types=?7, channels=?8, rate_limit=?9, metadata=?10, headers=?11, secret=?12, retired_secrets=?13, created_at=?14, updated_at=?15, payload_filter=?16, concurrency_limit=?17, circuit_breaker=?18, disabled_reason=CASE WHEN ?20 THEN ?19 ELSE disabled_reason END, fifo=?21, auth=?22 WHERE id=?1 AND updated_at=?23".to_string()
    };
    let (secret, retired_secrets, headers, auth) = sealed_endpoint(keys, ep)?;
    let changed = conn
        .prepare_cached(&sql)?
        .execute(params![
            ep.id.as_str(),
            ep.app_id.as_str(),
            ep.uid.as_ref().map(Uid::as_str),
            ep.url.as_str(),
            ep.description,
            ep.disabled,
            opt_json_text(&ep.filter_types)?,
            opt_json_text(&ep.channels)?,
            ep.rate_limit,
            json_text(&ep.metadata)?,
            headers,
            secret,
            retired_secrets,
            ep.created_at as i64,
            ep.updated_at as i64,
            opt_json_text(&ep.payload_filter)?,
            ep.concurrency_limit,
            opt_json_text(&ep.circuit_breaker)?,
            ep.disabled_reason,
            set_disabled,
            ep.fifo,
            auth,
            read_at.map_or(-1, |t| t as i64),
        ])
        .map_err(|e| conflict_or(e, "an endpoint with this uid"))?;
    if changed == 0 {
        return Err(StoreError::Stale("endpoint".into()));
    }
    Ok(())
}

#[async_trait]
impl EndpointStore for SqliteStore {
    async fn insert_endpoint(&self, ep: Endpoint) -> Result<Endpoint> {
        let keys = self.keys.clone();
        self.write(move |conn| {
            write_endpoint(conn, &keys, &ep, true, true, None)?;
            Ok(ep)
        })
        .await
    }

    async fn insert_endpoint_within(&self, ep: Endpoint, max: usize) -> Result<Option<Endpoint>> {
        // One writer: nothing is inserted between the count and the insert.
        let keys = self.keys.clone();
        self.write(move |conn| {
            let count: i64 = conn
                .prepare_cached("SELECT COUNT(*) FROM endpoints WHERE app_id = ?")?
                .query_row([ep.app_id.as_str()], |r| r.get(0))?;
            if count as usize >= max {
                return Ok(None);
            }
            write_endpoint(conn, &keys, &ep, true, true, None)?;
            Ok(Some(ep))
        })
        .await
    }

    async fn get_endpoint(&self, app: &AppId, id_or_uid: &str) -> Result<Option<Endpoint>> {
        let (app, key) = (app.to_string(), id_or_uid.to_owned());
        let keys = self.keys.clone();
        self.read(move |conn| get_endpoint_sync(conn, &keys, &app, &key))
            .await
    }

    async fn list_endpoints(&self, app: &AppId, page: &PageRequest) -> Result<Page<Endpoint>> {
        let q = query::endpoints(app, page);
        let keys = self.keys.clone();
        let rows = self.list(q, move |r| endpoint_from_row(r, &keys)).await?;
        Ok(paginate(rows, page.limit, |e| e.id.to_string()))
    }

    async fn all_endpoints(&self, app: Option<&AppId>) -> Result<Vec<Endpoint>> {
        let keys = self.keys.clone();
        self.list(query::all_endpoints(app), move |r| {
            endpoint_from_row(r, &keys)
        })
        .await
    }

    async fn update_endpoint(
        &self,
        ep: Endpoint,
        set_disabled: bool,
        read_at: u64,
    ) -> Result<Endpoint> {
        let keys = self.keys.clone();
        self.write(move |conn| {
            write_endpoint(conn, &keys, &ep, false, set_disabled, Some(read_at))?;
            // As stored: `disabled` may not be what this update carried.
            get_endpoint_sync(conn, &keys, ep.app_id.as_str(), ep.id.as_str())?
                .ok_or_else(|| StoreError::NotFound("endpoint".into()))
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
            conn.execute("DELETE FROM endpoint_circuits WHERE endpoint_id = ?", [&id])?;
            Ok(gone)
        })
        .await
    }

    async fn mark_failing(&self, changes: Vec<(EndpointId, Option<u64>)>) -> Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        self.write_fast(move |conn| {
            let mut failing = conn.prepare_cached(
                "UPDATE endpoints SET failing_since = ?2 WHERE id = ?1 AND failing_since IS NULL",
            )?;
            let mut healthy = conn.prepare_cached(
                "UPDATE endpoints SET failing_since = NULL WHERE id = ?1 AND failing_since IS NOT NULL",
            )?;
            for (ep, since) in &changes {
                match since {
                    Some(at) => failing.execute(params![ep.as_str(), *at as i64])?,
                    None => healthy.execute(params![ep.as_str()])?,
                };
            }
            Ok(())
        })
        .await
    }

    async fn disable_failing(
        &self,
        failing_before: u64,
        reason: &str,
        now_ms: u64,
    ) -> Result<Vec<(AppId, EndpointId, u64)>> {
        let reason = reason.to_owned();
        self.write(move |conn| {
            // Read, then changed in the same write transaction: RETURNING
            // would see the streak's start already cleared.
            let failing = query_all(
                conn,
                "SELECT app_id, id, failing_since FROM endpoints
                 WHERE disabled = 0 AND failing_since IS NOT NULL AND failing_since <= ?1",
                params![failing_before as i64],
                |r| {
                    Ok((
                        AppId::from_trusted(r.text("app_id")?),
                        EndpointId::from_trusted(r.text("id")?),
                        r.ms("failing_since")?,
                    ))
                },
            )?;
            let mut disable = conn.prepare_cached(
                "UPDATE endpoints SET disabled = 1, disabled_reason = ?2, failing_since = NULL, updated_at = ?3
                 WHERE id = ?1",
            )?;
            for (_, ep, _) in &failing {
                disable.execute(params![ep.as_str(), reason, now_ms as i64])?;
            }
            Ok(failing)
        })
        .await
    }

    async fn circuits(&self, app: &AppId) -> Result<Vec<(EndpointId, CircuitSnapshot)>> {
        let app = app.to_string();
        self.read(move |conn| {
            query_all(
                conn,
                &format!("SELECT {CIRCUIT_COLS} FROM endpoint_circuits WHERE app_id = ?"),
                [&app],
                |r| circuit_from_row(r),
            )
        })
        .await
    }

    async fn save_circuit(
        &self,
        app: &AppId,
        ep: &EndpointId,
        snapshot: &CircuitSnapshot,
    ) -> Result<()> {
        let (app, ep, s) = (app.to_string(), ep.to_string(), snapshot.clone());
        self.write(move |conn| {
            conn.prepare_cached(
                "INSERT INTO endpoint_circuits (app_id, endpoint_id, state, since, last_error, consecutive_failures)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (endpoint_id) DO UPDATE SET state = ?3, since = ?4, last_error = ?5,
                   consecutive_failures = ?6",
            )?
            .execute(params![
                app,
                ep,
                s.state.as_str(),
                s.since as i64,
                s.last_error,
                s.consecutive_failures
            ])?;
            Ok(())
        })
        .await
    }
}
