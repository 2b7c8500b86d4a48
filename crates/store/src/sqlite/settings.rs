//! Idempotency records and settings on SQLite.

use super::*;
use rusqlite::{OptionalExtension, params};

#[async_trait]
impl IdempotencyStore for SqliteStore {
    async fn idempotent_response(&self, key: &str) -> Result<Option<StoredResponse>> {
        let key = key.to_owned();
        let keys = self.keys.clone();
        self.read(move |conn| {
            query_first(
                conn,
                "SELECT key, status, body, created_at FROM idempotency WHERE key = ?",
                [key],
                |r| stored_response_from_row(r, &keys),
            )
            .map(Option::flatten)
        })
        .await
    }

    async fn save_idempotent_response(&self, key: &str, response: StoredResponse) -> Result<()> {
        let body = self.keys.seal(&idempotency_place(key), &response.body);
        let key = key.to_owned();
        self.write(move |conn| {
            conn.execute(
                "INSERT INTO idempotency (key, status, body, created_at) VALUES (?,?,?,?) ON CONFLICT DO NOTHING",
                params![key, response.status, body, response.created_at as i64],
            )?;
            Ok(())
        })
        .await
    }

    async fn purge_idempotency(&self, before_ms: u64) -> Result<u64> {
        self.write(move |conn| {
            Ok(conn.execute(
                "DELETE FROM idempotency WHERE created_at < ?",
                [before_ms as i64],
            )? as u64)
        })
        .await
    }
}

#[async_trait]
impl SettingStore for SqliteStore {
    async fn get_setting(&self, key: &str) -> Result<Option<String>> {
        let key = key.to_owned();
        self.read(move |conn| {
            Ok(conn
                .query_row("SELECT value FROM settings WHERE key = ?", [key], |r| {
                    r.get(0)
                })
                .optional()?)
        })
        .await
    }

    async fn init_setting(&self, key: &str, value: &str) -> Result<bool> {
        let (key, value) = (key.to_owned(), value.to_owned());
        self.write(move |conn| {
            Ok(conn.execute(
                "INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT DO NOTHING",
                [key, value],
            )? > 0)
        })
        .await
    }

    async fn reseal_secrets(&self) -> Result<u64> {
        let mut changed = 0;
        for &(table, columns) in SEALED {
            let mut after = String::new();
            loop {
                let keys = self.keys.clone();
                // One writer: nothing changes a row between its read and
                // its update, so the compare in the update always holds.
                let (count, last) = self
                    .write(move |conn| {
                        let mut stmt = conn.prepare(&reseal_select(table, columns, "?"))?;
                        let rows = stmt
                            .query_map([&after], |r| {
                                let values: rusqlite::Result<Vec<String>> =
                                    (0..=columns.len()).map(|i| r.get(i)).collect();
                                values
                            })?
                            .collect::<rusqlite::Result<Vec<_>>>()?;
                        let mut count = 0;
                        for row in &rows {
                            let id = &row[0];
                            for (column, stored) in columns.iter().zip(&row[1..]) {
                                if let Some(new) = resealed(&keys, table, column, id, stored)? {
                                    count += conn.execute(
                                        &reseal_update(table, column, ["?1", "?2", "?3"]),
                                        params![new, id, stored],
                                    )? as u64;
                                }
                            }
                        }
                        Ok((count, rows.last().map(|r| r[0].clone())))
                    })
                    .await?;
                changed += count;
                match last {
                    Some(id) => after = id,
                    None => break,
                }
            }
        }
        Ok(changed)
    }

    async fn sealed_counts(&self) -> Result<Vec<SealedCount>> {
        self.read(move |conn| {
            let mut out = Vec::new();
            for &(table, columns) in SEALED {
                for column in columns.iter().copied() {
                    let mut stmt = conn.prepare(&sealed_counts_select(table, column))?;
                    let rows =
                        stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
                    for row in rows {
                        let (key, count) = row?;
                        out.push(SealedCount {
                            column: format!("{table}.{column}"),
                            key_id: (!key.is_empty()).then_some(key),
                            count: count.max(0) as u64,
                        });
                    }
                }
            }
            Ok(out)
        })
        .await
    }

    async fn replace_setting(&self, key: &str, value: &str) -> Result<()> {
        let (key, value) = (key.to_owned(), value.to_owned());
        self.write(move |conn| {
            conn.execute(
                "INSERT INTO settings (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = ?2",
                [key, value],
            )?;
            Ok(())
        })
        .await
    }
}
