//! Sources and their destinations: `/ingest/api/v1/source…`, shaped like the
//! Svix Ingest API. A source's destinations are the endpoints of an
//! application created with it (its uid is the source id), so everything the
//! v1 API offers for endpoints, messages and attempts works for them too.

use super::ingest_url;
use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Body, PageQuery, Path, Query};
use crate::v1::endpoint_auth::{
    self as auth, EndpointAuthOut, EndpointHttpAuthIn, EndpointMtlsConfigIn, EndpointOauthConfigIn,
};
use crate::v1::endpoints::{
    self, EndpointHeadersIn, EndpointHeadersOut, EndpointHeadersPatchIn, EndpointIn, EndpointOut,
    EndpointPatchIn, EndpointSecretOut, EndpointSecretRotateIn, EndpointStatsOut, RecoverIn,
    RecoverOut,
};
use crate::v1::{ListResponse, ts};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use switchyard_core::source::{compile, public_config};
use switchyard_engine::SourceInput;
use switchyard_engine::endpoint_auth::{AuthChange, AuthPart};
use switchyard_store::{Metadata, Order, Source};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(fetch, upsert, remove))
        .routes(routes!(rotate_token))
        .routes(routes!(rotate_secret))
        .routes(routes!(stats))
        .routes(routes!(list_destinations, create_destination))
        .routes(routes!(
            fetch_destination,
            upsert_destination,
            patch_destination,
            remove_destination
        ))
        .routes(routes!(destination_secret))
        .routes(routes!(rotate_destination_secret))
        .routes(routes!(
            destination_headers,
            set_destination_headers,
            patch_destination_headers
        ))
        .routes(routes!(
            destination_oauth,
            set_destination_oauth,
            delete_destination_oauth
        ))
        .routes(routes!(
            destination_mtls,
            set_destination_mtls,
            delete_destination_mtls
        ))
        .routes(routes!(
            destination_http_auth,
            set_destination_http_auth,
            delete_destination_http_auth
        ))
        .routes(routes!(recover_destination))
        .routes(routes!(destination_stats))
        .routes(routes!(destination_circuit))
        .routes(routes!(reset_destination_circuit))
}

/// A source: create or replace.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(examples(
    json!({"name": "Stripe", "uid": "stripe", "type": "stripe", "config": {"secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}}),
    json!({"name": "Partner", "type": "api-key", "config": {"key": "k-123", "header": "X-Api-Key"}}),
))]
struct SourceIn {
    #[schema(min_length = 1, max_length = 256)]
    name: String,
    /// A unique name of your choosing; the API takes it wherever it takes
    /// the id. It may not start like an id (`src_`, ...).
    #[schema(pattern = "^[A-Za-z0-9._-]{1,256}$")]
    uid: Option<String>,
    /// Free-form string pairs of your own: at most 100, 16 KiB together.
    #[schema(value_type = Option<BTreeMap<String, String>>)]
    metadata: Option<Metadata>,
    /// The verifier: a Svix source type (`generic-webhook`, `svix`,
    /// `stripe`, `github`, `shopify`, `slack`, `zoom`) or one of
    /// Switchyard's (`standard-webhooks`, `hmac`, `basic-auth`, `api-key`,
    /// `none`, ...). Switchyard's may also be sent as `generic-webhook`
    /// with `config.verifier` naming them.
    #[serde(rename = "type")]
    kind: String,
    /// The verifier's settings (its secret, ...).
    #[serde(default)]
    #[schema(value_type = Object)]
    config: Value,
    /// Switchyard's own options: event type and dedupe locations, forwarded
    /// headers, body limit, reply; see `switchyard_core::source`.
    #[serde(default)]
    #[schema(value_type = Object)]
    settings: Value,
}

/// Source types the Svix SDKs know. Switchyard's other verifiers are shown
/// as `generic-webhook` with `config.verifier` naming them, so that an SDK
/// listing sources never meets a type it cannot parse; they are accepted in
/// either form.
const SVIX_TYPES: &[&str] = &[
    "generic-webhook",
    "svix",
    "stripe",
    "github",
    "shopify",
    "slack",
    "zoom",
];
const VERIFIER_KEY: &str = "verifier";

impl SourceIn {
    /// Reads `generic-webhook` + `config.verifier` as the verifier's own type.
    fn normalise(mut self) -> Self {
        if self.kind == "generic-webhook"
            && let Some(obj) = self.config.as_object_mut()
            && let Some(Value::String(verifier)) = obj.remove(VERIFIER_KEY)
            && verifier != "generic-webhook"
        {
            self.kind = verifier;
        }
        self
    }
}

impl From<SourceIn> for SourceInput {
    fn from(input: SourceIn) -> Self {
        let input = input.normalise();
        SourceInput {
            name: input.name,
            uid: input.uid,
            metadata: input.metadata,
            kind: input.kind,
            config: input.config,
            settings: input.settings,
        }
    }
}

/// A source as the API shows it; secrets in `config` are shown only as
/// whether they are set.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct SourceOut {
    /// `src_…`
    id: String,
    #[schema(required = true)]
    uid: Option<String>,
    name: String,
    /// The Svix source type; Switchyard's other verifiers show as
    /// `generic-webhook` with `config.verifier` naming them.
    #[serde(rename = "type")]
    wire_type: String,
    /// The verifier, by Switchyard's name.
    verifier: String,
    #[schema(value_type = Object)]
    config: Value,
    /// Every Switchyard option, defaults filled in.
    #[schema(value_type = Object)]
    settings: Value,
    /// Free-form string pairs of your own.
    #[schema(value_type = BTreeMap<String, String>)]
    metadata: Metadata,
    /// The URL to give the provider.
    ingest_url: String,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
}

impl SourceOut {
    fn new(state: &AppState, host: Option<&str>, s: &Source) -> Self {
        let settings = compile(&s.kind, &s.config, &s.settings)
            .map(|plan| plan.settings_json(state.max_body_bytes))
            .unwrap_or_else(|_| s.settings.clone());
        let mut config = public_config(&s.kind, &s.config);
        let wire_type = if SVIX_TYPES.contains(&s.kind.as_str()) {
            s.kind.as_str()
        } else {
            if let Some(obj) = config.as_object_mut() {
                obj.insert(VERIFIER_KEY.into(), Value::String(s.kind.clone()));
            }
            "generic-webhook"
        };
        SourceOut {
            id: s.id.as_str().to_owned(),
            uid: s.uid.as_deref().map(str::to_owned),
            name: s.name.clone(),
            wire_type: wire_type.to_owned(),
            verifier: s.kind.clone(),
            config,
            settings,
            metadata: s.metadata.clone(),
            ingest_url: ingest_url(state, host, &s.token),
            created_at: ts(s.created_at),
            updated_at: ts(s.updated_at),
        }
    }
}

async fn find_source(state: &AppState, key: &str) -> ApiResult<Source> {
    Ok(state.engine.source(key).await?)
}

fn host_of(headers: &HeaderMap) -> Option<String> {
    headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
}

/// `{source_id}`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct SourcePath {
    /// The source's id (`src_…`) or uid.
    source_id: String,
}

/// `{source_id}/endpoint/{endpoint_id}`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct DestinationPath {
    /// The source's id (`src_…`) or uid.
    source_id: String,
    /// The destination's id (`ep_…`) or uid.
    endpoint_id: String,
}

/// List sources.
#[utoipa::path(get, path = "/ingest/api/v1/source", operation_id = "ingest.source.list",
    params(PageQuery),
    responses((status = 200, description = "One page, oldest first", body = ListResponse<SourceOut>)))]
async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<ListResponse<SourceOut>>> {
    let page = state
        .engine
        .list_sources(&q.page(Order::Ascending)?)
        .await?;
    let host = host_of(&headers);
    Ok(Json(ListResponse::of(page, |s| {
        SourceOut::new(&state, host.as_deref(), s)
    })))
}

/// Create a source (type, config, Switchyard settings).
#[utoipa::path(post, path = "/ingest/api/v1/source", operation_id = "ingest.source.create",
    request_body = SourceIn,
    responses((status = 201, description = "Created, with its application", body = SourceOut)))]
async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    Body(input): Body<SourceIn>,
) -> ApiResult<Response> {
    let source = state.engine.create_source(input.into(), None).await?;
    let host = host_of(&headers);
    Ok((
        StatusCode::CREATED,
        Json(SourceOut::new(&state, host.as_deref(), &source)),
    )
        .into_response())
}

/// Get a source by id or uid.
#[utoipa::path(get, path = "/ingest/api/v1/source/{source_id}", operation_id = "ingest.source.get",
    params(SourcePath),
    responses((status = 200, description = "The source", body = SourceOut)))]
async fn fetch(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(p): Path<SourcePath>,
) -> ApiResult<Json<SourceOut>> {
    let source = find_source(&state, &p.source_id).await?;
    Ok(Json(SourceOut::new(
        &state,
        host_of(&headers).as_deref(),
        &source,
    )))
}

/// Create or replace a source.
///
/// Retired secrets of an unchanged secret stay valid.
#[utoipa::path(put, path = "/ingest/api/v1/source/{source_id}", operation_id = "ingest.source.upsert",
    params(SourcePath),
    request_body = SourceIn,
    responses(
        (status = 200, description = "Replaced", body = SourceOut),
        (status = 201, description = "Created with this uid", body = SourceOut),
    ))]
async fn upsert(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(p): Path<SourcePath>,
    Body(input): Body<SourceIn>,
) -> ApiResult<Response> {
    let (source, created) = state
        .engine
        .upsert_source(&p.source_id, input.into())
        .await?;
    let host = host_of(&headers);
    Ok((
        crate::v1::created_status(created),
        Json(SourceOut::new(&state, host.as_deref(), &source)),
    )
        .into_response())
}

/// Delete a source with its destinations and events.
#[utoipa::path(delete, path = "/ingest/api/v1/source/{source_id}", operation_id = "ingest.source.delete",
    params(SourcePath),
    responses((status = 204, description = "Deleted")))]
async fn remove(State(state): State<AppState>, Path(p): Path<SourcePath>) -> ApiResult<StatusCode> {
    state.engine.delete_source(&p.source_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct RotateTokenOut {
    /// The new URL to give the provider.
    ingest_url: String,
}

/// New ingest URL; the old one works for 48 hours.
#[utoipa::path(post, path = "/ingest/api/v1/source/{source_id}/token/rotate", operation_id = "ingest.source.rotate-token",
    params(SourcePath),
    responses((status = 200, description = "The new ingest URL", body = RotateTokenOut)))]
async fn rotate_token(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(p): Path<SourcePath>,
) -> ApiResult<Json<RotateTokenOut>> {
    let source = state.engine.rotate_source_token(&p.source_id).await?;
    Ok(Json(RotateTokenOut {
        ingest_url: ingest_url(&state, host_of(&headers).as_deref(), &source.token),
    }))
}

/// Rotates a source's verification secret.
#[derive(Deserialize, Default, ToSchema)]
#[serde(rename_all = "camelCase")]
struct SourceSecretRotateIn {
    /// The new secret (the password for `basic-auth`, the key for
    /// `api-key`); absent or `null`: one is generated.
    secret: Option<String>,
    /// How long the old secret keeps verifying beside the new one, in seconds.
    grace_period_seconds: Option<u64>,
}

/// The new secret, under the name the source's config gives it.
#[derive(Serialize, ToSchema)]
struct SourceSecretOut {
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
    /// For `basic-auth` sources.
    #[serde(skip_serializing_if = "Option::is_none")]
    password: Option<String>,
    /// For `api-key` sources.
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<String>,
}

/// New verification secret; the old one verifies for the grace period.
///
/// The password for basic-auth, the key for api-key.
#[utoipa::path(post, path = "/ingest/api/v1/source/{source_id}/secret/rotate", operation_id = "ingest.source.rotate-secret",
    params(SourcePath),
    request_body = Option<SourceSecretRotateIn>,
    responses((status = 200, description = "The new secret", body = SourceSecretOut)))]
async fn rotate_secret(
    State(state): State<AppState>,
    Path(p): Path<SourcePath>,
    Body(input): Body<Option<SourceSecretRotateIn>>,
) -> ApiResult<Json<SourceSecretOut>> {
    let input = input.unwrap_or_default();
    let rotated = state
        .engine
        .rotate_source_secret(&p.source_id, input.secret, input.grace_period_seconds)
        .await?;
    let mut out = SourceSecretOut {
        secret: None,
        password: None,
        key: None,
    };
    let slot = match rotated.field {
        "password" => &mut out.password,
        "key" => &mut out.key,
        _ => &mut out.secret,
    };
    *slot = Some(rotated.secret);
    Ok(Json(out))
}

/// What a source has received.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct SourceStatsOut {
    accepted: u64,
    /// Repeats of webhooks accepted before (same dedupe id).
    duplicates: u64,
    rejected: u64,
    /// Why the last rejected request was refused.
    #[schema(required = true)]
    last_rejection: Option<String>,
    #[schema(format = DateTime, required = true)]
    last_rejection_at: Option<String>,
}

/// Accepted, duplicate and rejected requests, with the last rejection reason.
#[utoipa::path(get, path = "/ingest/api/v1/source/{source_id}/stats", operation_id = "ingest.source.stats",
    params(SourcePath),
    responses((status = 200, description = "Counts since the source was created", body = SourceStatsOut)))]
async fn stats(
    State(state): State<AppState>,
    Path(p): Path<SourcePath>,
) -> ApiResult<Json<SourceStatsOut>> {
    let source = find_source(&state, &p.source_id).await?;
    let s = state
        .engine
        .source_stats(&source.id)
        .await?
        .ok_or_else(|| ApiError::not_found("source"))?;
    Ok(Json(SourceStatsOut {
        accepted: s.accepted,
        duplicates: s.duplicates,
        rejected: s.rejected,
        last_rejection: s.last_rejection,
        last_rejection_at: s.last_rejection_at.map(ts),
    }))
}

// ---- destinations: the source application's endpoints ----------------------

/// The application whose endpoints are this source's destinations.
async fn app_of(state: &AppState, source_id: &str) -> ApiResult<String> {
    Ok(find_source(state, source_id).await?.app_id.into_string())
}

/// List a source's destinations.
#[utoipa::path(get, path = "/ingest/api/v1/source/{source_id}/endpoint", operation_id = "ingest.endpoint.list",
    params(SourcePath, PageQuery),
    responses((status = 200, description = "One page, oldest first", body = ListResponse<EndpointOut>)))]
async fn list_destinations(
    State(state): State<AppState>,
    Path(p): Path<SourcePath>,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<ListResponse<EndpointOut>>> {
    let app = app_of(&state, &p.source_id).await?;
    endpoints::list_of(&state, &app, &q).await
}

/// Add a destination (url, filterTypes with wildcards, payloadFilter, headers, secret).
#[utoipa::path(post, path = "/ingest/api/v1/source/{source_id}/endpoint", operation_id = "ingest.endpoint.create",
    params(SourcePath),
    request_body = EndpointIn,
    responses((status = 201, description = "Created", body = EndpointOut)))]
async fn create_destination(
    State(state): State<AppState>,
    Path(p): Path<SourcePath>,
    Body(input): Body<EndpointIn>,
) -> ApiResult<Response> {
    let app = app_of(&state, &p.source_id).await?;
    endpoints::create_of(&state, &app, input).await
}

/// Get a destination.
#[utoipa::path(get, path = "/ingest/api/v1/source/{source_id}/endpoint/{endpoint_id}", operation_id = "ingest.endpoint.get",
    params(DestinationPath),
    responses((status = 200, description = "The destination", body = EndpointOut)))]
async fn fetch_destination(
    State(state): State<AppState>,
    Path(p): Path<DestinationPath>,
) -> ApiResult<Json<EndpointOut>> {
    let app = app_of(&state, &p.source_id).await?;
    endpoints::fetch_of(&state, &app, &p.endpoint_id).await
}

/// Create or replace a destination.
#[utoipa::path(put, path = "/ingest/api/v1/source/{source_id}/endpoint/{endpoint_id}", operation_id = "ingest.endpoint.upsert",
    params(DestinationPath),
    request_body = EndpointIn,
    responses(
        (status = 200, description = "Replaced", body = EndpointOut),
        (status = 201, description = "Created with this uid", body = EndpointOut),
    ))]
async fn upsert_destination(
    State(state): State<AppState>,
    Path(p): Path<DestinationPath>,
    Body(input): Body<EndpointIn>,
) -> ApiResult<Response> {
    let app = app_of(&state, &p.source_id).await?;
    endpoints::upsert_of(&state, &app, &p.endpoint_id, input).await
}

/// Change some fields of a destination.
#[utoipa::path(patch, path = "/ingest/api/v1/source/{source_id}/endpoint/{endpoint_id}", operation_id = "ingest.endpoint.patch",
    params(DestinationPath),
    request_body = EndpointPatchIn,
    responses((status = 200, description = "Updated", body = EndpointOut)))]
async fn patch_destination(
    State(state): State<AppState>,
    Path(p): Path<DestinationPath>,
    Body(input): Body<EndpointPatchIn>,
) -> ApiResult<Json<EndpointOut>> {
    let app = app_of(&state, &p.source_id).await?;
    endpoints::patch_of(&state, &app, &p.endpoint_id, input).await
}

/// Delete a destination.
#[utoipa::path(delete, path = "/ingest/api/v1/source/{source_id}/endpoint/{endpoint_id}", operation_id = "ingest.endpoint.delete",
    params(DestinationPath),
    responses((status = 204, description = "Deleted")))]
async fn remove_destination(
    State(state): State<AppState>,
    Path(p): Path<DestinationPath>,
) -> ApiResult<StatusCode> {
    let app = app_of(&state, &p.source_id).await?;
    endpoints::remove_of(&state, &app, &p.endpoint_id).await
}

/// A destination's signing secret.
#[utoipa::path(get, path = "/ingest/api/v1/source/{source_id}/endpoint/{endpoint_id}/secret", operation_id = "ingest.endpoint.get-secret",
    params(DestinationPath),
    responses((status = 200, description = "The current secret", body = EndpointSecretOut)))]
async fn destination_secret(
    State(state): State<AppState>,
    Path(p): Path<DestinationPath>,
) -> ApiResult<Json<EndpointSecretOut>> {
    let app = app_of(&state, &p.source_id).await?;
    endpoints::secret_of(&state, &app, &p.endpoint_id).await
}

/// Rotate a destination's signing secret.
#[utoipa::path(post, path = "/ingest/api/v1/source/{source_id}/endpoint/{endpoint_id}/secret/rotate", operation_id = "ingest.endpoint.rotate-secret",
    params(DestinationPath),
    request_body = Option<EndpointSecretRotateIn>,
    responses((status = 200, description = "The new secret", body = EndpointSecretOut)))]
async fn rotate_destination_secret(
    State(state): State<AppState>,
    Path(p): Path<DestinationPath>,
    Body(input): Body<Option<EndpointSecretRotateIn>>,
) -> ApiResult<Json<EndpointSecretOut>> {
    let app = app_of(&state, &p.source_id).await?;
    endpoints::rotate_secret_of(&state, &app, &p.endpoint_id, input).await
}

/// A destination's custom headers.
#[utoipa::path(get, path = "/ingest/api/v1/source/{source_id}/endpoint/{endpoint_id}/headers", operation_id = "ingest.endpoint.get-headers",
    params(DestinationPath),
    responses((status = 200, description = "The custom headers", body = EndpointHeadersOut)))]
async fn destination_headers(
    State(state): State<AppState>,
    Path(p): Path<DestinationPath>,
) -> ApiResult<Json<EndpointHeadersOut>> {
    let app = app_of(&state, &p.source_id).await?;
    endpoints::headers_of(&state, &app, &p.endpoint_id).await
}

/// Replace a destination's custom headers.
#[utoipa::path(put, path = "/ingest/api/v1/source/{source_id}/endpoint/{endpoint_id}/headers", operation_id = "ingest.endpoint.update-headers",
    params(DestinationPath),
    request_body = EndpointHeadersIn,
    responses((status = 204, description = "Replaced")))]
async fn set_destination_headers(
    State(state): State<AppState>,
    Path(p): Path<DestinationPath>,
    Body(input): Body<EndpointHeadersIn>,
) -> ApiResult<StatusCode> {
    let app = app_of(&state, &p.source_id).await?;
    endpoints::set_headers_of(&state, &app, &p.endpoint_id, input).await
}

/// Add, change or delete a destination's custom headers.
#[utoipa::path(patch, path = "/ingest/api/v1/source/{source_id}/endpoint/{endpoint_id}/headers", operation_id = "ingest.endpoint.patch-headers",
    params(DestinationPath),
    request_body = EndpointHeadersPatchIn,
    responses((status = 204, description = "Changed")))]
async fn patch_destination_headers(
    State(state): State<AppState>,
    Path(p): Path<DestinationPath>,
    Body(input): Body<EndpointHeadersPatchIn>,
) -> ApiResult<StatusCode> {
    let app = app_of(&state, &p.source_id).await?;
    endpoints::patch_headers_of(&state, &app, &p.endpoint_id, input).await
}

/// A destination's OAuth 2.0 configuration, without its client secret.
#[utoipa::path(get, path = "/ingest/api/v1/source/{source_id}/endpoint/{endpoint_id}/oauth", operation_id = "ingest.endpoint.get-oauth",
    params(DestinationPath),
    responses((status = 200, description = "Whether the destination uses OAuth 2.0, and how", body = EndpointAuthOut)))]
async fn destination_oauth(
    State(state): State<AppState>,
    Path(p): Path<DestinationPath>,
) -> ApiResult<Json<EndpointAuthOut>> {
    let app = app_of(&state, &p.source_id).await?;
    auth::view_of(&state, &app, &p.endpoint_id, AuthPart::Oauth).await
}

/// Authenticate deliveries to a destination with an OAuth 2.0 access token.
#[utoipa::path(put, path = "/ingest/api/v1/source/{source_id}/endpoint/{endpoint_id}/oauth", operation_id = "ingest.endpoint.set-oauth-config",
    params(DestinationPath),
    request_body = EndpointOauthConfigIn,
    responses((status = 204, description = "Set")))]
async fn set_destination_oauth(
    State(state): State<AppState>,
    Path(p): Path<DestinationPath>,
    Body(input): Body<EndpointOauthConfigIn>,
) -> ApiResult<StatusCode> {
    let app = app_of(&state, &p.source_id).await?;
    auth::change_of(&state, &app, &p.endpoint_id, auth::oauth_change(input)).await
}

/// Stop using OAuth 2.0 for a destination.
#[utoipa::path(delete, path = "/ingest/api/v1/source/{source_id}/endpoint/{endpoint_id}/oauth", operation_id = "ingest.endpoint.delete-oauth-config",
    params(DestinationPath),
    responses((status = 204, description = "Removed")))]
async fn delete_destination_oauth(
    State(state): State<AppState>,
    Path(p): Path<DestinationPath>,
) -> ApiResult<StatusCode> {
    let app = app_of(&state, &p.source_id).await?;
    let change = AuthChange::Clear(AuthPart::Oauth);
    auth::change_of(&state, &app, &p.endpoint_id, change).await
}

/// Whether a destination presents a TLS client certificate (its SHA-256).
#[utoipa::path(get, path = "/ingest/api/v1/source/{source_id}/endpoint/{endpoint_id}/mtls", operation_id = "ingest.endpoint.get-mtls",
    params(DestinationPath),
    responses((status = 200, description = "Whether the destination uses mTLS", body = EndpointAuthOut)))]
async fn destination_mtls(
    State(state): State<AppState>,
    Path(p): Path<DestinationPath>,
) -> ApiResult<Json<EndpointAuthOut>> {
    let app = app_of(&state, &p.source_id).await?;
    auth::view_of(&state, &app, &p.endpoint_id, AuthPart::Mtls).await
}

/// Present a TLS client certificate on deliveries to a destination.
#[utoipa::path(put, path = "/ingest/api/v1/source/{source_id}/endpoint/{endpoint_id}/mtls", operation_id = "ingest.endpoint.set-mtls-config",
    params(DestinationPath),
    request_body = EndpointMtlsConfigIn,
    responses((status = 204, description = "Set")))]
async fn set_destination_mtls(
    State(state): State<AppState>,
    Path(p): Path<DestinationPath>,
    Body(input): Body<EndpointMtlsConfigIn>,
) -> ApiResult<StatusCode> {
    let app = app_of(&state, &p.source_id).await?;
    auth::change_of(&state, &app, &p.endpoint_id, auth::mtls_change(input)).await
}

/// Stop presenting a client certificate to a destination.
#[utoipa::path(delete, path = "/ingest/api/v1/source/{source_id}/endpoint/{endpoint_id}/mtls", operation_id = "ingest.endpoint.delete-mtls-config",
    params(DestinationPath),
    responses((status = 204, description = "Removed")))]
async fn delete_destination_mtls(
    State(state): State<AppState>,
    Path(p): Path<DestinationPath>,
) -> ApiResult<StatusCode> {
    let app = app_of(&state, &p.source_id).await?;
    let change = AuthChange::Clear(AuthPart::Mtls);
    auth::change_of(&state, &app, &p.endpoint_id, change).await
}

/// A destination's HTTP credentials, without the password or token.
#[utoipa::path(get, path = "/ingest/api/v1/source/{source_id}/endpoint/{endpoint_id}/http-auth", operation_id = "ingest.endpoint.get-http-auth",
    params(DestinationPath),
    responses((status = 200, description = "Whether the destination uses HTTP credentials", body = EndpointAuthOut)))]
async fn destination_http_auth(
    State(state): State<AppState>,
    Path(p): Path<DestinationPath>,
) -> ApiResult<Json<EndpointAuthOut>> {
    let app = app_of(&state, &p.source_id).await?;
    auth::view_of(&state, &app, &p.endpoint_id, AuthPart::Http).await
}

/// Send `Authorization: Basic …` or `Bearer …` to a destination.
#[utoipa::path(put, path = "/ingest/api/v1/source/{source_id}/endpoint/{endpoint_id}/http-auth", operation_id = "ingest.endpoint.set-http-auth",
    params(DestinationPath),
    request_body = EndpointHttpAuthIn,
    responses((status = 204, description = "Set")))]
async fn set_destination_http_auth(
    State(state): State<AppState>,
    Path(p): Path<DestinationPath>,
    Body(input): Body<EndpointHttpAuthIn>,
) -> ApiResult<StatusCode> {
    let app = app_of(&state, &p.source_id).await?;
    auth::change_of(&state, &app, &p.endpoint_id, auth::http_change(input)?).await
}

/// Stop sending HTTP credentials to a destination.
#[utoipa::path(delete, path = "/ingest/api/v1/source/{source_id}/endpoint/{endpoint_id}/http-auth", operation_id = "ingest.endpoint.delete-http-auth",
    params(DestinationPath),
    responses((status = 204, description = "Removed")))]
async fn delete_destination_http_auth(
    State(state): State<AppState>,
    Path(p): Path<DestinationPath>,
) -> ApiResult<StatusCode> {
    let app = app_of(&state, &p.source_id).await?;
    let change = AuthChange::Clear(AuthPart::Http);
    auth::change_of(&state, &app, &p.endpoint_id, change).await
}

/// Re-send a destination's failed messages since a time.
#[utoipa::path(post, path = "/ingest/api/v1/source/{source_id}/endpoint/{endpoint_id}/recover", operation_id = "ingest.endpoint.recover",
    params(DestinationPath),
    request_body = RecoverIn,
    responses((status = 202, description = "Failed deliveries in the window are pending again", body = RecoverOut)))]
async fn recover_destination(
    State(state): State<AppState>,
    Path(p): Path<DestinationPath>,
    Body(input): Body<RecoverIn>,
) -> ApiResult<Response> {
    let app = app_of(&state, &p.source_id).await?;
    endpoints::recover_of(&state, &app, &p.endpoint_id, input).await
}

/// A destination's delivery counts by status.
#[utoipa::path(get, path = "/ingest/api/v1/source/{source_id}/endpoint/{endpoint_id}/stats", operation_id = "ingest.endpoint.get-stats",
    params(DestinationPath),
    responses((status = 200, description = "Deliveries by status", body = EndpointStatsOut)))]
async fn destination_stats(
    State(state): State<AppState>,
    Path(p): Path<DestinationPath>,
) -> ApiResult<Json<EndpointStatsOut>> {
    let app = app_of(&state, &p.source_id).await?;
    endpoints::stats_of(&state, &app, &p.endpoint_id).await
}

/// A destination's circuit breaker: state and settings.
#[utoipa::path(get, path = "/ingest/api/v1/source/{source_id}/endpoint/{endpoint_id}/circuit", operation_id = "ingest.endpoint.get-circuit",
    params(DestinationPath),
    responses((status = 200, description = "The breaker's state as last stored", body = endpoints::CircuitOut)))]
async fn destination_circuit(
    State(state): State<AppState>,
    Path(p): Path<DestinationPath>,
) -> ApiResult<Json<endpoints::CircuitOut>> {
    let app = app_of(&state, &p.source_id).await?;
    endpoints::circuit_of(&state, &app, &p.endpoint_id).await
}

/// Close a destination's circuit breaker now.
#[utoipa::path(post, path = "/ingest/api/v1/source/{source_id}/endpoint/{endpoint_id}/circuit/reset", operation_id = "ingest.endpoint.reset-circuit",
    params(DestinationPath),
    responses((status = 200, description = "The breaker, closed", body = endpoints::CircuitOut)))]
async fn reset_destination_circuit(
    State(state): State<AppState>,
    Path(p): Path<DestinationPath>,
) -> ApiResult<Json<endpoints::CircuitOut>> {
    let app = app_of(&state, &p.source_id).await?;
    endpoints::reset_circuit_of(&state, &app, &p.endpoint_id).await
}
