//! Endpoints: `/api/v1/app/{app}/endpoint`, with secrets, headers, recovery and stats.

use super::{check_rate_limit, find_app, find_endpoint, list_out, parse_channels, parse_uid, ts};
use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Body, PageQuery, Path, Query, double_option};
use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use switchyard_core::filter::Filter;
use switchyard_core::signing::EndpointSecret;
use switchyard_core::timefmt::{now_ms, parse_rfc3339_ms};
use switchyard_core::{EndpointId, EndpointUrl, TaskId};
use switchyard_store::{Endpoint, Metadata, Order, RetiredSecret};

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

/// Default and longest grace period for a rotated-out secret.
const DEFAULT_GRACE_SECS: u64 = 24 * 3600;
const MAX_GRACE_SECS: u64 = 7 * 24 * 3600;
const SENSITIVE_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "x-api-key",
];
const RESERVED_HEADERS: &[&str] = &[
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "content-type",
    "content-length",
    "host",
    "transfer-encoding",
    "connection",
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
pub(crate) struct EndpointPatch {
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

fn parse_url(url: &str) -> ApiResult<String> {
    EndpointUrl::parse(url)
        .map(|u| u.as_str().to_owned())
        .map_err(|e| ApiError::field("url", e.to_string()))
}

/// Event types or patterns with `*` wildcards (`invoice.*`). Ingested
/// events keep their provider's names, which may hold characters such as
/// `/` (Shopify topics), so any visible text without commas is allowed.
fn parse_filter_types(types: Option<Vec<String>>) -> ApiResult<Option<Vec<String>>> {
    let Some(types) = types else {
        return Ok(None);
    };
    if types.is_empty() {
        return Err(ApiError::field(
            "filterTypes",
            "must list at least one event type (omit it to receive all)",
        ));
    }
    for t in &types {
        if t.is_empty() || t.len() > 256 || !t.bytes().all(|b| b.is_ascii_graphic() && b != b',') {
            return Err(ApiError::field(
                "filterTypes",
                format!("'{t}' must be 1 to 256 visible characters without commas"),
            ));
        }
    }
    Ok(Some(types))
}

fn parse_payload_filter(filter: Option<Value>) -> ApiResult<Option<Value>> {
    match filter {
        None | Some(Value::Null) => Ok(None),
        Some(f) => match Filter::parse(&f) {
            Ok(_) => Ok(Some(f)),
            Err(e) => Err(ApiError::field("payloadFilter", e)),
        },
    }
}

fn parse_secret(field: &str, secret: Option<String>) -> ApiResult<String> {
    match secret {
        None => Ok(EndpointSecret::generate().to_whsec()),
        Some(s) => EndpointSecret::parse(&s)
            .map(|s| s.to_whsec())
            .map_err(|e| ApiError::field(field, e.to_string())),
    }
}

fn check_headers(headers: &BTreeMap<String, String>) -> ApiResult<()> {
    for (name, value) in headers {
        let field = format!("headers.{name}");
        if HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(ApiError::field(&field, "is not a valid HTTP header name"));
        }
        if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
            return Err(ApiError::field(
                &field,
                "is set by Switchyard and cannot be overridden",
            ));
        }
        if HeaderValue::from_str(value).is_err() {
            return Err(ApiError::field(&field, "is not a valid HTTP header value"));
        }
    }
    Ok(())
}

pub(crate) async fn list(
    State(state): State<AppState>,
    Path(app_id): Path<String>,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<Value>> {
    let app = find_app(&state, &app_id).await?;
    let page = state
        .engine
        .store()
        .list_endpoints(&app.id, &q.page(Order::Ascending)?)
        .await?;
    Ok(Json(list_out(page, endpoint_out)))
}

fn new_endpoint(
    app_id: switchyard_core::AppId,
    input: EndpointIn,
    uid: Option<String>,
) -> ApiResult<Endpoint> {
    let headers = input.headers.unwrap_or_default();
    check_headers(&headers)?;
    let now = now_ms();
    Ok(Endpoint {
        id: EndpointId::generate_at(now),
        app_id,
        uid: parse_uid("uid", uid.or(input.uid))?,
        url: parse_url(&input.url)?,
        description: input.description,
        disabled: input.disabled,
        filter_types: parse_filter_types(input.filter_types)?,
        channels: parse_channels("channels", input.channels)?,
        rate_limit: check_rate_limit("rateLimit", input.rate_limit)?,
        metadata: input.metadata.unwrap_or_default(),
        headers,
        payload_filter: parse_payload_filter(input.payload_filter)?,
        secret: parse_secret("secret", input.secret)?,
        retired_secrets: Vec::new(),
        created_at: now,
        updated_at: now,
    })
}

pub(crate) async fn create(
    State(state): State<AppState>,
    Path(app_id): Path<String>,
    Body(input): Body<EndpointIn>,
) -> ApiResult<Response> {
    let app = find_app(&state, &app_id).await?;
    insert(&state, app.id, input, None).await
}

async fn insert(
    state: &AppState,
    app_id: switchyard_core::AppId,
    input: EndpointIn,
    uid: Option<String>,
) -> ApiResult<Response> {
    let ep = new_endpoint(app_id, input, uid)?;
    let ep = state.engine.store().insert_endpoint(ep).await?;
    state.engine.endpoints_changed(&ep.app_id);
    Ok((StatusCode::CREATED, Json(endpoint_out(&ep))).into_response())
}

pub(crate) async fn fetch(
    State(state): State<AppState>,
    Path((app_id, endpoint_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let app = find_app(&state, &app_id).await?;
    Ok(Json(endpoint_out(
        &find_endpoint(&state, &app, &endpoint_id).await?,
    )))
}

async fn save(state: &AppState, mut ep: Endpoint) -> ApiResult<Endpoint> {
    ep.updated_at = now_ms();
    let ep = state.engine.store().update_endpoint(ep).await?;
    state.engine.endpoints_changed(&ep.app_id);
    Ok(ep)
}

pub(crate) async fn upsert(
    State(state): State<AppState>,
    Path((app_id, endpoint_id)): Path<(String, String)>,
    Body(input): Body<EndpointIn>,
) -> ApiResult<Response> {
    let app = find_app(&state, &app_id).await?;
    match state
        .engine
        .store()
        .get_endpoint(&app.id, &endpoint_id)
        .await?
    {
        Some(mut ep) => {
            ep.url = parse_url(&input.url)?;
            ep.description = input.description;
            ep.rate_limit = check_rate_limit("rateLimit", input.rate_limit)?;
            ep.uid = parse_uid("uid", input.uid)?.or(ep.uid);
            ep.disabled = input.disabled;
            ep.filter_types = parse_filter_types(input.filter_types)?;
            ep.channels = parse_channels("channels", input.channels)?;
            ep.metadata = input.metadata.unwrap_or_default();
            ep.payload_filter = parse_payload_filter(input.payload_filter)?;
            if let Some(headers) = input.headers {
                check_headers(&headers)?;
                ep.headers = headers;
            }
            Ok(Json(endpoint_out(&save(&state, ep).await?)).into_response())
        }
        None if EndpointId::parse(&endpoint_id).is_some() => Err(ApiError::not_found("endpoint")),
        None => insert(&state, app.id, input, Some(endpoint_id)).await,
    }
}

pub(crate) async fn patch(
    State(state): State<AppState>,
    Path((app_id, endpoint_id)): Path<(String, String)>,
    Body(input): Body<EndpointPatch>,
) -> ApiResult<Json<Value>> {
    let app = find_app(&state, &app_id).await?;
    let mut ep = find_endpoint(&state, &app, &endpoint_id).await?;
    if let Some(url) = input.url {
        ep.url = parse_url(&url)?;
    }
    if let Some(d) = input.description {
        ep.description = d;
    }
    if let Some(r) = input.rate_limit {
        ep.rate_limit = check_rate_limit("rateLimit", r)?;
    }
    if let Some(uid) = input.uid {
        ep.uid = parse_uid("uid", uid)?;
    }
    if let Some(d) = input.disabled {
        ep.disabled = d;
    }
    if let Some(f) = input.filter_types {
        ep.filter_types = parse_filter_types(f)?;
    }
    if let Some(c) = input.channels {
        ep.channels = parse_channels("channels", c)?;
    }
    if let Some(m) = input.metadata {
        ep.metadata = m;
    }
    if let Some(secret) = input.secret {
        ep.secret = parse_secret("secret", Some(secret))?;
    }
    if let Some(f) = input.payload_filter {
        ep.payload_filter = parse_payload_filter(f)?;
    }
    Ok(Json(endpoint_out(&save(&state, ep).await?)))
}

pub(crate) async fn remove(
    State(state): State<AppState>,
    Path((app_id, endpoint_id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let app = find_app(&state, &app_id).await?;
    let ep = find_endpoint(&state, &app, &endpoint_id).await?;
    state
        .engine
        .store()
        .delete_endpoint(&app.id, &ep.id)
        .await?;
    state.engine.endpoints_changed(&app.id);
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn secret(
    State(state): State<AppState>,
    Path((app_id, endpoint_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let app = find_app(&state, &app_id).await?;
    let ep = find_endpoint(&state, &app, &endpoint_id).await?;
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
    let grace = input.grace_period_seconds.unwrap_or(DEFAULT_GRACE_SECS);
    if grace > MAX_GRACE_SECS {
        return Err(ApiError::field(
            "gracePeriodSeconds",
            format!("must be at most {MAX_GRACE_SECS} seconds"),
        ));
    }
    let app = find_app(&state, &app_id).await?;
    let mut ep = find_endpoint(&state, &app, &endpoint_id).await?;
    let new_secret = parse_secret("key", input.key)?;
    let now = now_ms();
    ep.retired_secrets.retain(|r| r.expires_at > now);
    if grace > 0 {
        ep.retired_secrets.push(RetiredSecret {
            secret: std::mem::replace(&mut ep.secret, new_secret),
            expires_at: now + grace * 1000,
        });
    } else {
        ep.secret = new_secret;
    }
    let ep = save(&state, ep).await?;
    Ok(Json(json!({ "key": ep.secret })))
}

pub(crate) async fn headers(
    State(state): State<AppState>,
    Path((app_id, endpoint_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let app = find_app(&state, &app_id).await?;
    let ep = find_endpoint(&state, &app, &endpoint_id).await?;
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
    check_headers(&input.headers)?;
    let app = find_app(&state, &app_id).await?;
    let mut ep = find_endpoint(&state, &app, &endpoint_id).await?;
    ep.headers = input.headers;
    save(&state, ep).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn patch_headers(
    State(state): State<AppState>,
    Path((app_id, endpoint_id)): Path<(String, String)>,
    Body(input): Body<HeadersPatchIn>,
) -> ApiResult<StatusCode> {
    let mut deleted = input.delete_headers.unwrap_or_default();
    let mut set = BTreeMap::new();
    for (name, value) in input.headers {
        match value {
            Some(value) => {
                set.insert(name, value);
            }
            None => deleted.push(name),
        }
    }
    check_headers(&set)?;
    let app = find_app(&state, &app_id).await?;
    let mut ep = find_endpoint(&state, &app, &endpoint_id).await?;
    for name in &deleted {
        ep.headers.retain(|k, _| !k.eq_ignore_ascii_case(name));
    }
    // A changed header replaces any spelling of its name already set.
    for name in set.keys() {
        ep.headers.retain(|k, _| !k.eq_ignore_ascii_case(name));
    }
    ep.headers.extend(set);
    save(&state, ep).await?;
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
    let app = find_app(&state, &app_id).await?;
    let ep = find_endpoint(&state, &app, &endpoint_id).await?;
    let now = now_ms();
    let requeued = state
        .engine
        .store()
        .recover(&ep.id, since, until, now)
        .await?;
    tracing::info!(endpoint = %ep.id, deliveries = requeued, "recovering failed deliveries");
    state.engine.wake_dispatcher();
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
    let app = find_app(&state, &app_id).await?;
    let ep = find_endpoint(&state, &app, &endpoint_id).await?;
    let s = state.engine.store().endpoint_stats(&ep.id).await?;
    Ok(Json(json!({
        "success": s.success,
        "pending": s.pending,
        "sending": s.sending,
        "fail": s.fail,
        "canceled": 0,
    })))
}
