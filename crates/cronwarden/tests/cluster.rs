//! Several nodes on one PostgreSQL database, in one process: each node is a `Scheduler` with
//! its own store connection and name. (The process-level test, with nodes killed and stopped,
//! is the chaos test.)
#![cfg(feature = "postgres")]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cronwarden::clock::{Clock, SystemClock, TestClock};
use cronwarden::executor::{Executors, JobError, RustJobs};
use cronwarden::model::{
    Action, ApiToken, AuditEntry, JobName, JobSpec, Role, Run, RunId, RunStatus, Trigger,
};
use cronwarden::scheduler::{Scheduler, SchedulerConfig, SchedulerEvent};
use cronwarden::store::{
    ClaimFire, FinishRun, JobFilter, JobRecord, JobStats, JobSummary, NewAudit, NewRun,
    PostgresStore, RunFilter, RunRequest, StartRun, Store, StoreError,
};
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
    let scheduler = Scheduler::new(store.clone(), clock, Executors::new(rust), config(name));
    (scheduler, store)
}

/// A node's settings here: heartbeats and leases shortened, so that leases run out quickly.
fn config(name: &str) -> SchedulerConfig {
    SchedulerConfig {
        node: name.to_owned(),
        heartbeat_interval: SignedDuration::from_millis(200),
        node_lease: SignedDuration::from_secs(2),
        ..SchedulerConfig::default()
    }
}

/// A node's store, through which the test can cut the node off from PostgreSQL (every call
/// fails, as with the server down), and which notes the run starts it saw refused.
struct Reach {
    store: PostgresStore,
    /// Shared by the nodes that a cut cuts off.
    cut: Arc<AtomicBool>,
    refused_starts: Mutex<Vec<RunId>>,
}

impl Reach {
    fn check(&self) -> Result<(), StoreError> {
        if self.cut.load(Ordering::SeqCst) {
            return Err(StoreError::Database(
                "connection refused (the test cut the store off)".into(),
            ));
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Store for Reach {
    async fn upsert_job(&self, spec: &JobSpec, now: Timestamp) -> Result<JobRecord, StoreError> {
        self.check()?;
        self.store.upsert_job(spec, now).await
    }
    async fn get_job(&self, name: &JobName) -> Result<Option<JobRecord>, StoreError> {
        self.check()?;
        self.store.get_job(name).await
    }
    async fn list_jobs(&self) -> Result<Vec<JobRecord>, StoreError> {
        self.check()?;
        self.store.list_jobs().await
    }
    async fn find_jobs(&self, filter: &JobFilter) -> Result<Vec<JobRecord>, StoreError> {
        self.check()?;
        self.store.find_jobs(filter).await
    }
    async fn find_job_summaries(&self, filter: &JobFilter) -> Result<Vec<JobSummary>, StoreError> {
        self.check()?;
        self.store.find_job_summaries(filter).await
    }
    async fn set_paused(
        &self,
        name: &JobName,
        reason: Option<&str>,
    ) -> Result<Option<JobRecord>, StoreError> {
        self.check()?;
        self.store.set_paused(name, reason).await
    }
    async fn delete_job(&self, name: &JobName) -> Result<bool, StoreError> {
        self.check()?;
        self.store.delete_job(name).await
    }
    async fn claim_fires(&self, claims: &[ClaimFire<'_>]) -> Result<Vec<Option<Run>>, StoreError> {
        self.check()?;
        self.store.claim_fires(claims).await
    }
    async fn record_run(&self, run: NewRun<'_>) -> Result<Run, StoreError> {
        self.check()?;
        self.store.record_run(run).await
    }
    async fn start_runs(&self, starts: &[StartRun]) -> Result<Vec<bool>, StoreError> {
        self.check()?;
        let started = self.store.start_runs(starts).await?;
        let refused = starts.iter().zip(&started).filter(|(_, ok)| !**ok);
        self.refused_starts
            .lock()
            .unwrap()
            .extend(refused.map(|(s, _)| s.id));
        Ok(started)
    }
    async fn finish_runs(&self, finishes: &[FinishRun]) -> Result<Vec<bool>, StoreError> {
        self.check()?;
        self.store.finish_runs(finishes).await
    }
    async fn request_run(
        &self,
        job: &JobName,
        by: &str,
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        self.check()?;
        self.store.request_run(job, by, at).await
    }
    async fn take_run_requests(&self) -> Result<Vec<RunRequest>, StoreError> {
        self.check()?;
        self.store.take_run_requests().await
    }
    async fn change_seq(&self) -> Result<i64, StoreError> {
        self.check()?;
        self.store.change_seq().await
    }
    async fn get_run(&self, id: RunId) -> Result<Option<Run>, StoreError> {
        self.check()?;
        self.store.get_run(id).await
    }
    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<Run>, StoreError> {
        self.check()?;
        self.store.list_runs(filter).await
    }
    async fn abandon_runs(
        &self,
        node: Option<&str>,
        at: Timestamp,
    ) -> Result<Vec<Run>, StoreError> {
        self.check()?;
        self.store.abandon_runs(node, at).await
    }
    async fn take_over_runs(
        &self,
        node: &str,
        by: &str,
        at: Timestamp,
    ) -> Result<Vec<Run>, StoreError> {
        self.check()?;
        self.store.take_over_runs(node, by, at).await
    }
    async fn last_fire(&self, job: &JobName) -> Result<Option<Timestamp>, StoreError> {
        self.check()?;
        self.store.last_fire(job).await
    }
    async fn job_stats(&self, job: &JobName) -> Result<JobStats, StoreError> {
        self.check()?;
        self.store.job_stats(job).await
    }
    async fn create_token(
        &self,
        name: &str,
        role: Role,
        hash: &str,
        at: Timestamp,
    ) -> Result<ApiToken, StoreError> {
        self.check()?;
        self.store.create_token(name, role, hash, at).await
    }
    async fn list_tokens(&self) -> Result<Vec<ApiToken>, StoreError> {
        self.check()?;
        self.store.list_tokens().await
    }
    async fn revoke_token(&self, name: &str, at: Timestamp) -> Result<bool, StoreError> {
        self.check()?;
        self.store.revoke_token(name, at).await
    }
    async fn token_by_hash(&self, hash: &str) -> Result<Option<ApiToken>, StoreError> {
        self.check()?;
        self.store.token_by_hash(hash).await
    }
    async fn record_audit(&self, entry: NewAudit<'_>) -> Result<AuditEntry, StoreError> {
        self.check()?;
        self.store.record_audit(entry).await
    }
    async fn list_audit(
        &self,
        before_id: Option<i64>,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        self.check()?;
        self.store.list_audit(before_id, limit).await
    }
    async fn prune_runs(&self, keep_last: u32, older_than: Timestamp) -> Result<u64, StoreError> {
        self.check()?;
        self.store.prune_runs(keep_last, older_than).await
    }
    fn shared(&self) -> bool {
        true
    }
    async fn heartbeat(
        &self,
        node: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<bool, StoreError> {
        self.check()?;
        self.store.heartbeat(node, now, until).await
    }
    async fn live_nodes(&self, now: Timestamp) -> Result<Vec<String>, StoreError> {
        self.check()?;
        self.store.live_nodes(now).await
    }
    async fn dead_nodes(&self, now: Timestamp) -> Result<Vec<String>, StoreError> {
        self.check()?;
        self.store.dead_nodes(now).await
    }
    async fn rescue_node(
        &self,
        node: &str,
        by: &str,
        now: Timestamp,
    ) -> Result<Option<Vec<Run>>, StoreError> {
        self.check()?;
        self.store.rescue_node(node, by, now).await
    }
    async fn leave(&self, node: &str) -> Result<(), StoreError> {
        self.check()?;
        self.store.leave(node).await
    }
    async fn try_lease(
        &self,
        name: &str,
        holder: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<bool, StoreError> {
        self.check()?;
        self.store.try_lease(name, holder, now, until).await
    }
    async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        self.check()?;
        self.store.release_lease(name, holder).await
    }
}

/// A node as [`node`] makes it, reaching its store through a [`Reach`] cut by `cut`.
async fn reachable_node(
    db: &TestDatabase,
    name: &str,
    clock: Arc<dyn Clock>,
    rust: RustJobs,
    cut: Arc<AtomicBool>,
) -> (Scheduler, Arc<Reach>) {
    let store = Arc::new(Reach {
        store: PostgresStore::connect(&db.url).await.unwrap(),
        cut,
        refused_starts: Mutex::new(Vec::new()),
    });
    let scheduler = Scheduler::new(store.clone(), clock, Executors::new(rust), config(name));
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
/// 03:00 claimed ahead, at 02:59:59.6. The test then makes the process "sleep" (advances its
/// clock), as a node stopped (SIGSTOP) past its lease and resumed. Returns the node, its
/// store, its clock, its event stream (subscribed before it started), what the `work` handler
/// ran, and the claimed run.
async fn sleeper_with_a_claim(
    db: &TestDatabase,
    nightly: JobSpec,
) -> (
    Scheduler,
    Arc<Reach>,
    TestClock,
    tokio::sync::broadcast::Receiver<SchedulerEvent>,
    Arc<std::sync::Mutex<Vec<(String, Timestamp)>>>,
    Run,
) {
    let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
    let clock = TestClock::new(t0);
    let executed = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (scheduler, store) = reachable_node(
        db,
        "sleeper",
        Arc::new(clock.clone()),
        counting(executed.clone()),
        Arc::default(),
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
    let claimed = loop {
        if let Some(run) = all_runs(&store.store).await.pop() {
            break run;
        }
        assert!(
            std::time::Instant::now() < give_up + Duration::from_secs(10),
            "not claimed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(claimed.status, RunStatus::Queued);
    (scheduler, store, clock, events, executed, claimed)
}

/// The next run to finish, from `events`.
async fn next_finished(events: &mut tokio::sync::broadcast::Receiver<SchedulerEvent>) -> Run {
    loop {
        let event = tokio::time::timeout(Duration::from_secs(10), events.recv())
            .await
            .expect("a run to finish within 10 s")
            .unwrap();
        if let SchedulerEvent::RunFinished(run) = event {
            return run;
        }
    }
}

#[tokio::test]
async fn a_node_whose_heartbeat_ran_out_runs_what_it_claimed_if_nobody_took_it_over() {
    // The node "sleeps" 30 s past its 2 s lease and past the fire. Nobody rescued it: the
    // fire it claimed had not begun, and is still its own; it runs there, late, once (no
    // retry is allowed: it must not be recorded abandoned instead).
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let (scheduler, store, clock, mut events, executed, claimed) =
        sleeper_with_a_claim(&db, job("nightly", Some("0 0 3 * * *"))).await;
    clock.advance(SignedDuration::from_secs(30));
    let run = next_finished(&mut events).await;
    assert_eq!(
        (run.id, run.status, run.attempt, run.node.as_str()),
        (claimed.id, RunStatus::Succeeded, 1, "sleeper")
    );
    let at: Timestamp = "2026-01-01T03:00:00Z".parse().unwrap();
    assert_eq!(
        *executed.lock().unwrap(),
        [("nightly".to_owned(), at)],
        "run once"
    );
    assert_eq!(all_runs(&store.store).await.len(), 1);
    scheduler.stop().await;
}

#[tokio::test]
async fn a_node_whose_heartbeat_ran_out_does_not_start_what_another_took_over() {
    // As above, but another node ("keeper") rescued the sleeper while it slept: the claim,
    // which had not begun, is the keeper's now (to run there), and the sleeper must not start
    // it when it wakes.
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let (scheduler, store, clock, _events, executed, claimed) =
        sleeper_with_a_claim(&db, job("nightly", Some("0 0 3 * * *"))).await;
    let rescued_at = clock.now() + SignedDuration::from_secs(20);
    let rescued = store
        .rescue_node("sleeper", "keeper", rescued_at)
        .await
        .unwrap()
        .expect("the sleeper's lease ran out");
    assert_eq!(rescued.len(), 1);
    assert_eq!(
        (rescued[0].id, rescued[0].status, rescued[0].node.as_str()),
        (claimed.id, RunStatus::Queued, "keeper")
    );
    clock.advance(SignedDuration::from_secs(30));
    // It gets to its instant, and its start is refused: the claim is given up.
    let give_up = std::time::Instant::now() + Duration::from_secs(10);
    while !store.refused_starts.lock().unwrap().contains(&claimed.id) {
        assert!(std::time::Instant::now() < give_up, "no start refused");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    while scheduler.load() != (0, 0) {
        assert!(
            std::time::Instant::now() < give_up,
            "{:?}",
            scheduler.load()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        executed.lock().unwrap().is_empty(),
        "the claim taken over was run by the node that lost it"
    );
    let run = store.get_run(claimed.id).await.unwrap().unwrap();
    assert_eq!(
        (run.status, run.node.as_str(), run.fencing_token),
        (RunStatus::Queued, "keeper", rescued[0].fencing_token)
    );
    scheduler.stop().await;
}

#[tokio::test]
async fn a_dead_nodes_claims_that_had_not_begun_are_run_by_a_live_node() {
    // A node claimed a fire ahead and died before its instant (its start was never recorded):
    // the survivor takes it over and runs it as the same first attempt. No retry is allowed,
    // so it would be lost if it were recorded abandoned.
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
    let spec = job("report", None);
    store.upsert_job(&spec, t0).await.unwrap();
    store
        .heartbeat(
            "ghost",
            t0 - SignedDuration::from_secs(60),
            t0 - SignedDuration::from_secs(1),
        )
        .await
        .unwrap();
    let fire = t0 - SignedDuration::from_secs(5);
    let claimed = store
        .claim_fire(ClaimFire {
            job: &spec.name,
            scheduled_at: fire,
            trigger: Trigger::Schedule,
            attempt: 1,
            node: "ghost",
        })
        .await
        .unwrap()
        .unwrap();
    let mut events = survivor.subscribe();
    survivor.start();
    let run = next_finished(&mut events).await;
    assert_eq!(
        (run.id, run.status, run.attempt, run.node.as_str()),
        (claimed.id, RunStatus::Succeeded, 1, "survivor")
    );
    assert_eq!(*executed.lock().unwrap(), [("report".to_owned(), fire)]);
    // The ghost comes back: its start is refused, it cannot run the fire a second time.
    assert!(!store
        .start_run(claimed.id, claimed.fencing_token, t0)
        .await
        .unwrap());
    assert_eq!(all_runs(&store).await.len(), 1);
    survivor.stop().await;
}

#[tokio::test]
async fn a_restarted_node_runs_its_claims_that_had_not_begun() {
    // A node is killed with a fire claimed ahead (queued) and one run going (running), and
    // restarts under the same name: the run that may have begun is abandoned (no retry is
    // allowed), the claim that cannot have begun runs.
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
    let clock = TestClock::new(t0);
    let executed = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (phoenix, store) = node(
        &db,
        "phoenix",
        Arc::new(clock.clone()),
        counting(executed.clone()),
    )
    .await;
    let spec = job("report", None);
    store.upsert_job(&spec, t0).await.unwrap();
    // The previous process: alive until a moment ago, a run going and a fire claimed.
    store
        .heartbeat(
            "phoenix",
            t0 - SignedDuration::from_secs(3),
            t0 + SignedDuration::from_secs(7),
        )
        .await
        .unwrap();
    let claim = |at: Timestamp| ClaimFire {
        job: &spec.name,
        scheduled_at: at,
        trigger: Trigger::Schedule,
        attempt: 1,
        node: "phoenix",
    };
    let going = store
        .claim_fire(claim(t0 - SignedDuration::from_secs(1)))
        .await
        .unwrap()
        .unwrap();
    assert!(store
        .start_run(
            going.id,
            going.fencing_token,
            t0 - SignedDuration::from_secs(1)
        )
        .await
        .unwrap());
    let ahead = store
        .claim_fire(claim(t0 + SignedDuration::from_millis(400)))
        .await
        .unwrap()
        .unwrap();
    let mut events = phoenix.subscribe();
    phoenix.start();
    let abandoned = next_finished(&mut events).await;
    assert_eq!(
        (abandoned.id, abandoned.status),
        (going.id, RunStatus::Abandoned)
    );
    // The claim runs at its instant.
    let give_up = std::time::Instant::now() + Duration::from_secs(10);
    while clock.sleepers() == 0 {
        assert!(
            std::time::Instant::now() < give_up,
            "nothing waits for the instant"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    clock.advance(SignedDuration::from_millis(400));
    let ran = next_finished(&mut events).await;
    assert_eq!(
        (ran.id, ran.status, ran.attempt, ran.node.as_str()),
        (ahead.id, RunStatus::Succeeded, 1, "phoenix")
    );
    assert_eq!(ran.started_at, Some(ahead.scheduled_at));
    assert_eq!(
        *executed.lock().unwrap(),
        [("report".to_owned(), ahead.scheduled_at)]
    );
    phoenix.stop().await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_outage_longer_than_the_lease_rescues_nobody_and_runs_nothing_twice() {
    // Two nodes lose PostgreSQL together for 3 s, longer than their 2 s lease: when it is
    // back, every lease has run out, yet nobody died. (It comes back for one node a little
    // before the other, which must not be rescued by the first meanwhile.) Nothing may be rescued: a run that
    // delivered during the outage must not be abandoned and retried (a second delivery), and
    // fires claimed before the outage must run, not be given up.
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    type Deliveries = Arc<Mutex<Vec<(String, Timestamp, u32)>>>;
    let delivered: Deliveries = Arc::default();
    let deliver = |delivered: &Deliveries, ctx: &cronwarden::executor::RunContext| {
        delivered
            .lock()
            .unwrap()
            .push((ctx.job.to_string(), ctx.scheduled_at, ctx.attempt));
    };
    let handlers = || {
        let (now, late) = (delivered.clone(), delivered.clone());
        RustJobs::new()
            .register("work", move |ctx: cronwarden::executor::RunContext| {
                deliver(&now, &ctx);
                async { Ok::<_, JobError>(String::new()) }
            })
            // Delivers 1.5 s after it starts.
            .register("slow", move |ctx: cronwarden::executor::RunContext| {
                let late = late.clone();
                async move {
                    tokio::time::sleep(Duration::from_millis(1500)).await;
                    deliver(&late, &ctx);
                    Ok::<_, JobError>(String::new())
                }
            })
    };
    let cuts: [Arc<AtomicBool>; 2] = Default::default();
    let mut nodes = Vec::new();
    for (name, cut) in ["node-a", "node-b"].into_iter().zip(&cuts) {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        nodes.push(reachable_node(&db, name, clock, handlers(), cut.clone()).await);
    }
    let store = &nodes[0].1.store;
    let retrying = |mut spec: JobSpec| {
        spec.retry.max_attempts = 3;
        spec.retry.initial_delay = SignedDuration::from_millis(100);
        spec
    };
    for i in 0..6 {
        let spec = retrying(job(&format!("tick-{i}"), Some("* * * * * *")));
        store.upsert_job(&spec, Timestamp::now()).await.unwrap();
    }
    let mut slow = retrying(job("slow", None));
    slow.action = Action::Rust {
        handler: "slow".to_owned(),
    };
    store.upsert_job(&slow, Timestamp::now()).await.unwrap();
    for (scheduler, _) in &nodes {
        scheduler.start();
    }
    // Past a whole lease in touch (after which a node may rescue), with both nodes running
    // fires.
    let give_up = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let runs = all_runs(store).await;
        let working: BTreeSet<&str> = runs
            .iter()
            .filter(|r| r.status == RunStatus::Succeeded)
            .map(|r| r.node.as_str())
            .collect();
        if working.len() == 2 && runs.len() >= 6 * 4 {
            break;
        }
        assert!(
            std::time::Instant::now() < give_up,
            "the nodes did not both work"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;

    // A slow run starts on node A, and the store goes away while it is going.
    let slow_run = nodes[0].0.trigger(&slow.name).await.unwrap();
    while store.get_run(slow_run.id).await.unwrap().unwrap().status != RunStatus::Running {
        assert!(std::time::Instant::now() < give_up + Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for cut in &cuts {
        cut.store(true, Ordering::SeqCst);
    }
    let cut_at = Timestamp::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    // The store comes back for node B first; node A gets through half a second later (its
    // connections took longer to come back). Meanwhile B sees A's lease run out.
    cuts[1].store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(500)).await;
    cuts[0].store(false, Ordering::SeqCst);
    let restored_at = Timestamp::now();
    // Back: every fire due meanwhile and 3 s after runs, and every run gets its result.
    let until = restored_at + SignedDuration::from_secs(3);
    let give_up = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let runs = all_runs(store).await;
        let seconds: BTreeSet<(String, i64)> = runs
            .iter()
            .filter(|r| r.job.as_str().starts_with("tick-") && r.status.is_final())
            .map(|r| (r.job.to_string(), r.scheduled_at.as_second()))
            .filter(|(_, s)| (cut_at.as_second()..=until.as_second()).contains(s))
            .collect();
        let complete = seconds.len() as i64 == 6 * (until.as_second() - cut_at.as_second() + 1);
        let slow_done = runs
            .iter()
            .any(|r| r.id == slow_run.id && r.status.is_final());
        if complete && slow_done && Timestamp::now() > until + SignedDuration::from_secs(1) {
            break;
        }
        assert!(
            std::time::Instant::now() < give_up,
            "fires of the outage or its slow run not done: {} of {} seconds",
            seconds.len(),
            6 * (until.as_second() - cut_at.as_second() + 1)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (scheduler, _) in &nodes {
        scheduler.stop().await;
    }

    let runs = all_runs(store).await;
    let abandoned: Vec<&Run> = runs
        .iter()
        .filter(|r| r.status == RunStatus::Abandoned)
        .collect();
    assert!(abandoned.is_empty(), "runs were abandoned: {abandoned:#?}");
    let retries: Vec<&Run> = runs.iter().filter(|r| r.attempt > 1).collect();
    assert!(retries.is_empty(), "runs were retried: {retries:#?}");
    let slow_now = runs.iter().find(|r| r.id == slow_run.id).unwrap();
    assert_eq!(
        (slow_now.status, slow_now.node.as_str()),
        (RunStatus::Succeeded, "node-a")
    );
    let mut deliveries: BTreeMap<(String, Timestamp), usize> = BTreeMap::new();
    for (job, at, _) in delivered.lock().unwrap().iter() {
        *deliveries.entry((job.clone(), *at)).or_default() += 1;
    }
    let twice: Vec<_> = deliveries.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
    assert_eq!(
        deliveries.get(&("slow".to_owned(), slow_run.scheduled_at)),
        Some(&1)
    );
}
