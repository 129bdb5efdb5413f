//! `cronwarden jobs list|show|trigger|pause|resume` and `cronwarden runs list|show`: the
//! store, used directly.
//!
//! They open the database the configuration names: a SQLite file (WAL mode, so using it beside
//! a running daemon is safe) or PostgreSQL (`CRONWARDEN_DATABASE_URL`, or a `postgres://` URL
//! as the database setting), as the daemon does. `trigger`, `pause` and `resume` write to it;
//! a running daemon notices within a second (it watches the store's change number) and acts.

use std::path::PathBuf;
use std::str::FromStr;

use clap::{Args, Subcommand};
use cronwarden::model::{JobName, Run, RunId, RunStatus};
use cronwarden::store::{JobRecord, RunFilter, Store};
use jiff::Timestamp;
use serde_json::json;

use super::schedule::write_out;
use super::source::{Source, Triggered};
use super::validate::report_errors;
use super::CliError;
use cronwarden_daemon::config::Config;
use cronwarden_daemon::store::AnyStore;

/// Where the store is.
#[derive(Debug, Args)]
pub struct StoreArgs {
    /// The configuration file naming the database.
    #[arg(
        long,
        short,
        value_name = "FILE",
        env = "CRONWARDEN_CONFIG",
        default_value = "cronwarden.toml",
        global = true
    )]
    config: PathBuf,
    /// Print JSON.
    #[arg(long, global = true)]
    pub(super) json: bool,
    /// Talk to this daemon's API instead of opening the database (`http://host:8420`); the
    /// token comes from CRONWARDEN_TOKEN.
    #[arg(long, value_name = "URL", env = "CRONWARDEN_SERVER", global = true)]
    pub(super) server: Option<String>,
}

/// `cronwarden jobs ...`
#[derive(Debug, Args)]
pub struct JobsArgs {
    #[command(subcommand)]
    command: JobsCommand,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Debug, Subcommand)]
enum JobsCommand {
    /// The stored jobs, with their next fire and last result.
    List,
    /// One job: its definition and statistics.
    Show {
        /// The job's name.
        name: String,
    },
    /// Run a job now, outside its schedule (even when it is paused). The daemon starts the run
    /// within a second; if it is not running, when it next starts.
    Trigger {
        /// The job's name.
        name: String,
    },
    /// Stop a job from firing until it is resumed. The pause outlasts restarts and config
    /// reloads; runs already going carry on.
    Pause {
        /// The job's name.
        name: String,
        /// Why: kept with the job and shown by `jobs list` and `jobs show`.
        #[arg(long, default_value = "paused with `cronwarden jobs pause`")]
        reason: String,
    },
    /// Lift a pause. The job fires again from its next instant; fires that fell due while it
    /// was paused are not caught up.
    Resume {
        /// The job's name.
        name: String,
    },
}

/// `cronwarden runs ...`
#[derive(Debug, Args)]
pub struct RunsArgs {
    #[command(subcommand)]
    command: RunsCommand,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Debug, Subcommand)]
enum RunsCommand {
    /// Runs, newest first.
    List {
        /// Only this job's runs.
        #[arg(long)]
        job: Option<String>,
        /// Only runs with this status (succeeded, failed, timed_out, skipped, missed, ...).
        #[arg(long)]
        status: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// One run, with its output.
    Show {
        /// The run's id.
        id: i64,
    },
}

pub(super) fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError(format!("cannot start the runtime: {e}")))
}

/// The store the configuration names, as the daemon opens it. A SQLite file must exist already
/// (a typo in its path should not create an empty one); a PostgreSQL database is connected to.
pub(super) async fn open_store(args: &StoreArgs) -> Result<AnyStore, CliError> {
    let config = Config::load(&args.config)
        .map_err(|errors| report_errors(&args.config.display().to_string(), &errors))?;
    let settings = &config.settings;
    if !settings.is_postgres() && !std::path::Path::new(&settings.database).exists() {
        return Err(CliError(format!(
            "no database at {:?}: has `cronwarden serve` run with this configuration?",
            settings.database
        )));
    }
    AnyStore::open(&settings.database)
        .await
        .map_err(|e| CliError(e.to_string()))
}

fn job_name(name: &str) -> Result<JobName, CliError> {
    JobName::new(name).map_err(|e| CliError(e.to_string()))
}

pub(super) fn store_error(e: cronwarden::store::StoreError) -> CliError {
    CliError(e.to_string())
}

fn when(t: Option<Timestamp>) -> String {
    t.map_or_else(
        || "-".to_owned(),
        |t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
    )
}

/// A duration for people: "850ms", "12.4s", "3m 20s".
fn human(d: jiff::SignedDuration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        format!("{}m {}s", ms / 60_000, ms / 1000 % 60)
    }
}

fn run_json(run: &Run) -> serde_json::Value {
    serde_json::to_value(run).unwrap_or_default()
}

/// `cronwarden jobs`.
pub fn jobs(args: JobsArgs) -> Result<(), CliError> {
    runtime()?.block_on(async {
        let store = Source::open(&args.store).await?;
        let text = match args.command {
            JobsCommand::List => {
                let jobs = store.list_jobs().await?;
                if args.store.json {
                    let docs: Vec<_> = jobs.iter().map(|j| job_json(j, None)).collect();
                    format!("{:#}\n", json!(docs))
                } else {
                    let mut out = format!(
                        "{:<32} {:<8} {:<24} {}\n",
                        "NAME", "ENABLED", "NEXT", "SCHEDULE"
                    );
                    for j in &jobs {
                        let next = j
                            .spec
                            .schedule()
                            .ok()
                            .flatten()
                            .and_then(|s| s.next_after(Timestamp::now()));
                        out.push_str(&format!(
                            "{:<32} {:<8} {:<24} {}\n",
                            j.spec.name.as_str(),
                            if j.effective_spec().enabled {
                                "yes"
                            } else {
                                "paused"
                            },
                            when(next),
                            j.spec.schedule.as_deref().unwrap_or("-")
                        ));
                    }
                    out
                }
            }
            JobsCommand::Show { name } => {
                let name = job_name(&name)?;
                let Some(job) = store.get_job(&name).await? else {
                    return Err(CliError(format!("no job is named {name:?}")));
                };
                let stats = store.job_stats(&name).await?;
                let doc = job_json(&job, Some(&stats));
                if args.store.json {
                    format!("{doc:#}\n")
                } else {
                    let mut out = format!("{}\n", job.spec.name);
                    if let Ok(Some(schedule)) = job.spec.schedule() {
                        out.push_str(&format!(
                            "  schedule: {} ({})\n",
                            job.spec.schedule.as_deref().unwrap_or(""),
                            schedule.explain(Timestamp::now()).summary
                        ));
                    }
                    let spec = job.effective_spec();
                    match (spec.enabled, spec.pause_reason) {
                        (true, _) => out.push_str("  enabled: yes\n"),
                        (false, Some(reason)) => {
                            out.push_str(&format!("  enabled: no (paused: {reason})\n"))
                        }
                        (false, None) => out.push_str("  enabled: no\n"),
                    }
                    out.push_str(&format!(
                        "  runs: {} ({} succeeded, {} failed, {} failing in a row)\n",
                        stats.runs, stats.succeeded, stats.failed, stats.consecutive_failures
                    ));
                    if let Some(rate) = stats.success_rate() {
                        out.push_str(&format!("  success rate: {:.1}%\n", rate * 100.0));
                    }
                    if let (Some(p50), Some(p95), Some(max)) =
                        (stats.duration_p50, stats.duration_p95, stats.duration_max)
                    {
                        out.push_str(&format!(
                            "  duration: p50 {}, p95 {}, max {}\n",
                            human(p50),
                            human(p95),
                            human(max)
                        ));
                    }
                    out.push_str(&format!(
                        "  last success: {}\n  last failure: {}\n",
                        when(stats.last_success),
                        when(stats.last_failure)
                    ));
                    out
                }
            }
            JobsCommand::Trigger { name } => {
                let name = job_name(&name)?;
                let triggered = store.trigger(&name, &actor()).await?;
                match (triggered, args.store.json) {
                    (Triggered::Requested, true) => {
                        format!("{:#}\n", json!({ "job": name, "requested": true }))
                    }
                    (Triggered::Requested, false) => format!(
                        "requested a run of {name}; a running daemon starts it within a second \
                         (see `cronwarden runs list --job {name}`)\n"
                    ),
                    (Triggered::Started(run), true) => {
                        format!("{:#}\n", json!({ "job": name, "run": run }))
                    }
                    (Triggered::Started(run), false) => {
                        format!("started run {run} of {name} (see `cronwarden runs show {run}`)\n")
                    }
                }
            }
            JobsCommand::Pause { name, reason } => {
                let name = job_name(&name)?;
                let job = store.set_paused(&name, Some(&reason)).await?;
                if args.store.json {
                    format!("{:#}\n", job_json(&job, None))
                } else {
                    format!("paused {name}: {reason}\n")
                }
            }
            JobsCommand::Resume { name } => {
                let name = job_name(&name)?;
                let job = store.set_paused(&name, None).await?;
                let note = if job.spec.enabled {
                    ""
                } else {
                    " (its definition still has `enabled = false`: it stays off until that changes)"
                };
                if args.store.json {
                    format!("{:#}\n", job_json(&job, None))
                } else {
                    format!("resumed {name}{note}\n")
                }
            }
        };
        store.close().await;
        write_out(&text)
    })
}

fn job_json(job: &JobRecord, stats: Option<&cronwarden::store::JobStats>) -> serde_json::Value {
    let mut doc = json!({
        "spec": shown_spec(&job.spec),
        "paused": job.paused,
        "enabled": job.effective_spec().enabled,
        "version": job.version,
        "created_at": job.created_at.to_string(),
        "updated_at": job.updated_at.to_string(),
    });
    if let Some(s) = stats {
        doc["stats"] = json!({
            "runs": s.runs,
            "succeeded": s.succeeded,
            "failed": s.failed,
            "consecutive_failures": s.consecutive_failures,
            "success_rate": s.success_rate(),
            "duration_p50_ms": s.duration_p50.map(|d| d.as_millis()),
            "duration_p95_ms": s.duration_p95.map(|d| d.as_millis()),
            "duration_max_ms": s.duration_max.map(|d| d.as_millis()),
            "last_success": s.last_success.map(|t| t.to_string()),
            "last_failure": s.last_failure.map(|t| t.to_string()),
        });
    }
    doc
}

/// `cronwarden runs`.
pub fn runs(args: RunsArgs) -> Result<(), CliError> {
    runtime()?.block_on(async {
        let store = Source::open(&args.store).await?;
        let text = match args.command {
            RunsCommand::List { job, status, limit } => {
                let filter = RunFilter {
                    job: job.as_deref().map(job_name).transpose()?,
                    status: status.as_deref().map(RunStatus::from_str).transpose().map_err(CliError)?,
                    limit: Some(limit),
                    ..RunFilter::default()
                };
                let runs = store.list_runs(&filter).await?;
                if args.store.json {
                    format!("{:#}\n", json!(runs.iter().map(run_json).collect::<Vec<_>>()))
                } else {
                    let mut out = format!("{:<8} {:<24} {:<20} {:<8} {:<3} {:<12} {}\n", "ID", "JOB", "SCHEDULED", "TRIGGER", "TRY", "STATUS", "DURATION");
                    for r in &runs {
                        out.push_str(&format!(
                            "{:<8} {:<24} {:<20} {:<8} {:<3} {:<12} {}\n",
                            r.id.to_string(),
                            r.job.as_str(),
                            when(Some(r.scheduled_at)),
                            r.trigger.as_str(),
                            r.attempt,
                            r.status.as_str(),
                            r.duration().map_or_else(|| "-".to_owned(), human)
                        ));
                    }
                    out
                }
            }
            RunsCommand::Show { id } => {
                let Some(run) = store.get_run(RunId(id)).await? else {
                    return Err(CliError(format!("no run has id {id}")));
                };
                if args.store.json {
                    format!("{:#}\n", run_json(&run))
                } else {
                    let mut out = format!(
                        "run {} of {}\n  scheduled: {}\n  trigger: {} (attempt {})\n  status: {}\n  started: {}\n  finished: {}\n",
                        run.id, run.job, when(Some(run.scheduled_at)), run.trigger.as_str(), run.attempt, run.status, when(run.started_at), when(run.finished_at)
                    );
                    if let Some(code) = run.exit_code {
                        out.push_str(&format!("  exit code: {code}\n"));
                    }
                    if let Some(error) = &run.error {
                        out.push_str(&format!("  error: {error}\n"));
                    }
                    if let Some(output) = &run.output {
                        out.push_str("  output:\n");
                        for line in output.lines() {
                            out.push_str(&format!("    {line}\n"));
                        }
                    }
                    out
                }
            }
        };
        store.close().await;
        write_out(&text)
    })
}

/// Who the CLI acts as, in the audit log.
fn actor() -> String {
    format!(
        "cli ({})",
        std::env::var("USER").unwrap_or_else(|_| "unknown user".to_owned())
    )
}

/// Writes a change made through the CLI to the audit log.
pub(super) async fn audit(
    store: &dyn Store,
    action: &str,
    target: &str,
    detail: Option<serde_json::Value>,
) -> Result<(), CliError> {
    let actor = actor();
    store
        .record_audit(cronwarden::store::NewAudit {
            at: Timestamp::now(),
            actor: &actor,
            source: None,
            action,
            target: Some(target),
            detail,
        })
        .await
        .map(|_| ())
        .map_err(store_error)
}

/// A definition as shown: literal credentials redacted, as the API shows them.
pub(crate) fn shown_spec(spec: &cronwarden::model::JobSpec) -> cronwarden::model::JobSpec {
    let mut shown = spec.clone();
    shown.action = cronwarden::secret::redact_action(&spec.action);
    shown
}
