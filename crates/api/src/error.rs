//! API errors: every failure leaves as a status code and a JSON body in the
//! shapes the Svix SDKs parse (`{code, detail}`, or `{detail: [..]}` for 422).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use switchyard_engine::EngineError;
use switchyard_engine::access::TokenRefusal;
use switchyard_store::StoreError;

#[derive(Debug)]
pub enum ApiError {
    /// 4xx/5xx with a machine code and a human detail.
    Http {
        status: StatusCode,
        code: &'static str,
        detail: String,
    },
    /// 422 naming the offending field.
    Validation { loc: Vec<String>, msg: String },
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn not_found(what: &str) -> Self {
        Self::Http {
            status: StatusCode::NOT_FOUND,
            code: "not_found",
            detail: format!("{what} not found"),
        }
    }

    pub fn field(field: &str, msg: impl Into<String>) -> Self {
        let mut loc = vec!["body".to_string()];
        loc.extend(
            field
                .split('.')
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
        );
        Self::Validation {
            loc,
            msg: msg.into(),
        }
    }

    pub fn query(field: &str, msg: impl Into<String>) -> Self {
        Self::Validation {
            loc: vec!["query".into(), field.into()],
            msg: msg.into(),
        }
    }

    pub fn http(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self::Http {
            status,
            code,
            detail: detail.into(),
        }
    }

    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::http(StatusCode::CONFLICT, "conflict", detail)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(what) => Self::conflict(format!("{what} already exists")),
            StoreError::NotFound(what) => Self::not_found(&what),
            StoreError::Unrepresentable(reason) => {
                tracing::debug!(error = %reason, "value refused by the database");
                Self::http(
                    StatusCode::BAD_REQUEST,
                    "invalid_text",
                    "a value in the request cannot be stored (text holding a NUL character, U+0000)",
                )
            }
            StoreError::Unavailable(reason) => {
                tracing::warn!(error = %reason, "database unavailable");
                Self::http(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "database_unavailable",
                    "the database is unavailable; nothing was stored, retry later",
                )
            }
            other => {
                tracing::error!(error = %other, "store error");
                Self::http(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal_error",
                    "internal error",
                )
            }
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::NotFound(what) => Self::not_found(what),
            EngineError::Invalid { field, message } => Self::field(&field, message),
            EngineError::InvalidAt { loc, message } => Self::Validation {
                loc: std::iter::once("body".to_owned()).chain(loc).collect(),
                msg: message,
            },
            EngineError::Conflict(detail) => Self::conflict(detail),
            EngineError::Unauthorized(refusal) => Self::http(
                StatusCode::UNAUTHORIZED,
                "authentication_failed",
                match refusal {
                    TokenRefusal::Unknown => "invalid token",
                    TokenRefusal::Expired => "the token has expired or was revoked",
                },
            ),
            EngineError::Forbidden(detail) => {
                Self::http(StatusCode::FORBIDDEN, "forbidden", detail)
            }
            EngineError::Store(s) => s.into(),
        }
    }
}

/// The body of every error but a validation error (`HttpError` in the
/// Svix API): a machine code such as `not_found` and a sentence for people.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = HttpError)]
pub struct HttpErrorOut {
    pub code: String,
    pub detail: String,
}

/// The body of a 422: which part of the request was refused and why
/// (`HTTPValidationError` in the Svix API).
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = HTTPValidationError)]
pub struct ValidationErrorOut {
    /// Always `validation`.
    pub code: String,
    /// One entry per refused value.
    pub detail: Vec<ValidationErrorItem>,
}

/// One refused value of a 422.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = ValidationError)]
pub struct ValidationErrorItem {
    /// Where the value is: `body` or `query` first, then field names
    /// (`["body", "eventType"]`, `["query", "limit"]`).
    pub loc: Vec<String>,
    pub msg: String,
    /// Always `value_error`.
    #[serde(rename = "type")]
    pub kind: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            Self::Http {
                status,
                code,
                detail,
            } => (
                status,
                Json(HttpErrorOut {
                    code: code.to_owned(),
                    detail,
                }),
            )
                .into_response(),
            Self::Validation { loc, msg } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(ValidationErrorOut {
                    code: "validation".to_owned(),
                    detail: vec![ValidationErrorItem {
                        loc,
                        msg,
                        kind: "value_error".to_owned(),
                    }],
                }),
            )
                .into_response(),
        }
    }
}
