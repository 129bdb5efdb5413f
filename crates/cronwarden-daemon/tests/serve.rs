//! `cronwarden serve` as a real process: it runs jobs, stops gracefully on SIGTERM, and after a
//! SIGKILL the next start accounts for every run that was in flight. On SQLite, and on
//! PostgreSQL (`CRONWARDEN_TEST_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/test`;
//! skipped when no server answers, except under `CI=true`).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cronwarden::model::{JobName, Run, RunStatus, Trigger};
use cronwarden::store::RunFilter;
use cronwarden_daemon::store::AnyStore;
use cronwarden_test_support::daemon::{api_address, wait_for};
use cronwarden_test_support::TestDir;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// A directory of the test's own, removed when it ends.
fn temp_dir(name: &str) -> TestDir {
    TestDir::new(&format!("serve-{name}"))
}

fn serve(dir: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_cronwarden"))
        .args(["serve", "--config", "cronwarden.toml"])
        .current_dir(dir)
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
    stored_runs(dir.join("state.db").to_str().unwrap(), job)
}

/// `job`'s runs in the store `database` names (a SQLite file or a PostgreSQL URL), oldest
/// first.
fn stored_runs(database: &str, job: &str) -> Vec<Run> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = AnyStore::open(database).await.unwrap();
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

#[test]
fn serve_runs_the_configured_jobs_and_exits_0_on_sigterm() {
    let dir = temp_dir("tick");
    std::fs::write(
        dir.join("cronwarden.toml"),
        r#"
[settings]
database = "state.db"
listen = "127.0.0.1:0"

[[jobs]]
name = "tick"
schedule = "* * * * * *"
action = { type = "command", argv = ["sh", "-c", "echo $CRONWARDEN_SCHEDULED_AT >> ticks.txt"] }
"#,
    )
    .unwrap();
    let mut daemon = serve(&dir);
    wait_for(Duration::from_secs(15), "three ticks", || {
        std::fs::read_to_string(dir.join("ticks.txt")).is_ok_and(|t| t.lines().count() >= 3)
    });
    assert_eq!(signal_and_wait(&mut daemon, Signal::SIGTERM), Some(0));
    let runs = runs(&dir, "tick");
    assert!(runs.len() >= 3);
    assert!(
        runs.iter()
            .all(|r| r.status == RunStatus::Succeeded && r.trigger == Trigger::Schedule),
        "{runs:#?}"
    );
    // Each run was told its own scheduled instant: whole, consecutive seconds.
    let ticks = std::fs::read_to_string(dir.join("ticks.txt")).unwrap();
    let seconds: Vec<i64> = ticks
        .lines()
        .map(|l| l.parse::<jiff::Timestamp>().unwrap().as_second())
        .collect();
    assert!(seconds.windows(2).all(|w| w[1] == w[0] + 1), "{ticks}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn sigterm_lets_a_running_job_finish_within_the_grace_period() {
    let dir = temp_dir("grace");
    std::fs::write(
        dir.join("cronwarden.toml"),
        r#"
[settings]
database = "state.db"
listen = "127.0.0.1:0"
shutdown_grace = "20s"

[[jobs]]
name = "slow"
schedule = "* * * * * *"
action = { type = "command", argv = ["sh", "-c", "touch started; sleep 1; echo done > finished"] }
"#,
    )
    .unwrap();
    let mut daemon = serve(&dir);
    wait_for(Duration::from_secs(15), "the job to start", || {
        dir.join("started").exists()
    });
    assert_eq!(signal_and_wait(&mut daemon, Signal::SIGTERM), Some(0));
    assert_eq!(
        std::fs::read_to_string(dir.join("finished")).unwrap(),
        "done\n"
    );
    let runs = runs(&dir, "slow");
    assert!(runs.iter().any(|r| r.status == RunStatus::Succeeded));
    assert!(
        runs.iter().all(|r| r.status.is_final()),
        "every run has a final status: {runs:#?}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn after_sigkill_the_next_start_abandons_and_retries_the_runs_in_flight() {
    let dir = temp_dir("crash");
    // The first run hangs (and says so, with its pid); every later run, retries included,
    // succeeds at once.
    std::fs::write(
        dir.join("cronwarden.toml"),
        r#"
[settings]
database = "state.db"
listen = "127.0.0.1:0"

[[jobs]]
name = "long"
schedule = "* * * * * *"
action = { type = "command", argv = ["sh", "-c", "if [ ! -e slept ]; then touch slept; echo $$ > hung.pid; exec sleep 60; fi"] }
retry = { max_attempts = 2, initial_delay = "1s" }
misfire = { mode = "skip" }
"#,
    )
    .unwrap();
    let mut daemon = serve(&dir);
    wait_for(Duration::from_secs(15), "the first run to hang", || {
        std::fs::read_to_string(dir.join("hung.pid")).is_ok_and(|p| p.ends_with('\n'))
    });
    assert_eq!(
        signal_and_wait(&mut daemon, Signal::SIGKILL),
        None,
        "killed by the signal"
    );
    // SIGKILL gave the daemon no chance to clean up; the kernel ends its child with it
    // (tests/commands.rs covers this and the child's own children).
    let hung: i32 = std::fs::read_to_string(dir.join("hung.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    wait_for(Duration::from_secs(5), "the hung child to die", || {
        kill(Pid::from_raw(hung), None).is_err()
            || std::fs::read_to_string(format!("/proc/{hung}/stat")).is_ok_and(|stat| {
                stat.rsplit_once(") ")
                    .is_some_and(|(_, f)| f.starts_with('Z'))
            })
    });
    let in_flight = runs(&dir, "long")
        .into_iter()
        .find(|r| r.status == RunStatus::Running)
        .expect("a run was in flight");

    let mut daemon = serve(&dir);
    wait_for(
        Duration::from_secs(15),
        "the retry of the run in flight",
        || {
            runs(&dir, "long").iter().any(|r| {
                r.scheduled_at == in_flight.scheduled_at && r.attempt == 2 && r.status.is_final()
            })
        },
    );
    assert_eq!(signal_and_wait(&mut daemon, Signal::SIGTERM), Some(0));
    let runs = runs(&dir, "long");
    let abandoned = runs.iter().find(|r| r.id == in_flight.id).unwrap();
    assert_eq!(abandoned.status, RunStatus::Abandoned);
    let retry = runs
        .iter()
        .find(|r| r.scheduled_at == in_flight.scheduled_at && r.attempt == 2)
        .unwrap();
    assert_eq!(
        (retry.trigger, retry.status),
        (Trigger::Retry, RunStatus::Succeeded)
    );
    assert!(
        runs.iter().all(|r| r.status.is_final()),
        "nothing claimed is left unaccounted: {runs:#?}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

fn cli(dir: &Path, args: &[&str]) -> std::process::Output {
    cli_with_env(dir, args, &[])
}

fn cli_with_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_cronwarden"))
        .args(args)
        .args(["--config", "cronwarden.toml"])
        .envs(env.iter().copied())
        .current_dir(dir)
        .output()
        .unwrap()
}

#[test]
fn jobs_trigger_pause_and_resume_reach_a_running_daemon() {
    let dir = temp_dir("control");
    // A job that would fire only on 1 January, and one that fires every second.
    std::fs::write(
        dir.join("cronwarden.toml"),
        r#"
[settings]
database = "state.db"
listen = "127.0.0.1:0"

[[jobs]]
name = "yearly"
schedule = "0 0 1 1 *"
action = { type = "command", argv = ["echo", "ran on request"] }

[[jobs]]
name = "tick"
schedule = "* * * * * *"
action = { type = "command", argv = ["true"] }
"#,
    )
    .unwrap();
    let mut daemon = serve(&dir);
    wait_for(
        Duration::from_secs(15),
        "the daemon to start ticking",
        || dir.join("state.db").exists() && !runs(&dir, "tick").is_empty(),
    );

    let out = cli(&dir, &["jobs", "trigger", "yearly"]);
    assert!(out.status.success(), "{out:?}");
    wait_for(Duration::from_secs(10), "the requested run", || {
        runs(&dir, "yearly")
            .iter()
            .any(|r| r.status == RunStatus::Succeeded)
    });
    let requested = runs(&dir, "yearly");
    assert_eq!(requested.len(), 1);
    assert_eq!(requested[0].trigger, Trigger::Manual);
    assert_eq!(requested[0].output.as_deref(), Some("ran on request\n"));

    let out = cli(&dir, &["jobs", "pause", "tick", "--reason", "maintenance"]);
    assert!(out.status.success(), "{out:?}");
    let list = String::from_utf8(cli(&dir, &["jobs", "list"]).stdout).unwrap();
    assert!(
        list.lines()
            .any(|l| l.starts_with("tick ") && l.contains("paused")),
        "{list}"
    );
    // Within a second or two the daemon stops firing it: no run is scheduled 3 s later.
    std::thread::sleep(Duration::from_secs(2));
    let paused_at = runs(&dir, "tick").last().unwrap().scheduled_at;
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        runs(&dir, "tick").last().unwrap().scheduled_at,
        paused_at,
        "the paused job kept firing"
    );

    // A restart re-applies the config file; the pause outlasts it.
    assert_eq!(signal_and_wait(&mut daemon, Signal::SIGTERM), Some(0));
    let mut daemon = serve(&dir);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(runs(&dir, "tick").last().unwrap().scheduled_at, paused_at);

    let out = cli(&dir, &["jobs", "resume", "tick"]);
    assert!(out.status.success(), "{out:?}");
    wait_for(Duration::from_secs(10), "ticks after resume", || {
        runs(&dir, "tick").last().unwrap().scheduled_at > paused_at
    });
    let out = cli(&dir, &["jobs", "pause", "nobody"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("no job is named"));
    assert_eq!(signal_and_wait(&mut daemon, Signal::SIGTERM), Some(0));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_api_is_served_and_the_admin_token_bootstraps_access() {
    let dir = temp_dir("api");
    std::fs::write(
        dir.join("cronwarden.toml"),
        r#"
[settings]
database = "state.db"
listen = "127.0.0.1:0"

[[jobs]]
name = "yearly"
schedule = "0 0 1 1 *"
action = { type = "command", argv = ["true"] }
"#,
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("daemon.log")).unwrap();
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_cronwarden"))
        .args(["serve", "--config", "cronwarden.toml"])
        .current_dir(&dir)
        .env("CRONWARDEN_ADMIN_TOKEN", "bootstrap-admin-token-0123456789")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut address = None;
    wait_for(
        Duration::from_secs(15),
        "the API address in the log",
        || {
            address = api_address(&dir.join("daemon.log"));
            address.is_some()
        },
    );
    let base = format!("http://{}", address.unwrap());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = reqwest::Client::new();
    let get = |path: &str, token: Option<&str>| {
        let mut request = client.get(format!("{base}{path}"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        rt.block_on(async { request.send().await.unwrap().status().as_u16() })
    };
    assert_eq!(get("/healthz", None), 200);
    assert_eq!(get("/api/v1/jobs", None), 401);
    assert_eq!(
        get("/api/v1/jobs", Some("bootstrap-admin-token-0123456789")),
        200
    );

    // A token made with the CLI works at once, and stops working when revoked.
    let out = cli(
        &dir,
        &[
            "tokens", "create", "--name", "ci", "--role", "viewer", "--json",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let created: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let token = created["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("cw_") && token.len() == 67, "{token}");
    assert_eq!(get("/api/v1/jobs/yearly", Some(&token)), 200);
    assert_eq!(
        get("/api/v1/audit", Some(&token)),
        403,
        "a viewer cannot read the audit log"
    );
    let listed = String::from_utf8(cli(&dir, &["tokens", "list"]).stdout).unwrap();
    assert!(
        listed.contains("ci") && listed.contains("viewer") && !listed.contains(&token),
        "{listed}"
    );
    assert!(cli(&dir, &["tokens", "revoke", "ci"]).status.success());
    assert_eq!(get("/api/v1/jobs/yearly", Some(&token)), 401);
    // The CLI against the daemon's API prints what it prints from the database.
    let remote = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_cronwarden"))
            .args(args)
            .args(["--server", &base])
            .env("CRONWARDEN_TOKEN", "bootstrap-admin-token-0123456789")
            .current_dir(std::env::temp_dir())
            .output()
            .unwrap()
    };
    let local_list = cli(&dir, &["jobs", "list"]);
    let remote_list = remote(&["jobs", "list"]);
    assert!(remote_list.status.success(), "{remote_list:?}");
    assert_eq!(
        String::from_utf8_lossy(&remote_list.stdout),
        String::from_utf8_lossy(&local_list.stdout)
    );
    let out = remote(&["jobs", "trigger", "yearly", "--json"]);
    assert!(out.status.success(), "{out:?}");
    let started: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let run = started["run"].as_i64().unwrap().to_string();
    wait_for(Duration::from_secs(10), "the remote-triggered run", || {
        let out = remote(&["runs", "show", &run, "--json"]);
        out.status.success()
            && serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["status"]
                == "succeeded"
    });
    let out = remote(&["jobs", "pause", "yearly", "--reason", "from afar"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "paused yearly: from afar\n"
    );
    let shown = String::from_utf8(remote(&["jobs", "show", "yearly"]).stdout).unwrap();
    assert!(shown.contains("paused: from afar"), "{shown}");
    assert!(remote(&["jobs", "resume", "yearly"]).status.success());
    let missing = remote(&["jobs", "show", "nobody"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no job is named"));

    // The token itself is never written to the log.
    let log = std::fs::read_to_string(dir.join("daemon.log")).unwrap();
    assert!(!log.contains(&token) && !log.contains("bootstrap-admin-token-0123456789"));

    assert_eq!(signal_and_wait(&mut daemon, Signal::SIGTERM), Some(0));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_secret_value_reaches_the_job_but_never_the_store_or_the_logs() {
    let dir = temp_dir("secret");
    let secret = "sk-live-4be1f0c9d2a7";
    std::fs::write(dir.join("token.txt"), format!("{secret}-file\n")).unwrap();
    std::fs::write(
        dir.join("cronwarden.toml"),
        r#"
[settings]
database = "state.db"
listen = "127.0.0.1:0"

# A careless job: it prints its credentials, to stdout and stderr, and fails.
[[jobs]]
name = "leaky"
schedule = "* * * * * *"
action = { type = "command", argv = ["sh", "-c", "echo \"using $1 and $2\" > seen.txt; echo \"token $1\"; echo \"file $2\" >&2; exit 3", "sh", "${env:CW_TEST_LEAK_SECRET}", "${file:token.txt}"] }
"#,
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("daemon.log")).unwrap();
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_cronwarden"))
        .args(["serve", "--config", "cronwarden.toml"])
        .current_dir(&dir)
        .env("CW_TEST_LEAK_SECRET", secret)
        .env("CRONWARDEN_LOG", "debug")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    wait_for(Duration::from_secs(15), "two failed runs", || {
        runs(&dir, "leaky")
            .iter()
            .filter(|r| r.status == RunStatus::Failed)
            .count()
            >= 2
    });
    assert_eq!(signal_and_wait(&mut daemon, Signal::SIGTERM), Some(0));
    // The job got the real values...
    let seen = std::fs::read_to_string(dir.join("seen.txt")).unwrap();
    assert_eq!(seen.trim(), format!("using {secret} and {secret}-file"));
    // ...its recorded output has them cut out...
    let run = runs(&dir, "leaky")
        .into_iter()
        .find(|r| r.status == RunStatus::Failed)
        .unwrap();
    let output = run.output.unwrap();
    assert!(
        output.contains("token [redacted]") && output.contains("file [redacted]"),
        "{output}"
    );
    // ...and no byte of the database, its write-ahead log or the daemon's log holds them.
    for file in ["state.db", "state.db-wal", "daemon.log"] {
        if let Ok(bytes) = std::fs::read(dir.join(file)) {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{file} holds the secret"
            );
        }
    }
    let log = std::fs::read_to_string(dir.join("daemon.log")).unwrap();
    assert!(
        log.contains("run did not succeed") && log.contains("job=leaky"),
        "failed runs are logged: {log}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A PostgreSQL database of its own for one test (dropped with this), whose `url` holds a
/// password: the server's own, or (on a trust-auth server, which ignores it) a made-up one,
/// so that the tests can check it is never shown.
struct PgDatabase {
    database: cronwarden_test_support::PgDatabase,
    /// The password in `url`.
    password: String,
}

impl PgDatabase {
    /// A new, empty database; `None` (after saying why) when no server answers, except under
    /// `CI=true`, where that fails the test.
    fn create() -> Option<PgDatabase> {
        let mut database = cronwarden_test_support::PgDatabase::create("cw_daemon")?;
        let (url, password) = with_password(&database.url);
        database.url = url;
        Some(PgDatabase { database, password })
    }
}

impl std::ops::Deref for PgDatabase {
    type Target = cronwarden_test_support::PgDatabase;

    fn deref(&self) -> &Self::Target {
        &self.database
    }
}

/// `url` with a password, and the password: its own, or a made-up one added to its user.
fn with_password(url: &str) -> (String, String) {
    const MADE_UP: &str = "not-a-real-pw-123";
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let (userinfo, host) = authority
        .rsplit_once('@')
        .unwrap_or(("postgres", authority));
    match userinfo.split_once(':') {
        Some((_, password)) if !password.is_empty() => (url.to_owned(), password.to_owned()),
        _ => {
            let user = userinfo.split(':').next().unwrap_or("postgres");
            (
                format!("{scheme}://{user}:{MADE_UP}@{host}{tail}"),
                MADE_UP.to_owned(),
            )
        }
    }
}

#[test]
fn serve_runs_jobs_on_postgres_and_the_cli_reads_them_there() {
    let Some(db) = PgDatabase::create() else {
        return;
    };
    let dir = temp_dir("postgres");
    // The file names a SQLite file; CRONWARDEN_DATABASE_URL overrides it.
    std::fs::write(
        dir.join("cronwarden.toml"),
        r#"
[settings]
database = "state.db"
listen = "127.0.0.1:0"
node = "pg-node-1"

[[jobs]]
name = "tick"
schedule = "* * * * * *"
action = { type = "command", argv = ["sh", "-c", "echo tick $CRONWARDEN_SCHEDULED_AT"] }
"#,
    )
    .unwrap();
    let env = [("CRONWARDEN_DATABASE_URL", db.url.as_str())];
    let log = std::fs::File::create(dir.join("daemon.log")).unwrap();
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_cronwarden"))
        .args(["serve", "--config", "cronwarden.toml"])
        .current_dir(&dir)
        .envs(env)
        // Everything the daemon logs, its database driver's lines included, is searched for
        // the password below.
        .env("CRONWARDEN_LOG", "debug")
        .env("NO_COLOR", "1")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    wait_for(Duration::from_secs(30), "three runs in PostgreSQL", || {
        stored_runs(&db.url, "tick")
            .iter()
            .filter(|r| r.status == RunStatus::Succeeded)
            .count()
            >= 3
    });

    // The CLI, pointed at the same database, sees the job and its runs while the daemon runs.
    let list = cli_with_env(&dir, &["jobs", "list"], &env);
    assert!(list.status.success(), "{list:?}");
    let listed = String::from_utf8(list.stdout).unwrap();
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("tick ") && l.contains("yes") && l.contains("* * * * * *")),
        "{listed}"
    );
    let out = cli_with_env(&dir, &["runs", "list", "--job", "tick", "--json"], &env);
    assert!(out.status.success(), "{out:?}");
    let listed: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let in_store = stored_runs(&db.url, "tick");
    assert!(listed.len() >= 3, "{listed:#?}");
    assert!(listed.iter().all(|r| r["job"] == "tick"), "{listed:#?}");
    assert!(
        listed
            .iter()
            .all(|r| in_store.iter().any(|s| Some(s.id.0) == r["id"].as_i64())),
        "the CLI lists the runs PostgreSQL holds: {listed:#?} {in_store:#?}"
    );
    let out = cli_with_env(&dir, &["runs", "list", "--job", "tick"], &env);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("succeeded"));

    assert_eq!(signal_and_wait(&mut daemon, Signal::SIGTERM), Some(0));
    let runs = stored_runs(&db.url, "tick");
    assert!(runs.len() >= 3, "{runs:#?}");
    assert!(
        runs.iter().all(|r| r.status == RunStatus::Succeeded
            && r.trigger == Trigger::Schedule
            && r.node == "pg-node-1"),
        "{runs:#?}"
    );
    assert!(runs[0]
        .output
        .as_deref()
        .is_some_and(|o| o.starts_with("tick ")));
    // Nothing went to the SQLite file the configuration names.
    assert!(!dir.join("state.db").exists());

    // The log says where the daemon runs, and never shows the password.
    let log = std::fs::read_to_string(dir.join("daemon.log")).unwrap();
    let running = log
        .lines()
        .find(|l| l.contains("cronwarden is running"))
        .unwrap_or_else(|| panic!("no start-up line: {log}"));
    assert!(running.contains("store=postgres"), "{running}");
    assert!(running.contains(":[redacted]@"), "{running}");
    assert!(running.contains(&format!("/{}", db.name)), "{running}");
    assert!(
        !log.contains(&db.password),
        "the daemon's log holds the database password: {log}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_cli_reports_an_unreachable_postgres_without_the_password() {
    let dir = temp_dir("postgres-down");
    std::fs::write(dir.join("cronwarden.toml"), "").unwrap();
    // Port 1: nothing listens there.
    let url = "postgres://cw:not-a-real-pw-123@127.0.0.1:1/cronwarden";
    for args in [
        &["jobs", "list"][..],
        &["runs", "list", "--job", "tick"][..],
    ] {
        let out = cli_with_env(&dir, args, &[("CRONWARDEN_DATABASE_URL", url)]);
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.starts_with(
                "error: cannot open the database \"postgres://cw:[redacted]@127.0.0.1:1/cronwarden\": "
            ),
            "{stderr}"
        );
        assert!(!stderr.contains("not-a-real-pw-123"), "{stderr}");
    }
    // The daemon too, before it starts anything.
    let out = Command::new(env!("CARGO_BIN_EXE_cronwarden"))
        .args(["serve", "--config", "cronwarden.toml"])
        .current_dir(&dir)
        .env("CRONWARDEN_DATABASE_URL", url)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("[redacted]") && !stderr.contains("not-a-real-pw-123"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
