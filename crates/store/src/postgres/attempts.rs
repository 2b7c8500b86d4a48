//! The attempt log on PostgreSQL.

use super::*;

#[async_trait]
impl AttemptStore for PgStore {
    async fn list_attempts(&self, f: &AttemptFilter) -> Result<Page<Attempt>> {
        let needs_message = f.event_types.is_some() || f.channel.is_some();
        let mut q = Query::new(format!("SELECT {ATTEMPT_COLS} FROM attempts a"));
        if needs_message {
            q.push(" JOIN messages m ON m.app_id = a.app_id AND m.id = a.msg_id");
        }
        q.push(" WHERE TRUE");
        for (column, value) in [
            ("a.app_id", f.app_id.as_ref().map(|v| v.to_string())),
            (
                "a.endpoint_id",
                f.endpoint_id.as_ref().map(|v| v.to_string()),
            ),
            ("a.msg_id", f.msg_id.as_ref().map(|v| v.to_string())),
        ] {
            if let Some(v) = value {
                let p = q.bind(v);
                q.push(&format!(" AND {column} = {p}"));
            }
        }
        if let Some(status) = f.status {
            let p = q.bind(i16::from(status));
            q.push(&format!(" AND a.status = {p}"));
        }
        if let Some(before) = f.before_ms {
            let p = q.bind(before as i64);
            q.push(&format!(" AND a.created_at < {p}"));
        }
        if let Some(after) = f.after_ms {
            let p = q.bind(after as i64);
            q.push(&format!(" AND a.created_at > {p}"));
        }
        if needs_message {
            q.message_filter(&MessageFilter {
                event_types: f.event_types.clone(),
                channel: f.channel.clone(),
                ..Default::default()
            });
        }
        q.keyset("a.id", &f.page);
        let rows = q.run(&self.client().await?, attempt_from_row).await?;
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
