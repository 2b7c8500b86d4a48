//! Sources and their destinations: `/ingest/api/v1/source…`, shaped like the
//! Svix Ingest API. A source's destinations are the endpoints of an
//! application created with it (its uid is the source id), so everything the
//! v1 API offers for endpoints, messages and attempts works for them too.

use super::ingest_url;
use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Body, PageQuery, Path, Query};
use crate::v1::endpoints::{
    self, EndpointIn, EndpointPatchIn, HeadersIn, HeadersPatchIn, RecoverIn, RotateIn,
};
use crate::v1::{list_out, ts};
use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use switchyard_core::source::{compile, public_config};
use switchyard_engine::SourceInput;
use switchyard_store::{Metadata, Order, Source};

pub fn router() -> Router<AppState> {
    const SOURCE: &str = "/ingest/api/v1/source/{source_id}";
    const ENDPOINT: &str = "/ingest/api/v1/source/{source_id}/endpoint/{endpoint_id}";
    Router::new()
        .route("/ingest/api/v1/source", get(list).post(create))
        .route(SOURCE, get(fetch).put(upsert).delete(remove))
        .route(&format!("{SOURCE}/token/rotate"), post(rotate_token))
        .route(&format!("{SOURCE}/secret/rotate"), post(rotate_secret))
        .route(&format!("{SOURCE}/stats"), get(stats))
        .route(
            &format!("{SOURCE}/endpoint"),
            get(list_destinations).post(create_destination),
        )
        .route(
            ENDPOINT,
            get(fetch_destination)
                .put(upsert_destination)
                .patch(patch_destination)
                .delete(remove_destination),
        )
        .route(&format!("{ENDPOINT}/secret"), get(destination_secret))
        .route(
            &format!("{ENDPOINT}/secret/rotate"),
            post(rotate_destination_secret),
        )
        .route(
            &format!("{ENDPOINT}/headers"),
            get(destination_headers)
                .put(set_destination_headers)
                .patch(patch_destination_headers),
        )
        .route(&format!("{ENDPOINT}/recover"), post(recover_destination))
        .route(&format!("{ENDPOINT}/stats"), get(destination_stats))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SourceIn {
    name: String,
    uid: Option<String>,
    metadata: Option<Metadata>,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    config: Value,
    /// Switchyard's own options; see `switchyard_core::source`.
    #[serde(default)]
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

fn source_out(state: &AppState, host: Option<&str>, s: &Source) -> Value {
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
    json!({
        "id": s.id,
        "uid": s.uid,
        "name": s.name,
        "type": wire_type,
        "verifier": s.kind,
        "config": config,
        "settings": settings,
        "metadata": s.metadata,
        "ingestUrl": ingest_url(state, host, &s.token),
        "createdAt": ts(s.created_at),
        "updatedAt": ts(s.updated_at),
    })
}

async fn find_source(state: &AppState, key: &str) -> ApiResult<Source> {
    Ok(state.engine.source(key).await?)
}

fn host_of(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
}

async fn list(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<Value>> {
    let page = state
        .engine
        .list_sources(&q.page(Order::Ascending)?)
        .await?;
    let host = host_of(&headers);
    Ok(Json(list_out(page, |s| {
        source_out(&state, host.as_deref(), s)
    })))
}

async fn create(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    Body(input): Body<SourceIn>,
) -> ApiResult<Response> {
    let source = state.engine.create_source(input.into(), None).await?;
    let host = host_of(&headers);
    Ok((
        StatusCode::CREATED,
        Json(source_out(&state, host.as_deref(), &source)),
    )
        .into_response())
}

async fn fetch(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    Path(source_id): Path<String>,
) -> ApiResult<Json<Value>> {
    let source = find_source(&state, &source_id).await?;
    Ok(Json(source_out(
        &state,
        host_of(&headers).as_deref(),
        &source,
    )))
}

/// Replaces the source's definition; retired secrets of an unchanged
/// secret stay valid.
async fn upsert(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    Path(source_id): Path<String>,
    Body(input): Body<SourceIn>,
) -> ApiResult<Response> {
    let (source, created) = state.engine.upsert_source(&source_id, input.into()).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let host = host_of(&headers);
    Ok((status, Json(source_out(&state, host.as_deref(), &source))).into_response())
}

async fn remove(
    State(state): State<AppState>,
    Path(source_id): Path<String>,
) -> ApiResult<StatusCode> {
    state.engine.delete_source(&source_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A new ingest URL; the old one keeps working for 48 hours.
async fn rotate_token(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    Path(source_id): Path<String>,
) -> ApiResult<Json<Value>> {
    let source = state.engine.rotate_source_token(&source_id).await?;
    Ok(Json(json!({
        "ingestUrl": ingest_url(&state, host_of(&headers).as_deref(), &source.token),
    })))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct SecretRotateIn {
    secret: Option<String>,
    grace_period_seconds: Option<u64>,
}

/// Replaces the source's verification secret (the password for basic-auth,
/// the key for api-key); the old one keeps verifying for the grace period.
async fn rotate_secret(
    State(state): State<AppState>,
    Path(source_id): Path<String>,
    Body(input): Body<Option<SecretRotateIn>>,
) -> ApiResult<Json<Value>> {
    let input = input.unwrap_or_default();
    let rotated = state
        .engine
        .rotate_source_secret(&source_id, input.secret, input.grace_period_seconds)
        .await?;
    Ok(Json(json!({ rotated.field: rotated.secret })))
}

async fn stats(
    State(state): State<AppState>,
    Path(source_id): Path<String>,
) -> ApiResult<Json<Value>> {
    let source = find_source(&state, &source_id).await?;
    let s = state
        .engine
        .source_stats(&source.id)
        .await?
        .ok_or_else(|| ApiError::not_found("source"))?;
    Ok(Json(json!({
        "accepted": s.accepted,
        "duplicates": s.duplicates,
        "rejected": s.rejected,
        "lastRejection": s.last_rejection,
        "lastRejectionAt": s.last_rejection_at.map(ts),
    })))
}

// ---- destinations: the source application's endpoints ----------------------

async fn app_of(state: &AppState, source_id: &str) -> ApiResult<String> {
    Ok(find_source(state, source_id).await?.app_id.into_string())
}

async fn list_destinations(
    State(state): State<AppState>,
    Path(source_id): Path<String>,
    q: Query<PageQuery>,
) -> ApiResult<Json<Value>> {
    let app = app_of(&state, &source_id).await?;
    endpoints::list(State(state), Path(app), q).await
}

async fn create_destination(
    State(state): State<AppState>,
    Path(source_id): Path<String>,
    body: Body<EndpointIn>,
) -> ApiResult<Response> {
    let app = app_of(&state, &source_id).await?;
    endpoints::create(State(state), Path(app), body).await
}

async fn fetch_destination(
    State(state): State<AppState>,
    Path((source_id, endpoint_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let app = app_of(&state, &source_id).await?;
    endpoints::fetch(State(state), Path((app, endpoint_id))).await
}

async fn upsert_destination(
    State(state): State<AppState>,
    Path((source_id, endpoint_id)): Path<(String, String)>,
    body: Body<EndpointIn>,
) -> ApiResult<Response> {
    let app = app_of(&state, &source_id).await?;
    endpoints::upsert(State(state), Path((app, endpoint_id)), body).await
}

async fn patch_destination(
    State(state): State<AppState>,
    Path((source_id, endpoint_id)): Path<(String, String)>,
    body: Body<EndpointPatchIn>,
) -> ApiResult<Json<Value>> {
    let app = app_of(&state, &source_id).await?;
    endpoints::patch(State(state), Path((app, endpoint_id)), body).await
}

async fn remove_destination(
    State(state): State<AppState>,
    Path((source_id, endpoint_id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let app = app_of(&state, &source_id).await?;
    endpoints::remove(State(state), Path((app, endpoint_id))).await
}

async fn destination_secret(
    State(state): State<AppState>,
    Path((source_id, endpoint_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let app = app_of(&state, &source_id).await?;
    endpoints::secret(State(state), Path((app, endpoint_id))).await
}

async fn rotate_destination_secret(
    State(state): State<AppState>,
    Path((source_id, endpoint_id)): Path<(String, String)>,
    body: Body<Option<RotateIn>>,
) -> ApiResult<Json<Value>> {
    let app = app_of(&state, &source_id).await?;
    endpoints::rotate_secret(State(state), Path((app, endpoint_id)), body).await
}

async fn destination_headers(
    State(state): State<AppState>,
    Path((source_id, endpoint_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let app = app_of(&state, &source_id).await?;
    endpoints::headers(State(state), Path((app, endpoint_id))).await
}

async fn set_destination_headers(
    State(state): State<AppState>,
    Path((source_id, endpoint_id)): Path<(String, String)>,
    body: Body<HeadersIn>,
) -> ApiResult<StatusCode> {
    let app = app_of(&state, &source_id).await?;
    endpoints::set_headers(State(state), Path((app, endpoint_id)), body).await
}

async fn patch_destination_headers(
    State(state): State<AppState>,
    Path((source_id, endpoint_id)): Path<(String, String)>,
    body: Body<HeadersPatchIn>,
) -> ApiResult<StatusCode> {
    let app = app_of(&state, &source_id).await?;
    endpoints::patch_headers(State(state), Path((app, endpoint_id)), body).await
}

async fn recover_destination(
    State(state): State<AppState>,
    Path((source_id, endpoint_id)): Path<(String, String)>,
    body: Body<RecoverIn>,
) -> ApiResult<Response> {
    let app = app_of(&state, &source_id).await?;
    endpoints::recover(State(state), Path((app, endpoint_id)), body).await
}

async fn destination_stats(
    State(state): State<AppState>,
    Path((source_id, endpoint_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let app = app_of(&state, &source_id).await?;
    endpoints::stats(State(state), Path((app, endpoint_id))).await
}
