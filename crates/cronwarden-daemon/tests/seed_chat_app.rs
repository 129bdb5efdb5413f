//! The chat app's cron jobs (`examples/chat-app`) on a real MariaDB: its schema and seed data
//! loaded into a fresh database, its own `cronwarden.toml` run through the scheduler, each
//! job's effect checked.

mod seed_support;

use cronwarden::model::RunStatus;
use seed_support::{example_dir, Engine, Example, TestDatabase};

const ACTIVE: &str =
    "SELECT phone_number FROM legacy_conversation_states WHERE is_active ORDER BY id";
const INACTIVE: &str =
    "SELECT phone_number FROM legacy_conversation_states WHERE NOT is_active ORDER BY id";
/// The states whose updated_at moved past their created_at: those a run changed (the seed
/// data has updated_at = created_at everywhere).
const TOUCHED: &str =
    "SELECT phone_number FROM legacy_conversation_states WHERE updated_at > created_at ORDER BY id";

#[tokio::test]
async fn seed_chat_app_jobs_deactivate_old_conversations_on_mariadb() {
    let Some(db) = TestDatabase::create(Engine::MariaDb, "cw_chat").await else {
        return;
    };
    let dir = example_dir("chat-app");
    db.load(&dir.join("schema.sql")).await;
    db.load(&dir.join("seed.sql")).await;
    let mut chat = Example::start("chat-app", &[("${env:DATABASE_URL}", db.url.clone())]).await;

    // The seed's three schedules; the two it never registered are declared paused.
    let declared: Vec<(&str, bool)> = chat
        .config
        .jobs
        .iter()
        .map(|job| (job.name.as_str(), job.enabled))
        .collect();
    assert_eq!(
        declared,
        [
            ("cleanup-legacy-conversations", true),
            ("cleanup-old-quotes", false),
            ("health-check", false),
        ]
    );

    // Active states created over 10 minutes ago are deactivated, with updated_at set to now
    // (UTC); recent ones stay active, and the one already inactive is not touched.
    assert_eq!(
        chat.succeeds("cleanup-legacy-conversations").await,
        "2 rows affected"
    );
    assert_eq!(db.strings(ACTIVE).await, ["+14155550103", "+14155550104"]);
    assert_eq!(
        db.strings(INACTIVE).await,
        ["+14155550101", "+14155550102", "+14155550105"]
    );
    assert_eq!(db.strings(TOUCHED).await, ["+14155550101", "+14155550102"]);
    assert_eq!(
        db.count(
            "SELECT COUNT(*) FROM legacy_conversation_states
              WHERE updated_at > created_at
                AND updated_at BETWEEN UTC_TIMESTAMP(3) - INTERVAL 1 MINUTE AND UTC_TIMESTAMP(3)"
        )
        .await,
        2
    );
    assert_eq!(
        db.count(
            "SELECT COUNT(*) FROM legacy_conversation_states
              WHERE phone_number = '+14155550105'
                AND updated_at < UTC_TIMESTAMP(3) - INTERVAL 1 DAY"
        )
        .await,
        1
    );

    // Run again, nothing is left to deactivate and nothing changes.
    assert_eq!(
        chat.succeeds("cleanup-legacy-conversations").await,
        "0 rows affected"
    );
    assert_eq!(db.strings(ACTIVE).await, ["+14155550103", "+14155550104"]);
    assert_eq!(db.strings(TOUCHED).await, ["+14155550101", "+14155550102"]);

    // The seed never says which quotes are old: the placeholder fails, once (no retry could
    // fix it), with its message, and changes nothing.
    let run = chat.run("cleanup-old-quotes").await;
    assert_eq!(run.status, RunStatus::Failed);
    assert_eq!(run.attempt, 1);
    let error = run.error.unwrap_or_default();
    assert!(
        error.contains("cleanup-old-quotes: no cleanup defined yet"),
        "{error}"
    );
    assert_eq!(db.strings(ACTIVE).await, ["+14155550103", "+14155550104"]);
    assert_eq!(db.strings(TOUCHED).await, ["+14155550101", "+14155550102"]);
    assert_eq!(
        db.count("SELECT COUNT(*) FROM legacy_conversation_states")
            .await,
        5
    );

    // The health check pings the database: it succeeds while MariaDB answers...
    assert_eq!(
        chat.succeeds("health-check").await,
        "1 row returned\n{\"ok\":1}"
    );
    chat.stop().await;

    // ...and fails, without retries, when the database is not there.
    let missing = match db.url.split_once('?') {
        Some((base, query)) => format!("{base}_missing?{query}"),
        None => format!("{}_missing", db.url),
    };
    let mut gone = Example::start("chat-app", &[("${env:DATABASE_URL}", missing)]).await;
    let run = gone.run("health-check").await;
    assert_eq!(run.status, RunStatus::Failed, "{:?}", run.output);
    assert_eq!(run.attempt, 1);
    let error = run.error.unwrap_or_default();
    assert!(error.contains("Unknown database"), "{error}");
    gone.stop().await;

    db.drop().await;
}
