//! Attempts and per-delivery views, plus manual resend.

use super::endpoints::EndpointOut;
use super::messages::{MessageListQuery, MessageOut, find_message};
use super::{EndpointPath, ListResponse, MessagePath, find_app, find_endpoint, ts};
use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::{PageQuery, Path, Query, bool_param};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use switchyard_core::AttemptId;
use switchyard_engine::EngineError;
use switchyard_store::{Attempt, AttemptFilter, DeliveryStatus, DeliveryView, Message, Order};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(by_endpoint))
        .routes(routes!(by_message))
        .routes(routes!(fetch))
        .routes(routes!(destinations))
        .routes(routes!(attempted_messages))
        .routes(routes!(resend))
}

/// One attempt to deliver a message to an endpoint.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct MessageAttemptOut {
    /// `atmpt_…`
    id: String,
    url: String,
    msg_id: String,
    endpoint_id: String,
    /// The start of the endpoint's answer (or why there was none).
    response: String,
    /// The endpoint's HTTP status, 0 when it did not answer.
    response_status_code: i32,
    response_duration_ms: u64,
    /// 0 success, 1 pending, 2 fail, 3 sending.
    #[schema(minimum = 0, maximum = 3)]
    status: u8,
    #[schema(inline)]
    status_text: StatusText,
    /// 0 scheduled, 1 manual (a resend).
    #[schema(minimum = 0, maximum = 1)]
    trigger_type: u8,
    #[schema(format = DateTime)]
    timestamp: String,
    /// The message, with `with_msg=true`.
    #[schema(required = true)]
    msg: Option<MessageOut>,
}

/// A delivery status by name.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
enum StatusText {
    Success,
    Pending,
    Fail,
    Sending,
}

impl From<DeliveryStatus> for StatusText {
    fn from(status: DeliveryStatus) -> Self {
        match status {
            DeliveryStatus::Success => StatusText::Success,
            DeliveryStatus::Pending => StatusText::Pending,
            DeliveryStatus::Fail => StatusText::Fail,
            DeliveryStatus::Sending => StatusText::Sending,
        }
    }
}

impl MessageAttemptOut {
    fn new(a: &Attempt, msg: Option<&Message>) -> Self {
        MessageAttemptOut {
            id: a.id.as_str().to_owned(),
            url: a.url.as_deref().unwrap_or_default().to_owned(),
            msg_id: a.msg_id.as_str().to_owned(),
            endpoint_id: a.endpoint_id.as_str().to_owned(),
            response: a.response.clone(),
            response_status_code: a.response_status_code,
            response_duration_ms: a.response_duration_ms,
            status: a.status as u8,
            status_text: a.status.into(),
            trigger_type: u8::from(a.manual),
            timestamp: ts(a.created_at),
            msg: msg.map(|m| MessageOut::new(m, true)),
        }
    }
}

/// Where one delivery stands.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct DeliveryStatusOut {
    /// 0 success, 1 pending, 2 fail, 3 sending.
    #[schema(minimum = 0, maximum = 3)]
    status: u8,
    #[schema(inline)]
    status_text: StatusText,
    /// When the next attempt is due, while pending.
    #[schema(format = DateTime, required = true)]
    next_attempt: Option<String>,
}

impl From<&DeliveryView> for DeliveryStatusOut {
    fn from(d: &DeliveryView) -> Self {
        let next_attempt = match d.status {
            DeliveryStatus::Pending => d.next_attempt_at.map(ts),
            _ => None,
        };
        DeliveryStatusOut {
            status: d.status as u8,
            status_text: d.status.into(),
            next_attempt,
        }
    }
}

/// An endpoint a message was sent to, with that delivery's status.
#[derive(Serialize, ToSchema)]
struct MessageEndpointOut {
    #[serde(flatten)]
    endpoint: EndpointOut,
    #[serde(flatten)]
    delivery: DeliveryStatusOut,
}

/// A message sent to an endpoint, with that delivery's status.
#[derive(Serialize, ToSchema)]
struct EndpointMessageOut {
    #[serde(flatten)]
    message: MessageOut,
    #[serde(flatten)]
    delivery: DeliveryStatusOut,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct AttemptQuery {
    /// Only attempts with this status: 0 success, 1 pending, 2 fail, 3 sending.
    #[param(value_type = Option<u8>, minimum = 0, maximum = 3)]
    status: Option<String>,
    /// Whether each attempt carries its message (default false).
    #[param(value_type = Option<bool>)]
    with_msg: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct EndpointFilterQuery {
    /// Only attempts to this endpoint (id or uid).
    endpoint_id: Option<String>,
}

fn status_param(value: &Option<String>) -> ApiResult<Option<u8>> {
    value
        .as_deref()
        .map(|s| {
            s.parse::<u8>()
                .ok()
                .filter(|v| DeliveryStatus::from_u8(*v).is_some())
                .ok_or_else(|| {
                    ApiError::query(
                        "status",
                        "must be 0 (success), 1 (pending), 2 (fail) or 3 (sending)",
                    )
                })
        })
        .transpose()
}

fn attempt_filter(
    page: &PageQuery,
    messages: &MessageListQuery,
    q: &AttemptQuery,
) -> ApiResult<AttemptFilter> {
    let f = messages.filter(page)?;
    Ok(AttemptFilter {
        status: status_param(&q.status)?,
        event_types: f.event_types,
        channel: f.channel,
        before_ms: f.before_ms,
        after_ms: f.after_ms,
        page: f.page,
        ..Default::default()
    })
}

async fn attempts_page(
    state: &AppState,
    filter: AttemptFilter,
    with_msg: bool,
) -> ApiResult<Json<ListResponse<MessageAttemptOut>>> {
    let app_id = filter.app_id.clone();
    let page = state.engine.list_attempts(&filter).await?;
    let mut messages = std::collections::HashMap::new();
    if with_msg && let Some(app) = &app_id {
        for a in &page.data {
            if messages.contains_key(&a.msg_id) {
                continue;
            }
            match state.engine.message(app, a.msg_id.as_str()).await {
                Ok(m) => {
                    messages.insert(a.msg_id.clone(), m);
                }
                // Expunged or purged meanwhile: the attempt is listed without it.
                Err(EngineError::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(Json(ListResponse::of(page, |a| {
        MessageAttemptOut::new(a, messages.get(&a.msg_id))
    })))
}

/// List attempts to an endpoint.
#[utoipa::path(get, path = "/api/v1/app/{app_id}/attempt/endpoint/{endpoint_id}", operation_id = "v1.message-attempt.list-by-endpoint",
    params(EndpointPath, PageQuery, MessageListQuery, AttemptQuery),
    responses((status = 200, description = "One page, newest first", body = ListResponse<MessageAttemptOut>)))]
async fn by_endpoint(
    State(state): State<AppState>,
    Path(p): Path<EndpointPath>,
    Query(page): Query<PageQuery>,
    Query(messages): Query<MessageListQuery>,
    Query(q): Query<AttemptQuery>,
) -> ApiResult<Json<ListResponse<MessageAttemptOut>>> {
    let app = find_app(&state, &p.app_id).await?;
    let ep = find_endpoint(&state, &app, &p.endpoint_id).await?;
    let mut filter = attempt_filter(&page, &messages, &q)?;
    filter.app_id = Some(app.id);
    filter.endpoint_id = Some(ep.id);
    attempts_page(&state, filter, bool_param("with_msg", &q.with_msg, false)?).await
}

/// List attempts of a message.
#[utoipa::path(get, path = "/api/v1/app/{app_id}/attempt/msg/{msg_id}", operation_id = "v1.message-attempt.list-by-msg",
    params(MessagePath, PageQuery, MessageListQuery, AttemptQuery, EndpointFilterQuery),
    responses((status = 200, description = "One page, newest first", body = ListResponse<MessageAttemptOut>)))]
async fn by_message(
    State(state): State<AppState>,
    Path(p): Path<MessagePath>,
    Query(page): Query<PageQuery>,
    Query(messages): Query<MessageListQuery>,
    Query(q): Query<AttemptQuery>,
    Query(endpoint): Query<EndpointFilterQuery>,
) -> ApiResult<Json<ListResponse<MessageAttemptOut>>> {
    let app = find_app(&state, &p.app_id).await?;
    let msg = find_message(&state, &app.id, &p.msg_id).await?;
    let mut filter = attempt_filter(&page, &messages, &q)?;
    if let Some(ep) = &endpoint.endpoint_id {
        filter.endpoint_id = Some(find_endpoint(&state, &app, ep).await?.id);
    }
    filter.app_id = Some(app.id);
    filter.msg_id = Some(msg.id);
    attempts_page(&state, filter, bool_param("with_msg", &q.with_msg, false)?).await
}

/// `{app_id}/msg/{msg_id}/attempt/{attempt_id}`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct AttemptPath {
    /// The application's id (`app_…`) or uid.
    app_id: String,
    /// The message's id (`msg_…`) or its `eventId`.
    msg_id: String,
    /// The attempt's id (`atmpt_…`).
    attempt_id: String,
}

/// Get one attempt.
#[utoipa::path(get, path = "/api/v1/app/{app_id}/msg/{msg_id}/attempt/{attempt_id}", operation_id = "v1.message-attempt.get",
    params(AttemptPath),
    responses((status = 200, description = "The attempt", body = MessageAttemptOut)))]
async fn fetch(
    State(state): State<AppState>,
    Path(p): Path<AttemptPath>,
) -> ApiResult<Json<MessageAttemptOut>> {
    let app = find_app(&state, &p.app_id).await?;
    let msg = find_message(&state, &app.id, &p.msg_id).await?;
    let attempt_id =
        AttemptId::parse(&p.attempt_id).ok_or_else(|| ApiError::not_found("attempt"))?;
    let attempt = state.engine.attempt(&app.id, &msg.id, &attempt_id).await?;
    Ok(Json(MessageAttemptOut::new(&attempt, None)))
}

/// Endpoints a message was sent to, with delivery status.
#[utoipa::path(get, path = "/api/v1/app/{app_id}/msg/{msg_id}/endpoint", operation_id = "v1.message-attempt.list-attempted-destinations",
    params(MessagePath, PageQuery),
    responses((status = 200, description = "One page, oldest first", body = ListResponse<MessageEndpointOut>)))]
async fn destinations(
    State(state): State<AppState>,
    Path(p): Path<MessagePath>,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<ListResponse<MessageEndpointOut>>> {
    let app = find_app(&state, &p.app_id).await?;
    let msg = find_message(&state, &app.id, &p.msg_id).await?;
    let page = state
        .engine
        .deliveries_of_message(&app.id, &msg.id, &q.page(Order::Ascending)?)
        .await?;
    // Each view of this listing carries its endpoint (the store joins them).
    Ok(Json(ListResponse::of_some(page, |d| {
        d.endpoint.as_ref().map(|ep| MessageEndpointOut {
            endpoint: EndpointOut::new(ep),
            delivery: d.into(),
        })
    })))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct DeliveryStatusQuery {
    /// Only deliveries with this status: 0 success, 1 pending, 2 fail, 3 sending.
    #[param(value_type = Option<u8>, minimum = 0, maximum = 3)]
    status: Option<String>,
}

/// Messages sent to an endpoint, with delivery status.
#[utoipa::path(get, path = "/api/v1/app/{app_id}/endpoint/{endpoint_id}/msg", operation_id = "v1.message-attempt.list-attempted-messages",
    params(EndpointPath, PageQuery, MessageListQuery, DeliveryStatusQuery),
    responses((status = 200, description = "One page, newest first", body = ListResponse<EndpointMessageOut>)))]
async fn attempted_messages(
    State(state): State<AppState>,
    Path(p): Path<EndpointPath>,
    Query(page): Query<PageQuery>,
    Query(messages): Query<MessageListQuery>,
    Query(q): Query<DeliveryStatusQuery>,
) -> ApiResult<Json<ListResponse<EndpointMessageOut>>> {
    let app = find_app(&state, &p.app_id).await?;
    let ep = find_endpoint(&state, &app, &p.endpoint_id).await?;
    let filter = messages.filter(&page)?;
    let page = state
        .engine
        .deliveries_of_endpoint(&ep.id, &filter, status_param(&q.status)?)
        .await?;
    // Each view of this listing carries its message (the store joins them).
    Ok(Json(ListResponse::of_some(page, |d| {
        d.message.as_ref().map(|m| EndpointMessageOut {
            message: MessageOut::new(m, filter.with_content),
            delivery: d.into(),
        })
    })))
}

/// `{app_id}/msg/{msg_id}/endpoint/{endpoint_id}`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct ResendPath {
    /// The application's id (`app_…`) or uid.
    app_id: String,
    /// The message's id (`msg_…`) or its `eventId`.
    msg_id: String,
    /// The endpoint's id (`ep_…`) or uid.
    endpoint_id: String,
}

/// Always `{}`.
#[derive(Serialize, ToSchema)]
struct EmptyOut {}

/// Send a message to an endpoint again now.
#[utoipa::path(post, path = "/api/v1/app/{app_id}/msg/{msg_id}/endpoint/{endpoint_id}/resend", operation_id = "v1.message-attempt.resend",
    params(ResendPath),
    responses((status = 202, description = "A manual attempt is under way", body = EmptyOut)))]
async fn resend(State(state): State<AppState>, Path(p): Path<ResendPath>) -> ApiResult<Response> {
    let app = find_app(&state, &p.app_id).await?;
    let msg = find_message(&state, &app.id, &p.msg_id).await?;
    let ep = find_endpoint(&state, &app, &p.endpoint_id).await?;
    state.engine.resend(&msg, &ep.id).await?;
    Ok((StatusCode::ACCEPTED, Json(EmptyOut {})).into_response())
}
