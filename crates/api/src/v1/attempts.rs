//! Attempts and per-delivery views, plus manual resend.

use super::endpoints::endpoint_out;
use super::messages::{MessageListQuery, find_message, message_out};
use super::{find_app, find_endpoint, list_out, ts};
use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::{PageQuery, Path, Query, bool_param};
use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use switchyard_core::AttemptId;
use switchyard_engine::EngineError;
use switchyard_store::{Attempt, AttemptFilter, DeliveryStatus, DeliveryView, Message, Order};

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/app/{app_id}/attempt/endpoint/{endpoint_id}",
            get(by_endpoint),
        )
        .route("/api/v1/app/{app_id}/attempt/msg/{msg_id}", get(by_message))
        .route(
            "/api/v1/app/{app_id}/msg/{msg_id}/attempt/{attempt_id}",
            get(fetch),
        )
        .route(
            "/api/v1/app/{app_id}/msg/{msg_id}/endpoint",
            get(destinations),
        )
        .route(
            "/api/v1/app/{app_id}/endpoint/{endpoint_id}/msg",
            get(attempted_messages),
        )
        .route(
            "/api/v1/app/{app_id}/msg/{msg_id}/endpoint/{endpoint_id}/resend",
            post(resend),
        )
}

fn attempt_out(a: &Attempt, msg: Option<&Message>) -> Value {
    json!({
        "id": a.id,
        "url": a.url,
        "msgId": a.msg_id,
        "endpointId": a.endpoint_id,
        "response": a.response,
        "responseStatusCode": a.response_status_code,
        "responseDurationMs": a.response_duration_ms,
        "status": a.status as u8,
        "statusText": a.status.text(),
        "triggerType": if a.manual { 1 } else { 0 },
        "timestamp": ts(a.created_at),
        "msg": msg.map(|m| message_out(m, true)),
    })
}

#[derive(Deserialize)]
struct AttemptQuery {
    #[serde(flatten)]
    messages: MessageListQuery,
    status: Option<String>,
    endpoint_id: Option<String>,
    with_msg: Option<String>,
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

fn attempt_filter(q: &AttemptQuery) -> ApiResult<AttemptFilter> {
    let f = q.messages.filter()?;
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
) -> ApiResult<Json<Value>> {
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
    Ok(Json(list_out(page, |a| {
        attempt_out(a, messages.get(&a.msg_id))
    })))
}

async fn by_endpoint(
    State(state): State<AppState>,
    Path((app_id, endpoint_id)): Path<(String, String)>,
    Query(q): Query<AttemptQuery>,
) -> ApiResult<Json<Value>> {
    let app = find_app(&state, &app_id).await?;
    let ep = find_endpoint(&state, &app, &endpoint_id).await?;
    let mut filter = attempt_filter(&q)?;
    filter.app_id = Some(app.id);
    filter.endpoint_id = Some(ep.id);
    attempts_page(&state, filter, bool_param("with_msg", &q.with_msg, false)?).await
}

async fn by_message(
    State(state): State<AppState>,
    Path((app_id, msg_id)): Path<(String, String)>,
    Query(q): Query<AttemptQuery>,
) -> ApiResult<Json<Value>> {
    let app = find_app(&state, &app_id).await?;
    let msg = find_message(&state, &app.id, &msg_id).await?;
    let mut filter = attempt_filter(&q)?;
    if let Some(ep) = &q.endpoint_id {
        filter.endpoint_id = Some(find_endpoint(&state, &app, ep).await?.id);
    }
    filter.app_id = Some(app.id);
    filter.msg_id = Some(msg.id);
    attempts_page(&state, filter, bool_param("with_msg", &q.with_msg, false)?).await
}

async fn fetch(
    State(state): State<AppState>,
    Path((app_id, msg_id, attempt_id)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    let app = find_app(&state, &app_id).await?;
    let msg = find_message(&state, &app.id, &msg_id).await?;
    let attempt_id = AttemptId::parse(&attempt_id).ok_or_else(|| ApiError::not_found("attempt"))?;
    let attempt = state.engine.attempt(&app.id, &msg.id, &attempt_id).await?;
    Ok(Json(attempt_out(&attempt, None)))
}

/// Adds a delivery's status and next attempt time to its endpoint or message.
fn with_delivery_status(base: Option<Value>, d: &DeliveryView) -> Value {
    let mut out = base.unwrap_or_else(|| json!({}));
    let next_attempt = match d.status {
        DeliveryStatus::Pending => d.next_attempt_at.map(ts),
        _ => None,
    };
    out["status"] = json!(d.status as u8);
    out["statusText"] = json!(d.status.text());
    out["nextAttempt"] = json!(next_attempt);
    out
}

async fn destinations(
    State(state): State<AppState>,
    Path((app_id, msg_id)): Path<(String, String)>,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<Value>> {
    let app = find_app(&state, &app_id).await?;
    let msg = find_message(&state, &app.id, &msg_id).await?;
    let page = state
        .engine
        .deliveries_of_message(&app.id, &msg.id, &q.page(Order::Ascending)?)
        .await?;
    Ok(Json(list_out(page, |d| {
        with_delivery_status(d.endpoint.as_ref().map(endpoint_out), d)
    })))
}

#[derive(Deserialize)]
struct AttemptedMessagesQuery {
    #[serde(flatten)]
    messages: MessageListQuery,
    status: Option<String>,
}

async fn attempted_messages(
    State(state): State<AppState>,
    Path((app_id, endpoint_id)): Path<(String, String)>,
    Query(q): Query<AttemptedMessagesQuery>,
) -> ApiResult<Json<Value>> {
    let app = find_app(&state, &app_id).await?;
    let ep = find_endpoint(&state, &app, &endpoint_id).await?;
    let filter = q.messages.filter()?;
    let page = state
        .engine
        .deliveries_of_endpoint(&ep.id, &filter, status_param(&q.status)?)
        .await?;
    Ok(Json(list_out(page, |d| {
        let message = d
            .message
            .as_ref()
            .map(|m| message_out(m, filter.with_content));
        with_delivery_status(message, d)
    })))
}

/// Sends the message to the endpoint once more, now, as a manual attempt.
async fn resend(
    State(state): State<AppState>,
    Path((app_id, msg_id, endpoint_id)): Path<(String, String, String)>,
) -> ApiResult<Response> {
    let app = find_app(&state, &app_id).await?;
    let msg = find_message(&state, &app.id, &msg_id).await?;
    let ep = find_endpoint(&state, &app, &endpoint_id).await?;
    state.engine.resend(&msg, &ep.id).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({}))).into_response())
}
