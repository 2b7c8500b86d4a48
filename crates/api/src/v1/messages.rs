//! Messages: `/api/v1/app/{app}/msg`.

use super::applications::ApplicationIn;
use super::{find_app, list_out, parse_channels, ts};
use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Body, PageQuery, Path, Query, bool_param, list_param, time_param};
use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;
use switchyard_core::{AppId, EventTypeName, MessageId};
use switchyard_engine::{AcceptInput, PayloadDocument};
use switchyard_store::{Message, MessageFilter, Order};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/app/{app_id}/msg", get(list).post(create))
        .route("/api/v1/app/{app_id}/msg/{msg_id}", get(fetch))
        .route(
            "/api/v1/app/{app_id}/msg/{msg_id}/content",
            get(content).delete(expunge),
        )
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MessageIn {
    event_type: String,
    payload: Box<RawValue>,
    channels: Option<Vec<String>>,
    event_id: Option<String>,
    tags: Option<Vec<String>>,
    application: Option<ApplicationIn>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MessageOut<'a> {
    id: &'a MessageId,
    event_type: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    event_id: Option<&'a str>,
    channels: Option<&'a [String]>,
    tags: Option<&'a [String]>,
    payload: &'a RawValue,
    timestamp: String,
}

const EMPTY_OBJECT: &str = "{}";

/// The API shape of a message; `with_content: false` sends `{}` as the payload.
pub(crate) fn message_out(m: &Message, with_content: bool) -> Value {
    serde_json::to_value(message_view(m, with_content, &mut None)).unwrap_or(Value::Null)
}

fn message_view<'a>(
    m: &'a Message,
    with_content: bool,
    raw: &'a mut Option<Box<RawValue>>,
) -> MessageOut<'a> {
    let bytes = match &m.payload {
        Some(payload) if with_content => payload.as_ref(),
        _ => EMPTY_OBJECT.as_bytes(),
    };
    *raw = payload_view(bytes);
    MessageOut {
        id: &m.id,
        event_type: &m.event_type,
        event_id: m.event_id.as_deref(),
        channels: m.channels.as_deref(),
        tags: m.tags.as_deref(),
        payload: raw.as_deref().unwrap_or_else(|| empty_raw()),
        timestamp: ts(m.created_at),
    }
}

/// A stored payload as the API's `payload` field shows it. JSON as it was
/// sent; since the field is an object, ingested bodies that are not JSON are
/// wrapped: text (form data, XML, ...) as `{"$rawBody": "<text>"}`, bytes
/// that are not UTF-8 as `{"$rawBodyBase64": "<standard base64>"}`.
/// `GET …/msg/{id}/content` returns the bytes themselves.
fn payload_view(bytes: &[u8]) -> Option<Box<RawValue>> {
    use base64::Engine as _;
    let wrapped = match std::str::from_utf8(bytes) {
        Ok(text) => match RawValue::from_string(text.to_owned()) {
            Ok(json) => return Some(json),
            Err(_) => serde_json::json!({ "$rawBody": text }),
        },
        Err(_) => serde_json::json!({
            "$rawBodyBase64": base64::engine::general_purpose::STANDARD.encode(bytes)
        }),
    };
    serde_json::value::to_raw_value(&wrapped).ok()
}

fn empty_raw() -> &'static RawValue {
    static EMPTY: std::sync::OnceLock<Box<RawValue>> = std::sync::OnceLock::new();
    EMPTY.get_or_init(|| RawValue::from_string(EMPTY_OBJECT.into()).expect("{} is JSON"))
}

fn check_token(field: &str, value: &str, max: usize) -> ApiResult<()> {
    if value.is_empty() || value.len() > max {
        return Err(ApiError::field(
            field,
            format!("must be 1 to {max} characters"),
        ));
    }
    Ok(())
}

#[derive(Deserialize)]
struct CreateQuery {
    with_content: Option<String>,
}

async fn create(
    State(state): State<AppState>,
    Path(app_id): Path<String>,
    Query(q): Query<CreateQuery>,
    headers: HeaderMap,
    Body(input): Body<MessageIn>,
) -> ApiResult<Response> {
    let with_content = bool_param("with_content", &q.with_content, true)?;
    EventTypeName::parse(&input.event_type)
        .map_err(|e| ApiError::field("eventType", e.to_string()))?;
    if !input.payload.get().trim_start().starts_with('{') {
        return Err(ApiError::field("payload", "must be a JSON object"));
    }
    if let Some(event_id) = &input.event_id {
        check_token("eventId", event_id, 256)?;
    }
    let channels = parse_channels("channels", input.channels)?;
    if let Some(tags) = &input.tags {
        for tag in tags {
            check_token("tags", tag, 128)?;
        }
    }
    let idempotency_key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => {
            let key = v.to_str().map_err(|_| {
                ApiError::http(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    "Idempotency-Key must be visible ASCII",
                )
            })?;
            if key.is_empty() || key.len() > 256 {
                return Err(ApiError::http(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    "Idempotency-Key must be 1 to 256 characters",
                ));
            }
            Some(key.to_owned())
        }
    };
    let app = state
        .engine
        .app_for_message(&app_id, input.application.map(Into::into))
        .await?;
    let result = state
        .engine
        .accept(AcceptInput {
            app_id: app.id,
            event_type: input.event_type,
            event_id: input.event_id,
            channels,
            tags: input.tags,
            payload: bytes::Bytes::from(Box::<str>::from(input.payload).into_boxed_bytes()),
            idempotency_key,
            forward: None,
            document: PayloadDocument::Json,
            check_schema: true,
        })
        .await?;
    let mut raw = None;
    let body = serde_json::to_vec(&message_view(&result.message, with_content, &mut raw)).map_err(
        |e| {
            ApiError::http(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                e.to_string(),
            )
        },
    )?;
    let mut response = (StatusCode::ACCEPTED, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

/// Query parameters of every message-shaped listing (messages, attempted
/// messages, attempts). Parameters the SDKs send that Switchyard does not
/// filter on (`tag`, `status_code_class`) are unknown fields, which serde ignores.
#[derive(Deserialize)]
pub(crate) struct MessageListQuery {
    #[serde(flatten)]
    page: PageQuery,
    channel: Option<String>,
    before: Option<String>,
    after: Option<String>,
    with_content: Option<String>,
    event_types: Option<String>,
}

impl MessageListQuery {
    /// Newest first unless `order` says otherwise.
    pub(crate) fn filter(&self) -> ApiResult<MessageFilter> {
        Ok(MessageFilter {
            page: self.page.page(Order::Descending)?,
            event_types: list_param(&self.event_types),
            channel: self.channel.clone(),
            before_ms: time_param("before", &self.before)?,
            after_ms: time_param("after", &self.after)?,
            with_content: bool_param("with_content", &self.with_content, true)?,
        })
    }
}

async fn list(
    State(state): State<AppState>,
    Path(app_id): Path<String>,
    Query(q): Query<MessageListQuery>,
) -> ApiResult<Json<Value>> {
    let app = find_app(&state, &app_id).await?;
    let filter = q.filter()?;
    let page = state.engine.list_messages(&app.id, &filter).await?;
    Ok(Json(list_out(page, |m| {
        message_out(m, filter.with_content)
    })))
}

pub(crate) async fn find_message(state: &AppState, app: &AppId, key: &str) -> ApiResult<Message> {
    state.engine.message(app, key).await.map_err(Into::into)
}

async fn fetch(
    State(state): State<AppState>,
    Path((app_id, msg_id)): Path<(String, String)>,
    Query(q): Query<CreateQuery>,
) -> ApiResult<Json<Value>> {
    let with_content = bool_param("with_content", &q.with_content, true)?;
    let app = find_app(&state, &app_id).await?;
    Ok(Json(message_out(
        &find_message(&state, &app.id, &msg_id).await?,
        with_content,
    )))
}

/// The payload exactly as it was accepted (and as endpoints receive it), byte
/// for byte, with the Content-Type it was sent with: an ingested webhook's
/// forwarded `Content-Type`, otherwise `application/json`.
async fn content(
    State(state): State<AppState>,
    Path((app_id, msg_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let app = find_app(&state, &app_id).await?;
    let msg = find_message(&state, &app.id, &msg_id).await?;
    let payload = msg.payload.ok_or_else(|| {
        ApiError::http(
            StatusCode::GONE,
            "content_expunged",
            "this message's payload was expunged",
        )
    })?;
    let content_type = msg
        .forward
        .as_ref()
        .and_then(|f| {
            f.headers
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case("content-type"))
        })
        .and_then(|(_, value)| HeaderValue::from_str(value).ok())
        .unwrap_or(HeaderValue::from_static("application/json"));
    let mut response = (StatusCode::OK, payload).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, content_type);
    Ok(response)
}

async fn expunge(
    State(state): State<AppState>,
    Path((app_id, msg_id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let app = find_app(&state, &app_id).await?;
    let msg = find_message(&state, &app.id, &msg_id).await?;
    state
        .engine
        .expunge_message_content(&app.id, &msg.id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
