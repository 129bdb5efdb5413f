//! The HTTP API: `/api/v1` (JSON, bearer tokens with roles), `/healthz` and `/readyz`.
//!
//! Routes are registered through `utoipa-axum`, which builds the OpenAPI document from the
//! same handler annotations: the document served at `/api/v1/openapi.json` cannot drift from
//! the routes.

mod auth;
mod error;
mod routes;

use std::sync::Arc;

use axum::Router;
use cronwarden::scheduler::Scheduler;
use cronwarden::store::Store;
use jiff::Timestamp;
use utoipa::openapi::OpenApi;
use utoipa_axum::router::OpenApiRouter;

pub use self::auth::{hash_token, new_token};

/// What every handler can reach.
pub struct AppState {
    /// The running scheduler.
    pub scheduler: Scheduler,
    /// The store it uses: SQLite or PostgreSQL.
    pub store: Arc<dyn Store>,
    /// This node's name.
    pub node: String,
    /// When the daemon started.
    pub started_at: Timestamp,
    /// The API's own OpenAPI document, served to callers with a token.
    pub openapi: std::sync::OnceLock<OpenApi>,
    /// Renders the metrics at `/metrics`.
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
    /// Whether `/metrics` is served without a token.
    pub metrics_public: bool,
    /// Job pages as rendered, reused while they still hold.
    pub job_pages: PageCache,
}

/// Rendered pages of `GET /api/v1/jobs`, each reused while nothing it shows can have changed:
/// the same store change number and timetable version (no job created, changed, paused or
/// deleted, here or by another process) and no job on the page past the next fire it shows.
/// A dashboard polling the same page then costs one one-row read per request.
#[derive(Default)]
pub struct PageCache {
    pages: std::sync::Mutex<std::collections::HashMap<String, CachedPage>>,
}

struct CachedPage {
    seq: i64,
    timetable: u64,
    until: Option<Timestamp>,
    body: axum::body::Bytes,
}

/// Pages kept; past this the cache starts over (pages are cheap to render again).
const CACHED_PAGES: usize = 256;

impl PageCache {
    /// The page stored under `key`, if it still holds.
    pub(crate) fn get(
        &self,
        key: &str,
        seq: i64,
        timetable: u64,
        now: Timestamp,
    ) -> Option<axum::body::Bytes> {
        let pages = self.pages.lock().unwrap();
        let page = pages.get(key)?;
        let fresh = page.seq == seq
            && page.timetable == timetable
            && page.until.is_none_or(|until| now < until);
        fresh.then(|| page.body.clone())
    }

    pub(crate) fn put(
        &self,
        key: String,
        seq: i64,
        timetable: u64,
        until: Option<Timestamp>,
        body: axum::body::Bytes,
    ) {
        let mut pages = self.pages.lock().unwrap();
        if pages.len() >= CACHED_PAGES && !pages.contains_key(&key) {
            pages.clear();
        }
        pages.insert(
            key,
            CachedPage {
                seq,
                timetable,
                until,
                body,
            },
        );
    }
}

/// The process's Prometheus recorder, installed on first use: every metric the engine emits
/// through the `metrics` facade from then on is kept and rendered at `/metrics`.
pub fn metrics() -> metrics_exporter_prometheus::PrometheusHandle {
    static HANDLE: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> =
        std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let seconds = [
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                60.0, 300.0, 900.0, 3600.0,
            ];
            let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
                .set_buckets(&seconds)
                .expect("bucket bounds are given")
                .install_recorder()
                .expect("no other metrics recorder is installed in this process");
            describe_metrics();
            handle
        })
        .clone()
}

fn describe_metrics() {
    use metrics::Unit;
    metrics::describe_counter!(
        "cronwarden_fires_claimed_total",
        "Scheduled fires this node claimed (each fire is claimed once across nodes)"
    );
    metrics::describe_counter!(
        "cronwarden_runs_total",
        "Runs that reached a final status, by job and status (succeeded, failed, timed_out, skipped, missed, interrupted, abandoned)"
    );
    metrics::describe_counter!("cronwarden_retries_total", "Retry attempts claimed, by job");
    metrics::describe_histogram!(
        "cronwarden_run_duration_seconds",
        Unit::Seconds,
        "How long runs took, by job"
    );
    metrics::describe_histogram!(
        "cronwarden_run_lateness_seconds",
        Unit::Seconds,
        "A run's start minus its scheduled instant"
    );
    metrics::describe_gauge!("cronwarden_runs_running", "Runs executing now");
    metrics::describe_gauge!(
        "cronwarden_runs_waiting",
        "Runs queued behind the run before them (overlap = queue): the queue depth"
    );
    metrics::describe_histogram!(
        "cronwarden_store_seconds",
        Unit::Seconds,
        "Store operations' latency, by operation (claim, record)"
    );
}

/// The API's routes and its OpenAPI document.
pub fn router(state: AppState) -> (Router, OpenApi) {
    let state = Arc::new(state);
    let (app, mut doc) = OpenApiRouter::new()
        .merge(routes::routes())
        .with_state(state.clone())
        .split_for_parts();
    doc.info.title = "cronwarden".to_owned();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc.info.description = Some(
        "Scheduled jobs: their definitions, runs and the scheduler. Every route except \
         /healthz needs `Authorization: Bearer <token>`."
            .to_owned(),
    );
    doc.components
        .get_or_insert_with(Default::default)
        .add_security_scheme(
            "bearer",
            utoipa::openapi::security::SecurityScheme::Http(
                utoipa::openapi::security::HttpBuilder::new()
                    .scheme(utoipa::openapi::security::HttpAuthScheme::Bearer)
                    .build(),
            ),
        );
    let _ = state.openapi.set(doc.clone());
    (app, doc)
}
