//! Messages on SQLite: intake (one message per write job; the writer
//! groups the jobs into one commit), reads and retention.

use super::*;
use rusqlite::{Connection, params};
use switchyard_core::{id_floor_for_time, partition_of};

fn find_message_sync(
    conn: &Connection,
    app: &str,
    column: &str,
    value: &str,
) -> Result<Option<Message>> {
    query_first(
        conn,
        &format!(
            "SELECT {MSG_COLS}, m.payload FROM messages m WHERE m.app_id = ? AND m.{column} = ?"
        ),
        [app, value],
        |r| message_from_row(r, true),
    )
}

#[async_trait]
impl MessageStore for SqliteStore {
    async fn accept(&self, new: NewMessage) -> Result<Accepted> {
        self.write_fast(move |conn| {
            let m = &new.message;
            let inserted = conn
                .prepare_cached(
                    "INSERT INTO messages (id, app_id, event_type, event_id, idem_key, channels, tags, payload, created_at, forward)
                     VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10) ON CONFLICT DO NOTHING",
                )?
                .execute(params![
                    m.id.as_str(),
                    m.app_id.as_str(),
                    m.event_type.as_str(),
                    m.event_id,
                    new.idempotency_key,
                    opt_json_text(&m.channels)?,
                    opt_json_text(&m.tags)?,
                    m.payload.as_deref().map(payload_value),
                    m.created_at as i64,
                    opt_json_text(&m.forward)?
                ])?;
            if inserted == 0 {
                let app = m.app_id.as_str();
                let by_key = match &new.idempotency_key {
                    Some(key) => find_message_sync(conn, app, "idem_key", key)?,
                    None => None,
                };
                let existing = match (by_key, &m.event_id) {
                    (Some(found), _) => Some(found),
                    (None, Some(event_id)) => find_message_sync(conn, app, "event_id", event_id)?,
                    (None, None) => None,
                };
                return existing
                    .map(Accepted::Existing)
                    .ok_or_else(|| StoreError::Conflict("a message with this id".into()));
            }
            let mut stmt = conn.prepare_cached(
                "INSERT INTO deliveries (msg_id, endpoint_id, app_id, status, attempts, next_attempt_at, partition, updated_at, fifo)
                 VALUES (?1,?2,?3,?4,0,
                   CASE WHEN ?7 AND EXISTS (
                     SELECT 1 FROM deliveries e
                     WHERE e.fifo = 1 AND e.status IN (1, 3) AND e.endpoint_id = ?2
                       AND e.msg_id < ?1)
                   THEN NULL ELSE ?5 END,
                   ?6,?5,?7)",
            )?;
            for d in &new.deliveries {
                stmt.execute(params![
                    m.id.as_str(),
                    d.endpoint_id.as_str(),
                    m.app_id.as_str(),
                    initial_status(d) as u8,
                    m.created_at as i64,
                    partition_of(&d.endpoint_id),
                    d.fifo
                ])?;
            }
            Ok(Accepted::Created(new.message))
        })
        .await
    }

    async fn get_message(&self, app: &AppId, id_or_event_id: &str) -> Result<Option<Message>> {
        let (app, key) = (app.to_string(), id_or_event_id.to_owned());
        self.read(move |conn| {
            let column = if MessageId::parse(&key).is_some() {
                "id"
            } else {
                "event_id"
            };
            find_message_sync(conn, &app, column, &key)
        })
        .await
    }

    async fn list_messages(&self, app: &AppId, filter: &MessageFilter) -> Result<Page<Message>> {
        let with_content = filter.with_content;
        let q = query::messages(app, filter);
        let rows = self
            .list(q, move |r| message_from_row(r, with_content))
            .await?;
        Ok(paginate(rows, filter.page.limit, |m| m.id.to_string()))
    }

    async fn expunge_message_content(&self, app: &AppId, id: &MessageId) -> Result<bool> {
        let (app, id) = (app.to_string(), id.to_string());
        self.write(move |conn| {
            Ok(conn.execute(
                "UPDATE messages SET payload = NULL WHERE app_id = ? AND id = ?",
                [app, id],
            )? > 0)
        })
        .await
    }

    async fn purge_messages(&self, before_ms: u64, limit: usize) -> Result<u64> {
        let floor = id_floor_for_time(MessageId::PREFIX, before_ms);
        self.write(move |conn| {
            // Ids sort by time, so each application's old messages are a
            // range of the (app_id, id) index: no scan of the whole table.
            let old = query_all(
                conn,
                "SELECT m.app_id, m.id FROM applications a
                 JOIN messages m ON m.app_id = a.id AND m.id < ?1
                 WHERE NOT EXISTS (SELECT 1 FROM deliveries d
                                   WHERE d.msg_id = m.id AND d.status IN (1, 3))
                 LIMIT ?2",
                params![floor, limit as i64],
                |r| Ok((r.text("app_id")?, r.text("id")?)),
            )?;
            let mut attempts = conn.prepare_cached("DELETE FROM attempts WHERE msg_id = ?")?;
            let mut deliveries = conn.prepare_cached("DELETE FROM deliveries WHERE msg_id = ?")?;
            let mut messages =
                conn.prepare_cached("DELETE FROM messages WHERE app_id = ? AND id = ?")?;
            for (app_id, id) in &old {
                attempts.execute([id])?;
                deliveries.execute([id])?;
                messages.execute([app_id, id])?;
            }
            Ok(old.len() as u64)
        })
        .await
    }
}
