//! The processes of command jobs: how they are started so that they die with the daemon, and
//! the ledger that lets a restarted daemon end what a killed one left running.
//!
//! Two mechanisms, because each covers what the other cannot:
//!
//! - **Parent-death signal.** Every command's first process (its group leader) asks the kernel
//!   for SIGKILL when the thread that started it ends (`PR_SET_PDEATHSIG`, Linux). That thread
//!   is one of a few spawner threads that live as long as the process ([`spawn`]): a runtime's
//!   worker or blocking thread may be retired while the daemon lives on, which would kill its
//!   children for no reason. So when
//!   the daemon dies, however it dies, its commands' leaders die at once. Their own children
//!   (a shell's `sleep`) do not: they stay in the group, re-parented to init.
//! - **The process ledger** ([`ProcessLedger`]). Before a command's program runs, its process
//!   group is recorded in a file; the file is removed once the group has been killed. A daemon
//!   that starts finds the files of a previous daemon that died, kills each group that is still
//!   there and waits until none of its processes remains ([`ProcessLedger::reap_leftovers`]):
//!   the scheduler does this before it retries the runs that daemon left unfinished.

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

use crate::model::RunId;

/// How long start-up recovery waits for a killed group's processes to be gone.
const REAP_PATIENCE: Duration = Duration::from_secs(10);

/// A request to the spawner thread.
struct SpawnRequest {
    command: Command,
    runtime: tokio::runtime::Handle,
    reply: tokio::sync::oneshot::Sender<io::Result<Child>>,
}

/// How many spawner threads there are: forking (which `pre_exec` requires) copies the
/// daemon's page tables and the spawning thread waits for the child's `exec`, so a burst of
/// commands goes faster spread over a few threads.
const SPAWNERS: usize = 4;

/// Starts `command` from one of the spawner threads, which live as long as the process: a
/// child's parent-death signal fires when the thread that forked it ends, so forking from a
/// thread of the runtime's (which may be retired) could kill a command while the daemon lives.
pub(crate) async fn spawn(command: Command) -> io::Result<Child> {
    static SPAWNER: OnceLock<Option<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (send, receive) = mpsc::channel::<SpawnRequest>();
        let receive = std::sync::Arc::new(std::sync::Mutex::new(receive));
        let started = (0..SPAWNERS)
            .filter(|i| {
                let receive = receive.clone();
                std::thread::Builder::new()
                    .name(format!("cronwarden-spawner-{i}"))
                    .spawn(move || spawn_requests(&receive))
                    .is_ok()
            })
            .count();
        (started > 0).then_some(send)
    });
    let Some(spawner) = spawner else {
        return Err(io::Error::other(
            "the threads that start commands could not be started",
        ));
    };
    let (reply, result) = tokio::sync::oneshot::channel();
    spawner
        .send(SpawnRequest {
            command,
            runtime: tokio::runtime::Handle::current(),
            reply,
        })
        .map_err(|_| io::Error::other("the threads that start commands have ended"))?;
    result
        .await
        .map_err(|_| io::Error::other("the threads that start commands have ended"))?
}

/// A spawner thread's life: takes requests, one at a time, for as long as the process lives.
fn spawn_requests(requests: &std::sync::Mutex<mpsc::Receiver<SpawnRequest>>) {
    loop {
        // Held while waiting: the next idle thread waits for the lock, then for a request.
        let request = match requests.lock() {
            Ok(requests) => requests.recv(),
            Err(_) => return,
        };
        let Ok(request) = request else {
            return;
        };
        // tokio's child handling registers with the runtime the command runs on.
        let entered = request.runtime.enter();
        let mut command = request.command;
        let result = command.spawn();
        drop(command);
        drop(entered);
        if let Err(Ok(child)) = request.reply.send(result) {
            // Nobody waits for it any more (the run was dropped): end it.
            if let Some(pid) = child.id() {
                signal_group(pid, Signal::SIGKILL);
            }
        }
    }
}

/// Sends `signal` to the process group `pgid`; a group that is gone already is what we want.
pub(crate) fn signal_group(pgid: u32, signal: Signal) {
    let _ = killpg(Pid::from_raw(pgid as i32), signal);
}

/// Makes the command's process, between fork and exec, ask for SIGKILL when its parent thread
/// ends and (with `entry`) write its identity into its ledger entry: both done before the
/// program runs, so no work is done by a process that would outlive the daemon unrecorded.
///
/// The one place in the workspace that allows `unsafe`: the hook runs in the child of a
/// multi-threaded process, where only async-signal-safe calls are allowed.
#[allow(unsafe_code)]
pub(crate) fn prepare_child(command: &mut Command, entry: Option<OwnedFd>) {
    let parent = nix::unistd::getpid();
    // SAFETY: `in_child` only makes system calls (prctl, getppid, open, read, write, close),
    // which are async-signal-safe, on memory allocated before the fork (the captured file
    // descriptor and a path literal) or on its own stack; it allocates nothing, takes no lock,
    // and reports failures as raw OS error codes, which allocate nothing either.
    unsafe {
        command.pre_exec(move || in_child(parent, entry.as_ref()));
    }
}

/// The child's side of [`prepare_child`].
fn in_child(parent: Pid, entry: Option<&OwnedFd>) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
        // The daemon may have died between the fork and the line above, and then no signal
        // will come: go no further.
        if nix::unistd::getppid() != parent {
            return Err(Errno::ESRCH.into());
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = parent;
    if let Some(entry) = entry {
        // The kernel's own line for this process: its pid (the group's id) and start time.
        // The fields needed come first, well within the buffer.
        let stat = nix::fcntl::open(
            c"/proc/self/stat",
            nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )?;
        let mut line = [0u8; 512];
        let mut len = 0;
        while len < line.len() {
            match nix::unistd::read(&stat, &mut line[len..]) {
                Ok(0) => break,
                Ok(n) => len += n,
                Err(Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let mut written = 0;
        while written < len {
            match nix::unistd::write(entry, &line[written..len]) {
                Ok(n) => written += n,
                Err(Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}

/// What `/proc/PID/stat` says of a process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ProcessStat {
    pid: i32,
    /// `R`, `S`, `D`, `Z` (a zombie, which does nothing any more), ...
    state: u8,
    pgrp: i32,
    /// Clock ticks after boot: with the pid, what tells a process from a later one that got
    /// the same pid.
    start: u64,
}

impl ProcessStat {
    fn parse(text: &str) -> Option<ProcessStat> {
        let (pid, rest) = text.split_once(" (")?;
        // The command name may hold anything, parentheses too: the fields follow the last ')'.
        let (_, fields) = rest.rsplit_once(") ")?;
        let fields: Vec<&str> = fields.split(' ').collect();
        // Fields are numbered from 1 in proc(5); the name is 2, so `fields[0]` is field 3.
        Some(ProcessStat {
            pid: pid.trim().parse().ok()?,
            state: *fields.first()?.as_bytes().first()?,
            pgrp: fields.get(2)?.parse().ok()?,
            start: fields.get(19)?.parse().ok()?,
        })
    }

    fn of(pid: i32) -> Option<ProcessStat> {
        ProcessStat::parse(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
    }

    fn of_self() -> io::Result<ProcessStat> {
        let text = fs::read_to_string("/proc/self/stat")?;
        ProcessStat::parse(&text)
            .ok_or_else(|| io::Error::other(format!("cannot read /proc/self/stat: {text:?}")))
    }

    fn is_live(&self) -> bool {
        !matches!(self.state, b'Z' | b'X')
    }
}

/// Whether any process of group `pgid` is still alive (zombies, which run nothing, aside).
fn group_is_alive(pgid: i32) -> bool {
    if killpg(Pid::from_raw(pgid), None) == Err(Errno::ESRCH) {
        return false;
    }
    let Ok(entries) = fs::read_dir("/proc") else {
        return true;
    };
    entries.flatten().any(|entry| {
        entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<i32>().ok())
            .and_then(ProcessStat::of)
            .is_some_and(|p| p.pgrp == pgid && p.is_live())
    })
}

/// A record of the process groups of running commands, kept in a directory on this host, so
/// that the processes a killed daemon left behind can be ended before its runs are retried.
///
/// The directory holds one subdirectory per daemon process (named by the host's boot, its pid
/// and its start time), and in it one file per running command: the `/proc/PID/stat` line of
/// the command's first process, whose pid is the group's id. [`ProcessLedger::reap_leftovers`]
/// ends the groups recorded by daemons that are no longer running.
///
/// Linux only (it reads `/proc`). The directory must be on this host: daemons on other hosts
/// would take each other's records for leftovers of an earlier boot and remove them.
#[derive(Debug)]
pub struct ProcessLedger {
    root: PathBuf,
    /// This process's subdirectory.
    own: PathBuf,
    boot: String,
}

/// Tells apart the files of one daemon's commands, even of one run.
static ENTRY_SEQUENCE: AtomicU64 = AtomicU64::new(0);

impl ProcessLedger {
    /// The ledger in `dir` (created if need be; a relative path is made absolute now, since a
    /// command's own working directory applies when its entry is written).
    pub fn open(dir: impl AsRef<Path>) -> io::Result<ProcessLedger> {
        let root = std::path::absolute(dir.as_ref())?;
        let boot = fs::read_to_string("/proc/sys/kernel/random/boot_id")?
            .trim()
            .to_owned();
        let me = ProcessStat::of_self()?;
        let own = root.join(format!("{boot}.{}.{}", me.pid, me.start));
        fs::create_dir_all(&own)?;
        Ok(ProcessLedger { root, own, boot })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.root
    }

    /// A new, empty entry for a command of `run`, its file open for the command's process to
    /// write into.
    pub(crate) fn record(&self, run: RunId) -> io::Result<(PathBuf, OwnedFd)> {
        let n = ENTRY_SEQUENCE.fetch_add(1, Ordering::Relaxed);
        let path = self.own.join(format!("run-{run}-{n}"));
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        Ok((path, OwnedFd::from(file)))
    }

    /// Ends every process group recorded by a daemon of this host that is no longer running,
    /// and waits (up to 10 s) until none of their processes remains; removes their records.
    /// Returns how many groups still had processes. Records of an earlier boot are removed
    /// (their processes ended with it); those of a daemon still running are left alone.
    pub async fn reap_leftovers(&self) -> usize {
        let (root, own, boot) = (self.root.clone(), self.own.clone(), self.boot.clone());
        tokio::task::spawn_blocking(move || reap(&root, &own, &boot))
            .await
            .unwrap_or(0)
    }
}

impl Drop for ProcessLedger {
    fn drop(&mut self) {
        // Empty once every command has ended; kept (for the next start) otherwise.
        let _ = fs::remove_dir(&self.own);
    }
}

/// [`ProcessLedger::reap_leftovers`], blocking.
fn reap(root: &Path, own: &Path, boot: &str) -> usize {
    let Ok(owners) = fs::read_dir(root) else {
        return 0;
    };
    let mut groups = Vec::new();
    for owner in owners.flatten() {
        let dir = owner.path();
        if dir == own {
            continue;
        }
        let name = owner.file_name();
        let Some((owner_boot, pid, start)) = owner_of(&name) else {
            continue;
        };
        if owner_boot != boot {
            let _ = fs::remove_dir_all(&dir);
            continue;
        }
        if ProcessStat::of(pid).is_some_and(|p| p.start == start) {
            // Another daemon on this host, still running: its commands are its own.
            continue;
        }
        for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            match fs::read_to_string(&path) {
                // Empty: the daemon died before the command's process wrote it, so the
                // process never got as far as running the program.
                Ok(text) if text.is_empty() => {
                    let _ = fs::remove_file(&path);
                }
                Ok(text) => match ProcessStat::parse(&text) {
                    Some(leader) => groups.push((path, leader)),
                    None => {
                        tracing::warn!(file = %path.display(), "unreadable process record; removed");
                        let _ = fs::remove_file(&path);
                    }
                },
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "cannot read a process record")
                }
            }
        }
    }
    let mut signalled = Vec::new();
    for (path, leader) in groups {
        // A live process under the leader's pid that started at another time means the pid
        // was free, so the group (whose id kept the pid taken while any member lived) is gone,
        // and a group of that id now is someone else's.
        let reused = ProcessStat::of(leader.pid).is_some_and(|p| p.start != leader.start);
        if !reused && group_is_alive(leader.pid) {
            tracing::warn!(
                pgid = leader.pid,
                record = %path.display(),
                "a command of a daemon that died is still running; killing its process group"
            );
            let _ = killpg(Pid::from_raw(leader.pid), Signal::SIGKILL);
            signalled.push((path, leader.pid));
        } else {
            let _ = fs::remove_file(&path);
        }
    }
    let deadline = Instant::now() + REAP_PATIENCE;
    let count = signalled.len();
    while !signalled.is_empty() {
        signalled.retain(|(path, pgid)| {
            let alive = group_is_alive(*pgid);
            if !alive {
                let _ = fs::remove_file(path);
            }
            alive
        });
        if signalled.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            for (path, pgid) in &signalled {
                // Kept, so that the next start tries again.
                tracing::error!(pgid, record = %path.display(), "a killed process group is still there after 10 s (a process stuck in the kernel?); going on");
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    // The directories of dead daemons, now empty (one with a group that would not die stays).
    for owner in fs::read_dir(root).into_iter().flatten().flatten() {
        if owner.path() != own {
            let _ = fs::remove_dir(owner.path());
        }
    }
    count
}

/// The boot, pid and start time a daemon's subdirectory is named by.
fn owner_of(name: &OsStr) -> Option<(&str, i32, u64)> {
    let mut parts = name.to_str()?.rsplitn(3, '.');
    let start = parts.next()?.parse().ok()?;
    let pid = parts.next()?.parse().ok()?;
    Some((parts.next()?, pid, start))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stat_line_is_read_past_a_name_with_spaces_and_parentheses() {
        let line = "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 97 0 0 0 0 0 0 0 20 0 1 0 123456 2400000 200 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n";
        assert_eq!(
            ProcessStat::parse(line),
            Some(ProcessStat {
                pid: 4242,
                state: b'S',
                pgrp: 4242,
                start: 123456
            })
        );
        let me = ProcessStat::of_self().unwrap();
        assert_eq!(me.pid as u32, std::process::id());
        assert_eq!(ProcessStat::of(me.pid).unwrap().start, me.start);
    }

    #[test]
    fn owner_directories_name_boot_pid_and_start() {
        assert_eq!(
            owner_of(OsStr::new("1b2c-3d.77.991")),
            Some(("1b2c-3d", 77, 991))
        );
        assert_eq!(owner_of(OsStr::new("stray")), None);
    }
}
