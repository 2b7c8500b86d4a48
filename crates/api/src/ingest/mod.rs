//! Incoming webhooks: the public `POST /ingest/{token}` route providers post
//! to, and the source management API beside it.
//!
//! A request is checked against its source's verifier, challenges (Slack's
//! `url_verification`, Zoom's `endpoint.url_validation`) are answered on the
//! spot, and anything else is accepted into the source's application like a
//! message created through the API: one commit, then the provider's answer,
//! then delivery to the destinations by the same dispatcher.
//!
//! Bodies are forwarded byte for byte, while event type, dedupe id and
//! payload filters read a parsed copy; so that the two cannot disagree, a
//! JSON body (or form `payload` field) that repeats an object key is refused
//! with 422 `duplicate_key`, and a repeated form field is an array of all its
//! values (see `switchyard_core::source::document_of`). The path after the
//! token and the query are passed on only in the checked form of
//! `switchyard_core::forward::ForwardPath`; a suffix that could leave the
//! destination's path is refused with 400 `invalid_path`. Both refusals are
//! counted in the source's rejections.

mod sources;

use crate::AppState;
use crate::error::ApiError;
use crate::extract::read_body;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use switchyard_core::forward::ForwardPath;
use switchyard_core::json::DocumentError;
use switchyard_core::source::{Plan, document_of};
use switchyard_core::verify::{Incoming, Rejection, zoom_encrypted_token};
use switchyard_engine::{AcceptInput, IngestOutcome, IngestSource, PayloadDocument};
use switchyard_store::Forward;

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

/// Event ids are bounded; a longer provider id is replaced by its digest.
const MAX_EVENT_ID: usize = 256;

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
    let too_large = || {
        state
            .engine
            .count_ingest(id, IngestOutcome::Rejected("body too large"));
        reject(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("request body exceeds this source's limit of {limit} bytes"),
        )
    };
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return too_large();
    }
    let body = match read_body(body, limit).await {
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
    let url = match &source.plan.signed_url {
        Some(base) => match parts.uri.query() {
            Some(q) => format!("{base}?{q}"),
            None => base.clone(),
        },
        None => public_url_of(&state, &parts.headers, &parts.uri),
    };
    let now_ms = (state.clock)();
    let incoming = Incoming {
        headers: &headers,
        body: &body,
        url: &url,
        now_secs: (now_ms / 1000) as i64,
    };
    if let Err(rejection) = source.plan.verify(&incoming, now_ms) {
        let reason = rejection.to_string();
        state
            .engine
            .count_ingest(id, IngestOutcome::Rejected(&reason));
        tracing::debug!(source = id, %reason, "ingest request refused");
        let code = match rejection {
            Rejection::Stale => "timestamp_out_of_tolerance",
            _ => "signature_invalid",
        };
        return reject(StatusCode::UNAUTHORIZED, code, reason);
    }
    // A refusal after the signature check: counted with its reason.
    let refuse = |status: StatusCode, code: &'static str, counted: &str, detail: String| {
        state
            .engine
            .count_ingest(id, IngestOutcome::Rejected(counted));
        reject(status, code, detail)
    };
    // Checked after the signature so a forger learns nothing, and for any
    // correctly signed request too: the signature never covers the path.
    let forward_path = if source.plan.forward_path {
        match ForwardPath::parse(suffix, parts.uri.query()) {
            Ok(path) => path,
            Err(e) => {
                return refuse(
                    StatusCode::BAD_REQUEST,
                    "invalid_path",
                    &format!("unsafe path: {e}"),
                    format!(
                        "{e}; the path after the ingest URL must stay under the destination's path"
                    ),
                );
            }
        }
    } else {
        ForwardPath::default()
    };
    let Ok(text) = std::str::from_utf8(&body) else {
        return refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_body",
            "body is not UTF-8",
            "the body must be UTF-8 text (JSON, form data, XML, ...)".into(),
        );
    };
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let document = match document_of(content_type, &body) {
        Ok(document) => document,
        Err(refusal) => {
            let reason = refusal.to_string();
            let (code, why) = match refusal {
                DocumentError::DuplicateKey(_) => (
                    "duplicate_key",
                    "the body is forwarded as sent, so routing cannot choose one of the values",
                ),
                DocumentError::Syntax(_) => (
                    "invalid_json",
                    "a body declared as or starting like JSON must be strict JSON (RFC 8259), since lenient parsers would read it differently",
                ),
            };
            return refuse(
                StatusCode::UNPROCESSABLE_ENTITY,
                code,
                &reason,
                format!("{reason}: {why}"),
            );
        }
    };
    if let Some(answer) = challenge(&source, document.as_ref()) {
        return answer;
    }
    let event_type = source.plan.event_type(&incoming, document.as_ref());
    let event_id = source
        .plan
        .dedupe_id(&incoming, document.as_ref())
        .map(bounded_event_id);
    let forward = forward_of(&source.plan, &headers, &forward_path);
    let result = state
        .engine
        .accept(AcceptInput {
            app_id: source.source.app_id.clone(),
            event_type,
            event_id,
            channels: None,
            tags: None,
            payload: Arc::from(text),
            idempotency_key: None,
            forward: Some(forward),
            document: PayloadDocument::Parsed(document),
            check_schema: false,
        })
        .await;
    let accepted = match result {
        Ok(accepted) => accepted,
        // Never a 2xx for something not stored: the provider retries.
        Err(e) => return ApiError::from(e).into_response(),
    };
    state.engine.count_ingest(
        id,
        if accepted.created {
            IngestOutcome::Accepted
        } else {
            IngestOutcome::Duplicate
        },
    );
    match &source.plan.reply {
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
        None => axum::Json(json!({
            "id": accepted.message.id,
            "duplicate": !accepted.created,
        }))
        .into_response(),
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

/// Verification handshakes some providers make when a URL is configured;
/// they are answered, not stored.
fn challenge(source: &IngestSource, document: Option<&Value>) -> Option<Response> {
    let doc = document?;
    match source.plan.kind.as_str() {
        "slack" if doc["type"] == "url_verification" => {
            let challenge = doc["challenge"].as_str()?;
            Some(axum::Json(json!({ "challenge": challenge })).into_response())
        }
        "zoom" if doc["event"] == "endpoint.url_validation" => {
            let plain = doc["payload"]["plainToken"].as_str()?;
            let secret = source.plan.secrets.first()?;
            Some(
                axum::Json(json!({
                    "plainToken": plain,
                    "encryptedToken": zoom_encrypted_token(&secret.value, plain),
                }))
                .into_response(),
            )
        }
        _ => None,
    }
}

fn bounded_event_id(id: String) -> String {
    if id.len() <= MAX_EVENT_ID {
        id
    } else {
        format!("sha256:{}", hex::encode(Sha256::digest(id.as_bytes())))
    }
}

fn forward_of(plan: &Plan, headers: &[(&str, &str)], path: &ForwardPath) -> Forward {
    let headers = headers
        .iter()
        .filter(|(k, _)| {
            plan.forward_headers
                .iter()
                .any(|allowed| allowed.eq_ignore_ascii_case(k))
        })
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Forward {
        headers,
        path: path.to_stored(),
    }
}
