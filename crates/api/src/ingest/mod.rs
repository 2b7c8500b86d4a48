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
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::json;
use switchyard_engine::{IngestError, IngestOutcome, IngestReply, IngestRequest};

/// The management API; mounted behind admin authentication.
pub fn api_router() -> Router<AppState> {
    sources::router()
}

/// The provider-facing route; authenticated by the source's own verifier.
pub fn public_router() -> Router<AppState> {
    Router::new()
        .route("/ingest/{key}", post(receive))
        // A provider URL ending in `/` forwards nothing extra (see `ForwardPath::join`).
        .route("/ingest/{key}/", post(receive))
        .route("/ingest/{key}/{*rest}", post(receive))
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
    let id = source.source.id.as_str();
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
                .count_ingest(id, IngestOutcome::Rejected(e.counted()));
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
                let mut response = (
                    StatusCode::from_u16(reply.status).unwrap_or(StatusCode::OK),
                    reply.body.clone(),
                )
                    .into_response();
                if let Ok(ct) = HeaderValue::from_str(&reply.content_type) {
                    response.headers_mut().insert(header::CONTENT_TYPE, ct);
                }
                response
            }
            None => axum::Json(json!({ "id": message_id, "duplicate": duplicate })).into_response(),
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
    if let Some(base) = &state.public_url {
        return format!("{base}{path_and_query}");
    }
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let scheme = get("x-forwarded-proto").unwrap_or("http");
    let host = get("x-forwarded-host")
        .or_else(|| get("host"))
        .unwrap_or("localhost");
    format!("{scheme}://{host}{path_and_query}")
}
