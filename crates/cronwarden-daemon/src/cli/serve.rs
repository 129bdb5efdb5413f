//! `cronwarden serve`: the daemon. Loads the configuration, reconciles its jobs into the store,
//! runs the scheduler until SIGTERM or SIGINT, then stops gracefully and exits 0.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use cronwarden::clock::{Clock, SystemClock};
use cronwarden::executor::{CommandExecutor, Executors, ProcessLedger, RustJobs, SqlExecutor};
use cronwarden::scheduler::{Scheduler, SchedulerConfig};
use cronwarden::store::Store;
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

use super::validate::report_errors;
use super::CliError;
use cronwarden::model::Role;
use cronwarden_daemon::api;
use cronwarden_daemon::config::Config;
use cronwarden_daemon::lock::DatabaseLock;
use cronwarden_daemon::store::AnyStore;

/// How often old run history is pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Arguments of `cronwarden serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The configuration file.
    #[arg(
        long,
        short,
        value_name = "FILE",
        env = "CRONWARDEN_CONFIG",
        default_value = "cronwarden.toml"
    )]
    config: PathBuf,
}

/// `cronwarden serve`.
pub fn serve(args: ServeArgs) -> Result<(), CliError> {
    let config = Config::load(&args.config)
        .map_err(|errors| report_errors(&args.config.display().to_string(), &errors))?;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CRONWARDEN_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = tokio::runtime::Runtime::new()
        .map_err(|e| CliError(format!("cannot start the runtime: {e}")))?;
    runtime.block_on(run(config))
}

async fn run(config: Config) -> Result<(), CliError> {
    let settings = &config.settings;
    let node = settings.node_name();
    // A SQLite file serves one daemon: a second one would take the first one's runs for
    // abandoned and run them again. Locked before the store is touched, held until exit.
    let _lock = if settings.is_postgres() {
        None
    } else {
        Some(
            DatabaseLock::acquire(std::path::Path::new(&settings.database), &node)
                .map_err(|e| CliError(e.to_string()))?,
        )
    };
    // SQLite or PostgreSQL, as the database setting (or CRONWARDEN_DATABASE_URL) says; the
    // rest of the daemon sees the trait only.
    let database = AnyStore::open(&settings.database)
        .await
        .map_err(|e| CliError(e.to_string()))?;
    let store = database.shared();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    // The file is the source of truth for the jobs it declares: apply them before the scheduler
    // loads the timetable. Unchanged jobs keep their version; history is kept either way.
    for job in &config.jobs {
        store
            .upsert_job(job, clock.now())
            .await
            .map_err(|e| CliError(format!("cannot store job {}: {e}", job.name)))?;
    }
    // Commands get a clean environment, and their process groups are recorded so that a
    // daemon starting after this one is killed can end what it left running.
    let ledger_dir = settings.process_ledger_dir();
    let ledger = ProcessLedger::open(&ledger_dir).map_err(|e| {
        CliError(format!(
            "cannot keep the records of running commands in {}: {e} (set settings.state_dir to \
             a writable directory on this host)",
            ledger_dir.display()
        ))
    })?;
    let commands = CommandExecutor::default()
        .with_inherited_env(settings.inherit_env.iter().cloned())
        .with_ledger(ledger);
    // Before anything runs, so that every metric is kept from the start.
    let metrics = api::metrics();
    let scheduler = Scheduler::new(
        store.clone(),
        clock.clone(),
        Executors::new(RustJobs::new())
            .with_commands(commands)
            .with_sql(SqlExecutor::new(config.connections.clone())),
        SchedulerConfig {
            node: node.clone(),
            max_concurrent_runs: settings.max_concurrent_runs as usize,
            shutdown_grace: settings.shutdown_grace,
            ..SchedulerConfig::default()
        },
    );
    scheduler.start();
    bootstrap_admin_token(&*store).await?;

    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .map_err(|e| CliError(format!("cannot listen on {}: {e}", settings.listen)))?;
    let listening = listener.local_addr().map_err(|e| CliError(e.to_string()))?;
    let (app, _) = api::router(api::AppState {
        scheduler: scheduler.clone(),
        store: store.clone(),
        node: node.clone(),
        started_at: clock.now(),
        openapi: Default::default(),
        metrics,
        metrics_public: settings.metrics_public,
        job_pages: Default::default(),
        auth_failures: Default::default(),
    });
    let stop_serving = CancellationToken::new();
    let server = tokio::spawn({
        let stop = stop_serving.clone();
        async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
            )
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await
        }
    });
    // The database as shown: a URL's password is never logged.
    tracing::info!(%node, jobs = config.jobs.len(), store = %database.kind(), database = %settings.database_shown(), api = %listening, "cronwarden is running");

    let stop = CancellationToken::new();
    let pruner = tokio::spawn(prune_history(
        store.clone(),
        scheduler.clone(),
        clock.clone(),
        config.clone(),
        stop.clone(),
    ));

    let mut terminate = signal(SignalKind::terminate())
        .map_err(|e| CliError(format!("cannot watch SIGTERM: {e}")))?;
    tokio::select! {
        _ = terminate.recv() => tracing::info!("SIGTERM: stopping"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: stopping"),
    }
    stop.cancel();
    // The API stops taking requests first (those in progress finish), then the scheduler.
    stop_serving.cancel();
    match server.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "the API server failed"),
        Err(e) => tracing::error!(error = %e, "the API server task failed"),
    }
    scheduler.stop().await;
    let _ = pruner.await;
    database.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// On a store with no tokens at all, `CRONWARDEN_ADMIN_TOKEN` (when set) becomes the first
/// admin token, named `admin`: a way in for a fresh deployment. Ignored once any token exists.
async fn bootstrap_admin_token(store: &dyn Store) -> Result<(), CliError> {
    let Ok(token) = std::env::var("CRONWARDEN_ADMIN_TOKEN") else {
        return Ok(());
    };
    let existing = store
        .list_tokens()
        .await
        .map_err(|e| CliError(format!("cannot read the tokens: {e}")))?;
    if !existing.is_empty() {
        tracing::info!("CRONWARDEN_ADMIN_TOKEN ignored: the store has tokens already");
        return Ok(());
    }
    if token.trim().len() < 16 {
        return Err(CliError(
            "CRONWARDEN_ADMIN_TOKEN is too short: use at least 16 characters (see `cronwarden tokens create`)"
                .to_owned(),
        ));
    }
    let created = store
        .create_token(
            "admin",
            Role::Admin,
            &api::hash_token(token.trim()),
            jiff::Timestamp::now(),
        )
        .await;
    match created {
        Ok(_) => tracing::info!("created the admin token from CRONWARDEN_ADMIN_TOKEN"),
        // Another node starting at the same moment created it first.
        Err(cronwarden::store::StoreError::Conflict(_)) => {
            tracing::info!("CRONWARDEN_ADMIN_TOKEN ignored: another node created the admin token")
        }
        Err(e) => return Err(CliError(format!("cannot store the admin token: {e}"))),
    }
    Ok(())
}

/// Prunes run history by the retention settings: at start, then every hour. On a shared
/// store only the node holding the maintenance lease prunes (one pruner for the cluster).
async fn prune_history(
    store: Arc<dyn Store>,
    scheduler: Scheduler,
    clock: Arc<dyn Clock>,
    config: Config,
    stop: CancellationToken,
) {
    let retention = config.settings.retention;
    loop {
        let cutoff = cronwarden::clock::saturating_add(clock.now(), -retention.max_age);
        if scheduler.is_maintainer() {
            match store.prune_runs(retention.keep_last, cutoff).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(deleted = n, "pruned run history"),
                Err(e) => {
                    tracing::warn!(error = %e, "pruning run history failed; will try again")
                }
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(PRUNE_EVERY) => {}
        }
    }
}
