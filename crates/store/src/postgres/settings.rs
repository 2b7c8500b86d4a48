//! Idempotency records and settings on PostgreSQL.

use super::*;

#[async_trait]
impl IdempotencyStore for PgStore {
    async fn idempotent_response(&self, key: &str) -> Result<Option<StoredResponse>> {
        fetch_one(
            &self.client().await?,
            "SELECT status, body, created_at FROM idempotency WHERE key = $1",
            &[&key],
            stored_response_from_row,
        )
        .await
    }

    async fn save_idempotent_response(&self, key: &str, response: StoredResponse) -> Result<()> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO idempotency (key, status, body, created_at) VALUES ($1,$2,$3,$4) ON CONFLICT DO NOTHING",
                &[
                    &key,
                    &i32::from(response.status),
                    &response.body,
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
