//! Bearer tokens: how they are made, stored (as hashes) and checked, and the caller they
//! identify.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use cronwarden::model::Role;
use sha2::{Digest, Sha256};

use super::error::ApiError;
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
        let source = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip().to_string());
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
            return Err(ApiError::unauthorized(
                "the Authorization header must be `Bearer <token>`",
            ));
        };
        // Timing-safe without a constant-time compare: what is looked up is the SHA-256 of
        // the presented token, so how long the lookup takes tells a caller at most how much of
        // the *hash* of their guess matches a stored hash, which brings them no closer to a
        // token (that would take a preimage).
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
            None => {
                // Never the token itself in the log.
                tracing::warn!(source = ?source, "rejected a request with an unknown or revoked token");
                Err(ApiError::unauthorized("the token is unknown or revoked"))
            }
        }
    }
}
