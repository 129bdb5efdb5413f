//! Who may do what: API tokens with roles, and the audit log of changes.

use std::fmt;
use std::str::FromStr;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// What a token may do. Each role includes the ones before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Read jobs, runs, statistics and the scheduler's state.
    Viewer,
    /// Also trigger, pause and resume jobs, and cancel runs.
    Operator,
    /// Also create, change and delete jobs, manage tokens, and read the audit log.
    Admin,
}

impl Role {
    /// All roles, from the least to the most allowed.
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Operator, Role::Admin];

    /// The role as stored and shown: `viewer`, `operator`, `admin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Role, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unknown role {s:?} (expected viewer, operator or admin)"))
    }
}

/// An API token as stored: never the token itself, only its hash.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApiToken {
    /// Its identifier.
    pub id: i64,
    /// A unique name saying whose it is ("ci", "alice").
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it was revoked; a revoked token authenticates nothing.
    pub revoked_at: Option<Timestamp>,
}

/// One change, as the audit log keeps it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Its identifier, increasing.
    pub id: i64,
    /// When it happened.
    pub at: Timestamp,
    /// Who: a token's name, or the CLI and its user.
    pub actor: String,
    /// From where: the client's address, when known.
    pub source: Option<String>,
    /// What: `job.pause`, `job.trigger`, `token.create`, ...
    pub action: String,
    /// On what: a job's name, a run's id, a token's name.
    pub target: Option<String>,
    /// The change itself, as JSON (secrets redacted).
    pub detail: Option<serde_json::Value>,
}
