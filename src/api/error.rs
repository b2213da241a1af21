//! The Lambda API's errors, in its wire format: the status code of the botocore model, the
//! type in `x-amzn-ErrorType`, and a body `{"Type": "User", "message": ...}` (the model names
//! the message member `Message` for some types and `message` for others).

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {message}")]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) kind: &'static str,
    pub(crate) message: String,
}

impl ApiError {
    /// 400 `InvalidParameterValueException`: a field is wrong (the message names it).
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            kind: "InvalidParameterValueException",
            message: message.into(),
        }
    }

    /// 404 `ResourceNotFoundException`.
    pub(crate) fn not_found(uuid: &str) -> Self {
        ApiError {
            status: StatusCode::NOT_FOUND,
            kind: "ResourceNotFoundException",
            message: format!("The resource you requested does not exist. (Service: Lambda, event source mapping {uuid})"),
        }
    }

    /// 409 `ResourceConflictException`: the mapping exists already.
    pub(crate) fn conflict(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::CONFLICT,
            kind: "ResourceConflictException",
            message: message.into(),
        }
    }

    /// 400 `ResourceInUseException`: the mapping is in the middle of another change.
    pub(crate) fn in_use(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            kind: "ResourceInUseException",
            message: message.into(),
        }
    }

    /// 500 `ServiceException`: esmd could not do it (the state store failed).
    pub(crate) fn service(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            kind: "ServiceException",
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let kind = if self.status.is_server_error() {
            "Service"
        } else {
            "User"
        };
        // The botocore model names the member `Message` for these two types and `message`
        // for the others.
        let member = match self.kind {
            "ResourceNotFoundException" | "ResourceInUseException" => "Message",
            _ => "message",
        };
        let mut body = serde_json::Map::new();
        body.insert("Type".into(), kind.into());
        body.insert(member.into(), self.message.into());
        let mut response = (self.status, axum::Json(body)).into_response();
        response
            .headers_mut()
            .insert("x-amzn-ErrorType", HeaderValue::from_static(self.kind));
        response
    }
}
