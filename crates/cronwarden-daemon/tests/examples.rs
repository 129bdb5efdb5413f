//! Every example configuration in the workspace's `examples/` directory validates with the real
//! binary: each `cronwarden.toml` found there (at any depth), and `examples/quickstart.toml`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The environment variables that override settings: unset, so that the caller's environment
/// cannot change what is validated.
const OVERRIDES: [&str; 9] = [
    "CRONWARDEN_DATABASE",
    "CRONWARDEN_DATABASE_URL",
    "CRONWARDEN_METRICS_PUBLIC",
    "CRONWARDEN_NODE",
    "CRONWARDEN_LISTEN",
    "CRONWARDEN_MAX_CONCURRENT_RUNS",
    "CRONWARDEN_SHUTDOWN_GRACE",
    "CRONWARDEN_RETENTION_KEEP_LAST",
    "CRONWARDEN_RETENTION_MAX_AGE",
];

/// The quickstart, plus the example systems (one directory each).
const AT_LEAST: usize = 6;

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// Appends every file named `cronwarden.toml` under `dir`, at any depth.
fn find_configs(dir: &Path, found: &mut Vec<PathBuf>) {
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
    for entry in entries {
        let entry = entry.unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
        let path = entry.path();
        let kind = entry
            .file_type()
            .unwrap_or_else(|e| panic!("cannot stat {}: {e}", path.display()));
        if kind.is_dir() {
            find_configs(&path, found);
        } else if entry.file_name() == "cronwarden.toml" {
            found.push(path);
        }
    }
}

/// The configuration files to check, sorted.
fn configs() -> Vec<PathBuf> {
    let dir = examples_dir();
    let mut found = vec![dir.join("quickstart.toml")];
    find_configs(&dir, &mut found);
    found.sort();
    found.dedup();
    found
}

#[test]
fn every_example_config_validates() {
    let configs = configs();
    assert!(
        configs.len() >= AT_LEAST,
        "expected at least {AT_LEAST} example configs, found {}: {configs:#?}",
        configs.len()
    );
    // Every file is checked before failing, so that one run reports every broken example.
    let mut failures = Vec::new();
    for path in &configs {
        let mut command = Command::new(env!("CARGO_BIN_EXE_cronwarden"));
        for var in OVERRIDES {
            command.env_remove(var);
        }
        let out = command
            .arg("validate")
            .arg(path)
            .output()
            .expect("the binary runs");
        if !out.status.success() {
            failures.push(format!(
                "{}: {}\n{}",
                path.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} example configs do not validate:\n{}",
        failures.len(),
        configs.len(),
        failures.join("\n")
    );
}
