//! API tokens and app-portal sessions on SQLite.

use super::*;
use rusqlite::params;

#[async_trait]
impl TokenStore for SqliteStore {
    async fn insert_token(&self, t: ApiToken) -> Result<ApiToken> {
        self.write(move |conn| {
            conn.prepare_cached(&format!(
                "INSERT INTO api_tokens ({TOKEN_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)"
            ))?
            .execute(params![
                t.id.as_str(),
                t.kind.as_str(),
                t.name,
                t.token_sha256,
                t.censored,
                t.app_id.as_ref().map(AppId::as_str),
                t.read_only,
                opt_json_text(&t.capabilities)?,
                t.session_id,
                t.created_at as i64,
                t.expires_at.map(|e| e as i64),
            ])
            .map_err(|e| conflict_or(e, "a token with this value"))?;
            Ok(t)
        })
        .await
    }

    async fn token_by_hash(&self, sha256_hex: &str) -> Result<Option<ApiToken>> {
        let hash = sha256_hex.to_owned();
        self.read(move |conn| {
            query_first(
                conn,
                &format!("SELECT {TOKEN_COLS} FROM api_tokens WHERE token_sha256 = ?"),
                [hash],
                |r| token_from_row(r),
            )
        })
        .await
    }

    async fn get_token(&self, id: &TokenId) -> Result<Option<ApiToken>> {
        let id = id.to_string();
        self.read(move |conn| {
            query_first(
                conn,
                &format!("SELECT {TOKEN_COLS} FROM api_tokens WHERE id = ?"),
                [id],
                |r| token_from_row(r),
            )
        })
        .await
    }

    async fn list_tokens(&self, kind: TokenKind, page: &PageRequest) -> Result<Page<ApiToken>> {
        let rows = self
            .list(query::tokens(kind, page), |r| token_from_row(r))
            .await?;
        Ok(paginate(rows, page.limit, |t| t.id.to_string()))
    }

    async fn expire_token(&self, id: &TokenId, at_ms: u64) -> Result<bool> {
        let id = id.to_string();
        self.write(move |conn| {
            let found = conn.execute(
                "UPDATE api_tokens SET expires_at = MIN(COALESCE(expires_at, ?2), ?2) WHERE id = ?1",
                params![id, at_ms as i64],
            )?;
            Ok(found > 0)
        })
        .await
    }

    async fn expire_app_tokens(
        &self,
        app: &AppId,
        sessions: Option<&[String]>,
        at_ms: u64,
    ) -> Result<u64> {
        let app = app.to_string();
        let sessions = sessions.map(<[String]>::to_vec);
        self.write(move |conn| {
            let mut stmt = conn.prepare_cached(
                "UPDATE api_tokens SET expires_at = MIN(COALESCE(expires_at, ?3), ?3)
                 WHERE app_id = ?1 AND kind = 'app-portal' AND (?2 IS NULL OR session_id = ?2)",
            )?;
            let mut changed = 0;
            match sessions {
                None => changed += stmt.execute(params![app, None::<String>, at_ms as i64])?,
                Some(list) => {
                    for session in list {
                        changed += stmt.execute(params![app, session, at_ms as i64])?;
                    }
                }
            }
            Ok(changed as u64)
        })
        .await
    }

    async fn purge_tokens(&self, before_ms: u64) -> Result<u64> {
        self.write(move |conn| {
            Ok(conn.execute(
                "DELETE FROM api_tokens WHERE expires_at < ?",
                [before_ms as i64],
            )? as u64)
        })
        .await
    }
}
