//! Incoming webhooks: the public `POST /ingest/{token}` route providers post
//! to, and the source management API beside it.
//!
//! The route is an adapter: it finds the source, reads the body within the
//! source's limit and hands the request to the engine's ingest pipeline
//! (`switchyard_engine::Engine::ingest`), then answers as the source says.

mod sources;

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{BodyError, read_body};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Serialize;
use switchyard_core::MessageId;
use switchyard_engine::{IngestError, IngestOutcome, IngestReply, IngestRequest};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The management API; mounted behind admin authentication.
pub fn api_router() -> OpenApiRouter<AppState> {
    sources::router()
}

/// The provider-facing route; authenticated by the source's own verifier.
/// The document shows it once: a path suffix after the token (forwarded to
/// destinations) reaches the same handler.
pub fn public_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(receive))
        // A provider URL ending in `/` forwards nothing extra (see `ForwardPath::join`).
        .route("/ingest/{token}/", post(receive))
        .route("/ingest/{token}/{*rest}", post(receive))
}

/// What a source answers a provider by default.
#[derive(Serialize, ToSchema)]
struct IngestAcceptedOut {
    /// The message the webhook became (`msg_…`).
    #[schema(value_type = String)]
    id: MessageId,
    /// Whether it repeated one accepted before (same dedupe id): nothing new
    /// was stored or sent.
    duplicate: bool,
}

/// The JSON a provider gets back: [`IngestAcceptedOut`], or the answer to
/// its URL check, whose shape is the provider's.
struct IngestReplyOut;

impl utoipa::PartialSchema for IngestReplyOut {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{AnyOfBuilder, ObjectBuilder, Type};
        AnyOfBuilder::new()
            .item(utoipa::openapi::Ref::from_schema_name(
                IngestAcceptedOut::name(),
            ))
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Object)
                    .description(Some("A provider's URL check answered as it expects")),
            )
            .into()
    }
}

impl ToSchema for IngestReplyOut {
    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        use utoipa::PartialSchema;
        schemas.push((
            IngestAcceptedOut::name().into_owned(),
            IngestAcceptedOut::schema(),
        ));
        <IngestAcceptedOut as ToSchema>::schemas(schemas);
    }
}

/// The URL a provider is given for a source.
pub(crate) fn ingest_url(state: &AppState, host: Option<&str>, token: &str) -> String {
    match (&state.public_url, host) {
        (Some(base), _) => format!("{base}/ingest/{token}"),
        (None, Some(host)) => format!("http://{host}/ingest/{token}"),
        (None, None) => format!("/ingest/{token}"),
    }
}

fn reject(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Response {
    ApiError::http(status, code, detail).into_response()
}

/// Provider posts a webhook (verified by the source's scheme; any path suffix and query are passed on).
///
/// The body is taken as sent, in any media type. A source can set its own
/// reply (status, body and content type), and a provider's URL check
/// (Slack's `url_verification`, Zoom's `endpoint.url_validation`, ...) is
/// answered as that provider expects.
#[utoipa::path(post, path = "/ingest/{token}", operation_id = "ingest.receive",
    params(("token" = String, Path, description = "The source's ingest token (the last part of its `ingestUrl`)")),
    request_body(description = "The provider's webhook, byte for byte", content(
        (Value = "application/json"),
        (Object = "application/x-www-form-urlencoded"),
        (String = "text/plain"),
    )),
    responses(
        (status = 200, description = "Stored (or a repeat of one stored before), or a provider's URL check answered", content(
            (IngestReplyOut = "application/json"),
        )),
        (status = "2XX", description = "Stored, answered with the source's own reply (`settings.response`: any 2xx status, its body and content type; no body with 204 or 205)", content(
            (String = "*/*"),
        )),
        (status = 401, description = "Signature or credentials missing, wrong or stale", body = crate::error::HttpErrorOut),
    ))]
async fn receive(State(state): State<AppState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path();
    let rest = path.strip_prefix("/ingest/").unwrap_or(path);
    let (key, suffix) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let source = match state.engine.find_source(key).await {
        Ok(Some(s)) => s,
        Ok(None) => return ApiError::not_found("source").into_response(),
        Err(e) => return ApiError::from(e).into_response(),
    };
    let limit = source.plan.max_body_bytes.unwrap_or(state.max_body_bytes);
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let body = match declared {
        Some(n) if n > limit as u64 => Err(BodyError::TooLarge),
        _ => read_body(body, limit).await,
    };
    let body = match body {
        Ok(body) => body,
        Err(e) => {
            state
                .engine
                .count_ingest(&source.source.id, IngestOutcome::Rejected(e.counted()));
            return e
                .into_api_error(&format!("this source's limit of {limit} bytes"))
                .into_response();
        }
    };
    let headers: Vec<(&str, &str)> = parts
        .headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?)))
        .collect();
    let url = public_url_of(&state, &parts.headers, &parts.uri);
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let reply = state
        .engine
        .ingest(
            &source,
            IngestRequest {
                headers: &headers,
                body: &body,
                url: &url,
                suffix,
                query: parts.uri.query(),
                content_type,
            },
        )
        .await;
    match reply {
        Ok(IngestReply::Challenge(answer)) => axum::Json(answer).into_response(),
        Ok(IngestReply::Accepted {
            message_id,
            duplicate,
        }) => match &source.plan.reply {
            Some(reply) => {
                let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::OK);
                // RFC 9110 §15.3.5/§15.3.6: a 204 or 205 carries no content,
                // whatever the source's settings say.
                if matches!(status, StatusCode::NO_CONTENT | StatusCode::RESET_CONTENT) {
                    return status.into_response();
                }
                let mut response = (status, reply.body.clone()).into_response();
                if let Ok(ct) = HeaderValue::from_str(&reply.content_type) {
                    response.headers_mut().insert(header::CONTENT_TYPE, ct);
                }
                response
            }
            None => axum::Json(IngestAcceptedOut {
                id: message_id,
                duplicate,
            })
            .into_response(),
        },
        Err(IngestError::Refused(refusal)) => reject(
            StatusCode::from_u16(refusal.status).unwrap_or(StatusCode::BAD_REQUEST),
            refusal.code,
            refusal.detail,
        ),
        // Never a 2xx for something not stored: the provider retries.
        Err(IngestError::Engine(e)) => ApiError::from(e).into_response(),
    }
}

/// The URL the provider posted to, as it saw it: the configured public URL
/// or, failing that, the forwarded or direct host.
fn public_url_of(state: &AppState, headers: &HeaderMap, uri: &axum::http::Uri) -> String {
    let path_and_query = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    format!("{}{path_and_query}", crate::public_base(state, headers))
}
