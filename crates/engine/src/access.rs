//! Who may do what: API tokens and app-portal sessions, what each grants,
//! and the one rule that decides whether a grant allows an action.
//!
//! Besides the admin token (`admin`), an admin (or an organisation-wide
//! token that may write) creates:
//! - **API tokens** (`syk_…`): for the whole organisation or one
//!   application, optionally read-only, optionally expiring;
//! - **app-portal sessions** (`appsk_…`, `POST /api/v1/auth/app-portal-access/{app_id}`,
//!   as in Svix): one application, 1 hour to 7 days, with Svix's
//!   capabilities (`ViewBase`, `ViewEndpointSecret`, `ManageEndpointSecret`,
//!   `ManageTransformations`, `CreateAttempts`, `ManageEndpoint`).
//!
//! Only a token's SHA-256 is stored. Grants are cached per node for at most
//! [`GRANT_CACHE_TTL`]; an expiry or revocation clears every node's cache at
//! once (a cluster event), the TTL only bounds a missed event.

use crate::{Engine, EngineError};
use base64::Engine as _;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchyard_core::{AppId, TokenId};
use switchyard_store::{ApiToken, ClusterEvent, Page, PageRequest, TokenKind};

/// How long a node trusts a token it looked up without looking again.
pub const GRANT_CACHE_TTL: Duration = Duration::from_secs(10);
/// Tokens remembered per node (valid or not); the cache is emptied when full.
const GRANT_CACHE_ENTRIES: usize = 10_000;
/// App-portal sessions last 1 hour to 7 days (7 days by default), as in Svix.
pub const PORTAL_EXPIRY_SECS: std::ops::RangeInclusive<u64> = 3_600..=604_800;
/// Longest expiry of an API token: 10 years.
pub const MAX_API_TOKEN_EXPIRY_SECS: u64 = 10 * 365 * 86_400;
/// Longest delay of an expiry set on an existing token (3 days, as in Svix).
pub const MAX_EXPIRE_DELAY_SECS: u64 = 259_200;
/// Session ids per expire-all request, as in Svix.
pub const MAX_SESSION_IDS: usize = 1_000;

/// What a request does, as far as access is concerned. The API maps every
/// route to one (`switchyard_api`'s route table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Reading an application and what is in it, endpoint secrets aside.
    AppRead,
    /// Reading a signing secret (or a source's config, which holds one).
    SecretRead,
    /// Rotating an endpoint's signing secret.
    SecretWrite,
    /// Creating, changing or deleting endpoints and their settings.
    EndpointWrite,
    /// Resending and recovering deliveries.
    AttemptWrite,
    /// Publishing messages, or removing their content.
    MessageWrite,
    /// Changing or deleting the application itself.
    AppWrite,
    /// Reading the event-type catalogue (what an endpoint can subscribe to).
    EventTypeRead,
    /// Anything else that reads (lists of applications, sources, the cluster).
    GlobalRead,
    /// Anything else that writes.
    GlobalWrite,
    /// The caller's own session: whoami and logout.
    Session,
    /// Managing API tokens: the admin token only.
    Admin,
}

impl Action {
    /// Whether the action changes anything (what read-only tokens may not do).
    fn writes(self) -> bool {
        !matches!(
            self,
            Self::AppRead | Self::EventTypeRead | Self::GlobalRead | Self::Session
        )
    }
}

/// Svix's app-portal capabilities.
pub const CAPABILITIES: [&str; 6] = [
    "ViewBase",
    "ViewEndpointSecret",
    "ManageEndpointSecret",
    "ManageTransformations",
    "CreateAttempts",
    "ManageEndpoint",
];

/// What a presented token may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    Admin,
    Token(Arc<TokenGrant>),
}

/// A stored token's rights, as checked on each request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenGrant {
    pub id: TokenId,
    pub kind: TokenKind,
    pub app_id: Option<AppId>,
    pub read_only: bool,
    /// App-portal capabilities; `None`: all.
    pub capabilities: Option<Vec<String>>,
    pub session_id: Option<String>,
    pub expires_at: Option<u64>,
}

/// Why a grant does not reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// The token is limited to another application (or to one application,
    /// and this is not about an application).
    OtherApplication,
    /// The token may not do this at all.
    NotAllowed(&'static str),
}

impl Grant {
    /// Whether this grant allows `action` on the application `app` (the
    /// one the route names, resolved to its id; `None` when the route names
    /// none, or names one that does not exist). The one access rule.
    pub fn allows(&self, action: Action, app: Option<&AppId>) -> Result<(), Denied> {
        let Grant::Token(t) = self else {
            return Ok(());
        };
        if action == Action::Admin {
            return Err(Denied::NotAllowed(
                "only the admin token manages API tokens",
            ));
        }
        if action == Action::Session {
            return Ok(());
        }
        if t.read_only && (action.writes() || action == Action::SecretRead) {
            return Err(Denied::NotAllowed(
                "this token is read-only (and does not show secrets)",
            ));
        }
        let Some(own) = &t.app_id else {
            // Organisation-wide: everything but token management.
            return Ok(());
        };
        let app_scoped = matches!(
            action,
            Action::AppRead
                | Action::SecretRead
                | Action::SecretWrite
                | Action::EndpointWrite
                | Action::AttemptWrite
                | Action::MessageWrite
                | Action::AppWrite
        );
        if action == Action::EventTypeRead {
            return Ok(());
        }
        if !app_scoped || app != Some(own) {
            return Err(Denied::OtherApplication);
        }
        match t.kind {
            TokenKind::Api => match action {
                Action::AppWrite => Err(Denied::NotAllowed(
                    "a token of one application does not change or delete it",
                )),
                _ => Ok(()),
            },
            TokenKind::AppPortal => {
                let has = |c: &str| {
                    t.capabilities
                        .as_ref()
                        .is_none_or(|list| list.iter().any(|x| x == c))
                };
                let manage = has("ManageEndpoint");
                let allowed = match action {
                    Action::AppRead => true,
                    Action::SecretRead => {
                        manage || has("ViewEndpointSecret") || has("ManageEndpointSecret")
                    }
                    Action::SecretWrite => manage || has("ManageEndpointSecret"),
                    Action::EndpointWrite => manage,
                    Action::AttemptWrite => has("CreateAttempts"),
                    _ => false,
                };
                if allowed {
                    Ok(())
                } else {
                    Err(Denied::NotAllowed(
                        "this app-portal session's capabilities do not allow it",
                    ))
                }
            }
        }
    }
}

/// A new API token (`POST /api/v1/auth/api-token`).
#[derive(Debug, Clone, Default)]
pub struct ApiTokenInput {
    pub name: String,
    /// The one application (id or uid) it reaches; `None`: all.
    pub app: Option<String>,
    pub read_only: bool,
    /// Seconds until it expires; `None`: never.
    pub expiry_secs: Option<u64>,
}

/// A new app-portal session (Svix's `AppPortalAccessIn`).
#[derive(Debug, Clone, Default)]
pub struct PortalAccessInput {
    /// Deprecated in Svix: the same as `capabilities: ["ViewBase"]`.
    pub read_only: Option<bool>,
    pub capabilities: Option<Vec<String>>,
    /// Seconds, 3600 to 604800 (default 604800).
    pub expiry_secs: Option<u64>,
    pub session_id: Option<String>,
    /// An application to create when none has the path's id or uid.
    pub application: Option<crate::AppInput>,
}

/// Lower-case hex SHA-256 of a token, as stored (the admin token's hash,
/// [`crate::admin::token_hash`], in the form the token table keeps).
fn hash_hex(token: &str) -> String {
    hex::encode(crate::admin::token_hash(token))
}

/// A new token: `prefix` and 32 random bytes, base64url.
fn new_token(prefix: &str) -> String {
    let bytes: [u8; 32] = rand::random();
    format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

fn censored(token: &str) -> String {
    let shown: String = token.chars().take(10).collect();
    format!("{shown}…")
}

fn check_session_id(field: &str, id: &str) -> Result<(), EngineError> {
    let ok = (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'@' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(EngineError::invalid(
            field,
            "must be 1 to 64 characters of letters, digits, '@', '_' and '-'",
        ))
    }
}

/// Cached grants by token hash: `None` remembers an unknown token, so a
/// client trying tokens costs one lookup per token per TTL.
#[derive(Default)]
pub(crate) struct GrantCache {
    entries: Mutex<HashMap<String, CachedGrant>>,
}

/// A lookup's result (`None`: no such token) and when it was made.
type CachedGrant = (Option<Arc<TokenGrant>>, Instant);

impl GrantCache {
    pub(crate) fn clear(&self) {
        if let Ok(mut e) = self.entries.lock() {
            e.clear();
        }
    }

    fn get(&self, hash: &str) -> Option<Option<Arc<TokenGrant>>> {
        let entries = self.entries.lock().ok()?;
        let (grant, at) = entries.get(hash)?;
        (at.elapsed() < GRANT_CACHE_TTL).then(|| grant.clone())
    }

    fn put(&self, hash: String, grant: Option<Arc<TokenGrant>>) {
        if let Ok(mut e) = self.entries.lock() {
            if e.len() >= GRANT_CACHE_ENTRIES {
                e.clear();
            }
            e.insert(hash, (grant, Instant::now()));
        }
    }
}

/// Why a presented token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRefusal {
    Unknown,
    Expired,
}

impl Engine {
    /// The grant of a presented token other than the admin token.
    pub async fn grant_for(&self, token: &str) -> Result<Grant, EngineError> {
        let hash = hash_hex(token);
        let grant = match self.grants.get(&hash) {
            Some(cached) => cached,
            None => {
                let found = self.store.token_by_hash(&hash).await?.map(|t| {
                    Arc::new(TokenGrant {
                        id: t.id,
                        kind: t.kind,
                        app_id: t.app_id,
                        read_only: t.read_only,
                        capabilities: t.capabilities,
                        session_id: t.session_id,
                        expires_at: t.expires_at,
                    })
                });
                self.grants.put(hash, found.clone());
                found
            }
        };
        let grant = grant.ok_or(EngineError::Unauthorized(TokenRefusal::Unknown))?;
        if grant.expires_at.is_some_and(|at| at <= self.now_ms()) {
            return Err(EngineError::Unauthorized(TokenRefusal::Expired));
        }
        Ok(Grant::Token(grant))
    }

    fn tokens_changed(&self) {
        self.grants.clear();
        self.tell_others(ClusterEvent::TokensChanged);
    }

    /// Creates an API token; returns it with the token itself, shown once.
    ///
    /// Errors: 422 on a blank or over-long name or an expiry out of range;
    /// 404 when the application does not exist.
    pub async fn create_api_token(
        &self,
        input: ApiTokenInput,
    ) -> Result<(ApiToken, String), EngineError> {
        let name = input.name.trim().to_owned();
        if name.is_empty() || name.chars().count() > 256 || name.chars().any(char::is_control) {
            return Err(EngineError::invalid(
                "name",
                "must be 1 to 256 characters, none of them control characters",
            ));
        }
        if let Some(secs) = input.expiry_secs
            && !(1..=MAX_API_TOKEN_EXPIRY_SECS).contains(&secs)
        {
            return Err(EngineError::invalid(
                "expiry",
                format!("must be 1 to {MAX_API_TOKEN_EXPIRY_SECS} seconds"),
            ));
        }
        let app_id = match &input.app {
            Some(key) => match self.app(key).await {
                Ok(app) => Some(app.id),
                Err(EngineError::NotFound(_)) => {
                    return Err(EngineError::invalid(
                        "appId",
                        "no application has this id or uid",
                    ));
                }
                Err(e) => return Err(e),
            },
            None => None,
        };
        let now = self.now_ms();
        let token = new_token("syk_");
        let stored = ApiToken {
            id: TokenId::generate_at(now),
            kind: TokenKind::Api,
            name,
            token_sha256: hash_hex(&token),
            censored: censored(&token),
            app_id,
            read_only: input.read_only,
            capabilities: None,
            session_id: None,
            created_at: now,
            expires_at: input.expiry_secs.map(|s| now + s * 1000),
        };
        let stored = self.store.insert_token(stored).await?;
        Ok((stored, token))
    }

    /// API tokens, by id.
    pub async fn list_api_tokens(&self, page: &PageRequest) -> Result<Page<ApiToken>, EngineError> {
        Ok(self.store.list_tokens(TokenKind::Api, page).await?)
    }

    /// One API token. Errors: 404.
    pub async fn api_token(&self, id: &str) -> Result<ApiToken, EngineError> {
        let not_found = || EngineError::NotFound("API token");
        let id = TokenId::parse(id).ok_or_else(not_found)?;
        self.store
            .get_token(&id)
            .await?
            .filter(|t| t.kind == TokenKind::Api)
            .ok_or_else(not_found)
    }

    /// Makes an API token expire in `delay_secs` (0: now, which revokes it;
    /// at most [`MAX_EXPIRE_DELAY_SECS`]), unless it expires sooner.
    pub async fn expire_api_token(&self, id: &str, delay_secs: u64) -> Result<(), EngineError> {
        check_delay(delay_secs)?;
        let token = self.api_token(id).await?;
        self.store
            .expire_token(&token.id, self.now_ms() + delay_secs * 1000)
            .await?;
        self.tokens_changed();
        Ok(())
    }

    /// A new app-portal session for one application, created from
    /// `input.application` when no application has the path's id or uid.
    /// Returns the token (shown once) and its record.
    ///
    /// Errors: 422 on an unknown capability, an expiry out of 1 h to 7 days
    /// or a malformed session id; 404 when the application does not exist
    /// and none is to be created.
    pub async fn app_portal_access(
        &self,
        app_key: &str,
        input: PortalAccessInput,
    ) -> Result<(ApiToken, String), EngineError> {
        let expiry = input.expiry_secs.unwrap_or(*PORTAL_EXPIRY_SECS.end());
        if !PORTAL_EXPIRY_SECS.contains(&expiry) {
            return Err(EngineError::invalid(
                "expiry",
                "must be 3600 to 604800 seconds (1 hour to 7 days)",
            ));
        }
        if let Some(id) = &input.session_id {
            check_session_id("sessionId", id)?;
        }
        let capabilities = match (input.capabilities, input.read_only) {
            (Some(_), Some(true)) => {
                return Err(EngineError::invalid(
                    "readOnly",
                    "give either readOnly or capabilities, not both (readOnly is capabilities [\"ViewBase\"])",
                ));
            }
            (Some(list), _) if list.is_empty() => {
                return Err(EngineError::invalid(
                    "capabilities",
                    "must list at least ViewBase (absent: all capabilities)",
                ));
            }
            (Some(list), _) => {
                if let Some(unknown) = list.iter().find(|c| !CAPABILITIES.contains(&c.as_str())) {
                    return Err(EngineError::invalid(
                        "capabilities",
                        format!("'{unknown}' is not one of {}", CAPABILITIES.join(", ")),
                    ));
                }
                let mut list = list;
                list.sort();
                list.dedup();
                Some(list)
            }
            (None, Some(true)) => Some(vec!["ViewBase".to_owned()]),
            (None, _) => None,
        };
        let app = match (self.app(app_key).await, input.application) {
            (Ok(app), _) => app,
            (Err(EngineError::NotFound(_)), Some(mut create)) => {
                // The path's key is the new application's uid, as in Svix.
                create.uid = Some(app_key.to_owned());
                self.create_app(create, false).await?.0
            }
            (Err(e), _) => return Err(e),
        };
        let now = self.now_ms();
        let token = new_token("appsk_");
        let stored = ApiToken {
            id: TokenId::generate_at(now),
            kind: TokenKind::AppPortal,
            name: format!("app portal of {}", app.id),
            token_sha256: hash_hex(&token),
            censored: censored(&token),
            app_id: Some(app.id),
            read_only: false,
            capabilities,
            session_id: input.session_id,
            created_at: now,
            expires_at: Some(now + expiry * 1000),
        };
        let stored = self.store.insert_token(stored).await?;
        Ok((stored, token))
    }

    /// Ends the session of the token a request came with (any token but the
    /// admin token). Errors: 409 for the admin token.
    pub async fn logout(&self, grant: &Grant) -> Result<(), EngineError> {
        let Grant::Token(t) = grant else {
            return Err(EngineError::Conflict(
                "the admin token has no session to end; replace it with `switchyard rotate-token`"
                    .into(),
            ));
        };
        self.store.expire_token(&t.id, self.now_ms()).await?;
        self.tokens_changed();
        Ok(())
    }

    /// Makes the app-portal sessions of an application expire in
    /// `delay_secs` (of `sessions` only, when given).
    pub async fn expire_app_sessions(
        &self,
        app_key: &str,
        delay_secs: u64,
        sessions: Option<Vec<String>>,
    ) -> Result<u64, EngineError> {
        check_delay(delay_secs)?;
        if let Some(list) = &sessions {
            if list.len() > MAX_SESSION_IDS {
                return Err(EngineError::invalid(
                    "sessionIds",
                    format!("at most {MAX_SESSION_IDS} are allowed"),
                ));
            }
            for id in list {
                check_session_id("sessionIds", id)?;
            }
        }
        let app = self.app(app_key).await?;
        let changed = self
            .store
            .expire_app_tokens(
                &app.id,
                sessions.as_deref(),
                self.now_ms() + delay_secs * 1000,
            )
            .await?;
        self.tokens_changed();
        Ok(changed)
    }
}

fn check_delay(delay_secs: u64) -> Result<(), EngineError> {
    if delay_secs > MAX_EXPIRE_DELAY_SECS {
        return Err(EngineError::invalid(
            "expiry",
            format!("must be 0 to {MAX_EXPIRE_DELAY_SECS} seconds"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(
        kind: TokenKind,
        app: Option<&AppId>,
        read_only: bool,
        caps: Option<&[&str]>,
    ) -> Grant {
        Grant::Token(Arc::new(TokenGrant {
            id: TokenId::generate(),
            kind,
            app_id: app.cloned(),
            read_only,
            capabilities: caps.map(|c| c.iter().map(|s| s.to_string()).collect()),
            session_id: None,
            expires_at: None,
        }))
    }

    const ALL: [Action; 12] = [
        Action::AppRead,
        Action::SecretRead,
        Action::SecretWrite,
        Action::EndpointWrite,
        Action::AttemptWrite,
        Action::MessageWrite,
        Action::AppWrite,
        Action::EventTypeRead,
        Action::GlobalRead,
        Action::GlobalWrite,
        Action::Session,
        Action::Admin,
    ];

    fn allowed(grant: &Grant, app: Option<&AppId>) -> Vec<Action> {
        ALL.into_iter()
            .filter(|a| grant.allows(*a, app).is_ok())
            .collect()
    }

    #[test]
    fn the_access_matrix() {
        let (a, b) = (AppId::generate(), AppId::generate());
        use Action::*;
        assert_eq!(allowed(&Grant::Admin, None), ALL.to_vec());
        let org = token(TokenKind::Api, None, false, None);
        assert_eq!(
            allowed(&org, Some(&a)),
            ALL.into_iter().filter(|x| *x != Admin).collect::<Vec<_>>()
        );
        let org_ro = token(TokenKind::Api, None, true, None);
        assert_eq!(
            allowed(&org_ro, Some(&a)),
            vec![AppRead, EventTypeRead, GlobalRead, Session]
        );
        let one = token(TokenKind::Api, Some(&a), false, None);
        assert_eq!(
            allowed(&one, Some(&a)),
            vec![
                AppRead,
                SecretRead,
                SecretWrite,
                EndpointWrite,
                AttemptWrite,
                MessageWrite,
                EventTypeRead,
                Session
            ]
        );
        assert_eq!(allowed(&one, Some(&b)), vec![EventTypeRead, Session]);
        assert_eq!(allowed(&one, None), vec![EventTypeRead, Session]);
        let one_ro = token(TokenKind::Api, Some(&a), true, None);
        assert_eq!(
            allowed(&one_ro, Some(&a)),
            vec![AppRead, EventTypeRead, Session]
        );
        let portal = token(TokenKind::AppPortal, Some(&a), false, None);
        assert_eq!(
            allowed(&portal, Some(&a)),
            vec![
                AppRead,
                SecretRead,
                SecretWrite,
                EndpointWrite,
                AttemptWrite,
                EventTypeRead,
                Session
            ]
        );
        let base = token(TokenKind::AppPortal, Some(&a), false, Some(&["ViewBase"]));
        assert_eq!(
            allowed(&base, Some(&a)),
            vec![AppRead, EventTypeRead, Session]
        );
        let secrets = token(
            TokenKind::AppPortal,
            Some(&a),
            false,
            Some(&["ViewBase", "ViewEndpointSecret", "CreateAttempts"]),
        );
        assert_eq!(
            allowed(&secrets, Some(&a)),
            vec![AppRead, SecretRead, AttemptWrite, EventTypeRead, Session]
        );
        assert_eq!(allowed(&secrets, Some(&b)), vec![EventTypeRead, Session]);
    }
}
