//! Job definitions: validation names the field and the reason.

use cronwarden::model::{Action, JobName, JobSpec, MisfirePolicy, RetryPolicy};
use jiff::SignedDuration;

fn job() -> JobSpec {
    JobSpec::new(
        JobName::new("report").unwrap(),
        Some("0 3 * * *"),
        Action::Command {
            argv: vec!["true".into()],
            env: Default::default(),
            inherit_env: Vec::new(),
            cwd: None,
        },
    )
}

fn error(mut change: impl FnMut(&mut JobSpec)) -> String {
    let mut spec = job();
    change(&mut spec);
    spec.validate().unwrap_err().to_string()
}

#[test]
fn a_valid_job_validates() {
    job().validate().unwrap();
}

#[test]
fn names_are_plain_slugs() {
    for good in ["report", "sync-users", "a.b_c-1", "9lives"] {
        JobName::new(good).unwrap();
    }
    for bad in [
        "",
        "Report",
        "-lead",
        "has space",
        "ümlaut",
        &"x".repeat(65),
    ] {
        let e = JobName::new(bad).unwrap_err();
        assert_eq!(e.field, "name", "{bad:?}");
    }
}

#[test]
fn each_invalid_field_is_named() {
    assert!(error(|j| j.schedule = Some("61 * * * *".into()))
        .starts_with("schedule: the minute field allows 0-59, got 61"));
    assert_eq!(
        error(|j| j.time_zone = "Mars/Olympus".into()),
        "time_zone: \"Mars/Olympus\" is not a known IANA time zone"
    );
    assert_eq!(
        error(|j| j.jitter = Some(SignedDuration::from_secs(-5))),
        "jitter: must be positive, got -5s"
    );
    assert_eq!(
        error(|j| j.timeout = Some(SignedDuration::ZERO)),
        "timeout: must be positive, got 0s"
    );
    assert_eq!(
        error(|j| j.retry.max_attempts = 0),
        "retry.max_attempts: must be at least 1 (1 means no retries)"
    );
    assert_eq!(
        error(|j| j.retry.multiplier = 0.5),
        "retry.multiplier: must be at least 1, got 0.5"
    );
    assert_eq!(
        error(|j| j.retry.jitter = 2.0),
        "retry.jitter: must be between 0 and 1, got 2"
    );
    assert_eq!(
        error(|j| j.max_concurrency = 0),
        "max_concurrency: must be at least 1"
    );
    assert_eq!(
        error(|j| j.misfire = MisfirePolicy::RunAll {
            window: SignedDuration::ZERO
        }),
        "misfire.window: must be positive, got 0s"
    );
    assert_eq!(
        error(|j| j.after = vec![JobName::new("report").unwrap()]),
        "after: a job cannot run after itself"
    );
    assert_eq!(
        error(|j| j.action = Action::Command {
            argv: vec![],
            env: Default::default(),
            inherit_env: Vec::new(),
            cwd: None
        }),
        "action.argv: needs at least the program to run"
    );
}

#[test]
fn backoff_grows_by_the_multiplier_up_to_the_cap_with_bounded_jitter() {
    let policy = RetryPolicy {
        max_attempts: 10,
        jitter: 0.2,
        ..RetryPolicy::default()
    };
    for attempt in 1..=10 {
        let base = (10.0 * 2f64.powi(attempt as i32 - 1)).min(600.0);
        for unit in [0.0, 0.25, 0.5, 0.999] {
            let delay = policy.delay_after(attempt, unit).as_secs_f64();
            assert!(
                delay >= base * 0.8 - 1e-9 && delay <= (base * 1.2).min(600.0) + 1e-9,
                "attempt {attempt}: {delay}"
            );
        }
    }
}
