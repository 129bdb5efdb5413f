//! One daemon per SQLite file: a second `cronwarden serve` on the same database is refused
//! with an error naming the file and the process holding it, while the CLI keeps working beside
//! the daemon; once the holder is gone (even by kill -9), a new daemon starts.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cronwarden::model::{JobName, Run, RunStatus};
use cronwarden::store::RunFilter;
use cronwarden_daemon::store::AnyStore;
use cronwarden_test_support::daemon::wait_for;
use cronwarden_test_support::TestDir;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Daemons a test started, killed when it ends however it ends.
#[derive(Default)]
struct Daemons(Vec<Child>);

impl Daemons {
    /// Starts `cronwarden serve` in `dir`, its log (stderr) in `log`.
    fn serve(&mut self, dir: &Path, log: &str) -> usize {
        let log = std::fs::File::create(dir.join(log)).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_cronwarden"))
            .args(["serve", "--config", "cronwarden.toml"])
            .current_dir(dir)
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.0.push(child);
        self.0.len() - 1
    }

    fn pid(&self, daemon: usize) -> i32 {
        self.0[daemon].id() as i32
    }

    /// Its exit code once it has exited (`None`: killed by a signal); fails after `limit`.
    fn exit_code(&mut self, daemon: usize, limit: Duration) -> Option<i32> {
        let child = &mut self.0[daemon];
        let give_up = Instant::now() + limit;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.code();
            }
            assert!(Instant::now() < give_up, "the daemon did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn signal(&mut self, daemon: usize, signal: Signal) -> Option<i32> {
        kill(Pid::from_raw(self.pid(daemon)), signal).unwrap();
        self.exit_code(daemon, Duration::from_secs(20))
    }
}

impl Drop for Daemons {
    fn drop(&mut self) {
        for child in &mut self.0 {
            if child.try_wait().ok().flatten().is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// `job`'s runs in the SQLite file `state.db` in `dir`, oldest first.
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

fn cli(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_cronwarden"))
        .args(args)
        .args(["--config", "cronwarden.toml"])
        .current_dir(dir)
        .output()
        .unwrap()
}

fn log(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap_or_default()
}

#[test]
fn a_second_daemon_on_the_same_file_is_refused_until_the_first_is_gone() {
    let dir = TestDir::new("one-daemon");
    // The first run hangs, saying so with its pid; any later run (a retry included) ends at
    // once. A second daemon that took the hanging run for abandoned would retry it.
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
    let mut daemons = Daemons::default();
    let first = daemons.serve(&dir, "first.log");
    wait_for(Duration::from_secs(15), "the first run to hang", || {
        std::fs::read_to_string(dir.join("hung.pid")).is_ok_and(|p| p.ends_with('\n'))
    });
    let in_flight = runs(&dir, "long")
        .into_iter()
        .find(|r| r.status == RunStatus::Running)
        .expect("a run is in flight");

    let second = daemons.serve(&dir, "second.log");
    let code = daemons.exit_code(second, Duration::from_secs(15));
    assert_eq!(code, Some(2), "{}", log(&dir, "second.log"));
    let refusal = log(&dir, "second.log");
    assert!(
        refusal.contains("the database state.db is in use by another cronwarden daemon")
            && refusal.contains(&format!("pid {},", daemons.pid(first)))
            && refusal.contains("state.db.lock"),
        "{refusal}"
    );
    assert!(!refusal.contains("cronwarden is running"), "{refusal}");

    // The CLI reads the store beside the running daemon.
    let listed = cli(&dir, &["jobs", "list"]);
    assert!(listed.status.success(), "{listed:?}");
    assert!(String::from_utf8_lossy(&listed.stdout).contains("long"));
    // The first daemon's run was left alone: still going, not abandoned, not retried.
    let after = runs(&dir, "long");
    assert_eq!(
        after.iter().find(|r| r.id == in_flight.id).unwrap().status,
        RunStatus::Running
    );
    assert!(
        after
            .iter()
            .all(|r| r.status != RunStatus::Abandoned && r.attempt == 1),
        "{after:#?}"
    );

    // kill -9 gives the first daemon no chance to clean up; its lock goes with it.
    assert_eq!(daemons.signal(first, Signal::SIGKILL), None);
    let hung: i32 = std::fs::read_to_string(dir.join("hung.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // Its job's process may outlive it; it must not hold the lock (nor run on).
    let _ = kill(Pid::from_raw(hung), Signal::SIGKILL);
    let third = daemons.serve(&dir, "third.log");
    wait_for(Duration::from_secs(15), "the new daemon to start", || {
        log(&dir, "third.log").contains("cronwarden is running")
    });
    wait_for(
        Duration::from_secs(15),
        "the new daemon to account for the run in flight",
        || {
            runs(&dir, "long")
                .iter()
                .any(|r| r.id == in_flight.id && r.status == RunStatus::Abandoned)
        },
    );
    assert_eq!(daemons.signal(third, Signal::SIGTERM), Some(0));
    drop(daemons);
    std::fs::remove_dir_all(&dir).unwrap();
}
