//! Every error the API returns is `{"error": {"code", "message"}}` with a fitting
//! status; `JsonBody` turns body problems into such errors (400 malformed JSON, 413
//! too large, 422 well-formed but wrong shape).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use crate::store::StoreError;

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `invalid_json`, `empty_text`, `unknown_collection`.
    pub code: String,
    pub message: String,
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into(), retry_after: None }
    }

    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    pub fn busy(limit: usize) -> Self {
        ApiError {
            retry_after: Some(1),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "busy",
                format!("the server is handling its maximum of {limit} requests; retry after 1 second"),
            )
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody { error: ErrorDetail { code: self.code.to_string(), message: self.message } };
        let mut resp = (self.status, Json(body)).into_response();
        if let Some(s) = self.retry_after {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        resp
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let message = e.to_string();
        match e {
            StoreError::NoSuchCollection(_) => Self::not_found("unknown_collection", message),
            StoreError::BadName(_) => Self::new(StatusCode::BAD_REQUEST, "invalid_collection_name", message),
            StoreError::ModelMismatch { .. } => Self::new(StatusCode::CONFLICT, "model_mismatch", message),
            StoreError::Locked(_) | StoreError::Io(_) | StoreError::File { .. } | StoreError::Backend(_) => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", message)
            }
            StoreError::BadPayload(_) => Self::new(StatusCode::INTERNAL_SERVER_ERROR, "store_corrupt", message),
            StoreError::BadFilter(_) => Self::unprocessable("invalid_filter", message),
            StoreError::BadImport(_) => Self::unprocessable("invalid_import", message),
        }
    }
}

impl From<crate::Error> for ApiError {
    fn from(e: crate::Error) -> Self {
        match e {
            crate::Error::Store(s) => s.into(),
            crate::Error::Input(m) => Self::unprocessable("invalid_input", m),
            other => Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", other.to_string()),
        }
    }
}

/// A JSON request body with API-shaped errors.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<Arc<AppState>> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Arc<AppState>) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                    format!("the request body is larger than the limit of {} bytes (--max-body)", state.cfg.max_body),
                )
            } else {
                ApiError::new(StatusCode::BAD_REQUEST, "unreadable_body", e.body_text())
            }
        })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", "the request body is empty"));
        }
        if std::str::from_utf8(&bytes).is_err() {
            return Err(ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", "the request body is not valid UTF-8"));
        }
        serde_json::from_slice(&bytes).map(JsonBody).map_err(|e| match e.classify() {
            serde_json::error::Category::Data => ApiError::unprocessable("invalid_request", e.to_string()),
            _ => ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", format!("malformed JSON: {e}")),
        })
    }
}
