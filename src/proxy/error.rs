//! The one error type at the HTTP edge: a status, a machine-readable code,
//! a message, and the field at fault when there is one. It renders as the
//! JSON error body the client's API expects (OpenAI's `{error: {message,
//! type, param, code}}` or Ollama's `{error: "..."}`).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::breaker::BreakerOpen;
use crate::provider::{ChatApi, ErrorKind, ProviderError};

#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    /// Short machine-readable code, e.g. `invalid_request`, `upstream_timeout`.
    pub code: &'static str,
    pub message: String,
    /// The request field at fault.
    pub field: Option<String>,
    /// The client API the body is written for.
    pub api: ChatApi,
    /// Sent as `Retry-After` (whole seconds, at least 1).
    pub retry_after: Option<std::time::Duration>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.field {
            Some(field) => write!(f, "{field}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for ApiError {}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
            api: ChatApi::OpenAi,
            retry_after: None,
        }
    }

    /// A 400 naming the request field at fault.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError {
            field: Some(field.into()),
            ..ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", message)
        }
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, code, message)
    }

    pub fn too_large(limit: usize) -> ApiError {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the request body is larger than server.max_body_bytes ({limit} bytes)"),
        )
    }

    pub fn request_timeout(ms: u64) -> ApiError {
        ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "timeout",
            format!("no response within server.request_timeout_ms ({ms} ms)"),
        )
    }

    /// A 502 about the upstream's answer (unreadable, undecodable).
    pub fn bad_gateway(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_GATEWAY, "upstream_error", message)
    }

    /// The 503 of an upstream whose circuit breaker is open.
    pub fn breaker_open(upstream: &str, open: &BreakerOpen) -> ApiError {
        ApiError {
            retry_after: Some(open.retry_after),
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "upstream_unavailable",
                format!("upstream `{upstream}` is failing; circuit breaker open ({open})"),
            )
        }
    }

    pub fn in_api(mut self, api: ChatApi) -> ApiError {
        self.api = api;
        self
    }

    /// The client-facing error of an upstream failure: 504 on a timeout,
    /// the upstream's status for its 4xx (the request was at fault), 502
    /// otherwise. The message names the provider, never its key.
    pub fn upstream(err: &ProviderError) -> ApiError {
        let (status, code) = match err.kind() {
            ErrorKind::Timeout => (StatusCode::GATEWAY_TIMEOUT, "upstream_timeout"),
            ErrorKind::Status4xx => (
                err.status()
                    .and_then(|s| StatusCode::from_u16(s).ok())
                    .unwrap_or(StatusCode::BAD_GATEWAY),
                "upstream_rejected",
            ),
            ErrorKind::Config => (StatusCode::INTERNAL_SERVER_ERROR, "config"),
            ErrorKind::Connect => (StatusCode::BAD_GATEWAY, "upstream_unreachable"),
            _ => (StatusCode::BAD_GATEWAY, "upstream_error"),
        };
        ApiError::new(status, code, err.to_string())
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        if self.api.is_ollama() {
            return json!({ "error": self.to_string() });
        }
        json!({"error": {
            "message": self.to_string(),
            "type": if self.status.is_server_error() { "server_error" } else { "invalid_request_error" },
            "param": self.field,
            "code": self.code,
        }})
    }
}

/// A complete JSON response in one buffer, with Content-Length (one write).
pub fn json_response(status: StatusCode, body: impl Into<bytes::Bytes>) -> Response {
    let mut r = (status, body.into()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = json_response(self.status, self.body().to_string().into_bytes());
        if let Some(after) = self.retry_after {
            let secs = after.as_secs_f64().ceil().max(1.0) as u64;
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        r
    }
}
