//! The daemon on a disk that fills up and is freed again (a small tmpfs, for real): readiness
//! says the store refuses writes while it is full, results of runs that end meanwhile are held
//! and written once there is room, and nothing needs a restart.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use cronwarden::model::{JobName, RunStatus};
use cronwarden::store::RunFilter;
use cronwarden_daemon::store::AnyStore;
use cronwarden_test_support::daemon::{api_address, wait_for};
use cronwarden_test_support::{SmallDisk, TestDir};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const TOKEN: &str = "full-disk-admin-token-0123456789";

/// `GET /readyz`: the status and the body.
fn readyz(rt: &tokio::runtime::Runtime, api: &str) -> (u16, serde_json::Value) {
    rt.block_on(async {
        let response = reqwest::Client::new()
            .get(format!("http://{api}/readyz"))
            .bearer_auth(TOKEN)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    })
}

/// The daemon, killed if the test fails before it is stopped: a daemon left running would
/// fire its jobs for ever.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn stop(child: &mut Child) {
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    wait_for(Duration::from_secs(30), "the daemon to exit", || {
        child.try_wait().unwrap().is_some()
    });
}

#[test]
fn results_of_runs_that_end_on_a_full_disk_reach_the_store_once_it_has_room() {
    let Some(disk) = SmallDisk::mount("full-disk-daemon", 8 << 20) else {
        return;
    };
    let dir = TestDir::new("full-disk-daemon-files");
    let done = dir.join("done.txt");
    let database = disk.path().join("state.db");
    std::fs::write(
        dir.join("cronwarden.toml"),
        format!(
            r#"
[settings]
database = "{database}"
listen = "127.0.0.1:0"
shutdown_grace = "20s"

# Every second, two seconds long: whenever the disk fills, runs are under way, and they end
# while it is full.
[[jobs]]
name = "slow"
schedule = "* * * * * *"
overlap = "allow"
max_concurrency = 4
action = {{ type = "command", argv = ["sh", "-c", "sleep 2; echo $CRONWARDEN_RUN_ID >> '{done}'"] }}
"#,
            database = database.display(),
            done = done.display(),
        ),
    )
    .unwrap();
    let log = dir.join("daemon.log");
    let mut daemon = Daemon(
        Command::new(env!("CARGO_BIN_EXE_cronwarden"))
            .args(["serve", "--config", "cronwarden.toml"])
            .current_dir(&dir)
            .env("CRONWARDEN_ADMIN_TOKEN", TOKEN)
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut api = None;
    wait_for(Duration::from_secs(30), "the API address", || {
        api = api_address(&log);
        api.is_some()
    });
    let api = api.unwrap();
    wait_for(Duration::from_secs(15), "runs to finish", || {
        std::fs::read_to_string(&done).is_ok_and(|d| d.lines().count() >= 2)
    });
    assert_eq!(readyz(&rt, &api).0, 200);

    let ended_before = std::fs::read_to_string(&done).unwrap().lines().count();
    disk.fill();
    let mut not_ready = None;
    wait_for(
        Duration::from_secs(20),
        "/readyz to report failing writes",
        || {
            let (status, body) = readyz(&rt, &api);
            if status == 503 && body["store_writes"].as_str().unwrap_or("ok") != "ok" {
                not_ready = Some(body);
            }
            not_ready.is_some()
        },
    );
    // Runs under way when it filled end while it is full: their results wait in memory.
    wait_for(
        Duration::from_secs(10),
        "runs to end while the disk is full",
        || {
            let n = std::fs::read_to_string(&done).unwrap().lines().count();
            n > ended_before
        },
    );
    std::thread::sleep(Duration::from_secs(1));

    disk.free();
    wait_for(Duration::from_secs(30), "/readyz to be ready again", || {
        let (status, body) = readyz(&rt, &api);
        status == 200 && body["unwritten_results"] == 0
    });
    stop(&mut daemon.0);
    let log_text = std::fs::read_to_string(&log).unwrap();

    // Every run that ended, full disk or not, is recorded as it ended; none was left behind.
    let runs = rt.block_on(async {
        let store = AnyStore::open(database.to_str().unwrap()).await.unwrap();
        let filter = RunFilter {
            job: Some(JobName::new("slow").unwrap()),
            limit: Some(10_000),
            ..RunFilter::default()
        };
        let runs = store.shared().list_runs(&filter).await.unwrap();
        store.close().await;
        runs
    });
    let ended: Vec<String> = std::fs::read_to_string(&done)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    for id in &ended {
        let run = runs.iter().find(|r| r.id.to_string() == *id);
        assert!(
            run.is_some_and(|r| r.status == RunStatus::Succeeded),
            "run {id} ended but is recorded as {run:?}\n{log_text}"
        );
    }
    let left: Vec<_> = runs
        .iter()
        .filter(|r| {
            matches!(
                r.status,
                RunStatus::Queued | RunStatus::Running | RunStatus::Abandoned
            )
        })
        .collect();
    assert!(left.is_empty(), "runs left behind: {left:#?}\n{log_text}");
    println!(
        "while full: {not_ready:?}; {} runs ended, {} recorded",
        ended.len(),
        runs.len()
    );
}
