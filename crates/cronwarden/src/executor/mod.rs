//! Executors: what actually runs a job's action.
//!
//! An executor turns an [`Action`] into an [`Outcome`]. It does not deal with timeouts, retries
//! or history: the scheduler wraps every execution in those. It must stop promptly when the
//! run's cancellation token fires (a timeout, a shutdown, an operator's cancel, `overlap =
//! replace`). HTTP and SQL actions slot in as further executors next to these.

mod command;
mod rust;

use std::sync::Arc;

use async_trait::async_trait;
use jiff::Timestamp;
use tokio_util::sync::CancellationToken;

use crate::model::{Action, JobName, RunId, Trigger};

pub use self::command::CommandExecutor;
pub use self::rust::{JobError, RustJob, RustJobs};

/// What a run knows about itself, handed to the executor.
#[derive(Clone, Debug)]
pub struct RunContext {
    /// The run's id (pass it on so that receivers can deduplicate).
    pub run_id: RunId,
    /// The job.
    pub job: JobName,
    /// The instant the run was due.
    pub scheduled_at: Timestamp,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// Why the run exists.
    pub trigger: Trigger,
    /// Fires when the run must stop.
    pub cancel: CancellationToken,
}

/// How an execution ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It did what it should.
    Succeeded {
        /// The tail of its output.
        output: Option<String>,
        /// A command's exit code.
        exit_code: Option<i32>,
    },
    /// It failed; `retryable` says whether trying again may help.
    Failed {
        /// What went wrong.
        error: String,
        /// False for errors another attempt cannot fix (a missing program, bad input).
        retryable: bool,
        /// The tail of its output.
        output: Option<String>,
        /// A command's exit code.
        exit_code: Option<i32>,
    },
}

impl Outcome {
    /// A failure that a retry may fix.
    pub fn retryable(error: impl Into<String>) -> Outcome {
        Outcome::Failed {
            error: error.into(),
            retryable: true,
            output: None,
            exit_code: None,
        }
    }

    /// A failure that no retry can fix.
    pub fn fatal(error: impl Into<String>) -> Outcome {
        Outcome::Failed {
            error: error.into(),
            retryable: false,
            output: None,
            exit_code: None,
        }
    }
}

/// Runs one kind of action.
#[async_trait]
pub trait Executor: Send + Sync + 'static {
    /// Runs `action` for the run described by `ctx`.
    async fn execute(&self, action: &Action, ctx: &RunContext) -> Outcome;
}

/// The executors of every action type, chosen by the action.
#[derive(Clone)]
pub struct Executors {
    command: Arc<CommandExecutor>,
    rust: Arc<RustJobs>,
}

impl Executors {
    /// Commands with the default output limit, and the given Rust jobs.
    pub fn new(rust: RustJobs) -> Executors {
        Executors {
            command: Arc::new(CommandExecutor::default()),
            rust: Arc::new(rust),
        }
    }

    /// The registered Rust jobs (to check that a job's handler exists).
    pub fn rust_jobs(&self) -> &RustJobs {
        &self.rust
    }
}

#[async_trait]
impl Executor for Executors {
    async fn execute(&self, action: &Action, ctx: &RunContext) -> Outcome {
        match action {
            Action::Command { .. } => self.command.execute(action, ctx).await,
            Action::Rust { .. } => self.rust.execute(action, ctx).await,
        }
    }
}
