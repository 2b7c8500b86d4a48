//! Idempotency records and settings on PostgreSQL.

use super::*;

#[async_trait]
impl IdempotencyStore for PgStore {
    async fn idempotent_response(&self, key: &str) -> Result<Option<StoredResponse>> {
        Ok(fetch_one(
            &self.client().await?,
            "SELECT key, status, body, created_at FROM idempotency WHERE key = $1",
            &[&key],
            |r| stored_response_from_row(r, &self.keys),
        )
        .await?
        .flatten())
    }

    async fn save_idempotent_response(&self, key: &str, response: StoredResponse) -> Result<()> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO idempotency (key, status, body, created_at) VALUES ($1,$2,$3,$4) ON CONFLICT DO NOTHING",
                &[
                    &key,
                    &i32::from(response.status),
                    &self.keys.seal(&idempotency_place(key), &response.body),
                    &(response.created_at as i64),
                ],
            )
            .await?;
        Ok(())
    }

    async fn purge_idempotency(&self, before_ms: u64) -> Result<u64> {
        let client = self.client().await?;
        Ok(client
            .execute(
                "DELETE FROM idempotency WHERE created_at < $1",
                &[&(before_ms as i64)],
            )
            .await?)
    }
}

#[async_trait]
impl SettingStore for PgStore {
    async fn get_setting(&self, key: &str) -> Result<Option<String>> {
        let client = self.client().await?;
        Ok(client
            .query_opt("SELECT value FROM settings WHERE key = $1", &[&key])
            .await?
            .map(|r| r.try_get(0))
            .transpose()?)
    }

    async fn init_setting(&self, key: &str, value: &str) -> Result<bool> {
        let client = self.client().await?;
        Ok(client
            .execute(
                "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&key, &value],
            )
            .await?
            > 0)
    }

    async fn reseal_secrets(&self) -> Result<u64> {
        let client = self.client().await?;
        let mut changed = 0;
        for &(table, columns) in SEALED {
            let select = reseal_select(table, columns, "$1");
            let mut after = String::new();
            loop {
                let rows = client.query(&select, &[&after]).await?;
                let Some(last) = rows.last() else { break };
                after = last.try_get(0)?;
                for row in &rows {
                    let id: String = row.try_get(0)?;
                    for (i, column) in columns.iter().enumerate() {
                        let stored: String = row.try_get(i + 1)?;
                        changed += self.reseal_one(&client, table, column, &id, stored).await?;
                    }
                }
            }
        }
        Ok(changed)
    }

    async fn sealed_counts(&self) -> Result<Vec<SealedCount>> {
        let client = self.client().await?;
        let mut out = Vec::new();
        for &(table, columns) in SEALED {
            for column in columns.iter().copied() {
                for row in client
                    .query(&sealed_counts_select(table, column), &[])
                    .await?
                {
                    let key: String = row.try_get(0)?;
                    let count: i64 = row.try_get(1)?;
                    out.push(SealedCount {
                        column: format!("{table}.{column}"),
                        key_id: (!key.is_empty()).then_some(key),
                        count: count.max(0) as u64,
                    });
                }
            }
        }
        Ok(out)
    }

    async fn replace_setting(&self, key: &str, value: &str) -> Result<()> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = $2",
                &[&key, &value],
            )
            .await?;
        Ok(())
    }
}

impl PgStore {
    /// Re-seals one value; a node that wrote it since it was read wins, and
    /// its value is read and re-sealed in turn. 0 when it was current or
    /// its row is gone.
    async fn reseal_one(
        &self,
        client: &deadpool_postgres::Client,
        table: &str,
        column: &str,
        id: &str,
        mut stored: String,
    ) -> Result<u64> {
        let update = reseal_update(table, column, ["$1", "$2", "$3"]);
        let reread = format!("SELECT {column} FROM {table} WHERE id = $1");
        loop {
            let Some(new) = resealed(&self.keys, table, column, id, &stored)? else {
                return Ok(0);
            };
            if client.execute(&update, &[&new, &id, &stored]).await? > 0 {
                return Ok(1);
            }
            match client.query_opt(&reread, &[&id]).await? {
                Some(row) => stored = row.try_get(0)?,
                None => return Ok(0),
            }
        }
    }
}
