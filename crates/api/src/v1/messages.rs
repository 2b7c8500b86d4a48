//! Messages: `/api/v1/app/{app}/msg`.

use super::applications::ApplicationIn;
use super::{AppPath, ListResponse, MessagePath, find_app, texts, ts};
use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::{MessageBody, PageQuery, Path, Query, bool_param, list_param, time_param};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use switchyard_core::AppId;
use switchyard_engine::MessageRequest;
use switchyard_store::{Message, MessageFilter, Order};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(fetch))
        .routes(routes!(content, expunge))
}

/// A message to send to the application's matching endpoints.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(examples(json!({"eventType": "invoice.paid", "payload": {"id": "inv_1", "amount": 42}})))]
struct MessageIn {
    /// `invoice.paid`: letters, digits and `._-`.
    #[schema(pattern = "^[A-Za-z0-9._-]{1,256}$")]
    event_type: String,
    /// The JSON object endpoints receive, byte for byte; `data` is accepted
    /// as its older name.
    #[serde(alias = "data")]
    #[schema(value_type = Object)]
    payload: Box<RawValue>,
    /// At most 10; endpoints listening on any of them receive the message.
    channels: Option<Vec<String>>,
    /// A unique id of your choosing (1 to 256 characters): a second message
    /// with the same one is not stored or sent again.
    #[schema(min_length = 1, max_length = 256)]
    event_id: Option<String>,
    /// Free-form labels, at most 20, 1 to 128 characters each.
    #[schema(max_items = 20)]
    tags: Option<Vec<String>>,
    /// Creates the application named by the path (as its uid) when there is
    /// none yet.
    application: Option<ApplicationIn>,
    /// Scheduled delivery (Svix's `deliverAt`) is not supported yet: a value
    /// is refused with 422 rather than delivered early; null or absent
    /// delivers now.
    #[schema(value_type = Option<String>, format = DateTime)]
    deliver_at: Option<serde_json::Value>,
}

/// A message as the API shows it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MessageOut {
    /// `msg_…`
    id: String,
    event_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    event_id: Option<String>,
    #[schema(required = true)]
    channels: Option<Vec<String>>,
    #[schema(required = true)]
    tags: Option<Vec<String>>,
    /// The payload as sent, `{}` without its content (expunged, or
    /// `with_content=false`). An ingested body that is not JSON is wrapped:
    /// text (form data, XML) as `{"$rawBody": "<the text>"}`, bytes that are
    /// not UTF-8 as `{"$rawBodyBase64": "<standard base64>"}`.
    #[schema(value_type = Value)]
    payload: Box<RawValue>,
    #[schema(format = DateTime)]
    timestamp: String,
}

const EMPTY_OBJECT: &str = "{}";

impl MessageOut {
    /// The API shape of a message; `with_content: false` shows `{}` as the payload.
    pub(crate) fn new(m: &Message, with_content: bool) -> Self {
        let bytes = match &m.payload {
            Some(payload) if with_content => payload.as_ref(),
            _ => EMPTY_OBJECT.as_bytes(),
        };
        MessageOut {
            id: m.id.as_str().to_owned(),
            event_type: m.event_type.to_string(),
            event_id: m.event_id.clone(),
            channels: texts(m.channels.as_deref()),
            tags: m.tags.clone(),
            payload: payload_view(bytes),
            timestamp: ts(m.created_at),
        }
    }
}

/// A stored payload as the API's `payload` field shows it. A JSON object as
/// it was sent; since the field is an object (the SDKs type it so), other
/// ingested bodies are wrapped: text (form data, XML, a JSON array or
/// scalar, ...) as `{"$rawBody": "<text>"}`, bytes that are not UTF-8 as
/// `{"$rawBodyBase64": "<standard base64>"}`.
/// `GET …/msg/{id}/content` returns the bytes themselves.
fn payload_view(bytes: &[u8]) -> Box<RawValue> {
    use base64::Engine as _;
    let wrapped = match std::str::from_utf8(bytes) {
        Ok(text) => match RawValue::from_string(text.to_owned()) {
            Ok(json) if json.get().trim_start().starts_with('{') => return json,
            _ => serde_json::json!({ "$rawBody": text }),
        },
        Err(_) => serde_json::json!({
            "$rawBodyBase64": base64::engine::general_purpose::STANDARD.encode(bytes)
        }),
    };
    serde_json::value::to_raw_value(&wrapped).unwrap_or_default()
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ContentQuery {
    /// Whether the payload is shown (default true); without it the payload is `{}`.
    #[param(value_type = Option<bool>)]
    with_content: Option<String>,
}

/// Create a message and fan it out to matching endpoints.
#[utoipa::path(post, path = "/api/v1/app/{app_id}/msg", operation_id = "v1.message.create",
    params(AppPath, ContentQuery),
    request_body = MessageIn,
    responses((status = 202, description = "Stored; deliveries are under way (or the message with this `eventId` or `Idempotency-Key`)", body = MessageOut)))]
async fn create(
    State(state): State<AppState>,
    Path(p): Path<AppPath>,
    Query(q): Query<ContentQuery>,
    headers: HeaderMap,
    MessageBody(input): MessageBody<MessageIn>,
) -> ApiResult<Response> {
    let with_content = bool_param("with_content", &q.with_content, true)?;
    let mut request = MessageRequest {
        event_type: input.event_type,
        payload: bytes::Bytes::from(Box::<str>::from(input.payload).into_boxed_bytes()),
        event_id: input.event_id,
        channels: input.channels,
        tags: input.tags,
        idempotency_key: None,
        application: input.application.map(Into::into),
    };
    let checked = request.check_fields()?;
    if input.deliver_at.as_ref().is_some_and(|v| !v.is_null()) {
        return Err(ApiError::field(
            "deliverAt",
            "scheduled delivery is not supported yet; omit deliverAt to deliver now",
        ));
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
    request.idempotency_key = idempotency_key;
    let result = state
        .engine
        .publish_checked(&p.app_id, request, checked)
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(MessageOut::new(&result.message, with_content)),
    )
        .into_response())
}

/// Filters of every message-shaped listing (messages, attempted messages,
/// attempts). Parameters the SDKs send that Switchyard does not filter on
/// (`tag`, `status_code_class`) are unknown fields, which serde ignores.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct MessageListQuery {
    /// Only messages sent to this channel.
    channel: Option<String>,
    /// Only messages created before this time.
    #[param(format = DateTime)]
    before: Option<String>,
    /// Only messages created after this time.
    #[param(format = DateTime)]
    after: Option<String>,
    /// Whether payloads are shown (default true); without them each is `{}`.
    #[param(value_type = Option<bool>)]
    with_content: Option<String>,
    /// Only messages of these event types.
    #[param(value_type = Option<Vec<String>>, style = Form, explode)]
    event_types: Option<String>,
}

impl MessageListQuery {
    /// Newest first unless `order` says otherwise.
    pub(crate) fn filter(&self, page: &PageQuery) -> ApiResult<MessageFilter> {
        Ok(MessageFilter {
            page: page.page(Order::Descending)?,
            event_types: list_param(&self.event_types),
            channel: self.channel.clone(),
            before_ms: time_param("before", &self.before)?,
            after_ms: time_param("after", &self.after)?,
            with_content: bool_param("with_content", &self.with_content, true)?,
        })
    }
}

/// List messages, newest first.
#[utoipa::path(get, path = "/api/v1/app/{app_id}/msg", operation_id = "v1.message.list",
    params(AppPath, PageQuery, MessageListQuery),
    responses((status = 200, description = "One page, newest first", body = ListResponse<MessageOut>)))]
async fn list(
    State(state): State<AppState>,
    Path(p): Path<AppPath>,
    Query(page): Query<PageQuery>,
    Query(q): Query<MessageListQuery>,
) -> ApiResult<Json<ListResponse<MessageOut>>> {
    let app = find_app(&state, &p.app_id).await?;
    let filter = q.filter(&page)?;
    let page = state.engine.list_messages(&app.id, &filter).await?;
    Ok(Json(ListResponse::of(page, |m| {
        MessageOut::new(m, filter.with_content)
    })))
}

pub(crate) async fn find_message(state: &AppState, app: &AppId, key: &str) -> ApiResult<Message> {
    state.engine.message(app, key).await.map_err(Into::into)
}

/// Get a message by id or eventId.
#[utoipa::path(get, path = "/api/v1/app/{app_id}/msg/{msg_id}", operation_id = "v1.message.get",
    params(MessagePath, ContentQuery),
    responses((status = 200, description = "The message", body = MessageOut)))]
async fn fetch(
    State(state): State<AppState>,
    Path(p): Path<MessagePath>,
    Query(q): Query<ContentQuery>,
) -> ApiResult<Json<MessageOut>> {
    let with_content = bool_param("with_content", &q.with_content, true)?;
    let app = find_app(&state, &p.app_id).await?;
    Ok(Json(MessageOut::new(
        &find_message(&state, &app.id, &p.msg_id).await?,
        with_content,
    )))
}

/// The payload exactly as it was accepted (and as endpoints receive it).
///
/// Byte for byte, with the Content-Type it was sent with: an ingested
/// webhook's forwarded `Content-Type`, otherwise `application/json`.
#[utoipa::path(get, path = "/api/v1/app/{app_id}/msg/{msg_id}/content", operation_id = "v1.message.get-content",
    params(MessagePath),
    responses(
        (status = 200, description = "The payload, byte for byte", content(
            (Value = "application/json"),
            ("*/*"),
        )),
        (status = 410, description = "The payload was expunged", body = crate::error::HttpErrorOut),
    ))]
async fn content(State(state): State<AppState>, Path(p): Path<MessagePath>) -> ApiResult<Response> {
    let app = find_app(&state, &p.app_id).await?;
    let msg = find_message(&state, &app.id, &p.msg_id).await?;
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

/// Delete a message's payload.
#[utoipa::path(delete, path = "/api/v1/app/{app_id}/msg/{msg_id}/content", operation_id = "v1.message.expunge-content",
    params(MessagePath),
    responses((status = 204, description = "Expunged")))]
async fn expunge(
    State(state): State<AppState>,
    Path(p): Path<MessagePath>,
) -> ApiResult<StatusCode> {
    let app = find_app(&state, &p.app_id).await?;
    let msg = find_message(&state, &app.id, &p.msg_id).await?;
    state
        .engine
        .expunge_message_content(&app.id, &msg.id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
