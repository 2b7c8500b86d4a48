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
        parse_json(&read_request_body(req, state).await?).map(Body)
    }
}

/// A message's JSON body: as [`Body`], except that strings inside its
/// `payload` (or `data`) may hold NUL, since payloads are stored as bytes.
pub struct MessageBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for MessageBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        parse_json_within(&read_request_body(req, state).await?, &["payload", "data"])
            .map(MessageBody)
    }
}

/// An API request's body, within the server's size limit.
async fn read_request_body(req: Request, state: &AppState) -> Result<bytes::Bytes, ApiError> {
    let limit = state.max_body_bytes;
    read_body(req.into_body(), limit)
        .await
        .map_err(|e| e.into_api_error(&format!("the limit of {limit} bytes")))
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

/// Parses a JSON request body into `T`; 422 naming the field for a value
/// that does not fit, or for text holding a NUL character (U+0000), which
/// PostgreSQL cannot store in text and no name, id or description needs.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    parse_json_within(bytes, &[])
}

/// As [`parse_json`], with NUL allowed in the strings under the top-level
/// fields `opaque` (payloads, kept as bytes).
fn parse_json_within<T: DeserializeOwned>(bytes: &[u8], opaque: &[&str]) -> Result<T, ApiError> {
    let value = parse_json_value(bytes)?;
    if has_nul_escape(bytes)
        && let Ok(doc) = serde_json::from_slice::<serde_json::Value>(bytes)
        && let Some(mut loc) = nul_location(&doc, opaque)
    {
        loc.insert(0, "body".into());
        return Err(ApiError::Validation {
            loc,
            msg: "must not contain a NUL character (U+0000)".into(),
        });
    }
    Ok(value)
}

/// Whether JSON text holds an escaped NUL (`\u0000`): the only way a JSON
/// string can carry one, since raw control bytes are not valid JSON.
fn has_nul_escape(bytes: &[u8]) -> bool {
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            if bytes[i + 1..].starts_with(b"u0000") {
                return true;
            }
            // Skip the escaped character, so `\\u0000` (text) is not one.
            i += 2;
        } else {
            i += 1;
        }
    }
    false
}

/// Where the first key or string holding NUL is, outside `opaque` fields.
fn nul_location(value: &serde_json::Value, opaque: &[&str]) -> Option<Vec<String>> {
    use serde_json::Value;
    match value {
        Value::String(s) => s.contains('\0').then(Vec::new),
        Value::Array(items) => items.iter().enumerate().find_map(|(i, v)| {
            let mut loc = nul_location(v, &[])?;
            loc.insert(0, i.to_string());
            Some(loc)
        }),
        Value::Object(map) => map.iter().find_map(|(k, v)| {
            if k.contains('\0') {
                return Some(vec![k.replace('\0', "\\u0000")]);
            }
            if opaque.contains(&k.as_str()) {
                return None;
            }
            let mut loc = nul_location(v, &[])?;
            loc.insert(0, k.clone());
            Some(loc)
        }),
        _ => None,
    }
}

fn parse_json_value<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
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
        // Nothing stored has a NUL in its id or name, and PostgreSQL could
        // not even look one up.
        if parts.uri.path().contains("%00") {
            return Err(path_error(
                StatusCode::BAD_REQUEST,
                "a path parameter contains a NUL character (%00)".into(),
            ));
        }
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
        if let Some((k, _)) = pairs
            .iter()
            .find(|(k, v)| k.contains('\0') || v.contains('\0'))
        {
            return Err(ApiError::query(
                &k.replace('\0', "%00"),
                "must not contain a NUL character (%00)",
            ));
        }
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
