//! The `cronwarden` binary, driven as a user would: real processes, stdout, stderr, exit codes.

use std::process::{Command, Output};

use serde_json::Value;

fn cronwarden(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cronwarden"))
        .args(args)
        .output()
        .expect("the binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

/// A sample of the shared vectors (every 12th, which covers every zone and feature tag), each
/// through `cronwarden next`.
#[test]
fn next_prints_the_vectors_fires() {
    let vectors = include_str!("../../cronwarden/tests/data/cron-vectors.jsonl");
    let mut checked = 0;
    for line in vectors.lines().step_by(12) {
        let v: Value = serde_json::from_str(line).unwrap();
        let expected: Vec<&str> = v["next"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_str().unwrap())
            .collect();
        let count = expected.len().to_string();
        let out = cronwarden(&[
            "next",
            v["expr"].as_str().unwrap(),
            "--tz",
            v["tz"].as_str().unwrap(),
            "--after",
            v["after"].as_str().unwrap(),
            "-n",
            &count,
        ]);
        assert!(out.status.success(), "{line}: {}", stderr(&out));
        assert_eq!(stdout(&out).lines().collect::<Vec<_>>(), expected, "{line}");
        checked += 1;
    }
    assert!(checked > 200);
}

#[test]
fn next_defaults_to_five_fires_in_utc_after_now() {
    let out = cronwarden(&["next", "* * * * *"]);
    assert!(out.status.success());
    let lines: Vec<String> = stdout(&out).lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 5);
    let now = jiff::Timestamp::now();
    for (i, line) in lines.iter().enumerate() {
        assert!(line.ends_with(":00+00:00"), "{line}");
        let t: jiff::Timestamp = line.parse().unwrap();
        // Strictly after the moment the command ran, within the next few minutes.
        assert!(
            t.as_second() > now.as_second() - 60
                && t.as_second() <= now.as_second() + 60 * (i as i64 + 2),
            "{line}"
        );
    }
}

#[test]
fn next_json_lists_the_fires() {
    let out = cronwarden(&[
        "next",
        "30 2 * * *",
        "--tz",
        "Europe/Berlin",
        "--after",
        "2026-03-28T23:00:00+01:00",
        "-n",
        "2",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let doc: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        doc["fires"],
        serde_json::json!(["2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"])
    );
    assert_eq!(doc["time_zone"], "Europe/Berlin");
    assert_eq!(doc["after"], "2026-03-28T23:00:00+01:00");
}

#[test]
fn next_honours_dst_policy_hash_key_and_origin() {
    let out = cronwarden(&[
        "next",
        "30 2 * * *",
        "--tz",
        "Europe/Berlin",
        "--after",
        "2026-03-28T12:00:00Z",
        "-n",
        "1",
        "--on-gap",
        "skip",
    ]);
    assert_eq!(stdout(&out), "2026-03-30T02:30:00+02:00\n");
    let out = cronwarden(&[
        "next",
        "30 2 * * *",
        "--tz",
        "Europe/Berlin",
        "--after",
        "2026-10-24T12:00:00Z",
        "-n",
        "1",
        "--on-fold",
        "second",
    ]);
    assert_eq!(stdout(&out), "2026-10-25T02:30:00+01:00\n");
    let a = cronwarden(&[
        "next",
        "H H * * *",
        "--hash-key",
        "nightly-report",
        "--after",
        "2026-01-01T00:00:00Z",
    ]);
    let b = cronwarden(&[
        "next",
        "H H * * *",
        "--hash-key",
        "nightly-report",
        "--after",
        "2026-01-01T00:00:00Z",
    ]);
    assert!(a.status.success());
    assert_eq!(stdout(&a), stdout(&b));
    let out = cronwarden(&[
        "next",
        "@every 45m",
        "--origin",
        "2026-01-01T00:10:00Z",
        "--after",
        "2026-01-01T00:00:00Z",
        "-n",
        "2",
    ]);
    assert_eq!(
        stdout(&out),
        "2026-01-01T00:10:00+00:00\n2026-01-01T00:55:00+00:00\n"
    );
}

#[test]
fn bad_input_goes_to_stderr_with_exit_code_2() {
    let out = cronwarden(&["next", "61 * * * *"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    assert_eq!(
        stderr(&out),
        "error: invalid schedule: the minute field allows 0-59, got 61\n  61 * * * *\n  ^^\n"
    );
    let out = cronwarden(&["next", "0 0 31 2 *"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("never fires"), "{}", stderr(&out));
    let out = cronwarden(&["next", "@daily", "--tz", "Mars/Olympus"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("Mars/Olympus"));
    let out = cronwarden(&["next", "@daily", "--after", "yesterday"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--after"));
    let out = cronwarden(&["next", "@daily", "-n", "0"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn explain_describes_the_schedule_and_its_dst_days() {
    let out = cronwarden(&[
        "explain",
        "30 2 * * *",
        "--tz",
        "Europe/Berlin",
        "--after",
        "2027-01-01T00:00:00Z",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "At 02:30 every day, Europe/Berlin\n\
         \x20 2027-03-28: clocks jump from 02:00 to 03:00 (+01:00 to +02:00); the 02:30 run happens once, at 03:00\n\
         \x20 2027-10-31: clocks go back from 03:00 to 02:00 (+02:00 to +01:00), so 02:00 to 03:00 happens twice; \
         the 02:30 run happens in the first pass only\n"
    );
    let out = cronwarden(&["explain", "*/15 9-17 * * MON-FRI", "--json"]);
    let doc: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        doc["summary"],
        "Every 15 minutes, between 09:00 and 17:59 on Monday through Friday, UTC"
    );
    assert_eq!(
        doc["dst"],
        serde_json::json!(["UTC has no daylight-saving changes."])
    );
    let out = cronwarden(&["explain", "0 25 * * *"]);
    assert_eq!(out.status.code(), Some(2));
}
