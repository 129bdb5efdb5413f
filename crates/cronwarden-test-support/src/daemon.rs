//! Helpers for tests that run `cronwarden serve` as a real process, on the real clock.

use std::path::Path;
use std::time::{Duration, Instant};

/// Waits until `check` holds, failing the test after `limit`: these tests wait for real time,
/// but only as long as the condition needs.
pub fn wait_for(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let give_up = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < give_up, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The daemon's API address, read from its log line `cronwarden is running ... api=ADDR`.
pub fn api_address(log: &Path) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    let line = text.lines().find(|l| l.contains("cronwarden is running"))?;
    let at = line.find("api=")? + 4;
    Some(line[at..].split_whitespace().next()?.to_owned())
}
