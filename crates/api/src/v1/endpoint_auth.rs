//! Endpoint credentials: `…/endpoint/{endpoint_id}/oauth` and `…/mtls` in
//! Svix's shapes (`EndpointOauthConfigIn`, `EndpointMtlsConfigIn`,
//! `EndpointOauthOut`, `EndpointMtlsOut`), and `…/http-auth` (HTTP basic or
//! bearer), Switchyard's own. Reads never show the secret parts.
//!
//! Ingest destinations are endpoints too: the `…_of` functions serve both
//! APIs.

use super::EndpointPath;
use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Body, Path};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use switchyard_core::endpoint_auth::HttpAuth;
use switchyard_engine::endpoint_auth::{AuthChange, AuthPart, AuthView, OauthInput};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_oauth, set_oauth, delete_oauth))
        .routes(routes!(get_mtls, set_mtls, delete_mtls))
        .routes(routes!(get_http_auth, set_http_auth, delete_http_auth))
}

/// `PUT …/oauth` (Svix's `EndpointOauthConfigIn`): the OAuth 2.0
/// client-credentials grant. `clientSecretJwt` and the `refreshToken`
/// grant are refused.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EndpointOauthConfigIn {
    /// `clientCredentials`.
    grant_type: String,
    /// `clientSecretBasic` or `clientSecretPost`.
    auth_method: String,
    client_id: String,
    #[serde(default)]
    client_secret: Option<String>,
    /// The token endpoint (http or https; the SSRF guard judges it).
    token_url: String,
    #[serde(default)]
    scopes: Option<Vec<String>>,
    /// Added to the token request's form.
    #[serde(default)]
    extra_params: Option<BTreeMap<String, String>>,
    /// Added to the token request's headers.
    #[serde(default)]
    extra_headers: Option<BTreeMap<String, String>>,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    jwt_params: Option<Value>,
}

/// `PUT …/mtls` (Svix's `EndpointMtlsConfigIn`).
#[derive(Deserialize, ToSchema)]
pub(crate) struct EndpointMtlsConfigIn {
    /// A PEM private key (PKCS#8, PKCS#1 or SEC1) and the PEM certificate
    /// chain it belongs to, leaf first; at most 64 KiB.
    identity: String,
}

/// `PUT …/http-auth`: `{"type": "basic", "username", "password"}` or
/// `{"type": "bearer", "token"}`.
#[derive(Deserialize, ToSchema)]
pub(crate) struct EndpointHttpAuthIn {
    /// `basic` or `bearer`.
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    token: Option<String>,
}

fn required(field: &str, value: Option<String>) -> ApiResult<String> {
    value.ok_or_else(|| ApiError::field(field, "is required for this type"))
}

impl EndpointHttpAuthIn {
    fn into_auth(self) -> ApiResult<HttpAuth> {
        let refuse = |field: &str, kind: &str| {
            ApiError::field(field, format!("is not a field of type {kind}"))
        };
        match self.kind.as_str() {
            "basic" => {
                if self.token.is_some() {
                    return Err(refuse("token", "basic"));
                }
                Ok(HttpAuth::Basic {
                    username: required("username", self.username)?,
                    password: required("password", self.password)?,
                })
            }
            "bearer" => {
                if self.username.is_some() {
                    return Err(refuse("username", "bearer"));
                }
                if self.password.is_some() {
                    return Err(refuse("password", "bearer"));
                }
                Ok(HttpAuth::Bearer {
                    token: required("token", self.token)?,
                })
            }
            other => Err(ApiError::field(
                "type",
                format!("'{other}' is not a type; use basic or bearer"),
            )),
        }
    }
}

/// `{"enabled": bool, "config"?: {...}}`: Svix's `EndpointOauthOut` and
/// `EndpointMtlsOut` (whose `config` here carries `certificateSha256`), and
/// the same shape for HTTP credentials (`type`, and `username` for basic).
#[derive(serde::Serialize, ToSchema)]
pub(crate) struct EndpointAuthOut {
    enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    config: Option<Value>,
}

pub(crate) async fn view_of(
    state: &AppState,
    app: &str,
    ep: &str,
    part: AuthPart,
) -> ApiResult<Json<EndpointAuthOut>> {
    let auth = state.engine.endpoint_auth(app, ep).await?;
    let config = AuthView(&auth).of(part);
    Ok(Json(EndpointAuthOut {
        enabled: config.is_some(),
        config,
    }))
}

pub(crate) async fn change_of(
    state: &AppState,
    app: &str,
    ep: &str,
    change: AuthChange,
) -> ApiResult<StatusCode> {
    state.engine.change_endpoint_auth(app, ep, change).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) fn oauth_change(input: EndpointOauthConfigIn) -> AuthChange {
    AuthChange::Oauth(OauthInput {
        grant_type: input.grant_type,
        auth_method: input.auth_method,
        client_id: input.client_id,
        client_secret: input.client_secret,
        token_url: input.token_url,
        scopes: input.scopes,
        extra_params: input.extra_params,
        extra_headers: input.extra_headers,
        refresh_token: input.refresh_token,
        jwt_params: input.jwt_params.is_some_and(|v| !v.is_null()),
    })
}

pub(crate) fn mtls_change(input: EndpointMtlsConfigIn) -> AuthChange {
    AuthChange::Mtls(input.identity)
}

pub(crate) fn http_change(input: EndpointHttpAuthIn) -> ApiResult<AuthChange> {
    Ok(AuthChange::Http(input.into_auth()?))
}

// ---- the v1 routes --------------------------------------------------------

/// An endpoint's OAuth 2.0 configuration, without its client secret.
#[utoipa::path(get, path = "/api/v1/app/{app_id}/endpoint/{endpoint_id}/oauth", operation_id = "v1.endpoint.get-oauth",
    params(EndpointPath),
    responses((status = 200, description = "Whether the endpoint uses OAuth 2.0, and how", body = EndpointAuthOut)))]
async fn get_oauth(
    State(state): State<AppState>,
    Path(p): Path<EndpointPath>,
) -> ApiResult<Json<EndpointAuthOut>> {
    view_of(&state, &p.app_id, &p.endpoint_id, AuthPart::Oauth).await
}

/// Authenticate deliveries with an OAuth 2.0 access token (client
/// credentials), fetched from `tokenUrl` and cached until it expires.
#[utoipa::path(put, path = "/api/v1/app/{app_id}/endpoint/{endpoint_id}/oauth", operation_id = "v1.endpoint.set-oauth-config",
    params(EndpointPath),
    request_body = EndpointOauthConfigIn,
    responses((status = 204, description = "Set")))]
async fn set_oauth(
    State(state): State<AppState>,
    Path(p): Path<EndpointPath>,
    Body(input): Body<EndpointOauthConfigIn>,
) -> ApiResult<StatusCode> {
    change_of(&state, &p.app_id, &p.endpoint_id, oauth_change(input)).await
}

/// Stop using OAuth 2.0 for the endpoint.
#[utoipa::path(delete, path = "/api/v1/app/{app_id}/endpoint/{endpoint_id}/oauth", operation_id = "v1.endpoint.delete-oauth-config",
    params(EndpointPath),
    responses((status = 204, description = "Removed")))]
async fn delete_oauth(
    State(state): State<AppState>,
    Path(p): Path<EndpointPath>,
) -> ApiResult<StatusCode> {
    let change = AuthChange::Clear(AuthPart::Oauth);
    change_of(&state, &p.app_id, &p.endpoint_id, change).await
}

/// Whether the endpoint presents a TLS client certificate, and which (its
/// SHA-256), never the key.
#[utoipa::path(get, path = "/api/v1/app/{app_id}/endpoint/{endpoint_id}/mtls", operation_id = "v1.endpoint.get-mtls",
    params(EndpointPath),
    responses((status = 200, description = "Whether the endpoint uses mTLS", body = EndpointAuthOut)))]
async fn get_mtls(
    State(state): State<AppState>,
    Path(p): Path<EndpointPath>,
) -> ApiResult<Json<EndpointAuthOut>> {
    view_of(&state, &p.app_id, &p.endpoint_id, AuthPart::Mtls).await
}

/// Present a TLS client certificate on deliveries to the endpoint.
#[utoipa::path(put, path = "/api/v1/app/{app_id}/endpoint/{endpoint_id}/mtls", operation_id = "v1.endpoint.set-mtls-config",
    params(EndpointPath),
    request_body = EndpointMtlsConfigIn,
    responses((status = 204, description = "Set")))]
async fn set_mtls(
    State(state): State<AppState>,
    Path(p): Path<EndpointPath>,
    Body(input): Body<EndpointMtlsConfigIn>,
) -> ApiResult<StatusCode> {
    change_of(&state, &p.app_id, &p.endpoint_id, mtls_change(input)).await
}

/// Stop presenting a client certificate.
#[utoipa::path(delete, path = "/api/v1/app/{app_id}/endpoint/{endpoint_id}/mtls", operation_id = "v1.endpoint.delete-mtls-config",
    params(EndpointPath),
    responses((status = 204, description = "Removed")))]
async fn delete_mtls(
    State(state): State<AppState>,
    Path(p): Path<EndpointPath>,
) -> ApiResult<StatusCode> {
    let change = AuthChange::Clear(AuthPart::Mtls);
    change_of(&state, &p.app_id, &p.endpoint_id, change).await
}

/// The endpoint's HTTP credentials: the type, and the username of basic
/// ones, never the password or token.
#[utoipa::path(get, path = "/api/v1/app/{app_id}/endpoint/{endpoint_id}/http-auth", operation_id = "v1.endpoint.get-http-auth",
    params(EndpointPath),
    responses((status = 200, description = "Whether the endpoint uses HTTP credentials", body = EndpointAuthOut)))]
async fn get_http_auth(
    State(state): State<AppState>,
    Path(p): Path<EndpointPath>,
) -> ApiResult<Json<EndpointAuthOut>> {
    view_of(&state, &p.app_id, &p.endpoint_id, AuthPart::Http).await
}

/// Send `Authorization: Basic …` or `Bearer …` with every delivery (it
/// replaces a custom `Authorization` header).
#[utoipa::path(put, path = "/api/v1/app/{app_id}/endpoint/{endpoint_id}/http-auth", operation_id = "v1.endpoint.set-http-auth",
    params(EndpointPath),
    request_body = EndpointHttpAuthIn,
    responses((status = 204, description = "Set")))]
async fn set_http_auth(
    State(state): State<AppState>,
    Path(p): Path<EndpointPath>,
    Body(input): Body<EndpointHttpAuthIn>,
) -> ApiResult<StatusCode> {
    change_of(&state, &p.app_id, &p.endpoint_id, http_change(input)?).await
}

/// Stop sending HTTP credentials.
#[utoipa::path(delete, path = "/api/v1/app/{app_id}/endpoint/{endpoint_id}/http-auth", operation_id = "v1.endpoint.delete-http-auth",
    params(EndpointPath),
    responses((status = 204, description = "Removed")))]
async fn delete_http_auth(
    State(state): State<AppState>,
    Path(p): Path<EndpointPath>,
) -> ApiResult<StatusCode> {
    let change = AuthChange::Clear(AuthPart::Http);
    change_of(&state, &p.app_id, &p.endpoint_id, change).await
}
