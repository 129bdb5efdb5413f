//! The handlers. Each declares its route, parameters and responses for the OpenAPI document
//! in its `#[utoipa::path]`, and the role it needs in its first line.

use std::str::FromStr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use cronwarden::model::{limits, JobName, JobSpec, Role, Run, RunId, RunStatus, Trigger};
use cronwarden::store::{JobFilter, JobRecord, NewAudit, RunFilter};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Caller;
use super::error::{body_rejection, ApiError, Body, Path, Problem, Query};
use super::AppState;

type Shared = State<Arc<AppState>>;

pub(super) fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(openapi))
        .routes(routes!(list_jobs, create_job))
        .routes(routes!(get_job, put_job, patch_job, delete_job))
        .routes(routes!(next_fires))
        .routes(routes!(trigger_job))
        .routes(routes!(pause_job))
        .routes(routes!(resume_job))
        .routes(routes!(job_runs))
        .routes(routes!(job_stats))
        .routes(routes!(list_runs))
        .routes(routes!(get_run))
        .routes(routes!(cancel_run))
        .routes(routes!(scheduler_state))
        .routes(routes!(pause_scheduler))
        .routes(routes!(resume_scheduler))
        .routes(routes!(list_audit))
        .routes(routes!(events))
        .routes(routes!(prometheus))
}

/// Liveness: the process answers. No token needed.
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "alive", body = Health)))]
async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// Health.
#[derive(Serialize, ToSchema)]
struct Health {
    /// `ok`.
    status: &'static str,
}

/// Readiness: the store answers and takes writes, the scheduler's loop runs.
#[utoipa::path(get, path = "/readyz", tag = "health", security(("bearer" = [])), extensions(("x-required-role" = json!("viewer"))),
    responses(
        (status = 200, description = "ready", body = Readiness),
        (status = 401, description = "no valid token", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "not ready", body = Readiness),
    ))]
async fn readyz(_caller: Caller, State(state): Shared) -> (StatusCode, Json<Readiness>) {
    let started = Timestamp::now();
    let store = state.store.change_seq().await;
    let latency_ms = Timestamp::now().duration_since(started).as_secs_f64() * 1000.0;
    let health = state.scheduler.health();
    // A store that answers reads may still refuse every write (a full disk): what the
    // scheduler's latest writes found counts too.
    let ready = store.is_ok()
        && health.store_writes_failing.is_none()
        && health.loop_running
        && health.recovered;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(Readiness {
            ready,
            store: store
                .map(|_| "ok".to_owned())
                .unwrap_or_else(|e| e.to_string()),
            store_latency_ms: latency_ms,
            loop_running: health.loop_running,
            recovered: health.recovered,
            loop_lag_ms: health.loop_lag.as_secs_f64() * 1000.0,
            store_writes: match &health.store_writes_failing {
                None => "ok".to_owned(),
                Some(failure) => format!("failing since {}: {}", failure.since, failure.error),
            },
            unwritten_results: health.unwritten_results,
        }),
    )
}

/// Readiness.
#[derive(Serialize, ToSchema)]
struct Readiness {
    /// Whether the daemon can serve and fire: the store answers, the loop runs and has
    /// finished its start-up recovery.
    ready: bool,
    /// `ok`, or the store's error.
    store: String,
    /// How long a one-row read of the store took.
    store_latency_ms: f64,
    /// Whether the scheduler's loop is running.
    loop_running: bool,
    /// Whether the start-up recovery is over.
    recovered: bool,
    /// How late the loop last woke for a deadline.
    loop_lag_ms: f64,
    /// `ok` when the scheduler's latest write to the store (a claim, a start, a result) went
    /// through; otherwise since when writes fail, and why.
    store_writes: String,
    /// Run results held in memory until the store takes them.
    unwritten_results: u64,
}

/// This API's OpenAPI 3.1 document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "meta", security(("bearer" = [])), extensions(("x-required-role" = json!("viewer"))),
    responses(
        (status = 200, description = "the document", body = Object),
        (status = 401, description = "no valid token", body = Problem, content_type = "application/problem+json"),
    ))]
async fn openapi(_caller: Caller, State(state): Shared) -> Json<serde_json::Value> {
    Json(serde_json::to_value(state.openapi.get()).unwrap_or_default())
}

/// A job as the API shows it.
#[derive(Serialize, ToSchema)]
struct JobView {
    /// The job's unique name.
    name: String,
    /// Whether it fires: its definition enables it and no operator paused it.
    enabled: bool,
    /// The operator's pause reason, when paused through the API or CLI.
    paused: Option<String>,
    /// The definition, as stored.
    #[schema(value_type = Object)]
    spec: Box<serde_json::value::RawValue>,
    /// Increases with every change to the definition.
    version: i64,
    /// When the job was created.
    created_at: String,
    /// When its definition last changed.
    updated_at: String,
    /// Its next fire, when it has one.
    next_fire: Option<String>,
}

impl JobView {
    /// From a listed job, its definition passed on as stored, unparsed.
    fn summary(
        job: cronwarden::store::JobSummary,
        next_fire: Option<Timestamp>,
    ) -> Result<JobView, ApiError> {
        // Stored definitions are passed on unparsed, except those that may hold a literal
        // credential (an HTTP call, a command with variables), which are shown redacted.
        let may_hold_credentials = job.spec_json.contains(r#""type":"http""#)
            || (job.spec_json.contains(r#""type":"command""#)
                && !job.spec_json.contains(r#""env":{}"#));
        let spec_json = if may_hold_credentials {
            let spec: JobSpec = serde_json::from_str(&job.spec_json).map_err(|e| {
                ApiError::store(cronwarden::store::StoreError::Corrupt(format!(
                    "job {}: {e}",
                    job.name
                )))
            })?;
            serde_json::to_string(&shown(&spec)).expect("a job definition serializes")
        } else {
            job.spec_json
        };
        let spec = serde_json::value::RawValue::from_string(spec_json).map_err(|e| {
            ApiError::store(cronwarden::store::StoreError::Corrupt(format!(
                "job {}: {e}",
                job.name
            )))
        })?;
        Ok(JobView {
            name: job.name.to_string(),
            enabled: job.enabled,
            paused: job.paused,
            spec,
            version: job.version,
            created_at: job.created_at.to_string(),
            updated_at: job.updated_at.to_string(),
            next_fire: next_fire.map(|t| t.to_string()),
        })
    }

    fn new(record: &JobRecord, next_fire: Option<Timestamp>) -> JobView {
        JobView {
            name: record.spec.name.to_string(),
            enabled: record.spec.enabled && record.paused.is_none(),
            paused: record.paused.clone(),
            spec: serde_json::value::to_raw_value(&shown(&record.spec))
                .expect("a job definition serializes"),
            version: record.version,
            created_at: record.created_at.to_string(),
            updated_at: record.updated_at.to_string(),
            next_fire: next_fire.map(|t| t.to_string()),
        }
    }
}

/// A definition as responses show it: literal credentials redacted (see
/// [`cronwarden::secret::redact_action`]).
fn shown(spec: &JobSpec) -> JobSpec {
    let mut shown = spec.clone();
    shown.action = cronwarden::secret::redact_action(&spec.action);
    shown
}

/// A page of jobs.
#[derive(Serialize, ToSchema)]
struct JobPage {
    /// The jobs, by name.
    jobs: Vec<JobView>,
    /// Pass as `after` for the next page; absent on the last page.
    next: Option<String>,
}

/// Which jobs to list.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct JobQuery {
    /// Only enabled (`true`) or paused (`false`) jobs.
    enabled: Option<bool>,
    /// Only jobs with this tag.
    tag: Option<String>,
    /// Only jobs whose name or description contains this text.
    q: Option<String>,
    /// Jobs whose names sort after this one (the previous page's `next`).
    after: Option<String>,
    /// At most this many (1-1000, default 100).
    limit: Option<u32>,
}

fn limit(value: Option<u32>) -> Result<usize, ApiError> {
    match value {
        None => Ok(100),
        Some(n @ 1..=1000) => Ok(n as usize),
        Some(n) => Err(ApiError::invalid(
            "limit",
            format!("limit must be 1-1000, got {n}"),
        )),
    }
}

fn job_name(name: &str) -> Result<JobName, ApiError> {
    JobName::new(name).map_err(|e| ApiError::invalid("name", e.to_string()))
}

/// The jobs, filtered and paginated by name.
#[utoipa::path(get, path = "/api/v1/jobs", tag = "jobs", params(JobQuery), security(("bearer" = [])), extensions(("x-required-role" = json!("viewer"))),
    responses(
        (status = 200, description = "a page of jobs", body = JobPage),
        (status = 400, description = "invalid parameter", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "no valid token", body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_jobs(
    caller: Caller,
    State(state): Shared,
    Query(query): Query<JobQuery>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    caller.require(Role::Viewer)?;
    let limit = limit(query.limit)?;
    // Read before the page: a change made while it renders makes the cached copy stale
    // rather than hiding the change.
    let seq = state.store.change_seq().await.map_err(ApiError::store)?;
    let timetable = state.scheduler.timetable_version();
    let key = format!(
        "{:?}|{:?}|{:?}|{:?}|{limit}",
        query.enabled, query.tag, query.q, query.after
    );
    let json = [(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    )];
    if let Some(body) = state.job_pages.get(&key, seq, timetable, Timestamp::now()) {
        return Ok((json, body).into_response());
    }
    let filter = JobFilter {
        after: query
            .after
            .as_deref()
            .filter(|a| !a.is_empty())
            .map(|a| JobName::new(a).map_err(|e| ApiError::invalid("after", e.to_string())))
            .transpose()?,
        enabled: query.enabled,
        tag: query.tag.clone(),
        text: query.q.clone().filter(|q| !q.is_empty()),
        // One more than asked: whether there is a next page.
        limit: Some(limit as u32 + 1),
    };
    let mut page = state
        .store
        .find_job_summaries(&filter)
        .await
        .map_err(ApiError::store)?;
    let next = if page.len() > limit {
        page.truncate(limit);
        page.last().map(|j| j.name.to_string())
    } else {
        None
    };
    // One look at the timetable for the whole page.
    let names: Vec<&JobName> = page.iter().map(|j| &j.name).collect();
    let next_fires = state.scheduler.next_fire_of(&names);
    // The page holds until the first of its jobs fires (its next fire moves on).
    let until = next_fires.iter().flatten().min().copied();
    let jobs = page
        .into_iter()
        .zip(next_fires)
        .map(|(j, next_fire)| JobView::summary(j, next_fire))
        .collect::<Result<Vec<_>, ApiError>>()?;
    let body = axum::body::Bytes::from(
        serde_json::to_vec(&JobPage { jobs, next }).expect("a page serializes"),
    );
    state
        .job_pages
        .put(key, seq, timetable, until, body.clone());
    Ok((json, body).into_response())
}

async fn job_record(state: &AppState, name: &str) -> Result<JobRecord, ApiError> {
    let name = job_name(name)?;
    state
        .store
        .get_job(&name)
        .await
        .map_err(ApiError::store)?
        .ok_or_else(|| ApiError::not_found(format!("no job is named {name:?}")))
}

/// One job.
#[utoipa::path(get, path = "/api/v1/jobs/{name}", tag = "jobs", security(("bearer" = [])), extensions(("x-required-role" = json!("viewer"))),
    params(("name" = String, Path, description = "the job's name")),
    responses(
        (status = 400, description = "invalid parameter", body = Problem, content_type = "application/problem+json"),
        (status = 200, description = "the job", body = JobView),
        (status = 401, description = "no valid token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such job", body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_job(
    caller: Caller,
    State(state): Shared,
    Path(name): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    caller.require(Role::Viewer)?;
    let record = job_record(&state, &name).await?;
    let next = state.scheduler.next_fire(&record.spec.name);
    Ok(Json(JobView::new(&record, next)))
}

/// A job definition from a request body: JSON in the stored form, checked as a whole. A 400
/// names the field at fault.
fn parse_spec(body: &[u8]) -> Result<JobSpec, ApiError> {
    let spec: JobSpec = parse_json(body)?;
    spec.validate()
        .map_err(|e| ApiError::invalid(e.field.clone(), e.to_string()))?;
    Ok(spec)
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { "body".to_owned() } else { path };
        ApiError::invalid(field, format!("invalid job: {}", e.inner()))
    })
}

/// RFC 7396 JSON merge patch: objects merge key by key, `null` removes, anything else
/// replaces.
fn merge_patch(target: &mut serde_json::Value, patch: &serde_json::Value) {
    let serde_json::Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = serde_json::Value::Object(Default::default());
    }
    let target = target.as_object_mut().expect("made an object above");
    for (key, value) in patch {
        if value.is_null() {
            target.remove(key);
        } else {
            merge_patch(
                target.entry(key.clone()).or_insert(serde_json::Value::Null),
                value,
            );
        }
    }
}

async fn store_job(
    state: &AppState,
    caller: &Caller,
    action: &str,
    mut spec: JobSpec,
) -> Result<JobView, ApiError> {
    // A definition read from here and written back carries `[redacted]` where a literal
    // credential was: keep the stored one.
    if let Some(stored) = state
        .store
        .get_job(&spec.name)
        .await
        .map_err(ApiError::store)?
    {
        cronwarden::secret::restore_redacted(&mut spec.action, &stored.spec.action);
    }
    let detail = serde_json::to_value(shown(&spec)).ok();
    let record = state
        .scheduler
        .upsert_job(spec)
        .await
        .map_err(ApiError::scheduler)?;
    audit(state, caller, action, record.spec.name.as_str(), detail).await;
    let next = state.scheduler.next_fire(&record.spec.name);
    Ok(JobView::new(&record, next))
}

/// Creates a job. The body is a job definition in JSON; see the `cronwarden.toml` format for
/// the fields (durations as "30s", "5m").
#[utoipa::path(post, path = "/api/v1/jobs", tag = "jobs", security(("bearer" = [])), extensions(("x-required-role" = json!("admin"))),
    request_body(content = Object, description = "the job definition"),
    responses(
        (status = 201, description = "created", body = JobView),
        (status = 400, description = "invalid definition; `field` names what is wrong", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "no valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "needs the admin role", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "a job has that name", body = Problem, content_type = "application/problem+json"),
    ))]
async fn create_job(
    caller: Caller,
    State(state): Shared,
    Body(body): Body,
) -> Result<(StatusCode, Json<JobView>), ApiError> {
    caller.require(Role::Admin)?;
    let spec = parse_spec(&body)?;
    if state
        .store
        .get_job(&spec.name)
        .await
        .map_err(ApiError::store)?
        .is_some()
    {
        return Err(ApiError::conflict(format!(
            "a job named {:?} exists; change it with PUT or PATCH /api/v1/jobs/{}",
            spec.name.as_str(),
            spec.name
        )));
    }
    let view = store_job(&state, &caller, "job.create", spec).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// Creates or replaces a job with this name. History is kept; a changed schedule takes effect
/// from now.
#[utoipa::path(put, path = "/api/v1/jobs/{name}", tag = "jobs", security(("bearer" = [])), extensions(("x-required-role" = json!("admin"))),
    params(("name" = String, Path, description = "the job's name")),
    request_body(content = Object, description = "the whole job definition"),
    responses(
        (status = 200, description = "stored", body = JobView),
        (status = 400, description = "invalid definition; `field` names what is wrong", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "no valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "needs the admin role", body = Problem, content_type = "application/problem+json"),
    ))]
async fn put_job(
    caller: Caller,
    State(state): Shared,
    Path(name): Path<String>,
    Body(body): Body,
) -> Result<Json<JobView>, ApiError> {
    caller.require(Role::Admin)?;
    let name = job_name(&name)?;
    let spec = parse_spec(&body)?;
    if spec.name != name {
        return Err(ApiError::invalid(
            "name",
            format!(
                "the body names {:?}, the path {:?}",
                spec.name.as_str(),
                name.as_str()
            ),
        ));
    }
    Ok(Json(store_job(&state, &caller, "job.replace", spec).await?))
}

/// Changes some fields of a job (a JSON merge patch, RFC 7396: `null` removes a field).
#[utoipa::path(patch, path = "/api/v1/jobs/{name}", tag = "jobs", security(("bearer" = [])), extensions(("x-required-role" = json!("admin"))),
    params(("name" = String, Path, description = "the job's name")),
    request_body(content = Object, description = "the fields to change"),
    responses(
        (status = 200, description = "changed", body = JobView),
        (status = 400, description = "invalid change; `field` names what is wrong", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "no valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "needs the admin role", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such job", body = Problem, content_type = "application/problem+json"),
    ))]
async fn patch_job(
    caller: Caller,
    State(state): Shared,
    Path(name): Path<String>,
    Body(body): Body,
) -> Result<Json<JobView>, ApiError> {
    caller.require(Role::Admin)?;
    let record = job_record(&state, &name).await?;
    let patch: serde_json::Value = parse_json(&body)?;
    if !patch.is_object() {
        return Err(ApiError::invalid("body", "a merge patch is a JSON object"));
    }
    let mut merged = serde_json::to_value(&record.spec).unwrap_or_default();
    merge_patch(&mut merged, &patch);
    let spec = parse_spec(merged.to_string().as_bytes())?;
    if spec.name != record.spec.name {
        return Err(ApiError::invalid(
            "name",
            "a job cannot be renamed; create a new one",
        ));
    }
    Ok(Json(store_job(&state, &caller, "job.change", spec).await?))
}

/// Deletes a job and its history.
#[utoipa::path(delete, path = "/api/v1/jobs/{name}", tag = "jobs", security(("bearer" = [])), extensions(("x-required-role" = json!("admin"))),
    params(("name" = String, Path, description = "the job's name")),
    responses(
        (status = 400, description = "invalid parameter", body = Problem, content_type = "application/problem+json"),
        (status = 204, description = "deleted"),
        (status = 401, description = "no valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "needs the admin role", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such job", body = Problem, content_type = "application/problem+json"),
    ))]
async fn delete_job(
    caller: Caller,
    State(state): Shared,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(Role::Admin)?;
    let name = job_name(&name)?;
    if !state
        .scheduler
        .delete_job(&name)
        .await
        .map_err(ApiError::scheduler)?
    {
        return Err(ApiError::not_found(format!("no job is named {name:?}")));
    }
    audit(&state, &caller, "job.delete", name.as_str(), None).await;
    Ok(StatusCode::NO_CONTENT)
}

/// How many fires to show.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct NextQuery {
    /// How many (1-1000, default 10).
    count: Option<u32>,
}

/// A job's next fires.
#[derive(Serialize, ToSchema)]
struct NextFires {
    /// The job.
    job: String,
    /// The instants, in RFC 3339 (UTC).
    fires: Vec<String>,
}

/// A job's next fire instants, from the scheduler's own timetable.
#[utoipa::path(get, path = "/api/v1/jobs/{name}/next", tag = "jobs", security(("bearer" = [])), extensions(("x-required-role" = json!("viewer"))),
    params(("name" = String, Path, description = "the job's name"), NextQuery),
    responses(
        (status = 200, description = "the next fires", body = NextFires),
        (status = 400, description = "invalid parameter", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "no valid token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such job", body = Problem, content_type = "application/problem+json"),
    ))]
async fn next_fires(
    caller: Caller,
    State(state): Shared,
    Path(name): Path<String>,
    Query(query): Query<NextQuery>,
) -> Result<Json<NextFires>, ApiError> {
    caller.require(Role::Viewer)?;
    let count = match query.count {
        None => 10,
        Some(n @ 1..=1000) => n as usize,
        Some(n) => {
            return Err(ApiError::invalid(
                "count",
                format!("count must be 1-1000, got {n}"),
            ))
        }
    };
    let name = job_name(&name)?;
    let fires = state
        .scheduler
        .next_fires(&name, count)
        .ok_or_else(|| ApiError::not_found(format!("no job is named {name:?}")))?;
    Ok(Json(NextFires {
        job: name.to_string(),
        fires: fires.iter().map(|t| t.to_string()).collect(),
    }))
}

async fn audit(
    state: &AppState,
    caller: &Caller,
    action: &str,
    target: &str,
    detail: Option<serde_json::Value>,
) {
    let entry = NewAudit {
        at: Timestamp::now(),
        actor: &caller.name,
        source: caller.source.as_deref(),
        action,
        target: Some(target),
        detail,
    };
    if let Err(e) = state.store.record_audit(entry).await {
        tracing::error!(error = %e, action, target, "cannot write the audit log");
    }
}

/// Runs a job now, whatever its schedule (even when paused).
#[utoipa::path(post, path = "/api/v1/jobs/{name}/trigger", tag = "jobs", security(("bearer" = [])), extensions(("x-required-role" = json!("operator"))),
    params(("name" = String, Path, description = "the job's name")),
    responses(
        (status = 400, description = "invalid parameter", body = Problem, content_type = "application/problem+json"),
        (status = 202, description = "the run, started", body = Object),
        (status = 401, description = "no valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "needs the operator role", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such job", body = Problem, content_type = "application/problem+json"),
    ))]
async fn trigger_job(
    caller: Caller,
    State(state): Shared,
    Path(name): Path<String>,
) -> Result<(StatusCode, Json<Run>), ApiError> {
    caller.require(Role::Operator)?;
    let name = job_name(&name)?;
    let run = state
        .scheduler
        .trigger(&name)
        .await
        .map_err(ApiError::scheduler)?;
    audit(
        &state,
        &caller,
        "job.trigger",
        name.as_str(),
        Some(serde_json::json!({ "run": run.id })),
    )
    .await;
    Ok((StatusCode::ACCEPTED, Json(run)))
}

/// Why a job is paused.
#[derive(Deserialize, ToSchema)]
struct PauseBody {
    /// Shown with the job until it is resumed.
    reason: String,
}

/// Stops a job from firing until it is resumed; runs already going carry on.
#[utoipa::path(post, path = "/api/v1/jobs/{name}/pause", tag = "jobs", security(("bearer" = [])), extensions(("x-required-role" = json!("operator"))),
    params(("name" = String, Path, description = "the job's name")),
    request_body = PauseBody,
    responses(
        (status = 200, description = "the job, paused", body = JobView),
        (status = 400, description = "invalid body", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "no valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "needs the operator role", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such job", body = Problem, content_type = "application/problem+json"),
    ))]
async fn pause_job(
    caller: Caller,
    State(state): Shared,
    Path(name): Path<String>,
    body: Result<Json<PauseBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<JobView>, ApiError> {
    caller.require(Role::Operator)?;
    let Json(body) = body.map_err(|e| body_rejection(e.status(), e.body_text(), "reason"))?;
    let reason = body.reason.trim();
    if reason.is_empty() {
        return Err(ApiError::invalid("reason", "a pause needs a reason"));
    }
    if reason.len() > limits::MAX_TEXT_BYTES {
        return Err(ApiError::invalid(
            "reason",
            format!(
                "is {} bytes long; the most is {} KiB",
                reason.len(),
                limits::MAX_TEXT_BYTES / 1024
            ),
        ));
    }
    let name = job_name(&name)?;
    let record = state
        .scheduler
        .pause(&name, reason)
        .await
        .map_err(ApiError::scheduler)?;
    audit(
        &state,
        &caller,
        "job.pause",
        name.as_str(),
        Some(serde_json::json!({ "reason": reason })),
    )
    .await;
    Ok(Json(JobView::new(&record, None)))
}

/// Lifts a pause; the job fires again from its next instant.
#[utoipa::path(post, path = "/api/v1/jobs/{name}/resume", tag = "jobs", security(("bearer" = [])), extensions(("x-required-role" = json!("operator"))),
    params(("name" = String, Path, description = "the job's name")),
    responses(
        (status = 400, description = "invalid parameter", body = Problem, content_type = "application/problem+json"),
        (status = 200, description = "the job, resumed", body = JobView),
        (status = 401, description = "no valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "needs the operator role", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such job", body = Problem, content_type = "application/problem+json"),
    ))]
async fn resume_job(
    caller: Caller,
    State(state): Shared,
    Path(name): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    caller.require(Role::Operator)?;
    let name = job_name(&name)?;
    let record = state
        .scheduler
        .resume(&name)
        .await
        .map_err(ApiError::scheduler)?;
    audit(&state, &caller, "job.resume", name.as_str(), None).await;
    let next = state.scheduler.next_fire(&name);
    Ok(Json(JobView::new(&record, next)))
}

/// Which runs to list.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct RunQuery {
    /// Only this job's runs.
    job: Option<String>,
    /// Only runs with this status: queued, running, succeeded, failed, timed_out, skipped,
    /// missed, interrupted, abandoned.
    status: Option<String>,
    /// Only runs with this trigger: schedule, manual, retry, catch_up, chain.
    trigger: Option<String>,
    /// Only runs scheduled at or after this instant (RFC 3339).
    since: Option<String>,
    /// Only runs scheduled before this instant (RFC 3339).
    until: Option<String>,
    /// Only runs with ids below this one (the previous page's `next`).
    before_id: Option<i64>,
    /// At most this many (1-1000, default 100).
    limit: Option<u32>,
}

/// A page of runs, newest first.
#[derive(Serialize, ToSchema)]
struct RunPage {
    /// The runs.
    #[schema(value_type = Vec<Object>)]
    runs: Vec<Run>,
    /// Pass as `before_id` for the next page; absent on the last page.
    next: Option<i64>,
}

fn instant(field: &str, value: Option<&str>) -> Result<Option<Timestamp>, ApiError> {
    value
        .map(|v| {
            v.parse::<Timestamp>().map_err(|e| {
                ApiError::invalid(field, format!("{field} must be an RFC 3339 instant: {e}"))
            })
        })
        .transpose()
}

/// Runs, newest first, filtered and paginated.
#[utoipa::path(get, path = "/api/v1/runs", tag = "runs", params(RunQuery), security(("bearer" = [])), extensions(("x-required-role" = json!("viewer"))),
    responses(
        (status = 200, description = "a page of runs", body = RunPage),
        (status = 400, description = "invalid parameter", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "no valid token", body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_runs(
    caller: Caller,
    State(state): Shared,
    Query(query): Query<RunQuery>,
) -> Result<Json<RunPage>, ApiError> {
    caller.require(Role::Viewer)?;
    run_page(&state, query).await.map(Json)
}

/// A job's runs, newest first, filtered and paginated like `/api/v1/runs`.
#[utoipa::path(get, path = "/api/v1/jobs/{name}/runs", tag = "jobs", security(("bearer" = [])), extensions(("x-required-role" = json!("viewer"))),
    params(("name" = String, Path, description = "the job's name"), RunQuery),
    responses(
        (status = 200, description = "a page of the job's runs", body = RunPage),
        (status = 400, description = "invalid parameter", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "no valid token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such job", body = Problem, content_type = "application/problem+json"),
    ))]
async fn job_runs(
    caller: Caller,
    State(state): Shared,
    Path(name): Path<String>,
    Query(mut query): Query<RunQuery>,
) -> Result<Json<RunPage>, ApiError> {
    caller.require(Role::Viewer)?;
    let record = job_record(&state, &name).await?;
    query.job = Some(record.spec.name.to_string());
    run_page(&state, query).await.map(Json)
}

/// A job's statistics over its kept history.
#[derive(Serialize, ToSchema)]
struct StatsView {
    /// The job.
    job: String,
    /// Runs with a final status.
    runs: u64,
    /// Runs that succeeded.
    succeeded: u64,
    /// Runs that failed, timed out, were interrupted or abandoned.
    failed: u64,
    /// Succeeded over succeeded plus failed; absent before any.
    success_rate: Option<f64>,
    /// Failures since the last success.
    consecutive_failures: u64,
    /// Median duration, in seconds.
    duration_p50_seconds: Option<f64>,
    /// 95th percentile duration, in seconds.
    duration_p95_seconds: Option<f64>,
    /// Longest duration, in seconds.
    duration_max_seconds: Option<f64>,
    /// When the last success finished.
    last_success: Option<String>,
    /// When the last failure finished.
    last_failure: Option<String>,
}

/// A job's statistics: runs, success rate, consecutive failures, duration p50/p95/max, last
/// success and failure.
#[utoipa::path(get, path = "/api/v1/jobs/{name}/stats", tag = "jobs", security(("bearer" = [])), extensions(("x-required-role" = json!("viewer"))),
    params(("name" = String, Path, description = "the job's name")),
    responses(
        (status = 400, description = "invalid parameter", body = Problem, content_type = "application/problem+json"),
        (status = 200, description = "the statistics", body = StatsView),
        (status = 401, description = "no valid token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such job", body = Problem, content_type = "application/problem+json"),
    ))]
async fn job_stats(
    caller: Caller,
    State(state): Shared,
    Path(name): Path<String>,
) -> Result<Json<StatsView>, ApiError> {
    caller.require(Role::Viewer)?;
    let record = job_record(&state, &name).await?;
    let s = state
        .store
        .job_stats(&record.spec.name)
        .await
        .map_err(ApiError::store)?;
    let seconds = |d: Option<jiff::SignedDuration>| d.map(|d| d.as_secs_f64());
    Ok(Json(StatsView {
        job: record.spec.name.to_string(),
        runs: s.runs,
        succeeded: s.succeeded,
        failed: s.failed,
        success_rate: s.success_rate(),
        consecutive_failures: s.consecutive_failures,
        duration_p50_seconds: seconds(s.duration_p50),
        duration_p95_seconds: seconds(s.duration_p95),
        duration_max_seconds: seconds(s.duration_max),
        last_success: s.last_success.map(|t| t.to_string()),
        last_failure: s.last_failure.map(|t| t.to_string()),
    }))
}

/// Cancels a run that is going; it is recorded `interrupted`.
#[utoipa::path(post, path = "/api/v1/runs/{id}/cancel", tag = "runs", security(("bearer" = [])), extensions(("x-required-role" = json!("operator"))),
    params(("id" = i64, Path, description = "the run's id")),
    responses(
        (status = 400, description = "invalid parameter", body = Problem, content_type = "application/problem+json"),
        (status = 202, description = "cancellation asked for; the run records `interrupted` when it has stopped"),
        (status = 401, description = "no valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "needs the operator role", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such run", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "the run is not going", body = Problem, content_type = "application/problem+json"),
    ))]
async fn cancel_run(
    caller: Caller,
    State(state): Shared,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    caller.require(Role::Operator)?;
    let run = state
        .store
        .get_run(RunId(id))
        .await
        .map_err(ApiError::store)?
        .ok_or_else(|| ApiError::not_found(format!("no run has id {id}")))?;
    if !state.scheduler.cancel_run(run.id) {
        return Err(ApiError::conflict(format!(
            "run {id} is not going on this node (it is {})",
            run.status
        )));
    }
    audit(&state, &caller, "run.cancel", &id.to_string(), None).await;
    Ok(StatusCode::ACCEPTED)
}

/// Stops all firing without a restart; runs going carry on, triggers still run.
#[utoipa::path(post, path = "/api/v1/scheduler/pause", tag = "scheduler", security(("bearer" = [])), extensions(("x-required-role" = json!("operator"))),
    responses(
        (status = 200, description = "paused", body = SchedulerView),
        (status = 401, description = "no valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "needs the operator role", body = Problem, content_type = "application/problem+json"),
    ))]
async fn pause_scheduler(
    caller: Caller,
    State(state): Shared,
) -> Result<Json<SchedulerView>, ApiError> {
    caller.require(Role::Operator)?;
    state.scheduler.pause_firing();
    audit(&state, &caller, "scheduler.pause", &state.node, None).await;
    scheduler_view(&state).await.map(Json)
}

/// Fires again from now on (fires due while paused are not caught up).
#[utoipa::path(post, path = "/api/v1/scheduler/resume", tag = "scheduler", security(("bearer" = [])), extensions(("x-required-role" = json!("operator"))),
    responses(
        (status = 200, description = "resumed", body = SchedulerView),
        (status = 401, description = "no valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "needs the operator role", body = Problem, content_type = "application/problem+json"),
    ))]
async fn resume_scheduler(
    caller: Caller,
    State(state): Shared,
) -> Result<Json<SchedulerView>, ApiError> {
    caller.require(Role::Operator)?;
    state.scheduler.resume_firing();
    audit(&state, &caller, "scheduler.resume", &state.node, None).await;
    scheduler_view(&state).await.map(Json)
}

async fn run_page(state: &AppState, query: RunQuery) -> Result<RunPage, ApiError> {
    let limit = limit(query.limit)? as u32;
    let filter = RunFilter {
        job: query
            .job
            .as_deref()
            .map(|j| JobName::new(j).map_err(|e| ApiError::invalid("job", e.to_string())))
            .transpose()?,
        status: query
            .status
            .as_deref()
            .map(|s| RunStatus::from_str(s).map_err(|e| ApiError::invalid("status", e)))
            .transpose()?,
        trigger: query
            .trigger
            .as_deref()
            .map(|t| Trigger::from_str(t).map_err(|e| ApiError::invalid("trigger", e)))
            .transpose()?,
        since: instant("since", query.since.as_deref())?,
        until: instant("until", query.until.as_deref())?,
        before_id: query.before_id.map(RunId),
        limit: Some(limit + 1),
    };
    let mut runs = state
        .store
        .list_runs(&filter)
        .await
        .map_err(ApiError::store)?;
    let next = if runs.len() > limit as usize {
        runs.truncate(limit as usize);
        runs.last().map(|r| r.id.0)
    } else {
        None
    };
    Ok(RunPage { runs, next })
}

/// One run, with its output.
#[utoipa::path(get, path = "/api/v1/runs/{id}", tag = "runs", security(("bearer" = [])), extensions(("x-required-role" = json!("viewer"))),
    params(("id" = i64, Path, description = "the run's id")),
    responses(
        (status = 400, description = "invalid parameter", body = Problem, content_type = "application/problem+json"),
        (status = 200, description = "the run", body = Object),
        (status = 401, description = "no valid token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such run", body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_run(
    caller: Caller,
    State(state): Shared,
    Path(id): Path<i64>,
) -> Result<Json<Run>, ApiError> {
    caller.require(Role::Viewer)?;
    state
        .store
        .get_run(RunId(id))
        .await
        .map_err(ApiError::store)?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no run has id {id}")))
}

/// The scheduler's state.
#[derive(Serialize, ToSchema)]
struct SchedulerView {
    /// This node's name.
    node: String,
    /// The daemon's version.
    version: String,
    /// `running`, or `paused` (no fires until resumed).
    state: String,
    /// Runs executing now.
    running: usize,
    /// Runs waiting for the run before them (`overlap = queue`).
    queued: usize,
    /// When the daemon started.
    started_at: String,
    /// How many jobs are stored.
    jobs: usize,
    /// The next fires across all jobs, earliest first (at most 10).
    next_fires: Vec<NextFire>,
}

/// A coming fire.
#[derive(Serialize, ToSchema)]
struct NextFire {
    /// The job.
    job: String,
    /// When (RFC 3339, UTC).
    at: String,
}

/// The scheduler: node, version, jobs and the next fires.
#[utoipa::path(get, path = "/api/v1/scheduler", tag = "scheduler", security(("bearer" = [])), extensions(("x-required-role" = json!("viewer"))),
    responses(
        (status = 200, description = "the scheduler's state", body = SchedulerView),
        (status = 401, description = "no valid token", body = Problem, content_type = "application/problem+json"),
    ))]
async fn scheduler_state(
    caller: Caller,
    State(state): Shared,
) -> Result<Json<SchedulerView>, ApiError> {
    caller.require(Role::Viewer)?;
    scheduler_view(&state).await.map(Json)
}

async fn scheduler_view(state: &AppState) -> Result<SchedulerView, ApiError> {
    // From the scheduler's own timetable: no store read, however many jobs there are.
    let (jobs, next) = state.scheduler.upcoming(10);
    let (running, queued) = state.scheduler.load();
    Ok(SchedulerView {
        node: state.node.clone(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        state: if state.scheduler.firing_paused() {
            "paused"
        } else {
            "running"
        }
        .to_owned(),
        started_at: state.started_at.to_string(),
        jobs,
        running,
        queued,
        next_fires: next
            .into_iter()
            .map(|(at, job)| NextFire {
                job: job.to_string(),
                at: at.to_string(),
            })
            .collect(),
    })
}

/// Which audit entries to list.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct AuditQuery {
    /// Only entries with ids below this one (the previous page's `next`).
    before_id: Option<i64>,
    /// At most this many (1-1000, default 100).
    limit: Option<u32>,
}

/// A page of the audit log, newest first.
#[derive(Serialize, ToSchema)]
struct AuditPage {
    /// The entries.
    #[schema(value_type = Vec<Object>)]
    entries: Vec<cronwarden::model::AuditEntry>,
    /// Pass as `before_id` for the next page; absent on the last page.
    next: Option<i64>,
}

/// Who changed what, when and from where. Admins only.
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", params(AuditQuery), security(("bearer" = [])), extensions(("x-required-role" = json!("admin"))),
    responses(
        (status = 200, description = "a page of the audit log", body = AuditPage),
        (status = 400, description = "invalid parameter", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "no valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "needs the admin role", body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_audit(
    caller: Caller,
    State(state): Shared,
    Query(query): Query<AuditQuery>,
) -> Result<Json<AuditPage>, ApiError> {
    caller.require(Role::Admin)?;
    let limit = limit(query.limit)? as u32;
    let mut entries = state
        .store
        .list_audit(query.before_id, limit + 1)
        .await
        .map_err(ApiError::store)?;
    let next = if entries.len() > limit as usize {
        entries.truncate(limit as usize);
        entries.last().map(|e| e.id)
    } else {
        None
    };
    Ok(Json(AuditPage { entries, next }))
}

/// Live events as Server-Sent Events: `run.started`, `run.finished` (every final status:
/// succeeded, failed, skipped, missed, ...), `job.changed` (created, changed, paused, resumed,
/// deleted), and `lagged` when this client fell behind and missed some. Each event's data is
/// JSON.
#[utoipa::path(get, path = "/api/v1/events", tag = "events", security(("bearer" = [])), extensions(("x-required-role" = json!("viewer"))),
    responses(
        (status = 200, description = "an event stream", content_type = "text/event-stream", body = String),
        (status = 401, description = "no valid token", body = Problem, content_type = "application/problem+json"),
    ))]
async fn events(
    caller: Caller,
    State(state): Shared,
) -> Result<
    axum::response::sse::Sse<
        impl futures_util::Stream<Item = Result<axum::response::sse::Event, std::convert::Infallible>>,
    >,
    ApiError,
> {
    use axum::response::sse::{Event, KeepAlive, Sse};
    use cronwarden::scheduler::SchedulerEvent;
    use tokio::sync::broadcast::error::RecvError;

    caller.require(Role::Viewer)?;
    let receiver = state.scheduler.subscribe();
    let stream = futures_util::stream::unfold(receiver, |mut receiver| async move {
        let event = match receiver.recv().await {
            Ok(SchedulerEvent::RunStarted(run)) => {
                Event::default().event("run.started").json_data(&run)
            }
            Ok(SchedulerEvent::RunFinished(run)) => {
                Event::default().event("run.finished").json_data(&run)
            }
            Ok(SchedulerEvent::Firing { paused }) => Event::default()
                .event(if paused {
                    "scheduler.paused"
                } else {
                    "scheduler.resumed"
                })
                .json_data(serde_json::json!({ "paused": paused })),
            Ok(SchedulerEvent::JobChanged { job, change }) => Event::default()
                .event("job.changed")
                .json_data(serde_json::json!({ "job": job, "change": change })),
            Err(RecvError::Lagged(missed)) => Event::default()
                .event("lagged")
                .json_data(serde_json::json!({ "missed": missed })),
            Err(RecvError::Closed) => return None,
        };
        let event = event.unwrap_or_else(|e| Event::default().event("error").data(e.to_string()));
        Some((Ok(event), receiver))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// Metrics in the Prometheus text format: fires claimed, runs by job and status, run
/// durations and lateness (histograms), retries, runs executing, store latency. Needs a token
/// unless the daemon runs with `metrics_public = true`.
#[utoipa::path(get, path = "/metrics", tag = "health", security(("bearer" = [])), extensions(("x-required-role" = json!("viewer"))),
    responses(
        (status = 200, description = "the metrics", content_type = "text/plain; version=0.0.4", body = String),
        (status = 401, description = "no valid token", body = Problem, content_type = "application/problem+json"),
    ))]
async fn prometheus(
    caller: Result<Caller, ApiError>,
    State(state): Shared,
) -> Result<impl axum::response::IntoResponse, ApiError> {
    if !state.metrics_public {
        caller?.require(Role::Viewer)?;
    }
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        state.metrics.render(),
    ))
}
