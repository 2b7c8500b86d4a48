//! API tokens and app-portal sessions on PostgreSQL.

use super::*;

#[async_trait]
impl TokenStore for PgStore {
    async fn insert_token(&self, t: ApiToken) -> Result<ApiToken> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "INSERT INTO api_tokens ({TOKEN_COLS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)"
            ))
            .await?;
        client
            .execute(
                &stmt,
                &[
                    &t.id.as_str(),
                    &t.kind.as_str(),
                    &t.name,
                    &t.token_sha256,
                    &t.censored,
                    &t.app_id.as_ref().map(AppId::as_str),
                    &t.read_only,
                    &opt_json_text(&t.capabilities)?,
                    &t.session_id,
                    &(t.created_at as i64),
                    &t.expires_at.map(|e| e as i64),
                ],
            )
            .await
            .map_err(conflict_or("a token with this value"))?;
        Ok(t)
    }

    async fn token_by_hash(&self, sha256_hex: &str) -> Result<Option<ApiToken>> {
        fetch_one(
            &self.client().await?,
            &format!("SELECT {TOKEN_COLS} FROM api_tokens WHERE token_sha256 = $1"),
            &[&sha256_hex],
            token_from_row,
        )
        .await
    }

    async fn get_token(&self, id: &TokenId) -> Result<Option<ApiToken>> {
        fetch_one(
            &self.client().await?,
            &format!("SELECT {TOKEN_COLS} FROM api_tokens WHERE id = $1"),
            &[&id.as_str()],
            token_from_row,
        )
        .await
    }

    async fn list_tokens(&self, kind: TokenKind, page: &PageRequest) -> Result<Page<ApiToken>> {
        let rows = self.list(query::tokens(kind, page), token_from_row).await?;
        Ok(paginate(rows, page.limit, |t| t.id.to_string()))
    }

    async fn expire_token(&self, id: &TokenId, at_ms: u64) -> Result<bool> {
        let client = self.client().await?;
        Ok(client
            .execute(
                "UPDATE api_tokens SET expires_at = LEAST(COALESCE(expires_at, $2), $2) WHERE id = $1",
                &[&id.as_str(), &(at_ms as i64)],
            )
            .await?
            > 0)
    }

    async fn expire_app_tokens(
        &self,
        app: &AppId,
        sessions: Option<&[String]>,
        at_ms: u64,
    ) -> Result<u64> {
        let client = self.client().await?;
        let sessions: Option<Vec<&str>> = sessions.map(|s| s.iter().map(String::as_str).collect());
        Ok(client
            .execute(
                "UPDATE api_tokens SET expires_at = LEAST(COALESCE(expires_at, $3), $3)
                 WHERE app_id = $1 AND kind = 'app-portal'
                   AND ($2::text[] IS NULL OR session_id = ANY($2))",
                &[&app.as_str(), &sessions, &(at_ms as i64)],
            )
            .await?)
    }

    async fn purge_tokens(&self, before_ms: u64) -> Result<u64> {
        let client = self.client().await?;
        Ok(client
            .execute(
                "DELETE FROM api_tokens WHERE expires_at < $1",
                &[&(before_ms as i64)],
            )
            .await?)
    }
}
