//! In-process Rust jobs, registered by name.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use futures_util::FutureExt;

use super::{Executor, Outcome, RunContext};
use crate::model::Action;

/// An error from a Rust job, carrying the retry decision.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    /// Another attempt may succeed (a timeout, an unavailable service).
    #[error("{0}")]
    Retryable(String),
    /// No attempt will succeed (bad data, a bug): retries stop at once.
    #[error("{0}")]
    Fatal(String),
}

/// A job written in Rust. Closures `Fn(RunContext) -> impl Future<Output = Result<String,
/// JobError>>` implement it.
#[async_trait]
pub trait RustJob: Send + Sync + 'static {
    /// Runs once; the `String` is kept as the run's output. Return promptly when
    /// `ctx.cancel` fires.
    async fn run(&self, ctx: RunContext) -> Result<String, JobError>;
}

#[async_trait]
impl<F, Fut> RustJob for F
where
    F: Fn(RunContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<String, JobError>> + Send + 'static,
{
    async fn run(&self, ctx: RunContext) -> Result<String, JobError> {
        self(ctx).await
    }
}

/// The registered Rust jobs.
#[derive(Clone, Default)]
pub struct RustJobs {
    // A handful of names, looked up for every run: comparing them is cheaper than hashing.
    handlers: BTreeMap<String, Arc<dyn RustJob>>,
}

impl RustJobs {
    /// No handlers.
    pub fn new() -> RustJobs {
        RustJobs::default()
    }

    /// Registers `job` as `name`; a job with `action = { type = "rust", handler = "name" }`
    /// runs it.
    pub fn register(mut self, name: impl Into<String>, job: impl RustJob) -> RustJobs {
        self.handlers.insert(name.into(), Arc::new(job));
        self
    }

    /// Whether `name` is registered.
    pub fn contains(&self, name: &str) -> bool {
        self.handlers.contains_key(name)
    }

    /// The handler registered as `name`.
    pub(super) fn get(&self, name: &str) -> Option<Arc<dyn RustJob>> {
        self.handlers.get(name).cloned()
    }
}

#[async_trait]
impl Executor for RustJobs {
    async fn execute(&self, action: &Action, ctx: &RunContext) -> Outcome {
        let Action::Rust { handler } = action else {
            return Outcome::fatal("not a Rust action");
        };
        let Some(job) = self.get(handler) else {
            return Outcome::fatal(format!("no Rust handler is registered as {handler:?}"));
        };
        run(job, ctx.clone()).await
    }
}

/// Runs `job`, turning its result (or its panic) into an outcome.
///
/// A panicking job must not take the scheduler with it: its panic is caught and recorded as a
/// failure. The job has no task of its own: it is first polled where its run is released and
/// then on the run's task, so it starts the moment its run does. (A job cancelled by a timeout or a stop learns it from its context's token;
/// the scheduler drops one that does not return after a grace period.)
pub(super) async fn run(job: Arc<dyn RustJob>, ctx: RunContext) -> Outcome {
    // `run` itself is called inside: a job may panic before it returns its future, too.
    let ended = std::panic::AssertUnwindSafe(async move { job.run(ctx).await })
        .catch_unwind()
        .await;
    match ended {
        Ok(Ok(output)) => Outcome::Succeeded {
            output: Some(output).filter(|o| !o.is_empty()),
            exit_code: None,
        },
        Ok(Err(JobError::Retryable(e))) => Outcome::retryable(e),
        Ok(Err(JobError::Fatal(e))) => Outcome::fatal(e),
        Err(panic) => Outcome::retryable(format!("the job panicked: {}", panic_message(panic))),
    }
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_owned())
}
