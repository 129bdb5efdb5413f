//! # cronwarden
//!
//! The engine of cronwarden, a cron manager that runs scheduled jobs reliably. This crate is
//! what an application embeds; the `cronwarden` binary (the daemon, its HTTP API and its CLI)
//! lives in the `cronwarden-daemon` crate and is built on top of it.
//!
//! ## Layout
//!
//! - [`schedule`]: cron expressions and intervals, parsed into a compact form, and the
//!   computation of fire instants in any IANA time zone with explicit daylight-saving rules.
//! - [`clock`]: the time as the scheduler sees it, with a test clock that tests advance.
//! - [`executor`]: what runs an action: commands (in their own process group), HTTP calls,
//!   SQL and Rust code.
//! - [`secret`]: `${env:NAME}` and `${file:PATH}` references, resolved per run and redacted.
//! - [`model`]: jobs, their policies and actions, and the runs they produce.
//! - [`scheduler`]: the loop that fires jobs on time and runs them under their policies.
//! - [`store`]: persistence behind one trait; SQLite embedded by default.
//!
//! ```
//! use cronwarden::schedule::Schedule;
//! use jiff::Timestamp;
//!
//! let schedule = Schedule::parse("*/15 9-17 * * MON-FRI")?;
//! let after: Timestamp = "2026-11-20T17:50:00Z".parse()?; // a Friday
//! assert_eq!(schedule.next_after(after).unwrap().to_string(), "2026-11-23T09:00:00Z");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod clock;
pub mod executor;
pub mod model;
pub mod schedule;
pub mod scheduler;
pub mod secret;
pub mod store;
