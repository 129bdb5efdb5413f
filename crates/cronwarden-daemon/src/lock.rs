//! One daemon per SQLite file: `serve` holds an exclusive advisory lock (`flock`) on a lock
//! file beside the database, `<database>.lock`, for as long as it runs.
//!
//! A second daemon on the same file would treat the first one's runs as abandoned and run them
//! again, so it is refused before it touches the store. The lock belongs to the process: the
//! kernel releases it when the daemon exits, however it exits (kill -9 included), so a stale
//! lock file never blocks a restart. The file is opened close-on-exec, so a job's process never
//! inherits it and cannot keep the lock after its daemon is gone. The CLI does not take the
//! lock: it reads and changes the store beside a running daemon, as SQLite allows.
//!
//! The file holds the holder's pid, node and host, so that the refusal can name them. It is
//! never deleted: removing it while another process waits to lock it would let two processes
//! each lock a different file of the same name.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// The lock on a SQLite database, held until dropped (or the process ends).
#[derive(Debug)]
pub struct DatabaseLock {
    path: PathBuf,
    _file: Flock<File>,
}

/// Why the lock could not be taken: the message names the database, the lock file and, when it
/// is another daemon, the process holding it.
#[derive(Debug)]
pub struct LockError(String);

impl std::fmt::Display for LockError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LockError {}

impl DatabaseLock {
    /// Locks the SQLite database at `database` for this process, recording this process as
    /// `node`. Fails at once (it does not wait) when another process holds the lock.
    pub fn acquire(database: &Path, node: &str) -> Result<DatabaseLock, LockError> {
        let path = lock_path(database);
        let cannot = |e: &dyn std::fmt::Display| {
            LockError(format!(
                "cannot lock the database {}: {}: {e}",
                database.display(),
                path.display()
            ))
        };
        // Not truncated on open: the holder's record must survive a refused attempt.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| cannot(&e))?;
        let mut file = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(locked) => locked,
            Err((mut file, Errno::EWOULDBLOCK)) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                return Err(LockError(format!(
                    "the database {} is in use by another cronwarden daemon ({}; it holds the \
                     lock file {}). A SQLite database serves one daemon: stop the other one \
                     first, or give this one its own database (several nodes need PostgreSQL)",
                    database.display(),
                    describe_holder(&holder),
                    path.display()
                )));
            }
            Err((_, e)) => return Err(cannot(&e)),
        };
        let record = format!(
            "pid={} node={node} host={}\n",
            std::process::id(),
            crate::config::hostname()
        );
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(record.as_bytes()))
            .and_then(|()| file.flush())
            .map_err(|e| cannot(&e))?;
        Ok(DatabaseLock { path, _file: file })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// `<database>.lock`, beside the file the database path leads to (through any symbolic link),
/// so that two spellings of one database share one lock.
fn lock_path(database: &Path) -> PathBuf {
    let resolved = std::fs::canonicalize(database).unwrap_or_else(|_| {
        // Not created yet: resolve its directory.
        match (database.parent(), database.file_name()) {
            (Some(dir), Some(name)) => {
                let dir = if dir.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    dir
                };
                std::fs::canonicalize(dir)
                    .map(|dir| dir.join(name))
                    .unwrap_or_else(|_| database.to_owned())
            }
            _ => database.to_owned(),
        }
    });
    let mut name = resolved.into_os_string();
    name.push(".lock");
    PathBuf::from(name)
}

/// The holder as its record says: `pid 41 (node web-1, host db-host)`.
fn describe_holder(record: &str) -> String {
    let field = |key: &str| {
        record
            .split_whitespace()
            .find_map(|pair| pair.strip_prefix(key)?.strip_prefix('='))
    };
    match (field("pid"), field("node"), field("host")) {
        (Some(pid), Some(node), Some(host)) => format!("pid {pid}, node {node}, host {host}"),
        // Locked an instant ago, and not written yet.
        _ => "a process that has not recorded its pid yet".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_database_is_refused_and_names_the_holder() {
        let dir = cronwarden_test_support::TestDir::new("lock");
        let database = dir.join("state.db");
        let held = DatabaseLock::acquire(&database, "first").unwrap();
        let record = std::fs::read_to_string(held.path()).unwrap();
        assert!(
            record.starts_with(&format!("pid={} node=first host=", std::process::id())),
            "{record}"
        );

        // flock locks belong to the open file: a second open in this process conflicts as a
        // second process would. Through a symbolic link, the same file is found.
        std::os::unix::fs::symlink(&database, dir.join("alias.db")).unwrap();
        std::fs::write(&database, "").unwrap();
        for other in [database.clone(), dir.join("alias.db")] {
            let e = DatabaseLock::acquire(&other, "second")
                .unwrap_err()
                .to_string();
            assert!(
                e.contains(&format!("pid {}, node first", std::process::id())),
                "{e}"
            );
            assert!(e.contains(&other.display().to_string()), "{e}");
            assert!(e.contains("state.db.lock"), "{e}");
        }
        // The refused attempt left the holder's record alone.
        assert_eq!(std::fs::read_to_string(held.path()).unwrap(), record);

        drop(held);
        let again = DatabaseLock::acquire(&database, "third").unwrap();
        assert!(std::fs::read_to_string(again.path())
            .unwrap()
            .contains("node=third"));
        drop(again);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_unwritten_record_is_described_as_such() {
        assert_eq!(
            describe_holder(""),
            "a process that has not recorded its pid yet"
        );
        assert_eq!(
            describe_holder("pid=7 node=a host=b\n"),
            "pid 7, node a, host b"
        );
    }
}
