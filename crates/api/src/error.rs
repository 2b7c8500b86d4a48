//! API errors: every failure leaves as a status code and a JSON body in the
//! shapes the Svix SDKs parse (`{code, detail}`, or `{detail: [..]}` for 422).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use switchyard_engine::EngineError;
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
            EngineError::Store(s) => s.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            Self::Http {
                status,
                code,
                detail,
            } => (status, Json(json!({ "code": code, "detail": detail }))).into_response(),
            Self::Validation { loc, msg } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(json!({
                    "code": "validation",
                    "detail": [{ "loc": loc, "msg": msg, "type": "value_error" }]
                })),
            )
                .into_response(),
        }
    }
}
