//! Load driver for the HTTP API (not a criterion benchmark): the real router and store with
//! 10,000 jobs and 100,000 runs, driven over HTTP. Run with
//! `cargo bench -p cronwarden-daemon --bench api_load`.
//!
//! For each of `GET /api/v1/jobs` (a page of 100) and `GET /api/v1/runs` (a page of 100):
//! 1. open loop: 1,000 requests per second for 10 s, each sent at its planned instant
//!    whatever the others do; latency is measured from that instant (no coordinated
//!    omission);
//! 2. closed loop: 32 clients sending back to back for 5 s: the most requests per second.
//!
//! Server and client share this machine's cores.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cronwarden::clock::SystemClock;
use cronwarden::executor::{Executors, RustJobs};
use cronwarden::model::{Action, JobName, JobSpec, Role, Trigger};
use cronwarden::scheduler::{Scheduler, SchedulerConfig};
use cronwarden::store::{ClaimFire, SqliteStore, Store};
use cronwarden_daemon::api;
use jiff::{SignedDuration, Timestamp};

const JOBS: usize = 10_000;
const RUNS: usize = 100_000;
const TOKEN: &str = "api-load-viewer-token-0123456789";

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// Serves the API over a store with `JOBS` jobs and `RUNS` runs; returns its base URL.
fn serve() -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async move {
            let dir =
                std::env::temp_dir().join(format!("cronwarden-api-load-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            let store = Arc::new(
                SqliteStore::open(dir.join("state.db").to_str().unwrap())
                    .await
                    .unwrap(),
            );
            let now = Timestamp::now();
            let mut names = Vec::new();
            for i in 0..JOBS {
                let mut spec = JobSpec::new(
                    JobName::new(format!("job-{i:05}")).unwrap(),
                    Some("0 0 1 1 *"),
                    Action::Command {
                        argv: vec!["true".into()],
                        env: Default::default(),
                        inherit_env: Vec::new(),
                        cwd: None,
                    },
                );
                spec.tags = vec![if i % 2 == 0 { "even" } else { "odd" }.into()];
                store.upsert_job(&spec, now).await.unwrap();
                names.push(spec.name);
            }
            // History: RUNS claimed fires spread over the jobs.
            let claims: Vec<ClaimFire> = (0..RUNS)
                .map(|i| ClaimFire {
                    job: &names[i % JOBS],
                    scheduled_at: now - SignedDuration::from_secs((i / JOBS) as i64 * 60 + 60),
                    trigger: Trigger::Schedule,
                    attempt: 1,
                    node: "load",
                })
                .collect();
            for chunk in claims.chunks(10_000) {
                store.claim_fires(chunk).await.unwrap();
            }
            store
                .create_token("load", Role::Viewer, &api::hash_token(TOKEN), now)
                .await
                .unwrap();
            let scheduler = Scheduler::new(
                store.clone(),
                Arc::new(SystemClock),
                Executors::new(RustJobs::new()),
                SchedulerConfig::default(),
            );
            scheduler.start();
            let (router, _) = api::router(api::AppState {
                scheduler,
                store,
                node: "load".into(),
                started_at: now,
                openapi: Default::default(),
                metrics: api::metrics(),
                metrics_public: false,
                job_pages: Default::default(),
                auth_failures: Default::default(),
            });
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(format!("http://{}", listener.local_addr().unwrap()))
                .unwrap();
            axum::serve(
                listener,
                router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
            )
            .await
            .unwrap();
        });
    });
    rx.recv().unwrap()
}

async fn get(client: &reqwest::Client, url: &str) {
    let response = client.get(url).bearer_auth(TOKEN).send().await.unwrap();
    assert!(
        response.status().is_success(),
        "{url}: {}",
        response.status()
    );
    response.bytes().await.unwrap();
}

async fn open_loop(client: &reqwest::Client, url: &str, rate: u32, seconds: u64) {
    let total = rate as u64 * seconds;
    let start = tokio::time::Instant::now() + Duration::from_millis(100);
    let mut tasks = Vec::with_capacity(total as usize);
    for i in 0..total {
        let planned = start + Duration::from_secs_f64(i as f64 / rate as f64);
        let (client, url) = (client.clone(), url.to_owned());
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep_until(planned).await;
            get(&client, &url).await;
            planned.elapsed().as_secs_f64() * 1000.0
        }));
    }
    let mut latencies = Vec::with_capacity(tasks.len());
    for task in tasks {
        latencies.push(task.await.unwrap());
    }
    let elapsed = start.elapsed().as_secs_f64();
    latencies.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "  open loop, {rate} req/s for {seconds} s: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({:.0} req/s done)",
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        latencies.last().unwrap(),
        total as f64 / elapsed
    );
}

async fn closed_loop(client: &reqwest::Client, url: &str, clients: usize, seconds: u64) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let start = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (client, url) = (client.clone(), url.to_owned());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while Instant::now() < deadline {
                    let sent = Instant::now();
                    get(&client, &url).await;
                    latencies.push(sent.elapsed().as_secs_f64() * 1000.0);
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    latencies.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "  closed loop, {clients} clients for {seconds} s: {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms",
        latencies.len() as f64 / start.elapsed().as_secs_f64(),
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99)
    );
}

fn main() {
    let base = serve();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .build()
            .unwrap();
        for (name, path) in [
            (
                "GET /api/v1/jobs (page of 100)",
                "/api/v1/jobs?limit=100&after=job-05000",
            ),
            ("GET /api/v1/runs (page of 100)", "/api/v1/runs?limit=100"),
        ] {
            let url = format!("{base}{path}");
            // Warm up connections and caches.
            for _ in 0..200 {
                get(&client, &url).await;
            }
            println!("{name}, {JOBS} jobs, {RUNS} runs:");
            open_loop(&client, &url, 1000, 10).await;
            closed_loop(&client, &url, 32, 5).await;
        }
    });
}
