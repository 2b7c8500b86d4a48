//! HTTP interface: the Svix-compatible `/api/v1` routers, bearer auth,
//! idempotency for POSTs, health and the OpenAPI document.

mod access;
mod error;
mod extract;
mod ingest;
mod openapi;
pub(crate) mod v1;

pub use error::{ApiError, ApiResult};

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use subtle::ConstantTimeEq;
use switchyard_engine::Engine;
use switchyard_engine::access::{Action, Denied, Grant};
use switchyard_store::StoredResponse;
use tower_http::catch_panic::CatchPanicLayer;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

#[derive(Clone)]
pub struct AppState {
    pub engine: Arc<Engine>,
    /// SHA-256 of the admin token; the token itself is never stored.
    pub admin_token_sha256: [u8; 32],
    pub max_body_bytes: usize,
    /// Where providers reach this server (`https://hooks.example.com`);
    /// `None`: the address the request was sent to.
    pub public_url: Option<Arc<str>>,
}

pub use switchyard_engine::admin::{generate_token, token_hash};

/// Trims a trailing slash so `/api/v1/app/` routes like `/api/v1/app`, except
/// on the provider-facing ingest route, whose path suffix is passed on to
/// destinations exactly as the provider sent it. Applied before routing.
pub fn normalize_path(mut req: Request) -> Request {
    let path = req.uri().path();
    let provider_path = path.starts_with("/ingest/") && !path.starts_with("/ingest/api/");
    if path.len() <= 1 || !path.ends_with('/') || provider_path {
        return req;
    }
    let trimmed = path.trim_end_matches('/');
    let trimmed = if trimmed.is_empty() { "/" } else { trimmed };
    let rebuilt = match req.uri().query() {
        Some(q) => format!("{trimmed}?{q}"),
        None => trimmed.to_owned(),
    };
    if let Ok(uri) = rebuilt.parse() {
        *req.uri_mut() = uri;
    }
    req
}

/// The whole HTTP application.
pub fn router(state: AppState) -> Router {
    let (authed, document) = routes(state.clone());
    let document = bytes::Bytes::from(serde_json::to_vec(&document).unwrap_or_else(|e| {
        tracing::error!(error = %e, "the OpenAPI document could not be written");
        b"{}".to_vec()
    }));
    let routes = Router::new()
        .route(
            "/api/v1/openapi.json",
            axum::routing::get(move || openapi_json(document.clone())),
        )
        .merge(authed)
        .method_not_allowed_fallback(|| async {
            ApiError::http(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this method is not allowed on this path",
            )
        })
        .fallback(|| async { ApiError::not_found("route") });
    with_json_errors(routes).with_state(state)
}

/// Every documented route with its middleware, and the OpenAPI document
/// built from the same handlers.
fn routes(state: AppState) -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (authed, mut authed_doc) = v1::router()
        .merge(ingest::api_router())
        .layer(middleware::from_fn_with_state(state.clone(), idempotency))
        .merge(v1::messages_router())
        .merge(v1::auth_router())
        .layer(middleware::from_fn_with_state(state, authenticate))
        .split_for_parts();
    openapi::require_token(&mut authed_doc);
    let (public, public_doc) = OpenApiRouter::with_openapi(openapi::base())
        .routes(routes!(health, health_head))
        .merge(ingest::public_router())
        .split_for_parts();
    let mut doc = public_doc;
    doc.merge(authed_doc);
    openapi::add_shared_parts(&mut doc);
    openapi::add_links(&mut doc);
    (public.merge(authed), doc)
}

/// The OpenAPI 3.1 document of this API.
async fn openapi_json(document: bytes::Bytes) -> Response {
    let mut response = document.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// The outermost layers of every route: errors in another form become the
/// JSON error body, and a panicking handler answers a JSON 500.
fn with_json_errors<S: Clone + Send + Sync + 'static>(routes: Router<S>) -> Router<S> {
    routes
        .layer(middleware::map_response(json_errors))
        .layer(CatchPanicLayer::custom(panic_response))
}

/// The largest plain-text error body carried over into a JSON `detail`.
const MAX_ERROR_TEXT: usize = 1024;

/// Every error leaves as the JSON body of [`ApiError`]: anything that
/// answered a 4xx/5xx in another form (a rejection from an extractor or
/// from axum's own routing) is rewritten here, keeping its status and its
/// text as the `detail`. Handlers' own errors are JSON already and pass.
async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, MAX_ERROR_TEXT)
        .await
        .ok()
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_owned());
    let code = match status {
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        s if s.is_server_error() => "internal_error",
        _ => "bad_request",
    };
    let mut rewritten = ApiError::http(status, code, text).into_response();
    // Headers such as Allow (405) or Retry-After stay; the body's own go.
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            rewritten.headers_mut().append(name, value.clone());
        }
    }
    rewritten
}

/// A panicking handler answers a JSON 500 instead of dropping the
/// connection; the panic message is logged, never sent.
fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("non-text panic payload");
    tracing::error!(panic = message, "request handler panicked");
    ApiError::http(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal_error",
        "internal error",
    )
    .into_response()
}

/// Health check.
///
/// 204 while the database answers.
#[utoipa::path(get, path = "/api/v1/health", operation_id = "v1.health.get",
    responses((status = 204, description = "Healthy")))]
async fn health(State(state): State<AppState>) -> Response {
    match state.engine.ping().await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// Health check without a body.
#[utoipa::path(head, path = "/api/v1/health", operation_id = "v1.health.head",
    responses((status = 204, description = "Healthy")))]
async fn health_head(state: State<AppState>) -> Response {
    health(state).await
}

/// The admin token from `Authorization: Bearer <token>` (scheme in any case,
/// RFC 9110 §11.1), or a bare `<token>` as some clients send it.
fn presented_token(value: &str) -> Option<&str> {
    let value = value.trim();
    if let Some(token) = switchyard_core::verify::authorization_credentials(value, "Bearer") {
        return Some(token);
    }
    // A bare token has no space; anything else is another scheme.
    (!value.is_empty() && !value.contains([' ', '\t'])).then_some(value)
}

async fn authenticate(State(state): State<AppState>, req: Request, next: Next) -> Response {
    // Two credentials are ambiguous: proxies and servers differ on which
    // one counts, so neither is taken.
    if req.headers().get_all(header::AUTHORIZATION).iter().count() > 1 {
        return refuse(ApiError::http(
            StatusCode::UNAUTHORIZED,
            "authentication_failed",
            "send one Authorization header",
        ));
    }
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return refuse(ApiError::http(
            StatusCode::UNAUTHORIZED,
            "authentication_failed",
            "missing Authorization: Bearer <token> header",
        ));
    };
    let Some(token) = value.to_str().ok().and_then(presented_token) else {
        return refuse(ApiError::http(
            StatusCode::UNAUTHORIZED,
            "authentication_failed",
            "the Authorization header must be 'Bearer <token>'",
        ));
    };
    let token = token.to_owned();
    let mut req = req;
    if bool::from(token_hash(&token).ct_eq(&state.admin_token_sha256)) {
        req.extensions_mut().insert(Grant::Admin);
        return next.run(req).await;
    }
    let grant = match state.engine.grant_for(&token).await {
        Ok(grant) => grant,
        Err(e) => return refuse(ApiError::from(e)),
    };
    let template = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_default();
    let action = access::action_of(req.method(), &template);
    let app_key = access::app_key_of(&template, req.uri().path());
    if let Err(refused) = authorize(&state, &grant, action, app_key).await {
        return refuse(refused);
    }
    req.extensions_mut().insert(grant);
    next.run(req).await
}

/// A refused request's answer. The body of a refused request is left
/// unread, so the connection cannot serve another request: saying so lets
/// the client open a new one instead of sending its next request into a
/// connection the server is closing.
fn refuse(error: ApiError) -> Response {
    let mut response = error.into_response();
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// Whether `grant` may do `action` on the application the route names by
/// `app_key` (see [`access`] for the route table and
/// `switchyard_engine::access` for the rule).
async fn authorize(
    state: &AppState,
    grant: &Grant,
    action: Action,
    app_key: Option<String>,
) -> Result<(), ApiError> {
    // Only a grant limited to one application needs to know which one the
    // route names; a key that names none names no one's.
    let app = match (grant, app_key) {
        (Grant::Token(t), Some(key)) if t.app_id.is_some() => {
            state.engine.app(&key).await.ok().map(|a| a.id)
        }
        _ => None,
    };
    grant.allows(action, app.as_ref()).map_err(|denied| {
        let detail = match (denied, grant) {
            (Denied::OtherApplication, Grant::Token(t)) => format!(
                "this token is limited to application {}",
                t.app_id
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default()
            ),
            (Denied::OtherApplication, Grant::Admin) => String::new(),
            (Denied::NotAllowed(why), _) => why.to_owned(),
        };
        ApiError::http(StatusCode::FORBIDDEN, "forbidden", detail)
    })
}

/// This server's base URL as the client sees it: the configured public URL,
/// or the request's forwarded or direct host.
pub(crate) fn public_base(state: &AppState, headers: &axum::http::HeaderMap) -> String {
    if let Some(base) = &state.public_url {
        return base.to_string();
    }
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let scheme = get("x-forwarded-proto").unwrap_or("http");
    let host = get("x-forwarded-host")
        .or_else(|| get("host"))
        .unwrap_or("localhost");
    format!("{scheme}://{host}")
}

/// Replays the stored response of a POST repeated with the same
/// `Idempotency-Key`. Message routes are mounted outside this layer
/// (`v1::messages_router`): message creation records its key in the same
/// transaction as the message.
async fn idempotency(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let key = req
        .headers()
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let path = req.uri().path().trim_end_matches('/').to_owned();
    let Some(key) = key.filter(|_| req.method() == Method::POST) else {
        return next.run(req).await;
    };
    // A key is the caller's own: another token's repeat of it acts anew.
    let caller = match req.extensions().get::<Grant>() {
        Some(Grant::Token(t)) => t.id.to_string(),
        _ => "admin".to_owned(),
    };
    let scoped = format!("{caller}\n{path}\n{key}");
    match state.engine.idempotent_response(&scoped).await {
        Ok(Some(stored)) => return replay(stored),
        Ok(None) => {}
        Err(e) => return ApiError::from(e).into_response(),
    }
    let response = next.run(req).await;
    let status = response.status();
    if status.is_server_error() {
        return response;
    }
    let (parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 1 << 20).await else {
        return ApiError::http(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "response too large",
        )
        .into_response();
    };
    let stored = StoredResponse {
        status: status.as_u16(),
        body: String::from_utf8_lossy(&bytes).into_owned(),
        created_at: state.engine.now_ms(),
    };
    if let Err(e) = state.engine.save_idempotent_response(&scoped, stored).await {
        tracing::warn!(error = %e, "could not store idempotency record");
    }
    Response::from_parts(parts, axum::body::Body::from(bytes))
}

fn replay(stored: StoredResponse) -> Response {
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    let mut response = (status, stored.body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    async fn call(router: Router, uri: &str) -> (StatusCode, serde_json::Value) {
        let request = Request::builder()
            .uri(uri)
            .body(axum::body::Body::empty())
            .unwrap_or_default();
        let response = router.oneshot(request).await.unwrap_or_default();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap_or_default();
        (status, serde_json::from_slice(&bytes).unwrap_or_default())
    }

    #[tokio::test]
    async fn a_panicking_handler_answers_the_json_error_body() {
        let routes: Router = with_json_errors(Router::new().route(
            "/boom",
            axum::routing::get(|| async {
                if true {
                    panic!("secret detail");
                }
                "unreachable"
            }),
        ));
        let (status, body) = call(routes, "/boom").await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body["code"], "internal_error");
        assert!(!body.to_string().contains("secret detail"), "{body}");
    }

    #[tokio::test]
    async fn a_plain_text_rejection_becomes_the_json_error_body() {
        let routes: Router = with_json_errors(Router::new().route(
            "/plain",
            axum::routing::get(|| async { (StatusCode::BAD_REQUEST, "bad thing") }),
        ));
        let (status, body) = call(routes, "/plain").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["detail"], "bad thing", "{body}");
    }
}
