//! The store conformance suite: the same behaviour, checked on every backend.
//!
//! Each check is a generic function over [`Store`]; `conformance!` instantiates all of them for
//! a backend. The PostgreSQL store's checks run against the server at
//! `CRONWARDEN_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/test`), in a
//! database of their own per test; without a server they are skipped, except under `CI=true`.

use std::sync::Arc;

use cronwarden::model::{Action, JobName, JobSpec, Role, RunId, RunStatus, Trigger};
use cronwarden::store::{
    ClaimFire, FinishRun, JobFilter, NewAudit, NewRun, RunFilter, StartRun, Store, StoreError,
};
use jiff::{SignedDuration, Timestamp};

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn name(n: &str) -> JobName {
    JobName::new(n).unwrap()
}

fn job(n: &str) -> JobSpec {
    JobSpec::new(
        name(n),
        Some("*/5 * * * *"),
        Action::Command {
            argv: vec!["true".into()],
            env: Default::default(),
            inherit_env: Vec::new(),
            cwd: None,
        },
    )
}

fn claim<'a>(job: &'a JobName, at: &str, attempt: u32) -> ClaimFire<'a> {
    ClaimFire {
        job,
        scheduled_at: ts(at),
        trigger: Trigger::Schedule,
        attempt,
        node: "node-a",
    }
}

fn finish(id: RunId, token: i64, status: RunStatus, at: &str) -> FinishRun {
    FinishRun {
        id,
        fencing_token: token,
        status,
        started_at: None,
        finished_at: ts(at),
        exit_code: None,
        error: None,
        output: None,
    }
}

async fn jobs_are_versioned_by_content<S: Store>(store: Arc<S>) {
    let t0 = ts("2026-01-01T00:00:00Z");
    let created = store.upsert_job(&job("report"), t0).await.unwrap();
    assert_eq!(
        (created.version, created.created_at, created.updated_at),
        (1, t0, t0)
    );
    // The same spec again (as at every start-up) changes nothing.
    let same = store
        .upsert_job(&job("report"), ts("2026-01-02T00:00:00Z"))
        .await
        .unwrap();
    assert_eq!((same.version, same.updated_at), (1, t0));
    let mut changed = job("report");
    changed.schedule = Some("0 3 * * *".into());
    let t2 = ts("2026-01-03T00:00:00Z");
    let updated = store.upsert_job(&changed, t2).await.unwrap();
    assert_eq!(
        (updated.version, updated.created_at, updated.updated_at),
        (2, t0, t2)
    );
    assert_eq!(
        store.get_job(&name("report")).await.unwrap().unwrap().spec,
        changed
    );
    assert_eq!(store.get_job(&name("absent")).await.unwrap(), None);
    store.upsert_job(&job("archive"), t0).await.unwrap();
    let names: Vec<String> = store
        .list_jobs()
        .await
        .unwrap()
        .into_iter()
        .map(|j| j.spec.name.to_string())
        .collect();
    assert_eq!(names, ["archive", "report"]);
}

async fn deleting_a_job_deletes_its_history<S: Store>(store: Arc<S>) {
    let n = name("gone");
    store
        .upsert_job(&job("gone"), ts("2026-01-01T00:00:00Z"))
        .await
        .unwrap();
    let run = store
        .claim_fire(claim(&n, "2026-01-01T00:05:00Z", 1))
        .await
        .unwrap()
        .unwrap();
    assert!(store.delete_job(&n).await.unwrap());
    assert!(!store.delete_job(&n).await.unwrap());
    assert_eq!(store.get_run(run.id).await.unwrap(), None);
}

async fn each_fire_is_claimed_once<S: Store>(store: Arc<S>) {
    let n = name("sync");
    store
        .upsert_job(&job("sync"), ts("2026-01-01T00:00:00Z"))
        .await
        .unwrap();
    let first = store
        .claim_fire(claim(&n, "2026-01-01T00:05:00Z", 1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (first.status, first.attempt, first.trigger),
        (RunStatus::Queued, 1, Trigger::Schedule)
    );
    assert_eq!(first.scheduled_at, ts("2026-01-01T00:05:00Z"));
    assert!(store
        .claim_fire(claim(&n, "2026-01-01T00:05:00Z", 1))
        .await
        .unwrap()
        .is_none());
    // A catch-up claim of the same fire is the same fire.
    let catch_up = ClaimFire {
        trigger: Trigger::CatchUp,
        ..claim(&n, "2026-01-01T00:05:00Z", 1)
    };
    assert!(store.claim_fire(catch_up).await.unwrap().is_none());
    // Its retry is another attempt, claimed once too.
    let retry = ClaimFire {
        trigger: Trigger::Retry,
        ..claim(&n, "2026-01-01T00:05:00Z", 2)
    };
    assert!(store.claim_fire(retry.clone()).await.unwrap().is_some());
    assert!(store.claim_fire(retry).await.unwrap().is_none());
    // Manual runs are not claims: two at the same instant are two runs.
    let manual = || NewRun {
        job: &n,
        scheduled_at: ts("2026-01-01T00:05:00Z"),
        trigger: Trigger::Manual,
        attempt: 1,
        status: RunStatus::Queued,
        node: "node-a",
        at: ts("2026-01-01T00:05:00Z"),
        error: None,
    };
    let a = store.record_run(manual()).await.unwrap();
    let b = store.record_run(manual()).await.unwrap();
    assert_ne!(a.id, b.id);
}

async fn racing_claims_have_one_winner<S: Store>(store: Arc<S>) {
    store
        .upsert_job(&job("race"), ts("2026-01-01T00:00:00Z"))
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..16 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let n = name("race");
            let node = format!("node-{i}");
            let c = ClaimFire {
                job: &n,
                scheduled_at: ts("2026-01-01T00:05:00Z"),
                trigger: Trigger::Schedule,
                attempt: 1,
                node: &node,
            };
            store.claim_fire(c).await.unwrap().is_some()
        }));
    }
    let mut winners = 0;
    for t in tasks {
        winners += usize::from(t.await.unwrap());
    }
    assert_eq!(winners, 1);
}

async fn last_fire_follows_scheduled_claims<S: Store>(store: Arc<S>) {
    let n = name("cursor");
    store
        .upsert_job(&job("cursor"), ts("2026-01-01T00:00:00Z"))
        .await
        .unwrap();
    assert_eq!(store.last_fire(&n).await.unwrap(), None);
    store
        .claim_fire(claim(&n, "2026-01-01T00:10:00Z", 1))
        .await
        .unwrap();
    store
        .claim_fire(claim(&n, "2026-01-01T00:05:00Z", 1))
        .await
        .unwrap();
    assert_eq!(
        store.last_fire(&n).await.unwrap(),
        Some(ts("2026-01-01T00:10:00Z"))
    );
    // Retries do not move it: they are not new fires.
    let retry = ClaimFire {
        trigger: Trigger::Retry,
        ..claim(&n, "2026-01-01T00:20:00Z", 2)
    };
    store.claim_fire(retry).await.unwrap();
    assert_eq!(
        store.last_fire(&n).await.unwrap(),
        Some(ts("2026-01-01T00:10:00Z"))
    );
    // Pruning all history keeps it: a restart must still know where the schedule stood.
    store
        .abandon_runs(None, ts("2026-01-01T01:00:00Z"))
        .await
        .unwrap();
    store
        .prune_runs(0, ts("2027-01-01T00:00:00Z"))
        .await
        .unwrap();
    assert!(store
        .list_runs(&RunFilter {
            job: Some(n.clone()),
            ..RunFilter::default()
        })
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store.last_fire(&n).await.unwrap(),
        Some(ts("2026-01-01T00:10:00Z"))
    );
    // The job's record carries it too, for loading every job at once.
    assert_eq!(
        store.get_job(&n).await.unwrap().unwrap().last_fire,
        Some(ts("2026-01-01T00:10:00Z"))
    );
    let listed = store.list_jobs().await.unwrap();
    assert_eq!(
        listed.iter().find(|j| j.spec.name == n).unwrap().last_fire,
        Some(ts("2026-01-01T00:10:00Z"))
    );
}

async fn results_need_the_current_fencing_token<S: Store>(store: Arc<S>) {
    let n = name("fenced");
    store
        .upsert_job(&job("fenced"), ts("2026-01-01T00:00:00Z"))
        .await
        .unwrap();
    let run = store
        .claim_fire(claim(&n, "2026-01-01T00:05:00Z", 1))
        .await
        .unwrap()
        .unwrap();
    let stale = run.fencing_token.wrapping_add(1);
    assert!(!store
        .start_run(run.id, stale, ts("2026-01-01T00:05:00Z"))
        .await
        .unwrap());
    assert!(store
        .start_run(run.id, run.fencing_token, ts("2026-01-01T00:05:00Z"))
        .await
        .unwrap());
    assert!(
        !store
            .start_run(run.id, run.fencing_token, ts("2026-01-01T00:05:01Z"))
            .await
            .unwrap(),
        "started twice"
    );
    assert!(!store
        .finish_run(finish(
            run.id,
            stale,
            RunStatus::Succeeded,
            "2026-01-01T00:05:02Z"
        ))
        .await
        .unwrap());
    assert_eq!(
        store.get_run(run.id).await.unwrap().unwrap().status,
        RunStatus::Running
    );
    let done = FinishRun {
        exit_code: Some(3),
        error: Some("exit status 3".into()),
        output: Some("tail of output".into()),
        ..finish(
            run.id,
            run.fencing_token,
            RunStatus::Failed,
            "2026-01-01T00:05:04Z",
        )
    };
    assert!(store.finish_run(done).await.unwrap());
    // A second result (a slow duplicate, a node back from the dead) changes nothing.
    assert!(!store
        .finish_run(finish(
            run.id,
            run.fencing_token,
            RunStatus::Succeeded,
            "2026-01-01T00:06:00Z"
        ))
        .await
        .unwrap());
    let stored = store.get_run(run.id).await.unwrap().unwrap();
    assert_eq!(stored.status, RunStatus::Failed);
    assert_eq!(stored.exit_code, Some(3));
    assert_eq!(stored.output.as_deref(), Some("tail of output"));
    assert_eq!(stored.duration(), Some(SignedDuration::from_secs(4)));
    // Only final statuses finish a run.
    assert!(store
        .finish_run(finish(
            run.id,
            run.fencing_token,
            RunStatus::Running,
            "2026-01-01T00:06:00Z"
        ))
        .await
        .is_err());
}

async fn unfinished_runs_are_abandoned_not_lost<S: Store>(store: Arc<S>) {
    let n = name("crashy");
    store
        .upsert_job(&job("crashy"), ts("2026-01-01T00:00:00Z"))
        .await
        .unwrap();
    let running = store
        .claim_fire(claim(&n, "2026-01-01T00:05:00Z", 1))
        .await
        .unwrap()
        .unwrap();
    store
        .start_run(
            running.id,
            running.fencing_token,
            ts("2026-01-01T00:05:00Z"),
        )
        .await
        .unwrap();
    let queued = store
        .claim_fire(claim(&n, "2026-01-01T00:10:00Z", 1))
        .await
        .unwrap()
        .unwrap();
    let other_node = store
        .claim_fire(ClaimFire {
            node: "node-b",
            ..claim(&n, "2026-01-01T00:15:00Z", 1)
        })
        .await
        .unwrap()
        .unwrap();
    let done = store
        .claim_fire(claim(&n, "2026-01-01T00:00:00Z", 1))
        .await
        .unwrap()
        .unwrap();
    store
        .finish_run(finish(
            done.id,
            done.fencing_token,
            RunStatus::Succeeded,
            "2026-01-01T00:00:01Z",
        ))
        .await
        .unwrap();

    let abandoned = store
        .abandon_runs(Some("node-a"), ts("2026-01-01T01:00:00Z"))
        .await
        .unwrap();
    assert_eq!(
        abandoned.iter().map(|r| r.id).collect::<Vec<_>>(),
        [running.id, queued.id]
    );
    assert!(abandoned
        .iter()
        .all(|r| r.status == RunStatus::Abandoned
            && r.finished_at == Some(ts("2026-01-01T01:00:00Z"))));
    assert!(abandoned[0].error.as_deref().unwrap().contains("running"));
    // The old holder can no longer record a result.
    assert!(!store
        .finish_run(finish(
            running.id,
            running.fencing_token,
            RunStatus::Succeeded,
            "2026-01-01T01:00:01Z"
        ))
        .await
        .unwrap());
    assert_eq!(
        store.get_run(other_node.id).await.unwrap().unwrap().status,
        RunStatus::Queued
    );
    assert_eq!(
        store.get_run(done.id).await.unwrap().unwrap().status,
        RunStatus::Succeeded
    );
    assert_eq!(
        store
            .abandon_runs(None, ts("2026-01-01T01:00:00Z"))
            .await
            .unwrap()
            .len(),
        1
    );
}

/// A node's unfinished runs taken over by another (or by itself, restarted): what may have
/// begun (`running`) is abandoned; what cannot have (`queued`) changes hands, under a new
/// fencing token that alone can start and finish it.
async fn unfinished_runs_are_taken_over_by_what_they_may_have_done<S: Store>(store: Arc<S>) {
    let n = name("handed");
    let at = ts("2026-01-01T01:00:00Z");
    store
        .upsert_job(&job("handed"), ts("2026-01-01T00:00:00Z"))
        .await
        .unwrap();
    let running = store
        .claim_fire(claim(&n, "2026-01-01T00:05:00Z", 1))
        .await
        .unwrap()
        .unwrap();
    assert!(store
        .start_run(
            running.id,
            running.fencing_token,
            ts("2026-01-01T00:05:00Z")
        )
        .await
        .unwrap());
    let queued = store
        .claim_fire(claim(&n, "2026-01-01T00:10:00Z", 1))
        .await
        .unwrap()
        .unwrap();
    let retry = store
        .claim_fire(ClaimFire {
            trigger: Trigger::Retry,
            ..claim(&n, "2026-01-01T00:05:00Z", 2)
        })
        .await
        .unwrap()
        .unwrap();
    let manual = store
        .record_run(NewRun {
            job: &n,
            scheduled_at: ts("2026-01-01T00:20:00Z"),
            trigger: Trigger::Manual,
            attempt: 1,
            status: RunStatus::Queued,
            node: "node-a",
            at: ts("2026-01-01T00:20:00Z"),
            error: None,
        })
        .await
        .unwrap();
    let other_node = store
        .claim_fire(ClaimFire {
            node: "node-b",
            ..claim(&n, "2026-01-01T00:15:00Z", 1)
        })
        .await
        .unwrap()
        .unwrap();

    let taken = store.take_over_runs("node-a", "node-c", at).await.unwrap();
    assert_eq!(
        taken.iter().map(|r| r.id).collect::<Vec<_>>(),
        [running.id, queued.id, retry.id, manual.id]
    );
    // The running one may have begun: abandoned, where it was, with its start kept.
    let abandoned = &taken[0];
    assert_eq!(
        (
            abandoned.status,
            abandoned.node.as_str(),
            abandoned.finished_at
        ),
        (RunStatus::Abandoned, "node-a", Some(at))
    );
    assert_eq!(abandoned.started_at, Some(ts("2026-01-01T00:05:00Z")));
    assert!(abandoned.error.as_deref().unwrap().contains("running"));
    // The queued ones cannot have: node-c's now, still queued, each under a new token.
    for (was, now) in [&queued, &retry, &manual].into_iter().zip(&taken[1..]) {
        assert_eq!(
            (now.status, now.node.as_str(), now.trigger, now.attempt),
            (RunStatus::Queued, "node-c", was.trigger, was.attempt)
        );
        assert_eq!((now.scheduled_at, now.started_at), (was.scheduled_at, None));
        assert_eq!((now.finished_at, now.error.as_deref()), (None, None));
        assert_ne!(now.fencing_token, was.fencing_token);
        assert_eq!(store.get_run(now.id).await.unwrap().as_ref(), Some(now));
        // The old holder can neither start nor finish it...
        assert!(!store
            .start_run(was.id, was.fencing_token, at)
            .await
            .unwrap());
        assert!(!store
            .finish_run(finish(
                was.id,
                was.fencing_token,
                RunStatus::Succeeded,
                "2026-01-01T01:00:01Z"
            ))
            .await
            .unwrap());
    }
    // ... the new one can.
    let handed = &taken[1];
    assert!(store
        .start_run(handed.id, handed.fencing_token, at)
        .await
        .unwrap());
    assert!(store
        .finish_run(finish(
            handed.id,
            handed.fencing_token,
            RunStatus::Succeeded,
            "2026-01-01T01:00:02Z"
        ))
        .await
        .unwrap());
    // The fire is still claimed once, and where the schedule stands has not moved.
    assert!(store
        .claim_fire(claim(&n, "2026-01-01T00:10:00Z", 1))
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        store.last_fire(&n).await.unwrap(),
        Some(ts("2026-01-01T00:15:00Z"))
    );
    // Another node's runs are not touched; and there is nothing left to take over.
    assert_eq!(
        store.get_run(other_node.id).await.unwrap(),
        Some(other_node)
    );
    assert!(store
        .take_over_runs("node-a", "node-c", at)
        .await
        .unwrap()
        .is_empty());
    // A node restarted under the same name takes its own over: queued runs stay its own.
    let again = store
        .claim_fire(claim(&n, "2026-01-01T00:25:00Z", 1))
        .await
        .unwrap()
        .unwrap();
    let own = store.take_over_runs("node-a", "node-a", at).await.unwrap();
    assert_eq!(own.len(), 1);
    assert_eq!(
        (own[0].id, own[0].status, own[0].node.as_str()),
        (again.id, RunStatus::Queued, "node-a")
    );
    assert_ne!(own[0].fencing_token, again.fencing_token);
}

async fn runs_list_newest_first_with_filters<S: Store>(store: Arc<S>) {
    let (a, b) = (name("alpha"), name("beta"));
    store
        .upsert_job(&job("alpha"), ts("2026-01-01T00:00:00Z"))
        .await
        .unwrap();
    store
        .upsert_job(&job("beta"), ts("2026-01-01T00:00:00Z"))
        .await
        .unwrap();
    let mut ids = Vec::new();
    for minute in 0..6 {
        let which = if minute % 2 == 0 { &a } else { &b };
        let at = format!("2026-01-01T00:{minute:02}:00Z");
        let run = store
            .claim_fire(claim(which, &at, 1))
            .await
            .unwrap()
            .unwrap();
        let status = if minute < 3 {
            RunStatus::Succeeded
        } else {
            RunStatus::Failed
        };
        store
            .finish_run(finish(run.id, run.fencing_token, status, &at))
            .await
            .unwrap();
        ids.push(run.id);
    }
    let all = store.list_runs(&RunFilter::default()).await.unwrap();
    assert_eq!(
        all.iter().map(|r| r.id).collect::<Vec<_>>(),
        ids.iter().rev().copied().collect::<Vec<_>>()
    );
    let alpha = store
        .list_runs(&RunFilter {
            job: Some(a.clone()),
            ..RunFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(
        alpha.iter().map(|r| r.id).collect::<Vec<_>>(),
        [ids[4], ids[2], ids[0]]
    );
    let failed = store
        .list_runs(&RunFilter {
            status: Some(RunStatus::Failed),
            ..RunFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(failed.len(), 3);
    let window = RunFilter {
        since: Some(ts("2026-01-01T00:02:00Z")),
        until: Some(ts("2026-01-01T00:04:00Z")),
        ..RunFilter::default()
    };
    assert_eq!(
        store
            .list_runs(&window)
            .await
            .unwrap()
            .iter()
            .map(|r| r.id)
            .collect::<Vec<_>>(),
        [ids[3], ids[2]]
    );
    let page = RunFilter {
        limit: Some(2),
        before_id: Some(ids[4]),
        ..RunFilter::default()
    };
    assert_eq!(
        store
            .list_runs(&page)
            .await
            .unwrap()
            .iter()
            .map(|r| r.id)
            .collect::<Vec<_>>(),
        [ids[3], ids[2]]
    );
    let manual = RunFilter {
        trigger: Some(Trigger::Manual),
        ..RunFilter::default()
    };
    assert!(store.list_runs(&manual).await.unwrap().is_empty());
}

async fn stats_summarise_history<S: Store>(store: Arc<S>) {
    let n = name("stats");
    store
        .upsert_job(&job("stats"), ts("2026-01-01T00:00:00Z"))
        .await
        .unwrap();
    // Durations 1..=10 s; the last three runs fail.
    for i in 1..=10u32 {
        let at = ts("2026-01-01T00:00:00Z") + SignedDuration::from_mins(i64::from(i));
        let run = store
            .claim_fire(ClaimFire {
                job: &n,
                scheduled_at: at,
                trigger: Trigger::Schedule,
                attempt: 1,
                node: "node-a",
            })
            .await
            .unwrap()
            .unwrap();
        store
            .start_run(run.id, run.fencing_token, at)
            .await
            .unwrap();
        let status = if i > 7 {
            RunStatus::Failed
        } else {
            RunStatus::Succeeded
        };
        let end = at + SignedDuration::from_secs(i64::from(i));
        let f = FinishRun {
            id: run.id,
            fencing_token: run.fencing_token,
            status,
            started_at: None,
            finished_at: end,
            exit_code: None,
            error: None,
            output: None,
        };
        store.finish_run(f).await.unwrap();
    }
    let skipped = NewRun {
        job: &n,
        scheduled_at: ts("2026-01-01T01:00:00Z"),
        trigger: Trigger::Manual,
        attempt: 1,
        status: RunStatus::Skipped,
        node: "node-a",
        at: ts("2026-01-01T01:00:00Z"),
        error: Some("the previous run was still going".into()),
    };
    store.record_run(skipped).await.unwrap();
    let stats = store.job_stats(&n).await.unwrap();
    assert_eq!(
        (
            stats.runs,
            stats.succeeded,
            stats.failed,
            stats.consecutive_failures
        ),
        (11, 7, 3, 3)
    );
    assert_eq!(stats.success_rate(), Some(0.7));
    assert_eq!(stats.duration_p50, Some(SignedDuration::from_secs(5)));
    assert_eq!(stats.duration_p95, Some(SignedDuration::from_secs(10)));
    assert_eq!(stats.duration_max, Some(SignedDuration::from_secs(10)));
    assert_eq!(stats.last_success, Some(ts("2026-01-01T00:07:07Z")));
    assert_eq!(stats.last_failure, Some(ts("2026-01-01T00:10:10Z")));
    assert_eq!(store.job_stats(&name("absent")).await.unwrap().runs, 0);
}

async fn pruning_keeps_the_newest_and_the_unfinished<S: Store>(store: Arc<S>) {
    let (a, b) = (name("prune-a"), name("prune-b"));
    store
        .upsert_job(&job("prune-a"), ts("2026-01-01T00:00:00Z"))
        .await
        .unwrap();
    store
        .upsert_job(&job("prune-b"), ts("2026-01-01T00:00:00Z"))
        .await
        .unwrap();
    for day in 1..=5 {
        for n in [&a, &b] {
            let at = format!("2026-01-0{day}T00:00:00Z");
            let run = store.claim_fire(claim(n, &at, 1)).await.unwrap().unwrap();
            store
                .finish_run(finish(run.id, run.fencing_token, RunStatus::Succeeded, &at))
                .await
                .unwrap();
        }
    }
    let unfinished = store
        .claim_fire(claim(&a, "2025-12-01T00:00:00Z", 1))
        .await
        .unwrap()
        .unwrap();
    // Keep 3 per job, and nothing that finished before Jan 3.
    let deleted = store
        .prune_runs(3, ts("2026-01-03T00:00:00Z"))
        .await
        .unwrap();
    assert_eq!(deleted, 4);
    for n in [&a, &b] {
        let left = store
            .list_runs(&RunFilter {
                job: Some(n.clone()),
                status: Some(RunStatus::Succeeded),
                ..RunFilter::default()
            })
            .await
            .unwrap();
        let days: Vec<String> = left
            .iter()
            .map(|r| r.scheduled_at.strftime("%d").to_string())
            .collect();
        assert_eq!(days, ["05", "04", "03"]);
    }
    assert_eq!(
        store.get_run(unfinished.id).await.unwrap().unwrap().status,
        RunStatus::Queued
    );
    assert_eq!(
        store
            .prune_runs(1, ts("2026-01-01T00:00:00Z"))
            .await
            .unwrap(),
        4
    );
}

async fn batch_claims_match_single_claims<S: Store>(store: Arc<S>) {
    let (a, b) = (name("batch-a"), name("batch-b"));
    for n in ["batch-a", "batch-b"] {
        store
            .upsert_job(&job(n), ts("2026-01-01T00:00:00Z"))
            .await
            .unwrap();
    }
    let earlier = store
        .claim_fire(claim(&a, "2026-01-01T00:05:00Z", 1))
        .await
        .unwrap()
        .unwrap();
    // Enough claims to span several statements, with a fire claimed before, a repeat within
    // the batch, and two jobs.
    let mut claims = vec![
        claim(&a, "2026-01-01T00:05:00Z", 1),
        claim(&b, "2026-01-01T00:05:00Z", 1),
        claim(&b, "2026-01-01T00:05:00Z", 1),
    ];
    let start = ts("2026-01-01T01:00:00Z");
    for i in 0..1200 {
        claims.push(ClaimFire {
            scheduled_at: start + SignedDuration::from_secs(i),
            ..claim(&a, "2026-01-01T00:00:00Z", 1)
        });
    }
    let runs = store.claim_fires(&claims).await.unwrap();
    assert_eq!(runs.len(), claims.len(), "one answer per claim, in order");
    assert!(runs[0].is_none(), "claimed before the batch");
    let b_run = runs[1].clone().expect("b's fire is new");
    assert!(
        runs[2].is_none(),
        "a repeat within the batch is claimed once"
    );
    for (claim, run) in claims.iter().zip(&runs).skip(3) {
        let run = run.as_ref().expect("each new fire is claimed");
        assert_eq!(
            (&run.job, run.scheduled_at, run.attempt, run.status),
            (claim.job, claim.scheduled_at, 1, RunStatus::Queued)
        );
        // What the batch returned is what was stored.
        assert_eq!(store.get_run(run.id).await.unwrap().as_ref(), Some(run));
    }
    assert_eq!(store.get_run(b_run.id).await.unwrap(), Some(b_run));
    let ids: std::collections::HashSet<_> = runs.iter().flatten().map(|r| r.id).collect();
    assert_eq!(ids.len(), 1201);
    assert!(!ids.contains(&earlier.id));
    assert_eq!(
        store.last_fire(&a).await.unwrap(),
        Some(start + SignedDuration::from_secs(1199))
    );
    assert_eq!(
        store.last_fire(&b).await.unwrap(),
        Some(ts("2026-01-01T00:05:00Z"))
    );
    assert_eq!(store.claim_fires(&[]).await.unwrap(), Vec::new());
}

async fn batch_results_are_fenced_one_by_one<S: Store>(store: Arc<S>) {
    let n = name("batch-results");
    store
        .upsert_job(&job("batch-results"), ts("2026-01-01T00:00:00Z"))
        .await
        .unwrap();
    let mut claims = Vec::new();
    for minute in 0..4 {
        claims.push(ClaimFire {
            scheduled_at: ts("2026-01-01T01:00:00Z") + SignedDuration::from_mins(minute),
            ..claim(&n, "2026-01-01T00:00:00Z", 1)
        });
    }
    let runs: Vec<_> = store
        .claim_fires(&claims)
        .await
        .unwrap()
        .into_iter()
        .map(Option::unwrap)
        .collect();
    let started_at = ts("2026-01-01T01:00:01Z");
    let start = |i: usize, token: i64| StartRun {
        id: runs[i].id,
        fencing_token: token,
        at: started_at,
    };
    // Runs 0 and 1 start; run 2 is offered a stale token; run 3 never starts separately.
    let started = store
        .start_runs(&[
            start(0, runs[0].fencing_token),
            start(1, runs[1].fencing_token),
            start(2, runs[2].fencing_token ^ 1),
        ])
        .await
        .unwrap();
    assert_eq!(started, vec![true, true, false]);
    let end = "2026-01-01T01:00:09Z";
    let finishes = vec![
        finish(runs[0].id, runs[0].fencing_token, RunStatus::Succeeded, end),
        // A stale token: nothing is written for this one, the others still are.
        finish(
            runs[1].id,
            runs[1].fencing_token ^ 1,
            RunStatus::Failed,
            end,
        ),
        FinishRun {
            // A start time given with the result counts when none was recorded...
            started_at: Some(ts("2026-01-01T01:00:05Z")),
            ..finish(runs[2].id, runs[2].fencing_token, RunStatus::Failed, end)
        },
        FinishRun {
            exit_code: Some(0),
            output: Some("done".into()),
            started_at: Some(ts("2026-01-01T01:00:07Z")),
            ..finish(runs[3].id, runs[3].fencing_token, RunStatus::Succeeded, end)
        },
    ];
    assert_eq!(
        store.finish_runs(&finishes).await.unwrap(),
        vec![true, false, true, true]
    );
    let stored = |i: usize| {
        let store = store.clone();
        let id = runs[i].id;
        async move { store.get_run(id).await.unwrap().unwrap() }
    };
    let r0 = stored(0).await;
    assert_eq!(
        (r0.status, r0.started_at),
        (RunStatus::Succeeded, Some(started_at))
    );
    let r1 = stored(1).await;
    assert_eq!((r1.status, r1.finished_at), (RunStatus::Running, None));
    let r2 = stored(2).await;
    assert_eq!(
        (r2.status, r2.started_at),
        (RunStatus::Failed, Some(ts("2026-01-01T01:00:05Z")))
    );
    let r3 = stored(3).await;
    assert_eq!(
        (r3.status, r3.started_at, r3.exit_code, r3.output.as_deref()),
        (
            RunStatus::Succeeded,
            Some(ts("2026-01-01T01:00:07Z")),
            Some(0),
            Some("done")
        )
    );
    // ...but never replaces one that was.
    let again = FinishRun {
        started_at: Some(ts("2026-01-01T01:00:08Z")),
        ..finish(runs[1].id, runs[1].fencing_token, RunStatus::Succeeded, end)
    };
    assert_eq!(store.finish_runs(&[again]).await.unwrap(), vec![true]);
    assert_eq!(stored(1).await.started_at, Some(started_at));
    // A batch with a status that is not final is refused whole.
    let bad = vec![finish(
        runs[0].id,
        runs[0].fencing_token,
        RunStatus::Running,
        end,
    )];
    assert!(store.finish_runs(&bad).await.is_err());
}

async fn run_requests_are_taken_once_and_change_the_sequence<S: Store>(store: Arc<S>) {
    let n = name("requested");
    let t0 = ts("2026-01-01T00:00:00Z");
    let before = store.change_seq().await.unwrap();
    store.upsert_job(&job("requested"), t0).await.unwrap();
    let created = store.change_seq().await.unwrap();
    assert_ne!(created, before, "a new job is a change");
    store.upsert_job(&job("requested"), t0).await.unwrap();
    assert_eq!(
        store.change_seq().await.unwrap(),
        created,
        "the same definition is not"
    );
    // The scheduler's own bookkeeping is not a change either.
    let run = store
        .claim_fire(claim(&n, "2026-01-01T00:05:00Z", 1))
        .await
        .unwrap()
        .unwrap();
    store
        .finish_run(finish(
            run.id,
            run.fencing_token,
            RunStatus::Succeeded,
            "2026-01-01T00:05:01Z",
        ))
        .await
        .unwrap();
    assert_eq!(store.change_seq().await.unwrap(), created);

    assert!(!store.request_run(&name("nobody"), "cli", t0).await.unwrap());
    assert!(store.request_run(&n, "cli", t0).await.unwrap());
    assert!(store
        .request_run(&n, "ops", ts("2026-01-01T00:00:01Z"))
        .await
        .unwrap());
    let requested = store.change_seq().await.unwrap();
    assert_ne!(requested, created, "a request is a change");
    let taken = store.take_run_requests().await.unwrap();
    assert_eq!(
        taken
            .iter()
            .map(|r| (r.job.as_str(), r.requested_by.as_str(), r.requested_at))
            .collect::<Vec<_>>(),
        [
            ("requested", "cli", t0),
            ("requested", "ops", ts("2026-01-01T00:00:01Z"))
        ]
    );
    assert!(store.take_run_requests().await.unwrap().is_empty());
    let mut changed = job("requested");
    changed.enabled = false;
    store.upsert_job(&changed, t0).await.unwrap();
    let paused = store.change_seq().await.unwrap();
    assert_ne!(paused, requested, "a changed definition is a change");
    store.delete_job(&n).await.unwrap();
    assert_ne!(
        store.change_seq().await.unwrap(),
        paused,
        "a deletion is a change"
    );
}

async fn an_operator_pause_outlasts_the_definition<S: Store>(store: Arc<S>) {
    let n = name("pausable");
    let t0 = ts("2026-01-01T00:00:00Z");
    store.upsert_job(&job("pausable"), t0).await.unwrap();
    assert_eq!(
        store.set_paused(&name("nobody"), Some("x")).await.unwrap(),
        None
    );
    let before = store.change_seq().await.unwrap();
    let paused = store
        .set_paused(&n, Some("disk full"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(paused.paused.as_deref(), Some("disk full"));
    assert!(!paused.effective_spec().enabled);
    assert_eq!(
        paused.effective_spec().pause_reason.as_deref(),
        Some("disk full")
    );
    assert_ne!(
        store.change_seq().await.unwrap(),
        before,
        "a pause is a change"
    );
    // Re-applying (or changing) the definition keeps the pause.
    let mut changed = job("pausable");
    changed.description = "changed".into();
    let record = store.upsert_job(&changed, t0).await.unwrap();
    assert_eq!(record.paused.as_deref(), Some("disk full"));
    assert_eq!(
        store.get_job(&n).await.unwrap().unwrap().paused.as_deref(),
        Some("disk full")
    );
    let resumed = store.set_paused(&n, None).await.unwrap().unwrap();
    assert_eq!(resumed.paused, None);
    assert!(resumed.effective_spec().enabled);
    assert_eq!(resumed.effective_spec(), changed);
}

async fn tokens_are_kept_by_hash_and_revocable<S: Store>(store: Arc<S>) {
    let t0 = ts("2026-01-01T00:00:00Z");
    let ci = store
        .create_token("ci", Role::Operator, "hash-of-ci", t0)
        .await
        .unwrap();
    assert_eq!(
        (ci.name.as_str(), ci.role, ci.revoked_at),
        ("ci", Role::Operator, None)
    );
    store
        .create_token("alice", Role::Admin, "hash-of-alice", t0)
        .await
        .unwrap();
    assert!(matches!(
        store
            .create_token("ci", Role::Viewer, "another-hash", t0)
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        store
            .token_by_hash("hash-of-ci")
            .await
            .unwrap()
            .map(|t| t.name),
        Some("ci".to_owned())
    );
    assert_eq!(
        store.token_by_hash("ci").await.unwrap(),
        None,
        "names are not hashes"
    );
    let names: Vec<String> = store
        .list_tokens()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, ["alice", "ci"]);
    assert!(store
        .revoke_token("ci", ts("2026-01-02T00:00:00Z"))
        .await
        .unwrap());
    assert!(!store
        .revoke_token("ci", ts("2026-01-03T00:00:00Z"))
        .await
        .unwrap());
    assert!(!store.revoke_token("nobody", t0).await.unwrap());
    assert_eq!(store.token_by_hash("hash-of-ci").await.unwrap(), None);
    let listed = store.list_tokens().await.unwrap();
    assert_eq!(listed[1].revoked_at, Some(ts("2026-01-02T00:00:00Z")));
}

async fn the_audit_log_keeps_every_entry_newest_first<S: Store>(store: Arc<S>) {
    for i in 0..5i64 {
        let detail = serde_json::json!({ "reason": format!("r{i}") });
        let entry = store
            .record_audit(NewAudit {
                at: ts("2026-01-01T00:00:00Z") + SignedDuration::from_secs(i),
                actor: "alice",
                source: Some("127.0.0.1"),
                action: "job.pause",
                target: Some("report"),
                detail: Some(detail.clone()),
            })
            .await
            .unwrap();
        assert_eq!(entry.detail, Some(detail));
    }
    let page = store.list_audit(None, 3).await.unwrap();
    assert_eq!(page.len(), 3);
    assert!(page.windows(2).all(|w| w[0].id > w[1].id), "newest first");
    let rest = store.list_audit(Some(page[2].id), 10).await.unwrap();
    assert_eq!(rest.len(), 2);
    assert_eq!(
        (
            rest[1].actor.as_str(),
            rest[1].action.as_str(),
            rest[1].target.as_deref(),
            rest[1].source.as_deref()
        ),
        ("alice", "job.pause", Some("report"), Some("127.0.0.1"))
    );
    assert_eq!(rest[1].at, ts("2026-01-01T00:00:00Z"));
}

async fn jobs_are_found_by_page_and_filters<S: Store>(store: Arc<S>) {
    jobs_are_found_by_filters(store.clone()).await;
    // Summaries are the same page, with each definition as stored.
    let filter = JobFilter {
        limit: Some(1000),
        ..Default::default()
    };
    let records = store.find_jobs(&filter).await.unwrap();
    let summaries = store.find_job_summaries(&filter).await.unwrap();
    assert_eq!(records.len(), summaries.len());
    for (record, summary) in records.iter().zip(&summaries) {
        assert_eq!(summary.name, record.spec.name);
        assert_eq!(summary.enabled, record.effective_spec().enabled);
        assert_eq!(
            (
                &summary.paused,
                summary.version,
                summary.created_at,
                summary.updated_at
            ),
            (
                &record.paused,
                record.version,
                record.created_at,
                record.updated_at
            )
        );
        let spec: JobSpec = serde_json::from_str(&summary.spec_json).unwrap();
        assert_eq!(spec, record.spec);
    }
}

async fn jobs_are_found_by_filters<S: Store>(store: Arc<S>) {
    let t0 = ts("2026-01-01T00:00:00Z");
    for i in 0..25 {
        let mut spec = job(&format!("job-{i:02}"));
        spec.tags = if i % 5 == 0 {
            vec!["disk".into()]
        } else {
            vec!["net".into(), "x".into()]
        };
        spec.description = if i == 7 {
            "Nightly REPORT".into()
        } else {
            String::new()
        };
        spec.enabled = i != 3;
        store.upsert_job(&spec, t0).await.unwrap();
    }
    store
        .set_paused(&name("job-04"), Some("ops"))
        .await
        .unwrap();
    let names = |jobs: Vec<cronwarden::store::JobRecord>| -> Vec<String> {
        jobs.into_iter().map(|j| j.spec.name.to_string()).collect()
    };
    let filter = |f: JobFilter| {
        let store = store.clone();
        async move { names(store.find_jobs(&f).await.unwrap()) }
    };
    // Pages of 10 cover every job once, in order.
    let mut all = Vec::new();
    let mut after = None;
    loop {
        let page = filter(JobFilter {
            after: after.clone(),
            limit: Some(10),
            ..Default::default()
        })
        .await;
        if page.is_empty() {
            break;
        }
        after = Some(name(page.last().unwrap()));
        all.extend(page);
    }
    assert_eq!(
        all,
        (0..25).map(|i| format!("job-{i:02}")).collect::<Vec<_>>()
    );
    assert_eq!(
        filter(JobFilter {
            tag: Some("disk".into()),
            ..Default::default()
        })
        .await,
        ["job-00", "job-05", "job-10", "job-15", "job-20"]
    );
    assert_eq!(
        filter(JobFilter {
            enabled: Some(false),
            ..Default::default()
        })
        .await,
        ["job-03", "job-04"],
        "disabled by definition or paused by an operator"
    );
    assert_eq!(
        filter(JobFilter {
            enabled: Some(true),
            ..Default::default()
        })
        .await
        .len(),
        23
    );
    assert_eq!(
        filter(JobFilter {
            text: Some("report".into()),
            ..Default::default()
        })
        .await,
        ["job-07"]
    );
    assert_eq!(
        filter(JobFilter {
            text: Some("JOB-1".into()),
            tag: Some("net".into()),
            ..Default::default()
        })
        .await,
        ["job-11", "job-12", "job-13", "job-14", "job-16", "job-17", "job-18", "job-19"]
    );
}

/// Node heartbeats, the rescue of a dead node's runs, and leases.
async fn dead_nodes_are_rescued_once_and_leases_have_one_holder<S: Store>(store: Arc<S>) {
    let t = |s: &str| ts(&format!("2026-01-01T00:00:{s}Z"));
    // Two nodes join; "a" heartbeats until :10, "b" until :30.
    assert!(
        !store.heartbeat("a", t("00"), t("10")).await.unwrap(),
        "first heartbeat"
    );
    assert!(!store.heartbeat("b", t("00"), t("30")).await.unwrap());
    assert!(
        store.heartbeat("a", t("05"), t("10")).await.unwrap(),
        "alive still"
    );
    assert_eq!(store.live_nodes(t("09")).await.unwrap(), ["a", "b"]);
    assert_eq!(
        store.dead_nodes(t("09")).await.unwrap(),
        Vec::<String>::new()
    );

    // "a" claims a fire and starts it, claims another; then stops heartbeating.
    let n = name("rescued");
    store.upsert_job(&job("rescued"), t("00")).await.unwrap();
    let mut first = claim(&n, "2026-01-01T00:00:05Z", 1);
    first.node = "a";
    let mut second = claim(&n, "2026-01-01T00:00:20Z", 1);
    second.node = "a";
    let started = store.claim_fire(first).await.unwrap().unwrap();
    assert!(store
        .start_run(started.id, started.fencing_token, t("05"))
        .await
        .unwrap());
    let queued = store.claim_fire(second).await.unwrap().unwrap();
    let mut others = claim(&n, "2026-01-01T00:00:25Z", 1);
    others.node = "b";
    let kept = store.claim_fire(others).await.unwrap().unwrap();

    // At :11 "a" is dead; "b" is not. A live node is not rescued.
    assert_eq!(store.dead_nodes(t("11")).await.unwrap(), ["a"]);
    assert_eq!(store.live_nodes(t("11")).await.unwrap(), ["b"]);
    assert_eq!(store.rescue_node("b", "a", t("11")).await.unwrap(), None);
    // "b" rescues "a": the run "a" started may have begun, and is abandoned; the one still
    // queued cannot have, and becomes "b"'s (see `take_over_runs`).
    let rescued = store.rescue_node("a", "b", t("11")).await.unwrap().unwrap();
    let ids: Vec<RunId> = rescued.iter().map(|r| r.id).collect();
    assert_eq!(ids, [started.id, queued.id]);
    assert_eq!(
        (rescued[0].status, rescued[0].node.as_str()),
        (RunStatus::Abandoned, "a")
    );
    assert_eq!(
        (rescued[1].status, rescued[1].node.as_str()),
        (RunStatus::Queued, "b")
    );
    assert!(!store
        .start_run(queued.id, queued.fencing_token, t("20"))
        .await
        .unwrap());
    // Once only: a second rescuer finds nothing to do.
    assert_eq!(store.rescue_node("a", "c", t("12")).await.unwrap(), None);
    assert_eq!(
        store.dead_nodes(t("12")).await.unwrap(),
        Vec::<String>::new()
    );
    // The run of the live node is untouched, and "a"'s late result is refused.
    assert_eq!(
        store.get_run(kept.id).await.unwrap().unwrap().status,
        RunStatus::Queued
    );
    assert!(!store
        .finish_run(finish(
            started.id,
            started.fencing_token,
            RunStatus::Succeeded,
            "2026-01-01T00:00:13Z"
        ))
        .await
        .unwrap());
    // Until it heartbeats again, "a" claims nothing (a claim of its made while it was being
    // rescued would leave runs that nobody rescues), and nothing of the claim is kept.
    let mut late = claim(&n, "2026-01-01T00:00:30Z", 1);
    late.node = "a";
    let refused = store.claim_fire(late).await;
    assert!(
        matches!(&refused, Err(StoreError::Database(e)) if e.contains("rescued")),
        "{refused:?}"
    );
    // "a" comes back: its heartbeat says it was not alive (it must not trust its claims).
    assert!(!store.heartbeat("a", t("14"), t("24")).await.unwrap());
    let mut back = claim(&n, "2026-01-01T00:00:30Z", 1);
    back.node = "a";
    assert!(store.claim_fire(back).await.unwrap().is_some());
    store.leave("a").await.unwrap();
    assert_eq!(store.live_nodes(t("15")).await.unwrap(), ["b"]);

    // Leases: one holder at a time; renewable by the holder; free when run out or released.
    assert!(store
        .try_lease("maintenance", "a", t("00"), t("10"))
        .await
        .unwrap());
    assert!(!store
        .try_lease("maintenance", "b", t("05"), t("15"))
        .await
        .unwrap());
    assert!(
        store
            .try_lease("maintenance", "a", t("08"), t("18"))
            .await
            .unwrap(),
        "renewed"
    );
    assert!(!store
        .try_lease("maintenance", "b", t("17"), t("27"))
        .await
        .unwrap());
    assert!(
        store
            .try_lease("maintenance", "b", t("19"), t("29"))
            .await
            .unwrap(),
        "ran out"
    );
    store.release_lease("maintenance", "a").await.unwrap(); // not a's: no effect
    assert!(!store
        .try_lease("maintenance", "a", t("20"), t("30"))
        .await
        .unwrap());
    store.release_lease("maintenance", "b").await.unwrap();
    assert!(store
        .try_lease("maintenance", "a", t("21"), t("31"))
        .await
        .unwrap());
    assert!(
        store
            .try_lease("other", "b", t("21"), t("31"))
            .await
            .unwrap(),
        "per name"
    );

    // A node that leaves leaves nothing unfinished behind (nobody would rescue it).
    store.leave("b").await.unwrap();
    assert_eq!(
        store.get_run(kept.id).await.unwrap().unwrap().status,
        RunStatus::Abandoned
    );
    assert_eq!(
        store.live_nodes(t("22")).await.unwrap(),
        Vec::<String>::new()
    );
}

macro_rules! conformance {
    // `$open` gives the store and a guard to keep while the test runs (a PostgreSQL test
    // database, dropped with its guard), or `None` when the backend is not there: the test
    // is then skipped.
    ($backend:ident, guarded $open:expr) => {
        mod $backend {
            use super::*;

            async fn open() -> Option<(Arc<impl Store>, impl Sized)> {
                $open.await
            }

            #[tokio::test]
            async fn jobs_are_versioned_by_content() {
                let Some((store, _db)) = open().await else { return };
                super::jobs_are_versioned_by_content(store).await;
            }
            #[tokio::test]
            async fn deleting_a_job_deletes_its_history() {
                let Some((store, _db)) = open().await else { return };
                super::deleting_a_job_deletes_its_history(store).await;
            }
            #[tokio::test]
            async fn each_fire_is_claimed_once() {
                let Some((store, _db)) = open().await else { return };
                super::each_fire_is_claimed_once(store).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn racing_claims_have_one_winner() {
                let Some((store, _db)) = open().await else { return };
                super::racing_claims_have_one_winner(store).await;
            }
            #[tokio::test]
            async fn last_fire_follows_scheduled_claims() {
                let Some((store, _db)) = open().await else { return };
                super::last_fire_follows_scheduled_claims(store).await;
            }
            #[tokio::test]
            async fn results_need_the_current_fencing_token() {
                let Some((store, _db)) = open().await else { return };
                super::results_need_the_current_fencing_token(store).await;
            }
            #[tokio::test]
            async fn dead_nodes_are_rescued_once_and_leases_have_one_holder() {
                let Some((store, _db)) = open().await else { return };
                super::dead_nodes_are_rescued_once_and_leases_have_one_holder(store).await;
            }
            #[tokio::test]
            async fn unfinished_runs_are_taken_over_by_what_they_may_have_done() {
                let Some((store, _db)) = open().await else { return };
                super::unfinished_runs_are_taken_over_by_what_they_may_have_done(store).await;
            }
            #[tokio::test]
            async fn unfinished_runs_are_abandoned_not_lost() {
                let Some((store, _db)) = open().await else { return };
                super::unfinished_runs_are_abandoned_not_lost(store).await;
            }
            #[tokio::test]
            async fn runs_list_newest_first_with_filters() {
                let Some((store, _db)) = open().await else { return };
                super::runs_list_newest_first_with_filters(store).await;
            }
            #[tokio::test]
            async fn stats_summarise_history() {
                let Some((store, _db)) = open().await else { return };
                super::stats_summarise_history(store).await;
            }
            #[tokio::test]
            async fn batch_claims_match_single_claims() {
                let Some((store, _db)) = open().await else { return };
                super::batch_claims_match_single_claims(store).await;
            }
            #[tokio::test]
            async fn batch_results_are_fenced_one_by_one() {
                let Some((store, _db)) = open().await else { return };
                super::batch_results_are_fenced_one_by_one(store).await;
            }
            #[tokio::test]
            async fn run_requests_are_taken_once_and_change_the_sequence() {
                let Some((store, _db)) = open().await else { return };
                super::run_requests_are_taken_once_and_change_the_sequence(store).await;
            }
            #[tokio::test]
            async fn an_operator_pause_outlasts_the_definition() {
                let Some((store, _db)) = open().await else { return };
                super::an_operator_pause_outlasts_the_definition(store).await;
            }
            #[tokio::test]
            async fn tokens_are_kept_by_hash_and_revocable() {
                let Some((store, _db)) = open().await else { return };
                super::tokens_are_kept_by_hash_and_revocable(store).await;
            }
            #[tokio::test]
            async fn the_audit_log_keeps_every_entry_newest_first() {
                let Some((store, _db)) = open().await else { return };
                super::the_audit_log_keeps_every_entry_newest_first(store).await;
            }
            #[tokio::test]
            async fn jobs_are_found_by_page_and_filters() {
                let Some((store, _db)) = open().await else { return };
                super::jobs_are_found_by_page_and_filters(store).await;
            }
            #[tokio::test]
            async fn pruning_keeps_the_newest_and_the_unfinished() {
                let Some((store, _db)) = open().await else { return };
                super::pruning_keeps_the_newest_and_the_unfinished(store).await;
            }
        }
    };
    // A store that needs nothing around it.
    ($backend:ident, $open:expr) => {
        conformance!($backend, guarded async { Some((Arc::new($open.await), ())) });
    };
}

/// A fresh database file per test, in WAL mode like production (an in-memory database would
/// serialise everything through one connection and hide races).
async fn sqlite_file() -> cronwarden::store::SqliteStore {
    let dir = cronwarden_test_support::scratch_dir("conformance");
    let path = dir.join(format!("{}.db", unique_name()));
    cronwarden::store::SqliteStore::open(path.to_str().unwrap())
        .await
        .unwrap()
}

/// A name no other test in this run uses: the time and a counter.
fn unique_name() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{nanos}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

conformance!(sqlite, sqlite_file());
conformance!(sqlite_in_memory, async {
    cronwarden::store::SqliteStore::open_in_memory()
        .await
        .unwrap()
});

#[tokio::test]
async fn sqlite_data_survives_reopening_and_migrations_run_once() {
    let dir = cronwarden_test_support::TestDir::new("reopen");
    let path = dir.join("state.db");
    let path = path.to_str().unwrap();
    let store = cronwarden::store::SqliteStore::open(path).await.unwrap();
    store
        .upsert_job(&job("durable"), ts("2026-01-01T00:00:00Z"))
        .await
        .unwrap();
    let run = store
        .claim_fire(claim(&name("durable"), "2026-01-01T00:05:00Z", 1))
        .await
        .unwrap()
        .unwrap();
    store.close().await;
    let reopened = cronwarden::store::SqliteStore::open(path).await.unwrap();
    assert_eq!(
        reopened
            .get_job(&name("durable"))
            .await
            .unwrap()
            .unwrap()
            .version,
        1
    );
    assert_eq!(
        reopened.get_run(run.id).await.unwrap().unwrap().status,
        RunStatus::Queued
    );
    assert!(reopened
        .claim_fire(claim(&name("durable"), "2026-01-01T00:05:00Z", 1))
        .await
        .unwrap()
        .is_none());
    reopened.close().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[cfg(feature = "postgres")]
conformance!(postgres, guarded pg::store());

// PostgreSQL test databases: one per test, created on the server under test and dropped with
// their guard (on a panic too).
mod support;
#[cfg(feature = "postgres")]
use support::pg;

/// Two nodes (two stores, each with its own pool) race to claim the same fires, in opposite
/// orders and in batches of several sizes: each fire goes to exactly one of them, and what
/// each was told it claimed is what is stored.
#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_nodes_racing_for_the_same_fires_claim_each_once() {
    use cronwarden::store::PostgresStore;

    let Some(database) = pg::TestDatabase::create().await else {
        return;
    };
    let a = Arc::new(PostgresStore::connect(&database.url).await.unwrap());
    let b = Arc::new(PostgresStore::connect(&database.url).await.unwrap());
    let jobs: Vec<JobName> = (0..4).map(|i| name(&format!("contended-{i}"))).collect();
    for j in &jobs {
        a.upsert_job(&job(j.as_str()), ts("2026-01-01T00:00:00Z"))
            .await
            .unwrap();
    }
    let jobs = Arc::new(jobs);
    for (round, batch) in [1usize, 7, 50, 200].into_iter().enumerate() {
        // 4 jobs x 50 instants: 200 fires, the same for both nodes.
        let base = ts("2026-01-01T01:00:00Z") + SignedDuration::from_hours(round as i64);
        let fires: Vec<(usize, Timestamp)> = (0..200)
            .map(|i| (i % 4, base + SignedDuration::from_secs(60 * (i / 4) as i64)))
            .collect();
        let fires = Arc::new(fires);
        let barrier = Arc::new(tokio::sync::Barrier::new(2));
        let race = |store: Arc<PostgresStore>, node: &'static str, reversed: bool| {
            let (jobs, fires, barrier) = (jobs.clone(), fires.clone(), barrier.clone());
            tokio::spawn(async move {
                let mut order: Vec<usize> = (0..fires.len()).collect();
                if reversed {
                    order.reverse();
                }
                let mut won = vec![None; fires.len()];
                barrier.wait().await;
                for chunk in order.chunks(batch) {
                    let claims: Vec<ClaimFire<'_>> = chunk
                        .iter()
                        .map(|&i| ClaimFire {
                            job: &jobs[fires[i].0],
                            scheduled_at: fires[i].1,
                            trigger: Trigger::Schedule,
                            attempt: 1,
                            node,
                        })
                        .collect();
                    let runs = store.claim_fires(&claims).await.unwrap();
                    for (&i, run) in chunk.iter().zip(runs) {
                        won[i] = run;
                    }
                }
                won
            })
        };
        let from_a = race(a.clone(), "node-a", false);
        let from_b = race(b.clone(), "node-b", true);
        let (from_a, from_b) = (from_a.await.unwrap(), from_b.await.unwrap());
        for (i, (ra, rb)) in from_a.iter().zip(&from_b).enumerate() {
            let winner = match (ra, rb) {
                (Some(run), None) => {
                    assert_eq!(run.node, "node-a");
                    run
                }
                (None, Some(run)) => {
                    assert_eq!(run.node, "node-b");
                    run
                }
                (Some(_), Some(_)) => panic!("round {round}: fire {i} claimed twice"),
                (None, None) => panic!("round {round}: fire {i} not claimed"),
            };
            let (j, at) = fires[i];
            assert_eq!((&winner.job, winner.scheduled_at), (&jobs[j], at));
            // Either node reads back what the winner was told.
            assert_eq!(b.get_run(winner.id).await.unwrap().as_ref(), Some(winner));
        }
        let stored = a
            .list_runs(&RunFilter {
                since: Some(base),
                until: Some(base + SignedDuration::from_hours(1)),
                limit: Some(1000),
                ..RunFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(stored.len(), 200, "round {round}: one run per fire");
        for j in jobs.iter() {
            assert_eq!(
                a.last_fire(j).await.unwrap(),
                Some(base + SignedDuration::from_mins(49)),
                "round {round}"
            );
        }
    }

    // A result is recorded only with the run's current fencing token, whichever node sends it.
    let run = a
        .claim_fire(ClaimFire {
            job: &jobs[0],
            scheduled_at: ts("2026-02-01T00:00:00Z"),
            trigger: Trigger::Schedule,
            attempt: 1,
            node: "node-c",
        })
        .await
        .unwrap()
        .unwrap();
    let stale = run.fencing_token ^ 1;
    assert!(!b
        .finish_run(finish(
            run.id,
            stale,
            RunStatus::Succeeded,
            "2026-02-01T00:00:01Z"
        ))
        .await
        .unwrap());
    assert!(a
        .start_run(run.id, run.fencing_token, ts("2026-02-01T00:00:00Z"))
        .await
        .unwrap());
    // Node b takes over from node c, given up for dead: c's token no longer records a result.
    let abandoned = b
        .abandon_runs(Some("node-c"), ts("2026-02-01T00:01:00Z"))
        .await
        .unwrap();
    assert_eq!(abandoned.iter().map(|r| r.id).collect::<Vec<_>>(), [run.id]);
    let retry = b
        .claim_fire(ClaimFire {
            job: &jobs[0],
            scheduled_at: ts("2026-02-01T00:00:00Z"),
            trigger: Trigger::Retry,
            attempt: 2,
            node: "node-b",
        })
        .await
        .unwrap()
        .unwrap();
    assert!(!a
        .finish_run(finish(
            run.id,
            run.fencing_token,
            RunStatus::Succeeded,
            "2026-02-01T00:02:00Z"
        ))
        .await
        .unwrap());
    assert!(!a
        .finish_run(finish(
            retry.id,
            run.fencing_token,
            RunStatus::Succeeded,
            "2026-02-01T00:02:00Z"
        ))
        .await
        .unwrap());
    assert!(b
        .finish_run(finish(
            retry.id,
            retry.fencing_token,
            RunStatus::Failed,
            "2026-02-01T00:02:00Z"
        ))
        .await
        .unwrap());
    assert_eq!(
        a.get_run(run.id).await.unwrap().unwrap().status,
        RunStatus::Abandoned
    );
    assert_eq!(
        a.get_run(retry.id).await.unwrap().unwrap().status,
        RunStatus::Failed
    );
    a.close().await;
    b.close().await;
}

/// Nodes starting together on a new database migrate it once; a store reconnecting later
/// finds its data and migrates nothing.
#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_migrations_run_once_when_nodes_start_together() {
    use cronwarden::store::PostgresStore;
    use sqlx::Connection;

    let Some(database) = pg::TestDatabase::create().await else {
        return;
    };
    let starting: Vec<_> = (0..4)
        .map(|_| {
            let url = database.url.clone();
            tokio::spawn(async move { PostgresStore::connect(&url).await })
        })
        .collect();
    let mut stores = Vec::new();
    for s in starting {
        stores.push(s.await.unwrap().unwrap());
    }
    let mut conn = sqlx::PgConnection::connect(&database.url).await.unwrap();
    let versions: Vec<i32> =
        sqlx::query_scalar("SELECT version FROM schema_version ORDER BY version")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    let expected: Vec<i32> = (1..=cronwarden::store::PostgresStore::SCHEMA_VERSION).collect();
    assert_eq!(versions, expected, "each migration once");
    let store = &stores[0];
    store
        .upsert_job(&job("durable"), ts("2026-01-01T00:00:00Z"))
        .await
        .unwrap();
    let run = store
        .claim_fire(claim(&name("durable"), "2026-01-01T00:05:00Z", 1))
        .await
        .unwrap()
        .unwrap();
    for s in &stores {
        s.close().await;
    }
    let reopened = PostgresStore::connect(&database.url).await.unwrap();
    assert_eq!(
        reopened
            .get_job(&name("durable"))
            .await
            .unwrap()
            .unwrap()
            .version,
        1
    );
    assert_eq!(reopened.get_run(run.id).await.unwrap(), Some(run));
    assert!(reopened
        .claim_fire(claim(&name("durable"), "2026-01-01T00:05:00Z", 1))
        .await
        .unwrap()
        .is_none());
    let versions: Vec<i32> =
        sqlx::query_scalar("SELECT version FROM schema_version ORDER BY version")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    assert_eq!(versions, expected, "reconnecting migrates nothing again");
    let _ = conn.close().await;
    reopened.close().await;
}

/// Every change that moves the sequence is notified, at commit, with the new number; the
/// scheduler's own bookkeeping is not.
#[cfg(feature = "postgres")]
#[tokio::test]
async fn postgres_changes_are_notified() {
    use std::time::Duration;

    use cronwarden::store::PostgresStore;
    use sqlx::postgres::PgListener;

    let Some(database) = pg::TestDatabase::create().await else {
        return;
    };
    let store = PostgresStore::connect(&database.url).await.unwrap();
    let mut listener = PgListener::connect(&database.url).await.unwrap();
    listener
        .listen(PostgresStore::CHANGES_CHANNEL)
        .await
        .unwrap();
    async fn next(listener: &mut PgListener) -> i64 {
        let n = tokio::time::timeout(Duration::from_secs(10), listener.recv())
            .await
            .expect("a notification")
            .unwrap();
        n.payload().parse().unwrap()
    }
    let n = name("noisy");
    let t0 = ts("2026-01-01T00:00:00Z");
    store.upsert_job(&job("noisy"), t0).await.unwrap();
    let created = store.change_seq().await.unwrap();
    assert_eq!(next(&mut listener).await, created);
    // Claims, results and an unchanged definition notify nothing: the next notification is
    // the request's.
    let run = store
        .claim_fire(claim(&n, "2026-01-01T00:05:00Z", 1))
        .await
        .unwrap()
        .unwrap();
    store
        .finish_run(finish(
            run.id,
            run.fencing_token,
            RunStatus::Succeeded,
            "2026-01-01T00:05:01Z",
        ))
        .await
        .unwrap();
    store.upsert_job(&job("noisy"), t0).await.unwrap();
    assert!(store.request_run(&n, "cli", t0).await.unwrap());
    assert_eq!(next(&mut listener).await, created + 1);
    store.set_paused(&n, Some("ops")).await.unwrap();
    assert_eq!(next(&mut listener).await, created + 2);
    store.delete_job(&n).await.unwrap();
    assert_eq!(next(&mut listener).await, created + 3);
    assert_eq!(store.change_seq().await.unwrap(), created + 3);
    store.close().await;
}

/// A claim made while its node is being rescued (by another node's transaction, not yet
/// committed) waits for the rescue and is then refused: the rescue's abandonment cannot have
/// seen runs that the claim would insert after it, so they would be left `queued` for good.
#[tokio::test]
async fn postgres_a_claim_racing_the_rescue_of_its_node_is_refused() {
    use sqlx::Connection;

    let Some((store, database)) = pg::store().await else {
        return;
    };
    let t = |s: &str| ts(&format!("2026-01-01T00:00:{s}Z"));
    let n = name("raced");
    store.upsert_job(&job("raced"), t("00")).await.unwrap();
    assert!(!store.heartbeat("a", t("00"), t("10")).await.unwrap());
    // Another node's rescue of "a", its first step taken and not committed: what
    // `rescue_node` does, on a connection of the test's own so that it can be held open.
    let mut rescuer = sqlx::PgConnection::connect(&database.url).await.unwrap();
    let mut rescue = rescuer.begin().await.unwrap();
    let marked = sqlx::query(
        "UPDATE nodes SET rescued_at = $2 WHERE name = $1 AND lease_until < $2 AND rescued_at IS NULL",
    )
    .bind("a")
    .bind(t("11").as_microsecond())
    .execute(&mut *rescue)
    .await
    .unwrap()
    .rows_affected();
    assert_eq!(marked, 1);
    let claiming = tokio::spawn({
        let store = store.clone();
        let n = n.clone();
        async move {
            let mut late = claim(&n, "2026-01-01T00:00:30Z", 1);
            late.node = "a";
            store.claim_fire(late).await
        }
    });
    // The claim waits on the node's row. An unfenced claim would be done well within these
    // 200 ms (it takes milliseconds); a fenced one cannot finish before the rescue commits.
    let mut waited = 0;
    while !claiming.is_finished() && waited < 20 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        waited += 1;
    }
    assert!(
        !claiming.is_finished(),
        "the claim did not wait for the rescue"
    );
    rescue.commit().await.unwrap();
    let refused = tokio::time::timeout(std::time::Duration::from_secs(10), claiming)
        .await
        .expect("the claim to end once the rescue committed")
        .unwrap();
    assert!(
        matches!(&refused, Err(StoreError::Database(e)) if e.contains("rescued")),
        "{refused:?}"
    );
    let runs = store
        .list_runs(&RunFilter {
            job: Some(n.clone()),
            ..RunFilter::default()
        })
        .await
        .unwrap();
    assert!(runs.is_empty(), "{runs:?}");
    rescuer.close().await.unwrap();
}

/// A run's start recorded while its node is being rescued (the start's transaction not yet
/// committed when the rescue begins) is seen by the rescue as it is once committed: the run is
/// abandoned (it may have begun), neither left `running` for good nor handed to the rescuer
/// as if it had not begun.
#[cfg(feature = "postgres")]
#[tokio::test]
async fn postgres_a_start_racing_the_rescue_of_its_node_is_seen_by_it() {
    use sqlx::Connection;

    let Some((store, database)) = pg::store().await else {
        return;
    };
    let t = |s: &str| ts(&format!("2026-01-01T00:00:{s}Z"));
    let n = name("raced");
    store.upsert_job(&job("raced"), t("00")).await.unwrap();
    assert!(!store.heartbeat("a", t("00"), t("10")).await.unwrap());
    let mut fire = claim(&n, "2026-01-01T00:00:09Z", 1);
    fire.node = "a";
    let run = store.claim_fire(fire).await.unwrap().unwrap();
    // Node "a" records the run's start, on a connection of the test's own so that the write
    // can be held uncommitted: what `start_runs` does.
    let mut node = sqlx::PgConnection::connect(&database.url).await.unwrap();
    let mut start = node.begin().await.unwrap();
    let started = sqlx::query(
        "UPDATE runs SET status = 'running', started_at = $3
         WHERE id = $1 AND fencing_token = $2 AND status = 'queued'",
    )
    .bind(run.id.0)
    .bind(run.fencing_token)
    .bind(t("09").as_microsecond())
    .execute(&mut *start)
    .await
    .unwrap()
    .rows_affected();
    assert_eq!(started, 1);
    let rescuing = tokio::spawn({
        let store = store.clone();
        async move { store.rescue_node("a", "b", t("11")).await }
    });
    let mut waited = 0;
    while !rescuing.is_finished() && waited < 20 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        waited += 1;
    }
    assert!(
        !rescuing.is_finished(),
        "the rescue did not wait for the start"
    );
    start.commit().await.unwrap();
    let rescued = tokio::time::timeout(std::time::Duration::from_secs(10), rescuing)
        .await
        .expect("the rescue to end once the start committed")
        .unwrap()
        .unwrap()
        .expect("node a was dead");
    assert_eq!(rescued.len(), 1, "{rescued:?}");
    assert_eq!(
        (rescued[0].id, rescued[0].status, rescued[0].node.as_str()),
        (run.id, RunStatus::Abandoned, "a")
    );
    assert_eq!(rescued[0].started_at, Some(t("09")));
    node.close().await.unwrap();
}

/// A run's output may hold NUL, which a PostgreSQL `TEXT` cannot: the result is recorded with
/// each NUL replaced (U+FFFD) rather than lost to an error. (SQLite keeps NUL as it is.)
#[cfg(feature = "postgres")]
#[tokio::test]
async fn postgres_keeps_results_whose_output_holds_nul() {
    let Some((store, _db)) = pg::store().await else {
        return;
    };
    let n = name("binary");
    store
        .upsert_job(&job("binary"), ts("2026-01-01T00:00:00Z"))
        .await
        .unwrap();
    let run = store
        .claim_fire(claim(&n, "2026-01-01T00:05:00Z", 1))
        .await
        .unwrap()
        .unwrap();
    let done = FinishRun {
        output: Some("a\0b".into()),
        error: Some("exit\0".into()),
        ..finish(
            run.id,
            run.fencing_token,
            RunStatus::Failed,
            "2026-01-01T00:05:01Z",
        )
    };
    assert!(store.finish_run(done).await.unwrap());
    let stored = store.get_run(run.id).await.unwrap().unwrap();
    assert_eq!(
        (stored.output.as_deref(), stored.error.as_deref()),
        (Some("a\u{fffd}b"), Some("exit\u{fffd}"))
    );
}
