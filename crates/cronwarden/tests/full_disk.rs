//! A full disk under the SQLite store, for real (a small tmpfs, filled and freed): writes fail
//! while it is full, and once space is freed every write succeeds again, without a restart.

use std::sync::Arc;

use cronwarden::model::{Action, JobName, JobSpec, RunStatus, Trigger};
use cronwarden::store::{ClaimFire, FinishRun, SqliteStore, Store};
use cronwarden_test_support::SmallDisk;
use jiff::Timestamp;

fn job(n: &str) -> JobSpec {
    JobSpec::new(
        JobName::new(n).unwrap(),
        Some("* * * * *"),
        Action::Command {
            argv: vec!["true".into()],
            env: Default::default(),
            cwd: None,
            inherit_env: Vec::new(),
        },
    )
}

#[tokio::test]
async fn store_writes_again_once_a_full_disk_has_room() {
    let Some(disk) = SmallDisk::mount("full-disk-store", 4 << 20) else {
        return;
    };
    let path = disk.path().join("cronwarden.db");
    let store = Arc::new(SqliteStore::open(path.to_str().unwrap()).await.unwrap());
    let spec = job("report");
    let t0 = Timestamp::now();
    store.upsert_job(&spec, t0).await.unwrap();

    disk.fill();
    // Writes fail while the disk is full; each with a bigger payload than the last, so that
    // one of them needs a page SQLite does not have.
    let mut failed = 0;
    for i in 0..50 {
        let claim = ClaimFire {
            job: &spec.name,
            scheduled_at: t0 + jiff::SignedDuration::from_secs(i),
            trigger: Trigger::Schedule,
            attempt: 1,
            node: "local",
        };
        if store.claim_fire(claim).await.is_err() {
            failed += 1;
        }
    }
    assert!(failed > 0, "no write failed on a full disk");

    disk.free();
    // Every kind of write works again, at once.
    let at = t0 + jiff::SignedDuration::from_secs(3600);
    let claim = ClaimFire {
        job: &spec.name,
        scheduled_at: at,
        trigger: Trigger::Schedule,
        attempt: 1,
        node: "local",
    };
    let run = store
        .claim_fire(claim)
        .await
        .expect("a claim once the disk has room")
        .expect("a new fire");
    let finished = store
        .finish_run(FinishRun {
            id: run.id,
            fencing_token: run.fencing_token,
            status: RunStatus::Succeeded,
            started_at: Some(at),
            finished_at: at,
            exit_code: Some(0),
            error: None,
            output: Some("x".repeat(10_000)),
        })
        .await
        .expect("a result once the disk has room");
    assert!(finished);
    store
        .upsert_job(&job("another"), at)
        .await
        .expect("a job once the disk has room");
}
