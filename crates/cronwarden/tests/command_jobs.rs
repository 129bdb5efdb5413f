//! Command jobs run as real child processes: the environment they get, their output cut to its
//! limit after secrets are cut out of it, and the process ledger that lets a daemon end what a
//! killed one left running. (What happens when the daemon itself is killed is tested on the
//! real daemon, in the daemon crate's `tests/commands.rs`.)

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use cronwarden::executor::{
    CommandExecutor, Executor, Executors, Outcome, ProcessLedger, RunContext, RustJobs,
    DEFAULT_PATH,
};
use cronwarden::model::{Action, JobName, JobSpec, RunId, Trigger};
use cronwarden_test_support::TestDir;
use tokio_util::sync::CancellationToken;

fn ctx() -> RunContext {
    RunContext {
        run_id: RunId(7),
        job: JobName::new("report").unwrap(),
        scheduled_at: "2026-03-01T02:00:00Z".parse().unwrap(),
        attempt: 1,
        trigger: Trigger::Manual,
        cancel: CancellationToken::new(),
    }
}

fn command(argv: &[&str]) -> Action {
    Action::Command {
        argv: argv.iter().map(|s| s.to_string()).collect(),
        env: BTreeMap::new(),
        inherit_env: Vec::new(),
        cwd: None,
    }
}

/// What `env` printed, as a map (no value here holds a newline).
fn printed_env(outcome: &Outcome) -> BTreeMap<String, String> {
    let Outcome::Succeeded {
        output: Some(output),
        ..
    } = outcome
    else {
        panic!("expected output: {outcome:?}");
    };
    output
        .lines()
        .map(|line| {
            let (name, value) = line.split_once('=').unwrap();
            (name.to_owned(), value.to_owned())
        })
        .collect()
}

/// A daemon's environment, with the credentials a real one holds.
const DAEMON_ENV: [(&str, &str); 11] = [
    ("PATH", "/usr/local/bin:/usr/bin:/bin"),
    ("HOME", "/var/lib/cronwarden"),
    ("LANG", "C.UTF-8"),
    ("LC_TIME", "en_GB.UTF-8"),
    ("TZ", "Europe/Berlin"),
    ("CRONWARDEN_ADMIN_TOKEN", "admin-token-6c1f0e9b7a"),
    (
        "CRONWARDEN_DATABASE_URL",
        "postgres://cron:db-pw-91ab@db/cron",
    ),
    ("AWS_SECRET_ACCESS_KEY", "aws-secret-2f8d"),
    ("AWS_PROFILE", "reports"),
    ("TEAM", "billing"),
    ("OTHER", "not-passed"),
];

#[tokio::test]
async fn a_command_gets_the_base_environment_and_only_the_variables_passed_through() {
    let executor = CommandExecutor::default()
        .with_parent_env(DAEMON_ENV)
        // A name of the daemon's own is never passed, even when a library user asks.
        .with_inherited_env(["TEAM", "CRONWARDEN_ADMIN_TOKEN"]);
    let Action::Command { argv, cwd, .. } = command(&["env"]) else {
        unreachable!()
    };
    let action = Action::Command {
        argv,
        env: BTreeMap::from([("MODE".to_owned(), "full".to_owned())]),
        inherit_env: vec!["AWS_PROFILE".to_owned()],
        cwd,
    };
    let got = printed_env(&executor.execute(&action, &ctx()).await);
    let expected: BTreeMap<String, String> = [
        ("PATH", "/usr/local/bin:/usr/bin:/bin"),
        ("HOME", "/var/lib/cronwarden"),
        ("LANG", "C.UTF-8"),
        ("LC_TIME", "en_GB.UTF-8"),
        ("TZ", "Europe/Berlin"),
        ("TEAM", "billing"),
        ("AWS_PROFILE", "reports"),
        ("MODE", "full"),
        ("CRONWARDEN_JOB", "report"),
        ("CRONWARDEN_RUN_ID", "7"),
        ("CRONWARDEN_SCHEDULED_AT", "2026-03-01T02:00:00Z"),
        ("CRONWARDEN_ATTEMPT", "1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    assert_eq!(got, expected);

    // Without the action's inherit_env, AWS_PROFILE stays behind too.
    let got = printed_env(&executor.execute(&command(&["env"]), &ctx()).await);
    let names: BTreeSet<&str> = got.keys().map(String::as_str).collect();
    assert!(
        !names.contains("AWS_PROFILE") && names.contains("TEAM"),
        "{names:?}"
    );
}

#[tokio::test]
async fn a_daemon_without_path_gives_commands_the_default_one() {
    let executor = CommandExecutor::default().with_parent_env([("HOME", "/root")]);
    let got = printed_env(&executor.execute(&command(&["env"]), &ctx()).await);
    assert_eq!(got["PATH"], DEFAULT_PATH);
    assert_eq!(got["HOME"], "/root");
}

#[test]
fn a_job_cannot_ask_for_the_daemons_own_variables() {
    let job = |action: Action| JobSpec::new(JobName::new("j").unwrap(), None, action);
    let Action::Command { argv, .. } = command(&["env"]) else {
        unreachable!()
    };
    let err = job(Action::Command {
        argv: argv.clone(),
        env: BTreeMap::new(),
        inherit_env: vec![
            "AWS_PROFILE".to_owned(),
            "cronwarden_admin_token".to_owned(),
        ],
        cwd: None,
    })
    .validate()
    .unwrap_err();
    assert_eq!(err.field, "action.inherit_env[1]");
    assert!(err.reason.contains("CRONWARDEN_*"), "{err}");
    let err = job(Action::Command {
        argv: argv.clone(),
        env: BTreeMap::from([(
            "TOKEN".to_owned(),
            "${env:CRONWARDEN_ADMIN_TOKEN}".to_owned(),
        )]),
        inherit_env: Vec::new(),
        cwd: None,
    })
    .validate()
    .unwrap_err();
    assert_eq!(err.field, "action.env.TOKEN");
    assert!(err.reason.contains("never reach a job"), "{err}");
    let err = job(Action::Command {
        argv,
        env: BTreeMap::new(),
        inherit_env: vec!["A=B".to_owned()],
        cwd: None,
    })
    .validate()
    .unwrap_err();
    assert_eq!(err.field, "action.inherit_env[0]");
}

#[tokio::test]
async fn a_stored_job_naming_a_daemon_variable_fails_before_it_runs() {
    // A definition stored before the check existed is refused when it would run.
    let action = Action::Command {
        argv: vec!["sh".into(), "-c".into(), "echo $T > leaked".into()],
        env: BTreeMap::from([("T".to_owned(), "${env:CRONWARDEN_ANYTHING}".to_owned())]),
        inherit_env: Vec::new(),
        cwd: None,
    };
    match Executors::new(RustJobs::new())
        .execute(&action, &ctx())
        .await
    {
        Outcome::Failed {
            error, retryable, ..
        } => {
            assert!(!retryable);
            assert!(error.starts_with("action.env.T: "), "{error}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_secret_that_the_output_limit_falls_in_is_cut_out_whole() {
    let secret = "Zq7-secret-4be1f0c9d2a7-83hk0Lmw";
    assert_eq!(secret.len(), 32);
    let dir = TestDir::new("command-straddle");
    std::fs::write(dir.join("token"), format!("{secret}\n")).unwrap();
    // Before the last 64 KiB (the part kept) begins, the command prints 12 bytes of the
    // secret, whose last 20 bytes start the tail.
    let limit = CommandExecutor::default().output_limit;
    let script = format!(
        "printf %s \"$SECRET\"; head -c {} /dev/zero | tr '\\0' x",
        limit - 20
    );
    let action = Action::Command {
        argv: vec!["sh".into(), "-c".into(), script],
        env: BTreeMap::from([(
            "SECRET".to_owned(),
            format!("${{file:{}}}", dir.join("token").display()),
        )]),
        inherit_env: Vec::new(),
        cwd: None,
    };
    let outcome = Executors::new(RustJobs::new())
        .execute(&action, &ctx())
        .await;
    let Outcome::Succeeded {
        output: Some(output),
        ..
    } = outcome
    else {
        panic!("{outcome:?}");
    };
    assert!(output.ends_with("xxxx"), "the tail is kept");
    for part in secret.as_bytes().windows(8) {
        let part = std::str::from_utf8(part).unwrap();
        assert!(!output.contains(part), "{part:?} of the secret was kept");
    }
}

#[test]
fn a_command_outlives_the_thread_that_first_polled_its_run() {
    // A runtime's threads come and go (its blocking pool retires idle ones); the kernel's
    // parent-death signal follows the thread that forked. The command must not die with it.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let dir = TestDir::new("command-thread");
    let script = format!(
        "touch {started}; while [ ! -e {go} ]; do sleep 0.01; done; echo done",
        started = dir.join("started").display(),
        go = dir.join("go").display()
    );
    let spec = std::sync::Arc::new(JobSpec::new(
        JobName::new("report").unwrap(),
        None,
        command(&["sh", "-c", &script]),
    ));
    let mut execution = Executors::new(RustJobs::new()).start(&spec, ctx());
    let handle = runtime.handle().clone();
    let started = dir.join("started");
    let execution = std::thread::spawn(move || {
        // Polled here until the command runs, then handed on, still running.
        handle.block_on(async {
            tokio::select! {
                outcome = &mut execution => panic!("ended early: {outcome:?}"),
                () = async {
                    while !started.exists() {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                } => {}
            }
        });
        execution
    })
    .join()
    .unwrap();
    // The thread has ended; the command goes on when told to.
    std::fs::write(dir.join("go"), "").unwrap();
    match runtime.block_on(execution) {
        Outcome::Succeeded { output, .. } => assert_eq!(output.as_deref(), Some("done\n")),
        other => panic!("{other:?}"),
    }
}

/// The files of the ledger in `dir`, in every daemon's subdirectory.
fn ledger_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|owner| {
            std::fs::read_dir(owner.path())
                .into_iter()
                .flatten()
                .flatten()
        })
        .map(|entry| entry.path())
        .collect()
}

/// Whether process `pid` is running (a zombie, which does nothing any more, is not).
fn running(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        let state = stat.rsplit_once(") ").unwrap().1.as_bytes()[0];
        !matches!(state, b'Z' | b'X')
    })
}

/// Waits until `check` holds, failing after `limit`.
async fn wait_for(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let give_up = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < give_up, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_running_command_is_in_the_ledger_until_its_group_is_gone() {
    let dir = TestDir::new("ledger-running");
    let ledger_dir = dir.join("processes");
    let executor =
        CommandExecutor::default().with_ledger(ProcessLedger::open(&ledger_dir).unwrap());
    let script = format!(
        "echo $$ > {}; sleep 30 & echo $! > {}; wait",
        dir.join("leader").display(),
        dir.join("sleeper").display()
    );
    let ctx = ctx();
    let cancel = ctx.cancel.clone();
    let run = tokio::spawn(async move {
        executor
            .execute(&command(&["sh", "-c", &script]), &ctx)
            .await
    });
    let pid = |name: &str| -> Option<i32> {
        let text = std::fs::read_to_string(dir.join(name)).ok()?;
        text.strip_suffix('\n')?.parse().ok()
    };
    wait_for(Duration::from_secs(10), "the command to start", || {
        pid("sleeper").is_some()
    })
    .await;
    let leader = pid("leader").unwrap();
    let files = ledger_files(&ledger_dir);
    assert_eq!(files.len(), 1, "{files:?}");
    // The record is the kernel's line for the group's leader, written before it ran `sh`.
    let record = std::fs::read_to_string(&files[0]).unwrap();
    assert!(record.starts_with(&format!("{leader} (")), "{record}");
    cancel.cancel();
    run.await.unwrap();
    assert!(!running(pid("sleeper").unwrap()), "the group was killed");
    assert_eq!(ledger_files(&ledger_dir), Vec::<std::path::PathBuf>::new());
}

#[tokio::test]
async fn the_groups_a_dead_daemon_recorded_are_killed_and_waited_for() {
    let dir = TestDir::new("ledger-reap");
    let ledger_dir = dir.join("processes");
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    // A daemon that is gone: this process's pid, with a start time it never had.
    let dead = ledger_dir.join(format!("{}.{}.1", boot.trim(), std::process::id()));
    std::fs::create_dir_all(&dead).unwrap();
    // What it left: a group whose leader has died and whose member lives on, and a process
    // whose record no longer matches it (its pid was taken by another process since).
    let mut leftover = std::process::Command::new("sh")
        .args(["-c", "sleep 30 & echo $!; exec sleep 30"])
        .process_group(0)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let leader = leftover.id() as i32;
    let leader_stat = std::fs::read_to_string(format!("/proc/{leader}/stat")).unwrap();
    let mut member = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(leftover.stdout.take().unwrap()),
        &mut member,
    )
    .unwrap();
    let member: i32 = member.trim().parse().unwrap();
    std::fs::write(dead.join("run-1-0"), &leader_stat).unwrap();
    let mut unrelated = std::process::Command::new("sleep")
        .arg("30")
        .process_group(0)
        .spawn()
        .unwrap();
    let unrelated_stat = std::fs::read_to_string(format!("/proc/{}/stat", unrelated.id())).unwrap();
    // The same pid, a different start time.
    let (head, tail) = unrelated_stat.rsplit_once(") ").unwrap();
    let mut fields: Vec<&str> = tail.split(' ').collect();
    fields[19] = "1";
    std::fs::write(
        dead.join("run-2-1"),
        format!("{head}) {}", fields.join(" ")),
    )
    .unwrap();
    // And a record its daemon had no time to fill in.
    std::fs::write(dead.join("run-3-2"), "").unwrap();

    let ledger = ProcessLedger::open(&ledger_dir).unwrap();
    assert_eq!(ledger.reap_leftovers().await, 1);
    // Waited for: gone by the time reaping returns.
    assert!(!running(leader) && !running(member));
    assert!(
        running(unrelated.id() as i32),
        "another group is left alone"
    );
    assert!(!dead.exists(), "the dead daemon's records are removed");
    assert_eq!(ledger_files(&ledger_dir), Vec::<std::path::PathBuf>::new());
    unrelated.kill().unwrap();
    unrelated.wait().unwrap();
    leftover.wait().unwrap();
}
