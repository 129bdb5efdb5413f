//! `cronwarden validate`, driven as a user would: real files, the real binary, stdout, stderr and
//! exit codes.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// The variables that override settings: removed from every run so that the developer's own
/// environment cannot change a test's outcome.
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

/// Fires are computed after this instant, so that the output is fixed.
const AFTER: &str = "2026-03-28T12:00:00Z";

struct Run {
    code: Option<i32>,
    stdout: String,
    /// With the file's path replaced by `FILE`.
    stderr: String,
}

fn dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("config-tests");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes `text` to a file of its own (tests run in parallel) and returns its path.
fn write(name: &str, text: &str) -> PathBuf {
    let path = dir().join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

fn run(path: &Path, extra: &[&str], env: &[(&str, &str)]) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cronwarden"));
    for var in OVERRIDES {
        command.env_remove(var);
    }
    let output = command
        .arg("validate")
        .arg(path)
        .args(["--after", AFTER])
        .args(extra)
        .envs(env.iter().copied())
        .output()
        .expect("the binary runs");
    let file = path.display().to_string();
    Run {
        code: output.status.code(),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr)
            .unwrap()
            .replace(&file, "FILE"),
    }
}

/// Validates `text` (written to a file named after the test) and returns the run.
fn validate(name: &str, text: &str) -> Run {
    run(&write(name, text), &[], &[])
}

/// Asserts that `text` is rejected with exactly `errors` (without the `error: ` prefix).
fn assert_rejected(name: &str, text: &str, errors: &[&str]) {
    let run = validate(name, text);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(run.stdout.is_empty(), "{}", run.stdout);
    let mut expected: String = errors.iter().map(|e| format!("error: {e}\n")).collect();
    let count = errors.len();
    expected.push_str(&format!(
        "error: FILE is not valid ({count} error{})\n",
        if count == 1 { "" } else { "s" }
    ));
    assert_eq!(run.stderr, expected);
}

const ACTION: &str = r#"action = { type = "command", argv = ["true"] }"#;

const VALID: &str = r#"
[settings]
database = "cronwarden-test.db"
max_concurrent_runs = 4

[[jobs]]
name = "cleanup-sessions"
schedule = "*/5 * * * *"
time_zone = "Europe/Berlin"
action = { type = "command", argv = ["sh", "-c", "echo hi"] }
retry = { max_attempts = 3, initial_delay = "10s" }

[[jobs]]
name = "nightly"
schedule = "30 2 * * *"
time_zone = "Europe/Berlin"
action = { type = "command", argv = ["true"] }

[[jobs]]
name = "report"
after = ["nightly"]
action = { type = "command", argv = ["true"] }

[[jobs]]
name = "archive"
schedule = "0 4 * * *"
enabled = false
pause_reason = "disk replaced on Monday"
action = { type = "command", argv = ["true"] }

[[jobs]]
name = "reindex"
action = { type = "command", argv = ["true"] }
"#;

#[test]
fn a_valid_file_prints_a_line_per_job() {
    let run = validate("valid", VALID);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(run.stderr, "");
    assert_eq!(
        run.stdout,
        "cleanup-sessions: Every 5 minutes, Europe/Berlin; next 2026-03-28T13:05:00+01:00\n\
         nightly: At 02:30 every day, Europe/Berlin; next 2026-03-29T03:00:00+02:00\n\
         report: runs after nightly\n\
         archive: At 04:00 every day, UTC; paused: disk replaced on Monday\n\
         reindex: no schedule; runs only when triggered\n"
    );
}

#[test]
fn a_valid_file_as_json() {
    let run = run(&write("valid-json", VALID), &["--json"], &[]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let doc: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(doc["valid"], true);
    assert_eq!(doc["settings"]["database"], "cronwarden-test.db");
    assert_eq!(doc["settings"]["max_concurrent_runs"], 4);
    assert_eq!(doc["settings"]["listen"], "127.0.0.1:8420");
    assert_eq!(doc["settings"]["shutdown_grace"], "30s");
    assert_eq!(doc["settings"]["retention"]["max_age"], "720h");
    let jobs = doc["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 5);
    assert_eq!(jobs[0]["name"], "cleanup-sessions");
    assert_eq!(jobs[0]["summary"], "Every 5 minutes, Europe/Berlin");
    assert_eq!(jobs[0]["next"], "2026-03-28T13:05:00+01:00");
    assert_eq!(jobs[2]["after"], serde_json::json!(["nightly"]));
    assert_eq!(jobs[2]["next"], Value::Null);
    assert_eq!(jobs[3]["enabled"], false);
    assert_eq!(jobs[3]["next"], Value::Null);
    assert_eq!(jobs[3]["pause_reason"], "disk replaced on Monday");
}

#[test]
fn validating_runs_nothing_and_creates_no_database() {
    let marker = dir().join("ran-marker");
    let database = dir().join("never-created.db");
    let _ = std::fs::remove_file(&marker);
    let _ = std::fs::remove_file(&database);
    let text = format!(
        "[settings]\ndatabase = {:?}\n[[jobs]]\nname = \"touch\"\nschedule = \"* * * * *\"\n\
         action = {{ type = \"command\", argv = [\"touch\", {:?}] }}\n",
        database.display().to_string(),
        marker.display().to_string()
    );
    let run = validate("runs-nothing", &text);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(!marker.exists());
    assert!(!database.exists());
}

#[test]
fn an_empty_file_is_valid() {
    let run = validate("empty", "");
    assert_eq!(run.code, Some(0));
    assert!(
        run.stdout.ends_with("empty.toml: valid, no jobs\n"),
        "{}",
        run.stdout
    );
}

#[test]
fn a_bad_schedule_shows_the_engines_message() {
    assert_rejected(
        "bad-schedule",
        &format!("[[jobs]]\nname = \"cleanup\"\nschedule = \"61 * * * *\"\n{ACTION}\n"),
        &[
            "FILE:3:12: job \"cleanup\": schedule: the minute field allows 0-59, got 61\n  \
           61 * * * *\n  ^^",
        ],
    );
}

#[test]
fn an_unknown_field_is_named_with_a_suggestion() {
    assert_rejected(
        "unknown-field",
        &format!("[[jobs]]\nname = \"cleanup\"\n{ACTION}\ntimout = \"5m\"\n"),
        &["FILE:4:1: job \"cleanup\": timout: unknown field `timout`; did you mean `timeout`?"],
    );
}

#[test]
fn a_bad_duration_says_how_to_write_one() {
    assert_rejected(
        "bad-duration",
        &format!("[[jobs]]\nname = \"cleanup\"\n{ACTION}\ntimeout = \"2d\"\n"),
        &[
            "FILE:4:11: job \"cleanup\": timeout: \"2d\" is not a duration such as \"30s\", \
           \"5m\", \"1h 30m\" or \"720h\" (units up to hours: write 30 days as \"720h\")",
        ],
    );
}

#[test]
fn an_unknown_time_zone_is_named() {
    assert_rejected(
        "unknown-zone",
        &format!(
            "[[jobs]]\nname = \"cleanup\"\nschedule = \"@daily\"\ntime_zone = \"Europe/Berln\"\n{ACTION}\n"
        ),
        &["FILE:4:13: job \"cleanup\": time_zone: \"Europe/Berln\" is not a known IANA time zone"],
    );
}

#[test]
fn duplicate_names_point_at_the_first() {
    assert_rejected(
        "duplicate",
        &format!(
            "[[jobs]]\nname = \"backup\"\n{ACTION}\n\n[[jobs]]\nname = \"backup\"\n{ACTION}\n"
        ),
        &["FILE:6:8: job \"backup\": name: another job is already named \"backup\" (line 2)"],
    );
}

#[test]
fn after_must_name_a_job() {
    assert_rejected(
        "unknown-after",
        &format!(
            "[[jobs]]\nname = \"backup\"\n{ACTION}\n\n[[jobs]]\nname = \"report\"\n{ACTION}\n\
             after = [\"bakup\"]\n"
        ),
        &["FILE:8:10: job \"report\": after: no job is named \"bakup\"; did you mean \"backup\"?"],
    );
}

#[test]
fn after_chains_must_not_loop() {
    assert_rejected(
        "cycle",
        &format!(
            "[[jobs]]\nname = \"extract\"\n{ACTION}\nafter = [\"load\"]\n\n\
             [[jobs]]\nname = \"transform\"\n{ACTION}\nafter = [\"extract\"]\n\n\
             [[jobs]]\nname = \"load\"\n{ACTION}\nafter = [\"transform\"]\n"
        ),
        &[
            "FILE:9:10: job \"transform\": after: cycle: transform runs after extract, extract \
           runs after load, load runs after transform",
        ],
    );
}

#[test]
fn max_attempts_must_be_at_least_one() {
    assert_rejected(
        "max-attempts",
        &format!("[[jobs]]\nname = \"cleanup\"\n{ACTION}\nretry = {{ max_attempts = 0 }}\n"),
        &["FILE:4:26: job \"cleanup\": retry.max_attempts: must be at least 1 (1 means no retries)"],
    );
}

#[test]
fn every_error_is_printed_in_file_order() {
    let text = r#"[settings]
listen = "localhost"

[[jobs]]
name = "backup"
schedule = "0 3 * * *"
time_zone = "Europe/Berln"
action = { type = "command", argv = ["true"] }
retry = { max_attempts = 0 }

[[jobs]]
name = "Report"
action = { type = "command", argv = ["true"] }
after = ["backup"]
timeout = "1 day"

[[jobs]]
name = "backup"
action = { type = "command" }
"#;
    assert_rejected(
        "many",
        text,
        &[
            "FILE:2:10: settings.listen: \"localhost\" is not an IP address and port such as \
             \"127.0.0.1:8420\" or \"[::]:8420\" (host names are not looked up)",
            "FILE:7:13: job \"backup\": time_zone: \"Europe/Berln\" is not a known IANA time zone",
            "FILE:9:26: job \"backup\": retry.max_attempts: must be at least 1 (1 means no \
             retries)",
            "FILE:12:8: job #2: name: \"Report\" is not a valid job name: use 1-64 of a-z, 0-9, \
             '-', '_' and '.', starting with a letter or digit",
            "FILE:15:11: job #2: timeout: \"1 day\" is not a duration such as \"30s\", \"5m\", \
             \"1h 30m\" or \"720h\" (units up to hours: write 30 days as \"720h\")",
            "FILE:18:8: job \"backup\": name: another job is already named \"backup\" (line 5)",
            "FILE:19:10: job \"backup\": action.argv: required, but missing",
        ],
    );
}

#[test]
fn errors_as_json_go_to_stdout_too() {
    let path = write(
        "errors-json",
        &format!("[[jobs]]\nname = \"cleanup\"\n{ACTION}\nretry = {{ max_attempts = 0 }}\n"),
    );
    let run = run(&path, &["--json"], &[]);
    assert_eq!(run.code, Some(2));
    let doc: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(doc["valid"], false);
    let error = &doc["errors"][0];
    assert_eq!(error["line"], 4);
    assert_eq!(error["column"], 26);
    assert_eq!(error["job"], "cleanup");
    assert_eq!(error["job_index"], 0);
    assert_eq!(error["field"], "retry.max_attempts");
    assert_eq!(error["reason"], "must be at least 1 (1 means no retries)");
    assert!(run.stderr.contains("retry.max_attempts"), "{}", run.stderr);
}

#[test]
fn environment_variables_override_settings() {
    let path = write(
        "env",
        "[settings]\nmax_concurrent_runs = 4\nnode = \"from-file\"\n",
    );
    let env = [
        ("CRONWARDEN_MAX_CONCURRENT_RUNS", "8"),
        ("CRONWARDEN_NODE", "from-env"),
        ("CRONWARDEN_RETENTION_MAX_AGE", "48h"),
    ];
    let run = run(&path, &["--json"], &env);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let doc: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(doc["settings"]["max_concurrent_runs"], 8);
    assert_eq!(doc["settings"]["node"], "from-env");
    assert_eq!(doc["settings"]["retention"]["max_age"], "48h");
}

#[test]
fn the_database_url_variable_points_at_postgres_and_its_password_is_never_shown() {
    let path = write("env-database-url", "[settings]\ndatabase = \"file.db\"\n");
    let env = [
        ("CRONWARDEN_DATABASE", "env.db"),
        (
            "CRONWARDEN_DATABASE_URL",
            "postgres://cw:not-a-real-pw-123@db.internal:5432/cronwarden?sslmode=require",
        ),
    ];
    let out = run(&path, &["--json"], &env);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let doc: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        doc["settings"]["database"],
        "postgres://cw:[redacted]@db.internal:5432/cronwarden?sslmode=require"
    );
    assert!(!out.stdout.contains("not-a-real-pw-123"), "{}", out.stdout);

    // Only PostgreSQL: the error names the variable and the problem, not the value.
    let bad = run(
        &path,
        &["--json"],
        &[(
            "CRONWARDEN_DATABASE_URL",
            "mysql://root:not-a-real-pw-123@db/cw",
        )],
    );
    assert_eq!(bad.code, Some(2));
    assert_eq!(
        bad.stderr,
        "error: environment variable CRONWARDEN_DATABASE_URL: settings.database: must be a \
         PostgreSQL URL such as \"postgres://user:password@host:5432/cronwarden\", got a \
         mysql:// URL (a SQLite file is named by CRONWARDEN_DATABASE or the database setting)\n\
         error: FILE is not valid (1 error)\n"
    );
    let doc: Value = serde_json::from_str(&bad.stdout).unwrap();
    assert_eq!(doc["errors"][0]["env"], "CRONWARDEN_DATABASE_URL");
    assert!(!bad.stdout.contains("not-a-real-pw-123"), "{}", bad.stdout);
}

#[test]
fn a_postgres_url_in_the_file_is_valid_and_shown_without_its_password() {
    let path = write(
        "database-postgres",
        "[settings]\ndatabase = \"postgresql://cw:not-a-real-pw-123@db.internal/cronwarden\"\n",
    );
    let run = run(&path, &["--json"], &[]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let doc: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(
        doc["settings"]["database"],
        "postgresql://cw:[redacted]@db.internal/cronwarden"
    );
    assert!(!run.stdout.contains("not-a-real-pw-123"));
}

#[test]
fn bad_environment_variables_are_errors() {
    let path = write("env-bad", "");
    let run = run(
        &path,
        &[],
        &[
            ("CRONWARDEN_SHUTDOWN_GRACE", "soon"),
            ("CRONWARDEN_RETENTION_KEEP_LAST", "0"),
        ],
    );
    assert_eq!(run.code, Some(2));
    assert_eq!(
        run.stderr,
        "error: environment variable CRONWARDEN_SHUTDOWN_GRACE: settings.shutdown_grace: \"soon\" \
         is not a duration such as \"30s\", \"5m\", \"1h 30m\" or \"720h\" (units up to hours: \
         write 30 days as \"720h\")\n\
         error: environment variable CRONWARDEN_RETENTION_KEEP_LAST: settings.retention.keep_last: \
         must be at least 1, got 0\n\
         error: FILE is not valid (2 errors)\n"
    );
}

#[test]
fn a_missing_file_is_an_error() {
    let run = run(&dir().join("does-not-exist.toml"), &[], &[]);
    assert_eq!(run.code, Some(2));
    assert!(
        run.stderr
            .starts_with("error: FILE: cannot read the file: No such file or directory"),
        "{}",
        run.stderr
    );
}

#[test]
fn the_quickstart_example_validates() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/quickstart.toml");
    let out = run(&path, &[], &[]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let names: Vec<&str> = out
        .stdout
        .lines()
        .map(|line| line.split(':').next().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "heartbeat",
            "disk-usage",
            "disk-alert",
            "load-snapshot",
            "stale-tmp-report"
        ]
    );
    assert!(out.stdout.contains("disk-alert: runs after disk-usage\n"));
    assert!(out
        .stdout
        .contains("stale-tmp-report: At 03:30 on Sunday, Europe/Berlin; paused: "));
    let json = run(&path, &["--json"], &[]);
    let doc: Value = serde_json::from_str(&json.stdout).unwrap();
    let jobs = doc["jobs"].as_array().unwrap();
    assert!(jobs.iter().all(|j| j["action"] == "command"));
    assert!(jobs.iter().any(|j| j["description"] != ""));
}
