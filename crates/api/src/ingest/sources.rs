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
use crate::v1::{list_out, parse_uid, ts};
use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use switchyard_core::source::{RETIRED_SECRETS_KEY, compile, public_config, secret_key};
use switchyard_core::timefmt::now_ms;
use switchyard_core::{AppId, SourceId};
use switchyard_store::{Application, Metadata, Order, RetiredSecret, Source};

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

/// How long a rotated-out ingest token keeps working, and how many may be
/// alive at once (as the Svix Ingest API documents).
const TOKEN_GRACE_MS: u64 = 48 * 3600 * 1000;
const MAX_RETIRED_TOKENS: usize = 3;
const DEFAULT_SECRET_GRACE_SECS: u64 = 24 * 3600;
const MAX_SECRET_GRACE_SECS: u64 = 7 * 24 * 3600;

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

fn new_token() -> String {
    hex::encode(rand::random::<[u8; 20]>())
}

/// Checks a source's type, config and settings together, naming the field.
fn check(input: &SourceIn) -> ApiResult<()> {
    if input.name.trim().is_empty() || input.name.len() > 256 {
        return Err(ApiError::field("name", "must be 1 to 256 characters"));
    }
    if !input.config.is_object() && !input.config.is_null() {
        return Err(ApiError::field("config", "must be an object"));
    }
    compile(&input.kind, &input.config, &input.settings)
        .map_err(|e| compile_error(&e, "config"))?;
    Ok(())
}

/// A compile error (`field: problem`) as a 422 naming the field.
fn compile_error(e: &str, fallback_field: &str) -> ApiError {
    let (field, msg) = e.split_once(": ").unwrap_or((fallback_field, e));
    ApiError::field(field, msg.to_owned())
}

async fn find_source(state: &AppState, key: &str) -> ApiResult<Source> {
    state
        .engine
        .store()
        .get_source(key)
        .await?
        .ok_or_else(|| ApiError::not_found("source"))
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
        .store()
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
    insert(
        &state,
        host_of(&headers).as_deref(),
        input.normalise(),
        None,
    )
    .await
}

async fn insert(
    state: &AppState,
    host: Option<&str>,
    input: SourceIn,
    uid: Option<String>,
) -> ApiResult<Response> {
    check(&input)?;
    let now = now_ms();
    let id = SourceId::generate_at(now).into_string();
    let app = Application {
        id: AppId::generate_at(now),
        uid: Some(id.clone()),
        name: format!("source {}", input.name),
        rate_limit: None,
        metadata: Metadata::new(),
        created_at: now,
        updated_at: now,
    };
    let source = Source {
        id,
        uid: parse_uid("uid", uid.or(input.uid))?,
        name: input.name,
        kind: input.kind,
        config: object_or_empty(input.config),
        settings: object_or_empty(input.settings),
        metadata: input.metadata.unwrap_or_default(),
        app_id: app.id.clone(),
        token: new_token(),
        retired_tokens: Vec::new(),
        created_at: now,
        updated_at: now,
    };
    let source = state.engine.store().insert_source(source, app).await?;
    state.engine.sources_changed();
    Ok((StatusCode::CREATED, Json(source_out(state, host, &source))).into_response())
}

fn object_or_empty(v: Value) -> Value {
    if v.is_null() { json!({}) } else { v }
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

async fn save(state: &AppState, mut source: Source) -> ApiResult<Source> {
    source.updated_at = now_ms();
    let source = state.engine.store().update_source(source).await?;
    state.engine.sources_changed();
    Ok(source)
}

/// Replaces the source's definition; retired secrets of an unchanged
/// secret stay valid.
async fn upsert(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    Path(source_id): Path<String>,
    Body(input): Body<SourceIn>,
) -> ApiResult<Response> {
    let input = input.normalise();
    let host = host_of(&headers);
    let Some(mut source) = state.engine.store().get_source(&source_id).await? else {
        if source_id.starts_with("src_") {
            return Err(ApiError::not_found("source"));
        }
        return insert(&state, host.as_deref(), input, Some(source_id)).await;
    };
    check(&input)?;
    let mut config = object_or_empty(input.config);
    if source.kind == input.kind
        && let (Some(retired), Some(obj)) = (
            source.config.get(RETIRED_SECRETS_KEY).cloned(),
            config.as_object_mut(),
        )
    {
        obj.insert(RETIRED_SECRETS_KEY.into(), retired);
    }
    source.uid = parse_uid("uid", input.uid)?.or(source.uid);
    source.name = input.name;
    source.kind = input.kind;
    source.config = config;
    source.settings = object_or_empty(input.settings);
    source.metadata = input.metadata.unwrap_or_default();
    let source = save(&state, source).await?;
    Ok(Json(source_out(&state, host.as_deref(), &source)).into_response())
}

async fn remove(
    State(state): State<AppState>,
    Path(source_id): Path<String>,
) -> ApiResult<StatusCode> {
    let source = find_source(&state, &source_id).await?;
    state.engine.store().delete_source(&source.id).await?;
    state.engine.sources_changed();
    state.engine.app_changed(&source.app_id);
    Ok(StatusCode::NO_CONTENT)
}

/// A new ingest URL; the old one keeps working for 48 hours.
async fn rotate_token(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    Path(source_id): Path<String>,
) -> ApiResult<Json<Value>> {
    let mut source = find_source(&state, &source_id).await?;
    let now = now_ms();
    source.retired_tokens.retain(|t| t.expires_at > now);
    if source.retired_tokens.len() >= MAX_RETIRED_TOKENS {
        return Err(ApiError::conflict(format!(
            "the token was rotated {MAX_RETIRED_TOKENS} times in the last 48 hours; wait for an old one to expire"
        )));
    }
    let old = std::mem::replace(&mut source.token, new_token());
    source.retired_tokens.push(RetiredSecret {
        secret: old,
        expires_at: now + TOKEN_GRACE_MS,
    });
    let source = save(&state, source).await?;
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
    let grace = input
        .grace_period_seconds
        .unwrap_or(DEFAULT_SECRET_GRACE_SECS);
    if grace > MAX_SECRET_GRACE_SECS {
        return Err(ApiError::field(
            "gracePeriodSeconds",
            format!("must be at most {MAX_SECRET_GRACE_SECS} seconds"),
        ));
    }
    let mut source = find_source(&state, &source_id).await?;
    let Some(key) = secret_key(&source.kind) else {
        return Err(ApiError::http(
            StatusCode::CONFLICT,
            "conflict",
            "sources of type none have no secret",
        ));
    };
    let new_secret = match input.secret {
        Some(s) if !s.is_empty() => s,
        Some(_) => return Err(ApiError::field("secret", "must not be empty")),
        None if matches!(source.kind.as_str(), "standard-webhooks" | "svix") => {
            switchyard_core::signing::EndpointSecret::generate().to_whsec()
        }
        None => hex::encode(rand::random::<[u8; 32]>()),
    };
    let now = now_ms();
    let Some(config) = source.config.as_object_mut() else {
        return Err(ApiError::conflict("the source's config is not an object"));
    };
    let mut retired: Vec<Value> = config
        .get(RETIRED_SECRETS_KEY)
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    retired.retain(|r| r["expiresAt"].as_u64().is_some_and(|at| at > now));
    let old = config.insert(key.into(), Value::String(new_secret.clone()));
    if grace > 0
        && let Some(Value::String(old)) = old
    {
        retired.push(json!({ "secret": old, "expiresAt": now + grace * 1000 }));
    }
    config.insert(RETIRED_SECRETS_KEY.into(), Value::Array(retired));
    // The new secret is the request's `secret` field, not `config.secret`.
    compile(&source.kind, &source.config, &source.settings)
        .map_err(|e| compile_error(e.strip_prefix("config.").unwrap_or(&e), "secret"))?;
    save(&state, source).await?;
    Ok(Json(json!({ key: new_secret })))
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
