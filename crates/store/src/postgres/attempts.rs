//! The attempt log on PostgreSQL.

use super::*;

#[async_trait]
impl AttemptStore for PgStore {
    async fn list_attempts(&self, f: &AttemptFilter) -> Result<Page<Attempt>> {
        let rows = self.list(query::attempts(f), attempt_from_row).await?;
        Ok(paginate(rows, f.page.limit, |a| a.id.to_string()))
    }

    async fn get_attempt(
        &self,
        app: &AppId,
        msg: &MessageId,
        id: &AttemptId,
    ) -> Result<Option<Attempt>> {
        let client = self.client().await?;
        fetch_one(
            &client,
            &format!("SELECT {ATTEMPT_COLS} FROM attempts a WHERE a.app_id = $1 AND a.msg_id = $2 AND a.id = $3"),
            &[&app.as_str(), &msg.as_str(), &id.as_str()],
            attempt_from_row,
        )
        .await
    }
}
