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
use cronwarden::store::SqliteStore;
use jiff::Timestamp;
use utoipa::openapi::OpenApi;
use utoipa_axum::router::OpenApiRouter;

pub use self::auth::{hash_token, new_token};

/// What every handler can reach.
pub struct AppState {
    /// The running scheduler.
    pub scheduler: Scheduler,
    /// The store it uses.
    pub store: Arc<SqliteStore>,
    /// This node's name.
    pub node: String,
    /// When the daemon started.
    pub started_at: Timestamp,
    /// The API's own OpenAPI document, served to callers with a token.
    pub openapi: std::sync::OnceLock<OpenApi>,
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
