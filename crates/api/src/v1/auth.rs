//! `/api/v1/auth`: app-portal sessions, logout and whoami (Svix's
//! `authentication` API), and API tokens (a Switchyard addition, for the
//! admin token only). What each token may do is decided in
//! `switchyard_engine::access`; the route table that maps routes to actions
//! is [`crate::access`].

use super::applications::ApplicationIn;
use super::{AppPath, ListResponse, ts};
use crate::AppState;
use crate::error::ApiResult;
use crate::extract::{Body, PageQuery, Query};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use switchyard_engine::access::{ApiTokenInput, Grant, PortalAccessInput};
use switchyard_store::{ApiToken, Order};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(app_portal_access))
        .routes(routes!(logout))
        .routes(routes!(whoami))
        .routes(routes!(expire_all))
        .routes(routes!(list_tokens, create_token))
        .routes(routes!(get_token))
        .routes(routes!(expire_token))
}

/// A session in the app portal for one application (Svix's
/// `AppPortalAccessIn`).
#[derive(Deserialize, Default, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AppPortalAccessIn {
    /// Created, with the path's key as its uid, when no application has that
    /// id or uid; ignored otherwise.
    application: Option<ApplicationIn>,
    /// Deprecated (Svix): the same as `capabilities: ["ViewBase"]`.
    read_only: Option<bool>,
    /// What the session may do beyond reading (`ViewBase`):
    /// `ViewEndpointSecret`, `ManageEndpointSecret`, `ManageTransformations`,
    /// `CreateAttempts`, `ManageEndpoint`; absent: all of them.
    capabilities: Option<Vec<String>>,
    /// Accepted for the Svix SDKs; Switchyard has no feature flags.
    #[schema(max_items = 25)]
    feature_flags: Option<Vec<String>>,
    /// Seconds the token is valid, 3600 to 604800 (default 604800).
    #[schema(minimum = 3600, maximum = 604800)]
    expiry: Option<u64>,
    /// Groups sessions for `expire-all`: 1 to 64 of `a-zA-Z0-9@_-`.
    session_id: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct AppPortalAccessOut {
    /// Where the session opens the portal (the token rides in the fragment,
    /// which browsers do not send to servers).
    url: String,
    /// An `appsk_…` bearer token for the application's API routes.
    token: String,
}

/// Get a session token (and portal URL) limited to one application.
#[utoipa::path(post, path = "/api/v1/auth/app-portal-access/{app_id}", operation_id = "v1.authentication.app-portal-access",
    params(AppPath),
    request_body = AppPortalAccessIn,
    responses((status = 200, description = "The session", body = AppPortalAccessOut)))]
async fn app_portal_access(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(p): Path<AppPath>,
    Body(input): Body<Option<AppPortalAccessIn>>,
) -> ApiResult<Json<AppPortalAccessOut>> {
    let input = input.unwrap_or_default();
    if let Some(flags) = &input.feature_flags
        && flags.len() > 25
    {
        return Err(crate::ApiError::field(
            "featureFlags",
            "at most 25 are allowed",
        ));
    }
    let (stored, token) = state
        .engine
        .app_portal_access(
            &p.app_id,
            PortalAccessInput {
                read_only: input.read_only,
                capabilities: input.capabilities,
                expiry_secs: input.expiry,
                session_id: input.session_id,
                application: input.application.map(Into::into),
            },
        )
        .await?;
    let base = crate::public_base(&state, &headers);
    let app = stored.app_id.map(|a| a.to_string()).unwrap_or_default();
    Ok(Json(AppPortalAccessOut {
        url: format!("{base}/portal/#app={app}&token={token}"),
        token,
    }))
}

/// End the session of the token this request carries.
#[utoipa::path(post, path = "/api/v1/auth/logout", operation_id = "v1.authentication.logout",
    responses((status = 204, description = "The token no longer works")))]
async fn logout(
    State(state): State<AppState>,
    Extension(grant): Extension<Grant>,
) -> ApiResult<StatusCode> {
    state.engine.logout(&grant).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct WhoamiOut {
    /// `admin`, `api` or `app-portal`.
    kind: String,
    /// The one application the token reaches; `null`: all.
    app_id: Option<String>,
    /// The app-portal session.
    session_id: Option<String>,
    read_only: bool,
    /// App-portal capabilities; `null`: all.
    capabilities: Option<Vec<String>>,
    #[schema(format = DateTime)]
    expires_at: Option<String>,
}

/// What the token of this request is and may do.
#[utoipa::path(get, path = "/api/v1/auth/whoami", operation_id = "v1.authentication.whoami",
    responses((status = 200, description = "The token's grant", body = WhoamiOut)))]
async fn whoami(Extension(grant): Extension<Grant>) -> Json<WhoamiOut> {
    Json(match grant {
        Grant::Admin => WhoamiOut {
            kind: "admin".into(),
            app_id: None,
            session_id: None,
            read_only: false,
            capabilities: None,
            expires_at: None,
        },
        Grant::Token(t) => WhoamiOut {
            kind: t.kind.as_str().into(),
            app_id: t.app_id.as_ref().map(ToString::to_string),
            session_id: t.session_id.clone(),
            read_only: t.read_only,
            capabilities: t.capabilities.clone(),
            expires_at: t.expires_at.map(ts),
        },
    })
}

/// Svix's `ApplicationTokenExpireIn`.
#[derive(Deserialize, Default, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ApplicationTokenExpireIn {
    /// Seconds until the sessions end, 0 to 259200 (default 0: now).
    #[schema(maximum = 259200)]
    expiry: Option<u64>,
    /// Only the sessions with these ids (at most 1000).
    #[schema(max_items = 1000)]
    session_ids: Option<Vec<String>>,
}

/// End the app-portal sessions of an application.
#[utoipa::path(post, path = "/api/v1/auth/app/{app_id}/expire-all", operation_id = "v1.authentication.expire-all",
    params(AppPath),
    request_body = ApplicationTokenExpireIn,
    responses((status = 204, description = "The sessions end")))]
async fn expire_all(
    State(state): State<AppState>,
    Path(p): Path<AppPath>,
    Body(input): Body<Option<ApplicationTokenExpireIn>>,
) -> ApiResult<StatusCode> {
    let input = input.unwrap_or_default();
    state
        .engine
        .expire_app_sessions(&p.app_id, input.expiry.unwrap_or(0), input.session_ids)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A new API token.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct ApiTokenIn {
    /// 1 to 256 characters, for people.
    name: String,
    /// The one application (id or uid) the token reaches; absent: all.
    app_id: Option<String>,
    /// Reads only, and never shows secrets.
    #[serde(default)]
    read_only: bool,
    /// Seconds until it expires; absent: never.
    #[schema(minimum = 1, maximum = 315360000)]
    expiry: Option<u64>,
}

/// An API token as listed: never the token itself.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ApiTokenCensoredOut {
    /// `key_…`.
    id: String,
    name: String,
    /// The token's first characters.
    censored_token: String,
    app_id: Option<String>,
    read_only: bool,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    expires_at: Option<String>,
}

impl ApiTokenCensoredOut {
    fn new(t: &ApiToken) -> Self {
        Self {
            id: t.id.to_string(),
            name: t.name.clone(),
            censored_token: t.censored.clone(),
            app_id: t.app_id.as_ref().map(ToString::to_string),
            read_only: t.read_only,
            created_at: ts(t.created_at),
            expires_at: t.expires_at.map(ts),
        }
    }
}

/// A new API token, with the token itself: shown this once.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ApiTokenOut {
    /// The bearer token (`syk_…`); only its hash is stored.
    token: String,
    #[serde(flatten)]
    info: ApiTokenCensoredOut,
}

/// List API tokens (admin token only).
#[utoipa::path(get, path = "/api/v1/auth/api-token", operation_id = "v1.authentication.api-token.list",
    params(PageQuery),
    responses((status = 200, description = "One page, oldest first", body = ListResponse<ApiTokenCensoredOut>)))]
async fn list_tokens(
    State(state): State<AppState>,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<ListResponse<ApiTokenCensoredOut>>> {
    let page = state
        .engine
        .list_api_tokens(&q.page(Order::Ascending)?)
        .await?;
    Ok(Json(ListResponse::of(page, ApiTokenCensoredOut::new)))
}

/// Create an API token (admin token only).
#[utoipa::path(post, path = "/api/v1/auth/api-token", operation_id = "v1.authentication.api-token.create",
    request_body = ApiTokenIn,
    responses((status = 201, description = "Created; the token is shown only here", body = ApiTokenOut)))]
async fn create_token(
    State(state): State<AppState>,
    Body(input): Body<ApiTokenIn>,
) -> ApiResult<(StatusCode, Json<ApiTokenOut>)> {
    let (stored, token) = state
        .engine
        .create_api_token(ApiTokenInput {
            name: input.name,
            app: input.app_id,
            read_only: input.read_only,
            expiry_secs: input.expiry,
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(ApiTokenOut {
            token,
            info: ApiTokenCensoredOut::new(&stored),
        }),
    ))
}

/// `{token_id}`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct TokenPath {
    /// The token's id (`key_…`).
    token_id: String,
}

/// Get an API token (admin token only).
#[utoipa::path(get, path = "/api/v1/auth/api-token/{token_id}", operation_id = "v1.authentication.api-token.get",
    params(TokenPath),
    responses((status = 200, description = "The token, censored", body = ApiTokenCensoredOut)))]
async fn get_token(
    State(state): State<AppState>,
    Path(p): Path<TokenPath>,
) -> ApiResult<Json<ApiTokenCensoredOut>> {
    Ok(Json(ApiTokenCensoredOut::new(
        &state.engine.api_token(&p.token_id).await?,
    )))
}

/// Svix's `ApiTokenExpireIn`.
#[derive(Deserialize, Default, ToSchema)]
pub(crate) struct ApiTokenExpireIn {
    /// Seconds until the token stops working, 0 to 259200 (default 0:
    /// now, which revokes it).
    #[schema(maximum = 259200)]
    expiry: Option<u64>,
}

/// Expire (revoke) an API token (admin token only).
#[utoipa::path(post, path = "/api/v1/auth/api-token/{token_id}/expire", operation_id = "v1.authentication.api-token.expire",
    params(TokenPath),
    request_body = ApiTokenExpireIn,
    responses((status = 204, description = "The token expires")))]
async fn expire_token(
    State(state): State<AppState>,
    Path(p): Path<TokenPath>,
    Body(input): Body<Option<ApiTokenExpireIn>>,
) -> ApiResult<StatusCode> {
    let expiry = input.unwrap_or_default().expiry.unwrap_or(0);
    state.engine.expire_api_token(&p.token_id, expiry).await?;
    Ok(StatusCode::NO_CONTENT)
}
