//! Operational webhooks: `/api/v1/operational-webhook/endpoint`, the
//! endpoints Switchyard sends its own events to (Svix's operational webhook
//! API, which the official SDKs' `operational_webhook.endpoint` calls).
//!
//! They are endpoints of Switchyard's operational application (see
//! `switchyard_engine::OPERATIONAL_APP_UID`), so each operation here is the
//! endpoint operation of that application; `eventTypes` picks the events an
//! endpoint receives (all when absent).

use super::ListResponse;
use super::endpoint_auth::{
    self as auth, EndpointAuthOut, EndpointHttpAuthIn, EndpointMtlsConfigIn, EndpointOauthConfigIn,
};
use super::endpoints::{
    EndpointHeadersIn, EndpointHeadersOut, EndpointHeadersPatchIn, EndpointIn, EndpointOut,
    EndpointSecretOut, EndpointSecretRotateIn, create_of, fetch_of, headers_of, list_of,
    patch_headers_of, remove_of, rotate_secret_of, secret_of, set_headers_of, upsert_of,
};
use crate::AppState;
use crate::error::ApiResult;
use crate::extract::{Body, PageQuery, Path, Query};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use switchyard_engine::endpoint_auth::{AuthChange, AuthPart};
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(fetch, upsert, remove))
        .routes(routes!(secret))
        .routes(routes!(rotate_secret))
        .routes(routes!(headers, set_headers, patch_headers))
        .routes(routes!(oauth, set_oauth, delete_oauth))
        .routes(routes!(mtls, set_mtls, delete_mtls))
        .routes(routes!(http_auth, set_http_auth, delete_http_auth))
}

/// `/operational-webhook/endpoint/{endpoint_id}`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct OperationalEndpointPath {
    /// The endpoint's id (`ep_…`) or uid.
    pub endpoint_id: String,
}

/// The operational application's id, made on first use.
async fn ops(state: &AppState) -> ApiResult<String> {
    Ok(state.engine.operational_app().await?.id.into_string())
}

/// List operational webhook endpoints.
#[utoipa::path(get, path = "/api/v1/operational-webhook/endpoint", operation_id = "v1.operational-webhook.endpoint.list",
    params(PageQuery),
    responses((status = 200, description = "One page, oldest first", body = ListResponse<EndpointOut>)))]
async fn list(
    State(state): State<AppState>,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<ListResponse<EndpointOut>>> {
    list_of(&state, &ops(&state).await?, &q).await
}

/// Create an operational webhook endpoint. `eventTypes` names the events
/// it receives (`endpoint.created`, `endpoint.updated`, `endpoint.deleted`,
/// `endpoint.enabled`, `endpoint.disabled`, `message.attempt.failing`,
/// `message.attempt.exhausted`, `message.attempt.recovered`,
/// `endpoint.circuit.opened`, `endpoint.circuit.closed`); absent: all.
#[utoipa::path(post, path = "/api/v1/operational-webhook/endpoint", operation_id = "v1.operational-webhook.endpoint.create",
    request_body = EndpointIn,
    responses((status = 201, description = "Created", body = EndpointOut)))]
async fn create(
    State(state): State<AppState>,
    Body(input): Body<EndpointIn>,
) -> ApiResult<Response> {
    create_of(&state, &ops(&state).await?, input).await
}

/// Get an operational webhook endpoint by id or uid.
#[utoipa::path(get, path = "/api/v1/operational-webhook/endpoint/{endpoint_id}", operation_id = "v1.operational-webhook.endpoint.get",
    params(OperationalEndpointPath),
    responses((status = 200, description = "The endpoint", body = EndpointOut)))]
async fn fetch(
    State(state): State<AppState>,
    Path(p): Path<OperationalEndpointPath>,
) -> ApiResult<Json<EndpointOut>> {
    fetch_of(&state, &ops(&state).await?, &p.endpoint_id).await
}

/// Update an operational webhook endpoint, or create it with this uid.
#[utoipa::path(put, path = "/api/v1/operational-webhook/endpoint/{endpoint_id}", operation_id = "v1.operational-webhook.endpoint.update",
    params(OperationalEndpointPath),
    request_body = EndpointIn,
    responses(
        (status = 200, description = "Replaced", body = EndpointOut),
        (status = 201, description = "Created with this uid", body = EndpointOut),
    ))]
async fn upsert(
    State(state): State<AppState>,
    Path(p): Path<OperationalEndpointPath>,
    Body(input): Body<EndpointIn>,
) -> ApiResult<Response> {
    upsert_of(&state, &ops(&state).await?, &p.endpoint_id, input).await
}

/// Delete an operational webhook endpoint.
#[utoipa::path(delete, path = "/api/v1/operational-webhook/endpoint/{endpoint_id}", operation_id = "v1.operational-webhook.endpoint.delete",
    params(OperationalEndpointPath),
    responses((status = 204, description = "Deleted")))]
async fn remove(
    State(state): State<AppState>,
    Path(p): Path<OperationalEndpointPath>,
) -> ApiResult<StatusCode> {
    remove_of(&state, &ops(&state).await?, &p.endpoint_id).await
}

/// Get an operational webhook endpoint's signing secret.
#[utoipa::path(get, path = "/api/v1/operational-webhook/endpoint/{endpoint_id}/secret", operation_id = "v1.operational-webhook.endpoint.get-secret",
    params(OperationalEndpointPath),
    responses((status = 200, description = "The current secret", body = EndpointSecretOut)))]
async fn secret(
    State(state): State<AppState>,
    Path(p): Path<OperationalEndpointPath>,
) -> ApiResult<Json<EndpointSecretOut>> {
    secret_of(&state, &ops(&state).await?, &p.endpoint_id).await
}

/// Rotate an operational webhook endpoint's signing secret; the old one
/// signs too for `gracePeriodSeconds` (default 86400). Answers 204, as
/// Svix does for operational webhook endpoints.
#[utoipa::path(post, path = "/api/v1/operational-webhook/endpoint/{endpoint_id}/secret/rotate", operation_id = "v1.operational-webhook.endpoint.rotate-secret",
    params(OperationalEndpointPath),
    request_body = Option<EndpointSecretRotateIn>,
    responses((status = 204, description = "Rotated")))]
async fn rotate_secret(
    State(state): State<AppState>,
    Path(p): Path<OperationalEndpointPath>,
    Body(input): Body<Option<EndpointSecretRotateIn>>,
) -> ApiResult<StatusCode> {
    let _rotated = rotate_secret_of(&state, &ops(&state).await?, &p.endpoint_id, input).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Get an operational webhook endpoint's custom headers (sensitive ones
/// redacted).
#[utoipa::path(get, path = "/api/v1/operational-webhook/endpoint/{endpoint_id}/headers", operation_id = "v1.operational-webhook.endpoint.get-headers",
    params(OperationalEndpointPath),
    responses((status = 200, description = "The custom headers", body = EndpointHeadersOut)))]
async fn headers(
    State(state): State<AppState>,
    Path(p): Path<OperationalEndpointPath>,
) -> ApiResult<Json<EndpointHeadersOut>> {
    headers_of(&state, &ops(&state).await?, &p.endpoint_id).await
}

/// Replace an operational webhook endpoint's custom headers.
#[utoipa::path(put, path = "/api/v1/operational-webhook/endpoint/{endpoint_id}/headers", operation_id = "v1.operational-webhook.endpoint.update-headers",
    params(OperationalEndpointPath),
    request_body = EndpointHeadersIn,
    responses((status = 204, description = "Replaced")))]
async fn set_headers(
    State(state): State<AppState>,
    Path(p): Path<OperationalEndpointPath>,
    Body(input): Body<EndpointHeadersIn>,
) -> ApiResult<StatusCode> {
    set_headers_of(&state, &ops(&state).await?, &p.endpoint_id, input).await
}

/// Add, change or delete an operational webhook endpoint's custom headers.
#[utoipa::path(patch, path = "/api/v1/operational-webhook/endpoint/{endpoint_id}/headers", operation_id = "v1.operational-webhook.endpoint.patch-headers",
    params(OperationalEndpointPath),
    request_body = EndpointHeadersPatchIn,
    responses((status = 204, description = "Changed")))]
async fn patch_headers(
    State(state): State<AppState>,
    Path(p): Path<OperationalEndpointPath>,
    Body(input): Body<EndpointHeadersPatchIn>,
) -> ApiResult<StatusCode> {
    patch_headers_of(&state, &ops(&state).await?, &p.endpoint_id, input).await
}

/// An operational webhook endpoint's OAuth 2.0 configuration, without its client secret.
#[utoipa::path(get, path = "/api/v1/operational-webhook/endpoint/{endpoint_id}/oauth", operation_id = "v1.operational-webhook.endpoint.get-oauth",
    params(OperationalEndpointPath),
    responses((status = 200, description = "Whether it is set, and how", body = EndpointAuthOut)))]
async fn oauth(
    State(state): State<AppState>,
    Path(p): Path<OperationalEndpointPath>,
) -> ApiResult<Json<EndpointAuthOut>> {
    auth::view_of(&state, &ops(&state).await?, &p.endpoint_id, AuthPart::Oauth).await
}

/// Authenticate deliveries to an operational webhook endpoint with an OAuth 2.0 access token.
#[utoipa::path(put, path = "/api/v1/operational-webhook/endpoint/{endpoint_id}/oauth", operation_id = "v1.operational-webhook.endpoint.set-oauth-config",
    params(OperationalEndpointPath),
    request_body = EndpointOauthConfigIn,
    responses((status = 204, description = "Set")))]
async fn set_oauth(
    State(state): State<AppState>,
    Path(p): Path<OperationalEndpointPath>,
    Body(input): Body<EndpointOauthConfigIn>,
) -> ApiResult<StatusCode> {
    let change = auth::oauth_change(input);
    auth::change_of(&state, &ops(&state).await?, &p.endpoint_id, change).await
}

/// Stop using OAuth 2.0 for an operational webhook endpoint.
#[utoipa::path(delete, path = "/api/v1/operational-webhook/endpoint/{endpoint_id}/oauth", operation_id = "v1.operational-webhook.endpoint.delete-oauth-config",
    params(OperationalEndpointPath),
    responses((status = 204, description = "Removed")))]
async fn delete_oauth(
    State(state): State<AppState>,
    Path(p): Path<OperationalEndpointPath>,
) -> ApiResult<StatusCode> {
    let change = AuthChange::Clear(AuthPart::Oauth);
    auth::change_of(&state, &ops(&state).await?, &p.endpoint_id, change).await
}

/// An operational webhook endpoint's TLS client certificate (its SHA-256).
#[utoipa::path(get, path = "/api/v1/operational-webhook/endpoint/{endpoint_id}/mtls", operation_id = "v1.operational-webhook.endpoint.get-mtls",
    params(OperationalEndpointPath),
    responses((status = 200, description = "Whether it is set, and how", body = EndpointAuthOut)))]
async fn mtls(
    State(state): State<AppState>,
    Path(p): Path<OperationalEndpointPath>,
) -> ApiResult<Json<EndpointAuthOut>> {
    auth::view_of(&state, &ops(&state).await?, &p.endpoint_id, AuthPart::Mtls).await
}

/// Present a TLS client certificate to an operational webhook endpoint.
#[utoipa::path(put, path = "/api/v1/operational-webhook/endpoint/{endpoint_id}/mtls", operation_id = "v1.operational-webhook.endpoint.set-mtls-config",
    params(OperationalEndpointPath),
    request_body = EndpointMtlsConfigIn,
    responses((status = 204, description = "Set")))]
async fn set_mtls(
    State(state): State<AppState>,
    Path(p): Path<OperationalEndpointPath>,
    Body(input): Body<EndpointMtlsConfigIn>,
) -> ApiResult<StatusCode> {
    let change = auth::mtls_change(input);
    auth::change_of(&state, &ops(&state).await?, &p.endpoint_id, change).await
}

/// Stop presenting a client certificate to an operational webhook endpoint.
#[utoipa::path(delete, path = "/api/v1/operational-webhook/endpoint/{endpoint_id}/mtls", operation_id = "v1.operational-webhook.endpoint.delete-mtls-config",
    params(OperationalEndpointPath),
    responses((status = 204, description = "Removed")))]
async fn delete_mtls(
    State(state): State<AppState>,
    Path(p): Path<OperationalEndpointPath>,
) -> ApiResult<StatusCode> {
    let change = AuthChange::Clear(AuthPart::Mtls);
    auth::change_of(&state, &ops(&state).await?, &p.endpoint_id, change).await
}

/// An operational webhook endpoint's HTTP credentials, without the password or token.
#[utoipa::path(get, path = "/api/v1/operational-webhook/endpoint/{endpoint_id}/http-auth", operation_id = "v1.operational-webhook.endpoint.get-http-auth",
    params(OperationalEndpointPath),
    responses((status = 200, description = "Whether it is set, and how", body = EndpointAuthOut)))]
async fn http_auth(
    State(state): State<AppState>,
    Path(p): Path<OperationalEndpointPath>,
) -> ApiResult<Json<EndpointAuthOut>> {
    auth::view_of(&state, &ops(&state).await?, &p.endpoint_id, AuthPart::Http).await
}

/// Send `Authorization: Basic …` or `Bearer …` to an operational webhook endpoint.
#[utoipa::path(put, path = "/api/v1/operational-webhook/endpoint/{endpoint_id}/http-auth", operation_id = "v1.operational-webhook.endpoint.set-http-auth",
    params(OperationalEndpointPath),
    request_body = EndpointHttpAuthIn,
    responses((status = 204, description = "Set")))]
async fn set_http_auth(
    State(state): State<AppState>,
    Path(p): Path<OperationalEndpointPath>,
    Body(input): Body<EndpointHttpAuthIn>,
) -> ApiResult<StatusCode> {
    let change = auth::http_change(input)?;
    auth::change_of(&state, &ops(&state).await?, &p.endpoint_id, change).await
}

/// Stop sending HTTP credentials to an operational webhook endpoint.
#[utoipa::path(delete, path = "/api/v1/operational-webhook/endpoint/{endpoint_id}/http-auth", operation_id = "v1.operational-webhook.endpoint.delete-http-auth",
    params(OperationalEndpointPath),
    responses((status = 204, description = "Removed")))]
async fn delete_http_auth(
    State(state): State<AppState>,
    Path(p): Path<OperationalEndpointPath>,
) -> ApiResult<StatusCode> {
    let change = AuthChange::Clear(AuthPart::Http);
    auth::change_of(&state, &ops(&state).await?, &p.endpoint_id, change).await
}
