//! Errors: the API's error responses (OpenAI's shape) and the server's own failures.

use core::fmt;

use hyper::StatusCode;
use serde_json::json;

use crate::engine::EngineError;

/// An error answered to a client as `{"error":{"message","type","param","code"}}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Human-readable message.
    pub message: String,
    /// OpenAI's error `type`.
    pub kind: &'static str,
    /// The request field at fault.
    pub param: Option<String>,
    /// A machine-readable code.
    pub code: Option<&'static str>,
    /// Seconds the client should wait before retrying (429, 503).
    pub retry_after: Option<u64>,
    /// The methods a path accepts (405).
    pub allow: Option<&'static str>,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            kind,
            param: None,
            code: None,
            retry_after: None,
            allow: None,
        }
    }

    /// 400 about field `param`.
    pub fn invalid(param: impl Into<String>, message: impl Into<String>) -> ApiError {
        let mut e = ApiError::new(StatusCode::BAD_REQUEST, "invalid_request_error", message);
        e.param = Some(param.into());
        e
    }

    /// 400 without a field.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
    }

    /// 404 for a model that is not served.
    pub fn model_not_found(model: &str) -> ApiError {
        let mut e = ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!("The model `{model}` does not exist or is not served here"),
        );
        e.param = Some("model".into());
        e.code = Some("model_not_found");
        e
    }

    /// 404 for an unknown route.
    pub fn route_not_found(method: &str, path: &str) -> ApiError {
        let mut e = ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!("Unknown request URL: {method} {path}"),
        );
        e.code = Some("unknown_url");
        e
    }

    /// 405.
    pub fn method_not_allowed(method: &str, path: &str) -> ApiError {
        let mut e = ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request_error",
            format!("Method {method} is not allowed on {path}"),
        );
        e.code = Some("method_not_allowed");
        e
    }

    /// 401.
    pub fn unauthorized() -> ApiError {
        let mut e = ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            "Invalid or missing API key: send `Authorization: Bearer <key>`",
        );
        e.code = Some("invalid_api_key");
        e
    }

    /// 413.
    pub fn too_large(limit: usize) -> ApiError {
        let mut e = ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            format!("The request body is larger than the limit of {limit} bytes"),
        );
        e.code = Some("request_too_large");
        e
    }

    /// 429.
    pub fn busy(message: impl Into<String>) -> ApiError {
        let mut e = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limit_error", message);
        e.code = Some("server_busy");
        e.retry_after = Some(1);
        e
    }

    /// 414.
    pub fn uri_too_long(len: usize, max: usize) -> ApiError {
        let mut e = ApiError::new(
            StatusCode::URI_TOO_LONG,
            "invalid_request_error",
            format!("The request URI has {len} bytes; at most {max} are accepted"),
        );
        e.code = Some("uri_too_long");
        e
    }

    /// 431: too many header fields.
    pub fn header_too_large(fields: usize, max: usize) -> ApiError {
        let mut e = ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "invalid_request_error",
            format!("The request has {fields} header fields; at most {max} are accepted"),
        );
        e.code = Some("header_too_large");
        e
    }

    /// 408: the body did not arrive in time.
    pub fn body_timeout(secs: u64) -> ApiError {
        let mut e = ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "invalid_request_error",
            format!("The request body was not received within {secs} s"),
        );
        e.code = Some("request_timeout");
        e
    }

    /// 503.
    pub fn unavailable(message: impl Into<String>) -> ApiError {
        let mut e = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable_error",
            message,
        );
        e.retry_after = Some(1);
        e
    }

    /// 500.
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", message)
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        json!({
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        })
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.message)
    }
}

impl std::error::Error for ApiError {}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> ApiError {
        match &e {
            EngineError::Unsupported { .. } => {
                let mut a = ApiError::invalid("model", e.to_string());
                a.code = Some("model_not_supported");
                a
            }
            EngineError::ContextExceeded { .. } => {
                let mut a = ApiError::invalid("messages", e.to_string());
                a.code = Some("context_length_exceeded");
                a
            }
            EngineError::InvalidInput { param, .. } => ApiError::invalid(*param, e.to_string()),
            EngineError::QueueFull { .. } => ApiError::busy(e.to_string()),
            EngineError::Unavailable | EngineError::Broken(_) => {
                ApiError::unavailable(e.to_string())
            }
            EngineError::Internal(_) => ApiError::internal(e.to_string()),
        }
    }
}

/// Why the server could not start or run.
#[derive(Debug)]
#[non_exhaustive]
pub enum ServerError {
    /// Binding or accepting on the listening socket failed.
    Io {
        /// What was being done.
        what: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A model could not be loaded.
    Load {
        /// The model's path or name.
        model: String,
        /// What went wrong.
        reason: String,
    },
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerError::Io { what, source } => write!(f, "{what}: {source}"),
            ServerError::Load { model, reason } => write!(f, "cannot load model {model}: {reason}"),
        }
    }
}

impl std::error::Error for ServerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ServerError::Io { source, .. } => Some(source),
            ServerError::Load { .. } => None,
        }
    }
}
