//! Endpoints on PostgreSQL.

use super::*;

#[async_trait]
impl EndpointStore for PgStore {
    async fn insert_endpoint(&self, ep: Endpoint) -> Result<Endpoint> {
        self.write_endpoint(&ep, true, true, None).await?;
        Ok(ep)
    }

    async fn insert_endpoint_within(&self, ep: Endpoint, max: usize) -> Result<Option<Endpoint>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        // Creates in one application queue on its row, so each counts the
        // ones committed before it.
        tx.execute(
            "SELECT 1 FROM applications WHERE id = $1 FOR UPDATE",
            &[&ep.app_id.as_str()],
        )
        .await?;
        let count: i64 = tx
            .query_one(
                "SELECT COUNT(*) FROM endpoints WHERE app_id = $1",
                &[&ep.app_id.as_str()],
            )
            .await?
            .try_get(0)?;
        if count as usize >= max {
            return Ok(None);
        }
        write_endpoint_on(&tx, &self.keys, &ep, true, true, None).await?;
        tx.commit().await?;
        Ok(Some(ep))
    }

    async fn get_endpoint(&self, app: &AppId, id_or_uid: &str) -> Result<Option<Endpoint>> {
        let column = key_column(EndpointId::parse(id_or_uid).is_some());
        let client = self.client().await?;
        fetch_one(
            &client,
            &format!("SELECT {EP_COLS} FROM endpoints WHERE app_id = $1 AND {column} = $2"),
            &[&app.as_str(), &id_or_uid],
            |r| endpoint_from_row(r, &self.keys),
        )
        .await
    }

    async fn list_endpoints(&self, app: &AppId, page: &PageRequest) -> Result<Page<Endpoint>> {
        let rows = self
            .list(query::endpoints(app, page), |r| {
                endpoint_from_row(r, &self.keys)
            })
            .await?;
        Ok(paginate(rows, page.limit, |e| e.id.to_string()))
    }

    async fn all_endpoints(&self, app: Option<&AppId>) -> Result<Vec<Endpoint>> {
        self.list(query::all_endpoints(app), |r| {
            endpoint_from_row(r, &self.keys)
        })
        .await
    }

    async fn update_endpoint(
        &self,
        ep: Endpoint,
        set_disabled: bool,
        read_at: u64,
    ) -> Result<Endpoint> {
        self.write_endpoint(&ep, false, set_disabled, Some(read_at))
            .await?;
        // As stored: `disabled` may not be what this update carried.
        self.get_endpoint(&ep.app_id, ep.id.as_str())
            .await?
            .ok_or_else(|| StoreError::NotFound("endpoint".into()))
    }

    async fn delete_endpoint(&self, app: &AppId, id: &EndpointId) -> Result<bool> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let gone = tx
            .execute(
                "DELETE FROM endpoints WHERE app_id = $1 AND id = $2",
                &[&app.as_str(), &id.as_str()],
            )
            .await?
            > 0;
        // Undelivered work for a deleted endpoint has nowhere to go; the
        // attempt log stays for inspection.
        tx.execute(
            "DELETE FROM deliveries WHERE endpoint_id = $1 AND status IN (1, 3)",
            &[&id.as_str()],
        )
        .await?;
        tx.execute(
            "DELETE FROM endpoint_circuits WHERE endpoint_id = $1",
            &[&id.as_str()],
        )
        .await?;
        tx.commit().await?;
        Ok(gone)
    }

    async fn mark_failing(&self, changes: Vec<(EndpointId, Option<u64>)>) -> Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        // Changes of state are rare (a streak starts or ends), and their
        // order matters: applied one by one, in one transaction.
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let failing = tx
            .prepare_cached(
                "UPDATE endpoints SET failing_since = $2 WHERE id = $1 AND failing_since IS NULL",
            )
            .await?;
        let healthy = tx
            .prepare_cached(
                "UPDATE endpoints SET failing_since = NULL WHERE id = $1 AND failing_since IS NOT NULL",
            )
            .await?;
        for (ep, since) in &changes {
            match since {
                Some(at) => tx.execute(&failing, &[&ep.as_str(), &(*at as i64)]).await?,
                None => tx.execute(&healthy, &[&ep.as_str()]).await?,
            };
        }
        tx.commit().await?;
        Ok(())
    }

    async fn disable_failing(
        &self,
        failing_before: u64,
        reason: &str,
        now_ms: u64,
    ) -> Result<Vec<(AppId, EndpointId, u64)>> {
        let client = self.client().await?;
        // The streak's start as it was: RETURNING sees the row after SET.
        let stmt = client
            .prepare_cached(
                "UPDATE endpoints e SET disabled = TRUE, disabled_reason = $2, failing_since = NULL, updated_at = $3
                 FROM (SELECT id, failing_since FROM endpoints
                       WHERE disabled = FALSE AND failing_since IS NOT NULL AND failing_since <= $1
                       FOR UPDATE) old
                 WHERE e.id = old.id AND e.disabled = FALSE AND e.failing_since IS NOT NULL
                 RETURNING e.app_id, e.id, old.failing_since",
            )
            .await?;
        let rows = client
            .query(
                &stmt,
                &[&(failing_before as i64), &reason, &(now_ms as i64)],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    AppId::from_trusted(r.try_get(0)?),
                    EndpointId::from_trusted(r.try_get(1)?),
                    r.try_get::<_, i64>(2)?.max(0) as u64,
                ))
            })
            .collect()
    }

    async fn circuits(&self, app: &AppId) -> Result<Vec<(EndpointId, CircuitSnapshot)>> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {CIRCUIT_COLS} FROM endpoint_circuits WHERE app_id = $1"
            ))
            .await?;
        client
            .query(&stmt, &[&app.as_str()])
            .await?
            .iter()
            .map(circuit_from_row)
            .collect()
    }

    async fn save_circuit(
        &self,
        app: &AppId,
        ep: &EndpointId,
        snapshot: &CircuitSnapshot,
    ) -> Result<()> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "INSERT INTO endpoint_circuits (app_id, endpoint_id, state, since, last_error, consecutive_failures)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (endpoint_id) DO UPDATE SET state = $3, since = $4, last_error = $5,
                   consecutive_failures = $6",
            )
            .await?;
        client
            .execute(
                &stmt,
                &[
                    &app.as_str(),
                    &ep.as_str(),
                    &snapshot.state.as_str(),
                    &(snapshot.since as i64),
                    &snapshot.last_error,
                    &i64::from(snapshot.consecutive_failures),
                ],
            )
            .await?;
        Ok(())
    }
}

impl PgStore {
    async fn write_endpoint(
        &self,
        ep: &Endpoint,
        insert: bool,
        set_disabled: bool,
        read_at: Option<u64>,
    ) -> Result<()> {
        let client = self.client().await?;
        write_endpoint_on(&client, &self.keys, ep, insert, set_disabled, read_at).await
    }
}

/// Inserts or updates an endpoint through `client` (a connection or a
/// transaction).
async fn write_endpoint_on(
    client: &impl deadpool_postgres::GenericClient,
    keys: &Keyring,
    ep: &Endpoint,
    insert: bool,
    set_disabled: bool,
    read_at: Option<u64>,
) -> Result<()> {
    {
        let sql = if insert {
            format!(
                "INSERT INTO endpoints ({EP_COLS}) SELECT $1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$21,$22
                 WHERE $20::bool IS NOT NULL AND $23::bigint IS NOT NULL"
            )
        } else {
            "UPDATE endpoints SET app_id=$2, uid=$3, url=$4, description=$5, disabled=CASE WHEN $20::bool THEN $6 ELSE disabled END, filter_types=$7, channels=$8,
               rate_limit=$9, metadata=$10, headers=$11, secret=$12, retired_secrets=$13, created_at=$14, updated_at=$15,
               payload_filter=$16, concurrency_limit=$17, circuit_breaker=$18,
               disabled_reason=CASE WHEN $20::bool THEN $19 ELSE disabled_reason END, fifo=$21, auth=$22
             WHERE id=$1 AND updated_at=$23"
                .to_string()
        };
        let (secret, retired_secrets, headers, auth) = sealed_endpoint(keys, ep)?;
        let stmt = client.prepare_cached(&sql).await?;
        let changed = client
            .execute(
                &stmt,
                &[
                    &ep.id.as_str(),
                    &ep.app_id.as_str(),
                    &ep.uid.as_ref().map(Uid::as_str),
                    &ep.url.as_str(),
                    &ep.description,
                    &ep.disabled,
                    &opt_json_text(&ep.filter_types)?,
                    &opt_json_text(&ep.channels)?,
                    &ep.rate_limit.map(i64::from),
                    &json_text(&ep.metadata)?,
                    &headers,
                    &secret,
                    &retired_secrets,
                    &(ep.created_at as i64),
                    &(ep.updated_at as i64),
                    &opt_json_text(&ep.payload_filter)?,
                    &ep.concurrency_limit.map(i64::from),
                    &opt_json_text(&ep.circuit_breaker)?,
                    &ep.disabled_reason,
                    &set_disabled,
                    &ep.fifo,
                    &auth,
                    &read_at.map_or(-1i64, |t| t as i64),
                ],
            )
            .await
            .map_err(conflict_or("an endpoint with this uid"))?;
        if changed == 0 {
            return Err(StoreError::Stale("endpoint".into()));
        }
        Ok(())
    }
}
