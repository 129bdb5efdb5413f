//! `cronwarden.toml`: the daemon's settings and its jobs.
//!
//! ```toml
//! [settings]
//! database = "cronwarden.db"        # SQLite file, relative to the daemon's working directory,
//!                                   # or a PostgreSQL URL (postgres://user@host:5432/cronwarden)
//! node = "web-1"                    # default: hostname-pid
//! listen = "127.0.0.1:8420"
//! max_concurrent_runs = 64          # across all jobs
//! shutdown_grace = "30s"
//! metrics_public = false            # true: /metrics needs no token
//! inherit_env = ["AWS_PROFILE"]     # the daemon's variables every command gets (never CRONWARDEN_*)
//! state_dir = "/var/lib/cronwarden" # this host's records of running commands (default: the
//!                                   # SQLite file's directory, or the working directory)
//! [settings.retention]
//! keep_last = 1000                  # runs kept per job
//! max_age = "720h"                  # 30 days: durations go up to hours, days are not accepted
//!
//! [[jobs]]
//! name = "cleanup-sessions"
//! schedule = "*/5 * * * *"
//! time_zone = "Europe/Berlin"
//! action = { type = "command", argv = ["sh", "-c", "echo hi"] }
//! retry = { max_attempts = 3, initial_delay = "10s" }
//! ```
//!
//! Every setting has a default and `jobs` may be empty. `CRONWARDEN_*` environment variables
//! ([`ENV_OVERRIDES`]) override the file's settings; an empty variable counts as unset.
//!
//! The store is SQLite by default: `database` names its file. To run on PostgreSQL (one database
//! that several nodes share), set `CRONWARDEN_DATABASE_URL` to its URL
//! (`postgres://user:password@host:5432/cronwarden`); it overrides `database` and
//! `CRONWARDEN_DATABASE`, and keeps the password out of the file. A `postgres://` or
//! `postgresql://` URL written as `database` works too. The password of such a URL is never
//! shown: logs, `cronwarden validate --json` and error messages show
//! [`Settings::database_shown`], with `[redacted]` in its place.
//!
//! Loading checks everything and reports every problem it finds rather than stopping at the
//! first, each with the file, line and column, the job and the field: a production file with
//! three mistakes should take one round of fixes, not three.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};

use cronwarden::executor::ConnectionSpec;
use cronwarden::model::{JobName, JobSpec};
use jiff::SignedDuration;
use serde::Deserialize;
use toml::de::{DeTable, DeValue, ValueDeserializer};
use toml::Spanned;

/// The environment variables that override settings, with the setting each one overrides.
///
/// They apply in this order, so that `CRONWARDEN_DATABASE_URL` wins over `CRONWARDEN_DATABASE`
/// when both are set.
pub const ENV_OVERRIDES: [(&str, &str); 9] = [
    ("CRONWARDEN_DATABASE", "database"),
    (DATABASE_URL_VAR, "database"),
    ("CRONWARDEN_NODE", "node"),
    ("CRONWARDEN_LISTEN", "listen"),
    ("CRONWARDEN_MAX_CONCURRENT_RUNS", "max_concurrent_runs"),
    ("CRONWARDEN_SHUTDOWN_GRACE", "shutdown_grace"),
    ("CRONWARDEN_METRICS_PUBLIC", "metrics_public"),
    ("CRONWARDEN_RETENTION_KEEP_LAST", "retention.keep_last"),
    ("CRONWARDEN_RETENTION_MAX_AGE", "retention.max_age"),
];

/// The variable that points the daemon and the CLI at PostgreSQL: a `postgres://` URL, which
/// overrides the `database` setting.
pub const DATABASE_URL_VAR: &str = "CRONWARDEN_DATABASE_URL";

/// What a URL's password is shown as.
const REDACTED: &str = "[redacted]";

/// The settings the `[settings]` table may hold (`retention` is a table of its own).
const SETTINGS: [&str; 9] = [
    "database",
    "node",
    "listen",
    "max_concurrent_runs",
    "shutdown_grace",
    "metrics_public",
    "inherit_env",
    "state_dir",
    "retention",
];
const RETENTION: [&str; 2] = ["keep_last", "max_age"];

/// The most runs at once across all jobs.
pub const MAX_CONCURRENT_RUNS: u32 = 100_000;
/// The longest `shutdown_grace`: a day.
pub const MAX_SHUTDOWN_GRACE: SignedDuration = SignedDuration::from_hours(24);
/// The longest `retention.max_age`: ten years (87600h).
pub const MAX_RETENTION_AGE: SignedDuration = SignedDuration::from_hours(10 * 365 * 24);

/// How durations are written, for error messages.
const DURATION_FORMS: &str =
    "a duration such as \"30s\", \"5m\", \"1h 30m\" or \"720h\" (units up to hours: write 30 days as \"720h\")";

/// A loaded and checked configuration: the daemon's settings and the jobs it runs.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// The `[settings]` table, with the environment's overrides applied.
    pub settings: Settings,
    /// The `[connections.NAME]` tables: the databases SQL jobs run against.
    pub connections: BTreeMap<String, ConnectionSpec>,
    /// The `[[jobs]]`, in file order, each valid and uniquely named.
    pub jobs: Vec<JobSpec>,
}

/// How the daemon runs: the `[settings]` table.
///
/// Its `Debug` output shows the database as [`Settings::database_shown`] does: without a
/// password.
#[derive(Clone, PartialEq, Eq)]
pub struct Settings {
    /// The store: a SQLite database file (a relative path is relative to the daemon's working
    /// directory), or a PostgreSQL URL (`postgres://` or `postgresql://`; see
    /// [`is_postgres_url`]). It may hold a password: show [`Settings::database_shown`].
    pub database: String,
    /// This node's name in claims and run records; `None` for the default, `hostname-pid`
    /// ([`Settings::node_name`]).
    pub node: Option<String>,
    /// The address and port the HTTP API listens on.
    pub listen: SocketAddr,
    /// At most this many runs at once, across all jobs.
    pub max_concurrent_runs: u32,
    /// How long running jobs get to finish when the daemon stops, before they are cancelled.
    pub shutdown_grace: SignedDuration,
    /// How much run history is kept.
    pub retention: Retention,
    /// Whether `/metrics` is served without a token (for a Prometheus that scrapes without
    /// one, on a network that is trusted). Default: a viewer token is needed.
    pub metrics_public: bool,
    /// Variables of the daemon's environment passed through to every command (when set), in
    /// addition to the base ones ([`cronwarden::executor::BASE_ENV`]); never `CRONWARDEN_*`.
    pub inherit_env: Vec<String>,
    /// Where this host's state is kept: the records of running commands' processes
    /// ([`Settings::process_ledger_dir`]). `None` for the default: the SQLite file's
    /// directory, or the working directory on PostgreSQL.
    pub state_dir: Option<PathBuf>,
}

/// How much run history is kept: the `[settings.retention]` table. A run is pruned when either
/// limit drops it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    /// The newest runs kept per job.
    pub keep_last: u32,
    /// Runs that finished longer ago than this are pruned.
    pub max_age: SignedDuration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            database: "cronwarden.db".to_owned(),
            node: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 8420)),
            max_concurrent_runs: 64,
            shutdown_grace: SignedDuration::from_secs(30),
            retention: Retention::default(),
            metrics_public: false,
            inherit_env: Vec::new(),
            state_dir: None,
        }
    }
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            keep_last: 1000,
            max_age: SignedDuration::from_hours(30 * 24),
        }
    }
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("database", &self.database_shown())
            .field("node", &self.node)
            .field("listen", &self.listen)
            .field("max_concurrent_runs", &self.max_concurrent_runs)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("retention", &self.retention)
            .field("metrics_public", &self.metrics_public)
            .field("inherit_env", &self.inherit_env)
            .field("state_dir", &self.state_dir)
            .finish()
    }
}

impl Settings {
    /// Whether the store is PostgreSQL (`database` is a `postgres://` URL) rather than SQLite.
    pub fn is_postgres(&self) -> bool {
        is_postgres_url(&self.database)
    }

    /// The database as it may be shown (logs, `validate --json`, messages): a URL's password
    /// replaced by `[redacted]`; a SQLite path as it is.
    pub fn database_shown(&self) -> Cow<'_, str> {
        redact_url_password(&self.database)
    }

    /// The directory of the process ledger (see [`cronwarden::executor::ProcessLedger`]):
    /// `cronwarden-processes` in `state_dir`, by default in the SQLite file's directory, or in
    /// the working directory on PostgreSQL. A relative path is relative to the working
    /// directory.
    pub fn process_ledger_dir(&self) -> PathBuf {
        let base = match &self.state_dir {
            Some(dir) => dir.clone(),
            None if self.is_postgres() => PathBuf::from("."),
            None => Path::new(&self.database)
                .parent()
                .filter(|dir| !dir.as_os_str().is_empty())
                .map_or_else(|| PathBuf::from("."), Path::to_path_buf),
        };
        base.join("cronwarden-processes")
    }

    /// The node's name: the configured one, or `hostname-pid` (unique among processes that
    /// share a database, and readable in run records).
    pub fn node_name(&self) -> String {
        match &self.node {
            Some(node) => node.clone(),
            None => format!("{}-{}", hostname(), std::process::id()),
        }
    }
}

/// This machine's host name (`localhost` when it has none).
pub(crate) fn hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .map(|name| name.trim().to_owned())
        .find(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// A line and column in the file, both from 1; columns count characters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    /// The line, from 1.
    pub line: usize,
    /// The column, from 1, in characters.
    pub column: usize,
}

/// What part of the configuration a problem is in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// The file as a whole (TOML syntax, top-level keys) or the `[settings]` table (the field
    /// says which setting).
    File,
    /// An environment variable that overrides a setting.
    Env(String),
    /// A `[connections.NAME]` table.
    Connection(String),
    /// A job: its position among the jobs (from 0) and its name, when it has a valid one.
    Job {
        /// The job's position in the file, from 0.
        index: usize,
        /// The job's name, when it has a valid one.
        name: Option<JobName>,
    },
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::File => Ok(()),
            Scope::Env(var) => write!(f, "environment variable {var}"),
            Scope::Connection(name) => write!(f, "connection {name:?}"),
            Scope::Job {
                name: Some(name), ..
            } => write!(f, "job {:?}", name.as_str()),
            // Numbered from 1, as a reader counts the [[jobs]] tables.
            Scope::Job { index, name: None } => write!(f, "job #{}", index + 1),
        }
    }
}

/// One problem found in a configuration.
///
/// `Display` gives one line, compiler-style (the reason may add lines, such as a schedule with
/// a caret under the offending text):
///
/// ```text
/// cronwarden.toml:12:12: job "cleanup-sessions": schedule: the minute field allows 0-59, got 61
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The file, as it was named when loading.
    pub file: String,
    /// Where in the file, when the problem is in the file.
    pub position: Option<Position>,
    /// The part of the configuration the problem is in.
    pub scope: Scope,
    /// The field as written in the file (`schedule`, `retry.max_attempts`,
    /// `settings.listen`), when the problem is in one.
    pub field: Option<String>,
    /// Why it was rejected.
    pub reason: String,
    /// The byte offset, to list problems in file order.
    offset: Option<usize>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.scope {
            // The file is beside the point: the value came from the environment.
            Scope::Env(_) => write!(f, "{}", self.scope)?,
            scope => {
                f.write_str(&self.file)?;
                if let Some(p) = self.position {
                    write!(f, ":{}:{}", p.line, p.column)?;
                }
                if *scope != Scope::File {
                    write!(f, ": {scope}")?;
                }
            }
        }
        if let Some(field) = &self.field {
            write!(f, ": {field}")?;
        }
        write!(f, ": {}", self.reason)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads and checks the file at `path`, with overrides from the process environment.
    pub fn load(path: &Path) -> Result<Config, Vec<ConfigError>> {
        Config::load_with_env(path, std::env::vars_os())
    }

    /// Reads and checks the file at `path`, with overrides from `env` (name, value pairs;
    /// variables other than [`ENV_OVERRIDES`] are ignored).
    pub fn load_with_env<I, K, V>(path: &Path, env: I) -> Result<Config, Vec<ConfigError>>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        let file = path.display().to_string();
        let text = std::fs::read(path)
            .map_err(|e| format!("cannot read the file: {e}"))
            .and_then(|bytes| {
                String::from_utf8(bytes).map_err(|_| "the file is not UTF-8 text".to_owned())
            });
        match text {
            Ok(text) => Config::parse(&file, &text, env),
            Err(reason) => Err(vec![ConfigError {
                file,
                position: None,
                scope: Scope::File,
                field: None,
                reason,
                offset: None,
            }]),
        }
    }

    /// Checks `text`, a configuration named `file` in messages, with overrides from `env`.
    pub fn parse<I, K, V>(file: &str, text: &str, env: I) -> Result<Config, Vec<ConfigError>>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        let mut check = Checker::new(file, text);
        let (root, syntax) = DeTable::parse_recoverable(text);
        if !syntax.is_empty() {
            // Recovery can report several errors for one mistake; the first on each line is
            // the one worth reading.
            let mut lines = Vec::new();
            for e in syntax {
                let line = e.span().map(|s| check.position(s.start).line);
                if line.is_none() || !lines.contains(&line) {
                    lines.push(line);
                    check.error(
                        Scope::File,
                        None,
                        e.span(),
                        format!("invalid TOML: {}", e.message()),
                    );
                }
            }
            // The document's structure is unreliable after a syntax error: reporting the
            // fields of a half-parsed table would mislead.
            return Err(check.finish());
        }
        let root = root.into_inner();
        let mut settings = Settings::default();
        let mut jobs = None;
        let mut connections = BTreeMap::new();
        // Every name under [connections], valid or not: a job naming an invalid connection
        // is not reported again.
        let mut declared = Vec::new();
        for (key, value) in root.iter() {
            let name: &str = key.get_ref();
            match name {
                "settings" => check.settings(value, &mut settings),
                "connections" => connections = check.connections(value, &mut declared),
                "jobs" => jobs = Some(value),
                other => check.error(
                    Scope::File,
                    Some(other.to_owned()),
                    Some(key.span()),
                    unknown_key("top-level key", other, &["settings", "connections", "jobs"]),
                ),
            }
        }
        check.env_overrides(env, &mut settings);
        let jobs = match jobs {
            Some(jobs) => check.jobs(jobs, &declared),
            None => Vec::new(),
        };
        let errors = check.finish();
        if errors.is_empty() {
            Ok(Config {
                settings,
                connections,
                jobs,
            })
        } else {
            Err(errors)
        }
    }
}

/// Jobs are checked in rounds, each finding one problem and setting its field aside. Each round
/// removes a key or places one of two stand-ins, so the rounds end; the bound caps the report
/// on a table with hundreds of stray keys.
const MAX_ROUNDS: usize = 256;

/// A valid job name that stands in for a missing or invalid one while the job's other fields
/// are checked. It never reaches a [`Config`]: a job that needed it has an error.
const STAND_IN_NAME: &str = "0.stand-in";

/// Collects the problems found while walking the document.
struct Checker<'a> {
    file: &'a str,
    text: &'a str,
    /// The byte offset at which each line starts.
    line_starts: Vec<usize>,
    errors: Vec<ConfigError>,
}

impl<'a> Checker<'a> {
    fn new(file: &'a str, text: &'a str) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Checker {
            file,
            text,
            line_starts,
            errors: Vec::new(),
        }
    }

    fn position(&self, offset: usize) -> Position {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&start| start <= offset);
        let start = self.line_starts[line - 1];
        // Spans from the parser fall on character boundaries; `get` keeps a stray one harmless.
        let column = self
            .text
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count())
            + 1;
        Position { line, column }
    }

    fn error(
        &mut self,
        scope: Scope,
        field: Option<String>,
        span: Option<Range<usize>>,
        reason: impl Into<String>,
    ) {
        let offset = span.map(|s| s.start);
        self.errors.push(ConfigError {
            file: self.file.to_owned(),
            position: offset.map(|o| self.position(o)),
            scope,
            field,
            reason: reason.into(),
            offset,
        });
    }

    fn finish(mut self) -> Vec<ConfigError> {
        // File order, so that a reader can fix the file top to bottom; problems outside the
        // file (the environment) last. The sort is stable: problems found at one place keep
        // the order they were found in.
        self.errors.sort_by_key(|e| e.offset.unwrap_or(usize::MAX));
        self.errors
    }

    /// `value` as a table, or an error saying it must be one.
    fn table<'v, 'i>(
        &mut self,
        value: &'v Spanned<DeValue<'i>>,
        field: &str,
    ) -> Option<&'v DeTable<'i>> {
        match value.get_ref() {
            DeValue::Table(table) => Some(table),
            other => {
                self.error(
                    Scope::File,
                    Some(field.to_owned()),
                    Some(value.span()),
                    format!("must be a table ([{field}]), got {}", describe(other)),
                );
                None
            }
        }
    }

    fn settings(&mut self, value: &Spanned<DeValue<'_>>, settings: &mut Settings) {
        let Some(table) = self.table(value, "settings") else {
            return;
        };
        for (key, value) in table.iter() {
            let name: &str = key.get_ref();
            if name == "retention" {
                let Some(retention) = self.table(value, "settings.retention") else {
                    continue;
                };
                for (key, value) in retention.iter() {
                    let name: &str = key.get_ref();
                    if RETENTION.contains(&name) {
                        self.setting(settings, &format!("retention.{name}"), value);
                    } else {
                        self.error(
                            Scope::File,
                            Some(format!("settings.retention.{name}")),
                            Some(key.span()),
                            unknown_key("setting", name, &RETENTION),
                        );
                    }
                }
            } else if SETTINGS.contains(&name) {
                self.setting(settings, name, value);
            } else {
                self.error(
                    Scope::File,
                    Some(format!("settings.{name}")),
                    Some(key.span()),
                    unknown_key("setting", name, &SETTINGS),
                );
            }
        }
    }

    fn setting(&mut self, settings: &mut Settings, name: &str, value: &Spanned<DeValue<'_>>) {
        if let Err(reason) = apply_setting(settings, name, Input::Toml(value.get_ref())) {
            self.error(
                Scope::File,
                Some(format!("settings.{name}")),
                Some(value.span()),
                reason,
            );
        }
    }

    fn env_overrides<I, K, V>(&mut self, env: I, settings: &mut Settings)
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        let mut values = HashMap::new();
        for (key, value) in env {
            let Some(key) = key.as_ref().to_str() else {
                continue;
            };
            if let Some((var, _)) = ENV_OVERRIDES.iter().find(|(var, _)| *var == key) {
                values.insert(*var, value.as_ref().to_owned());
            }
        }
        // In a fixed order, so that errors do not come out in the environment's order.
        for (var, setting) in ENV_OVERRIDES {
            let Some(value) = values.get(var) else {
                continue;
            };
            let result = match value.to_str() {
                None => Err("the value is not valid UTF-8".to_owned()),
                // Deployment tools often set a variable to "" to mean "not set".
                Some(text) if text.trim().is_empty() => Ok(()),
                Some(text) if var == DATABASE_URL_VAR => database_url(text)
                    .and_then(|()| apply_setting(settings, setting, Input::Env(text))),
                Some(text) => apply_setting(settings, setting, Input::Env(text)),
            };
            if let Err(reason) = result {
                self.error(
                    Scope::Env(var.to_owned()),
                    Some(format!("settings.{setting}")),
                    None,
                    reason,
                );
            }
        }
    }

    /// The `[connections]` table: each entry a connection, checked like a job is.
    fn connections(
        &mut self,
        value: &Spanned<DeValue<'_>>,
        declared: &mut Vec<String>,
    ) -> BTreeMap<String, ConnectionSpec> {
        let mut out = BTreeMap::new();
        let Some(table) = self.table(value, "connections") else {
            return out;
        };
        for (key, value) in table.iter() {
            let name: &str = key.get_ref();
            declared.push(name.to_owned());
            let scope = Scope::Connection(name.to_owned());
            let DeValue::Table(fields) = value.get_ref() else {
                self.error(
                    scope,
                    None,
                    Some(value.span()),
                    format!(
                        "must be a table ([connections.{name}]) with a url, got {}",
                        describe(value.get_ref())
                    ),
                );
                continue;
            };
            match ConnectionSpec::deserialize(ValueDeserializer::from(value.clone())) {
                Ok(spec) => match spec.validate() {
                    Ok(()) => {
                        out.insert(name.to_owned(), spec);
                    }
                    Err(e) => {
                        let span = fields.get(e.field.as_str()).map(|v| v.span());
                        self.error(scope, Some(e.field), span, e.reason);
                    }
                },
                Err(e) => {
                    let (path, span) = locate_error(fields, &e);
                    let reason = serde_reason(fields, &path, e.message());
                    let field = (!path.is_empty()).then(|| path_text(&path));
                    self.error(scope, field, span.or(Some(value.span())), reason);
                }
            }
        }
        out
    }

    fn jobs(&mut self, jobs: &Spanned<DeValue<'_>>, connections: &[String]) -> Vec<JobSpec> {
        let DeValue::Array(list) = jobs.get_ref() else {
            self.error(
                Scope::File,
                Some("jobs".to_owned()),
                Some(jobs.span()),
                format!(
                    "must be an array of tables (start each job with [[jobs]]), got {}",
                    describe(jobs.get_ref())
                ),
            );
            return Vec::new();
        };
        let raw: Vec<RawJob> = list
            .iter()
            .enumerate()
            .map(|(index, job)| RawJob::new(index, job))
            .collect();
        let specs = list
            .iter()
            .zip(&raw)
            .filter_map(|(job, raw)| self.job(raw, job))
            .collect();
        self.links(&raw);
        for job in &raw {
            let Some(name) = &job.connection else {
                continue;
            };
            if !connections.contains(name.get_ref()) {
                let mut reason = format!("no connection is named {:?}", name.get_ref());
                match closest(name.get_ref(), connections.iter().map(String::as_str)) {
                    Some(close) => reason.push_str(&format!("; did you mean {close:?}?")),
                    None if connections.is_empty() => {
                        reason.push_str(" (declare it in a [connections.NAME] table with its url)")
                    }
                    None => {}
                }
                self.error(
                    job.scope(),
                    Some("action.connection".to_owned()),
                    Some(name.span()),
                    reason,
                );
            }
        }
        specs
    }

    /// Checks one job, reporting every problem in it: each round deserializes and validates
    /// the job, reports the first problem, and sets the field at fault aside (removes it, or
    /// puts a stand-in in place of a required one) so that the next round gets past it.
    fn job(&mut self, raw: &RawJob, job: &Spanned<DeValue<'_>>) -> Option<JobSpec> {
        let scope = raw.scope();
        let DeValue::Table(original) = job.get_ref() else {
            self.error(
                scope,
                None,
                Some(job.span()),
                format!("a job must be a table, got {}", describe(job.get_ref())),
            );
            return None;
        };
        let mut table = original.clone();
        let mut aside = SetAside::default();
        let mut clean = true;
        for _ in 0..MAX_ROUNDS {
            let value = Spanned::new(job.span(), DeValue::Table(table.clone()));
            let (path, span, reason) = match JobSpec::deserialize(ValueDeserializer::from(value)) {
                Ok(spec) => match spec.validate() {
                    Ok(()) => return clean.then_some(spec),
                    Err(e) => {
                        let path = field_path(&e.field);
                        let span = deepest_span(original, &path);
                        (path, span, e.reason)
                    }
                },
                Err(e) => {
                    let (path, span) = locate_error(&table, &e);
                    if missing_field(e.message()).is_some() && aside.removed(&path) {
                        // Not the author's mistake: the field was set aside in an earlier
                        // round. Set its parent aside instead.
                        if aside.apply(&mut table, &path[..path.len() - 1], job.span().start) {
                            continue;
                        }
                        break;
                    }
                    let reason = serde_reason(&table, &path, e.message());
                    (path, span, reason)
                }
            };
            clean = false;
            let field = (!path.is_empty()).then(|| path_text(&path));
            self.error(
                scope.clone(),
                field,
                Some(span.unwrap_or(job.span())),
                reason,
            );
            if !aside.apply(&mut table, &path, job.span().start) {
                break;
            }
        }
        None
    }

    /// The checks across jobs: unique names, `after` naming jobs that exist, no cycles.
    fn links(&mut self, jobs: &[RawJob]) {
        let mut first: HashMap<&JobName, usize> = HashMap::new();
        for job in jobs {
            let Some(name) = &job.name else { continue };
            match first.get(name.get_ref()) {
                Some(&other) => {
                    let line = jobs[other]
                        .name
                        .as_ref()
                        .map_or(0, |n| self.position(n.span().start).line);
                    self.error(
                        job.scope(),
                        Some("name".to_owned()),
                        Some(name.span()),
                        format!(
                            "another job is already named {:?} (line {line})",
                            name.get_ref().as_str()
                        ),
                    );
                }
                None => {
                    first.insert(name.get_ref(), job.index);
                }
            }
        }
        // Edges from each job to the jobs it runs after; only from the first job of a name,
        // as the others are errors already.
        let mut edges: Vec<Vec<(usize, Range<usize>)>> = vec![Vec::new(); jobs.len()];
        for job in jobs {
            let own = job.name.as_ref().map(|n| n.get_ref());
            for after in &job.after {
                if own == Some(after.get_ref()) {
                    continue; // JobSpec::validate reports it.
                }
                match first.get(after.get_ref()) {
                    Some(&target) => {
                        let from_first = own.and_then(|n| first.get(n)) == Some(&job.index);
                        // A name listed twice is one link: one cycle, reported once.
                        let known = edges[job.index].iter().any(|&(t, _)| t == target);
                        if from_first && !known {
                            edges[job.index].push((target, after.span()));
                        }
                    }
                    None => {
                        let name = after.get_ref().as_str();
                        let mut reason = format!("no job is named {name:?}");
                        if let Some(close) = closest(name, first.keys().map(|n| n.as_str())) {
                            reason.push_str(&format!("; did you mean {close:?}?"));
                        }
                        self.error(
                            job.scope(),
                            Some("after".to_owned()),
                            Some(after.span()),
                            reason,
                        );
                    }
                }
            }
        }
        self.cycles(jobs, &edges);
    }

    /// Reports each cycle of `after` links once, where a depth-first walk closes it. The walk
    /// keeps its own stack: a long chain of jobs must not overflow the thread's.
    fn cycles(&mut self, jobs: &[RawJob], edges: &[Vec<(usize, Range<usize>)>]) {
        const NEW: u8 = 0;
        const ON_PATH: u8 = 1;
        const DONE: u8 = 2;
        let name = |i: usize| jobs[i].name.as_ref().map_or("?", |n| n.get_ref().as_str());
        let mut state = vec![NEW; jobs.len()];
        for start in 0..jobs.len() {
            if state[start] != NEW {
                continue;
            }
            state[start] = ON_PATH;
            let mut path: Vec<(usize, usize)> = vec![(start, 0)];
            while let Some((node, next)) = path.last_mut() {
                let node = *node;
                let Some((target, span)) = edges[node].get(*next) else {
                    state[node] = DONE;
                    path.pop();
                    continue;
                };
                *next += 1;
                match state[*target] {
                    NEW => {
                        state[*target] = ON_PATH;
                        path.push((*target, 0));
                    }
                    ON_PATH => {
                        // From the job reported on, around the loop and back to it.
                        let from = path.iter().position(|&(n, _)| n == *target).unwrap_or(0);
                        let members: Vec<usize> = std::iter::once(node)
                            .chain(path[from..].iter().map(|&(n, _)| n))
                            .collect();
                        let links: Vec<String> = members
                            .windows(2)
                            .map(|w| format!("{} runs after {}", name(w[0]), name(w[1])))
                            .collect();
                        self.error(
                            jobs[node].scope(),
                            Some("after".to_owned()),
                            Some(span.clone()),
                            format!("cycle: {}", links.join(", ")),
                        );
                    }
                    _ => {}
                }
            }
        }
    }
}

/// What the checks across jobs need, read straight from the document so that they cover jobs
/// that have errors of their own.
struct RawJob {
    index: usize,
    name: Option<Spanned<JobName>>,
    after: Vec<Spanned<JobName>>,
    /// The connection an SQL action names.
    connection: Option<Spanned<String>>,
}

impl RawJob {
    fn new(index: usize, job: &Spanned<DeValue<'_>>) -> RawJob {
        let name_of = |value: &Spanned<DeValue<'_>>| match value.get_ref() {
            DeValue::String(s) => JobName::new(s.as_ref())
                .ok()
                .map(|name| Spanned::new(value.span(), name)),
            _ => None,
        };
        let table = job.get_ref().as_table();
        RawJob {
            index,
            name: table.and_then(|t| t.get("name")).and_then(name_of),
            after: match table.and_then(|t| t.get("after")).map(|a| a.get_ref()) {
                Some(DeValue::Array(list)) => list.iter().filter_map(name_of).collect(),
                _ => Vec::new(),
            },
            connection: table
                .and_then(|t| t.get("action"))
                .and_then(|a| a.get_ref().as_table())
                .filter(|a| {
                    a.get("type")
                        .is_some_and(|t| matches!(t.get_ref(), DeValue::String(s) if s == "sql"))
                })
                .and_then(|a| a.get("connection"))
                .and_then(|c| match c.get_ref() {
                    DeValue::String(s) => Some(Spanned::new(c.span(), s.to_string())),
                    _ => None,
                }),
        }
    }

    fn scope(&self) -> Scope {
        Scope::Job {
            index: self.index,
            name: self.name.as_ref().map(|n| n.get_ref().clone()),
        }
    }
}

/// One step of a path to a value: a key in a table or an index in an array.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Seg {
    Key(String),
    Index(usize),
}

/// The path of a field named as [`path_text`] writes it (`action.script[1]`).
fn field_path(field: &str) -> Vec<Seg> {
    let mut path = Vec::new();
    for part in field.split('.') {
        let mut pieces = part.split('[');
        path.push(Seg::Key(pieces.next().unwrap_or_default().to_owned()));
        for index in pieces {
            match index.trim_end_matches(']').parse() {
                Ok(i) => path.push(Seg::Index(i)),
                Err(_) => return path,
            }
        }
    }
    path
}

/// A path as written in the file: `retry.max_attempts`, `after[1]`.
fn path_text(path: &[Seg]) -> String {
    let mut text = String::new();
    for seg in path {
        match seg {
            Seg::Key(key) => {
                if !text.is_empty() {
                    text.push('.');
                }
                text.push_str(key);
            }
            Seg::Index(i) => text.push_str(&format!("[{i}]")),
        }
    }
    text
}

/// The leading keys of `path`, up to the first array index: what can be removed from a table.
fn keys(path: &[Seg]) -> Vec<&str> {
    path.iter()
        .map_while(|seg| match seg {
            Seg::Key(key) => Some(key.as_str()),
            Seg::Index(_) => None,
        })
        .collect()
}

/// The fields of a job set aside so far, so that later rounds get past them.
#[derive(Default)]
struct SetAside {
    removed: Vec<Vec<String>>,
    stand_ins: Vec<&'static str>,
}

impl SetAside {
    fn removed(&self, path: &[Seg]) -> bool {
        let keys = keys(path);
        self.removed.iter().any(|r| *r == keys)
    }

    /// Sets the field at `path` aside: a stand-in for `name` and `action`, which a job cannot
    /// do without, and otherwise removal of the deepest key on the path that is present.
    /// False when nothing could be set aside, so another round would find the same problem.
    fn apply(&mut self, table: &mut DeTable<'_>, path: &[Seg], at: usize) -> bool {
        // Empty spans: `locate` passes them over, so no later error is put in a stand-in.
        let span = at..at;
        let keys = keys(path);
        match keys.first() {
            None => false,
            Some(&key @ ("name" | "action")) => {
                let required = if key == "name" { "name" } else { "action" };
                let stand_in = if required == "name" {
                    DeValue::String(Cow::Borrowed(STAND_IN_NAME))
                } else {
                    let mut action = DeTable::new();
                    for (key, value) in [("type", "rust"), ("handler", "stand-in")] {
                        action.insert(
                            Spanned::new(span.clone(), Cow::Borrowed(key)),
                            Spanned::new(span.clone(), DeValue::String(Cow::Borrowed(value))),
                        );
                    }
                    DeValue::Table(action)
                };
                if self.stand_ins.contains(&required) {
                    return false;
                }
                self.stand_ins.push(required);
                table.insert(
                    Spanned::new(span.clone(), Cow::Borrowed(required)),
                    Spanned::new(span, stand_in),
                );
                true
            }
            Some(_) => match remove_deepest(table, &keys) {
                Some(depth) => {
                    self.removed
                        .push(keys[..depth].iter().map(|k| (*k).to_owned()).collect());
                    true
                }
                None => false,
            },
        }
    }
}

/// Removes the value at the longest prefix of `keys` that is present; returns that prefix's
/// length.
fn remove_deepest(table: &mut DeTable<'_>, keys: &[&str]) -> Option<usize> {
    let (first, rest) = keys.split_first()?;
    if let Some(DeValue::Table(inner)) = table.get_mut(*first).map(|v| v.get_mut()) {
        if let Some(depth) = remove_deepest(inner, rest) {
            return Some(depth + 1);
        }
    }
    table.remove(*first).map(|_| 1)
}

/// The value at `path`.
fn value_at<'t, 'i>(table: &'t DeTable<'i>, path: &[Seg]) -> Option<&'t Spanned<DeValue<'i>>> {
    let (first, rest) = path.split_first()?;
    let Seg::Key(key) = first else { return None };
    let mut value = table.get(key.as_str())?;
    for seg in rest {
        value = match (seg, value.get_ref()) {
            (Seg::Key(key), DeValue::Table(t)) => t.get(key.as_str())?,
            (Seg::Index(i), DeValue::Array(a)) => a.get(*i)?,
            _ => return None,
        };
    }
    Some(value)
}

/// The span of the deepest value on `path` that is present.
fn deepest_span(table: &DeTable<'_>, path: &[Seg]) -> Option<Range<usize>> {
    (1..=path.len())
        .rev()
        .find_map(|len| value_at(table, &path[..len]))
        .map(|v| v.span())
}

/// Where a deserialization error is: the path to the innermost key or value that holds its
/// span, made precise with the field an "unknown field" or "missing field" message names.
fn locate_error(table: &DeTable<'_>, e: &toml::de::Error) -> (Vec<Seg>, Option<Range<usize>>) {
    let Some(target) = e.span() else {
        return (Vec::new(), None);
    };
    let mut best = None;
    locate(table, &target, &mut Vec::new(), &mut best);
    let (mut path, mut span) = best.unwrap_or((Vec::new(), target));
    if let Some(name) = unknown_field(e.message()) {
        // Internally tagged enums (`action`, `misfire`) report the whole table; point at the key.
        let inner = if path.is_empty() {
            Some(table)
        } else {
            value_at(table, &path).and_then(|v| v.get_ref().as_table())
        };
        if path.last() != Some(&Seg::Key(name.to_owned())) {
            if let Some((key, _)) = inner.and_then(|t| t.get_key_value(name)) {
                span = key.span();
                path.push(Seg::Key(name.to_owned()));
            }
        }
    } else if let Some(name) = missing_field(e.message()) {
        path.push(Seg::Key(name.to_owned()));
    } else if is_duration_error(e.message()) {
        // The same for a bad duration in a tagged table (`misfire.window`): point at the
        // value that is not a duration.
        let bad = value_at(table, &path)
            .and_then(|v| v.get_ref().as_table())
            .and_then(|t| {
                t.iter().find(|(key, value)| {
                    let key: &str = key.get_ref();
                    key != "mode"
                        && key != "type"
                        && value
                            .get_ref()
                            .as_str()
                            .is_some_and(|s| s.parse::<SignedDuration>().is_err())
                })
            });
        if let Some((key, value)) = bad {
            path.push(Seg::Key(key.get_ref().to_string()));
            span = value.span();
        }
    }
    (path, Some(span))
}

/// Finds the innermost key or value under `table` whose span holds `target`.
fn locate(
    table: &DeTable<'_>,
    target: &Range<usize>,
    path: &mut Vec<Seg>,
    best: &mut Option<(Vec<Seg>, Range<usize>)>,
) {
    for (key, value) in table.iter() {
        path.push(Seg::Key(key.get_ref().to_string()));
        consider(key.span(), target, path, best);
        consider(value.span(), target, path, best);
        locate_value(value.get_ref(), target, path, best);
        path.pop();
    }
}

fn locate_value(
    value: &DeValue<'_>,
    target: &Range<usize>,
    path: &mut Vec<Seg>,
    best: &mut Option<(Vec<Seg>, Range<usize>)>,
) {
    match value {
        DeValue::Table(table) => locate(table, target, path, best),
        DeValue::Array(list) => {
            for (i, item) in list.iter().enumerate() {
                path.push(Seg::Index(i));
                consider(item.span(), target, path, best);
                locate_value(item.get_ref(), target, path, best);
                path.pop();
            }
        }
        _ => {}
    }
}

fn consider(
    span: Range<usize>,
    target: &Range<usize>,
    path: &[Seg],
    best: &mut Option<(Vec<Seg>, Range<usize>)>,
) {
    let holds = !span.is_empty() && span.start <= target.start && target.end <= span.end;
    // Ties go to the later candidate, which is deeper.
    if holds && best.as_ref().is_none_or(|(_, b)| span.len() <= b.len()) {
        *best = Some((path.to_vec(), span));
    }
}

/// The field a serde "unknown field `x`" message names.
fn unknown_field(message: &str) -> Option<&str> {
    backticked(message.strip_prefix("unknown field ")?)
}

/// The field a serde "missing field `x`" message names.
fn missing_field(message: &str) -> Option<&str> {
    backticked(message.strip_prefix("missing field ")?)
}

fn backticked(text: &str) -> Option<&str> {
    let rest = text.strip_prefix('`')?;
    rest.split_once('`').map(|(word, _)| word)
}

/// Whether `message` is jiff's, about text that is not a duration.
fn is_duration_error(message: &str) -> bool {
    message.contains("\"friendly\" duration format") || message.contains("ISO 8601 duration")
}

/// A deserialization error's message, made plainer where the stock one is written for
/// programmers.
fn serde_reason(table: &DeTable<'_>, path: &[Seg], message: &str) -> String {
    if is_duration_error(message) {
        return match value_at(table, path).map(|v| v.get_ref()) {
            Some(DeValue::String(text)) => format!("{text:?} is not {DURATION_FORMS}"),
            _ => format!("expected {DURATION_FORMS}"),
        };
    }
    // JobName's error names its field itself, and the field is shown already.
    if let Some(rest) = message.strip_prefix("name: ") {
        return rest.to_owned();
    }
    if missing_field(message).is_some() {
        return "required, but missing".to_owned();
    }
    if let Some(name) = unknown_field(message) {
        let expected: Vec<&str> = message
            .split_once(", expected ")
            .map(|(_, list)| list.split('`').skip(1).step_by(2).collect())
            .unwrap_or_default();
        if let Some(close) = closest(name, expected) {
            return format!("unknown field `{name}`; did you mean `{close}`?");
        }
    }
    // Serde names Rust types; say what to write instead. A message this does not know (the
    // model's types renamed) comes through unchanged.
    for (rust, toml) in EXPECTATIONS {
        if let Some(start) = message.strip_suffix(rust) {
            return format!("{start}{toml}");
        }
    }
    message.to_owned()
}

/// What serde says a field expects, and how to say it to someone writing TOML.
const EXPECTATIONS: [(&str, &str); 7] = [
    (
        "expected internally tagged enum Action",
        "expected a table such as { type = \"command\", argv = [\"date\"] }",
    ),
    (
        "expected internally tagged enum MisfirePolicy",
        "expected a table such as { mode = \"run_once\" }",
    ),
    (
        "expected struct RetryPolicy",
        "expected a table such as { max_attempts = 3, initial_delay = \"10s\" }",
    ),
    (
        "expected a signed duration string",
        "expected a duration string such as \"30s\"",
    ),
    ("expected a sequence", "expected an array"),
    ("expected u32", "expected a whole number, 0 or more"),
    ("expected f64", "expected a number"),
];

/// "unknown setting `x`", with the closest known key or the list of them.
fn unknown_key(what: &str, key: &str, known: &[&str]) -> String {
    match closest(key, known.iter().copied()) {
        Some(close) => format!("unknown {what} `{key}`; did you mean `{close}`?"),
        None => format!(
            "unknown {what} `{key}`, expected one of: {}",
            known.join(", ")
        ),
    }
}

/// The candidate closest to `word`, if it is close enough to be a likely typo.
fn closest<'c>(word: &str, candidates: impl IntoIterator<Item = &'c str>) -> Option<&'c str> {
    // Half the word: "retries" is three edits from "retry".
    let limit = (word.chars().count() / 2).clamp(1, 3);
    candidates
        .into_iter()
        .map(|c| (edit_distance(word, c), c))
        .filter(|&(d, _)| d <= limit)
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (diagonal + usize::from(ca != cb))
                .min(above + 1)
                .min(row[j] + 1);
            diagonal = above;
        }
    }
    row[b.len()]
}

/// A TOML value described for a message: `string "64"`, `an array`.
fn describe(value: &DeValue<'_>) -> String {
    match value {
        DeValue::String(s) => format!("string {s:?}"),
        DeValue::Integer(i) => format!("integer {i}"),
        DeValue::Float(f) => format!("float {f}"),
        DeValue::Boolean(b) => format!("boolean {b}"),
        DeValue::Datetime(d) => format!("datetime {d}"),
        DeValue::Array(_) => "an array".to_owned(),
        DeValue::Table(_) => "a table".to_owned(),
    }
}

/// A setting's value as written: a TOML value in the file, or a variable's text.
enum Input<'v, 'i> {
    Toml(&'v DeValue<'i>),
    Env(&'v str),
}

impl Input<'_, '_> {
    fn text(&self) -> Result<&str, String> {
        match self {
            Input::Toml(DeValue::String(s)) => Ok(s),
            Input::Toml(other) => Err(format!("expected a string, got {}", describe(other))),
            Input::Env(s) => Ok(s),
        }
    }

    fn strings(&self) -> Result<Vec<String>, String> {
        let list = match self {
            Input::Toml(DeValue::Array(items)) => items,
            Input::Toml(other) => {
                return Err(format!(
                    "expected a list of names such as [\"AWS_PROFILE\"], got {}",
                    describe(other)
                ))
            }
            Input::Env(_) => return Err("cannot be set from the environment".to_owned()),
        };
        list.iter()
            .enumerate()
            .map(|(i, item)| match item.get_ref() {
                DeValue::String(s) => Ok(s.to_string()),
                other => Err(format!(
                    "item {}: expected a string, got {}",
                    i + 1,
                    describe(other)
                )),
            })
            .collect()
    }

    fn boolean(&self) -> Result<bool, String> {
        match self {
            Input::Toml(DeValue::Boolean(b)) => Ok(*b),
            Input::Toml(other) => Err(format!("expected true or false, got {}", describe(other))),
            Input::Env(s) => match s.trim() {
                "true" | "1" => Ok(true),
                "false" | "0" => Ok(false),
                other => Err(format!("{other:?} is not true or false")),
            },
        }
    }

    fn integer(&self) -> Result<i128, String> {
        match self {
            Input::Toml(DeValue::Integer(i)) => i128::from_str_radix(i.as_str(), i.radix())
                .map_err(|_| format!("{i} is out of range")),
            Input::Toml(other) => Err(format!("expected a whole number, got {}", describe(other))),
            Input::Env(s) => s
                .trim()
                .parse()
                .map_err(|_| format!("{s:?} is not a whole number")),
        }
    }
}

/// Sets the setting `name` (`retention.keep_last` for the nested ones) from `input`, checked
/// the same way whether it comes from the file or the environment.
fn apply_setting(settings: &mut Settings, name: &str, input: Input<'_, '_>) -> Result<(), String> {
    match name {
        "database" => settings.database = database(input.text()?)?,
        "node" => settings.node = Some(node(input.text()?)?),
        "listen" => settings.listen = listen(input.text()?)?,
        "max_concurrent_runs" => {
            settings.max_concurrent_runs = at_least_one(input.integer()?)?;
            at_most(settings.max_concurrent_runs, MAX_CONCURRENT_RUNS)?;
        }
        "shutdown_grace" => {
            settings.shutdown_grace = duration(input.text()?, true, MAX_SHUTDOWN_GRACE)?
        }
        "retention.keep_last" => settings.retention.keep_last = at_least_one(input.integer()?)?,
        "retention.max_age" => {
            settings.retention.max_age = duration(input.text()?, false, MAX_RETENTION_AGE)?
        }
        "metrics_public" => settings.metrics_public = input.boolean()?,
        "inherit_env" => {
            let names = input.strings()?;
            for name in &names {
                cronwarden::executor::check_inherited_name(name)?;
            }
            settings.inherit_env = names;
        }
        "state_dir" => {
            let dir = input.text()?;
            if dir.trim().is_empty() {
                return Err("must name a directory, such as \"/var/lib/cronwarden\"".to_owned());
            }
            settings.state_dir = Some(PathBuf::from(dir));
        }
        _ => return Err(format!("unknown setting `{name}`")),
    }
    Ok(())
}

fn database(text: &str) -> Result<String, String> {
    if text.trim().is_empty() {
        return Err(
            "must name the SQLite database file, such as \"cronwarden.db\", or be a PostgreSQL \
             URL, such as \"postgres://cronwarden@db.internal:5432/cronwarden\""
                .to_owned(),
        );
    }
    if is_postgres_url(text) {
        // Checked here, so that a malformed URL is reported with the rest of the file rather
        // than when the daemon connects. Not repeated: where a malformed URL's password ends
        // cannot be told, and the parser's message never holds the input.
        return match reqwest::Url::parse(text) {
            Ok(_) => Ok(text.to_owned()),
            Err(e) => Err(format!(
                "not a valid PostgreSQL URL ({e}); write it as \
                 \"postgres://user:password@host:5432/database\", with any of :/?#@ in the \
                 password percent-encoded"
            )),
        };
    }
    // The SQLite store opens whatever it is given as a file name: any other URL would silently
    // become a file called "mysql:" or the like. Only the scheme is repeated: the rest may
    // hold a password.
    if let Some((scheme, _)) = text.split_once("://") {
        return Err(format!(
            "a {scheme}:// URL is not a database cronwarden can use: give a SQLite file path \
             such as \"/var/lib/cronwarden/cronwarden.db\" or a PostgreSQL URL (postgres://)"
        ));
    }
    Ok(text.to_owned())
}

/// `CRONWARDEN_DATABASE_URL` is for PostgreSQL only; a SQLite file goes in
/// `CRONWARDEN_DATABASE`. The value is not repeated: it may be a credential.
fn database_url(text: &str) -> Result<(), String> {
    if is_postgres_url(text) {
        return Ok(());
    }
    let got = match text.split_once("://") {
        Some((scheme, _)) => format!("a {scheme}:// URL"),
        None => "no URL".to_owned(),
    };
    Err(format!(
        "must be a PostgreSQL URL such as \"postgres://user:password@host:5432/cronwarden\", got \
         {got} (a SQLite file is named by CRONWARDEN_DATABASE or the database setting)"
    ))
}

/// Whether `database` names a PostgreSQL database (a `postgres://` or `postgresql://` URL, the
/// scheme in any case) rather than a SQLite file.
pub fn is_postgres_url(database: &str) -> bool {
    database.split_once("://").is_some_and(|(scheme, _)| {
        scheme.eq_ignore_ascii_case("postgres") || scheme.eq_ignore_ascii_case("postgresql")
    })
}

/// The passwords a database URL holds, as written: the one in its user information
/// (`user:password@`) and any `password=` query parameter. None for a file path.
pub fn url_passwords(database: &str) -> Vec<&str> {
    let mut found = Vec::new();
    let Some((_, rest)) = database.split_once("://") else {
        return found;
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    if let Some((userinfo, _)) = rest[..authority_end].rsplit_once('@') {
        if let Some((_, password)) = userinfo.split_once(':') {
            if !password.is_empty() {
                found.push(password);
            }
        }
    }
    if let Some((_, query)) = rest.split_once('?') {
        let query = query.split('#').next().unwrap_or_default();
        for pair in query.split('&') {
            if let Some((key, value)) = pair.split_once('=') {
                if key.eq_ignore_ascii_case("password") && !value.is_empty() {
                    found.push(value);
                }
            }
        }
    }
    found
}

/// `database` with the passwords of [`url_passwords`] replaced by `[redacted]`: what may be
/// shown of it.
pub fn redact_url_password(database: &str) -> Cow<'_, str> {
    let Some((scheme, rest)) = database.split_once("://") else {
        return Cow::Borrowed(database);
    };
    if url_passwords(database).is_empty() {
        return Cow::Borrowed(database);
    }
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let mut shown = format!("{scheme}://");
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            match userinfo.split_once(':') {
                Some((user, password)) if !password.is_empty() => {
                    shown.push_str(&format!("{user}:{REDACTED}"));
                }
                _ => shown.push_str(userinfo),
            }
            shown.push('@');
            shown.push_str(host);
        }
        None => shown.push_str(authority),
    }
    let (before_query, query_and_fragment) = match tail.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (tail, None),
    };
    shown.push_str(before_query);
    if let Some(rest) = query_and_fragment {
        let (query, fragment) = match rest.split_once('#') {
            Some((query, fragment)) => (query, Some(fragment)),
            None => (rest, None),
        };
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, value)) if key.eq_ignore_ascii_case("password") && !value.is_empty() => {
                    format!("{key}={REDACTED}")
                }
                _ => pair.to_owned(),
            })
            .collect();
        shown.push('?');
        shown.push_str(&pairs.join("&"));
        if let Some(fragment) = fragment {
            shown.push('#');
            shown.push_str(fragment);
        }
    }
    Cow::Owned(shown)
}

fn node(name: &str) -> Result<String, String> {
    // The name goes into run records and logs, where spaces and control characters would make
    // it hard to read back.
    if name.is_empty()
        || name.len() > 255
        || name.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "{name:?} is not a node name: use 1-255 characters without spaces"
        ));
    }
    Ok(name.to_owned())
}

fn listen(addr: &str) -> Result<SocketAddr, String> {
    addr.trim().parse().map_err(|_| {
        format!(
            "{addr:?} is not an IP address and port such as \"127.0.0.1:8420\" or \"[::]:8420\" \
             (host names are not looked up)"
        )
    })
}

fn at_least_one(n: i128) -> Result<u32, String> {
    if n < 1 {
        return Err(format!("must be at least 1, got {n}"));
    }
    u32::try_from(n).map_err(|_| format!("must be at most {}, got {n}", u32::MAX))
}

fn at_most(n: u32, max: u32) -> Result<(), String> {
    if n > max {
        return Err(format!("must be at most {max}, got {n}"));
    }
    Ok(())
}

fn duration(text: &str, zero_allowed: bool, max: SignedDuration) -> Result<SignedDuration, String> {
    let d: SignedDuration = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not {DURATION_FORMS}"))?;
    if d.is_negative() || (d.is_zero() && !zero_allowed) {
        let least = if zero_allowed {
            "zero or more"
        } else {
            "positive"
        };
        return Err(format!("must be {least}, got {text:?}"));
    }
    if d > max {
        return Err(format!("must be at most {max:#}, got {text:?}"));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;
    use std::os::unix::ffi::OsStringExt;

    use cronwarden::model::{Action, MisfirePolicy, RetryPolicy};

    use super::*;

    const NO_ENV: [(&str, &str); 0] = [];

    fn parse(text: &str) -> Result<Config, Vec<ConfigError>> {
        Config::parse("test.toml", text, NO_ENV)
    }

    fn errors(text: &str) -> Vec<ConfigError> {
        parse(text).expect_err("the configuration is invalid")
    }

    fn messages(text: &str) -> Vec<String> {
        errors(text).iter().map(ToString::to_string).collect()
    }

    fn job(name: &str) -> Scope {
        Scope::Job {
            index: 0,
            name: Some(JobName::new(name).unwrap()),
        }
    }

    #[test]
    fn an_empty_file_is_the_defaults_and_no_jobs() {
        let config = parse("").unwrap();
        assert_eq!(config.settings, Settings::default());
        assert!(config.jobs.is_empty());
        let s = &config.settings;
        assert_eq!(s.database, "cronwarden.db");
        assert_eq!(s.node, None);
        assert_eq!(s.listen.to_string(), "127.0.0.1:8420");
        assert_eq!(s.max_concurrent_runs, 64);
        assert_eq!(s.shutdown_grace, SignedDuration::from_secs(30));
        assert_eq!(s.retention.keep_last, 1000);
        assert_eq!(s.retention.max_age, SignedDuration::from_hours(720));
        assert!(parse("jobs = []\n[settings]\n[settings.retention]\n").is_ok());
    }

    #[test]
    fn settings_and_a_job_are_read_typed() {
        let config = parse(
            r#"
            [settings]
            database = "/var/lib/cronwarden/state.db"
            node = "web-1"
            listen = "[::]:9000"
            max_concurrent_runs = 8
            shutdown_grace = "1m 30s"
            [settings.retention]
            keep_last = 50
            max_age = "168h"

            [[jobs]]
            name = "cleanup-sessions"
            schedule = "*/5 * * * *"
            time_zone = "Europe/Berlin"
            action = { type = "command", argv = ["sh", "-c", "echo hi"] }
            retry = { max_attempts = 3, initial_delay = "10s" }
            misfire = { mode = "run_all", window = "1h" }
            "#,
        )
        .unwrap();
        let s = &config.settings;
        assert_eq!(s.database, "/var/lib/cronwarden/state.db");
        assert_eq!(s.node_name(), "web-1");
        assert_eq!(s.listen.to_string(), "[::]:9000");
        assert_eq!(s.max_concurrent_runs, 8);
        assert_eq!(s.shutdown_grace, SignedDuration::from_secs(90));
        assert_eq!(s.retention.keep_last, 50);
        assert_eq!(s.retention.max_age, SignedDuration::from_hours(168));
        let [job] = &config.jobs[..] else {
            panic!("one job")
        };
        assert_eq!(job.name.as_str(), "cleanup-sessions");
        assert_eq!(job.schedule.as_deref(), Some("*/5 * * * *"));
        assert_eq!(job.time_zone, "Europe/Berlin");
        assert_eq!(
            job.action,
            Action::Command {
                argv: vec!["sh".into(), "-c".into(), "echo hi".into()],
                env: Default::default(),
                inherit_env: Vec::new(),
                cwd: None,
            }
        );
        assert_eq!(
            job.retry,
            RetryPolicy {
                max_attempts: 3,
                ..RetryPolicy::default()
            }
        );
        assert_eq!(
            job.misfire,
            MisfirePolicy::RunAll {
                window: SignedDuration::from_hours(1)
            }
        );
    }

    #[test]
    fn commands_settings_pass_named_variables_and_place_the_process_records() {
        let s = parse(
            "[settings]\ninherit_env = [\"AWS_PROFILE\", \"LC_ALL\"]\nstate_dir = \"/srv/cw\"\n",
        )
        .unwrap()
        .settings;
        assert_eq!(s.inherit_env, ["AWS_PROFILE", "LC_ALL"]);
        assert_eq!(
            s.process_ledger_dir(),
            Path::new("/srv/cw/cronwarden-processes")
        );
        // By default beside the SQLite file, or in the working directory on PostgreSQL.
        let beside = |database: &str| {
            Settings {
                database: database.to_owned(),
                ..Settings::default()
            }
            .process_ledger_dir()
        };
        assert_eq!(
            beside("/var/lib/cw/state.db"),
            Path::new("/var/lib/cw/cronwarden-processes")
        );
        assert_eq!(beside("state.db"), Path::new("./cronwarden-processes"));
        assert_eq!(
            beside("postgres://db/cron"),
            Path::new("./cronwarden-processes")
        );

        assert_eq!(
            messages("[settings]\ninherit_env = [\"HOME\", \"CRONWARDEN_ADMIN_TOKEN\"]\n"),
            ["test.toml:2:15: settings.inherit_env: \"CRONWARDEN_ADMIN_TOKEN\": variables named \
              CRONWARDEN_* are the daemon's own settings and never reach a job; give the job \
              what it needs in `env`"]
        );
        assert_eq!(
            messages("[settings]\ninherit_env = \"HOME\"\nstate_dir = \"\"\n"),
            [
                "test.toml:2:15: settings.inherit_env: expected a list of names such as \
                 [\"AWS_PROFILE\"], got string \"HOME\"",
                "test.toml:3:13: settings.state_dir: must name a directory, such as \
                 \"/var/lib/cronwarden\""
            ]
        );
        assert_eq!(
            messages("[settings]\ninherit_env = [\"A\", 1]\n"),
            ["test.toml:2:15: settings.inherit_env: item 2: expected a string, got integer 1"]
        );
    }

    #[test]
    fn the_default_node_name_is_host_and_pid() {
        let name = Settings::default().node_name();
        let suffix = format!("-{}", std::process::id());
        assert!(
            name.ends_with(&suffix) && name.len() > suffix.len(),
            "{name}"
        );
    }

    #[test]
    fn environment_variables_override_the_file() {
        let text = "[settings]\ndatabase = \"file.db\"\nmax_concurrent_runs = 4\n";
        let env = [
            ("CRONWARDEN_DATABASE", "/data/env.db"),
            ("CRONWARDEN_NODE", "worker-7"),
            ("CRONWARDEN_LISTEN", "0.0.0.0:80"),
            ("CRONWARDEN_MAX_CONCURRENT_RUNS", "16"),
            ("CRONWARDEN_SHUTDOWN_GRACE", "2m"),
            ("CRONWARDEN_RETENTION_KEEP_LAST", "10"),
            ("CRONWARDEN_RETENTION_MAX_AGE", "48h"),
            ("CRONWARDEN_METRICS_PUBLIC", "true"),
            // Not ours: ignored, even when it looks like it.
            ("PATH", "/bin"),
            ("CRONWARDEN_COLOUR", "blue"),
        ];
        let s = Config::parse("t.toml", text, env).unwrap().settings;
        assert_eq!(s.database, "/data/env.db");
        assert_eq!(s.node.as_deref(), Some("worker-7"));
        assert_eq!(s.listen.to_string(), "0.0.0.0:80");
        assert_eq!(s.max_concurrent_runs, 16);
        assert_eq!(s.shutdown_grace, SignedDuration::from_mins(2));
        assert_eq!(s.retention.keep_last, 10);
        assert_eq!(s.retention.max_age, SignedDuration::from_hours(48));
        assert!(s.metrics_public);
        let errors =
            Config::parse("t.toml", "[settings]\nmetrics_public = \"yes\"\n", env).unwrap_err();
        assert_eq!(
            errors[0].to_string(),
            "t.toml:2:18: settings.metrics_public: expected true or false, got string \"yes\""
        );
    }

    #[test]
    fn an_empty_environment_variable_is_unset() {
        let text = "[settings]\nmax_concurrent_runs = 4\n";
        let env = [
            ("CRONWARDEN_MAX_CONCURRENT_RUNS", ""),
            ("CRONWARDEN_NODE", " "),
        ];
        let s = Config::parse("t.toml", text, env).unwrap().settings;
        assert_eq!(s.max_concurrent_runs, 4);
        assert_eq!(s.node, None);
    }

    #[test]
    fn bad_environment_variables_are_reported_by_name_after_the_file() {
        let env = [
            ("CRONWARDEN_RETENTION_MAX_AGE", "30d"),
            ("CRONWARDEN_MAX_CONCURRENT_RUNS", "lots"),
            ("CRONWARDEN_LISTEN", "localhost:8420"),
        ];
        let errors = Config::parse("t.toml", "[settings]\nkeep = 1\n", env).unwrap_err();
        let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            messages,
            [
                "t.toml:2:1: settings.keep: unknown setting `keep`, expected one of: database, \
                 node, listen, max_concurrent_runs, shutdown_grace, metrics_public, inherit_env, \
                 state_dir, retention",
                "environment variable CRONWARDEN_LISTEN: settings.listen: \"localhost:8420\" is \
                 not an IP address and port such as \"127.0.0.1:8420\" or \"[::]:8420\" (host \
                 names are not looked up)",
                "environment variable CRONWARDEN_MAX_CONCURRENT_RUNS: \
                 settings.max_concurrent_runs: \"lots\" is not a whole number",
                "environment variable CRONWARDEN_RETENTION_MAX_AGE: settings.retention.max_age: \
                 \"30d\" is not a duration such as \"30s\", \"5m\", \"1h 30m\" or \"720h\" (units \
                 up to hours: write 30 days as \"720h\")",
            ]
        );
        assert_eq!(errors[1].scope, Scope::Env("CRONWARDEN_LISTEN".to_owned()));
        assert_eq!(errors[1].position, None);
    }

    #[test]
    fn environment_values_that_are_not_utf8_are_errors() {
        let env = [(
            OsString::from("CRONWARDEN_DATABASE"),
            OsString::from_vec(vec![0xff, 0xfe]),
        )];
        let errors = Config::parse("t.toml", "", env).unwrap_err();
        assert_eq!(errors[0].reason, "the value is not valid UTF-8");
    }

    #[test]
    fn bad_settings_are_each_reported() {
        let messages = messages(
            r#"[settings]
database = "mysql://root:hunter2@db/cronwarden"
node = "web 1"
listen = 8420
max_concurrent_runs = 0
shutdown_grace = "-5s"
[settings.retention]
keep_last = 5000000000
max_age = "0s"
keep_frist = 3
"#,
        );
        assert_eq!(
            messages,
            [
                "test.toml:2:12: settings.database: a mysql:// URL is not a database cronwarden \
                 can use: give a SQLite file path such as \"/var/lib/cronwarden/cronwarden.db\" \
                 or a PostgreSQL URL (postgres://)",
                "test.toml:3:8: settings.node: \"web 1\" is not a node name: use 1-255 characters \
                 without spaces",
                "test.toml:4:10: settings.listen: expected a string, got integer 8420",
                "test.toml:5:23: settings.max_concurrent_runs: must be at least 1, got 0",
                "test.toml:6:18: settings.shutdown_grace: must be zero or more, got \"-5s\"",
                "test.toml:8:13: settings.retention.keep_last: must be at most 4294967295, got \
                 5000000000",
                "test.toml:9:11: settings.retention.max_age: must be positive, got \"0s\"",
                "test.toml:10:1: settings.retention.keep_frist: unknown setting `keep_frist`; did \
                 you mean `keep_last`?",
            ]
        );
        assert!(parse("[settings]\nshutdown_grace = \"0s\"\n").is_ok());
    }

    #[test]
    fn absurd_durations_counts_and_sizes_are_refused_naming_the_field() {
        let description = "x".repeat(2 * 1024 * 1024);
        let argv = vec!["\"a\""; 100_000].join(", ");
        let tags = vec!["\"t\""; 100_000].join(", ");
        let text = format!(
            r#"[settings]
max_concurrent_runs = 1000000
shutdown_grace = "70000000h"
[settings.retention]
max_age = "110000000h"

[[jobs]]
name = "slow"
schedule = "* * * * *"
timeout = "70000000h"
retry = {{ max_attempts = 1000, initial_delay = "70000000h", max_delay = "70000000h" }}
action = {{ type = "command", argv = ["true"] }}

[[jobs]]
name = "big"
description = "{description}"
tags = [{tags}]
action = {{ type = "command", argv = [{argv}] }}
"#
        );
        let messages: Vec<String> = errors(&text)
            .iter()
            .map(|e| format!("{}: {}", e.field.as_deref().unwrap_or("-"), e.reason))
            .collect();
        assert_eq!(
            messages,
            [
                "settings.max_concurrent_runs: must be at most 100000, got 1000000",
                "settings.shutdown_grace: must be at most 24h, got \"70000000h\"",
                "settings.retention.max_age: must be at most 87600h, got \"110000000h\"",
                "timeout: must be at most 720h, got 70000000h",
                "retry.max_attempts: must be at most 100, got 1000",
                "retry.initial_delay: must be at most 720h, got 70000000h",
                "retry.max_delay: must be at most 720h, got 70000000h",
                "description: is 2 MiB long; the most is 8 KiB",
                "tags: has 100000 entries; the most is 256",
                "action.argv: has 100000 entries; the most is 1024",
            ]
        );
        // The largest values allowed are taken.
        let text = r#"[settings]
max_concurrent_runs = 100000
shutdown_grace = "24h"
[settings.retention]
max_age = "87600h"

[[jobs]]
name = "slow"
schedule = "* * * * *"
timeout = "720h"
retry = { max_attempts = 100, initial_delay = "720h", max_delay = "720h" }
action = { type = "command", argv = ["true"] }
"#;
        assert!(parse(text).is_ok(), "{:?}", parse(text).err());
    }

    #[test]
    fn a_postgres_url_as_the_database_selects_postgres() {
        for url in [
            "postgres://cronwarden@db.internal:5432/cronwarden",
            "postgresql://db.internal/cronwarden?sslmode=require",
            "POSTGRES://db.internal/cronwarden",
        ] {
            let s = parse(&format!("[settings]\ndatabase = {url:?}\n"))
                .unwrap()
                .settings;
            assert_eq!(s.database, url);
            assert!(s.is_postgres(), "{url}");
            assert_eq!(s.database_shown(), url, "no password, nothing to hide");
        }
        // Relative and absolute SQLite paths stay SQLite.
        for path in ["cronwarden.db", "state/cw.db", "/var/lib/cronwarden/cw.db"] {
            let s = parse(&format!("[settings]\ndatabase = {path:?}\n"))
                .unwrap()
                .settings;
            assert_eq!(s.database, path);
            assert!(!s.is_postgres(), "{path}");
            assert_eq!(s.database_shown(), path);
        }
        assert!(!Settings::default().is_postgres());
    }

    #[test]
    fn a_malformed_postgres_url_is_reported_without_repeating_it() {
        let malformed =
            messages("[settings]\ndatabase = \"postgres://cw:s3cret@db:notaport/cw\"\n");
        assert_eq!(
            malformed,
            [
                "test.toml:2:12: settings.database: not a valid PostgreSQL URL (invalid port \
              number); write it as \"postgres://user:password@host:5432/database\", with any of \
              :/?#@ in the password percent-encoded"
            ]
        );
        let empty = messages("[settings]\ndatabase = \"\"\n");
        assert_eq!(
            empty,
            [
                "test.toml:2:12: settings.database: must name the SQLite database file, such as \
              \"cronwarden.db\", or be a PostgreSQL URL, such as \
              \"postgres://cronwarden@db.internal:5432/cronwarden\""
            ]
        );
    }

    #[test]
    fn the_database_url_variable_selects_postgres_over_the_file_and_cronwarden_database() {
        let url = "postgres://cw:s3cret-pw@db.internal:5432/cronwarden";
        let text = "[settings]\ndatabase = \"file.db\"\n";
        let s = Config::parse("t.toml", text, [(DATABASE_URL_VAR, url)])
            .unwrap()
            .settings;
        assert_eq!(s.database, url);
        assert!(s.is_postgres());
        // Whatever order the environment lists them in, the URL wins.
        for env in [
            [
                ("CRONWARDEN_DATABASE", "/data/env.db"),
                (DATABASE_URL_VAR, url),
            ],
            [
                (DATABASE_URL_VAR, url),
                ("CRONWARDEN_DATABASE", "/data/env.db"),
            ],
        ] {
            let s = Config::parse("t.toml", text, env).unwrap().settings;
            assert_eq!(s.database, url);
        }
        // Empty is unset, as for every variable.
        let s = Config::parse("t.toml", text, [(DATABASE_URL_VAR, " ")])
            .unwrap()
            .settings;
        assert_eq!(s.database, "file.db");
        assert!(ENV_OVERRIDES.contains(&(DATABASE_URL_VAR, "database")));
    }

    #[test]
    fn the_database_url_variable_takes_postgres_urls_only_and_never_repeats_its_value() {
        let env = [
            (DATABASE_URL_VAR, "mysql://root:s3cret-pw@db/cw"),
            ("CRONWARDEN_LISTEN", "nowhere"),
        ];
        let errors = Config::parse("t.toml", "", env).unwrap_err();
        let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(messages.len(), 2, "{messages:?}");
        assert_eq!(
            messages[0],
            "environment variable CRONWARDEN_DATABASE_URL: settings.database: must be a \
             PostgreSQL URL such as \"postgres://user:password@host:5432/cronwarden\", got a \
             mysql:// URL (a SQLite file is named by CRONWARDEN_DATABASE or the database setting)"
        );
        assert_eq!(errors[0].scope, Scope::Env(DATABASE_URL_VAR.to_owned()));
        let errors = Config::parse("t.toml", "", [(DATABASE_URL_VAR, "state.db")]).unwrap_err();
        assert!(errors[0].reason.ends_with(
            "got no URL (a SQLite file is named by CRONWARDEN_DATABASE or the database setting)"
        ));
        let errors = Config::parse(
            "t.toml",
            "",
            [(DATABASE_URL_VAR, "postgres://cw:s3cret-pw@db:port/cw")],
        )
        .unwrap_err();
        assert_eq!(
            errors[0].to_string(),
            "environment variable CRONWARDEN_DATABASE_URL: settings.database: not a valid \
             PostgreSQL URL (invalid port number); write it as \
             \"postgres://user:password@host:5432/database\", with any of :/?#@ in the password \
             percent-encoded"
        );
    }

    #[test]
    fn a_database_urls_password_is_never_shown() {
        let cases = [
            (
                "postgres://cw:s3cret-pw@db.internal:5432/cronwarden",
                "postgres://cw:[redacted]@db.internal:5432/cronwarden",
            ),
            // An `@` or `:` in the password, percent-encoded; the last `@` ends the user info.
            (
                "postgresql://cw:p%40ss:w0rd@db/cw?sslmode=require",
                "postgresql://cw:[redacted]@db/cw?sslmode=require",
            ),
            (
                "postgres://cw@db/cw?sslmode=require&password=s3cret-pw#x",
                "postgres://cw@db/cw?sslmode=require&password=[redacted]#x",
            ),
            ("postgres://cw:@db/cw", "postgres://cw:@db/cw"),
            ("postgres://cw@db/cw", "postgres://cw@db/cw"),
            ("state.db", "state.db"),
        ];
        for (url, shown) in cases {
            assert_eq!(redact_url_password(url), shown);
            let settings = Settings {
                database: url.to_owned(),
                ..Settings::default()
            };
            assert_eq!(settings.database_shown(), shown);
            let debug = format!("{settings:?}");
            assert!(debug.contains(shown), "{debug}");
            assert!(
                !debug.contains("s3cret") && !debug.contains("w0rd"),
                "{debug}"
            );
        }
        assert_eq!(
            url_passwords("postgres://cw:one@db/cw?password=two"),
            ["one", "two"]
        );
        assert!(url_passwords("cronwarden.db").is_empty());
    }

    #[test]
    fn syntax_errors_stop_the_checks_and_say_where() {
        let errors = errors("[settings]\nlisten = 127.0.0.1:8420\n\n[[jobs]]\nname = \"x\n");
        assert_eq!(errors[0].position.unwrap().line, 2);
        assert!(
            errors[0].reason.starts_with("invalid TOML: "),
            "{}",
            errors[0]
        );
        assert!(errors
            .iter()
            .all(|e| e.reason.starts_with("invalid TOML: ")));
        assert!(errors.iter().any(|e| e.position.unwrap().line == 5));
    }

    #[test]
    fn positions_count_characters_from_one() {
        let found = errors("# Zürich ⏰\n[settings]\n  \"näme\" = 1\n");
        assert_eq!(found[0].position, Some(Position { line: 3, column: 3 }));
        let found = errors("x = 1");
        assert_eq!(found[0].position, Some(Position { line: 1, column: 1 }));
        assert_eq!(
            found[0].to_string(),
            "test.toml:1:1: x: unknown top-level key `x`, expected one of: settings, connections, jobs"
        );
    }

    const ACTION: &str = r#"action = { type = "command", argv = ["true"] }"#;

    #[test]
    fn each_job_error_names_the_job_the_field_and_the_place() {
        let text = format!(
            "[[jobs]]\nname = \"nightly\"\nschedule = \"0 25 * * *\"\ntime_zone = \"Mars/Olympus\"\n\
             {ACTION}\ntimeout = \"5 parsecs\"\nretry = {{ max_attempts = 0 }}\nretires = 3\n"
        );
        let errors = errors(&text);
        let found: Vec<(Option<&str>, usize, usize)> = errors
            .iter()
            .map(|e| {
                let p = e.position.unwrap();
                (e.field.as_deref(), p.line, p.column)
            })
            .collect();
        assert_eq!(
            found,
            [
                (Some("schedule"), 3, 12),
                (Some("time_zone"), 4, 13),
                (Some("timeout"), 6, 11),
                (Some("retry.max_attempts"), 7, 26),
                (Some("retires"), 8, 1),
            ]
        );
        assert!(errors.iter().all(|e| e.scope == job("nightly")));
        assert!(
            errors[0]
                .reason
                .starts_with("the hour field allows 0-23, got 25"),
            "{}",
            errors[0]
        );
        assert_eq!(
            errors[1].reason,
            "\"Mars/Olympus\" is not a known IANA time zone"
        );
        assert!(errors[2]
            .reason
            .starts_with("\"5 parsecs\" is not a duration"));
        assert_eq!(errors[3].reason, "must be at least 1 (1 means no retries)");
        assert_eq!(
            errors[4].reason,
            "unknown field `retires`; did you mean `retry`?"
        );
    }

    #[test]
    fn a_job_without_a_valid_name_is_named_by_its_position() {
        let text = format!(
            "[[jobs]]\nname = \"ok\"\n{ACTION}\n\n[[jobs]]\nname = \"Bad Name\"\n{ACTION}\n\
             jitter = \"0s\"\n\n[[jobs]]\nschedule = \"@daily\"\n"
        );
        let messages = messages(&text);
        assert_eq!(
            messages,
            [
                "test.toml:6:8: job #2: name: \"Bad Name\" is not a valid job name: use 1-64 of \
                 a-z, 0-9, '-', '_' and '.', starting with a letter or digit",
                "test.toml:8:10: job #2: jitter: must be positive, got 0s",
                "test.toml:10:1: job #3: name: required, but missing",
                "test.toml:10:1: job #3: action: required, but missing",
            ]
        );
    }

    #[test]
    fn errors_inside_actions_and_policies_point_at_the_field() {
        let text = r#"
[[jobs]]
name = "a"
action = { type = "command", argv = ["true"], shell = "sh" }
misfire = { mode = "run_all", window = "2 fortnights" }

[[jobs]]
name = "b"
action = { type = "python", handler = "x" }
overlap = "sometimes"

[[jobs]]
name = "c"
action = { type = "command", argv = [] }
max_concurrency = 0
"#;
        let found: Vec<(Scope, String, String)> = errors(text)
            .into_iter()
            .map(|e| (e.scope, e.field.unwrap(), e.reason))
            .collect();
        let at = |i: usize, name: &str| Scope::Job {
            index: i,
            name: Some(JobName::new(name).unwrap()),
        };
        assert_eq!(
            found,
            [
                (
                    at(0, "a"),
                    "action.shell".into(),
                    "unknown field `shell`, expected one of `argv`, `env`, `inherit_env`, `cwd`"
                        .into()
                ),
                (
                    at(0, "a"),
                    "misfire.window".into(),
                    format!("\"2 fortnights\" is not {DURATION_FORMS}")
                ),
                (
                    at(1, "b"),
                    "action.type".into(),
                    "unknown variant `python`, expected one of `command`, `rust`, `http`, `sql`"
                        .into()
                ),
                (
                    at(1, "b"),
                    "overlap".into(),
                    "unknown variant `sometimes`, expected one of `skip`, `allow`, `queue`, \
                     `replace`"
                        .into()
                ),
                (
                    at(2, "c"),
                    "action.argv".into(),
                    "needs at least the program to run".into()
                ),
                (
                    at(2, "c"),
                    "max_concurrency".into(),
                    "must be at least 1".into()
                ),
            ]
        );
    }

    #[test]
    fn names_must_be_unique_and_after_must_name_jobs() {
        let text = format!(
            "[[jobs]]\nname = \"backup\"\n{ACTION}\n\n\
             [[jobs]]\nname = \"report\"\n{ACTION}\nafter = [\"bakup\", \"backup\", \"report\"]\n\n\
             [[jobs]]\nname = \"backup\"\n{ACTION}\nafter = [\"nothing-like-it\"]\n"
        );
        assert_eq!(
            messages(&text),
            [
                "test.toml:8:9: job \"report\": after: a job cannot run after itself",
                "test.toml:8:10: job \"report\": after: no job is named \"bakup\"; did you mean \
                 \"backup\"?",
                "test.toml:11:8: job \"backup\": name: another job is already named \"backup\" \
                 (line 2)",
                "test.toml:13:10: job \"backup\": after: no job is named \"nothing-like-it\"",
            ]
        );
    }

    #[test]
    fn each_cycle_is_reported_once() {
        let jobs: String = [
            ("a", "c"),
            ("b", "a"),
            ("c", "b"),
            ("d", "d2"),
            ("d2", "d\", \"d"),
        ]
        .iter()
        .map(|(name, after)| {
            format!("[[jobs]]\nname = \"{name}\"\n{ACTION}\nafter = [\"{after}\"]\n")
        })
        .collect();
        assert_eq!(
            messages(&jobs),
            [
                "test.toml:8:10: job \"b\": after: cycle: b runs after a, a runs after c, c runs \
                 after b",
                "test.toml:20:10: job \"d2\": after: cycle: d2 runs after d, d runs after d2",
            ]
        );
    }

    #[test]
    fn a_long_chain_of_jobs_is_checked_without_recursion() {
        let n = 20_000;
        let mut text = String::new();
        for i in 0..n {
            text.push_str(&format!("[[jobs]]\nname = \"j{i}\"\n{ACTION}\n"));
            if i > 0 {
                text.push_str(&format!("after = [\"j{}\"]\n", i - 1));
            }
        }
        assert_eq!(parse(&text).unwrap().jobs.len(), n);
        text.push_str(&format!(
            "[[jobs]]\nname = \"loop\"\n{ACTION}\nafter = [\"j{}\"]\n",
            n - 1
        ));
        text = text.replacen("name = \"j0\"\n", "name = \"j0\"\nafter = [\"loop\"]\n", 1);
        let errors = errors(&text);
        assert_eq!(errors.len(), 1);
        assert!(errors[0].reason.starts_with("cycle: "));
    }

    #[test]
    fn jobs_must_be_tables_in_an_array() {
        assert_eq!(
            messages("[jobs]\nname = \"x\"\n"),
            [
                "test.toml:1:1: jobs: must be an array of tables (start each job with [[jobs]]), \
              got a table"
            ]
        );
        assert_eq!(
            messages("jobs = [1]\n"),
            ["test.toml:1:9: job #1: a job must be a table, got integer 1"]
        );
        // Inline tables are jobs too.
        let text = format!("jobs = [{{ name = \"x\", {ACTION} }}]\n");
        assert_eq!(parse(&text).unwrap().jobs[0].name.as_str(), "x");
    }

    #[test]
    fn odd_input_is_reported_not_panicked_on() {
        let deep = format!("x = {}{}\n", "[".repeat(5000), "]".repeat(5000));
        let cases = [
            deep.as_str(),
            "\u{feff}[settings]\nx = 1\n",
            "[[jobs]]\n",
            "[[jobs]]\nname = \"a\"\n[jobs.action]\ntype = \"command\"\nargv = [\"x\"]\n[jobs.action.env]\nA = 1\n",
            "[[jobs]]\nname = \"\"\naction = {}\nretry = { multiplier = nan, jitter = inf }\n",
            "[[jobs]]\nname = \"a\"\naction = { type = \"command\", argv = [\"x\"] }\nretry.max_attempts = 99999999999999999999999\n",
            "[[jobs]]\nname = \"a\"\naction = { type = \"command\", argv = [\"x\"], env = { A = [] }, cwd = 1 }\n",
            "[[jobs]]\nname = \"a\"\naction = { type = \"rust\" }\nmisfire = { mode = \"run_all\", window = \"1h\", extra = 1 }\ndst_gap = \"nope\"\ndst_fold = 1\n",
            "settings = 1\njobs = \"x\"\n",
            "[settings]\nretention = 1\n",
            "[[jobs]]\nname = \"a\"\nschedule = \"\"\naction = { type = \"command\", argv = [\"\"] }\nenabled = \"yes\"\ntags = [1]\n",
        ];
        for text in cases {
            let errors = parse(text).map(|_| ()).expect_err(text);
            assert!(!errors.is_empty(), "{text}");
            for e in &errors {
                let shown = e.to_string();
                assert!(!shown.is_empty() && !e.reason.is_empty(), "{text}: {shown}");
            }
        }
    }

    #[test]
    fn a_job_with_many_problems_reports_each() {
        let text = r#"[[jobs]]
name = "x"
schedule = "* * *"
action = { type = "command", argv = ["true"] }
timeout = "-1s"
jitter = "soon"
retry = { max_attempts = 0, multiplier = 0.5, jitter = 2.0, initial_delay = "0s" }
misfire_grace = "0s"
max_concurrency = 0
after = ["x"]
"#;
        let fields: Vec<String> = errors(text).into_iter().filter_map(|e| e.field).collect();
        assert_eq!(
            fields,
            [
                "schedule",
                "timeout",
                "jitter",
                "retry.max_attempts",
                "retry.multiplier",
                "retry.jitter",
                "retry.initial_delay",
                "misfire_grace",
                "max_concurrency",
                "after",
            ]
        );
    }

    #[test]
    fn connections_and_sql_and_http_jobs_are_read() {
        let config = parse(
            r#"
            [connections.app]
            url = "postgres://app:${env:APP_DB_PASSWORD}@127.0.0.1/app"
            max_connections = 2

            [[jobs]]
            name = "purge"
            schedule = "@hourly"
            action = { type = "sql", connection = "app", statement = "DELETE FROM t WHERE id IN (SELECT id FROM t LIMIT 1000)", batch = true }

            [[jobs]]
            name = "sync"
            schedule = "*/5 * * * *"
            [jobs.action]
            type = "http"
            method = "POST"
            url = "https://org.example/api/sync"
            headers = { Authorization = "Bearer ${env:ORG_TOKEN}" }
            json = { batch = 50 }
            "#,
        )
        .unwrap();
        let app = &config.connections["app"];
        assert_eq!(app.max_connections, 2);
        assert!(
            app.url.contains("${env:APP_DB_PASSWORD}"),
            "kept unresolved"
        );
        match &config.jobs[0].action {
            Action::Sql(sql) => {
                assert_eq!(sql.connection, "app");
                assert!(sql.batch);
            }
            other => panic!("{other:?}"),
        }
        match &config.jobs[1].action {
            Action::Http(http) => {
                assert_eq!(http.json, Some(serde_json::json!({"batch": 50})));
                assert_eq!(http.headers["Authorization"], "Bearer ${env:ORG_TOKEN}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn connection_and_action_errors_name_the_connection_or_job_and_field() {
        let found = messages(
            r#"
            [connections.app]
            url = "oracle://db"
            [connections.reports]
            url = "sqlite:reports.db"
            pool = 3

            [[jobs]]
            name = "purge"
            action = { type = "sql", connection = "ap", statement = "DELETE FROM t" }

            [[jobs]]
            name = "report"
            action = { type = "sql", connection = "reports", script = ["SELECT 1", " "] }

            [[jobs]]
            name = "call"
            action = { type = "http", url = "org.example/sync" }

            [[jobs]]
            name = "hook"
            action = { type = "http", url = "https://org.example/sync", headers = { A = "${env:}" } }
            "#,
        );
        assert_eq!(
            found,
            [
                "test.toml:3:19: connection \"app\": url: must start with postgres://, mysql://, mariadb:// or sqlite:",
                "test.toml:6:13: connection \"reports\": pool: unknown field `pool`, expected one of `url`, `max_connections`, `connect_timeout`",
                "test.toml:10:51: job \"purge\": action.connection: no connection is named \"ap\"; did you mean \"app\"?",
                "test.toml:14:84: job \"report\": action.script[1]: is empty",
                "test.toml:18:45: job \"call\": action.url: must be an http:// or https:// URL, got \"org.example/sync\"",
                "test.toml:22:89: job \"hook\": action.headers.A: ${env:} names nothing",
            ]
        );
    }
}
