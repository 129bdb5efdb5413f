//! Chaos on a cluster of real `cronwarden serve` processes sharing one PostgreSQL database
//! (`CRONWARDEN_TEST_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/test`; skipped
//! when no server answers, except under `CI=true`).
//!
//! Nodes are killed (SIGKILL) and restarted (at once, or once the others have rescued them),
//! stopped (SIGSTOP) past their lease and continued, and cut off from PostgreSQL (through a
//! proxy this test runs in-process: the server itself, which other tests use, is never
//! touched), for longer than their lease and for less; then every fire of the window under
//! test must have exactly one first attempt, none given up before it started (a fire a node
//! claimed ahead and died before running is run by another), every run a final status (after
//! a graceful stop: nothing is rescued for the test), and no stale node may have overwritten a
//! result; across a store outage nothing may be abandoned (nobody died) and no fire delivered
//! twice. The counts are printed (`--nocapture` shows them); `CRONWARDEN_TEST_KEEP_LOGS=1`
//! keeps the nodes' logs of a passing run too.
//!
//! These tests run on the real clock, for minutes: the nodes' leases (10 s) and heartbeats
//! (2 s) are the daemon's defaults, and the scenarios are about outliving them. Conditions are
//! polled with generous limits; only the scenario's own steps (kill every 20 s, stop for 15 s,
//! cut for 15 s) sleep on the clock.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cronwarden::model::{Run, RunStatus, Trigger};
use cronwarden::store::{PostgresStore, RunFilter, Store};
use cronwarden_test_support::daemon::{api_address, wait_for};
use cronwarden_test_support::{PgDatabase, TestDir};
use jiff::Timestamp;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Sleeps until `deadline` (at once if it has passed).
fn sleep_until(deadline: Instant) {
    let now = Instant::now();
    if deadline > now {
        std::thread::sleep(deadline - now);
    }
}

/// Sleeps until the wall clock's next instant `phase` milliseconds into a `period` (counted
/// from the Unix epoch, as the schedules are): where in the cycle of claims and runs a signal
/// lands.
fn sleep_until_phase(period: i64, phase: i64) {
    let now = Timestamp::now().as_millisecond();
    let mut target = now.div_euclid(period) * period + phase;
    if target <= now {
        target += period;
    }
    std::thread::sleep(Duration::from_millis((target - now) as u64));
}

/// Sleeps until the wall clock's next instant `ms` milliseconds into a second.
fn sleep_until_millis_into_second(ms: i64) {
    sleep_until_phase(1000, ms);
}

/// The whole second at or after `t`.
fn ceil_second(t: Timestamp) -> i64 {
    t.as_second() + i64::from(t.subsec_nanosecond() > 0)
}

/// The last whole second strictly before `t`.
fn second_before(t: Timestamp) -> i64 {
    let s = t.as_second();
    if t.subsec_nanosecond() > 0 {
        s
    } else {
        s - 1
    }
}

/// A directory of the test's own, removed when it ends.
fn temp_dir(name: &str) -> TestDir {
    TestDir::new(&format!("chaos-{name}"))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The `host:port` of `url`, and `url` with them replaced by `host_port`.
fn split_host(url: &str, host_port: &str) -> (String, String) {
    let authority = url.find("://").expect("a URL") + 3;
    let end = url[authority..]
        .find(['/', '?'])
        .map_or(url.len(), |i| authority + i);
    let host_at = url[authority..end]
        .rfind('@')
        .map_or(authority, |i| authority + i + 1);
    let mut host = url[host_at..end].to_owned();
    let has_port = !host.ends_with(']')
        && host
            .rsplit_once(':')
            .is_some_and(|(_, port)| port.parse::<u16>().is_ok());
    if !has_port {
        host.push_str(":5432");
    }
    (
        host,
        format!("{}{host_port}{}", &url[..host_at], &url[end..]),
    )
}

/// The test's own view of the database: straight to the server, never through the proxy.
struct Db {
    rt: tokio::runtime::Runtime,
    store: PostgresStore,
    pool: sqlx::PgPool,
    http: reqwest::Client,
}

impl Db {
    fn connect(url: &str) -> Db {
        let rt = runtime();
        let (store, pool) = rt.block_on(async {
            let store = PostgresStore::connect(url).await.unwrap();
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(2)
                .connect(url)
                .await
                .unwrap();
            (store, pool)
        });
        Db {
            rt,
            store,
            pool,
            http: reqwest::Client::new(),
        }
    }

    /// Every run in the database, oldest first.
    fn runs(&self) -> Vec<Run> {
        let filter = RunFilter {
            limit: Some(u32::MAX),
            ..RunFilter::default()
        };
        let mut runs = self.rt.block_on(self.store.list_runs(&filter)).unwrap();
        runs.reverse();
        runs
    }

    /// `node`'s runs that are queued or running.
    fn unfinished_of(&self, node: &str) -> Vec<Run> {
        let mut runs = Vec::new();
        for status in [RunStatus::Queued, RunStatus::Running] {
            let filter = RunFilter {
                status: Some(status),
                limit: Some(u32::MAX),
                ..RunFilter::default()
            };
            runs.extend(
                self.rt
                    .block_on(self.store.list_runs(&filter))
                    .unwrap()
                    .into_iter()
                    .filter(|r| r.node == node),
            );
        }
        runs.sort_by_key(|r| r.id);
        runs
    }

    /// The nodes table: each node with the end of its lease.
    /// The registered nodes and their leases; a rescued node is no longer registered (its
    /// row is kept a while, marked, so that it cannot claim before it heartbeats again).
    fn nodes(&self) -> BTreeMap<String, Timestamp> {
        let rows: Vec<(String, i64)> = self
            .rt
            .block_on(
                sqlx::query_as("SELECT name, lease_until FROM nodes WHERE rescued_at IS NULL")
                    .fetch_all(&self.pool),
            )
            .unwrap();
        rows.into_iter()
            .map(|(name, us)| (name, Timestamp::from_microsecond(us).unwrap()))
            .collect()
    }

    /// The names of the nodes whose lease holds now.
    fn live_nodes(&self) -> BTreeSet<String> {
        let now = Timestamp::now();
        self.nodes()
            .into_iter()
            .filter(|(_, until)| *until >= now)
            .map(|(name, _)| name)
            .collect()
    }

    /// `GET {base}/readyz` with a bearer token: the status code, or the error.
    fn readyz(&self, base: &str, token: &str) -> Result<u16, String> {
        let request = self
            .http
            .get(format!("{base}/readyz"))
            .bearer_auth(token)
            .timeout(Duration::from_secs(5));
        // Sent from within the runtime: the timeout needs its timer.
        self.rt
            .block_on(async { request.send().await })
            .map(|r| r.status().as_u16())
            .map_err(|e| e.to_string())
    }
}

/// One `cronwarden serve` node: its directory (config and logs, one log per start) and, while
/// it runs, its process.
struct Node {
    name: String,
    dir: PathBuf,
    env: Vec<(String, String)>,
    child: Option<Child>,
    starts: usize,
    api: Option<String>,
}

impl Node {
    fn new(base: &Path, name: &str, config: &str, env: Vec<(String, String)>) -> Node {
        let dir = base.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("cronwarden.toml"), config).unwrap();
        Node {
            name: name.to_owned(),
            dir,
            env,
            child: None,
            starts: 0,
            api: None,
        }
    }

    fn log_path(&self, start: usize) -> PathBuf {
        self.dir.join(format!("daemon.{start}.log"))
    }

    /// Starts the daemon and waits until it says it is running (its API is up, its scheduler
    /// started).
    fn start(&mut self) {
        assert!(self.child.is_none(), "{} runs already", self.name);
        self.starts += 1;
        let log_path = self.log_path(self.starts);
        let log = std::fs::File::create(&log_path).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_cronwarden"));
        command
            .args(["serve", "--config", "cronwarden.toml"])
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        // Only what this test sets: no setting of the environment the tests run in.
        for (var, _) in cronwarden_daemon::config::ENV_OVERRIDES {
            command.env_remove(var);
        }
        command
            .env_remove("CRONWARDEN_ADMIN_TOKEN")
            .env_remove("CRONWARDEN_CONFIG")
            .env("CRONWARDEN_NODE", &self.name)
            .env("CRONWARDEN_LOG", "info")
            .env("NO_COLOR", "1")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let mut child = command.spawn().unwrap();
        let mut exited = None;
        wait_for(
            Duration::from_secs(90),
            &format!("{} to start", self.name),
            || {
                if let Some(status) = child.try_wait().unwrap() {
                    exited = Some(status);
                    return true;
                }
                api_address(&log_path).is_some()
            },
        );
        if let Some(status) = exited {
            panic!(
                "{} exited at start-up ({status}): {}",
                self.name,
                std::fs::read_to_string(&log_path).unwrap_or_default()
            );
        }
        self.api = api_address(&log_path).map(|a| format!("http://{a}"));
        self.child = Some(child);
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(self.child.as_ref().expect("running").id() as i32)
    }

    fn signal(&self, signal: Signal) {
        kill(self.pid(), signal).unwrap();
    }

    /// Whether the process is still there (stopped counts).
    fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().unwrap().is_none())
    }

    /// Sends `signal` and waits for the process to exit; its exit code (`None`: killed by a
    /// signal).
    fn end(&mut self, signal: Signal) -> Option<i32> {
        self.signal(signal);
        self.reap(Duration::from_secs(90))
    }

    fn reap(&mut self, limit: Duration) -> Option<i32> {
        let mut child = self.child.take().expect("running");
        let give_up = Instant::now() + limit;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.code();
            }
            assert!(Instant::now() < give_up, "{} did not exit", self.name);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Every line of this node's logs (all its starts) containing `needle`.
    fn log_lines(&self, needle: &str) -> Vec<String> {
        self.log_lines_where(|l| l.contains(needle))
    }

    /// Every line of this node's logs that mentions run `id` (as `run=ID`).
    fn log_lines_of_run(&self, id: i64) -> Vec<String> {
        let needle = format!("run={id}");
        self.log_lines_where(|l| {
            l.match_indices(&needle)
                .any(|(at, _)| !l[at + needle.len()..].starts_with(|c: char| c.is_ascii_digit()))
        })
    }

    fn log_lines_where(&self, keep: impl Fn(&str) -> bool) -> Vec<String> {
        (1..=self.starts)
            .flat_map(|start| {
                std::fs::read_to_string(self.log_path(start))
                    .unwrap_or_default()
                    .lines()
                    .filter(|l| keep(l))
                    .map(|l| format!("[start {start}] {l}"))
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // A failed test leaves no daemon behind (a stopped one must be continued to die).
        if let Some(mut child) = self.child.take() {
            let pid = Pid::from_raw(child.id() as i32);
            let _ = kill(pid, Signal::SIGCONT);
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// What the test did, when: printed at the end, and next to anything found wrong.
struct Timeline {
    began: Instant,
    events: Vec<(Timestamp, String)>,
}

impl Timeline {
    fn new() -> Timeline {
        Timeline {
            began: Instant::now(),
            events: Vec::new(),
        }
    }

    fn note(&mut self, what: impl Into<String>) {
        let what = what.into();
        let now = Timestamp::now();
        println!(
            "[{:>7.2}s] {now} {what}",
            self.began.elapsed().as_secs_f64()
        );
        self.events.push((now, what));
    }

    fn render(&self) -> String {
        let mut out = String::new();
        for (at, what) in &self.events {
            let _ = writeln!(out, "  {at} {what}");
        }
        out
    }
}

/// A job of the test: its name, and the period of its schedule in seconds.
type TestJob = (String, i64);

/// `fast` jobs that fire every second and run `true`, and `slow` ones that fire every 5 s and
/// run for 2 s (so that some run is going at any moment of the first 2 s of each 5).
fn jobs(fast: usize, slow: usize) -> Vec<TestJob> {
    let fast = (0..fast).map(|i| (format!("tick-{i:03}"), 1));
    fast.chain((0..slow).map(|i| (format!("slow-{i:02}"), 5)))
        .collect()
}

/// `count` jobs that fire every 5 s and deliver: each run takes 2 s, then appends its run id
/// to a file (see [`config`]), so that a fire delivered twice shows; and each may retry.
fn deliveries(count: usize) -> Vec<TestJob> {
    (0..count).map(|i| (format!("deliver-{i:02}"), 5)).collect()
}

/// The config of `node`, with `jobs`; `deliveries` is the file the `deliver-` jobs append to.
fn config(node: &str, jobs: &[TestJob], deliveries: Option<&Path>) -> String {
    let mut text = format!(
        "[settings]\n# database: CRONWARDEN_DATABASE_URL\nnode = \"{node}\"\nlisten = \"127.0.0.1:0\"\n"
    );
    for (name, period) in jobs {
        let (schedule, argv, retry) = match period {
            1 => ("* * * * * *", r#"["true"]"#.to_owned(), ""),
            5 if name.starts_with("deliver-") => {
                let file = deliveries.expect("a file for the deliveries").display();
                (
                    "*/5 * * * * *",
                    format!(r#"["sh", "-c", "sleep 2; echo $CRONWARDEN_RUN_ID >> '{file}'"]"#),
                    "retry = { max_attempts = 3, initial_delay = \"1s\" }\n",
                )
            }
            5 => ("*/5 * * * * *", r#"["sleep", "2"]"#.to_owned(), ""),
            other => panic!("no job fires every {other} s here"),
        };
        let _ = write!(
            text,
            "\n[[jobs]]\nname = \"{name}\"\nschedule = \"{schedule}\"\n{retry}\
             action = {{ type = \"command\", argv = {argv} }}\n"
        );
    }
    text
}

/// The runs that delivered (their ids in `file`, one line per delivery), by fire: each fire's
/// deliveries, whatever their attempt.
fn delivered(file: &Path, runs: &[Run]) -> BTreeMap<(String, Timestamp), Vec<i64>> {
    let by_id: HashMap<i64, &Run> = runs.iter().map(|r| (r.id.0, r)).collect();
    let mut fires: BTreeMap<(String, Timestamp), Vec<i64>> = BTreeMap::new();
    for line in std::fs::read_to_string(file).unwrap_or_default().lines() {
        let id: i64 = line.trim().parse().expect("a run id");
        let run = by_id.get(&id).expect("a delivery by a run in the store");
        fires
            .entry((run.job.to_string(), run.scheduled_at))
            .or_default()
            .push(id);
    }
    fires
}

/// Starts the nodes one after the other, then waits until all of them heartbeat; when.
fn start_all(nodes: &mut [Node], db: &Db, timeline: &mut Timeline) -> Timestamp {
    for node in nodes.iter_mut() {
        node.start();
        timeline.note(format!("{} started", node.name));
    }
    let names: BTreeSet<String> = nodes.iter().map(|n| n.name.clone()).collect();
    wait_for(Duration::from_secs(60), "every node to heartbeat", || {
        db.live_nodes().is_superset(&names)
    });
    let up = Timestamp::now();
    timeline.note("all nodes are up (each holds a live heartbeat)");
    up
}

/// SIGKILLs `node` at `ms` milliseconds into a second and restarts it at once.
fn kill_and_restart(node: &mut Node, ms: i64, timeline: &mut Timeline) {
    sleep_until_millis_into_second(ms);
    let code = node.end(Signal::SIGKILL);
    assert_eq!(code, None, "{} was killed by the signal", node.name);
    timeline.note(format!("{} SIGKILLed ({ms} ms into the second)", node.name));
    node.start();
    timeline.note(format!("{} restarted", node.name));
}

/// SIGKILLs `node` at `ms` milliseconds into a second, waits until another node has rescued
/// it (it is no longer registered and nothing of it is queued or running), and restarts it.
fn kill_and_restart_after_rescue(node: &mut Node, ms: i64, db: &Db, timeline: &mut Timeline) {
    sleep_until_millis_into_second(ms);
    let code = node.end(Signal::SIGKILL);
    assert_eq!(code, None, "{} was killed by the signal", node.name);
    timeline.note(format!("{} SIGKILLed ({ms} ms into the second)", node.name));
    let held = db.unfinished_of(&node.name);
    timeline.note(format!(
        "{} left {} runs: {}",
        node.name,
        held.len(),
        count(held.iter(), |r| r.status.as_str().to_owned())
    ));
    wait_for(
        Duration::from_secs(90),
        &format!("the rescue of the killed {}", node.name),
        || !db.nodes().contains_key(&node.name) && db.unfinished_of(&node.name).is_empty(),
    );
    let now: HashMap<_, Run> = db.runs().into_iter().map(|r| (r.id, r)).collect();
    timeline.note(format!(
        "{} rescued by another node; what it left is now: {}",
        node.name,
        count(held.iter(), |r| {
            let r = &now[&r.id];
            format!("{}/{}", r.node, r.status.as_str())
        })
    ));
    node.start();
    timeline.note(format!("{} restarted", node.name));
}

/// SIGTERMs every node at once; each must exit 0.
fn stop_all(nodes: &mut [Node], timeline: &mut Timeline) -> Timestamp {
    let at = Timestamp::now();
    for node in nodes.iter() {
        node.signal(Signal::SIGTERM);
    }
    timeline.note("SIGTERM to every node");
    for node in nodes.iter_mut() {
        let code = node.reap(Duration::from_secs(90));
        assert_eq!(code, Some(0), "{} exits 0 on SIGTERM", node.name);
    }
    timeline.note("every node exited 0");
    at
}

/// What a node held when it was SIGSTOPped, and what the others made of it meanwhile.
struct Stop {
    node: String,
    at: Timestamp,
    /// Its runs queued or running (in the store) right after the stop.
    held: Vec<Run>,
    /// The same runs just before it was continued: the rescue recorded those that had
    /// started abandoned, and took over those that had not (another node's since).
    rescued: Vec<Run>,
}

/// SIGSTOPs `node` `phase` milliseconds into a 5 s cycle, keeps it stopped for at least
/// `at_least` and until another node has rescued it (it is no longer registered and nothing
/// of it is queued or running), then SIGCONTs it.
fn stop_and_continue(
    node: &mut Node,
    phase: i64,
    at_least: Duration,
    db: &Db,
    timeline: &mut Timeline,
) -> Stop {
    sleep_until_phase(5000, phase);
    node.signal(Signal::SIGSTOP);
    let at = Timestamp::now();
    let stopped = Instant::now();
    timeline.note(format!(
        "{} SIGSTOPped ({phase} ms into a 5 s cycle)",
        node.name
    ));
    // Writes already on their way may still land: look once they have.
    std::thread::sleep(Duration::from_millis(300));
    let held = db.unfinished_of(&node.name);
    timeline.note(format!(
        "{} holds {} queued/running runs while stopped",
        node.name,
        held.len()
    ));
    wait_for(
        Duration::from_secs(90),
        &format!("the rescue of the stopped {}", node.name),
        || !db.nodes().contains_key(&node.name) && db.unfinished_of(&node.name).is_empty(),
    );
    timeline.note(format!(
        "{} rescued by another node (it is no longer registered)",
        node.name
    ));
    sleep_until(stopped + at_least);
    let now: HashMap<_, Run> = db.runs().into_iter().map(|r| (r.id, r)).collect();
    let rescued: Vec<Run> = held
        .iter()
        .filter_map(|r| now.get(&r.id).cloned())
        .collect();
    node.signal(Signal::SIGCONT);
    timeline.note(format!(
        "{} SIGCONTed after {:.1}s; what it held is now: {}",
        node.name,
        stopped.elapsed().as_secs_f64(),
        count(rescued.iter(), |r| format!(
            "{}/{}",
            r.node,
            r.status.as_str()
        ))
    ));
    Stop {
        node: node.name.clone(),
        at,
        held,
        rescued,
    }
}

/// What the runs in the database say, over the window `from..=to` (whole seconds).
struct Findings {
    /// Problems: each one fails the test.
    failures: Vec<String>,
    /// The first attempts of the fires in the window, by (job, second).
    fires: HashMap<(String, i64), Vec<Run>>,
}

fn count<'a>(runs: impl Iterator<Item = &'a Run>, key: impl Fn(&Run) -> String) -> String {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for run in runs {
        *counts.entry(key(run)).or_default() += 1;
    }
    counts
        .iter()
        .map(|(k, n)| format!("{k}={n}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn describe(run: &Run) -> String {
    format!(
        "run {} {} @{} attempt {} {:?} {} on {} started={:?} finished={:?} error={:?}",
        run.id,
        run.job,
        run.scheduled_at,
        run.attempt,
        run.trigger,
        run.status.as_str(),
        run.node,
        run.started_at,
        run.finished_at,
        run.error
    )
}

/// Checks the invariants over every run, and prints the counts.
fn check(runs: &[Run], jobs: &[TestJob], from: i64, to: i64, nodes: &[Node]) -> Findings {
    let mut failures = Vec::new();
    let in_window = |r: &Run| (from..=to).contains(&r.scheduled_at.as_second());
    let scheduled = |r: &Run| matches!(r.trigger, Trigger::Schedule | Trigger::CatchUp);

    // Every fire of the window: exactly one first attempt.
    let mut fires: HashMap<(String, i64), Vec<Run>> = HashMap::new();
    for run in runs
        .iter()
        .filter(|r| scheduled(r) && r.attempt == 1 && in_window(r))
    {
        fires
            .entry((run.job.to_string(), run.scheduled_at.as_second()))
            .or_default()
            .push(run.clone());
    }
    let expected: usize = jobs
        .iter()
        .map(|(_, period)| (from..=to).filter(|s| s % period == 0).count())
        .sum();
    let mut missing = Vec::new();
    let mut duplicated = Vec::new();
    for (job, period) in jobs {
        for second in (from..=to).filter(|s| s % period == 0) {
            match fires.get(&(job.clone(), second)).map_or(0, Vec::len) {
                0 => missing.push(format!("{job}@{}", Timestamp::from_second(second).unwrap())),
                1 => {}
                _ => duplicated.push(fires[&(job.clone(), second)].clone()),
            }
        }
    }
    // Every scheduled run on one of its job's instants.
    let period: HashMap<&str, i64> = jobs.iter().map(|(j, p)| (j.as_str(), *p)).collect();
    let off_schedule: Vec<&Run> = runs
        .iter()
        .filter(|r| {
            scheduled(r)
                && (r.scheduled_at.subsec_nanosecond() != 0
                    || period
                        .get(r.job.as_str())
                        .is_none_or(|p| r.scheduled_at.as_second() % p != 0))
        })
        .collect();
    // Every run final.
    let unfinished: Vec<&Run> = runs.iter().filter(|r| !r.status.is_final()).collect();
    // At most one success per fire, across attempts.
    let mut successes: HashMap<(String, Timestamp), usize> = HashMap::new();
    for run in runs.iter().filter(|r| r.status == RunStatus::Succeeded) {
        *successes
            .entry((run.job.to_string(), run.scheduled_at))
            .or_default() += 1;
    }
    let twice: Vec<_> = successes.iter().filter(|(_, n)| **n > 1).collect();
    let window_runs: Vec<&Run> = fires.values().flatten().collect();
    // A fire is recorded missed when it is found more than its grace (1 min) late, or when a
    // later fire of its job was already due then (the latest due fire supersedes the earlier
    // ones: see the README's "When fires are late"). Anything else is a fault.
    let mut fires_of_job: HashMap<&str, Vec<Timestamp>> = HashMap::new();
    for run in runs.iter() {
        fires_of_job
            .entry(run.job.as_str())
            .or_default()
            .push(run.scheduled_at);
    }
    let superseded = |r: &Run| {
        let recorded = r.finished_at.unwrap_or(r.scheduled_at);
        fires_of_job[r.job.as_str()]
            .iter()
            .any(|at| *at > r.scheduled_at && *at <= recorded)
    };
    let missed: Vec<&&Run> = window_runs
        .iter()
        .filter(|r| r.status == RunStatus::Missed && !superseded(r))
        .collect();
    // A fire is lost when its run was given up without its start being recorded: it cannot
    // have begun anywhere, yet it did not run (a run whose start was recorded, then abandoned,
    // may have run on the node that died).
    let lost: Vec<&&Run> = window_runs
        .iter()
        .filter(|r| {
            matches!(r.status, RunStatus::Abandoned | RunStatus::Interrupted)
                && r.started_at.is_none()
        })
        .collect();
    let later_attempts = runs.iter().filter(|r| r.attempt > 1).count();

    println!(
        "window: {} .. {} ({} s), {} jobs: {expected} fires",
        Timestamp::from_second(from).unwrap(),
        Timestamp::from_second(to).unwrap(),
        to - from + 1,
        jobs.len()
    );
    println!(
        "fires in the window with a first attempt: {} (missing {}, duplicated {})",
        fires.len(),
        missing.len(),
        duplicated.len()
    );
    println!(
        "  by status: {}",
        count(window_runs.iter().copied(), |r| r
            .status
            .as_str()
            .to_owned())
    );
    println!(
        "  by node: {}",
        count(window_runs.iter().copied(), |r| r.node.clone())
    );
    println!(
        "  by trigger: {}",
        count(window_runs.iter().copied(), |r| format!("{:?}", r.trigger))
    );
    println!(
        "all runs: {} ({} unfinished, {later_attempts} later attempts)",
        runs.len(),
        unfinished.len()
    );
    println!(
        "  by status: {}",
        count(runs.iter(), |r| r.status.as_str().to_owned())
    );
    println!("  by node: {}", count(runs.iter(), |r| r.node.clone()));
    let abandoned: Vec<&Run> = runs
        .iter()
        .filter(|r| r.status == RunStatus::Abandoned)
        .collect();
    println!(
        "fires of the window given up without a start (lost): {}",
        lost.len()
    );
    println!(
        "abandoned: {} ({} in the window); by node and reason:",
        abandoned.len(),
        window_runs
            .iter()
            .filter(|r| r.status == RunStatus::Abandoned)
            .count()
    );
    let mut reasons: BTreeMap<(String, String), usize> = BTreeMap::new();
    for run in &abandoned {
        *reasons
            .entry((run.node.clone(), run.error.clone().unwrap_or_default()))
            .or_default() += 1;
    }
    for ((node, reason), n) in &reasons {
        println!("  {node}: {n} × {reason}");
    }
    println!(
        "skipped: {}",
        count(
            runs.iter().filter(|r| r.status == RunStatus::Skipped),
            |r| format!("{} ({})", r.error.as_deref().unwrap_or(""), r.node)
        )
    );
    for node in nodes {
        for line in node.log_lines("ERROR").iter().take(3) {
            println!("{}: {line}", node.name);
        }
        println!(
            "{}: {} start(s); log: {} \"claim given up\", {} \"result not recorded\", {} \"earlier claims are given up\" (its heartbeat ran out), {} \"presumed dead\" (rescues it did, itself included), {} errors",
            node.name,
            node.starts,
            node.log_lines("claim given up").len(),
            node.log_lines("result not recorded").len(),
            node.log_lines("earlier claims are given up").len(),
            node.log_lines("node presumed dead").len(),
            node.log_lines("ERROR").len(),
        );
    }

    if !missing.is_empty() {
        failures.push(format!(
            "{} fires of the window have no run (first: {:?})",
            missing.len(),
            &missing[..missing.len().min(20)]
        ));
    }
    if !duplicated.is_empty() {
        let sample: Vec<String> = duplicated
            .iter()
            .take(5)
            .flat_map(|runs| runs.iter().map(describe))
            .collect();
        failures.push(format!(
            "{} fires were claimed more than once: {sample:#?}",
            duplicated.len()
        ));
    }
    if !off_schedule.is_empty() {
        failures.push(format!(
            "{} scheduled runs are not on one of their job's instants: {:#?}",
            off_schedule.len(),
            off_schedule
                .iter()
                .take(5)
                .map(|r| describe(r))
                .collect::<Vec<_>>()
        ));
    }
    if !unfinished.is_empty() {
        let mut detail = String::new();
        let _ = writeln!(
            detail,
            "  by node, status and scheduled instant: {}",
            count(unfinished.iter().copied(), |r| format!(
                "{}/{}@{}",
                r.node,
                r.status.as_str(),
                r.scheduled_at
            ))
        );
        for run in unfinished.iter().take(5) {
            let _ = writeln!(detail, "  {}", describe(run));
            if let Some(node) = nodes.iter().find(|n| n.name == run.node) {
                for line in node.log_lines_of_run(run.id.0) {
                    let _ = writeln!(detail, "    {line}");
                }
            }
        }
        // What the cluster did about the nodes holding them: rescues (by any node), and the
        // nodes' own findings that their heartbeat ran out.
        let holders: BTreeSet<&str> = unfinished.iter().map(|r| r.node.as_str()).collect();
        for holder in holders {
            let _ = writeln!(detail, "  the cluster on {holder}:");
            for node in nodes {
                for line in node.log_lines_where(|l| {
                    l.contains(&format!("node=\"{holder}\""))
                        && (l.contains("presumed dead")
                            || l.contains("heartbeat ran out")
                            || l.contains("maintenance lease"))
                }) {
                    let _ = writeln!(detail, "    {}: {line}", node.name);
                }
            }
        }
        failures.push(format!(
            "{} runs are left without a final status ({}); first ones, with what their node logged about them:\n{detail}",
            unfinished.len(),
            count(unfinished.iter().copied(), |r| format!("{}/{}", r.node, r.status.as_str()))
        ));
    }
    if !twice.is_empty() {
        failures.push(format!(
            "{} fires succeeded more than once: {:?}",
            twice.len(),
            twice.iter().take(10).collect::<Vec<_>>()
        ));
    }
    if !missed.is_empty() {
        failures.push(format!(
            "{} fires of the window were recorded missed though no later fire of their job was due yet: a fire is missed only when it is found more than its grace (1 min) late, which nothing here should cause (a node stalled that long, or no node could claim), or when a later fire supersedes it: {:#?}",
            missed.len(),
            missed.iter().take(10).map(|r| describe(r)).collect::<Vec<_>>()
        ));
    }
    if !lost.is_empty() {
        failures.push(format!(
            "{} fires of the window were given up before they started, and not run anywhere: {:#?}",
            lost.len(),
            lost.iter()
                .take(10)
                .map(|r| describe(r))
                .collect::<Vec<_>>()
        ));
    }
    if later_attempts > 0 {
        failures.push(format!(
            "{later_attempts} runs are later attempts: no job here fails, most allow one attempt, and those that may retry (deliver-*) only meet store outages, which must abandon nothing"
        ));
    }
    Findings { failures, fires }
}

/// What the stopped node held was taken over while it was stopped: a run that had started is
/// recorded abandoned, and stays so (its late result, if any, was refused); one that had not
/// is another node's, and was run there (not here: its start here was refused).
fn check_stop(stop: &Stop, runs: &[Run], node: &Node, failures: &mut Vec<String>) {
    let now: HashMap<_, &Run> = runs.iter().map(|r| (r.id, r)).collect();
    println!(
        "SIGSTOPped {} at {}: it held {} queued/running runs ({}); before it was continued: {}",
        stop.node,
        stop.at,
        stop.held.len(),
        count(stop.held.iter(), |r| r.status.as_str().to_owned()),
        count(stop.rescued.iter(), |r| format!(
            "{}/{}",
            r.node,
            r.status.as_str()
        ))
    );
    if stop.held.is_empty() {
        println!("  (nothing was in flight at the stop: the fencing check below is vacuous)");
    }
    for held in &stop.held {
        let Some(rescued) = stop.rescued.iter().find(|r| r.id == held.id) else {
            failures.push(format!(
                "a run the stopped node held is gone: {}",
                describe(held)
            ));
            continue;
        };
        let taken_over = match held.status {
            RunStatus::Running => {
                rescued.status == RunStatus::Abandoned
                    && rescued.node == stop.node
                    && rescued.finished_at.is_some_and(|f| f >= stop.at)
            }
            _ => rescued.node != stop.node,
        };
        if !taken_over {
            failures.push(format!(
                "a run the stopped node held was not taken over while it was stopped: was {}, then {}",
                describe(held),
                describe(rescued)
            ));
            continue;
        }
        match now.get(&held.id) {
            Some(run) if rescued.status == RunStatus::Abandoned && **run != *rescued => {
                failures.push(format!(
                    "a rescued run of the stopped node was overwritten after it came back: was {}, now {}",
                    describe(rescued),
                    describe(run)
                ));
            }
            Some(run) if rescued.status != RunStatus::Abandoned && run.node == stop.node => {
                failures.push(format!(
                    "a run taken over from the stopped node is its own again: {}",
                    describe(run)
                ))
            }
            Some(_) => {}
            None => failures.push(format!("a rescued run is gone: {}", describe(rescued))),
        }
    }
    // What the node did with them once continued: a queued one is not started ("claim given
    // up"), a running one's result is refused ("result not recorded").
    for status in [RunStatus::Queued, RunStatus::Running] {
        let held: Vec<&Run> = stop.held.iter().filter(|r| r.status == status).collect();
        let given_up = held
            .iter()
            .filter(|r| {
                node.log_lines_of_run(r.id.0)
                    .iter()
                    .any(|l| l.contains("claim given up"))
            })
            .count();
        let refused = held
            .iter()
            .filter(|r| {
                node.log_lines_of_run(r.id.0)
                    .iter()
                    .any(|l| l.contains("result not recorded"))
            })
            .count();
        println!(
            "  held {}: {}; once continued, {} logged as \"claim given up\", {} as \"result not recorded\" (refused: fencing)",
            status.as_str(),
            held.len(),
            given_up,
            refused
        );
    }
}

fn finish(dir: &Path, timeline: &Timeline, failures: Vec<String>) {
    println!("timeline:\n{}", timeline.render());
    if failures.is_empty() {
        // CRONWARDEN_TEST_KEEP_LOGS=1 keeps the nodes' logs of a passing run too.
        if std::env::var_os("CRONWARDEN_TEST_KEEP_LOGS").is_some() {
            println!("the nodes' logs are kept under {}", keep(dir).display());
        }
        return;
    }
    panic!(
        "{} invariant(s) broken (the nodes' logs are kept under {}):\n{}\ntimeline:\n{}",
        failures.len(),
        keep(dir).display(),
        failures.join("\n"),
        timeline.render()
    );
}

/// A copy of the test's directory (each node's config and logs) that outlives the test: the
/// directory itself goes with its guard.
fn keep(dir: &Path) -> PathBuf {
    let name = dir.file_name().unwrap().to_string_lossy();
    let kept = std::env::temp_dir().join(format!("{name}-kept"));
    std::fs::create_dir_all(&kept).unwrap();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let to = kept.join(entry.file_name());
        if entry.path().is_file() {
            let _ = std::fs::copy(entry.path(), to);
            continue;
        }
        std::fs::create_dir_all(&to).unwrap();
        for file in std::fs::read_dir(entry.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let _ = std::fs::copy(file.path(), to.join(file.file_name()));
        }
    }
    kept
}

#[test]
fn three_nodes_survive_kills_and_stops_with_each_fire_claimed_once() {
    // 200 jobs every second, and 30 that run for 2 s every 5 s (so that runs are going when
    // a node is stopped, and their results come late: 5 of them prefer node-3).
    let jobs = jobs(200, 30);
    let Some(database) = PgDatabase::create("cw_chaos") else {
        return;
    };
    let began = Instant::now();
    let dir = temp_dir("kills");
    let env = vec![("CRONWARDEN_DATABASE_URL".to_owned(), database.url.clone())];
    let mut nodes: Vec<Node> = (1..=3)
        .map(|i| {
            let name = format!("node-{i}");
            Node::new(&dir, &name, &config(&name, &jobs, None), env.clone())
        })
        .collect();
    let mut timeline = Timeline::new();
    let db = Db::connect(&database.url);
    let up = start_all(&mut nodes, &db, &mut timeline);
    let t0 = Instant::now();
    let at = |secs: u64| t0 + Duration::from_secs(secs);

    // Every 20 s a node is killed and restarted, in turn, each time at another point of the
    // one-second cycle (claims go out 500 ms and 100 ms before a fire; runs start at it).
    sleep_until(at(20));
    kill_and_restart(&mut nodes[0], 550, &mut timeline);
    sleep_until(at(40));
    kill_and_restart(&mut nodes[1], 750, &mut timeline);
    sleep_until(at(60));
    kill_and_restart(&mut nodes[2], 950, &mut timeline);
    // node-3 is stopped for 15 s (or until rescued, if later), past its 10 s lease: 700 ms
    // into a second, when its claims for the next second are queued, and 1.7 s into a 5 s
    // cycle, when its slow runs are going.
    sleep_until(at(63));
    let stop = stop_and_continue(
        &mut nodes[2],
        1700,
        Duration::from_secs(15),
        &db,
        &mut timeline,
    );
    sleep_until(at(80).max(Instant::now() + Duration::from_secs(2)));
    kill_and_restart(&mut nodes[0], 50, &mut timeline);
    // node-2 is killed just before an instant, after it claimed the next second's fires, and
    // stays down until the others have rescued it: they run what it claimed.
    sleep_until(at(100));
    kill_and_restart_after_rescue(&mut nodes[1], 900, &db, &mut timeline);
    sleep_until(at(120));
    kill_and_restart(&mut nodes[2], 450, &mut timeline);
    sleep_until(at(135));
    for node in &mut nodes {
        assert!(node.alive(), "{} is still running", node.name);
    }
    let stopped = stop_all(&mut nodes, &mut timeline);
    let chaos = t0.elapsed();

    let runs = db.runs();
    let from = ceil_second(up) + 2;
    let to = second_before(stopped) - 2;
    println!(
        "--- three nodes, {} jobs, {:.0} s of chaos ({:.0} s in all)",
        jobs.len(),
        chaos.as_secs_f64(),
        began.elapsed().as_secs_f64()
    );
    let mut findings = check(&runs, &jobs, from, to, &nodes);
    check_stop(&stop, &runs, &nodes[2], &mut findings.failures);
    assert!(
        to - from >= 120,
        "the window is at least 2 minutes long: {from}..{to}"
    );
    drop(db);
    finish(&dir, &timeline, findings.failures);
}

/// A TCP proxy in front of PostgreSQL that can be cut: every open connection is closed at
/// once, and new ones are accepted and closed at once, until it is restored.
struct Proxy {
    port: u16,
    cut: tokio::sync::watch::Sender<bool>,
    stats: Arc<ProxyStats>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Default)]
struct ProxyStats {
    proxied: AtomicUsize,
    closed_by_cut: AtomicUsize,
    dropped_while_cut: AtomicUsize,
}

impl Proxy {
    fn start(upstream: String) -> Proxy {
        let (cut, cut_rx) = tokio::sync::watch::channel(false);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        let stats = Arc::new(ProxyStats::default());
        let thread = std::thread::spawn({
            let stats = stats.clone();
            move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                    port_tx.send(listener.local_addr().unwrap().port()).unwrap();
                    tokio::pin!(stopped);
                    loop {
                        let client = tokio::select! {
                            _ = &mut stopped => break,
                            accepted = listener.accept() => match accepted {
                                Ok((client, _)) => client,
                                Err(_) => continue,
                            },
                        };
                        if *cut_rx.borrow() {
                            stats.dropped_while_cut.fetch_add(1, Ordering::Relaxed);
                            drop(client);
                            continue;
                        }
                        stats.proxied.fetch_add(1, Ordering::Relaxed);
                        let (mut cut_rx, stats, upstream) =
                            (cut_rx.clone(), stats.clone(), upstream.clone());
                        tokio::spawn(async move {
                            let mut client = client;
                            let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await
                            else {
                                return;
                            };
                            let _ = (client.set_nodelay(true), server.set_nodelay(true));
                            tokio::select! {
                                _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                                _ = cut_rx.wait_for(|cut| *cut) => {
                                    stats.closed_by_cut.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                            // Both ends close here.
                        });
                    }
                });
                // Dropping the runtime ends every connection task, closing its sockets.
            }
        });
        let port = port_rx.recv().unwrap();
        Proxy {
            port,
            cut,
            stats,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn set_cut(&self, cut: bool) {
        self.cut.send_replace(cut);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[test]
fn nodes_cut_off_from_postgres_for_15_seconds_recover() {
    // Cut 300 ms into a second (before the claims for the next one) and 1.3 s into a 5 s
    // cycle (the deliveries are going), for longer than the nodes' lease: every lease runs
    // out meanwhile, and nobody died, so nothing may be rescued (abandoned, retried, run
    // twice) once PostgreSQL is back.
    cut_off(
        "cut",
        1300,
        Duration::from_secs(15),
        Duration::from_secs(25),
    );
}

#[test]
fn a_store_blip_shorter_than_the_lease_leaves_no_run_unfinished() {
    // Cut 700 ms into a second (the next second's fires are claimed: they wait for their
    // starts to be recorded, and run once the store is back) and 1.7 s into a 5 s cycle (the
    // deliveries are going, and end while cut off), for less than the lease: nobody is
    // presumed dead.
    cut_off(
        "blip",
        1700,
        Duration::from_secs(3),
        Duration::from_secs(12),
    );
}

/// Three nodes, 50 jobs every second and 10 retrying ones that deliver every 5 s, reaching
/// PostgreSQL through a [`Proxy`], which is cut `phase` milliseconds into a 5 s cycle, for
/// `cut_for`, then restored; `then` later every node is stopped and the invariants are
/// checked. While cut off the nodes keep running; afterwards each fire due meanwhile has its
/// row, no run was abandoned (nobody died), and no fire delivered twice.
fn cut_off(name: &str, phase: i64, cut_for: Duration, then: Duration) {
    const JOBS: usize = 50;
    const DELIVERIES: usize = 10;
    let mut jobs = jobs(JOBS, 0);
    jobs.extend(deliveries(DELIVERIES));
    const TOKEN: &str = "chaos-admin-token-0123456789";
    let Some(database) = PgDatabase::create("cw_chaos") else {
        return;
    };
    let began = Instant::now();
    let dir = temp_dir(name);
    let delivery_file = dir.join("deliveries");
    let (upstream, _) = split_host(&database.url, "");
    let proxy = Proxy::start(upstream);
    let (_, via_proxy) = split_host(&database.url, &format!("127.0.0.1:{}", proxy.port));
    let env = vec![
        ("CRONWARDEN_DATABASE_URL".to_owned(), via_proxy),
        // The first node to start stores it; the others find it there.
        ("CRONWARDEN_ADMIN_TOKEN".to_owned(), TOKEN.to_owned()),
    ];
    let mut nodes: Vec<Node> = (1..=3)
        .map(|i| {
            let name = format!("node-{i}");
            let config = config(&name, &jobs, Some(&delivery_file));
            Node::new(&dir, &name, &config, env.clone())
        })
        .collect();
    let mut timeline = Timeline::new();
    let db = Db::connect(&database.url);
    let up = start_all(&mut nodes, &db, &mut timeline);
    let t0 = Instant::now();
    for node in &nodes {
        let api = node.api.clone().unwrap();
        wait_for(
            Duration::from_secs(60),
            &format!("{} to be ready", node.name),
            || db.readyz(&api, TOKEN) == Ok(200),
        );
    }

    sleep_until(t0 + Duration::from_secs(12));
    sleep_until_phase(5000, phase);
    proxy.set_cut(true);
    let cut_at = Timestamp::now();
    let cut = Instant::now();
    timeline.note(format!(
        "PostgreSQL cut off ({phase} ms into a 5 s cycle; every proxied connection closed)"
    ));
    // While cut off, every node keeps running; readiness is what it is (recorded).
    let mut readiness: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    while cut.elapsed() < cut_for {
        for node in &mut nodes {
            assert!(
                node.alive(),
                "{} exited while cut off from PostgreSQL",
                node.name
            );
            let api = node.api.clone().unwrap();
            let seen = match db.readyz(&api, TOKEN) {
                Ok(code) => code.to_string(),
                Err(_) => "no answer".to_owned(),
            };
            *readiness
                .entry(node.name.clone())
                .or_default()
                .entry(seen)
                .or_default() += 1;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    proxy.set_cut(false);
    let restored_at = Timestamp::now();
    let restored = Instant::now();
    timeline.note(format!(
        "PostgreSQL reachable again after {:.1}s; /readyz while cut off: {readiness:?}",
        cut.elapsed().as_secs_f64()
    ));
    for node in &nodes {
        let api = node.api.clone().unwrap();
        wait_for(
            Duration::from_secs(60),
            &format!("{} to be ready again", node.name),
            || db.readyz(&api, TOKEN) == Ok(200),
        );
        timeline.note(format!(
            "{} ready again, {:.1}s after the restore",
            node.name,
            restored.elapsed().as_secs_f64()
        ));
    }
    let cut_off = second_before(restored_at) >= ceil_second(cut_at);
    assert!(cut_off, "the cut spanned whole seconds");
    // Every fire that fell due while cut off gets its row once the store is back.
    let (first_cut, last_cut) = (ceil_second(cut_at), second_before(restored_at));
    let fires_while_cut: usize = jobs
        .iter()
        .map(|(_, period)| (first_cut..=last_cut).filter(|s| s % period == 0).count())
        .sum();
    wait_for(
        Duration::from_secs(60),
        "rows for the fires due while cut off",
        || {
            let runs = db.runs();
            let seconds: BTreeSet<(String, i64)> = runs
                .iter()
                .filter(|r| r.attempt == 1 && r.trigger != Trigger::Manual)
                .map(|r| (r.job.to_string(), r.scheduled_at.as_second()))
                .filter(|(_, s)| (first_cut..=last_cut).contains(s))
                .collect();
            seconds.len() == fires_while_cut
        },
    );
    timeline.note("every fire due while cut off has its row");
    sleep_until(restored + then);
    for node in &mut nodes {
        assert!(node.alive(), "{} is still running", node.name);
    }
    let stopped = stop_all(&mut nodes, &mut timeline);
    let chaos = t0.elapsed();

    let runs = db.runs();
    let from = ceil_second(up) + 2;
    let to = second_before(stopped) - 2;
    println!(
        "--- three nodes through a proxy, {JOBS} jobs every second, cut off for {:.1} s, {:.0} s of chaos ({:.0} s in all)",
        (restored_at.duration_since(cut_at)).as_secs_f64(),
        chaos.as_secs_f64(),
        began.elapsed().as_secs_f64()
    );
    println!(
        "proxy: {} connections proxied, {} closed by the cut, {} dropped while cut",
        proxy.stats.proxied.load(Ordering::Relaxed),
        proxy.stats.closed_by_cut.load(Ordering::Relaxed),
        proxy.stats.dropped_while_cut.load(Ordering::Relaxed)
    );
    let mut findings = check(&runs, &jobs, from, to, &nodes);
    // Nobody died: nothing is abandoned (outside the last seconds, which the stop may
    // interrupt), and nothing delivered twice (a run abandoned after it delivered, then
    // retried, would deliver again).
    let abandoned: Vec<&Run> = runs
        .iter()
        .filter(|r| r.status == RunStatus::Abandoned && r.scheduled_at.as_second() <= to)
        .collect();
    if !abandoned.is_empty() {
        findings.failures.push(format!(
            "{} runs were abandoned, though no node died: {:#?}",
            abandoned.len(),
            abandoned
                .iter()
                .take(10)
                .map(|r| describe(r))
                .collect::<Vec<_>>()
        ));
    }
    let delivered = delivered(&delivery_file, &runs);
    let twice: Vec<String> = delivered
        .iter()
        .filter(|(_, ids)| ids.len() > 1)
        .map(|((job, at), ids)| format!("{job}@{at} by runs {ids:?}"))
        .collect();
    println!(
        "deliveries: {} fires delivered, {} more than once",
        delivered.len(),
        twice.len()
    );
    if !twice.is_empty() {
        findings
            .failures
            .push(format!("fires delivered more than once: {twice:#?}"));
    }
    // The fires due while cut off: what became of them.
    let during: Vec<&Run> = findings
        .fires
        .values()
        .flatten()
        .filter(|r| (first_cut..=last_cut).contains(&r.scheduled_at.as_second()))
        .collect();
    let lateness: Vec<f64> = during
        .iter()
        .filter_map(|r| Some(r.started_at?.duration_since(r.scheduled_at).as_secs_f64()))
        .collect();
    println!(
        "fires due while cut off ({} s): {} runs; by status: {}; by trigger: {}; by node: {}; started: {}",
        last_cut - first_cut + 1,
        during.len(),
        count(during.iter().copied(), |r| r.status.as_str().to_owned()),
        count(during.iter().copied(), |r| format!("{:?}", r.trigger)),
        count(during.iter().copied(), |r| r.node.clone()),
        if lateness.is_empty() {
            "none".to_owned()
        } else {
            format!(
                "{}, {:.1}..{:.1} s late",
                lateness.len(),
                lateness.iter().copied().fold(f64::INFINITY, f64::min),
                lateness.iter().copied().fold(0.0, f64::max)
            )
        },
    );
    let mut by_second: BTreeMap<i64, Vec<&Run>> = BTreeMap::new();
    for run in &during {
        by_second
            .entry(run.scheduled_at.as_second())
            .or_default()
            .push(run);
    }
    for (second, runs) in &by_second {
        println!(
            "  {}: {}",
            Timestamp::from_second(*second).unwrap(),
            count(runs.iter().copied(), |r| format!(
                "{}/{}",
                r.node,
                r.status.as_str()
            ))
        );
    }
    drop(db);
    finish(&dir, &timeline, findings.failures);
}
