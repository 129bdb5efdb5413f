//! Several nodes on one shared store (PostgreSQL).
//!
//! Each node heartbeats: it records in the store that it is alive until now + `node_lease`,
//! every `heartbeat_interval`. A node whose heartbeat runs out is presumed dead; the node that
//! holds the `maintenance` lease rescues it: in one transaction the dead node is forgotten and
//! its queued and running runs are recorded `abandoned`, then retried per their jobs' policy.
//! A node that comes back (it was stopped, or cut off from the store) cannot overwrite the
//! newer attempt's result (fencing), and does not start what it claimed before: a claim holds
//! only while the node's own heartbeat does, and only in the epoch it was made in (the epoch
//! moves on whenever the node finds its heartbeat ran out).
//!
//! Fires are spread across nodes: each job has a preferred node among the live ones
//! (rendezvous hashing of node and job names), which claims its fires `claim_ahead` before
//! their instant; the others try `claim_ahead_others` before it, so a fire whose preferred
//! node died or lags is still claimed, once (the store's unique key decides).
//!
//! On a store that is not shared (SQLite), none of this runs: the node is alone, its claims
//! always hold, and start-up recovery takes over whatever a previous process left.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use jiff::{SignedDuration, Timestamp};

use super::Inner;
use crate::model::{JobName, Run};

/// The name of the lease under which one node at a time does the maintenance work.
pub(super) const MAINTENANCE: &str = "maintenance";

/// This node's view of the cluster.
pub(super) struct Membership {
    shared: bool,
    /// Until when (microseconds) this node's last heartbeat holds.
    lease_until_us: AtomicI64,
    /// Moves on whenever this node may have lost what it claimed.
    epoch: AtomicU64,
    /// The live nodes, by name (this one included).
    members: Mutex<Arc<Vec<String>>>,
    /// Whether this node holds the maintenance lease.
    maintainer: AtomicBool,
    /// Wakes the heartbeat early (a claim found the heartbeat out of date).
    heartbeat_now: tokio::sync::Notify,
    /// This node's runs that it recorded abandoned itself (its heartbeat had run out), to be
    /// retried once it has heartbeated again: the store takes no claim, a retry's included,
    /// from a node that was rescued and is not back.
    abandoned_here: Mutex<Vec<Run>>,
}

impl Membership {
    pub(super) fn new(shared: bool) -> Membership {
        Membership {
            shared,
            lease_until_us: AtomicI64::new(if shared { i64::MIN } else { i64::MAX }),
            epoch: AtomicU64::new(0),
            members: Mutex::new(Arc::new(Vec::new())),
            maintainer: AtomicBool::new(!shared),
            heartbeat_now: tokio::sync::Notify::new(),
            abandoned_here: Mutex::new(Vec::new()),
        }
    }

    /// Queues a run this node recorded abandoned, to be retried after its next heartbeat.
    pub(super) fn abandoned_here(&self, run: Run) {
        self.abandoned_here.lock().unwrap().push(run);
        self.heartbeat_soon();
    }

    pub(super) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// Whether a fire claimed in `epoch` may still be run at `now`.
    pub(super) fn claim_holds(&self, epoch: u64, now: Timestamp) -> bool {
        !self.shared
            || (epoch == self.epoch()
                && now.as_microsecond() <= self.lease_until_us.load(Ordering::SeqCst))
    }

    /// Whether this node may claim now: its heartbeat holds for `margin` more at least (a
    /// claim made just before the lease runs out could race a rescue of this node).
    pub(super) fn may_claim(&self, epoch: u64, now: Timestamp, margin: SignedDuration) -> bool {
        !self.shared || self.claim_holds(epoch, now + margin)
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
        loop {
            let now = self.clock.now();
            let mut heartbeated = false;
            {
                // No claim is made while this node decides whether its claims still hold.
                let _claiming = self.claiming.lock().await;
                let held_until = self.membership.lease_until_us.load(Ordering::SeqCst);
                if joined && now.as_microsecond() > held_until {
                    // The heartbeat ran out (the process was stopped, or the store was out of
                    // reach): what was claimed before may be another node's now.
                    self.membership.epoch.fetch_add(1, Ordering::SeqCst);
                    tracing::warn!(
                        node,
                        "this node's heartbeat ran out; its earlier claims are given up"
                    );
                    // Its own runs: retried once it has heartbeated again (below).
                    if let Some(runs) = self.rescued_runs(&node, now).await {
                        self.membership.abandoned_here.lock().unwrap().extend(runs);
                    }
                }
                match self.store.heartbeat(&node, now, now + lease).await {
                    Ok(alive) => {
                        heartbeated = true;
                        if joined && !alive {
                            // Presumed dead, and perhaps rescued, in the meantime.
                            self.membership.epoch.fetch_add(1, Ordering::SeqCst);
                        }
                        joined = true;
                        self.membership
                            .lease_until_us
                            .store((now + lease).as_microsecond(), Ordering::SeqCst);
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot heartbeat; retrying"),
                }
            }
            if heartbeated {
                let runs = std::mem::take(&mut *self.membership.abandoned_here.lock().unwrap());
                if !runs.is_empty() {
                    self.retry_abandoned(runs).await;
                }
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
                    if held {
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

    /// Rescues `node`'s runs if its heartbeat ran out: they are recorded abandoned and retried
    /// here, per their jobs' retry policy.
    async fn rescue(self: &Arc<Self>, node: &str, now: Timestamp) {
        if let Some(runs) = self.rescued_runs(node, now).await {
            self.retry_abandoned(runs).await;
        }
    }

    /// Records `node`'s unfinished runs abandoned if its heartbeat ran out, and returns them
    /// (to be retried per policy).
    async fn rescued_runs(&self, node: &str, now: Timestamp) -> Option<Vec<Run>> {
        let runs = match self.store.rescue_node(node, now).await {
            Ok(Some(runs)) => runs,
            Ok(None) => return None,
            Err(e) => {
                tracing::warn!(node, error = %e, "cannot rescue a dead node's runs");
                return None;
            }
        };
        tracing::warn!(
            node,
            runs = runs.len(),
            "node presumed dead; its unfinished runs are abandoned and retried per policy"
        );
        Some(runs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
