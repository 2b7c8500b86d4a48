//! Endpoints: `/api/v1/app/{app}/endpoint`, with secrets, headers, recovery and stats.

use super::{list_out, ts};
use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Body, PageQuery, Path, Query, double_option};
use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use switchyard_core::TaskId;
use switchyard_core::timefmt::parse_rfc3339_ms;
use switchyard_engine::{EndpointInput, EndpointPatch};
use switchyard_store::{Endpoint, Metadata, Order};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/app/{app_id}/endpoint", get(list).post(create))
        .route(
            "/api/v1/app/{app_id}/endpoint/{endpoint_id}",
            get(fetch).put(upsert).patch(patch).delete(remove),
        )
        .route(
            "/api/v1/app/{app_id}/endpoint/{endpoint_id}/secret",
            get(secret),
        )
        .route(
            "/api/v1/app/{app_id}/endpoint/{endpoint_id}/secret/rotate",
            post(rotate_secret),
        )
        .route(
            "/api/v1/app/{app_id}/endpoint/{endpoint_id}/headers",
            get(headers).put(set_headers).patch(patch_headers),
        )
        .route(
            "/api/v1/app/{app_id}/endpoint/{endpoint_id}/recover",
            post(recover),
        )
        .route(
            "/api/v1/app/{app_id}/endpoint/{endpoint_id}/stats",
            get(stats),
        )
}

/// Custom headers whose values the API never shows (their names are listed
/// as `sensitive`).
const SENSITIVE_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "x-api-key",
];

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EndpointIn {
    url: String,
    #[serde(default)]
    description: String,
    #[serde(alias = "throttleRate")]
    rate_limit: Option<u32>,
    uid: Option<String>,
    #[serde(default)]
    disabled: bool,
    #[serde(alias = "eventTypes")]
    filter_types: Option<Vec<String>>,
    channels: Option<Vec<String>>,
    secret: Option<String>,
    metadata: Option<Metadata>,
    headers: Option<BTreeMap<String, String>>,
    payload_filter: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EndpointPatchIn {
    url: Option<String>,
    description: Option<String>,
    #[serde(default, alias = "throttleRate", deserialize_with = "double_option")]
    rate_limit: Option<Option<u32>>,
    #[serde(default, deserialize_with = "double_option")]
    uid: Option<Option<String>>,
    disabled: Option<bool>,
    #[serde(default, alias = "eventTypes", deserialize_with = "double_option")]
    filter_types: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "double_option")]
    channels: Option<Option<Vec<String>>>,
    metadata: Option<Metadata>,
    secret: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    payload_filter: Option<Option<Value>>,
}

pub(crate) fn endpoint_out(ep: &Endpoint) -> Value {
    json!({
        "id": ep.id,
        "uid": ep.uid,
        "url": ep.url,
        "version": 1,
        "description": ep.description,
        "disabled": ep.disabled,
        "filterTypes": ep.filter_types,
        "eventTypes": ep.filter_types,
        "channels": ep.channels,
        "rateLimit": ep.rate_limit,
        "throttleRate": ep.rate_limit,
        "metadata": ep.metadata,
        "payloadFilter": ep.payload_filter,
        "createdAt": ts(ep.created_at),
        "updatedAt": ts(ep.updated_at),
    })
}

impl From<EndpointIn> for EndpointInput {
    fn from(input: EndpointIn) -> Self {
        EndpointInput {
            url: input.url,
            description: input.description,
            rate_limit: input.rate_limit,
            uid: input.uid,
            disabled: input.disabled,
            filter_types: input.filter_types,
            channels: input.channels,
            secret: input.secret,
            metadata: input.metadata,
            headers: input.headers,
            payload_filter: input.payload_filter,
        }
    }
}

pub(crate) async fn list(
    State(state): State<AppState>,
    Path(app_id): Path<String>,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<Value>> {
    let page = state
        .engine
        .list_endpoints(&app_id, &q.page(Order::Ascending)?)
        .await?;
    Ok(Json(list_out(page, endpoint_out)))
}

pub(crate) async fn create(
    State(state): State<AppState>,
    Path(app_id): Path<String>,
    Body(input): Body<EndpointIn>,
) -> ApiResult<Response> {
    let ep = state.engine.create_endpoint(&app_id, input.into()).await?;
    Ok((StatusCode::CREATED, Json(endpoint_out(&ep))).into_response())
}

pub(crate) async fn fetch(
    State(state): State<AppState>,
    Path((app_id, endpoint_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    Ok(Json(endpoint_out(
        &state.engine.endpoint(&app_id, &endpoint_id).await?,
    )))
}

pub(crate) async fn upsert(
    State(state): State<AppState>,
    Path((app_id, endpoint_id)): Path<(String, String)>,
    Body(input): Body<EndpointIn>,
) -> ApiResult<Response> {
    let (ep, created) = state
        .engine
        .upsert_endpoint(&app_id, &endpoint_id, input.into())
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(endpoint_out(&ep))).into_response())
}

pub(crate) async fn patch(
    State(state): State<AppState>,
    Path((app_id, endpoint_id)): Path<(String, String)>,
    Body(input): Body<EndpointPatchIn>,
) -> ApiResult<Json<Value>> {
    let patch = EndpointPatch {
        url: input.url,
        description: input.description,
        rate_limit: input.rate_limit,
        uid: input.uid,
        disabled: input.disabled,
        filter_types: input.filter_types,
        channels: input.channels,
        metadata: input.metadata,
        secret: input.secret,
        payload_filter: input.payload_filter,
    };
    Ok(Json(endpoint_out(
        &state
            .engine
            .patch_endpoint(&app_id, &endpoint_id, patch)
            .await?,
    )))
}

pub(crate) async fn remove(
    State(state): State<AppState>,
    Path((app_id, endpoint_id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    state.engine.delete_endpoint(&app_id, &endpoint_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn secret(
    State(state): State<AppState>,
    Path((app_id, endpoint_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let ep = state.engine.endpoint(&app_id, &endpoint_id).await?;
    Ok(Json(json!({ "key": ep.secret })))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RotateIn {
    key: Option<String>,
    grace_period_seconds: Option<u64>,
}

/// Issues a new secret; the old one keeps signing alongside it for the grace period.
pub(crate) async fn rotate_secret(
    State(state): State<AppState>,
    Path((app_id, endpoint_id)): Path<(String, String)>,
    Body(input): Body<Option<RotateIn>>,
) -> ApiResult<Json<Value>> {
    let input = input.unwrap_or_default();
    let key = state
        .engine
        .rotate_endpoint_secret(&app_id, &endpoint_id, input.key, input.grace_period_seconds)
        .await?;
    Ok(Json(json!({ "key": key })))
}

pub(crate) async fn headers(
    State(state): State<AppState>,
    Path((app_id, endpoint_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let ep = state.engine.endpoint(&app_id, &endpoint_id).await?;
    let (sensitive, visible): (Vec<_>, Vec<_>) = ep
        .headers
        .iter()
        .partition(|(name, _)| SENSITIVE_HEADERS.contains(&name.to_ascii_lowercase().as_str()));
    Ok(Json(json!({
        "headers": visible.into_iter().collect::<BTreeMap<_, _>>(),
        "sensitive": sensitive.into_iter().map(|(k, _)| k).collect::<Vec<_>>(),
    })))
}

/// `PUT …/headers`: the whole set of custom headers.
#[derive(Deserialize)]
pub(crate) struct HeadersIn {
    headers: BTreeMap<String, String>,
}

/// `PATCH …/headers`: headers to add or change; a `null` value deletes that
/// header (Svix types the map's values as nullable, and older SDKs and
/// hand-written clients delete that way), as does a name in `deleteHeaders`
/// (today's SDKs). Names match in any case.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct HeadersPatchIn {
    headers: BTreeMap<String, Option<String>>,
    #[serde(default)]
    delete_headers: Option<Vec<String>>,
}

pub(crate) async fn set_headers(
    State(state): State<AppState>,
    Path((app_id, endpoint_id)): Path<(String, String)>,
    Body(input): Body<HeadersIn>,
) -> ApiResult<StatusCode> {
    state
        .engine
        .set_endpoint_headers(&app_id, &endpoint_id, input.headers)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn patch_headers(
    State(state): State<AppState>,
    Path((app_id, endpoint_id)): Path<(String, String)>,
    Body(input): Body<HeadersPatchIn>,
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
        .patch_endpoint_headers(&app_id, &endpoint_id, set, delete)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
pub(crate) struct RecoverIn {
    since: String,
    until: Option<String>,
}

/// Makes every failed delivery to this endpoint in the window pending again.
pub(crate) async fn recover(
    State(state): State<AppState>,
    Path((app_id, endpoint_id)): Path<(String, String)>,
    Body(input): Body<RecoverIn>,
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
    let requeued = state
        .engine
        .recover_endpoint(&app_id, &endpoint_id, since, until)
        .await?;
    let now = state.engine.now_ms();
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "id": TaskId::generate_at(now),
            "status": "finished",
            "task": "endpoint.recover",
            "updatedAt": ts(now),
            "data": { "messagesRequeued": requeued },
        })),
    )
        .into_response())
}

pub(crate) async fn stats(
    State(state): State<AppState>,
    Path((app_id, endpoint_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let s = state.engine.endpoint_stats(&app_id, &endpoint_id).await?;
    Ok(Json(json!({
        "success": s.success,
        "pending": s.pending,
        "sending": s.sending,
        "fail": s.fail,
        "canceled": 0,
    })))
}
