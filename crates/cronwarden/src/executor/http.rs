//! HTTP jobs: one request per run, its status deciding the outcome.

use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

use hmac::{Hmac, Mac};
use jiff::SignedDuration;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use sha2::Sha256;

use super::{Outcome, RunContext};
use crate::model::HttpAction;
use crate::secret::Redactor;

/// Header names a receiver reads to identify, deduplicate and authenticate a call.
pub mod headers {
    /// The job's name.
    pub const JOB: &str = "x-cronwarden-job";
    /// The run's id (differs between attempts).
    pub const RUN_ID: &str = "x-cronwarden-run-id";
    /// The instant the fire was due, RFC 3339.
    pub const SCHEDULED_AT: &str = "x-cronwarden-scheduled-at";
    /// 1 for the first attempt.
    pub const ATTEMPT: &str = "x-cronwarden-attempt";
    /// `{job}@{scheduled_at}`: the same for every attempt of one fire, so a receiver can
    /// drop a retry of a call it already handled.
    pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
    /// Unix seconds when the call was signed.
    pub const TIMESTAMP: &str = "x-cronwarden-timestamp";
    /// `v1=` and the hex HMAC-SHA256, under the job's `hmac_secret`, of
    /// `{timestamp}.{body}`.
    pub const SIGNATURE: &str = "x-cronwarden-signature";
}

/// The HMAC-SHA256 signature of a call, as sent in [`headers::SIGNATURE`].
pub fn signature(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// Runs [`HttpAction`]s over one shared client (connections are pooled across runs).
#[derive(Debug)]
pub struct HttpExecutor {
    client: OnceLock<reqwest::Client>,
    /// Bytes of the response body kept with the run.
    pub body_limit: usize,
}

impl Default for HttpExecutor {
    fn default() -> Self {
        HttpExecutor {
            client: OnceLock::new(),
            body_limit: 8 * 1024,
        }
    }
}

/// The longest `Retry-After` honoured: a server asking for more gets its retry a day later.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

impl HttpExecutor {
    fn client(&self) -> &reqwest::Client {
        self.client.get_or_init(|| {
            reqwest::Client::builder()
                .user_agent(concat!("cronwarden/", env!("CARGO_PKG_VERSION")))
                .build()
                .expect("the HTTP client's settings are valid")
        })
    }

    /// Makes the call for one run; secrets in `action` are already resolved.
    pub async fn execute(&self, action: &HttpAction, ctx: &RunContext) -> Outcome {
        self.execute_with(action, ctx, &Redactor::default()).await
    }

    /// Makes the call for one run, cutting the values `redactor` holds out of the response
    /// body as it is read, before the body is cut to [`HttpExecutor::body_limit`].
    pub async fn execute_with(
        &self,
        action: &HttpAction,
        ctx: &RunContext,
        redactor: &Redactor,
    ) -> Outcome {
        let request = match self.request(action, ctx) {
            Ok(request) => request,
            Err(e) => return Outcome::fatal(e),
        };
        let began = Instant::now();
        let response = tokio::select! {
            response = self.client().execute(request) => response,
            () = ctx.cancel.cancelled() => return Outcome::retryable("cancelled"),
        };
        let response = match response {
            Ok(response) => response,
            Err(e) => return Outcome::retryable(describe(&e, action)),
        };
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let mut output = format!(
            "{} {} -> {status} in {} ms\n",
            action.method.to_ascii_uppercase(),
            action.url,
            began.elapsed().as_millis()
        );
        for name in &action.keep_headers {
            for value in response.headers().get_all(name.as_str()) {
                output.push_str(&format!(
                    "{}: {}\n",
                    name.to_ascii_lowercase(),
                    String::from_utf8_lossy(value.as_bytes())
                ));
            }
        }
        let body = tokio::select! {
            body = read_bounded(response, self.body_limit, redactor) => body,
            () = ctx.cancel.cancelled() => return Outcome::retryable("cancelled"),
        };
        match body {
            Ok(body) if !body.is_empty() => {
                output.push('\n');
                output.push_str(&body);
            }
            Ok(_) => {}
            Err(e) => output.push_str(&format!("\n[the body could not be read: {e}]")),
        }
        let succeeded = if action.success_status.is_empty() {
            status.is_success()
        } else {
            action.success_status.contains(&status.as_u16())
        };
        if succeeded {
            return Outcome::Succeeded {
                output: Some(output),
                exit_code: None,
            };
        }
        let retryable = status == StatusCode::REQUEST_TIMEOUT
            || status == StatusCode::TOO_MANY_REQUESTS
            || status.is_server_error();
        Outcome::Failed {
            error: format!("HTTP {status}"),
            retryable,
            output: Some(output),
            exit_code: None,
            // Only these two statuses define Retry-After as "come back then".
            retry_after: match status {
                StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => retry_after,
                _ => None,
            },
        }
    }

    fn request(&self, action: &HttpAction, ctx: &RunContext) -> Result<reqwest::Request, String> {
        let method = Method::from_bytes(action.method.to_ascii_uppercase().as_bytes())
            .map_err(|_| format!("action.method: {:?} is not an HTTP method", action.method))?;
        let url = reqwest::Url::parse(&action.url)
            .map_err(|e| format!("action.url: {:?} is not a valid URL: {e}", action.url))?;
        let mut headers = HeaderMap::new();
        for (name, value) in &action.headers {
            let header = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("action.headers: {name:?} is not a valid header name"))?;
            let value = HeaderValue::from_str(value)
                .map_err(|_| format!("action.headers.{name}: not a valid header value"))?;
            headers.insert(header, value);
        }
        let scheduled_at = ctx.scheduled_at.to_string();
        let identity = [
            (headers::JOB, ctx.job.to_string()),
            (headers::RUN_ID, ctx.run_id.to_string()),
            (headers::SCHEDULED_AT, scheduled_at.clone()),
            (headers::ATTEMPT, ctx.attempt.to_string()),
            (
                headers::IDEMPOTENCY_KEY,
                format!("{}@{scheduled_at}", ctx.job),
            ),
        ];
        for (name, value) in identity {
            headers.insert(
                HeaderName::from_static(name),
                HeaderValue::from_str(&value).expect("names and instants are plain ASCII"),
            );
        }
        let body: Vec<u8> = match (&action.body, &action.json) {
            (Some(text), _) => {
                headers
                    .entry(CONTENT_TYPE)
                    .or_insert(HeaderValue::from_static("text/plain; charset=utf-8"));
                text.clone().into_bytes()
            }
            (None, Some(json)) => {
                headers
                    .entry(CONTENT_TYPE)
                    .or_insert(HeaderValue::from_static("application/json"));
                serde_json::to_vec(json).expect("a JSON value serializes")
            }
            (None, None) => Vec::new(),
        };
        if let Some(secret) = &action.hmac_secret {
            let timestamp = jiff::Timestamp::now().as_second().to_string();
            let signed = signature(secret.as_bytes(), &timestamp, &body);
            headers.insert(
                HeaderName::from_static(headers::TIMESTAMP),
                HeaderValue::from_str(&timestamp).expect("digits"),
            );
            headers.insert(
                HeaderName::from_static(headers::SIGNATURE),
                HeaderValue::from_str(&signed).expect("hex"),
            );
        }
        let mut builder = self
            .client()
            .request(method, url)
            .headers(headers)
            .query(&action.query);
        if !body.is_empty() {
            builder = builder.body(body);
        }
        if let Some(timeout) = action.timeout {
            builder = builder.timeout(timeout.unsigned_abs());
        }
        builder
            .build()
            .map_err(|e| format!("the request cannot be built: {e}"))
    }
}

/// A network error, with its causes (reqwest's own message is often only "error sending
/// request").
fn describe(e: &reqwest::Error, action: &HttpAction) -> String {
    if e.is_timeout() {
        return match action.timeout {
            Some(t) => format!("the request timed out after {t:#}"),
            None => "the request timed out".to_owned(),
        };
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// `Retry-After` as seconds or an HTTP date, bounded.
fn retry_after(headers: &HeaderMap) -> Option<SignedDuration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let wait = match value.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => httpdate::parse_http_date(value)
            .ok()?
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    };
    SignedDuration::try_from(wait.min(MAX_RETRY_AFTER)).ok()
}

/// The start of the body, redacted, at most `limit` bytes of it, as text; the rest is not read.
async fn read_bounded(
    mut response: reqwest::Response,
    limit: usize,
    redactor: &Redactor,
) -> Result<String, String> {
    let mut redacting = redactor.stream();
    let mut kept = Vec::new();
    let mut more = false;
    // Redacted before it is cut: a secret that the limit falls in is cut out whole. Reading
    // goes on until more than `limit` redacted bytes are decided (or the body ends).
    while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
        redacting.push(&chunk, &mut kept);
        if kept.len() > limit {
            more = true;
            break;
        }
    }
    if !more {
        redacting.finish(&mut kept);
        more = kept.len() > limit;
    }
    kept.truncate(limit);
    let mut text = String::from_utf8_lossy(&kept).into_owned();
    if more {
        text.push_str("\n[... the rest of the body was not kept]");
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_takes_seconds_or_a_date() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&headers), Some(SignedDuration::from_secs(7)));
        let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(120));
        headers.insert(RETRY_AFTER, HeaderValue::from_str(&later).unwrap());
        let wait = retry_after(&headers).unwrap();
        assert!(
            wait > SignedDuration::from_secs(110) && wait <= SignedDuration::from_secs(120),
            "{wait:?}"
        );
        headers.insert(RETRY_AFTER, HeaderValue::from_static("99999999"));
        assert_eq!(retry_after(&headers), Some(SignedDuration::from_hours(24)));
        headers.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn the_signature_covers_timestamp_and_body() {
        let a = signature(b"k", "100", b"{}");
        assert!(a.starts_with("v1=") && a.len() == 3 + 64, "{a}");
        assert_ne!(a, signature(b"k", "101", b"{}"));
        assert_ne!(a, signature(b"k", "100", b"{ }"));
        assert_ne!(a, signature(b"j", "100", b"{}"));
    }
}
