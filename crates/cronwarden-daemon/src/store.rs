//! The store the daemon and the CLI use: SQLite or PostgreSQL, as `settings.database` (or
//! `CRONWARDEN_DATABASE_URL`) says.
//!
//! Everything but opening and closing goes through the engine's [`Store`] trait, so the rest of
//! the daemon holds an `Arc<dyn Store>` ([`AnyStore::shared`]) and does not know which it is.

use std::ops::Deref;
use std::sync::Arc;

use cronwarden::store::{PostgresStore, SqliteStore, Store};

use crate::config::{is_postgres_url, redact_url_password, url_passwords};

/// An open store of either kind.
#[derive(Clone, Debug)]
pub enum AnyStore {
    /// A SQLite file: one node.
    Sqlite(Arc<SqliteStore>),
    /// A PostgreSQL database, which several nodes may share.
    Postgres(Arc<PostgresStore>),
}

/// Why a store could not be opened: the message names the database (any password in it
/// redacted) and holds no password.
#[derive(Debug)]
pub struct OpenError(String);

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for OpenError {}

impl AnyStore {
    /// Opens the store `database` names: a `postgres://` or `postgresql://` URL connects to
    /// PostgreSQL, anything else is a SQLite file (created if missing). Either is migrated.
    pub async fn open(database: &str) -> Result<AnyStore, OpenError> {
        let opened = if is_postgres_url(database) {
            PostgresStore::connect(database)
                .await
                .map(|store| AnyStore::Postgres(Arc::new(store)))
        } else {
            SqliteStore::open(database)
                .await
                .map(|store| AnyStore::Sqlite(Arc::new(store)))
        };
        opened.map_err(|e| {
            OpenError(format!(
                "cannot open the database {:?}: {}",
                redact_url_password(database),
                scrub(&e.to_string(), database)
            ))
        })
    }

    /// The store, to share with the scheduler and the API.
    pub fn shared(&self) -> Arc<dyn Store> {
        match self {
            AnyStore::Sqlite(store) => store.clone(),
            AnyStore::Postgres(store) => store.clone(),
        }
    }

    /// `"sqlite"` or `"postgres"`.
    pub fn kind(&self) -> &'static str {
        match self {
            AnyStore::Sqlite(_) => "sqlite",
            AnyStore::Postgres(_) => "postgres",
        }
    }

    /// Closes the store's connections, waiting for those in use to be returned.
    pub async fn close(&self) {
        match self {
            AnyStore::Sqlite(store) => store.close().await,
            AnyStore::Postgres(store) => store.close().await,
        }
    }
}

impl Deref for AnyStore {
    type Target = dyn Store;

    fn deref(&self) -> &(dyn Store + 'static) {
        match self {
            AnyStore::Sqlite(store) => &**store,
            AnyStore::Postgres(store) => &**store,
        }
    }
}

/// `message` with every password of the database URL `database` cut out, as written and
/// percent-decoded: a driver's message should not hold one, but it is not ours to promise.
fn scrub(message: &str, database: &str) -> String {
    let mut out = message.to_owned();
    for password in url_passwords(database) {
        for form in [password.to_owned(), percent_decoded(password)] {
            if !form.is_empty() && out.contains(&form) {
                out = out.replace(&form, "[redacted]");
            }
        }
    }
    out
}

fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_lose_the_password_as_written_and_decoded() {
        let url = "postgres://app:p%40ss-w0rd@db:5432/cw?password=other-secret";
        assert_eq!(
            scrub("auth failed: p@ss-w0rd / p%40ss-w0rd / other-secret", url),
            "auth failed: [redacted] / [redacted] / [redacted]"
        );
        assert_eq!(scrub("no secrets here", "state.db"), "no secrets here");
    }

    #[tokio::test]
    async fn a_file_path_opens_sqlite() {
        let dir = cronwarden_test_support::TestDir::new("anystore");
        let path = dir.join("state.db");
        let store = AnyStore::open(path.to_str().unwrap()).await.unwrap();
        assert_eq!(store.kind(), "sqlite");
        assert!(store.list_jobs().await.unwrap().is_empty());
        assert!(store.shared().list_tokens().await.unwrap().is_empty());
        store.close().await;
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn an_unreachable_postgres_is_an_error_without_the_password() {
        // Port 1: nothing listens there.
        let url = "postgres://cw:hunter2-not-real@127.0.0.1:1/cw";
        let e = AnyStore::open(url).await.unwrap_err().to_string();
        assert!(
            e.starts_with("cannot open the database \"postgres://cw:[redacted]@127.0.0.1:1/cw\": "),
            "{e}"
        );
        assert!(!e.contains("hunter2"), "{e}");
    }
}
