//! The attempt log on SQLite.

use super::*;
use rusqlite::types::Value as SqlValue;

#[async_trait]
impl AttemptStore for SqliteStore {
    async fn list_attempts(&self, filter: &AttemptFilter) -> Result<Page<Attempt>> {
        let f = filter.clone();
        self.read(move |conn| {
            let mut sql = format!("SELECT {ATTEMPT_COLS} FROM attempts a");
            let needs_message = f.event_types.is_some() || f.channel.is_some();
            if needs_message {
                sql.push_str(" JOIN messages m ON m.app_id = a.app_id AND m.id = a.msg_id");
            }
            sql.push_str(" WHERE 1=1");
            let mut args = Vec::new();
            for (column, value) in [
                ("a.app_id", f.app_id.as_ref().map(|v| v.to_string())),
                (
                    "a.endpoint_id",
                    f.endpoint_id.as_ref().map(|v| v.to_string()),
                ),
                ("a.msg_id", f.msg_id.as_ref().map(|v| v.to_string())),
            ] {
                if let Some(v) = value {
                    sql.push_str(&format!(" AND {column} = ?"));
                    args.push(SqlValue::Text(v));
                }
            }
            if let Some(status) = f.status {
                sql.push_str(" AND a.status = ?");
                args.push(SqlValue::Integer(status.into()));
            }
            if let Some(before) = f.before_ms {
                sql.push_str(" AND a.created_at < ?");
                args.push(SqlValue::Integer(before as i64));
            }
            if let Some(after) = f.after_ms {
                sql.push_str(" AND a.created_at > ?");
                args.push(SqlValue::Integer(after as i64));
            }
            if needs_message {
                let mf = MessageFilter {
                    event_types: f.event_types.clone(),
                    channel: f.channel.clone(),
                    ..Default::default()
                };
                message_filter_sql(&mut sql, &mut args, &mf);
            }
            keyset(&mut sql, &mut args, "a.id", &f.page);
            let rows = query_all(conn, &sql, args, |r| attempt_from_row(r))?;
            Ok(paginate(rows, f.page.limit, |a| a.id.to_string()))
        })
        .await
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
