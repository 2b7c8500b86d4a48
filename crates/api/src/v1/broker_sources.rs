//! Broker sources: `/api/v1/broker-source…`, Switchyard's own resource (the
//! Svix API has none), with the v1 API's conventions (uids, pagination,
//! error bodies). Services write messages to a queue, stream or
//! subscription; each is accepted as `POST /msg` would accept it.

use crate::AppState;
use crate::error::ApiResult;
use crate::extract::{Body, PageQuery, Path, Query, double_option};
use crate::v1::{ListResponse, ts};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use switchyard_engine::{BrokerSourceInput, BrokerSourcePatch};
use switchyard_store::{BrokerRejection, BrokerSource, Metadata, Order};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(fetch, replace, patch, remove))
        .routes(routes!(pause))
        .routes(routes!(resume))
        .routes(routes!(status))
        .routes(routes!(rejected))
}

/// A broker source: create or replace.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(examples(
    json!({"name": "orders", "uid": "orders", "app": "shop",
           "broker": {"type": "redis", "url": "redis://127.0.0.1:6379", "stream": "orders", "group": "switchyard"}}),
))]
struct BrokerSourceIn {
    #[schema(min_length = 1, max_length = 256)]
    name: String,
    /// A unique name of your choosing; the API takes it wherever it takes
    /// the id.
    #[schema(pattern = "^[A-Za-z0-9._-]{1,256}$")]
    uid: Option<String>,
    /// The application (id or uid) every message goes to; absent or null,
    /// each message names its own (`app` in the envelope, or the
    /// `switchyard-app` header).
    app: Option<String>,
    /// Messages taken from the broker at once [default: 100].
    #[schema(minimum = 1, maximum = 1000)]
    batch_size: Option<u32>,
    /// Create (or replace) it paused: no node reads it until resumed. On
    /// replace, absent keeps the current state.
    paused: Option<bool>,
    /// The broker: `type` (one of the kinds this build has, e.g. `redis`)
    /// and that kind's settings (`url`, `stream`, `group`, ...).
    #[schema(value_type = Object)]
    broker: Value,
    /// Free-form string pairs of your own: at most 100, 16 KiB together.
    #[schema(value_type = Option<BTreeMap<String, String>>)]
    metadata: Option<Metadata>,
}

impl From<BrokerSourceIn> for BrokerSourceInput {
    fn from(i: BrokerSourceIn) -> Self {
        BrokerSourceInput {
            name: i.name,
            uid: i.uid,
            app: i.app,
            batch_size: i.batch_size,
            paused: i.paused,
            broker: i.broker,
            metadata: i.metadata,
        }
    }
}

/// A partial change: absent fields stay, `null` clears `uid` and `app`;
/// `broker` is replaced whole when given.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct BrokerSourcePatchIn {
    #[schema(min_length = 1, max_length = 256)]
    name: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(pattern = "^[A-Za-z0-9._-]{1,256}$")]
    uid: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    app: Option<Option<String>>,
    #[schema(minimum = 1, maximum = 1000)]
    batch_size: Option<u32>,
    #[schema(value_type = Option<Object>)]
    broker: Option<Value>,
    #[schema(value_type = Option<BTreeMap<String, String>>)]
    metadata: Option<Metadata>,
}

/// A broker source as the API shows it: passwords in the broker settings
/// are shown as `********`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct BrokerSourceOut {
    /// `bsrc_…`
    id: String,
    #[schema(required = true)]
    uid: Option<String>,
    name: String,
    #[schema(required = true)]
    app: Option<String>,
    batch_size: u32,
    paused: bool,
    #[schema(value_type = Object)]
    broker: Value,
    #[schema(value_type = BTreeMap<String, String>)]
    metadata: Metadata,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
}

impl BrokerSourceOut {
    fn new(state: &AppState, s: &BrokerSource) -> Self {
        BrokerSourceOut {
            id: s.id.to_string(),
            uid: s.uid.as_deref().map(str::to_owned),
            name: s.name.clone(),
            app: s.app.clone(),
            batch_size: s.batch_size,
            paused: s.paused,
            broker: state.engine.shown_broker(&s.broker),
            metadata: s.metadata.clone(),
            created_at: ts(s.created_at),
            updated_at: ts(s.updated_at),
        }
    }
}

/// What the nodes reading a source counted since it was created, and what
/// the broker last reported.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct BrokerSourceStatusOut {
    /// `paused`, or `active` (read by every node; see `lastError` for
    /// trouble).
    state: &'static str,
    /// Messages read from the broker (redeliveries counted again).
    received: u64,
    /// Committed as new messages.
    accepted: u64,
    /// Already committed under their `eventId` (redeliveries).
    duplicates: u64,
    /// Recorded in the rejected log (and dead-lettered where the broker can).
    rejected: u64,
    /// Left with the broker while the store could not take them.
    deferred: u64,
    /// Messages waiting in the broker for this source, where the broker
    /// reports it; null where it does not.
    #[schema(required = true)]
    backlog: Option<u64>,
    #[schema(required = true, format = DateTime)]
    backlog_at: Option<String>,
    #[schema(required = true)]
    last_error: Option<String>,
    #[schema(required = true, format = DateTime)]
    last_error_at: Option<String>,
}

/// A broker message that could never become a message.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct RejectedMessageOut {
    /// `brej_…`
    id: String,
    #[schema(format = DateTime)]
    timestamp: String,
    /// `not_json`, `not_envelope`, `too_large`, `missing_app`,
    /// `app_mismatch`, `unknown_app`, `invalid_message`, `conflict`, ...
    code: String,
    reason: String,
    /// The body as received (its first 64 KiB): text when it is UTF-8,
    /// else base64.
    body: String,
    /// `utf8` or `base64`.
    body_encoding: &'static str,
    /// The body's whole size in bytes.
    body_size: u64,
    /// The message's text headers, as `[name, value]` pairs.
    #[schema(value_type = Vec<Vec<String>>)]
    headers: Vec<(String, String)>,
}

impl From<&BrokerRejection> for RejectedMessageOut {
    fn from(r: &BrokerRejection) -> Self {
        let (body, body_encoding) = match std::str::from_utf8(&r.body) {
            Ok(text) => (text.to_owned(), "utf8"),
            Err(_) => (
                base64::engine::general_purpose::STANDARD.encode(&r.body),
                "base64",
            ),
        };
        RejectedMessageOut {
            id: r.id.to_string(),
            timestamp: ts(r.at),
            code: r.code.clone(),
            reason: r.reason.clone(),
            body,
            body_encoding,
            body_size: r.body_size,
            headers: r.headers.clone(),
        }
    }
}

/// `{source_id}`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct SourcePath {
    /// The broker source's id (`bsrc_…`) or uid.
    source_id: String,
}

/// List broker sources.
#[utoipa::path(get, path = "/api/v1/broker-source", operation_id = "v1.broker-source.list",
    params(PageQuery),
    responses((status = 200, description = "One page, oldest first", body = ListResponse<BrokerSourceOut>)))]
async fn list(
    State(state): State<AppState>,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<ListResponse<BrokerSourceOut>>> {
    let page = state
        .engine
        .list_broker_sources(&q.page(Order::Ascending)?)
        .await?;
    Ok(Json(ListResponse::of(page, |s| {
        BrokerSourceOut::new(&state, s)
    })))
}

/// Create a broker source; every node starts reading it unless paused.
#[utoipa::path(post, path = "/api/v1/broker-source", operation_id = "v1.broker-source.create",
    request_body = BrokerSourceIn,
    responses((status = 201, description = "Created (409 when the uid is taken or another source reads the same)", body = BrokerSourceOut)))]
async fn create(
    State(state): State<AppState>,
    Body(input): Body<BrokerSourceIn>,
) -> ApiResult<Response> {
    let source = state.engine.create_broker_source(input.into()).await?;
    Ok((
        StatusCode::CREATED,
        Json(BrokerSourceOut::new(&state, &source)),
    )
        .into_response())
}

/// Get a broker source by id or uid.
#[utoipa::path(get, path = "/api/v1/broker-source/{source_id}", operation_id = "v1.broker-source.get",
    params(SourcePath),
    responses((status = 200, description = "The source", body = BrokerSourceOut)))]
async fn fetch(
    State(state): State<AppState>,
    Path(p): Path<SourcePath>,
) -> ApiResult<Json<BrokerSourceOut>> {
    let source = state.engine.broker_source(&p.source_id).await?;
    Ok(Json(BrokerSourceOut::new(&state, &source)))
}

/// Replace a broker source's settings; nodes reading it start again with
/// the new ones.
#[utoipa::path(put, path = "/api/v1/broker-source/{source_id}", operation_id = "v1.broker-source.update",
    params(SourcePath),
    request_body = BrokerSourceIn,
    responses((status = 200, description = "Replaced", body = BrokerSourceOut)))]
async fn replace(
    State(state): State<AppState>,
    Path(p): Path<SourcePath>,
    Body(input): Body<BrokerSourceIn>,
) -> ApiResult<Json<BrokerSourceOut>> {
    let source = state
        .engine
        .replace_broker_source(&p.source_id, input.into())
        .await?;
    Ok(Json(BrokerSourceOut::new(&state, &source)))
}

/// Change some of a broker source's settings.
#[utoipa::path(patch, path = "/api/v1/broker-source/{source_id}", operation_id = "v1.broker-source.patch",
    params(SourcePath),
    request_body = BrokerSourcePatchIn,
    responses((status = 200, description = "Changed", body = BrokerSourceOut)))]
async fn patch(
    State(state): State<AppState>,
    Path(p): Path<SourcePath>,
    Body(input): Body<BrokerSourcePatchIn>,
) -> ApiResult<Json<BrokerSourceOut>> {
    let patch = BrokerSourcePatch {
        name: input.name,
        uid: input.uid,
        app: input.app,
        batch_size: input.batch_size,
        broker: input.broker,
        metadata: input.metadata,
    };
    let source = state
        .engine
        .patch_broker_source(&p.source_id, patch)
        .await?;
    Ok(Json(BrokerSourceOut::new(&state, &source)))
}

/// Delete a broker source with its counts and rejected log. Messages still
/// in the broker stay there.
#[utoipa::path(delete, path = "/api/v1/broker-source/{source_id}", operation_id = "v1.broker-source.delete",
    params(SourcePath),
    responses((status = 204, description = "Deleted")))]
async fn remove(State(state): State<AppState>, Path(p): Path<SourcePath>) -> ApiResult<StatusCode> {
    state.engine.delete_broker_source(&p.source_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Pause a broker source: every node stops reading it within a few
/// seconds, after settling what it read. Messages wait in the broker.
#[utoipa::path(post, path = "/api/v1/broker-source/{source_id}/pause", operation_id = "v1.broker-source.pause",
    params(SourcePath),
    responses((status = 200, description = "Paused", body = BrokerSourceOut)))]
async fn pause(
    State(state): State<AppState>,
    Path(p): Path<SourcePath>,
) -> ApiResult<Json<BrokerSourceOut>> {
    let source = state
        .engine
        .set_broker_source_paused(&p.source_id, true)
        .await?;
    Ok(Json(BrokerSourceOut::new(&state, &source)))
}

/// Resume a paused broker source.
#[utoipa::path(post, path = "/api/v1/broker-source/{source_id}/resume", operation_id = "v1.broker-source.resume",
    params(SourcePath),
    responses((status = 200, description = "Resumed", body = BrokerSourceOut)))]
async fn resume(
    State(state): State<AppState>,
    Path(p): Path<SourcePath>,
) -> ApiResult<Json<BrokerSourceOut>> {
    let source = state
        .engine
        .set_broker_source_paused(&p.source_id, false)
        .await?;
    Ok(Json(BrokerSourceOut::new(&state, &source)))
}

/// A broker source's counts, backlog and last error.
#[utoipa::path(get, path = "/api/v1/broker-source/{source_id}/status", operation_id = "v1.broker-source.status",
    params(SourcePath),
    responses((status = 200, description = "The counts", body = BrokerSourceStatusOut)))]
async fn status(
    State(state): State<AppState>,
    Path(p): Path<SourcePath>,
) -> ApiResult<Json<BrokerSourceStatusOut>> {
    let s = state.engine.broker_source_status(&p.source_id).await?;
    let st = s.stats;
    Ok(Json(BrokerSourceStatusOut {
        state: if s.source.paused { "paused" } else { "active" },
        received: st.received,
        accepted: st.accepted,
        duplicates: st.duplicates,
        rejected: st.rejected,
        deferred: st.deferred,
        backlog: st.backlog,
        backlog_at: st.backlog_at.map(ts),
        last_error: st.last_error,
        last_error_at: st.last_error_at.map(ts),
    }))
}

/// A broker source's rejected log, newest first: messages that could never
/// become messages, with why (kept as long as messages, at most 10,000 per
/// source).
#[utoipa::path(get, path = "/api/v1/broker-source/{source_id}/rejected", operation_id = "v1.broker-source.rejected",
    params(SourcePath, PageQuery),
    responses((status = 200, description = "One page, newest first", body = ListResponse<RejectedMessageOut>)))]
async fn rejected(
    State(state): State<AppState>,
    Path(p): Path<SourcePath>,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<ListResponse<RejectedMessageOut>>> {
    let page = state
        .engine
        .broker_rejections(&p.source_id, &q.page(Order::Descending)?)
        .await?;
    Ok(Json(ListResponse::of(page, |r| {
        RejectedMessageOut::from(r)
    })))
}
