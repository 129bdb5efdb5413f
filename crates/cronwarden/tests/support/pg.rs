//! PostgreSQL databases of their own for tests.
use std::ops::Deref;
use std::sync::Arc;

use cronwarden::store::PostgresStore;
use cronwarden_test_support::PgDatabase;

/// A database of its own for one test, dropped (best effort) when this is.
pub struct TestDatabase(PgDatabase);

impl TestDatabase {
    /// A new empty database, or `None` (after saying so) when there is no server to
    /// test against; under `CI=true` a missing server fails the test instead.
    pub async fn create() -> Option<TestDatabase> {
        PgDatabase::create("cw_store").map(TestDatabase)
    }
}

impl Deref for TestDatabase {
    type Target = PgDatabase;

    fn deref(&self) -> &PgDatabase {
        &self.0
    }
}

/// A store on a database of its own, with the database's guard.
pub async fn store() -> Option<(Arc<PostgresStore>, TestDatabase)> {
    let database = TestDatabase::create().await?;
    let store = PostgresStore::connect(&database.url).await.unwrap();
    Some((Arc::new(store), database))
}
