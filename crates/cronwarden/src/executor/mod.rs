//! Executors: what actually runs a job's action.
//!
//! An executor turns an [`Action`] into an [`Outcome`]. It does not deal with timeouts, retries
//! or history: the scheduler wraps every execution in those. It must stop promptly when the
//! run's cancellation token fires (a timeout, a shutdown, an operator's cancel, `overlap =
//! replace`).
//!
//! [`Executors`] picks the executor by the action's type and is where secrets are handled:
//! references are resolved into a copy of the action just before it runs, and every value
//! resolved is cut out of the outcome before the outcome goes anywhere (see [`crate::secret`]).

mod command;
pub mod http;
mod process;
mod rust;
#[cfg(feature = "sql")]
pub mod sql;

use std::sync::Arc;

use async_trait::async_trait;
use jiff::{SignedDuration, Timestamp};
use tokio_util::sync::CancellationToken;

use crate::model::{Action, JobName, RunId, Trigger};
use crate::secret::{self, Redactor};

pub use self::command::{
    check_inherited_name, is_daemon_variable, CommandExecutor, BASE_ENV, DEFAULT_PATH,
};
pub use self::http::HttpExecutor;
pub use self::process::ProcessLedger;
pub use self::rust::{JobError, RustJob, RustJobs};
#[cfg(feature = "sql")]
pub use self::sql::{ConnectionSpec, SqlExecutor};

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
        /// The earliest a retry may come, when the other side said so (HTTP `Retry-After`).
        retry_after: Option<SignedDuration>,
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
            retry_after: None,
        }
    }

    /// A failure that no retry can fix.
    pub fn fatal(error: impl Into<String>) -> Outcome {
        Outcome::Failed {
            error: error.into(),
            retryable: false,
            output: None,
            exit_code: None,
            retry_after: None,
        }
    }

    /// The outcome with every secret value in its text replaced.
    pub fn redacted(mut self, redactor: &Redactor) -> Outcome {
        if redactor.is_empty() {
            return self;
        }
        match &mut self {
            Outcome::Succeeded { output, .. } => {
                if let Some(output) = output {
                    redactor.redact_in_place(output);
                }
            }
            Outcome::Failed { error, output, .. } => {
                redactor.redact_in_place(error);
                if let Some(output) = output {
                    redactor.redact_in_place(output);
                }
            }
        }
        self
    }
}

/// Runs one kind of action.
#[async_trait]
pub trait Executor: Send + Sync + 'static {
    /// Runs `action` for the run described by `ctx`.
    async fn execute(&self, action: &Action, ctx: &RunContext) -> Outcome;
}

/// An action being executed, owning what it needs.
pub type Execution = std::pin::Pin<Box<dyn std::future::Future<Output = Outcome> + Send>>;

/// The executors of every action type, chosen by the action.
#[derive(Clone)]
pub struct Executors {
    command: Arc<CommandExecutor>,
    rust: Arc<RustJobs>,
    http: Arc<HttpExecutor>,
    #[cfg(feature = "sql")]
    sql: Arc<SqlExecutor>,
}

impl Executors {
    /// Commands with the default output limit, and the given Rust jobs.
    pub fn new(rust: RustJobs) -> Executors {
        Executors {
            command: Arc::new(CommandExecutor::default()),
            rust: Arc::new(rust),
            http: Arc::new(HttpExecutor::default()),
            #[cfg(feature = "sql")]
            sql: Arc::new(SqlExecutor::default()),
        }
    }

    /// Runs commands with `command` (its environment, output limit and process ledger).
    pub fn with_commands(mut self, command: CommandExecutor) -> Executors {
        self.command = Arc::new(command);
        self
    }

    /// Ends what the commands of a daemon that died left running (see [`ProcessLedger`]):
    /// before that daemon's unfinished runs are retried. Returns how many process groups were
    /// still there.
    pub async fn reap_leftovers(&self) -> usize {
        self.command.reap_leftovers().await
    }

    /// Adds the connections SQL jobs run against.
    #[cfg(feature = "sql")]
    pub fn with_sql(mut self, sql: SqlExecutor) -> Executors {
        self.sql = Arc::new(sql);
        self
    }

    /// Starts executing `spec`'s action: the execution owns what it needs, so that it can be
    /// polled first where the run is released and then handed to the run's own task.
    pub fn start(&self, spec: &Arc<crate::model::JobSpec>, ctx: RunContext) -> Execution {
        // Rust jobs, the hot path of a busy scheduler, skip a layer of boxing.
        if let Action::Rust { handler } = &spec.action {
            if let Some(job) = self.rust.get(handler) {
                return Box::pin(rust::run(job, ctx));
            }
        }
        let (executors, spec) = (self.clone(), spec.clone());
        Box::pin(async move { executors.execute(&spec.action, &ctx).await })
    }

    /// Checks that what `action` needs exists here: the handler a Rust job names, the
    /// connection an SQL job names.
    pub fn check(&self, action: &Action) -> Result<(), crate::model::SpecError> {
        match action {
            Action::Rust { handler } if !self.rust.contains(handler) => {
                Err(crate::model::SpecError::new(
                    "action.handler",
                    format!("no Rust handler is registered as {handler:?}"),
                ))
            }
            #[cfg(feature = "sql")]
            Action::Sql(sql) if !self.sql.has(&sql.connection) => {
                let known: Vec<&str> = self.sql.names().collect();
                Err(crate::model::SpecError::new(
                    "action.connection",
                    format!(
                        "no connection is named {:?} (declared: {known:?})",
                        sql.connection
                    ),
                ))
            }
            #[cfg(not(feature = "sql"))]
            Action::Sql(_) => Err(crate::model::SpecError::new(
                "action.type",
                "this build has no SQL jobs (the `sql` feature)",
            )),
            _ => Ok(()),
        }
    }

    /// Releases what the executors hold open (database pools); on shutdown.
    pub async fn close(&self) {
        #[cfg(feature = "sql")]
        self.sql.close().await;
    }

    /// The registered Rust jobs (to check that a job's handler exists).
    pub fn rust_jobs(&self) -> &RustJobs {
        &self.rust
    }
}

#[async_trait]
impl Executor for Executors {
    async fn execute(&self, action: &Action, ctx: &RunContext) -> Outcome {
        // Rust jobs hold no strings to resolve, and are the hot path of a busy scheduler.
        if let Action::Rust { .. } = action {
            return self.rust.execute(action, ctx).await;
        }
        let (action, redactor) = match secret::resolve_action(action) {
            Ok(resolved) => resolved,
            // Nothing ran; a missing variable or file is a configuration error.
            Err(e) => return Outcome::fatal(e.to_string()),
        };
        let outcome = match &action {
            // Streams are redacted as they are read, before they are cut to their limits; the
            // outcome as a whole is redacted below as well (its error, an HTTP call's URL).
            Action::Command { .. } => {
                Box::pin(self.command.execute_with(&action, ctx, &redactor)).await
            }
            // Boxed: an HTTP call's or a query's future is large, and held inline it would
            // make every run's future that large, Rust jobs' too (10,000 runs at one instant
            // then allocate and touch ~170 MB more, and start tens of milliseconds later).
            Action::Http(http) => Box::pin(self.http.execute_with(http, ctx, &redactor)).await,
            #[cfg(feature = "sql")]
            Action::Sql(sql) => Box::pin(self.sql.execute(sql, ctx)).await,
            #[cfg(not(feature = "sql"))]
            Action::Sql(_) => Outcome::fatal("this build has no SQL jobs (the `sql` feature)"),
            Action::Rust { .. } => unreachable!("handled above"),
        };
        outcome.redacted(&redactor)
    }
}
