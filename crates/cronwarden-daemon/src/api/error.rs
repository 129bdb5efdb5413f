//! Errors as `application/problem+json` (RFC 9457): a status, a title, a detail a person can
//! act on, and for invalid input the field at fault.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use cronwarden::scheduler::SchedulerError;
use cronwarden::store::StoreError;
use serde::Serialize;
use utoipa::ToSchema;

/// A problem document.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// The HTTP status.
    pub status: u16,
    /// A short summary of the kind of problem.
    pub title: String,
    /// What went wrong here, and how to fix it.
    pub detail: String,
    /// The input field at fault, for a 400.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// An error a handler returns.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    detail: String,
    field: Option<String>,
    /// Seconds, for a `Retry-After` header.
    retry_after: Option<u64>,
}

/// The largest request body the API reads: a job definition at its largest (see
/// `cronwarden::model::limits`) fits, with room for JSON's escapes.
pub const MAX_REQUEST_BODY: usize = 1024 * 1024;

impl ApiError {
    fn new(status: StatusCode, detail: impl Into<String>) -> ApiError {
        ApiError {
            status,
            detail: detail.into(),
            field: None,
            retry_after: None,
        }
    }

    /// 401: no valid token.
    pub fn unauthorized(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, detail)
    }

    /// 403: the token's role is not enough.
    pub fn forbidden(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, detail)
    }

    /// 404.
    pub fn not_found(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, detail)
    }

    /// 409.
    pub fn conflict(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, detail)
    }

    /// 400, naming the field.
    pub fn invalid(field: impl Into<String>, detail: impl Into<String>) -> ApiError {
        ApiError {
            field: Some(field.into()),
            ..ApiError::new(StatusCode::BAD_REQUEST, detail)
        }
    }

    /// 413: the request body is larger than [`MAX_REQUEST_BODY`].
    pub fn too_large() -> ApiError {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the request body is larger than {} KiB, the most the API takes",
                MAX_REQUEST_BODY / 1024
            ),
        )
    }

    /// 429: too many failed authentications from this address; `retry_after` in seconds.
    pub fn too_many_failures(retry_after: u64) -> ApiError {
        ApiError {
            retry_after: Some(retry_after),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "too many requests with an invalid token from this address; try again in \
                     {retry_after} s (a valid token is still accepted)"
                ),
            )
        }
    }

    /// 503 or 500 from the store: its message, which names no secret.
    pub fn store(e: StoreError) -> ApiError {
        tracing::error!(error = %e, "store error while serving a request");
        match e {
            StoreError::Conflict(detail) => ApiError::new(StatusCode::CONFLICT, detail),
            StoreError::Database(detail) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the store is unavailable: {detail}"),
            ),
            StoreError::Corrupt(detail) => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("a stored record could not be read: {detail}"),
            ),
        }
    }

    /// From the scheduler's API.
    pub fn scheduler(e: SchedulerError) -> ApiError {
        match e {
            SchedulerError::UnknownJob(name) => {
                ApiError::not_found(format!("no job is named {name:?}"))
            }
            SchedulerError::Invalid(e) => ApiError::invalid(e.field.clone(), e.to_string()),
            SchedulerError::Store(e) => ApiError::store(e),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let problem = Problem {
            status: self.status.as_u16(),
            title: self.status.canonical_reason().unwrap_or("Error").to_owned(),
            detail: self.detail,
            field: self.field,
        };
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response = (
            self.status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            body,
        )
            .into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, seconds.into());
        }
        response
    }
}

/// The request body, whole: one past [`MAX_REQUEST_BODY`] is answered 413 as a problem, not
/// as axum's plain text.
pub struct Body(pub axum::body::Bytes);

impl<S: Send + Sync> axum::extract::FromRequest<S> for Body {
    type Rejection = ApiError;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Body, ApiError> {
        axum::body::Bytes::from_request(request, state)
            .await
            .map(Body)
            .map_err(|e| body_rejection(e.status(), e.body_text(), "body"))
    }
}

/// A body that could not be read: too large (413), or not what `field` needs (400).
pub fn body_rejection(status: StatusCode, text: String, field: &str) -> ApiError {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::too_large()
    } else {
        ApiError::invalid(field, text)
    }
}

/// `axum::extract::Query`, with a malformed query string answered as a problem naming the
/// query, not as axum's plain-text 400.
pub struct Query<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for Query<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Query(q.0))
            .map_err(|e| ApiError::invalid("query", e.body_text()))
    }
}

/// `axum::extract::Path`, with a malformed path parameter (an id that is not a number)
/// answered as a problem.
pub struct Path<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for Path<T>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Path(p.0))
            .map_err(|e| ApiError::invalid("path", e.body_text()))
    }
}
