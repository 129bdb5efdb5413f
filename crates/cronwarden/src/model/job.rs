//! Jobs: a name, a schedule in a time zone, an action, and the policies that govern its runs.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use jiff::SignedDuration;
use serde::{Deserialize, Serialize};

use crate::schedule::{DstPolicy, FoldPolicy, GapPolicy, Schedule, ScheduleOptions};

/// A job's unique name: 1-64 characters of `a-z`, `0-9`, `-`, `_` and `.`, starting with a
/// letter or digit. It appears in URLs, logs and metrics labels, so it is kept plain.
///
/// Shared, not copied: every run, its context and its metrics carry the name, and a busy
/// instant starts thousands of runs.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct JobName(Arc<str>);

impl JobName {
    /// Validates `name`.
    pub fn new(name: impl Into<String>) -> Result<JobName, SpecError> {
        let name = name.into();
        let valid_start = name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        let valid_rest = name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
        });
        if name.len() > 64 || !valid_start || !valid_rest {
            return Err(SpecError::new(
                "name",
                format!(
                    "{name:?} is not a valid job name: use 1-64 of a-z, 0-9, '-', '_' and '.', \
                     starting with a letter or digit"
                ),
            ));
        }
        Ok(JobName(name.into()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name as shared text (a metrics label, say), without a copy.
    pub fn shared(&self) -> Arc<str> {
        self.0.clone()
    }
}

impl TryFrom<String> for JobName {
    type Error = SpecError;

    fn try_from(name: String) -> Result<JobName, SpecError> {
        JobName::new(name)
    }
}

impl From<JobName> for String {
    fn from(name: JobName) -> String {
        name.0.to_string()
    }
}

impl fmt::Display for JobName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A job definition that failed validation: which field, and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct SpecError {
    /// The field, as written in the configuration (`schedule`, `retry.max_attempts`, ...).
    pub field: String,
    /// Why it was rejected.
    pub reason: String,
}

impl SpecError {
    /// A problem with `field`.
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> SpecError {
        SpecError {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// What a run of a job does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// Runs a program (no shell) with arguments, environment and working directory. Its stdout
    /// and stderr are captured; the tail of each is kept with the run. Its environment is built,
    /// not inherited (see [`crate::executor::CommandExecutor`]).
    Command {
        /// The program and its arguments.
        argv: Vec<String>,
        /// Variables set for the program (the way to hand it a secret: `${env:NAME}` here is
        /// not visible in the process table, as it would be in `argv`).
        #[serde(default)]
        env: BTreeMap<String, String>,
        /// Variables of the daemon's environment passed through by name (when set); never a
        /// `CRONWARDEN_*` one.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        inherit_env: Vec<String>,
        /// The working directory (default: the daemon's).
        #[serde(default)]
        cwd: Option<PathBuf>,
    },
    /// Calls Rust code registered with the scheduler under this name.
    Rust {
        /// The name the handler was registered under.
        handler: String,
    },
    /// Calls an HTTP endpoint.
    Http(HttpAction),
    /// Runs SQL against a connection declared in the configuration.
    Sql(SqlAction),
}

impl Action {
    /// Every string of the action that may hold a secret reference (`${env:NAME}`,
    /// `${file:PATH}`), with the field it is in. A Rust action has none: its handler is code.
    pub fn strings_mut(&mut self) -> Vec<(String, &mut String)> {
        let mut out = Vec::new();
        match self {
            Action::Command { argv, env, .. } => {
                for (i, arg) in argv.iter_mut().enumerate() {
                    out.push((format!("action.argv[{i}]"), arg));
                }
                for (name, value) in env.iter_mut() {
                    out.push((format!("action.env.{name}"), value));
                }
            }
            Action::Rust { .. } => {}
            Action::Http(http) => {
                out.push(("action.url".to_owned(), &mut http.url));
                for (name, value) in http.headers.iter_mut() {
                    out.push((format!("action.headers.{name}"), value));
                }
                for (name, value) in http.query.iter_mut() {
                    out.push((format!("action.query.{name}"), value));
                }
                if let Some(body) = &mut http.body {
                    out.push(("action.body".to_owned(), body));
                }
                if let Some(secret) = &mut http.hmac_secret {
                    out.push(("action.hmac_secret".to_owned(), secret));
                }
            }
            Action::Sql(sql) => {
                if let Some(statement) = &mut sql.statement {
                    out.push(("action.statement".to_owned(), statement));
                }
                for (i, statement) in sql.script.iter_mut().enumerate() {
                    out.push((format!("action.script[{i}]"), statement));
                }
            }
        }
        out
    }

    /// The action's type as written in a job definition.
    pub fn kind(&self) -> &'static str {
        match self {
            Action::Command { .. } => "command",
            Action::Rust { .. } => "rust",
            Action::Http(_) => "http",
            Action::Sql(_) => "sql",
        }
    }
}

/// An HTTP call. The response's status decides the outcome: a success status (2xx unless
/// `success_status` says otherwise) succeeds; 408, 429, 5xx and network errors may be retried;
/// any other status is fatal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpAction {
    /// The method (default `GET`).
    #[serde(default = "get")]
    pub method: String,
    /// The URL, `http://` or `https://`.
    pub url: String,
    /// Request headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Query parameters added to the URL.
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    /// A text body (sent as `text/plain` unless a `content-type` header says otherwise).
    #[serde(default)]
    pub body: Option<String>,
    /// A JSON body (sent as `application/json`); exclusive with `body`.
    #[serde(default)]
    pub json: Option<serde_json::Value>,
    /// How long the request may take before it fails (retryably); the job's `timeout` still
    /// bounds the whole run.
    #[serde(default)]
    pub timeout: Option<SignedDuration>,
    /// The statuses that count as success (default: any 2xx).
    #[serde(default)]
    pub success_status: Vec<u16>,
    /// A shared secret: when set, the body is signed with HMAC-SHA256 (see the README) so the
    /// receiver can check the call came from cronwarden.
    #[serde(default)]
    pub hmac_secret: Option<String>,
    /// Response headers kept with the run (names, case-insensitive).
    #[serde(default)]
    pub keep_headers: Vec<String>,
}

/// SQL run against a named connection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlAction {
    /// The connection's name, as declared under `[connections]`.
    pub connection: String,
    /// One statement.
    #[serde(default)]
    pub statement: Option<String>,
    /// Several statements run in order in one transaction; exclusive with `statement`.
    #[serde(default)]
    pub script: Vec<String>,
    /// Repeat `statement` while it affects rows, each round in its own transaction (a bounded
    /// `DELETE ... LIMIT 1000`, say), so a large cleanup never holds one huge transaction.
    #[serde(default)]
    pub batch: bool,
    /// In batch mode, a pause between rounds, to leave room for the application's own work.
    #[serde(default)]
    pub batch_pause: Option<SignedDuration>,
    /// In batch mode, stop after this many rounds (default: until a round affects no rows).
    #[serde(default)]
    pub max_batches: Option<u32>,
    /// Enforced by the database server where it supports one (PostgreSQL `statement_timeout`,
    /// MariaDB `max_statement_time`, MySQL `max_execution_time`); per statement.
    #[serde(default)]
    pub statement_timeout: Option<SignedDuration>,
    /// For a statement that returns rows, how many are kept with the run (as JSON).
    #[serde(default = "ten")]
    pub keep_rows: u32,
    /// A check rather than a change: the run fails (without retries) when the statement
    /// returns any row, and keeps the rows, so that "products low on stock" or "payments
    /// stuck in PENDING" become a failed run that alerts.
    #[serde(default)]
    pub fail_when_rows: bool,
}

/// What happens when a fire comes while the job's previous run is still going.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OverlapPolicy {
    /// Record a `skipped` run and do not start another (the default: most jobs must not race
    /// themselves).
    #[default]
    Skip,
    /// Start another run alongside (within the job's concurrency limit).
    Allow,
    /// Run right after the current one; at most one run waits.
    Queue,
    /// Cancel the current run and start the new one.
    Replace,
}

/// What happens to misfires: fires that were due while the scheduler was down or stalled, and
/// that do not run as an ordinary (late) fire. Of a job's due fires, only the latest, and only
/// if it is at most `misfire_grace` late, runs as an ordinary fire; every other one is a
/// misfire, earlier fires within the grace included (the latest supersedes them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
pub enum MisfirePolicy {
    /// Record each as `missed`; run nothing.
    Skip,
    /// One catch-up run, for the latest misfire; the others are recorded `missed` (the
    /// default).
    #[default]
    RunOnce,
    /// A catch-up run for each misfire within the window before now, oldest first; older
    /// ones are recorded `missed`.
    RunAll {
        /// How far back to catch up.
        window: SignedDuration,
    },
}

/// How failed runs are retried: exponential backoff with jitter, up to a number of attempts.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1: no retries).
    pub max_attempts: u32,
    /// The delay before the first retry.
    pub initial_delay: SignedDuration,
    /// Each further delay is this many times the one before.
    pub multiplier: f64,
    /// No delay is longer than this.
    pub max_delay: SignedDuration,
    /// A random fraction (0-1) of each delay added or removed, so that retries spread out.
    pub jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 1,
            initial_delay: SignedDuration::from_secs(10),
            multiplier: 2.0,
            max_delay: SignedDuration::from_secs(600),
            jitter: 0.1,
        }
    }
}

impl RetryPolicy {
    /// The delay before attempt `attempt + 1`, given a uniform random `unit` in `[0, 1)`.
    ///
    /// ```
    /// use cronwarden::model::RetryPolicy;
    /// use jiff::SignedDuration;
    ///
    /// let policy = RetryPolicy { max_attempts: 5, jitter: 0.0, ..RetryPolicy::default() };
    /// assert_eq!(policy.delay_after(1, 0.5), SignedDuration::from_secs(10));
    /// assert_eq!(policy.delay_after(2, 0.5), SignedDuration::from_secs(20));
    /// assert_eq!(policy.delay_after(9, 0.5), SignedDuration::from_secs(600)); // capped
    /// ```
    pub fn delay_after(&self, attempt: u32, unit: f64) -> SignedDuration {
        let base = self.initial_delay.as_secs_f64()
            * self
                .multiplier
                .powi(attempt.saturating_sub(1).min(64) as i32);
        let capped = base.min(self.max_delay.as_secs_f64());
        let jittered = capped * (1.0 + self.jitter * (2.0 * unit - 1.0));
        SignedDuration::try_from_secs_f64(jittered.clamp(0.0, self.max_delay.as_secs_f64()))
            .unwrap_or(self.max_delay)
    }
}

/// A job: what to run, when, and under which policies.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// The unique name.
    pub name: JobName,
    /// What the job is for.
    #[serde(default)]
    pub description: String,
    /// When it fires: any expression [`Schedule`] accepts. `None` for a job that only runs
    /// after others (`after`) or when triggered.
    #[serde(default)]
    pub schedule: Option<String>,
    /// The IANA time zone the schedule runs in.
    #[serde(default = "utc")]
    pub time_zone: String,
    /// What to do with times skipped by a spring-forward change (default: cron's rule).
    #[serde(default)]
    pub dst_gap: Option<GapChoice>,
    /// What to do with times repeated by a fall-back change (default: cron's rule).
    #[serde(default)]
    pub dst_fold: Option<FoldChoice>,
    /// Whether the job fires.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Why it is paused, when it is.
    #[serde(default)]
    pub pause_reason: Option<String>,
    /// Free-form labels for filtering.
    #[serde(default)]
    pub tags: Vec<String>,
    /// What a run does.
    pub action: Action,
    /// A run still going after this long is cancelled and recorded `timed_out`.
    #[serde(default)]
    pub timeout: Option<SignedDuration>,
    /// How failures are retried.
    #[serde(default)]
    pub retry: RetryPolicy,
    /// What happens when a fire comes while a run is still going.
    #[serde(default)]
    pub overlap: OverlapPolicy,
    /// What happens to fires missed while the scheduler was down.
    #[serde(default)]
    pub misfire: MisfirePolicy,
    /// The latest due fire runs as an ordinary fire if it is at most this late; later, it is
    /// a misfire (default: one minute).
    #[serde(default = "one_minute")]
    pub misfire_grace: SignedDuration,
    /// A random delay of up to this much before each scheduled run starts.
    #[serde(default)]
    pub jitter: Option<SignedDuration>,
    /// Run when any of these jobs succeeds (in addition to the schedule, if any).
    #[serde(default)]
    pub after: Vec<JobName>,
    /// At most this many runs of this job at once.
    #[serde(default = "one")]
    pub max_concurrency: u32,
}

/// The DST gap policy as written in a job definition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GapChoice {
    /// Run once at the first instant after the gap.
    RunAfter,
    /// Do not run that day.
    Skip,
}

/// The DST fold policy as written in a job definition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FoldChoice {
    /// The first pass only.
    First,
    /// The second pass only.
    Second,
    /// Both passes.
    Both,
}

fn utc() -> String {
    "UTC".to_owned()
}
fn yes() -> bool {
    true
}
fn one() -> u32 {
    1
}
fn ten() -> u32 {
    10
}
fn get() -> String {
    "GET".to_owned()
}
fn one_minute() -> SignedDuration {
    SignedDuration::from_secs(60)
}

impl JobSpec {
    /// A job with the defaults for everything but its name, schedule and action.
    pub fn new(name: JobName, schedule: Option<&str>, action: Action) -> JobSpec {
        JobSpec {
            name,
            description: String::new(),
            schedule: schedule.map(str::to_owned),
            time_zone: utc(),
            dst_gap: None,
            dst_fold: None,
            enabled: true,
            pause_reason: None,
            tags: Vec::new(),
            action,
            timeout: None,
            retry: RetryPolicy::default(),
            overlap: OverlapPolicy::default(),
            misfire: MisfirePolicy::default(),
            misfire_grace: one_minute(),
            jitter: None,
            after: Vec::new(),
            max_concurrency: 1,
        }
    }

    /// The DST policy the job's fields select.
    pub fn dst_policy(&self) -> DstPolicy {
        DstPolicy {
            gap: match self.dst_gap {
                None => GapPolicy::Cron,
                Some(GapChoice::RunAfter) => GapPolicy::RunAfterGap,
                Some(GapChoice::Skip) => GapPolicy::Skip,
            },
            fold: match self.dst_fold {
                None => FoldPolicy::Cron,
                Some(FoldChoice::First) => FoldPolicy::First,
                Some(FoldChoice::Second) => FoldPolicy::Second,
                Some(FoldChoice::Both) => FoldPolicy::Both,
            },
        }
    }

    /// The parsed schedule in the job's zone, hashed by the job's name; `None` when the job has
    /// no schedule.
    pub fn schedule(&self) -> Result<Option<Schedule>, SpecError> {
        let Some(expression) = &self.schedule else {
            return Ok(None);
        };
        let tz = jiff::tz::TimeZone::get(&self.time_zone).map_err(|_| {
            SpecError::new(
                "time_zone",
                format!("{:?} is not a known IANA time zone", self.time_zone),
            )
        })?;
        ScheduleOptions::new()
            .time_zone(tz)
            .dst_policy(self.dst_policy())
            .hash_key(self.name.as_str())
            .parse(expression)
            .map(Some)
            .map_err(|e| SpecError::new("schedule", e.to_string()))
    }

    /// Checks every field; the first problem found is returned with the field it is in.
    pub fn validate(&self) -> Result<(), SpecError> {
        // Sizes first: nothing else is worth checking in a 2 MB schedule.
        super::limits::check(self)?;
        // A job with neither a schedule nor `after` runs only when triggered: allowed.
        self.schedule()?;
        if self.after.contains(&self.name) {
            return Err(SpecError::new("after", "a job cannot run after itself"));
        }
        match &self.action {
            Action::Command { argv, .. } if argv.is_empty() || argv[0].is_empty() => {
                return Err(SpecError::new(
                    "action.argv",
                    "needs at least the program to run",
                ));
            }
            Action::Rust { handler } if handler.is_empty() => {
                return Err(SpecError::new(
                    "action.handler",
                    "needs the name of a registered handler",
                ));
            }
            Action::Http(http) => http.validate()?,
            Action::Sql(sql) => sql.validate()?,
            _ => {}
        }
        if let Action::Command { inherit_env, .. } = &self.action {
            for (i, name) in inherit_env.iter().enumerate() {
                crate::executor::check_inherited_name(name)
                    .map_err(|reason| SpecError::new(format!("action.inherit_env[{i}]"), reason))?;
            }
        }
        let mut action = self.action.clone();
        for (field, value) in action.strings_mut() {
            crate::secret::check_job_references(value)
                .map_err(|reason| SpecError::new(field, reason))?;
        }
        let positive = |field: &str, d: SignedDuration| {
            if d.is_positive() {
                Ok(())
            } else {
                // jiff prints a negative duration as "5s ago"; say "-5s".
                let shown = if d.is_negative() {
                    format!("-{:#}", d.abs())
                } else {
                    format!("{d:#}")
                };
                Err(SpecError::new(
                    field,
                    format!("must be positive, got {shown}"),
                ))
            }
        };
        if let Some(timeout) = self.timeout {
            positive("timeout", timeout)?;
        }
        if let Some(jitter) = self.jitter {
            positive("jitter", jitter)?;
        }
        positive("misfire_grace", self.misfire_grace)?;
        if let MisfirePolicy::RunAll { window } = self.misfire {
            positive("misfire.window", window)?;
        }
        let r = &self.retry;
        if r.max_attempts == 0 {
            return Err(SpecError::new(
                "retry.max_attempts",
                "must be at least 1 (1 means no retries)",
            ));
        }
        positive("retry.initial_delay", r.initial_delay)?;
        positive("retry.max_delay", r.max_delay)?;
        if !(r.multiplier.is_finite() && r.multiplier >= 1.0) {
            return Err(SpecError::new(
                "retry.multiplier",
                format!("must be at least 1, got {}", r.multiplier),
            ));
        }
        if !(0.0..=1.0).contains(&r.jitter) {
            return Err(SpecError::new(
                "retry.jitter",
                format!("must be between 0 and 1, got {}", r.jitter),
            ));
        }
        if self.max_concurrency == 0 {
            return Err(SpecError::new("max_concurrency", "must be at least 1"));
        }
        Ok(())
    }
}

impl HttpAction {
    fn validate(&self) -> Result<(), SpecError> {
        if self.method.is_empty() || !self.method.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(SpecError::new(
                "action.method",
                format!("{:?} is not an HTTP method", self.method),
            ));
        }
        // A URL made of a secret reference is checked when the run starts.
        if !self.url.starts_with("${") {
            let scheme = self.url.split_once("://").map(|(scheme, _)| scheme);
            if !matches!(scheme, Some("http" | "https")) {
                return Err(SpecError::new(
                    "action.url",
                    format!("must be an http:// or https:// URL, got {:?}", self.url),
                ));
            }
        }
        if self.body.is_some() && self.json.is_some() {
            return Err(SpecError::new(
                "action.json",
                "give either body (text) or json, not both",
            ));
        }
        if let Some(timeout) = self.timeout {
            if !timeout.is_positive() {
                return Err(SpecError::new("action.timeout", "must be positive"));
            }
        }
        if let Some(bad) = self
            .success_status
            .iter()
            .find(|s| !(100..=599).contains(*s))
        {
            return Err(SpecError::new(
                "action.success_status",
                format!("{bad} is not an HTTP status"),
            ));
        }
        Ok(())
    }
}

impl SqlAction {
    fn validate(&self) -> Result<(), SpecError> {
        if self.connection.is_empty() {
            return Err(SpecError::new(
                "action.connection",
                "needs the name of a connection declared under [connections]",
            ));
        }
        match (&self.statement, self.script.is_empty()) {
            (None, true) => {
                return Err(SpecError::new(
                    "action.statement",
                    "needs a statement (or a script)",
                ))
            }
            (Some(_), false) => {
                return Err(SpecError::new(
                    "action.script",
                    "give either statement or script, not both",
                ))
            }
            (Some(s), true) if s.trim().is_empty() => {
                return Err(SpecError::new("action.statement", "is empty"))
            }
            _ => {}
        }
        if let Some(i) = self.script.iter().position(|s| s.trim().is_empty()) {
            return Err(SpecError::new(format!("action.script[{i}]"), "is empty"));
        }
        if self.batch && self.statement.is_none() {
            return Err(SpecError::new(
                "action.batch",
                "batch mode repeats one statement: use statement, not script",
            ));
        }
        if !self.batch && (self.batch_pause.is_some() || self.max_batches.is_some()) {
            return Err(SpecError::new(
                "action.batch",
                "batch_pause and max_batches need batch = true",
            ));
        }
        if self.max_batches == Some(0) {
            return Err(SpecError::new("action.max_batches", "must be at least 1"));
        }
        if let Some(timeout) = self.statement_timeout {
            if !timeout.is_positive() {
                return Err(SpecError::new(
                    "action.statement_timeout",
                    "must be positive",
                ));
            }
        }
        Ok(())
    }
}
