//! The domain: jobs, their policies and actions, and the runs they produce.
//!
//! These types are what the store persists, the scheduler acts on and the configuration file
//! declares. Constructors validate (a [`JobName`] is always a valid slug, a [`JobSpec`] always
//! has a schedule that parses), so code that holds one never checks again.

mod access;
mod job;
pub mod limits;
mod run;

pub use self::access::{ApiToken, AuditEntry, Role};
pub use self::job::{
    Action, FoldChoice, GapChoice, HttpAction, JobName, JobSpec, MisfirePolicy, OverlapPolicy,
    RetryPolicy, SpecError, SqlAction,
};
pub use self::run::{Run, RunId, RunStatus, Trigger};
