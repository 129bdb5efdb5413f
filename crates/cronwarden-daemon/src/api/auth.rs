//! Bearer tokens: how they are made, stored (as hashes) and checked, and the caller they
//! identify.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use cronwarden::model::Role;
use cronwarden::store::{NewAudit, Store};
use sha2::{Digest, Sha256};

use super::error::ApiError;
use super::failures::{Client, Counts, Failure, Report};
use super::AppState;

/// A new token: `cw_` and 64 hex digits (256 random bits from the OS).
pub fn new_token() -> Result<String, String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| format!("no randomness from the OS: {e}"))?;
    let mut token = String::from("cw_");
    for b in bytes {
        token.push_str(&format!("{b:02x}"));
    }
    Ok(token)
}

/// What the store keeps of a token: its SHA-256, in hex. A token has 256 random bits, so a
/// fast hash is enough (there is nothing to guess, unlike a password).
pub fn hash_token(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Who is calling: the token's name and role, and the client's address.
#[derive(Clone, Debug)]
pub struct Caller {
    /// The token's name (recorded as the actor in the audit log).
    pub name: String,
    /// What the token may do.
    pub role: Role,
    /// The client's address, when known.
    pub source: Option<String>,
}

impl Caller {
    /// `Ok` if the caller's role includes `needed`; a 403 naming both otherwise.
    pub fn require(&self, needed: Role) -> Result<(), ApiError> {
        if self.role >= needed {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "this needs the {needed} role; the token {:?} is a {}",
                self.name, self.role
            )))
        }
    }
}

impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Caller, ApiError> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        let source = peer.map(|ip| ip.to_string());
        // No header guesses nothing: it is not counted as a failure.
        let Some(header) = parts.headers.get(axum::http::header::AUTHORIZATION) else {
            return Err(ApiError::unauthorized(
                "an Authorization: Bearer token is required",
            ));
        };
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty());
        let Some(token) = token else {
            return Err(failed(
                state,
                peer,
                Failure::Malformed,
                "the Authorization header must be `Bearer <token>`",
            )
            .await);
        };
        // Timing-safe without a constant-time compare: what is looked up is the SHA-256 of
        // the presented token, so how long the lookup takes tells a caller at most how much of
        // the *hash* of their guess matches a stored hash, which brings them no closer to a
        // token (that would take a preimage).
        //
        // Looked up even for an address over its limit: a valid token always works, so that a
        // flood from a shared address (a proxy, a NAT) cannot lock the operators out.
        let found = state
            .store
            .token_by_hash(&hash_token(token))
            .await
            .map_err(ApiError::store)?;
        match found {
            Some(t) => Ok(Caller {
                name: t.name,
                role: t.role,
                source,
            }),
            None => Err(failed(
                state,
                peer,
                Failure::Unknown,
                "the token is unknown or revoked",
            )
            .await),
        }
    }
}

/// Counts a failed authentication from `peer`: a 401 saying `why`, or a 429 once the address
/// is over its limit. Reported (logged and audited) when one is due.
async fn failed(state: &AppState, peer: Option<IpAddr>, failure: Failure, why: &str) -> ApiError {
    let verdict = state
        .auth_failures
        .failed(Client::of(peer), failure, Instant::now());
    if let Some(report) = verdict.report {
        record(&*state.store, report).await;
    }
    match verdict.retry_after {
        Some(seconds) => ApiError::too_many_failures(seconds),
        None => ApiError::unauthorized(why),
    }
}

/// Logs and audits a report of failed authentications. The token itself is never logged.
pub(super) async fn record(store: &dyn Store, report: Report) {
    let Counts {
        failures,
        limited,
        malformed,
    } = report.counts;
    let source = report.client.map(|c| c.to_string());
    match &source {
        Some(source) => tracing::warn!(
            %source, failures, limited, malformed,
            "rejected requests with an invalid token (reported once a minute per address)"
        ),
        None => tracing::warn!(
            addresses = report.addresses,
            failures,
            limited,
            malformed,
            "rejected requests with an invalid token from other addresses"
        ),
    }
    let mut detail = serde_json::json!({
        "failures": failures,
        "limited": limited,
        "malformed": malformed,
    });
    if report.client.is_none() {
        detail["addresses"] = report.addresses.into();
    }
    let entry = NewAudit {
        at: jiff::Timestamp::now(),
        actor: "anonymous",
        source: source.as_deref(),
        action: "auth.failure",
        target: None,
        detail: Some(detail),
    };
    if let Err(e) = store.record_audit(entry).await {
        tracing::error!(error = %e, "cannot write failed authentications to the audit log");
    }
}
