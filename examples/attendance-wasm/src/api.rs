//! JSON errors, in the shape the native HR SaaS modules and the base use.

use koupleless_module::{
    KeyValueError,
    axum::{
        Json,
        extract::rejection::{JsonRejection, PathRejection, QueryRejection},
        http::StatusCode,
        response::{IntoResponse, Response},
    },
};
use serde_json::json;

/// An error answered as `{"error": ..., "detail": ...}`.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    error: String,
    detail: Option<String>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, error: impl Into<String>) -> Self {
        Self {
            status,
            error: error.into(),
            detail: None,
        }
    }

    pub(crate) fn bad_request(error: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, error)
    }

    pub(crate) fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = match self.detail {
            Some(detail) => json!({ "error": self.error, "detail": detail }),
            None => json!({ "error": self.error }),
        };
        (self.status, Json(body)).into_response()
    }
}

// axum answers extractor failures in plain text; these keep every error of the API in JSON.

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        Self::bad_request("invalid path").with_detail(rejection.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::bad_request("invalid query string").with_detail(rejection.body_text())
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        Self::new(rejection.status(), "invalid JSON body").with_detail(rejection.body_text())
    }
}

impl From<KeyValueError> for ApiError {
    fn from(err: KeyValueError) -> Self {
        // The base's store failing is not the caller's fault; a retry may succeed.
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "check-in store unavailable",
        )
        .with_detail(err.to_string())
    }
}
