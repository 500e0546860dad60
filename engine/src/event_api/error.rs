//! The JSON error every endpoint answers with: `{"error": "...", "status": N}`,
//! plus `Retry-After` on 503, and `stored` (the ids of the events that were
//! stored) when a send failed part-way. A backend failure (5xx) is logged in full under
//! an error id and answered with that id only: backend text (queue URLs,
//! account ids, hosts) never reaches a client.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::backend::BackendError;

/// An HTTP error with a message that says what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The status code.
    pub status: StatusCode,
    /// The message shown to the client.
    pub message: String,
    /// Ids of the request's events that were stored although the request
    /// as a whole failed.
    pub stored: Option<Vec<String>>,
}

impl ApiError {
    /// An error with this status and message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            stored: None,
        }
    }

    /// This error, saying which of the request's events were stored anyway.
    pub fn with_stored(mut self, ids: Vec<String>) -> Self {
        self.stored = Some(ids);
        self
    }

    /// 400.
    pub fn bad_request(m: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, m)
    }
    /// 401.
    pub fn unauthorized(m: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, m)
    }
    /// 404.
    pub fn not_found(m: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, m)
    }
    /// 413.
    pub fn too_large(m: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, m)
    }
    /// 422.
    pub fn invalid(m: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, m)
    }
    /// 503 (answered with `Retry-After`).
    pub fn unavailable(m: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, m)
    }
}

impl ApiError {
    /// A 503 for a backend that cannot be reached: logged with an error id,
    /// which is all the client sees of it.
    pub fn backend_unavailable(what: &str, e: &dyn std::fmt::Display) -> Self {
        let id = ulid::Ulid::new();
        tracing::warn!(error_id = %id, error = %e, "{what}");
        Self::unavailable(format!(
            "{what}; retry shortly (error id {id}, in the event API's log)"
        ))
    }
}

impl From<BackendError> for ApiError {
    fn from(e: BackendError) -> Self {
        match e {
            BackendError::Unavailable(_) => {
                Self::backend_unavailable("the event store is unavailable", &e)
            }
            BackendError::TooLarge(_) => Self::too_large(e.to_string()),
            BackendError::Corrupt(_) | BackendError::Other(_) => {
                let id = ulid::Ulid::new();
                tracing::error!(error_id = %id, error = %e, "backend error");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("internal error (error id {id}, in the event API's log)"),
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = serde_json::json!({ "error": self.message, "status": self.status.as_u16() });
        if let Some(stored) = self.stored {
            body["stored"] = serde_json::json!(stored);
        }
        let mut resp = (self.status, Json(body)).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_failures_answer_an_error_id_not_backend_text() {
        let url = "https://sqs.us-east-1.amazonaws.com/123456789012/reference-events";
        for (e, status) in [
            (
                BackendError::Unavailable(format!("SendMessageBatch {url}: dispatch failure")),
                StatusCode::SERVICE_UNAVAILABLE,
            ),
            (
                BackendError::Other(format!("GetQueueAttributes {url}: AccessDenied")),
                StatusCode::INTERNAL_SERVER_ERROR,
            ),
        ] {
            let api = ApiError::from(e);
            assert_eq!(api.status, status);
            assert!(!api.message.contains("123456789012"), "{}", api.message);
            assert!(!api.message.contains("amazonaws"), "{}", api.message);
            assert!(api.message.contains("error id "), "{}", api.message);
        }
    }
}
