//! Where the `jobs` and `runs` commands get their data: the store itself (the database the
//! configuration names), or a daemon's API (`--server URL`, token from `CRONWARDEN_TOKEN`).
//! Both give the same records, so the commands print the same output either way.

use cronwarden::model::{JobName, Run, RunId};
use cronwarden::store::{JobRecord, JobStats, RunFilter};
use jiff::{SignedDuration, Timestamp};
use serde_json::{json, Value};

use super::inspect::{audit, open_store, store_error, StoreArgs};
use super::CliError;
use cronwarden_daemon::store::AnyStore;

/// A daemon's API.
pub(super) struct Remote {
    base: String,
    token: String,
    client: reqwest::Client,
}

pub(super) enum Source {
    Local(AnyStore),
    Remote(Remote),
}

/// What a trigger did.
pub(super) enum Triggered {
    /// Asked for through the store; a running daemon starts it.
    Requested,
    /// Started by the daemon, as this run.
    Started(RunId),
}

impl Source {
    pub(super) async fn open(args: &StoreArgs) -> Result<Source, CliError> {
        let Some(server) = &args.server else {
            return Ok(Source::Local(open_store(args).await?));
        };
        let token = std::env::var("CRONWARDEN_TOKEN").map_err(|_| {
            CliError(
                "--server needs a token in CRONWARDEN_TOKEN (see `cronwarden tokens create`)"
                    .to_owned(),
            )
        })?;
        Ok(Source::Remote(Remote {
            base: server.trim_end_matches('/').to_owned(),
            token,
            client: reqwest::Client::new(),
        }))
    }

    pub(super) async fn close(self) {
        if let Source::Local(store) = self {
            store.close().await;
        }
    }

    pub(super) async fn list_jobs(&self) -> Result<Vec<JobRecord>, CliError> {
        match self {
            Source::Local(store) => store.list_jobs().await.map_err(store_error),
            Source::Remote(remote) => {
                let mut jobs = Vec::new();
                let mut after = String::new();
                loop {
                    let page = remote
                        .get(&format!("/api/v1/jobs?limit=1000&after={after}"))
                        .await?
                        .ok_or_else(|| CliError("the server has no job list".to_owned()))?;
                    for view in page["jobs"].as_array().into_iter().flatten() {
                        jobs.push(job_record(view)?);
                    }
                    match page["next"].as_str() {
                        Some(next) => after = next.to_owned(),
                        None => return Ok(jobs),
                    }
                }
            }
        }
    }

    pub(super) async fn get_job(&self, name: &JobName) -> Result<Option<JobRecord>, CliError> {
        match self {
            Source::Local(store) => store.get_job(name).await.map_err(store_error),
            Source::Remote(remote) => remote
                .get(&format!("/api/v1/jobs/{name}"))
                .await?
                .as_ref()
                .map(job_record)
                .transpose(),
        }
    }

    pub(super) async fn job_stats(&self, name: &JobName) -> Result<JobStats, CliError> {
        match self {
            Source::Local(store) => store.job_stats(name).await.map_err(store_error),
            Source::Remote(remote) => {
                let s = remote
                    .get(&format!("/api/v1/jobs/{name}/stats"))
                    .await?
                    .ok_or_else(|| CliError(format!("no job is named {name:?}")))?;
                let duration = |key: &str| {
                    s[key]
                        .as_f64()
                        .and_then(|secs| SignedDuration::try_from_secs_f64(secs).ok())
                };
                let instant = |key: &str| s[key].as_str().and_then(|t| t.parse::<Timestamp>().ok());
                Ok(JobStats {
                    runs: s["runs"].as_u64().unwrap_or(0),
                    succeeded: s["succeeded"].as_u64().unwrap_or(0),
                    failed: s["failed"].as_u64().unwrap_or(0),
                    consecutive_failures: s["consecutive_failures"].as_u64().unwrap_or(0),
                    duration_p50: duration("duration_p50_seconds"),
                    duration_p95: duration("duration_p95_seconds"),
                    duration_max: duration("duration_max_seconds"),
                    last_success: instant("last_success"),
                    last_failure: instant("last_failure"),
                })
            }
        }
    }

    pub(super) async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<Run>, CliError> {
        match self {
            Source::Local(store) => store.list_runs(filter).await.map_err(store_error),
            Source::Remote(remote) => {
                let mut query = format!(
                    "/api/v1/runs?limit={}",
                    filter.limit.unwrap_or(100).min(1000)
                );
                if let Some(job) = &filter.job {
                    query.push_str(&format!("&job={job}"));
                }
                if let Some(status) = filter.status {
                    query.push_str(&format!("&status={status}"));
                }
                let page = remote
                    .get(&query)
                    .await?
                    .ok_or_else(|| CliError("the server has no run list".to_owned()))?;
                serde_json::from_value(page["runs"].clone()).map_err(|e| {
                    CliError(format!("the server sent runs this CLI cannot read: {e}"))
                })
            }
        }
    }

    pub(super) async fn get_run(&self, id: RunId) -> Result<Option<Run>, CliError> {
        match self {
            Source::Local(store) => store.get_run(id).await.map_err(store_error),
            Source::Remote(remote) => remote
                .get(&format!("/api/v1/runs/{id}"))
                .await?
                .map(|run| {
                    serde_json::from_value(run).map_err(|e| {
                        CliError(format!("the server sent a run this CLI cannot read: {e}"))
                    })
                })
                .transpose(),
        }
    }

    pub(super) async fn trigger(&self, name: &JobName, by: &str) -> Result<Triggered, CliError> {
        match self {
            Source::Local(store) => {
                if !store
                    .request_run(name, by, Timestamp::now())
                    .await
                    .map_err(store_error)?
                {
                    return Err(CliError(format!("no job is named {name:?}")));
                }
                audit(&**store, "job.trigger", name.as_str(), None).await?;
                Ok(Triggered::Requested)
            }
            Source::Remote(remote) => {
                let run = remote
                    .post(&format!("/api/v1/jobs/{name}/trigger"), json!({}))
                    .await?;
                Ok(Triggered::Started(RunId(
                    run["id"].as_i64().unwrap_or_default(),
                )))
            }
        }
    }

    pub(super) async fn set_paused(
        &self,
        name: &JobName,
        reason: Option<&str>,
    ) -> Result<JobRecord, CliError> {
        match self {
            Source::Local(store) => {
                let job = store
                    .set_paused(name, reason)
                    .await
                    .map_err(store_error)?
                    .ok_or_else(|| CliError(format!("no job is named {name:?}")))?;
                match reason {
                    Some(reason) => {
                        audit(
                            &**store,
                            "job.pause",
                            name.as_str(),
                            Some(json!({ "reason": reason })),
                        )
                        .await?
                    }
                    None => audit(&**store, "job.resume", name.as_str(), None).await?,
                }
                Ok(job)
            }
            Source::Remote(remote) => {
                let view = match reason {
                    Some(reason) => {
                        remote
                            .post(
                                &format!("/api/v1/jobs/{name}/pause"),
                                json!({ "reason": reason }),
                            )
                            .await?
                    }
                    None => {
                        remote
                            .post(&format!("/api/v1/jobs/{name}/resume"), json!({}))
                            .await?
                    }
                };
                job_record(&view)
            }
        }
    }
}

/// A job as the API shows it, back as a record.
fn job_record(view: &Value) -> Result<JobRecord, CliError> {
    let unreadable = |what: &str| {
        CliError(format!(
            "the server sent a job this CLI cannot read ({what})"
        ))
    };
    let instant = |key: &str| {
        view[key]
            .as_str()
            .and_then(|t| t.parse::<Timestamp>().ok())
            .ok_or_else(|| unreadable(key))
    };
    Ok(JobRecord {
        spec: serde_json::from_value(view["spec"].clone())
            .map_err(|e| unreadable(&e.to_string()))?,
        version: view["version"]
            .as_i64()
            .ok_or_else(|| unreadable("version"))?,
        created_at: instant("created_at")?,
        updated_at: instant("updated_at")?,
        paused: view["paused"].as_str().map(str::to_owned),
        // Not part of the API's view of a job.
        last_fire: None,
    })
}

impl Remote {
    /// `GET`: the JSON body, `None` on a 404, an error naming the server's problem otherwise.
    async fn get(&self, path: &str) -> Result<Option<Value>, CliError> {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| CliError(format!("cannot reach {}: {e}", self.base)))?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        self.body(response).await.map(Some)
    }

    async fn post(&self, path: &str, body: Value) -> Result<Value, CliError> {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .map_err(|e| CliError(format!("cannot reach {}: {e}", self.base)))?;
        self.body(response).await
    }

    async fn body(&self, response: reqwest::Response) -> Result<Value, CliError> {
        let status = response.status();
        let body: Value = response
            .json()
            .await
            .map_err(|e| CliError(format!("{} answered {status} with no JSON: {e}", self.base)))?;
        if status.is_success() {
            Ok(body)
        } else {
            Err(CliError(format!(
                "{} answered {status}: {}",
                self.base,
                body["detail"].as_str().unwrap_or("(no detail)")
            )))
        }
    }
}
