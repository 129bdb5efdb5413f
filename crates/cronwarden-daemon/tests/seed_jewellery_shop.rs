//! The jewellery shop's background tasks (`examples/jewellery-shop`) on a real PostgreSQL: its
//! schema and seed data loaded into a fresh database, its own `cronwarden.toml` run through
//! the scheduler, each job's effect checked.

mod seed_support;

use cronwarden::model::RunStatus;
use seed_support::{example_dir, Engine, Example, TestDatabase};

#[tokio::test]
async fn seed_jewellery_shop_jobs_clean_up_check_and_report_on_postgres() {
    let Some(db) = TestDatabase::create(Engine::Postgres, "cw_shop").await else {
        return;
    };
    let dir = example_dir("jewellery-shop");
    db.load(&dir.join("schema.sql")).await;
    db.load(&dir.join("seed.sql")).await;
    let mut shop =
        Example::start("jewellery-shop", &[("${env:DATABASE_URL}", db.url.clone())]).await;

    // Expired inventory locks go; the live one (a checkout in progress) stays.
    let out = shop.succeeds("cleanup-expired-inventory-locks").await;
    assert_eq!(out, "2 rows affected");
    assert_eq!(
        db.strings("SELECT product_id::text FROM inventory_locks")
            .await,
        ["3"]
    );

    // Low stock is an alert: a failed run, not retried, listing the products.
    let run = shop.run("stock-level-check").await;
    assert_eq!(run.status, RunStatus::Failed);
    assert_eq!(run.attempt, 1);
    assert_eq!(
        run.error.as_deref(),
        Some("2 rows returned (fail_when_rows)")
    );
    let listed = run.output.unwrap();
    assert!(
        listed.contains(r#"{"id":1,"name":"Gold ring","stock":2}"#),
        "{listed}"
    );
    assert!(listed.contains(r#""name":"Silver earrings""#), "{listed}");
    assert!(!listed.contains("Pearl necklace"), "{listed}");

    // Only the payment pending for over 10 minutes is reported.
    let run = shop.run("payment-webhook-timeouts").await;
    assert_eq!(run.status, RunStatus::Failed);
    let listed = run.output.unwrap();
    assert!(listed.contains("order_stale1"), "{listed}");
    assert!(!listed.contains("order_fresh2") && !listed.contains("order_paid01"));

    // Read notifications older than 30 days go; unread and recent ones stay.
    assert_eq!(
        shop.succeeds("cleanup-old-notifications").await,
        "1 row affected"
    );
    assert_eq!(
        db.strings("SELECT message FROM notifications ORDER BY id")
            .await,
        ["Order delivered", "Order confirmed"]
    );

    // Expired reset tokens go, the live one stays.
    assert_eq!(
        shop.succeeds("cleanup-expired-password-resets").await,
        "1 row affected"
    );
    assert_eq!(
        db.strings("SELECT token FROM password_resets").await,
        ["live-token"]
    );

    // Accounts unverified 30 days after sign-up go; verified and recent ones stay.
    assert_eq!(
        shop.succeeds("cleanup-unverified-users").await,
        "1 row affected"
    );
    assert_eq!(
        db.strings("SELECT email FROM users ORDER BY id").await,
        ["asha@example.com", "meera@example.com"]
    );

    // Today's (Asia/Kolkata) PROCESSING, SHIPPED and DELIVERED orders: not the pending one,
    // nor yesterday's delivery.
    let report = shop.succeeds("daily-sales-report").await;
    assert!(
        report.ends_with(r#"{"orders":2,"total_amount":"1500.00"}"#),
        "{report}"
    );

    // Run again, the cleanups find nothing left to do.
    assert_eq!(
        shop.succeeds("cleanup-expired-inventory-locks").await,
        "0 rows affected"
    );
    shop.stop().await;
    db.drop().await;
}
