//! Several nodes on one shared store (PostgreSQL).
//!
//! Each node heartbeats: it records in the store that it is alive until now + `node_lease`,
//! every `heartbeat_interval`. A node whose heartbeat runs out is presumed dead; the node that
//! holds the `maintenance` lease rescues it: in one transaction the dead node is forgotten and
//! its runs are taken over ([`crate::store::Store::take_over_runs`]). A run whose start was
//! recorded may have begun: it is recorded `abandoned` and retried per its job's policy. A run
//! still `queued` cannot have begun, since on a shared store a run's action begins only once
//! its start is recorded (see `runner`): it becomes the rescuer's, under a new fencing token,
//! and the rescuer runs it, so that a fire claimed ahead by a node that died before its
//! instant is not lost. A node that comes back (it was stopped, or cut off from the store)
//! can neither start what was taken over (its start is refused) nor overwrite a newer
//! attempt's result (fencing).
//!
//! A node takes another's silence for its death only once it has itself been in touch with
//! the store, without a break, for a whole lease. When the store was out of reach for everyone
//! (a database restart), every lease ran out meanwhile, and nobody died: each node is given a
//! full lease, from when it is back in touch, to heartbeat before it is rescued. When only one
//! node was cut off, the others were in touch all along and rescue it as usual.
//!
//! Fires are spread across nodes: each job has a preferred node among the live ones
//! (rendezvous hashing of node and job names), which claims its fires `claim_ahead` before
//! their instant; the others try `claim_ahead_others` before it, so a fire whose preferred
//! node died or lags is still claimed, once (the store's unique key decides).
//!
//! On a store that is not shared (SQLite), none of this runs: the node is alone, its claims
//! always hold, and start-up recovery takes over whatever a previous process left.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};

use super::{Inner, Plan};
use crate::model::{JobName, Run, RunStatus, Trigger};

/// The name of the lease under which one node at a time does the maintenance work.
pub(super) const MAINTENANCE: &str = "maintenance";

/// This node's view of the cluster.
pub(super) struct Membership {
    shared: bool,
    /// Until when (microseconds) this node's last heartbeat holds.
    lease_until_us: AtomicI64,
    /// The live nodes, by name (this one included).
    members: Mutex<Arc<Vec<String>>>,
    /// Whether this node holds the maintenance lease.
    maintainer: AtomicBool,
    /// Wakes the heartbeat early (a claim found the heartbeat out of date).
    heartbeat_now: tokio::sync::Notify,
}

impl Membership {
    pub(super) fn new(shared: bool) -> Membership {
        Membership {
            shared,
            lease_until_us: AtomicI64::new(if shared { i64::MIN } else { i64::MAX }),
            members: Mutex::new(Arc::new(Vec::new())),
            maintainer: AtomicBool::new(!shared),
            heartbeat_now: tokio::sync::Notify::new(),
        }
    }

    /// Whether the store is shared with other nodes: then a run's start is recorded before
    /// its action begins.
    pub(super) fn shared(&self) -> bool {
        self.shared
    }

    /// Whether this node may claim now: its heartbeat holds for `margin` more at least (a
    /// claim made just before the lease runs out could race a rescue of this node).
    pub(super) fn may_claim(&self, now: Timestamp, margin: SignedDuration) -> bool {
        !self.shared
            || (now + margin).as_microsecond() <= self.lease_until_us.load(Ordering::SeqCst)
    }

    /// Asks for a heartbeat now rather than at the next interval.
    pub(super) fn heartbeat_soon(&self) {
        self.heartbeat_now.notify_one();
    }

    /// Whether this node holds the maintenance lease (always, on a store that is not shared).
    pub(super) fn maintainer(&self) -> bool {
        self.maintainer.load(Ordering::SeqCst)
    }

    /// The live nodes as last seen.
    pub(super) fn members(&self) -> Arc<Vec<String>> {
        self.members.lock().unwrap().clone()
    }

    /// Whether `node` is the preferred claimer of `job`'s fires among `members`.
    pub(super) fn prefers(members: &[String], node: &str, job: &JobName) -> bool {
        if members.len() <= 1 {
            return true;
        }
        let score = |n: &str| mix(fnv1a(n.as_bytes(), job.as_str().as_bytes()));
        let best = members.iter().max_by_key(|n| (score(n), n.as_str()));
        best.is_none_or(|best| best == node)
    }
}

/// How long this node has been in touch with the store without a break, on the monotonic
/// clock (a store outage, a stopped process and a slow store call all count as breaks).
///
/// A node may take another's silence for its death only after a whole lease in touch: if the
/// store was out of reach for everyone, this node's own heartbeats stopped too, for as long;
/// then every node gets a full lease from here to heartbeat. A break no longer than
/// `max_gap` is not one: it is shorter than what any node's lease has left at any time
/// (`node_lease` minus `heartbeat_interval`), so an outage that short cannot have made anyone
/// look dead.
#[derive(Debug)]
pub(super) struct InTouch {
    max_gap: Duration,
    lease: Duration,
    /// Since when, and the last heartbeat.
    since: Option<Instant>,
    last: Option<Instant>,
}

impl InTouch {
    pub(super) fn new(lease: SignedDuration) -> InTouch {
        let lease = lease.unsigned_abs();
        InTouch {
            max_gap: lease / 2,
            lease,
            since: None,
            last: None,
        }
    }

    /// A heartbeat written at `at`. Returns how long the break before it was, if there was one
    /// (not for the first heartbeat).
    pub(super) fn beat(&mut self, at: Instant) -> Option<Duration> {
        let gap = self.last.map(|last| at.saturating_duration_since(last));
        let broken = gap.is_none_or(|gap| gap > self.max_gap);
        if broken {
            self.since = Some(at);
        }
        self.last = Some(at);
        gap.filter(|_| broken)
    }

    /// Whether, at `at`, this node has been in touch for a whole lease and still is.
    pub(super) fn for_a_lease(&self, at: Instant) -> bool {
        match (self.since, self.last) {
            (Some(since), Some(last)) => {
                at.saturating_duration_since(last) <= self.max_gap
                    && at.saturating_duration_since(since) >= self.lease
            }
            _ => false,
        }
    }
}

/// SplitMix64's finalizer: FNV-1a alone leaves names that differ in a byte or two with
/// scores in the same order for every job, so one node would be preferred for all of them.
fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// FNV-1a over `a`, a separator, and `b`: stable across processes and builds, which is what
/// makes every node agree on a job's preferred node.
fn fnv1a(a: &[u8], b: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in a.iter().chain(&[0xff]).chain(b) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

impl Inner {
    /// Heartbeats, follows the cluster's membership and, when it holds the maintenance lease,
    /// rescues dead nodes' runs, until the scheduler stops. Only on a shared store.
    pub(super) async fn cluster_duty(self: Arc<Self>) {
        let node = self.config.node.clone();
        let lease = self.config.node_lease;
        let mut joined = false;
        let mut in_touch = InTouch::new(lease);
        loop {
            let now = self.clock.now();
            let held_until = self.membership.lease_until_us.load(Ordering::SeqCst);
            if joined && now.as_microsecond() > held_until {
                // Its runs carry on; what it claimed starts only if no other node took it
                // over meanwhile (the store refuses the start otherwise).
                tracing::warn!(node, "this node's heartbeat ran out (the process was stopped, or the store was out of reach)");
            }
            match self.store.heartbeat(&node, now, now + lease).await {
                Ok(alive) => {
                    if joined && !alive {
                        tracing::warn!(node, "this node was presumed dead meanwhile; what another node took over of its runs does not start here");
                    }
                    joined = true;
                    self.membership
                        .lease_until_us
                        .store((now + lease).as_microsecond(), Ordering::SeqCst);
                    if let Some(gap) = in_touch.beat(Instant::now()) {
                        tracing::warn!(node, "this node was out of touch with the store for {gap:.1?}: it rescues no other node until it has been in touch for a whole lease (they may have been cut off too)");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot heartbeat; retrying"),
            }
            match self.store.live_nodes(now).await {
                Ok(mut nodes) => {
                    if !nodes.contains(&node) && joined {
                        nodes.push(node.clone());
                        nodes.sort();
                    }
                    let changed = {
                        let mut members = self.membership.members.lock().unwrap();
                        let changed = **members != nodes;
                        if changed {
                            *members = Arc::new(nodes.clone());
                        }
                        changed
                    };
                    if changed {
                        tracing::info!(nodes = ?nodes, "cluster membership changed");
                        self.wake.notify_one();
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot list the live nodes"),
            }
            match self
                .store
                .try_lease(MAINTENANCE, &node, now, now + lease)
                .await
            {
                Ok(held) => {
                    if held != self.membership.maintainer.swap(held, Ordering::SeqCst) {
                        tracing::info!(node, held, "maintenance lease");
                    }
                    if held && in_touch.for_a_lease(Instant::now()) {
                        self.rescue_dead_nodes(now).await;
                    }
                }
                Err(e) => {
                    self.membership.maintainer.store(false, Ordering::SeqCst);
                    tracing::warn!(error = %e, "cannot take the maintenance lease");
                }
            }
            tokio::select! {
                () = self.stop_firing.cancelled() => break,
                () = tokio::time::sleep(self.config.heartbeat_interval.unsigned_abs()) => {}
                () = self.membership.heartbeat_now.notified() => {}
            }
        }
        // Give the lease up at once rather than let the others wait for it to run out.
        if self.membership.maintainer.swap(false, Ordering::SeqCst) {
            if let Err(e) = self.store.release_lease(MAINTENANCE, &node).await {
                tracing::warn!(error = %e, "cannot give the maintenance lease up");
            }
        }
    }

    async fn rescue_dead_nodes(self: &Arc<Self>, now: Timestamp) {
        let dead = match self.store.dead_nodes(now).await {
            Ok(dead) => dead,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list dead nodes");
                return;
            }
        };
        for node in dead {
            self.rescue(&node, now).await;
        }
    }

    /// Takes `node`'s runs over if its heartbeat ran out: those that may have begun are
    /// recorded abandoned and retried here per their jobs' retry policy; those that cannot
    /// have begun are run here.
    async fn rescue(self: &Arc<Self>, node: &str, now: Timestamp) {
        let runs = match self.store.rescue_node(node, &self.config.node, now).await {
            Ok(Some(runs)) => runs,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(node, error = %e, "cannot rescue a dead node's runs");
                return;
            }
        };
        let (unbegun, abandoned): (Vec<Run>, Vec<Run>) = runs
            .into_iter()
            .partition(|r| r.status == RunStatus::Queued);
        tracing::warn!(
            node,
            abandoned = abandoned.len(),
            taken_over = unbegun.len(),
            "node presumed dead; its runs that may have begun are abandoned and retried per policy, those that cannot have begun run here"
        );
        self.retry_abandoned(abandoned).await;
        self.run_unbegun(unbegun);
    }

    /// Runs what this node took over and what cannot have begun (a dead node's claims, or
    /// its own from before a restart), as if it had claimed it: a fire at its instant, or at
    /// once if that has passed, through its job's misfire policy (one found later than its
    /// grace is recorded missed, unless the policy catches it up); other runs (retries,
    /// manual and chained runs) at once.
    pub(super) fn run_unbegun(self: &Arc<Self>, runs: Vec<Run>) {
        let now = self.clock.now();
        let mut by_job: BTreeMap<JobName, Vec<Run>> = BTreeMap::new();
        for run in runs {
            by_job.entry(run.job.clone()).or_default().push(run);
        }
        for (job, runs) in by_job {
            tracing::info!(job = %job, runs = runs.len(), "runs taken over that had not begun; run here");
            let spec = self.jobs.lock().unwrap().get(&job).map(|j| j.spec.clone());
            let Some(spec) = spec else {
                let inner = self.clone();
                self.tasks.spawn(async move {
                    for run in runs {
                        let reason = Some("skipped: the job was deleted".to_owned());
                        inner
                            .finish(run, RunStatus::Skipped, None, reason, None)
                            .await;
                    }
                });
                continue;
            };
            let (mut fires, others): (Vec<Run>, Vec<Run>) = runs
                .into_iter()
                .partition(|r| matches!(r.trigger, Trigger::Schedule | Trigger::CatchUp));
            for run in others {
                self.dispatch(run);
            }
            if fires.is_empty() {
                continue;
            }
            fires.sort_by_key(|r| r.scheduled_at);
            let plan = Plan::new(&spec, fires.iter().map(|r| r.scheduled_at).collect(), now);
            let (missed, fires): (Vec<Run>, Vec<Run>) = fires
                .into_iter()
                .partition(|r| plan.missed.contains(&r.scheduled_at));
            let inner = self.clone();
            // One after another, as a backlog of catch-up runs.
            self.tasks.spawn(async move {
                for run in missed {
                    let reason = "missed: its node stopped before running it, and it was taken over later than its grace";
                    inner
                        .finish(run, RunStatus::Missed, None, Some(reason.to_owned()), None)
                        .await;
                }
                for run in fires {
                    inner.wait_idle(&run.job).await;
                    inner.clone().release(run, spec.clone()).await;
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_rescues_only_after_a_whole_lease_in_touch() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        // Lease 10 s: breaks up to 5 s do not count.
        let mut touch = InTouch::new(SignedDuration::from_secs(10));
        assert!(!touch.for_a_lease(at(0)), "not before the first heartbeat");
        assert_eq!(touch.beat(at(0)), None, "the first heartbeat is no break");
        assert!(!touch.for_a_lease(at(9_999)));
        for ms in (2_000..=10_000).step_by(2_000) {
            assert_eq!(touch.beat(at(ms)), None);
        }
        assert!(touch.for_a_lease(at(10_000)));
        // A heartbeat late by 4 s (a slow store call) is no break either.
        assert_eq!(touch.beat(at(15_000)), None);
        assert!(touch.for_a_lease(at(15_000)));
        // But while no heartbeat lands for longer, it is out of touch at once, ...
        assert!(!touch.for_a_lease(at(20_001)));
        // ... and back in touch after a store outage of 12 s, it waits a whole lease.
        assert_eq!(touch.beat(at(27_000)), Some(Duration::from_secs(12)));
        for ms in (29_000..=35_000).step_by(2_000) {
            assert_eq!(touch.beat(at(ms)), None);
            assert!(!touch.for_a_lease(at(ms)), "at {ms} ms");
        }
        assert_eq!(touch.beat(at(37_000)), None);
        assert!(touch.for_a_lease(at(37_000)));
    }

    #[test]
    fn every_node_agrees_on_one_preferred_node_per_job_and_the_load_spreads() {
        let members: Vec<String> = ["node-a", "node-b", "node-c"].map(String::from).into();
        let mut counts = [0usize; 3];
        for i in 0..3000 {
            // Names that differ in their last characters only, as generated names do.
            let job = JobName::new(format!("tick-{i:04}")).unwrap();
            let preferred: Vec<usize> = (0..3)
                .filter(|&n| Membership::prefers(&members, &members[n], &job))
                .collect();
            assert_eq!(preferred.len(), 1, "{job}");
            counts[preferred[0]] += 1;
        }
        assert!(counts.iter().all(|&c| c > 850), "{counts:?}");
        // And among a handful of jobs, too.
        let few: Vec<usize> = (0..30)
            .map(|i| {
                let job = JobName::new(format!("tick-{i:02}")).unwrap();
                (0..3)
                    .find(|&n| Membership::prefers(&members, &members[n], &job))
                    .unwrap()
            })
            .collect();
        assert!((0..3).all(|n| few.contains(&n)), "{few:?}");
        // Alone, a node prefers everything.
        assert!(Membership::prefers(
            &members[..1],
            "node-z",
            &JobName::new("x").unwrap()
        ));
    }
}
