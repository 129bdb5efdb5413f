//! `cronwarden validate`: loads a configuration file and checks it, running nothing.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;
use cronwarden::model::JobSpec;
use jiff::Timestamp;
use serde_json::{json, Value};

use super::schedule::{instant, write_out, INSTANT_FORMAT};
use super::CliError;
use cronwarden_daemon::config::{Config, ConfigError, Scope, Settings};

/// Arguments of `cronwarden validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The configuration file, such as cronwarden.toml. CRONWARDEN_* environment variables
    /// override its settings, as they do for the daemon.
    file: PathBuf,
    /// Compute each job's next fire after this instant (RFC 3339; default: now).
    #[arg(long, value_name = "INSTANT")]
    after: Option<String>,
    /// Print JSON on stdout: the settings and jobs, or the errors (which go to stderr too).
    #[arg(long)]
    json: bool,
}

/// `cronwarden validate`.
pub fn validate(args: ValidateArgs) -> Result<(), CliError> {
    let after = match &args.after {
        Some(text) => instant("--after", text)?,
        None => Timestamp::now(),
    };
    let file = args.file.display().to_string();
    let errors = match Config::load(&args.file) {
        Ok(config) => {
            let text = if args.json {
                let jobs: Vec<Value> = config.jobs.iter().map(|j| job_json(j, after)).collect();
                let doc = json!({
                    "file": file,
                    "valid": true,
                    "settings": settings_json(&config.settings),
                    "jobs": jobs,
                });
                format!("{doc:#}\n")
            } else if config.jobs.is_empty() {
                format!("{file}: valid, no jobs\n")
            } else {
                config
                    .jobs
                    .iter()
                    .map(|j| format!("{}\n", job_line(j, after)))
                    .collect()
            };
            return write_out(&text);
        }
        Err(errors) => errors,
    };
    if args.json {
        let doc = json!({
            "file": file,
            "valid": false,
            "errors": errors.iter().map(error_json).collect::<Vec<_>>(),
        });
        write_out(&format!("{doc:#}\n"))?;
    }
    Err(report_errors(&file, &errors))
}

/// Prints every error to stderr and returns the summary to exit with. Every problem at once, so
/// that one round of fixes can deal with them all.
pub(super) fn report_errors(file: &str, errors: &[ConfigError]) -> CliError {
    // A failed write to stderr leaves nothing better to do.
    let mut stderr = std::io::stderr().lock();
    for error in errors {
        let _ = writeln!(stderr, "error: {error}");
    }
    let count = errors.len();
    CliError(format!(
        "{file} is not valid ({count} error{})",
        if count == 1 { "" } else { "s" }
    ))
}

/// One line on a valid job: what its schedule means and when it fires next.
fn job_line(job: &JobSpec, after: Timestamp) -> String {
    let mut parts = Vec::new();
    let schedule = job.schedule().ok().flatten();
    if let Some(schedule) = &schedule {
        parts.push(schedule.explain(after).summary);
    }
    let upstream: Vec<&str> = job.after.iter().map(|n| n.as_str()).collect();
    match (&schedule, upstream.is_empty()) {
        (None, true) => parts.push("no schedule; runs only when triggered".to_owned()),
        (None, false) => parts.push(format!("runs after {}", upstream.join(", "))),
        (Some(_), false) => parts.push(format!("also runs after {}", upstream.join(", "))),
        (Some(_), true) => {}
    }
    if !job.enabled {
        parts.push(match &job.pause_reason {
            Some(reason) => format!("paused: {reason}"),
            None => "paused".to_owned(),
        });
    } else if schedule.is_some() {
        parts.push(match next_fire(job, after) {
            Some(next) => format!("next {next}"),
            None => "no further fires".to_owned(),
        });
    }
    format!("{}: {}", job.name, parts.join("; "))
}

/// The job's next fire after `after`, in its zone.
fn next_fire(job: &JobSpec, after: Timestamp) -> Option<String> {
    let schedule = job.schedule().ok().flatten()?;
    let next = schedule.next_after(after)?;
    Some(
        next.to_zoned(schedule.time_zone().clone())
            .strftime(INSTANT_FORMAT)
            .to_string(),
    )
}

fn job_json(job: &JobSpec, after: Timestamp) -> Value {
    let schedule = job.schedule().ok().flatten();
    json!({
        "name": job.name.as_str(),
        "description": job.description,
        "enabled": job.enabled,
        "pause_reason": job.pause_reason,
        "schedule": job.schedule,
        "time_zone": job.time_zone,
        "summary": schedule.map(|s| s.explain(after).summary),
        "next": if job.enabled { next_fire(job, after) } else { None },
        "after": job.after.iter().map(|n| n.as_str()).collect::<Vec<_>>(),
        "action": job.action.kind(),
    })
}

fn settings_json(settings: &Settings) -> Value {
    json!({
        // A URL's password is never shown.
        "database": settings.database_shown(),
        "node": settings.node_name(),
        "listen": settings.listen.to_string(),
        "max_concurrent_runs": settings.max_concurrent_runs,
        "shutdown_grace": format!("{:#}", settings.shutdown_grace),
        "retention": {
            "keep_last": settings.retention.keep_last,
            "max_age": format!("{:#}", settings.retention.max_age),
        },
    })
}

fn error_json(error: &ConfigError) -> Value {
    let (job_index, job, env, connection) = match &error.scope {
        Scope::Job { index, name } => (Some(*index), name.as_ref().map(|n| n.as_str()), None, None),
        Scope::Env(var) => (None, None, Some(var.as_str()), None),
        Scope::Connection(name) => (None, None, None, Some(name.as_str())),
        Scope::File => (None, None, None, None),
    };
    json!({
        "file": error.file,
        "line": error.position.map(|p| p.line),
        "column": error.position.map(|p| p.column),
        // From 0, as JSON arrays count; messages number jobs from 1.
        "job_index": job_index,
        "job": job,
        "env": env,
        "connection": connection,
        "field": error.field,
        "reason": error.reason,
        "message": error.to_string(),
    })
}
