//! Command jobs: a program run without a shell, in its own process group.

use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

use super::{Executor, Outcome, RunContext};
use crate::model::Action;

/// How long a cancelled command gets between SIGTERM and SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(2);

/// Runs [`Action::Command`]s. Each command leads a new process group, so that cancelling it
/// (timeout, shutdown, replace) signals everything it started, not just the first process.
#[derive(Clone, Debug)]
pub struct CommandExecutor {
    /// Bytes kept from the end of stdout and of stderr.
    pub output_limit: usize,
}

impl Default for CommandExecutor {
    fn default() -> Self {
        CommandExecutor {
            output_limit: 64 * 1024,
        }
    }
}

/// Reads a stream to its end, keeping only its last `limit` bytes.
async fn tail(mut stream: impl AsyncRead + Unpin, limit: usize) -> (Vec<u8>, u64) {
    let mut kept = Vec::new();
    let mut total = 0u64;
    let mut buf = [0u8; 8192];
    while let Ok(n) = stream.read(&mut buf).await {
        if n == 0 {
            break;
        }
        total += n as u64;
        kept.extend_from_slice(&buf[..n]);
        if kept.len() > limit {
            kept.drain(..kept.len() - limit);
        }
    }
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

fn signal_group(pgid: u32, signal: Signal) {
    // The group may be gone already; that is the outcome we want.
    let _ = killpg(Pid::from_raw(pgid as i32), signal);
}

#[async_trait]
impl Executor for CommandExecutor {
    async fn execute(&self, action: &Action, ctx: &RunContext) -> Outcome {
        let Action::Command { argv, env, cwd } = action else {
            return Outcome::fatal("not a command action");
        };
        let Some((program, args)) = argv.split_first() else {
            return Outcome::fatal("the command is empty");
        };
        let mut command = Command::new(program);
        command
            .args(args)
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
        let mut child = match command.spawn() {
            Ok(child) => child,
            // A program that cannot be started will not start on a retry either.
            Err(e) => return Outcome::fatal(format!("cannot start {program:?}: {e}")),
        };
        let pgid = child.id();
        let stdout = child
            .stdout
            .take()
            .map(|s| tokio::spawn(tail(s, self.output_limit)));
        let stderr = child
            .stderr
            .take()
            .map(|s| tokio::spawn(tail(s, self.output_limit)));

        let status = tokio::select! {
            status = child.wait() => Some(status),
            () = ctx.cancel.cancelled() => None,
        };
        let status = match status {
            Some(status) => status,
            None => {
                if let Some(pgid) = pgid {
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
                if let Some(pgid) = pgid {
                    signal_group(pgid, Signal::SIGKILL);
                }
                return Outcome::retryable("cancelled");
            }
        };
        // The leader exited; anything it left running in its group would keep the pipes open.
        if let Some(pgid) = pgid {
            signal_group(pgid, Signal::SIGKILL);
        }
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
