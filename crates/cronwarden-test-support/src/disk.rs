//! A small file system of a test's own, to fill up: a full disk, for real.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::TestDir;

/// A tmpfs of a fixed size mounted on a directory of the test's own, unmounted when dropped.
/// Mounting needs the privilege to mount (root, as in CI); without it, [`SmallDisk::mount`]
/// skips the test (after saying why), except under `CI=true`, where that fails it.
pub struct SmallDisk {
    dir: TestDir,
    filler: PathBuf,
}

impl SmallDisk {
    /// A new tmpfs of `bytes` bytes, named after `prefix`; `None` when it cannot be mounted.
    pub fn mount(prefix: &str, bytes: u64) -> Option<SmallDisk> {
        let dir = TestDir::new(prefix);
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir.path())
            .output();
        match mounted {
            Ok(out) if out.status.success() => {}
            Ok(out) => {
                return crate::unavailable(&format!(
                    "cannot mount a tmpfs to fill (needs root): {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ))
            }
            Err(e) => return crate::unavailable(&format!("cannot run mount: {e}")),
        }
        let filler = dir.path().join("filler");
        Some(SmallDisk { dir, filler })
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file until the disk is full. Returns how many bytes it took.
    pub fn fill(&self) -> u64 {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.filler)
            .expect("the filler file");
        let block = vec![0u8; 4096];
        let mut written = 0u64;
        loop {
            match file.write(&block) {
                Ok(0) | Err(_) => break,
                Ok(n) => written += n as u64,
            }
        }
        // A last partial block, and whatever single bytes still fit.
        while let Ok(1) = file.write(&block[..1]) {
            written += 1;
        }
        written
    }

    /// Removes what [`SmallDisk::fill`] wrote.
    pub fn free(&self) {
        let _ = std::fs::remove_file(&self.filler);
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        // Lazily: a store may still hold files open on it.
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}
