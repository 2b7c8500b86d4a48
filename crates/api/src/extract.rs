//! Request parsing at the edge: bounded JSON bodies with field-naming errors,
//! pagination and time parameters.

use crate::AppState;
use crate::error::ApiError;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use switchyard_core::timefmt::parse_rfc3339_ms;
use switchyard_store::{Order, PageRequest};

/// A JSON body of at most the configured size, parsed into `T`.
pub struct Body<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let limit = state.max_body_bytes;
        let bytes = read_body(req.into_body(), limit)
            .await
            .map_err(|e| e.into_api_error(&format!("the limit of {limit} bytes")))?;
        parse_json(&bytes).map(Body)
    }
}

/// Why a request body could not be read.
pub enum BodyError {
    /// Longer than the limit.
    TooLarge,
    /// Cut off, or malformed on the wire (a bad chunk size); the text says how.
    Unreadable(String),
}

impl BodyError {
    /// 413 for a body over `limit` (e.g. "this source's limit of 1024
    /// bytes"), 400 `invalid_body` for one that could not be read.
    pub fn into_api_error(self, limit: &str) -> ApiError {
        match self {
            BodyError::TooLarge => ApiError::http(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("request body exceeds {limit}"),
            ),
            BodyError::Unreadable(reason) => ApiError::http(
                StatusCode::BAD_REQUEST,
                "invalid_body",
                format!("the request body could not be read: {reason}"),
            ),
        }
    }

    /// The reason counted in an ingest source's stats.
    pub fn counted(&self) -> &'static str {
        match self {
            BodyError::TooLarge => "body too large",
            BodyError::Unreadable(_) => "body unreadable",
        }
    }
}

/// Reads a whole body of at most `limit` bytes.
pub async fn read_body(body: axum::body::Body, limit: usize) -> Result<bytes::Bytes, BodyError> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(inner) = cause {
            if inner.is::<http_body_util::LengthLimitError>() {
                return BodyError::TooLarge;
            }
            cause = inner.source();
        }
        BodyError::Unreadable(switchyard_core::error_chain(&e))
    })
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        // An empty body is acceptable exactly where the body is optional.
        return serde_json::from_slice(b"null").map_err(|_| ApiError::Validation {
            loc: vec!["body".into()],
            msg: "request body must be a JSON object".into(),
        });
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            ApiError::Validation {
                loc: vec!["body".into()],
                msg: format!("malformed JSON: {inner}"),
            }
        } else {
            let field = if path == "." { String::new() } else { path };
            ApiError::field(&field, inner.to_string())
        }
    })?;
    de.end().map_err(|e| ApiError::Validation {
        loc: vec!["body".into()],
        msg: format!("malformed JSON: {e}"),
    })?;
    Ok(value)
}

/// Path parameters parsed into `T`, in place of axum's `Path`, whose
/// rejections are plain text: a parameter that cannot be read (`%ff` is not
/// UTF-8 once decoded) is a 400 JSON error naming it. Failures that are
/// this program's fault (a route and its extractor disagree) are 500s.
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        use axum::extract::path::ErrorKind;
        use axum::extract::rejection::PathRejection;
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Path(value)),
            Err(PathRejection::FailedToDeserializePathParams(e)) => {
                let status = e.status();
                let detail = match e.kind() {
                    ErrorKind::InvalidUtf8InPathParam { key } => {
                        format!("path parameter '{key}' is not valid UTF-8 once percent-decoded")
                    }
                    _ => e.body_text(),
                };
                Err(path_error(status, detail))
            }
            Err(other) => Err(path_error(other.status(), other.body_text())),
        }
    }
}

fn path_error(status: StatusCode, detail: String) -> ApiError {
    if status.is_server_error() {
        tracing::error!(%detail, "path parameters do not fit their route");
        ApiError::http(status, "internal_error", "internal error")
    } else {
        ApiError::http(status, "invalid_path", detail)
    }
}

/// Query string parsed into `T`, with 422 naming the bad parameter.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let raw = parts.uri.query().unwrap_or("");
        let pairs: Vec<(String, String)> = form_pairs(raw);
        // Repeated keys (event_types=a&event_types=b) are folded into one
        // comma-separated value, which is how the SDKs send lists anyway.
        let mut map = serde_json::Map::new();
        for (k, v) in pairs {
            match map.get_mut(&k) {
                Some(serde_json::Value::String(existing)) => {
                    existing.push(',');
                    existing.push_str(&v);
                }
                _ => {
                    map.insert(k, serde_json::Value::String(v));
                }
            }
        }
        let value = serde_json::Value::Object(map);
        serde_path_to_error::deserialize(value)
            .map(Query)
            .map_err(|e| {
                let path = e.path().to_string();
                ApiError::query(&path, e.into_inner().to_string())
            })
    }
}

fn form_pairs(raw: &str) -> Vec<(String, String)> {
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let decoded = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .filter(|h| h.bytes().all(|c| c.is_ascii_hexdigit()))
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match decoded {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Pagination parameters of every listing. Values are read as text and
/// checked in [`PageQuery::page`], so a bad one is a 422 naming it.
#[derive(serde::Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Items per page, 1 to 250 (default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 250)]
    pub limit: Option<String>,
    /// The `iterator` of the previous page, to get the next one.
    pub iterator: Option<String>,
    /// The listing's order; each listing has its own default.
    #[param(inline, value_type = Option<Ordering>)]
    pub order: Option<String>,
}

/// The order of a listing.
#[derive(utoipa::ToSchema)]
#[expect(
    dead_code,
    reason = "only its schema is used: `order` is read as text, so a bad value gets an error naming it"
)]
#[schema(rename_all = "lowercase")]
pub enum Ordering {
    Ascending,
    Descending,
}

impl PageQuery {
    pub fn page(&self, default_order: Order) -> Result<PageRequest, ApiError> {
        let limit = match &self.limit {
            None => 50,
            Some(s) => s
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=250).contains(n))
                .ok_or_else(|| ApiError::query("limit", "must be an integer from 1 to 250"))?,
        };
        let order = match self.order.as_deref() {
            None => default_order,
            Some("ascending") => Order::Ascending,
            Some("descending") => Order::Descending,
            Some(_) => {
                return Err(ApiError::query(
                    "order",
                    "must be 'ascending' or 'descending'",
                ));
            }
        };
        Ok(PageRequest {
            limit,
            iterator: self.iterator.clone().filter(|s| !s.is_empty()),
            order,
        })
    }
}

pub fn time_param(name: &str, value: &Option<String>) -> Result<Option<u64>, ApiError> {
    value
        .as_deref()
        .map(|v| {
            parse_rfc3339_ms(v)
                .ok_or_else(|| ApiError::query(name, "must be an RFC 3339 timestamp"))
        })
        .transpose()
}

pub fn bool_param(name: &str, value: &Option<String>, default: bool) -> Result<bool, ApiError> {
    match value.as_deref() {
        None => Ok(default),
        Some("true") | Some("1") => Ok(true),
        Some("false") | Some("0") => Ok(false),
        Some(_) => Err(ApiError::query(name, "must be true or false")),
    }
}

pub fn list_param(value: &Option<String>) -> Option<Vec<String>> {
    value.as_ref().map(|v| {
        v.split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    })
}

/// Distinguishes an absent field (`None`) from an explicit `null` (`Some(None)`) in PATCH bodies.
pub fn double_option<'de, T, D>(de: D) -> Result<Option<Option<T>>, D::Error>
where
    T: serde::Deserialize<'de>,
    D: serde::Deserializer<'de>,
{
    serde::Deserialize::deserialize(de).map(Some)
}
