//! The attempt log on SQLite.

use super::*;

#[async_trait]
impl AttemptStore for SqliteStore {
    async fn list_attempts(&self, filter: &AttemptFilter) -> Result<Page<Attempt>> {
        let rows = self
            .list(query::attempts(filter), |r| attempt_from_row(r))
            .await?;
        Ok(paginate(rows, filter.page.limit, |a| a.id.to_string()))
    }

    async fn get_attempt(
        &self,
        app: &AppId,
        msg: &MessageId,
        id: &AttemptId,
    ) -> Result<Option<Attempt>> {
        let (app, msg, id) = (app.to_string(), msg.to_string(), id.to_string());
        self.read(move |conn| {
            query_first(
                conn,
                &format!(
                    "SELECT {ATTEMPT_COLS} FROM attempts a
                     WHERE a.app_id = ? AND a.msg_id = ? AND a.id = ?"
                ),
                [app, msg, id],
                |r| attempt_from_row(r),
            )
        })
        .await
    }
}
