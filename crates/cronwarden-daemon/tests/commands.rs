//! Command jobs under a real `cronwarden serve`: the environment they get from the daemon's,
//! and what becomes of their processes when the daemon is killed (SIGKILL) and started again.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cronwarden::model::{JobName, Run, RunStatus, Trigger};
use cronwarden::store::RunFilter;
use cronwarden_daemon::store::AnyStore;
use cronwarden_test_support::daemon::wait_for;
use cronwarden_test_support::TestDir;
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

/// The daemon in `dir`, with exactly the environment `env` (and what it needs to run).
fn serve(dir: &Path, env: &[(&str, &str)]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_cronwarden"))
        .args(["serve", "--config", "cronwarden.toml"])
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn signal_and_wait(child: &mut Child, signal: Signal) -> Option<i32> {
    kill(Pid::from_raw(child.id() as i32), signal).unwrap();
    let give_up = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        assert!(Instant::now() < give_up, "the daemon did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `job`'s runs in the daemon's SQLite file in `dir`, oldest first.
fn runs(dir: &Path, job: &str) -> Vec<Run> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = AnyStore::open(dir.join("state.db").to_str().unwrap())
            .await
            .unwrap();
        let filter = RunFilter {
            job: Some(JobName::new(job).unwrap()),
            limit: Some(10_000),
            ..RunFilter::default()
        };
        let mut runs = store.shared().list_runs(&filter).await.unwrap();
        store.close().await;
        runs.reverse();
        runs
    })
}

/// The pid a job wrote into `file` in `dir`, once it has written it whole.
fn pid_in(dir: &Path, file: &str) -> Option<i32> {
    let text = std::fs::read_to_string(dir.join(file)).ok()?;
    text.strip_suffix('\n')?.parse().ok()
}

/// Whether process `pid` is running (a zombie, which does nothing any more, is not).
fn running(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        let state = stat.rsplit_once(") ").unwrap().1.as_bytes()[0];
        !matches!(state, b'Z' | b'X')
    })
}

/// The names of the variables `env` printed, with their values.
fn printed(run: &Run) -> Vec<(String, String)> {
    let mut vars: Vec<(String, String)> = run
        .output
        .as_deref()
        .unwrap_or_default()
        .lines()
        .map(|line| {
            let (name, value) = line.split_once('=').unwrap();
            (name.to_owned(), value.to_owned())
        })
        .collect();
    vars.sort();
    vars
}

#[test]
fn a_command_sees_none_of_the_daemons_secrets_and_exactly_what_is_passed_through() {
    let dir = TestDir::new("commands-env");
    std::fs::write(
        dir.join("cronwarden.toml"),
        r#"
[settings]
database = "state.db"
listen = "127.0.0.1:0"
inherit_env = ["TEAM"]

[[jobs]]
name = "plain"
schedule = "* * * * * *"
action = { type = "command", argv = ["env"] }

[[jobs]]
name = "passing"
schedule = "* * * * * *"
action = { type = "command", argv = ["env"], inherit_env = ["AWS_PROFILE"], env = { TOKEN = "${env:JOB_TOKEN}" } }
"#,
    )
    .unwrap();
    let secrets = [
        ("CRONWARDEN_ADMIN_TOKEN", "bootstrap-admin-token-0123456789"),
        ("AWS_SECRET_ACCESS_KEY", "aws-secret-6c1f0e9b7a2d"),
        ("JOB_TOKEN", "job-token-83hk0Lmw"),
    ];
    let mut env = vec![
        ("HOME", dir.to_str().unwrap()),
        ("LANG", "C.UTF-8"),
        ("AWS_PROFILE", "reports"),
        ("TEAM", "billing"),
    ];
    env.extend(secrets);
    let mut daemon = serve(&dir, &env);
    let succeeded = |job: &str| {
        runs(&dir, job)
            .into_iter()
            .find(|r| r.status == RunStatus::Succeeded)
    };
    wait_for(Duration::from_secs(15), "a run of each job", || {
        succeeded("plain").is_some() && succeeded("passing").is_some()
    });
    assert_eq!(signal_and_wait(&mut daemon, Signal::SIGTERM), Some(0));

    let plain = succeeded("plain").unwrap();
    let passing = succeeded("passing").unwrap();
    for run in [&plain, &passing] {
        let output = run.output.as_deref().unwrap();
        for (name, value) in secrets {
            assert!(!output.contains(value), "{name} reached the job: {output}");
        }
    }
    let expected = |job: &str, run: &Run, extra: &[(&str, &str)]| {
        let mut vars: Vec<(String, String)> = [
            ("PATH", std::env::var("PATH").unwrap().as_str()),
            ("HOME", dir.to_str().unwrap()),
            ("LANG", "C.UTF-8"),
            ("TEAM", "billing"),
            ("CRONWARDEN_JOB", job),
            ("CRONWARDEN_RUN_ID", &run.id.to_string()),
            ("CRONWARDEN_SCHEDULED_AT", &run.scheduled_at.to_string()),
            ("CRONWARDEN_ATTEMPT", "1"),
        ]
        .iter()
        .chain(extra)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        vars.sort();
        vars
    };
    assert_eq!(printed(&plain), expected("plain", &plain, &[]));
    // The job's own secret reaches it, and is cut out of what the run keeps.
    assert_eq!(
        printed(&passing),
        expected(
            "passing",
            &passing,
            &[("AWS_PROFILE", "reports"), ("TOKEN", "[redacted]")]
        )
    );
}

#[test]
fn when_the_daemon_is_killed_its_commands_die_with_it() {
    let dir = TestDir::new("commands-pdeathsig");
    // The shell (the group's leader, the daemon's child) waits for a grandchild.
    std::fs::write(
        dir.join("cronwarden.toml"),
        r#"
[settings]
database = "state.db"
listen = "127.0.0.1:0"

[[jobs]]
name = "long"
schedule = "* * * * * *"
action = { type = "command", argv = ["sh", "-c", "echo $$ > leader.pid; sleep 30 & echo $! > sleeper.pid; wait"] }
"#,
    )
    .unwrap();
    let mut daemon = serve(&dir, &[]);
    wait_for(Duration::from_secs(15), "the command to start", || {
        pid_in(&dir, "sleeper.pid").is_some()
    });
    let leader = pid_in(&dir, "leader.pid").unwrap();
    assert!(running(leader));
    assert_eq!(signal_and_wait(&mut daemon, Signal::SIGKILL), None);
    // No restart: the kernel ends the daemon's child as the daemon goes.
    wait_for(Duration::from_secs(5), "the command to die", || {
        !running(leader)
    });
    // The grandchild outlives it, until a daemon starts again (the next test): end it here.
    let _ = killpg(Pid::from_raw(leader), Signal::SIGKILL);
}

#[test]
fn after_a_kill_the_old_processes_are_gone_before_the_retry_starts() {
    let dir = TestDir::new("commands-reap");
    // The first run starts work in the background and waits for it; every later run (the
    // retry of the first among them) notes which of the first run's processes it sees alive.
    std::fs::write(
        dir.join("cronwarden.toml"),
        r#"
[settings]
database = "state.db"
listen = "127.0.0.1:0"

[[jobs]]
name = "once"
schedule = "* * * * * *"
misfire = { mode = "skip" }
retry = { max_attempts = 2, initial_delay = "1s" }

[jobs.action]
type = "command"
argv = ["sh", "-c", """
if [ ! -e started ]; then
  touch started; echo $$ > leader.pid; sleep 30 & echo $! > sleeper.pid; wait; echo done >> finished
else
  for pid in $(cat leader.pid sleeper.pid); do
    case "$(cut -d ' ' -f 3 /proc/$pid/stat 2>/dev/null)" in
      ''|Z|X) ;;
      *) echo "attempt $CRONWARDEN_ATTEMPT saw $pid alive" >> seen ;;
    esac
  done
  echo "attempt $CRONWARDEN_ATTEMPT checked" >> seen
fi
"""]
"#,
    )
    .unwrap();
    let mut daemon = serve(&dir, &[]);
    wait_for(Duration::from_secs(15), "the first run's work", || {
        pid_in(&dir, "sleeper.pid").is_some()
    });
    let (leader, sleeper) = (
        pid_in(&dir, "leader.pid").unwrap(),
        pid_in(&dir, "sleeper.pid").unwrap(),
    );
    assert_eq!(signal_and_wait(&mut daemon, Signal::SIGKILL), None);
    let in_flight = runs(&dir, "once")
        .into_iter()
        .find(|r| r.status == RunStatus::Running)
        .expect("a run was in flight");
    wait_for(
        Duration::from_secs(5),
        "the leader to die with the daemon",
        || !running(leader),
    );
    // The background work is still at it: only the next start can end it.
    assert!(running(sleeper), "the grandchild lives on until a restart");

    let mut daemon = serve(&dir, &[]);
    wait_for(
        Duration::from_secs(15),
        "the retry of the run in flight",
        || {
            runs(&dir, "once").iter().any(|r| {
                r.scheduled_at == in_flight.scheduled_at && r.attempt == 2 && r.status.is_final()
            })
        },
    );
    assert_eq!(signal_and_wait(&mut daemon, Signal::SIGTERM), Some(0));
    let seen = std::fs::read_to_string(dir.join("seen")).unwrap();
    assert!(
        seen.lines().any(|l| l == "attempt 2 checked") && !seen.contains("alive"),
        "the first run's processes were still there when its retry began:\n{seen}"
    );
    assert!(!running(sleeper));
    assert!(
        !dir.join("finished").exists(),
        "the first attempt's work did not go on to its end"
    );
    let runs = runs(&dir, "once");
    let retry = runs
        .iter()
        .find(|r| r.scheduled_at == in_flight.scheduled_at && r.attempt == 2)
        .unwrap();
    assert_eq!(
        (retry.trigger, retry.status),
        (Trigger::Retry, RunStatus::Succeeded)
    );
    // Every record of a process was removed once its group was gone.
    let records: Vec<_> = std::fs::read_dir(dir.join("cronwarden-processes"))
        .unwrap()
        .flatten()
        .flat_map(|owner| std::fs::read_dir(owner.path()).unwrap().flatten())
        .map(|entry| entry.path())
        .collect();
    assert!(records.is_empty(), "{records:?}");
}
