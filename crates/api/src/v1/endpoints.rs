//! Endpoints: `/api/v1/app/{app}/endpoint`, with secrets, headers, recovery and stats.
//!
//! Ingest destinations are endpoints too: the `…_of` functions here serve
//! both APIs, each handler naming the application its own way.

use super::{AppPath, EndpointPath, ListResponse, created_status, texts, ts};
use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Body, PageQuery, Path, Query, double_option};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use switchyard_core::TaskId;
use switchyard_core::breaker::BreakerConfig;
use switchyard_core::timefmt::parse_rfc3339_ms;
use switchyard_engine::{CircuitView, EndpointInput, EndpointPatch, EngineError};
use switchyard_store::{Endpoint, Metadata, Order};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(fetch, upsert, patch, remove))
        .routes(routes!(secret))
        .routes(routes!(rotate_secret))
        .routes(routes!(headers, set_headers, patch_headers))
        .routes(routes!(recover))
        .routes(routes!(stats))
        .routes(routes!(circuit))
        .routes(routes!(reset_circuit))
}

/// Circuit-breaker settings of an endpoint (a Switchyard addition). Each
/// field may be left out for its default.
#[derive(Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct CircuitBreakerIn {
    /// Failures in a row that open the breaker, 1 to 10,000 (default 5).
    #[schema(minimum = 1, maximum = 10000)]
    #[serde(skip_serializing_if = "Option::is_none")]
    consecutive_failures: Option<u32>,
    /// Also open when this share of the attempts in the window failed,
    /// above 0 and at most 1 (default: no ratio).
    #[schema(exclusive_minimum = 0.0, maximum = 1.0)]
    #[serde(skip_serializing_if = "Option::is_none")]
    failure_ratio: Option<f64>,
    /// The window the ratio looks at, 1 to 3,600 seconds (default 60).
    #[schema(minimum = 1, maximum = 3600)]
    #[serde(skip_serializing_if = "Option::is_none")]
    window_secs: Option<u32>,
    /// Attempts in the window before the ratio counts, 1 to 1,000,000
    /// (default 20).
    #[schema(minimum = 1, maximum = 1000000)]
    #[serde(skip_serializing_if = "Option::is_none")]
    minimum_attempts: Option<u32>,
    /// Seconds the breaker stays open before one probe, 1 to 86,400
    /// (default 30).
    #[schema(minimum = 1, maximum = 86400)]
    #[serde(skip_serializing_if = "Option::is_none")]
    cooldown_secs: Option<u32>,
}

impl CircuitBreakerIn {
    fn into_value(self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// An endpoint's circuit-breaker settings, defaults filled in.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CircuitBreakerOut {
    consecutive_failures: u32,
    #[schema(required = true)]
    failure_ratio: Option<f64>,
    window_secs: u32,
    minimum_attempts: u32,
    cooldown_secs: u32,
}

impl From<&BreakerConfig> for CircuitBreakerOut {
    fn from(c: &BreakerConfig) -> Self {
        Self {
            consecutive_failures: c.consecutive_failures,
            failure_ratio: c.failure_ratio,
            window_secs: c.window_secs,
            minimum_attempts: c.minimum_attempts,
            cooldown_secs: c.cooldown_secs,
        }
    }
}

/// An endpoint's circuit breaker: where it is and since when.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CircuitOut {
    /// `closed` (deliveries go), `open` (nothing is sent until the
    /// cool-down has passed; waiting deliveries use no attempt) or
    /// `halfOpen` (one probe decides).
    #[schema(pattern = "^(closed|open|halfOpen)$")]
    state: String,
    /// When it entered this state.
    #[schema(format = DateTime)]
    since: String,
    /// The failure that opened it (an HTTP status or a connection error).
    #[schema(required = true)]
    last_error: Option<String>,
    /// Failures in a row when it entered this state.
    consecutive_failures: u32,
    /// The endpoint's settings; `null`: it has no breaker.
    #[schema(required = true)]
    settings: Option<CircuitBreakerOut>,
}

impl From<CircuitView> for CircuitOut {
    fn from(v: CircuitView) -> Self {
        Self {
            state: v.snapshot.state.as_str().to_owned(),
            since: ts(v.snapshot.since),
            last_error: v.snapshot.last_error,
            consecutive_failures: v.snapshot.consecutive_failures,
            settings: v.config.as_ref().map(CircuitBreakerOut::from),
        }
    }
}

/// Custom headers whose values the API never shows (their names are listed
/// as `sensitive`).
const SENSITIVE_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "x-api-key",
];

/// An endpoint (or ingest destination): create or replace.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(examples(json!({"url": "https://example.com/webhooks", "uid": "main", "filterTypes": ["invoice.*"]})))]
pub(crate) struct EndpointIn {
    /// Where deliveries go: an http(s) URL they are POSTed to, or a broker
    /// URL of a scheme this build delivers to (`redis://host:port/db?stream=name`,
    /// `rediss://` for TLS; no credentials in it: see `http-auth`).
    #[schema(
        format = "uri",
        pattern = "^[A-Za-z][A-Za-z0-9+.-]*://",
        max_length = 65536
    )]
    url: String,
    #[serde(default)]
    description: String,
    /// Deprecated name of `throttleRate`, which wins when both are sent.
    #[schema(deprecated, minimum = 1, maximum = 65535)]
    rate_limit: Option<u32>,
    /// Deliveries per second to this endpoint (its application's
    /// `throttleRate` when absent); deliveries over it wait their turn.
    #[schema(minimum = 1, maximum = 65535)]
    throttle_rate: Option<u32>,
    /// Deliveries in flight to this endpoint at once, 1 to 10,000 (absent:
    /// no limit beyond the per-host connection cap). A Switchyard addition.
    #[schema(minimum = 1, maximum = 10000)]
    concurrency_limit: Option<u32>,
    /// A circuit breaker for this endpoint (absent or `null`: none).
    circuit_breaker: Option<CircuitBreakerIn>,
    /// First in, first out: deliveries to this endpoint go one at a time,
    /// in the order their messages were created, and one that fails holds
    /// back the rest until it succeeds or runs out of retries (then the
    /// next goes). Covers messages created while it is set. A Switchyard
    /// addition.
    #[serde(default)]
    fifo: bool,
    /// A unique name of your choosing; the API takes it wherever it takes
    /// the id. It may not start like an id (`app_`, `ep_`, ...).
    #[schema(pattern = "^[A-Za-z0-9._-]{1,256}$")]
    uid: Option<String>,
    #[serde(default)]
    disabled: bool,
    /// Event types (or `*` patterns such as `invoice.*`) this endpoint
    /// receives, at most 256; absent or `null`: all. `eventTypes` wins when
    /// both are sent.
    #[schema(max_items = 256)]
    event_types: Option<Vec<String>>,
    /// Older name of `eventTypes`.
    #[schema(max_items = 256)]
    filter_types: Option<Vec<String>>,
    /// At most 10 channels; the endpoint receives messages sent to any of
    /// them (absent or `null`: all messages).
    channels: Option<Vec<String>>,
    /// The signing secret: `whsec_…` (HMAC-SHA256, Standard Webhooks `v1`)
    /// or a `whsk_…` ed25519 signing key (`v1a`: base64 of the 32-byte seed
    /// then the public key); absent: one is generated, HMAC unless the
    /// server is configured for ed25519.
    secret: Option<String>,
    /// Free-form string pairs of your own: at most 100, 16 KiB together.
    #[schema(value_type = Option<BTreeMap<String, String>>)]
    metadata: Option<Metadata>,
    /// Custom headers sent with every delivery: at most 50, 16 KiB together.
    headers: Option<BTreeMap<String, String>>,
    /// A filter on the payload (Switchyard extension); `null`: none.
    #[schema(value_type = Option<Object>)]
    payload_filter: Option<Value>,
}

/// A partial change: an absent field stays as it is, `null` clears the
/// nullable ones.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EndpointPatchIn {
    #[schema(
        format = "uri",
        pattern = "^[A-Za-z][A-Za-z0-9+.-]*://",
        max_length = 65536
    )]
    url: Option<String>,
    description: Option<String>,
    /// Deprecated name of `throttleRate`, which wins when both are sent.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(deprecated, minimum = 1, maximum = 65535)]
    rate_limit: Option<Option<u32>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(minimum = 1, maximum = 65535)]
    throttle_rate: Option<Option<u32>>,
    /// Deliveries in flight at once, 1 to 10,000; `null` removes the limit.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(minimum = 1, maximum = 10000)]
    concurrency_limit: Option<Option<u32>>,
    /// Replaces the circuit-breaker settings; `null` removes the breaker.
    #[serde(default, deserialize_with = "double_option")]
    circuit_breaker: Option<Option<CircuitBreakerIn>>,
    /// Turns first-in-first-out delivery on or off.
    fifo: Option<bool>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(pattern = "^[A-Za-z0-9._-]{1,256}$")]
    uid: Option<Option<String>>,
    disabled: Option<bool>,
    /// `eventTypes` wins when both are sent.
    #[serde(default, deserialize_with = "double_option")]
    event_types: Option<Option<Vec<String>>>,
    /// Older name of `eventTypes`.
    #[serde(default, deserialize_with = "double_option")]
    filter_types: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "double_option")]
    channels: Option<Option<Vec<String>>>,
    /// Free-form string pairs of your own: at most 100, 16 KiB together.
    #[schema(value_type = Option<BTreeMap<String, String>>)]
    metadata: Option<Metadata>,
    secret: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<Object>)]
    payload_filter: Option<Option<Value>>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EndpointOut {
    /// `ep_…`
    id: String,
    #[schema(required = true)]
    uid: Option<String>,
    url: String,
    /// Always 1.
    version: u32,
    description: String,
    disabled: bool,
    #[schema(required = true)]
    filter_types: Option<Vec<String>>,
    /// The same as `filterTypes`.
    #[schema(required = true)]
    event_types: Option<Vec<String>>,
    #[schema(required = true)]
    channels: Option<Vec<String>>,
    /// The same as `throttleRate`, under its older name.
    #[schema(required = true)]
    rate_limit: Option<u32>,
    #[schema(required = true)]
    throttle_rate: Option<u32>,
    /// Deliveries in flight at once; `null`: no limit.
    #[schema(required = true)]
    concurrency_limit: Option<u32>,
    /// Why Switchyard disabled the endpoint (every attempt failed for the
    /// auto-disable time); `null` when enabled or disabled through the API.
    /// A Switchyard addition.
    #[schema(required = true)]
    disabled_reason: Option<String>,
    /// Circuit-breaker settings; `null`: no breaker. Its state is at
    /// `…/endpoint/{id}/circuit`.
    #[schema(required = true)]
    circuit_breaker: Option<CircuitBreakerOut>,
    /// One delivery at a time, in message order.
    fifo: bool,
    /// Free-form string pairs of your own.
    #[schema(value_type = BTreeMap<String, String>)]
    metadata: Metadata,
    #[schema(value_type = Option<Object>, required = true)]
    payload_filter: Option<Value>,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
}

impl EndpointOut {
    pub(crate) fn new(ep: &Endpoint) -> Self {
        EndpointOut {
            id: ep.id.as_str().to_owned(),
            uid: ep.uid.as_deref().map(str::to_owned),
            url: ep.url.to_string(),
            version: 1,
            description: ep.description.clone(),
            disabled: ep.disabled,
            filter_types: texts(ep.filter_types.as_deref()),
            event_types: texts(ep.filter_types.as_deref()),
            channels: texts(ep.channels.as_deref()),
            rate_limit: ep.rate_limit,
            throttle_rate: ep.rate_limit,
            concurrency_limit: ep.concurrency_limit,
            disabled_reason: ep.disabled_reason.clone(),
            circuit_breaker: ep.circuit_breaker.as_ref().map(CircuitBreakerOut::from),
            fifo: ep.fifo,
            metadata: ep.metadata.clone(),
            payload_filter: ep.payload_filter.clone(),
            created_at: ts(ep.created_at),
            updated_at: ts(ep.updated_at),
        }
    }
}

impl From<EndpointIn> for EndpointInput {
    fn from(input: EndpointIn) -> Self {
        EndpointInput {
            url: input.url,
            description: input.description,
            rate_limit: input.throttle_rate.or(input.rate_limit),
            concurrency_limit: input.concurrency_limit,
            circuit_breaker: input.circuit_breaker.map(CircuitBreakerIn::into_value),
            uid: input.uid,
            disabled: input.disabled,
            filter_types: input.event_types.or(input.filter_types),
            channels: input.channels,
            secret: input.secret,
            metadata: input.metadata,
            headers: input.headers,
            payload_filter: input.payload_filter,
            fifo: input.fifo,
        }
    }
}

impl From<EndpointPatchIn> for EndpointPatch {
    fn from(input: EndpointPatchIn) -> Self {
        EndpointPatch {
            url: input.url,
            description: input.description,
            rate_limit: super::either_name(input.throttle_rate, input.rate_limit),
            concurrency_limit: input.concurrency_limit,
            circuit_breaker: input
                .circuit_breaker
                .map(|b| b.map(CircuitBreakerIn::into_value)),
            uid: input.uid,
            disabled: input.disabled,
            filter_types: super::either_name(input.event_types, input.filter_types),
            channels: input.channels,
            metadata: input.metadata,
            secret: input.secret,
            payload_filter: input.payload_filter,
            fifo: input.fifo,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub(crate) struct EndpointSecretOut {
    /// What verifies deliveries: the `whsec_…` secret they are signed with,
    /// or for an ed25519 endpoint the `whpk_…` public key of its signing key
    /// (which the API never shows).
    key: String,
}

/// Rotates an endpoint's signing secret.
#[derive(Deserialize, Default, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EndpointSecretRotateIn {
    /// The new `whsec_…` secret or `whsk_…` ed25519 key; absent or `null`:
    /// one of the current secret's scheme is generated.
    key: Option<String>,
    /// How long the old secret keeps signing beside the new one, 0 to
    /// 604800 seconds (default 86400).
    #[schema(maximum = 604800)]
    grace_period_seconds: Option<u64>,
}

/// An endpoint's custom headers; values of sensitive ones are hidden.
#[derive(Serialize, ToSchema)]
pub(crate) struct EndpointHeadersOut {
    headers: BTreeMap<String, String>,
    /// Names of headers that are set but whose values are not shown
    /// (`Authorization`, `Cookie`, ...).
    sensitive: Vec<String>,
}

/// `PUT …/headers`: the whole set of custom headers.
#[derive(Deserialize, ToSchema)]
pub(crate) struct EndpointHeadersIn {
    headers: BTreeMap<String, String>,
}

/// `PATCH …/headers`: headers to add or change; a `null` value deletes that
/// header (Svix types the map's values as nullable, and older SDKs and
/// hand-written clients delete that way), as does a name in `deleteHeaders`
/// (today's SDKs). Names match in any case.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EndpointHeadersPatchIn {
    headers: BTreeMap<String, Option<String>>,
    #[serde(default)]
    delete_headers: Option<Vec<String>>,
}

/// Re-sends failed deliveries in a time window.
#[derive(Deserialize, ToSchema)]
#[schema(examples(json!({"since": "2024-01-01T00:00:00Z"})))]
pub(crate) struct RecoverIn {
    #[schema(format = DateTime)]
    since: String,
    /// Absent or `null`: until now.
    #[schema(format = DateTime)]
    until: Option<String>,
}

/// The background task a recovery ran as (it has finished when this is
/// returned).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RecoverOut {
    /// `qtask_…`
    id: String,
    /// Always `finished`.
    status: &'static str,
    /// Always `endpoint.recover`.
    task: &'static str,
    #[schema(format = DateTime)]
    updated_at: String,
    data: RecoverData,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RecoverData {
    /// How many failed deliveries were made pending again.
    messages_requeued: u64,
}

/// Deliveries to an endpoint by status.
#[derive(Serialize, ToSchema)]
pub(crate) struct EndpointStatsOut {
    success: u64,
    pending: u64,
    sending: u64,
    fail: u64,
    /// Always 0: Switchyard does not cancel deliveries.
    canceled: u64,
}

// ---- the operations, for endpoints and ingest destinations alike ----------

pub(crate) async fn list_of(
    state: &AppState,
    app: &str,
    q: &PageQuery,
) -> ApiResult<Json<ListResponse<EndpointOut>>> {
    let page = state
        .engine
        .list_endpoints(app, &q.page(Order::Ascending)?)
        .await?;
    Ok(Json(ListResponse::of(page, EndpointOut::new)))
}

/// An error about the event types names them as the request did: Svix
/// takes them as `eventTypes` or `filterTypes`, the engine as the latter.
fn named_as_sent(e: EngineError, sent_as_event_types: bool) -> EngineError {
    match e {
        EngineError::Invalid { field, message }
            if sent_as_event_types && field == "filterTypes" =>
        {
            EngineError::Invalid {
                field: "eventTypes".into(),
                message,
            }
        }
        other => other,
    }
}

pub(crate) async fn create_of(
    state: &AppState,
    app: &str,
    input: EndpointIn,
) -> ApiResult<Response> {
    let as_event_types = input.event_types.is_some();
    let ep = state
        .engine
        .create_endpoint(app, input.into())
        .await
        .map_err(|e| named_as_sent(e, as_event_types))?;
    Ok((StatusCode::CREATED, Json(EndpointOut::new(&ep))).into_response())
}

pub(crate) async fn fetch_of(
    state: &AppState,
    app: &str,
    ep: &str,
) -> ApiResult<Json<EndpointOut>> {
    Ok(Json(EndpointOut::new(
        &state.engine.endpoint(app, ep).await?,
    )))
}

pub(crate) async fn upsert_of(
    state: &AppState,
    app: &str,
    ep: &str,
    input: EndpointIn,
) -> ApiResult<Response> {
    let as_event_types = input.event_types.is_some();
    let (ep, created) = state
        .engine
        .upsert_endpoint(app, ep, input.into())
        .await
        .map_err(|e| named_as_sent(e, as_event_types))?;
    Ok((created_status(created), Json(EndpointOut::new(&ep))).into_response())
}

pub(crate) async fn patch_of(
    state: &AppState,
    app: &str,
    ep: &str,
    input: EndpointPatchIn,
) -> ApiResult<Json<EndpointOut>> {
    let as_event_types = matches!(input.event_types, Some(Some(_)));
    Ok(Json(EndpointOut::new(
        &state
            .engine
            .patch_endpoint(app, ep, input.into())
            .await
            .map_err(|e| named_as_sent(e, as_event_types))?,
    )))
}

pub(crate) async fn remove_of(state: &AppState, app: &str, ep: &str) -> ApiResult<StatusCode> {
    state.engine.delete_endpoint(app, ep).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn secret_of(
    state: &AppState,
    app: &str,
    ep: &str,
) -> ApiResult<Json<EndpointSecretOut>> {
    let ep = state.engine.endpoint(app, ep).await?;
    Ok(Json(EndpointSecretOut {
        key: ep.secret.to_verifier_text(),
    }))
}

/// Issues a new secret; the old one keeps signing alongside it for the grace period.
pub(crate) async fn rotate_secret_of(
    state: &AppState,
    app: &str,
    ep: &str,
    input: Option<EndpointSecretRotateIn>,
) -> ApiResult<Json<EndpointSecretOut>> {
    let input = input.unwrap_or_default();
    let key = state
        .engine
        .rotate_endpoint_secret(app, ep, input.key, input.grace_period_seconds)
        .await?;
    Ok(Json(EndpointSecretOut {
        key: key.to_verifier_text(),
    }))
}

pub(crate) async fn headers_of(
    state: &AppState,
    app: &str,
    ep: &str,
) -> ApiResult<Json<EndpointHeadersOut>> {
    let ep = state.engine.endpoint(app, ep).await?;
    let (sensitive, visible): (BTreeMap<_, _>, BTreeMap<_, _>) = ep
        .headers
        .into_iter()
        .partition(|(name, _)| SENSITIVE_HEADERS.contains(&name.to_ascii_lowercase().as_str()));
    Ok(Json(EndpointHeadersOut {
        headers: visible,
        sensitive: sensitive.into_keys().collect(),
    }))
}

pub(crate) async fn set_headers_of(
    state: &AppState,
    app: &str,
    ep: &str,
    input: EndpointHeadersIn,
) -> ApiResult<StatusCode> {
    state
        .engine
        .set_endpoint_headers(app, ep, input.headers)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn patch_headers_of(
    state: &AppState,
    app: &str,
    ep: &str,
    input: EndpointHeadersPatchIn,
) -> ApiResult<StatusCode> {
    let mut delete = input.delete_headers.unwrap_or_default();
    let mut set = BTreeMap::new();
    for (name, value) in input.headers {
        match value {
            Some(value) => {
                set.insert(name, value);
            }
            None => delete.push(name),
        }
    }
    state
        .engine
        .patch_endpoint_headers(app, ep, set, delete)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Makes every failed delivery to this endpoint in the window pending again.
pub(crate) async fn recover_of(
    state: &AppState,
    app: &str,
    ep: &str,
    input: RecoverIn,
) -> ApiResult<Response> {
    let since = parse_rfc3339_ms(&input.since)
        .ok_or_else(|| ApiError::field("since", "must be an RFC 3339 timestamp"))?;
    let until = input
        .until
        .as_deref()
        .map(|u| {
            parse_rfc3339_ms(u)
                .ok_or_else(|| ApiError::field("until", "must be an RFC 3339 timestamp"))
        })
        .transpose()?;
    let requeued = state.engine.recover_endpoint(app, ep, since, until).await?;
    let now = state.engine.now_ms();
    let out = RecoverOut {
        id: TaskId::generate_at(now).as_str().to_owned(),
        status: "finished",
        task: "endpoint.recover",
        updated_at: ts(now),
        data: RecoverData {
            messages_requeued: requeued,
        },
    };
    Ok((StatusCode::ACCEPTED, Json(out)).into_response())
}

pub(crate) async fn stats_of(
    state: &AppState,
    app: &str,
    ep: &str,
) -> ApiResult<Json<EndpointStatsOut>> {
    let s = state.engine.endpoint_stats(app, ep).await?;
    Ok(Json(EndpointStatsOut {
        success: s.success,
        pending: s.pending,
        sending: s.sending,
        fail: s.fail,
        canceled: 0,
    }))
}

// ---- the v1 routes --------------------------------------------------------

/// List endpoints.
#[utoipa::path(get, path = "/api/v1/app/{app_id}/endpoint", operation_id = "v1.endpoint.list",
    params(AppPath, PageQuery),
    responses((status = 200, description = "One page, oldest first", body = ListResponse<EndpointOut>)))]
async fn list(
    State(state): State<AppState>,
    Path(p): Path<AppPath>,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<ListResponse<EndpointOut>>> {
    list_of(&state, &p.app_id, &q).await
}

/// Create an endpoint.
#[utoipa::path(post, path = "/api/v1/app/{app_id}/endpoint", operation_id = "v1.endpoint.create",
    params(AppPath),
    request_body = EndpointIn,
    responses((status = 201, description = "Created", body = EndpointOut)))]
async fn create(
    State(state): State<AppState>,
    Path(p): Path<AppPath>,
    Body(input): Body<EndpointIn>,
) -> ApiResult<Response> {
    create_of(&state, &p.app_id, input).await
}

/// Get an endpoint by id or uid.
#[utoipa::path(get, path = "/api/v1/app/{app_id}/endpoint/{endpoint_id}", operation_id = "v1.endpoint.get",
    params(EndpointPath),
    responses((status = 200, description = "The endpoint", body = EndpointOut)))]
async fn fetch(
    State(state): State<AppState>,
    Path(p): Path<EndpointPath>,
) -> ApiResult<Json<EndpointOut>> {
    fetch_of(&state, &p.app_id, &p.endpoint_id).await
}

/// Update or create an endpoint.
#[utoipa::path(put, path = "/api/v1/app/{app_id}/endpoint/{endpoint_id}", operation_id = "v1.endpoint.update",
    params(EndpointPath),
    request_body = EndpointIn,
    responses(
        (status = 200, description = "Replaced", body = EndpointOut),
        (status = 201, description = "Created with this uid", body = EndpointOut),
    ))]
async fn upsert(
    State(state): State<AppState>,
    Path(p): Path<EndpointPath>,
    Body(input): Body<EndpointIn>,
) -> ApiResult<Response> {
    upsert_of(&state, &p.app_id, &p.endpoint_id, input).await
}

/// Partially update an endpoint.
#[utoipa::path(patch, path = "/api/v1/app/{app_id}/endpoint/{endpoint_id}", operation_id = "v1.endpoint.patch",
    params(EndpointPath),
    request_body = EndpointPatchIn,
    responses((status = 200, description = "Updated", body = EndpointOut)))]
async fn patch(
    State(state): State<AppState>,
    Path(p): Path<EndpointPath>,
    Body(input): Body<EndpointPatchIn>,
) -> ApiResult<Json<EndpointOut>> {
    patch_of(&state, &p.app_id, &p.endpoint_id, input).await
}

/// Delete an endpoint.
#[utoipa::path(delete, path = "/api/v1/app/{app_id}/endpoint/{endpoint_id}", operation_id = "v1.endpoint.delete",
    params(EndpointPath),
    responses((status = 204, description = "Deleted")))]
async fn remove(
    State(state): State<AppState>,
    Path(p): Path<EndpointPath>,
) -> ApiResult<StatusCode> {
    remove_of(&state, &p.app_id, &p.endpoint_id).await
}

/// Get the signing secret.
#[utoipa::path(get, path = "/api/v1/app/{app_id}/endpoint/{endpoint_id}/secret", operation_id = "v1.endpoint.get-secret",
    params(EndpointPath),
    responses((status = 200, description = "The current secret", body = EndpointSecretOut)))]
async fn secret(
    State(state): State<AppState>,
    Path(p): Path<EndpointPath>,
) -> ApiResult<Json<EndpointSecretOut>> {
    secret_of(&state, &p.app_id, &p.endpoint_id).await
}

/// Rotate the signing secret; the old one signs too for gracePeriodSeconds (default 86400).
#[utoipa::path(post, path = "/api/v1/app/{app_id}/endpoint/{endpoint_id}/secret/rotate", operation_id = "v1.endpoint.rotate-secret",
    params(EndpointPath),
    request_body = Option<EndpointSecretRotateIn>,
    responses((status = 200, description = "The new secret", body = EndpointSecretOut)))]
async fn rotate_secret(
    State(state): State<AppState>,
    Path(p): Path<EndpointPath>,
    Body(input): Body<Option<EndpointSecretRotateIn>>,
) -> ApiResult<Json<EndpointSecretOut>> {
    rotate_secret_of(&state, &p.app_id, &p.endpoint_id, input).await
}

/// Get custom headers (sensitive ones redacted).
#[utoipa::path(get, path = "/api/v1/app/{app_id}/endpoint/{endpoint_id}/headers", operation_id = "v1.endpoint.get-headers",
    params(EndpointPath),
    responses((status = 200, description = "The custom headers", body = EndpointHeadersOut)))]
async fn headers(
    State(state): State<AppState>,
    Path(p): Path<EndpointPath>,
) -> ApiResult<Json<EndpointHeadersOut>> {
    headers_of(&state, &p.app_id, &p.endpoint_id).await
}

/// Replace custom headers.
#[utoipa::path(put, path = "/api/v1/app/{app_id}/endpoint/{endpoint_id}/headers", operation_id = "v1.endpoint.update-headers",
    params(EndpointPath),
    request_body = EndpointHeadersIn,
    responses((status = 204, description = "Replaced")))]
async fn set_headers(
    State(state): State<AppState>,
    Path(p): Path<EndpointPath>,
    Body(input): Body<EndpointHeadersIn>,
) -> ApiResult<StatusCode> {
    set_headers_of(&state, &p.app_id, &p.endpoint_id, input).await
}

/// Add, change or delete custom headers.
#[utoipa::path(patch, path = "/api/v1/app/{app_id}/endpoint/{endpoint_id}/headers", operation_id = "v1.endpoint.patch-headers",
    params(EndpointPath),
    request_body = EndpointHeadersPatchIn,
    responses((status = 204, description = "Changed")))]
async fn patch_headers(
    State(state): State<AppState>,
    Path(p): Path<EndpointPath>,
    Body(input): Body<EndpointHeadersPatchIn>,
) -> ApiResult<StatusCode> {
    patch_headers_of(&state, &p.app_id, &p.endpoint_id, input).await
}

/// Re-send failed messages since a time.
#[utoipa::path(post, path = "/api/v1/app/{app_id}/endpoint/{endpoint_id}/recover", operation_id = "v1.endpoint.recover",
    params(EndpointPath),
    request_body = RecoverIn,
    responses((status = 202, description = "Failed deliveries in the window are pending again", body = RecoverOut)))]
async fn recover(
    State(state): State<AppState>,
    Path(p): Path<EndpointPath>,
    Body(input): Body<RecoverIn>,
) -> ApiResult<Response> {
    recover_of(&state, &p.app_id, &p.endpoint_id, input).await
}

/// Delivery counts by status.
#[utoipa::path(get, path = "/api/v1/app/{app_id}/endpoint/{endpoint_id}/stats", operation_id = "v1.endpoint.get-stats",
    params(EndpointPath),
    responses((status = 200, description = "Deliveries by status", body = EndpointStatsOut)))]
async fn stats(
    State(state): State<AppState>,
    Path(p): Path<EndpointPath>,
) -> ApiResult<Json<EndpointStatsOut>> {
    stats_of(&state, &p.app_id, &p.endpoint_id).await
}

/// The circuit breaker's state and settings.
#[utoipa::path(get, path = "/api/v1/app/{app_id}/endpoint/{endpoint_id}/circuit", operation_id = "v1.endpoint.get-circuit",
    params(EndpointPath),
    responses((status = 200, description = "The breaker's state as last stored", body = CircuitOut)))]
async fn circuit(
    State(state): State<AppState>,
    Path(p): Path<EndpointPath>,
) -> ApiResult<Json<CircuitOut>> {
    circuit_of(&state, &p.app_id, &p.endpoint_id).await
}

pub(crate) async fn circuit_of(
    state: &AppState,
    app: &str,
    ep: &str,
) -> ApiResult<Json<CircuitOut>> {
    Ok(Json(state.engine.endpoint_circuit(app, ep).await?.into()))
}

pub(crate) async fn reset_circuit_of(
    state: &AppState,
    app: &str,
    ep: &str,
) -> ApiResult<Json<CircuitOut>> {
    Ok(Json(state.engine.reset_circuit(app, ep).await?.into()))
}

/// Close the circuit breaker now (waiting deliveries go at their next turn).
#[utoipa::path(post, path = "/api/v1/app/{app_id}/endpoint/{endpoint_id}/circuit/reset", operation_id = "v1.endpoint.reset-circuit",
    params(EndpointPath),
    responses((status = 200, description = "The breaker, closed", body = CircuitOut)))]
async fn reset_circuit(
    State(state): State<AppState>,
    Path(p): Path<EndpointPath>,
) -> ApiResult<Json<CircuitOut>> {
    reset_circuit_of(&state, &p.app_id, &p.endpoint_id).await
}
