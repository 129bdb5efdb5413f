//! Runs: one execution (or a recorded non-execution) of a job.

use std::fmt;
use std::str::FromStr;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::JobName;

/// A run's identifier, unique within a store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RunId(pub i64);

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Why a run exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// Its schedule fired.
    Schedule,
    /// Someone asked for it (API or CLI).
    Manual,
    /// A retry of a failed attempt.
    Retry,
    /// A fire missed while the scheduler was down, run on catch-up.
    CatchUp,
    /// A job it runs after succeeded.
    Chain,
}

/// Where a run stands. `Running` and `Queued` are the only non-final states.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Claimed and waiting to start (its instant has not come, or a queue holds it).
    Queued,
    /// Started and not yet finished.
    Running,
    /// Finished without error.
    Succeeded,
    /// Finished with an error.
    Failed,
    /// Cancelled because it ran longer than the job's timeout.
    TimedOut,
    /// Not started because the previous run was still going (`overlap = skip`).
    Skipped,
    /// Due while the scheduler was down, and not run (`misfire = skip`).
    Missed,
    /// Cancelled by a shutdown that could not wait for it, or by an operator.
    Interrupted,
    /// Left `running` by a scheduler that died; found and recorded on a later start.
    Abandoned,
}

impl RunStatus {
    /// All statuses, in the order above.
    pub const ALL: [RunStatus; 9] = [
        RunStatus::Queued,
        RunStatus::Running,
        RunStatus::Succeeded,
        RunStatus::Failed,
        RunStatus::TimedOut,
        RunStatus::Skipped,
        RunStatus::Missed,
        RunStatus::Interrupted,
        RunStatus::Abandoned,
    ];

    /// The status as stored and shown: `succeeded`, `timed_out`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::TimedOut => "timed_out",
            RunStatus::Skipped => "skipped",
            RunStatus::Missed => "missed",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Abandoned => "abandoned",
        }
    }

    /// Whether the run is over.
    pub fn is_final(self) -> bool {
        !matches!(self, RunStatus::Queued | RunStatus::Running)
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RunStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<RunStatus, String> {
        RunStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| format!("unknown run status {s:?}"))
    }
}

impl Trigger {
    /// The trigger as stored and shown: `schedule`, `catch_up`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::Manual => "manual",
            Trigger::Retry => "retry",
            Trigger::CatchUp => "catch_up",
            Trigger::Chain => "chain",
        }
    }
}

impl FromStr for Trigger {
    type Err = String;

    fn from_str(s: &str) -> Result<Trigger, String> {
        [
            Trigger::Schedule,
            Trigger::Manual,
            Trigger::Retry,
            Trigger::CatchUp,
            Trigger::Chain,
        ]
        .into_iter()
        .find(|t| t.as_str() == s)
        .ok_or_else(|| format!("unknown trigger {s:?}"))
    }
}

/// One run of a job, as recorded in the store.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Run {
    /// Its identifier.
    pub id: RunId,
    /// The job it ran.
    pub job: JobName,
    /// The instant it was due (for a schedule fire, the fire's instant, never "now").
    pub scheduled_at: Timestamp,
    /// Why it exists.
    pub trigger: Trigger,
    /// 1 for the first attempt at a fire, 2 for its first retry, ...
    pub attempt: u32,
    /// Where it stands.
    pub status: RunStatus,
    /// The node that claimed it.
    pub node: String,
    /// Changes each time the run is (re)claimed; a result is recorded only with the current
    /// token, so a node presumed dead cannot overwrite a newer attempt's result.
    pub fencing_token: i64,
    /// When it started.
    pub started_at: Option<Timestamp>,
    /// When it reached a final status.
    pub finished_at: Option<Timestamp>,
    /// A command's exit code.
    pub exit_code: Option<i32>,
    /// The error, for runs that did not succeed.
    pub error: Option<String>,
    /// The tail of the output (bounded).
    pub output: Option<String>,
}

impl Run {
    /// How long it ran, when it has started and finished.
    pub fn duration(&self) -> Option<jiff::SignedDuration> {
        Some(self.finished_at?.duration_since(self.started_at?))
    }
}
