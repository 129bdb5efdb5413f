//! The CRM's presence and maintenance jobs (`examples/crm-presence`) on a real PostgreSQL: its
//! schema and seed data loaded into a fresh database, its own `cronwarden.toml` run through
//! the scheduler, each job's effect checked (the two jobs disabled as in the seed included:
//! a trigger runs them all the same).

mod seed_support;

use seed_support::{example_dir, Engine, Example, TestDatabase};

#[tokio::test]
async fn seed_crm_presence_jobs_mark_offline_clean_up_and_sync_on_postgres() {
    let Some(db) = TestDatabase::create(Engine::Postgres, "cw_crm").await else {
        return;
    };
    let dir = example_dir("crm-presence");
    db.load(&dir.join("schema.sql")).await;
    db.load(&dir.join("seed.sql")).await;
    let mut crm = Example::start("crm-presence", &[("${env:DATABASE_URL}", db.url.clone())]).await;
    // Only the triggered runs below: a scheduled fire of the presence job (every 5 minutes)
    // falling inside the test would run it, or be skipped, in between.
    crm.scheduler.pause_firing();

    // The seed's inactive jobs stay disabled; only the presence job runs on its schedule.
    let enabled: Vec<(&str, bool)> = crm
        .config
        .jobs
        .iter()
        .map(|job| (job.name.as_str(), job.enabled))
        .collect();
    assert_eq!(
        enabled,
        [
            ("mark-users-offline", true),
            ("clean-old-activities", false),
            ("sync-denormalized-fields", false),
        ]
    );

    // Users and employees without a sign of life for over 5 minutes go offline: ada (heartbeat
    // 10 minutes ago), cy (logged in 20 minutes ago, no heartbeat since), frank (30 minutes).
    // The recently active stay online, whenever they logged in; the offline are not touched.
    assert_eq!(crm.succeeds("mark-users-offline").await, "3 rows affected");
    assert_eq!(
        db.strings(
            "SELECT email FROM users WHERE metadata->>'live_status' = 'offline' ORDER BY email"
        )
        .await,
        ["ada@example.com", "cy@example.com", "dee@example.com"]
    );
    assert_eq!(
        db.strings(
            "SELECT email FROM users WHERE metadata->>'live_status' = 'online' ORDER BY email"
        )
        .await,
        ["ben@example.com", "eli@example.com"]
    );
    assert_eq!(
        db.count("SELECT count(*) FROM users WHERE metadata = '{}'")
            .await,
        1,
        "fay, who never logged in, keeps empty metadata"
    );
    assert_eq!(
        db.strings(
            "SELECT email || ' ' || (metadata->>'live_status') FROM employees ORDER BY email"
        )
        .await,
        [
            "frank@acme.example offline",
            "gina@acme.example online",
            "sam@beta.example offline",
        ]
    );
    // The rest of the metadata is kept (merged, not replaced), and only the changed rows are
    // marked as updated.
    assert_eq!(
        db.strings(
            "SELECT (metadata->>'account_status') || ' ' || (metadata->>'last_seen' IS NOT NULL)::text \
             FROM users WHERE email = 'ada@example.com'"
        )
        .await,
        ["active true"]
    );
    assert_eq!(
        db.strings(
            "SELECT email FROM users WHERE updated_at > now() - interval '1 hour' ORDER BY email"
        )
        .await,
        ["ada@example.com", "cy@example.com"]
    );
    assert_eq!(
        db.strings("SELECT email FROM employees WHERE updated_at > now() - interval '1 hour'")
            .await,
        ["frank@acme.example"]
    );
    // Nobody else went stale in the meantime: the next run changes nothing.
    assert_eq!(crm.succeeds("mark-users-offline").await, "0 rows affected");

    // Activities older than 365 days go, in batches; the 364-day-old one and recent ones stay.
    assert_eq!(
        crm.succeeds("clean-old-activities").await,
        "3 rows affected in 2 batches (at most 3 in one)"
    );
    assert_eq!(
        db.strings("SELECT subject FROM activities ORDER BY created_at")
            .await,
        ["Quarterly review", "Follow-up call", "Demo meeting"]
    );
    assert_eq!(
        crm.succeeds("clean-old-activities").await,
        "0 rows affected in 1 batch (at most 0 in one)"
    );

    // Account and assignee names are copied where they differ: Carla's account name and
    // assignee, Lou's account name and outdated assignee name, the Acme renewal's account
    // name, the follow-up call's assignee. An assignee who is no employee of the record's
    // tenant, and a record without an account, keep what they have.
    assert_eq!(
        crm.succeeds("sync-denormalized-fields").await,
        "6 rows affected"
    );
    assert_eq!(
        db.strings(
            "SELECT concat_ws(' | ', first_name, account_name, assigned_to_name) \
             FROM contacts ORDER BY first_name"
        )
        .await,
        [
            "Carla | Acme Corporation | Frank Castle",
            "Dan | Globex | Former Rep",
            "Eva",
        ]
    );
    assert_eq!(
        db.strings(
            "SELECT concat_ws(' | ', first_name, account_name, assigned_to_name) FROM leads"
        )
        .await,
        ["Lou | Acme Corporation | Gina Torres"]
    );
    assert_eq!(
        db.strings(
            "SELECT concat_ws(' | ', name, account_name, assigned_to_name) \
             FROM opportunities ORDER BY name"
        )
        .await,
        [
            "Acme renewal | Acme Corporation | Frank Castle",
            "Globex pilot | Globex | Gina Torres",
        ]
    );
    assert_eq!(
        db.strings(
            "SELECT concat_ws(' | ', subject, coalesce(assigned_to_name, '-')) \
             FROM activities ORDER BY created_at"
        )
        .await,
        [
            "Quarterly review | Frank Castle",
            "Follow-up call | Gina Torres",
            "Demo meeting | -",
        ]
    );
    assert_eq!(
        db.strings("SELECT first_name FROM contacts WHERE updated_at > now() - interval '1 hour'")
            .await,
        ["Carla"]
    );
    assert_eq!(
        db.strings("SELECT name FROM opportunities WHERE updated_at > now() - interval '1 hour'")
            .await,
        ["Acme renewal"]
    );
    assert_eq!(
        crm.succeeds("sync-denormalized-fields").await,
        "0 rows affected"
    );

    crm.stop().await;
    db.drop().await;
}
