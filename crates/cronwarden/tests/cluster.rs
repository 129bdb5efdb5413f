//! Several nodes on one PostgreSQL database, in one process: each node is a `Scheduler` with
//! its own store connection and name. (The process-level test, with nodes killed and stopped,
//! is the chaos test.)
#![cfg(feature = "postgres")]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use cronwarden::clock::{Clock, SystemClock, TestClock};
use cronwarden::executor::{Executors, JobError, RustJobs};
use cronwarden::model::{Action, JobName, JobSpec, Run, RunStatus, Trigger};
use cronwarden::scheduler::{Scheduler, SchedulerConfig, SchedulerEvent};
use cronwarden::store::{ClaimFire, PostgresStore, RunFilter, Store};
use jiff::{SignedDuration, Timestamp};
use support::pg::TestDatabase;

fn job(name: &str, schedule: Option<&str>) -> JobSpec {
    JobSpec::new(
        JobName::new(name).unwrap(),
        schedule,
        Action::Rust {
            handler: "work".to_owned(),
        },
    )
}

/// Counts the runs of the `work` handler, per job and instant.
fn counting(runs: Arc<std::sync::Mutex<Vec<(String, Timestamp)>>>) -> RustJobs {
    RustJobs::new().register("work", move |ctx: cronwarden::executor::RunContext| {
        runs.lock()
            .unwrap()
            .push((ctx.job.to_string(), ctx.scheduled_at));
        async { Ok::<_, JobError>(String::new()) }
    })
}

async fn node(
    db: &TestDatabase,
    name: &str,
    clock: Arc<dyn Clock>,
    rust: RustJobs,
) -> (Scheduler, Arc<PostgresStore>) {
    let store = Arc::new(PostgresStore::connect(&db.url).await.unwrap());
    let scheduler = Scheduler::new(
        store.clone(),
        clock,
        Executors::new(rust),
        SchedulerConfig {
            node: name.to_owned(),
            heartbeat_interval: SignedDuration::from_millis(200),
            node_lease: SignedDuration::from_secs(2),
            ..SchedulerConfig::default()
        },
    );
    (scheduler, store)
}

async fn all_runs(store: &PostgresStore) -> Vec<Run> {
    store
        .list_runs(&RunFilter {
            limit: Some(100_000),
            ..RunFilter::default()
        })
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_claim_each_fire_once_and_share_the_work() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let executed = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut nodes = Vec::new();
    for name in ["node-a", "node-b", "node-c"] {
        nodes.push(node(&db, name, Arc::new(SystemClock), counting(executed.clone())).await);
    }
    for i in 0..30 {
        nodes[0]
            .1
            .upsert_job(
                &job(&format!("tick-{i:02}"), Some("* * * * * *")),
                Timestamp::now(),
            )
            .await
            .unwrap();
    }
    for (scheduler, _) in &nodes {
        scheduler.start();
    }
    // Until every node has seen the others and each has run fires of its own.
    let store = nodes[0].1.clone();
    let give_up = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let runs = all_runs(&store).await;
        let by_node: BTreeSet<String> = runs
            .iter()
            .filter(|r| r.status == RunStatus::Succeeded)
            .map(|r| r.node.clone())
            .collect();
        if by_node.len() == 3 && runs.len() >= 30 * 6 {
            break;
        }
        if std::time::Instant::now() >= give_up {
            let mut seen: BTreeMap<(String, String), usize> = BTreeMap::new();
            for r in &runs {
                *seen
                    .entry((r.node.clone(), format!("{:?}", r.status)))
                    .or_default() += 1;
            }
            panic!("nodes did not all work: {by_node:?} {seen:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (scheduler, _) in &nodes {
        scheduler.stop().await;
    }
    let runs = all_runs(&store).await;
    // Exactly one claim per (job, second), and each run executed once.
    let mut claims: BTreeMap<(String, Timestamp), usize> = BTreeMap::new();
    for run in &runs {
        assert_eq!(run.trigger, Trigger::Schedule);
        *claims
            .entry((run.job.to_string(), run.scheduled_at))
            .or_default() += 1;
    }
    assert!(claims.values().all(|&n| n == 1), "a fire was claimed twice");
    let executed = executed.lock().unwrap().clone();
    let distinct: BTreeSet<_> = executed.iter().cloned().collect();
    assert_eq!(distinct.len(), executed.len(), "a fire was run twice");
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    for run in &runs {
        *per_node.entry(run.node.clone()).or_default() += 1;
    }
    println!("fires claimed per node: {per_node:?}");
    assert!(
        per_node.values().all(|&n| n * 10 >= runs.len()),
        "{per_node:?}"
    );
    assert!(
        runs.iter().all(|r| r.status.is_final()),
        "every run has a final status"
    );
}

#[tokio::test]
async fn a_dead_nodes_runs_are_abandoned_and_retried_by_a_live_node() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
    let clock = TestClock::new(t0);
    let executed = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (survivor, store) = node(
        &db,
        "survivor",
        Arc::new(clock.clone()),
        counting(executed.clone()),
    )
    .await;
    // A node that claimed a fire, started it, and died: its heartbeat ran out a second ago.
    let mut spec = job("report", None);
    spec.retry.max_attempts = 2;
    store.upsert_job(&spec, t0).await.unwrap();
    store
        .heartbeat(
            "ghost",
            t0 - SignedDuration::from_secs(60),
            t0 - SignedDuration::from_secs(1),
        )
        .await
        .unwrap();
    let claimed = store
        .claim_fire(ClaimFire {
            job: &spec.name,
            scheduled_at: t0 - SignedDuration::from_secs(30),
            trigger: Trigger::Schedule,
            attempt: 1,
            node: "ghost",
        })
        .await
        .unwrap()
        .unwrap();
    assert!(store
        .start_run(
            claimed.id,
            claimed.fencing_token,
            t0 - SignedDuration::from_secs(30)
        )
        .await
        .unwrap());
    let mut events = survivor.subscribe();
    survivor.start();
    // The survivor takes the maintenance lease, rescues the ghost's run and retries it.
    let retry = loop {
        let event = tokio::time::timeout(Duration::from_secs(10), events.recv())
            .await
            .expect("the rescue within 10 s")
            .unwrap();
        if let SchedulerEvent::RunFinished(run) = event {
            if run.trigger == Trigger::Retry {
                break run;
            }
        }
    };
    assert!(survivor.is_maintainer());
    assert_eq!(retry.status, RunStatus::Succeeded);
    assert_eq!(retry.node, "survivor");
    assert_eq!(retry.attempt, 2);
    assert_eq!(retry.scheduled_at, claimed.scheduled_at);
    let rescued = store.get_run(claimed.id).await.unwrap().unwrap();
    assert_eq!(rescued.status, RunStatus::Abandoned);
    // The ghost comes back and reports its result: refused, the newer attempt's stands.
    let mut late = cronwarden::store::FinishRun {
        id: claimed.id,
        fencing_token: claimed.fencing_token,
        status: RunStatus::Succeeded,
        started_at: claimed.started_at,
        finished_at: t0,
        exit_code: None,
        error: None,
        output: Some("late".into()),
    };
    assert!(!store.finish_run(late.clone()).await.unwrap());
    late.id = retry.id;
    assert!(
        !store.finish_run(late).await.unwrap(),
        "nor can it overwrite the retry"
    );
    assert_eq!(store.live_nodes(t0).await.unwrap(), ["survivor"]);
    survivor.stop().await;
    assert_eq!(
        store.live_nodes(t0).await.unwrap(),
        Vec::<String>::new(),
        "left on stop"
    );
}

/// A node "sleeper" on a test clock, with `nightly` (due at 03:00) stored, and the fire of
/// 03:00 claimed ahead; then the process "sleeps" 30 s, as a node stopped (SIGSTOP) past its
/// lease and resumed: past its 2 s lease, past the fire. Returns the node, its store, its
/// event stream (subscribed before it started) and what the `work` handler ran.
async fn sleeper_past_its_lease(
    db: &TestDatabase,
    nightly: JobSpec,
) -> (
    Scheduler,
    Arc<PostgresStore>,
    tokio::sync::broadcast::Receiver<SchedulerEvent>,
    Arc<std::sync::Mutex<Vec<(String, Timestamp)>>>,
) {
    let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
    let clock = TestClock::new(t0);
    let executed = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (scheduler, store) = node(
        db,
        "sleeper",
        Arc::new(clock.clone()),
        counting(executed.clone()),
    )
    .await;
    store.upsert_job(&nightly, t0).await.unwrap();
    let events = scheduler.subscribe();
    scheduler.start();
    // Joined (first heartbeat) and the fire of 03:00 claimed ahead, at 02:59:59.6.
    let heartbeats = || async { store.live_nodes(clock.now()).await.unwrap() == ["sleeper"] };
    let give_up = std::time::Instant::now() + Duration::from_secs(10);
    while !heartbeats().await {
        assert!(std::time::Instant::now() < give_up);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // On to 02:59:59, and the heartbeat catches up (a node claims only while its heartbeat is
    // current); then to 02:59:59.6, when the fire is claimed.
    let before = "2026-01-01T02:59:59Z".parse::<Timestamp>().unwrap();
    clock.advance(before.duration_since(t0));
    while !heartbeats().await {
        assert!(std::time::Instant::now() < give_up + Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    clock.advance(SignedDuration::from_millis(600));
    while all_runs(&store).await.is_empty() {
        assert!(
            std::time::Instant::now() < give_up + Duration::from_secs(10),
            "not claimed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    clock.advance(SignedDuration::from_secs(30));
    (scheduler, store, events, executed)
}

#[tokio::test]
async fn a_node_whose_heartbeat_ran_out_does_not_start_what_it_claimed_before() {
    // Its claimed fire must not run there; it is recorded abandoned (and retried per policy,
    // here: no retries).
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let (scheduler, _store, mut events, executed) =
        sleeper_past_its_lease(&db, job("nightly", Some("0 0 3 * * *"))).await;
    let abandoned = loop {
        let event = tokio::time::timeout(Duration::from_secs(10), events.recv())
            .await
            .expect("the claim is given up within 10 s")
            .unwrap();
        if let SchedulerEvent::RunFinished(run) = event {
            break run;
        }
    };
    assert_eq!(abandoned.status, RunStatus::Abandoned);
    assert!(
        executed.lock().unwrap().is_empty(),
        "the stale claim was run"
    );
    scheduler.stop().await;
}

#[tokio::test]
async fn a_node_whose_heartbeat_ran_out_retries_what_it_claimed_before_once_back() {
    // As above, with a retry allowed: the node rescues its own claim (nobody else is there)
    // and retries it, once it has heartbeated again; the store refuses the claims of a node
    // rescued and not back, retries included.
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let mut nightly = job("nightly", Some("0 0 3 * * *"));
    nightly.retry.max_attempts = 2;
    let (scheduler, store, mut events, executed) = sleeper_past_its_lease(&db, nightly).await;
    let retry = loop {
        let event = tokio::time::timeout(Duration::from_secs(10), events.recv())
            .await
            .expect("the retry within 10 s")
            .unwrap();
        if let SchedulerEvent::RunFinished(run) = event {
            if run.trigger == Trigger::Retry {
                break run;
            }
        }
    };
    assert_eq!(
        (retry.status, retry.attempt, retry.node.as_str()),
        (RunStatus::Succeeded, 2, "sleeper")
    );
    let first = all_runs(&store)
        .await
        .into_iter()
        .find(|r| r.attempt == 1)
        .unwrap();
    assert_eq!(first.status, RunStatus::Abandoned);
    // The stale claim did not run; its retry did, once.
    assert_eq!(executed.lock().unwrap().len(), 1);
    scheduler.stop().await;
}

#[tokio::test]
async fn a_job_changed_on_one_node_is_rescheduled_on_the_others_at_once() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    // Polling is made too slow to matter (an hour): only the notification can carry it.
    let slow_poll = |name: &str| SchedulerConfig {
        node: name.to_owned(),
        watch_interval: SignedDuration::from_hours(1),
        ..SchedulerConfig::default()
    };
    let executed = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut nodes = Vec::new();
    for name in ["node-a", "node-b"] {
        let store = Arc::new(PostgresStore::connect(&db.url).await.unwrap());
        let scheduler = Scheduler::new(
            store.clone(),
            Arc::new(SystemClock),
            Executors::new(counting(executed.clone())),
            slow_poll(name),
        );
        scheduler.start();
        nodes.push((scheduler, store));
    }
    let mut b_events = nodes[1].0.subscribe();
    // Past start-up (the first look at the store: a job there then is loaded, not announced),
    // node A creates a job.
    let give_up = std::time::Instant::now() + Duration::from_secs(10);
    while !nodes.iter().all(|(s, _)| s.health().recovered) {
        assert!(std::time::Instant::now() < give_up, "start-up did not end");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    nodes[0]
        .0
        .upsert_job(job("yearly", Some("0 0 1 1 *")))
        .await
        .unwrap();
    let name = JobName::new("yearly").unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Ok(SchedulerEvent::JobChanged { job, .. }) = b_events.recv().await {
                if job == name {
                    return;
                }
            }
        }
    })
    .await;
    assert!(
        seen.is_ok(),
        "node B did not hear of the new job: it holds {:?}; store B lists {:?}",
        nodes[1].0.job(&name),
        nodes[1].1.list_jobs().await.unwrap().len()
    );
    assert_eq!(
        nodes[1].0.job(&name).map(|spec| spec.schedule.clone()),
        Some(Some("0 0 1 1 *".to_owned()))
    );
    // A change of schedule, too.
    nodes[0]
        .0
        .upsert_job(job("yearly", Some("0 0 2 1 *")))
        .await
        .unwrap();
    let changed = tokio::time::timeout(Duration::from_secs(10), async {
        while nodes[1]
            .0
            .job(&name)
            .and_then(|s| s.schedule.clone())
            .as_deref()
            != Some("0 0 2 1 *")
        {
            let _ = b_events.recv().await;
        }
    })
    .await;
    assert!(changed.is_ok(), "node B kept the old schedule");
    for (scheduler, store) in &nodes {
        scheduler.stop().await;
        store.close().await;
    }
}
