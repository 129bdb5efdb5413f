//! The cronwarden daemon as a library: its configuration file, its store (SQLite or
//! PostgreSQL) and its HTTP API, so that tests (and programs embedding the daemon) can build the
//! same app the binary serves.

pub mod api;
pub mod config;
pub mod lock;
pub mod store;
