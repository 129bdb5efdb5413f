//! Command jobs: a program run without a shell, in its own process group, in an environment of
//! its own.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use nix::sys::signal::Signal;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

use super::process::{self, signal_group, ProcessLedger};
use super::{Executor, Outcome, RunContext};
use crate::model::Action;
use crate::secret::{RedactingStream, Redactor};

/// How long a cancelled command gets between SIGTERM and SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(2);

/// The variables of the daemon's environment every command gets (those that are set), with
/// every `LC_*`: where programs are, whose home, which language and zone. Nothing else of the
/// daemon's environment reaches a command unless passed through by name (`inherit_env`).
pub const BASE_ENV: [&str; 8] = [
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "TMPDIR", "LANG", "TZ",
];

/// `PATH` for commands when the daemon has none.
pub const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Whether `name` is one of the daemon's own variables (`CRONWARDEN_*`, in any case), which
/// never reach a command from the daemon's environment.
pub fn is_daemon_variable(name: &str) -> bool {
    name.get(..11)
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case("CRONWARDEN_"))
}

/// Checks a name given to pass a variable of the daemon's environment through to commands
/// (`inherit_env`).
pub fn check_inherited_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a variable name is empty".to_owned());
    }
    if name.contains(['=', '\0']) {
        return Err(format!(
            "{name:?} is not a variable name (it holds = or NUL)"
        ));
    }
    if is_daemon_variable(name) {
        return Err(format!(
            "{name:?}: variables named CRONWARDEN_* are the daemon's own settings and never \
             reach a job; give the job what it needs in `env`"
        ));
    }
    Ok(())
}

/// Runs [`Action::Command`]s. Each command leads a new process group, so that cancelling it
/// (timeout, shutdown, replace) signals everything it started, not just the first process.
///
/// A command's environment is built, not inherited: the [`BASE_ENV`] variables and `LC_*` of
/// the daemon's environment (with [`DEFAULT_PATH`] when it has no `PATH`), the variables
/// passed through by name ([`CommandExecutor::with_inherited_env`] and the action's
/// `inherit_env`, never a `CRONWARDEN_*` one), the action's `env`, and the run's identity
/// (`CRONWARDEN_JOB`, `CRONWARDEN_RUN_ID`, `CRONWARDEN_SCHEDULED_AT`, `CRONWARDEN_ATTEMPT`).
///
/// A command's first process gets SIGKILL when the daemon dies (Linux); with a
/// [`ProcessLedger`] ([`CommandExecutor::with_ledger`]), what it started in its group is ended
/// by the next daemon's start-up too (see [`ProcessLedger`]).
#[derive(Clone)]
pub struct CommandExecutor {
    /// Bytes kept from the end of stdout and of stderr.
    pub output_limit: usize,
    /// The environment the base and passed-through variables are taken from.
    parent_env: Arc<BTreeMap<OsString, OsString>>,
    /// Variables every command gets passed through from `parent_env`.
    inherited: Arc<[String]>,
    ledger: Option<Arc<ProcessLedger>>,
}

impl fmt::Debug for CommandExecutor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not the environment's values: they may be credentials.
        f.debug_struct("CommandExecutor")
            .field("output_limit", &self.output_limit)
            .field("inherited", &self.inherited)
            .field("ledger", &self.ledger.as_ref().map(|l| l.dir()))
            .finish_non_exhaustive()
    }
}

impl Default for CommandExecutor {
    /// Takes the process's environment as it is now.
    fn default() -> Self {
        CommandExecutor {
            output_limit: 64 * 1024,
            parent_env: Arc::new(std::env::vars_os().collect()),
            inherited: Arc::from([]),
            ledger: None,
        }
    }
}

impl CommandExecutor {
    /// Takes the base and passed-through variables from `vars` rather than from the process's
    /// environment at the executor's making.
    pub fn with_parent_env<I, K, V>(mut self, vars: I) -> CommandExecutor
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<OsString>,
        V: Into<OsString>,
    {
        self.parent_env = Arc::new(
            vars.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        );
        self
    }

    /// Passes these variables of the daemon's environment through to every command (when set),
    /// in addition to each action's own `inherit_env`. `CRONWARDEN_*` names are ignored (check
    /// names with [`check_inherited_name`]).
    pub fn with_inherited_env<I, S>(mut self, names: I) -> CommandExecutor
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.inherited = names.into_iter().map(Into::into).collect();
        self
    }

    /// Records the process group of every command in `ledger`, so that a daemon starting
    /// after this one died can end what it left running.
    pub fn with_ledger(mut self, ledger: ProcessLedger) -> CommandExecutor {
        self.ledger = Some(Arc::new(ledger));
        self
    }

    /// Ends what the commands of daemons that died left running, per the ledger (nothing
    /// without one); returns how many process groups were still there.
    pub async fn reap_leftovers(&self) -> usize {
        match &self.ledger {
            Some(ledger) => ledger.reap_leftovers().await,
            None => 0,
        }
    }

    /// The variables a command gets from the daemon's environment.
    fn inherited_env<'a>(
        &'a self,
        inherit_env: &'a [String],
    ) -> impl Iterator<Item = (&'a OsStr, &'a OsStr)> + 'a {
        self.parent_env.iter().filter_map(move |(name, value)| {
            let name_text = name.to_str()?;
            let wanted = BASE_ENV.contains(&name_text)
                || name_text.starts_with("LC_")
                || self.inherited.iter().any(|n| n == name_text)
                || inherit_env.iter().any(|n| n == name_text);
            (wanted && !is_daemon_variable(name_text))
                .then_some((name.as_os_str(), value.as_os_str()))
        })
    }

    /// Runs `action`, cutting the values `redactor` holds out of its output as it is read,
    /// before the output is cut to [`CommandExecutor::output_limit`].
    pub async fn execute_with(
        &self,
        action: &Action,
        ctx: &RunContext,
        redactor: &Redactor,
    ) -> Outcome {
        let Action::Command {
            argv,
            env,
            inherit_env,
            cwd,
        } = action
        else {
            return Outcome::fatal("not a command action");
        };
        let Some((program, args)) = argv.split_first() else {
            return Outcome::fatal("the command is empty");
        };
        let mut command = Command::new(program);
        command.args(args).env_clear();
        if !self.parent_env.contains_key(OsStr::new("PATH")) {
            command.env("PATH", DEFAULT_PATH);
        }
        command
            .envs(self.inherited_env(inherit_env))
            .envs(env)
            .env("CRONWARDEN_JOB", ctx.job.as_str())
            .env("CRONWARDEN_RUN_ID", ctx.run_id.to_string())
            .env("CRONWARDEN_SCHEDULED_AT", ctx.scheduled_at.to_string())
            .env("CRONWARDEN_ATTEMPT", ctx.attempt.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        if let Some(dir) = cwd {
            command.current_dir(dir);
        }
        let mut group = Group::default();
        let entry = match &self.ledger {
            Some(ledger) => match ledger.record(ctx.run_id) {
                Ok((path, file)) => {
                    group.record = Some(path);
                    Some(file)
                }
                // Not started: this daemon could not end it after a crash.
                Err(e) => {
                    return Outcome::retryable(format!(
                        "cannot record the command's process in {}: {e}",
                        ledger.dir().display()
                    ))
                }
            },
            None => None,
        };
        process::prepare_child(&mut command, entry);
        let mut child = match process::spawn(command).await {
            Ok(child) => child,
            Err(e) => {
                // A program that cannot be started as written will not start on a retry
                // either; a system short of processes, memory or disk may do better later.
                let fatal = matches!(
                    e.raw_os_error().map(nix::errno::Errno::from_raw),
                    Some(
                        nix::errno::Errno::ENOENT
                            | nix::errno::Errno::EACCES
                            | nix::errno::Errno::ENOEXEC
                            | nix::errno::Errno::ENOTDIR
                            | nix::errno::Errno::EISDIR
                            | nix::errno::Errno::ELOOP
                            | nix::errno::Errno::ENAMETOOLONG
                            | nix::errno::Errno::E2BIG
                    )
                );
                let error = format!("cannot start {program:?}: {e}");
                return if fatal {
                    Outcome::fatal(error)
                } else {
                    Outcome::retryable(error)
                };
            }
        };
        group.pgid = child.id();
        let stdout = child
            .stdout
            .take()
            .map(|s| tokio::spawn(tail(s, self.output_limit, redactor.stream())));
        let stderr = child
            .stderr
            .take()
            .map(|s| tokio::spawn(tail(s, self.output_limit, redactor.stream())));

        let status = tokio::select! {
            status = child.wait() => Some(status),
            () = ctx.cancel.cancelled() => None,
        };
        let status = match status {
            Some(status) => status,
            None => {
                if let Some(pgid) = group.pgid {
                    signal_group(pgid, Signal::SIGTERM);
                    if tokio::time::timeout(TERM_GRACE, child.wait())
                        .await
                        .is_err()
                    {
                        signal_group(pgid, Signal::SIGKILL);
                    }
                }
                let _ = child.wait().await;
                // Children that ignored SIGTERM and outlived the leader still hold the pipes.
                group.kill();
                return Outcome::retryable("cancelled");
            }
        };
        // The leader exited; anything it left running in its group would keep the pipes open.
        group.kill();
        let read = |h: Option<tokio::task::JoinHandle<(Vec<u8>, u64)>>| async move {
            match h {
                Some(h) => h.await.unwrap_or_default(),
                None => (Vec::new(), 0),
            }
        };
        let output = render(read(stdout).await, read(stderr).await);
        match status {
            Ok(s) if s.success() => Outcome::Succeeded {
                output,
                exit_code: Some(0),
            },
            Ok(s) => {
                let exit_code = s.code();
                // 126: found but not executable; 127: not found (from a wrapper such as `sh -c`).
                let retryable = !matches!(exit_code, Some(126 | 127));
                let error = match exit_code {
                    Some(code) => format!("exited with status {code}"),
                    None => format!("killed by a signal ({s})"),
                };
                Outcome::Failed {
                    error,
                    retryable,
                    output,
                    exit_code,
                    retry_after: None,
                }
            }
            Err(e) => Outcome::retryable(format!("waiting for the process failed: {e}")),
        }
    }
}

/// A command's process group and its ledger record: however the execution ends (dropped
/// too), the group is killed and then the record removed.
#[derive(Default)]
struct Group {
    pgid: Option<u32>,
    record: Option<std::path::PathBuf>,
    killed: bool,
}

impl Group {
    fn kill(&mut self) {
        if let (Some(pgid), false) = (self.pgid, self.killed) {
            signal_group(pgid, Signal::SIGKILL);
        }
        self.killed = true;
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.kill();
        if let Some(record) = &self.record {
            let _ = std::fs::remove_file(record);
        }
    }
}

/// Reads a stream to its end, redacting it as it comes and keeping the last `limit` bytes of
/// what is left; with the count of those bytes.
async fn tail(
    mut stream: impl AsyncRead + Unpin,
    limit: usize,
    mut redacting: RedactingStream,
) -> (Vec<u8>, u64) {
    let mut kept = Vec::new();
    let mut total = 0u64;
    let mut buf = [0u8; 8192];
    let mut keep = |kept: &mut Vec<u8>, clean: &[u8]| {
        total += clean.len() as u64;
        kept.extend_from_slice(clean);
        if kept.len() > limit {
            kept.drain(..kept.len() - limit);
        }
    };
    let mut clean = Vec::new();
    while let Ok(n) = stream.read(&mut buf).await {
        if n == 0 {
            break;
        }
        clean.clear();
        redacting.push(&buf[..n], &mut clean);
        keep(&mut kept, &clean);
    }
    clean.clear();
    redacting.finish(&mut clean);
    keep(&mut kept, &clean);
    (kept, total)
}

fn render(stdout: (Vec<u8>, u64), stderr: (Vec<u8>, u64)) -> Option<String> {
    let part = |(bytes, total): (Vec<u8>, u64)| {
        let text = String::from_utf8_lossy(&bytes).into_owned();
        if total > bytes.len() as u64 {
            format!(
                "[... {} earlier bytes dropped]\n{text}",
                total - bytes.len() as u64
            )
        } else {
            text
        }
    };
    let (out, err) = (part(stdout), part(stderr));
    match (out.is_empty(), err.is_empty()) {
        (true, true) => None,
        (false, true) => Some(out),
        (true, false) => Some(format!("[stderr]\n{err}")),
        (false, false) => Some(format!("{out}\n[stderr]\n{err}")),
    }
}

#[async_trait]
impl Executor for CommandExecutor {
    async fn execute(&self, action: &Action, ctx: &RunContext) -> Outcome {
        self.execute_with(action, ctx, &Redactor::default()).await
    }
}
