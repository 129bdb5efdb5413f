//! Scratch directories for tests, that do not pile up over runs.

use std::path::{Path, PathBuf};

/// A directory of one test's own (`{temp}/cronwarden-{prefix}-...`), removed with everything
/// in it when dropped, whether the test passed or failed. Files still open (a store's) are
/// removed too; on Unix they go once closed.
pub struct TestDir(tempfile::TempDir);

impl TestDir {
    /// A new, empty directory named after `prefix`.
    pub fn new(prefix: &str) -> TestDir {
        TestDir(
            tempfile::Builder::new()
                .prefix(&format!("cronwarden-{prefix}-"))
                .tempdir()
                .expect("a temporary directory"),
        )
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        self.0.path()
    }
}

impl std::ops::Deref for TestDir {
    type Target = Path;

    fn deref(&self) -> &Path {
        self.0.path()
    }
}

impl AsRef<Path> for TestDir {
    fn as_ref(&self) -> &Path {
        self.0.path()
    }
}

/// This process's scratch directory for `prefix`, shared by its tests:
/// `{temp}/cronwarden-{prefix}-{pid}`, for files that no one test owns to the end (a store
/// that a harness hands out, say).
///
/// The tests of one process run side by side and none knows when the last has ended, so the
/// directory is not removed when they end. Instead, the first call in each process removes
/// the directories that processes no longer running left behind: a run's files are gone after
/// the next run.
pub fn scratch_dir(prefix: &str) -> PathBuf {
    static REAPED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let stem = format!("cronwarden-{prefix}-");
    {
        let mut reaped = REAPED.lock().unwrap_or_else(|e| e.into_inner());
        if !reaped.contains(&stem) {
            reaped.push(stem.clone());
            remove_left_behind(&stem);
        }
    }
    let dir = std::env::temp_dir().join(format!("{stem}{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    dir
}

/// Removes `{temp}/{stem}{pid}` for every `pid` that is not a running process.
fn remove_left_behind(stem: &str) {
    // Whether a process is running, from /proc; elsewhere, nothing is taken for dead.
    let running =
        |pid: u32| !cfg!(target_os = "linux") || Path::new(&format!("/proc/{pid}")).exists();
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(stem))
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !running(pid) {
            // Another process may be removing it too.
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}
