//! Starting and stopping the processor: open the store, load the registry, serve
//! HTTP until SIGTERM or Ctrl-C, then stop accepting, let in-flight requests and
//! their commits finish, and close the store.

use std::sync::Arc;

use tokio::net::TcpListener;

use crate::api::{AppState, router};
use crate::applets::projects::Projects;
use crate::applets::worker::Worker;
use crate::config::Config;
use crate::engine;
use crate::metrics::Metrics;
use crate::pipeline::Pipeline;
use crate::registry::Registry;
use crate::rewards::Rewards;

/// Runs the server until a shutdown signal. `on_listen` gets the bound address
/// (useful with port 0).
pub async fn serve(config: Config, on_listen: impl FnOnce(std::net::SocketAddr)) -> anyhow::Result<()> {
    serve_until(config, on_listen, shutdown_signal()).await
}

/// Like [`serve`], stopping when `shutdown` completes instead of on a signal.
pub async fn serve_until(
    config: Config,
    on_listen: impl FnOnce(std::net::SocketAddr),
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::default());
    let engine::Opened {
        writer,
        reads,
        writer_done,
        projects,
        rewards,
        onboarding,
        stream,
        pg,
        store_writers,
    } = engine::open(&config, metrics.clone()).await?;
    let rows = reads.all_devices().await?;
    let registry = Arc::new(Registry::from_rows(&rows));
    // On PostgreSQL, other processors' registrations, revocations and deploys.
    let follower = config
        .store
        .url
        .clone()
        .map(|url| engine::follow(url, reads.clone(), registry.clone(), projects.clone()));
    if config.admin_token.is_none() {
        tracing::warn!("no admin token configured: the admin API (register, revoke) is disabled");
    }
    tracing::info!(processor_public_key = %rewards.public_key(), "rewards ledger ready");
    // The chains applets send to: their calls see them from the first event on.
    let chains = Arc::new(crate::chain::adapter::Chains::open(
        &config.chain_configs().map_err(anyhow::Error::msg)?,
        tokio::runtime::Handle::current(),
    )?);
    projects.runtime.set_chains(chains.clone());
    projects.runtime.set_stored_log_level(config.applets.log_level);
    let settlement = settlement_of(&config.dashboard, &chains)?;
    let senders: Vec<crate::chain::sender::Sender> = chains
        .ids()
        .into_iter()
        .filter_map(|id| chains.get(id).cloned())
        .map(|conn| {
            tracing::info!(chain = conn.id, address = %conn.address, "sending applet transactions");
            crate::chain::sender::Sender::start(
                conn,
                projects.clone(),
                metrics.clone(),
                tokio::runtime::Handle::current(),
            )
        })
        .collect();
    let worker = Worker::start(
        projects.clone(),
        stream,
        config.applets.clone(),
        config.limits.paid_time(),
        metrics.clone(),
    );
    let projects_for_ledger = projects.clone();
    let live = crate::live::Live::default();
    let (stopping_tx, stopping) = tokio::sync::watch::channel(false);
    let state = Arc::new(AppState {
        pipeline: Pipeline {
            registry: registry.clone(),
            writer: writer.clone(),
            limits: config.limits.clone(),
            metrics: metrics.clone(),
            applets: Some(worker.waker.clone()),
            live: Some(live.clone()),
        },
        reads,
        writer,
        registry,
        metrics,
        admin_token: config.admin_token.clone(),
        max_lag_events: config.applets.max_lag_events,
        worker_stall: std::time::Duration::from_secs(config.applets.stall_after_s.max(1)),
        projects: projects.clone(),
        applets: worker.waker.clone(),
        default_project: config.applets.default_project.clone(),
        rewards: rewards.clone(),
        read_tokens: crate::read_tokens::ReadTokens::open(&config.data_dir)?,
        onboarding,
        live: live.clone(),
        streams: Arc::new(tokio::sync::Semaphore::new(config.dashboard.max_streams)),
        dashboard: config.dashboard.clone(),
        chains: chains.clone(),
        settlement,
        stopping,
    });
    let retention_task = tokio::spawn(run_retention(
        config.clone(),
        projects_for_ledger.clone(),
        pg,
        store_writers,
    ));
    let ledger_task = tokio::spawn(run_ledger(
        rewards,
        projects_for_ledger,
        config.applets.default_project.clone(),
        config.store.url.is_some(),
        live,
    ));
    let tls = match (&config.tls.cert, &config.tls.key) {
        (Some(cert), Some(key)) => Some(crate::tls::Tls::open(cert, key)?),
        _ => None,
    };
    let reload = tls.as_ref().map(crate::tls::Tls::reload_on_sighup).transpose()?;
    let (stop_mqtt, stop_rx) = tokio::sync::watch::channel(false);
    let mqtt = match &config.mqtt.url {
        Some(_) => Some(crate::mqtt::start(
            &config.mqtt,
            &config.data_dir,
            state.clone(),
            stop_rx,
        )?),
        None => None,
    };
    let listener = TcpListener::bind(config.listen).await?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, data_dir = %config.data_dir.display(), devices = rows.len(), "wattstream listening");
    on_listen(addr);
    wattstream_sdk::notify::ready();
    let watchdog = tokio::spawn(watchdog(
        state.writer.clone(),
        state.metrics.clone(),
        state.worker_stall,
    ));
    // Live streams never finish on their own: they end when shutdown begins,
    // so the drain waits only for real requests.
    let shutdown = async move {
        shutdown.await;
        let _ = stopping_tx.send(true);
    };
    crate::http::serve(listener, router(state), &config.limits, tls, shutdown).await;
    watchdog.abort();
    if let Some(reload) = reload {
        reload.abort();
    }
    // MQTT stops taking messages; whatever it had not acknowledged stays with
    // the broker and comes back on the next start (a duplicate if it was stored).
    let _ = stop_mqtt.send(true);
    if let Some(mqtt) = mqtt {
        let _ = mqtt.await;
    }
    wattstream_sdk::notify::stopping();
    tracing::info!("stopped accepting; finishing the applet batch in progress and the store writer");
    tokio::task::spawn_blocking(move || worker.stop()).await?;
    // What the last batch left is sent on the next start, if not now.
    tokio::task::spawn_blocking(move || senders.into_iter().for_each(crate::chain::sender::Sender::stop))
        .await?;
    ledger_task.abort();
    retention_task.abort();
    if let Some(f) = follower {
        f.abort();
    }
    // Every handler has finished, so the last writer handle is gone with the
    // router; the writer drains what is queued, commits and exits.
    writer_done.wait().await?;
    tracing::info!("shut down cleanly");
    Ok(())
}

/// `dashboard.settlement_chain` and `distributor`: both or neither, an
/// address, and a configured chain.
fn settlement_of(
    d: &crate::config::DashboardConfig,
    chains: &crate::chain::adapter::Chains,
) -> anyhow::Result<Option<(u64, alloy::primitives::Address)>> {
    match (d.settlement_chain, &d.distributor) {
        (None, None) => Ok(None),
        (Some(id), Some(a)) => {
            let address = a
                .parse()
                .map_err(|e| anyhow::anyhow!("dashboard.distributor {a:?} is not an address: {e}"))?;
            anyhow::ensure!(
                chains.get(id).is_some(),
                "dashboard.settlement_chain = {id} needs [chains.{id}] (its rpc and key_file)"
            );
            Ok(Some((id, address)))
        }
        _ => anyhow::bail!("dashboard.settlement_chain and dashboard.distributor go together"),
    }
}

/// The systemd watchdog: pinged only while the event loop runs, the store
/// writer answers (it has worked through everything queued before the probe)
/// and the applet worker beats; when any of them wedges the pings stop and
/// systemd restarts the processor.
async fn watchdog(
    writer: crate::store::Writer,
    metrics: Arc<crate::metrics::Metrics>,
    stall: std::time::Duration,
) {
    use std::time::Duration;
    let mut dog = wattstream_sdk::notify::Watchdog::from_env();
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let writer_ok = tokio::time::timeout(Duration::from_secs(10), writer.ping())
            .await
            .unwrap_or(false);
        let worker_ok = metrics.worker.since_beat().is_none_or(|a| a < stall);
        if writer_ok && worker_ok {
            dog.ping();
        } else {
            tracing::error!(
                writer_ok,
                worker_ok,
                "not pinging the systemd watchdog: a part of the processor is stuck"
            );
        }
    }
}

/// Every second: move every new applet credit into the ledger, seal what is
/// due. On PostgreSQL the credits come from the queue, whichever processor's
/// worker made them; one processor at a time holds the ledger.
async fn run_ledger(
    rewards: Arc<Rewards>,
    projects: Arc<Projects>,
    project: String,
    queue: bool,
    live: crate::live::Live,
) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tick.tick().await;
        let (r, p, name) = (rewards.clone(), projects.clone(), project.clone());
        let live = live.clone();
        let result = tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            use crate::live::LiveEvent;
            let credits = if queue {
                r.accrue(&crate::rewards::Credits::Queue(&name))?
            } else if let Some(project) = p.get(&name) {
                r.accrue(&crate::rewards::Credits::Project(&project.db))?
            } else {
                0
            };
            if credits > 0 {
                live.publish(LiveEvent::Ledger { credits });
            }
            for epoch in r.seal_due(crate::pipeline::unix_now())? {
                live.publish(LiveEvent::Seal { epoch });
            }
            Ok(())
        })
        .await;
        match result {
            Ok(Err(e)) => tracing::error!(error = %e, "rewards ledger"),
            Err(e) => tracing::error!(error = %e, "rewards ledger task"),
            Ok(Ok(())) => {}
        }
    }
}

/// Every `store.retention_every_s`, starting a minute after start: remove
/// what `store.retention_days` allows (see [`crate::retention`]).
async fn run_retention(
    config: Config,
    projects: Arc<Projects>,
    pg: Option<crate::applets::lease::PgWork>,
    store: Option<crate::store::OtherWriters>,
) {
    let every = std::time::Duration::from_secs(config.store.retention_every_s.max(60));
    let first = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut tick = tokio::time::interval_at(first, every);
    loop {
        tick.tick().await;
        let (c, p, pg, store) = (config.clone(), projects.clone(), pg.clone(), store.clone());
        let result = tokio::task::spawn_blocking(move || {
            let (project, days, epoch_s) = (
                &c.applets.default_project,
                c.store.retention_days,
                c.rewards.epoch_s,
            );
            let now = crate::pipeline::unix_now();
            match &pg {
                None => {
                    crate::retention::run_once(&c.data_dir, &p, project, (days, epoch_s), now, store.as_ref())
                }
                // Another processor doing the pass counts as nothing removed here.
                Some(w) => crate::retention::pg::run_once(w, &p, project, days, epoch_s, now)
                    .map(Option::unwrap_or_default),
            }
        })
        .await;
        match result {
            Ok(Ok(r)) if r != crate::retention::Removed::default() => {
                tracing::info!(?r, "retention removed old rows");
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "retention"),
            Err(e) => tracing::error!(error = %e, "retention task"),
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = ctrl_c => {},
        _ = term.recv() => {},
    }
    tracing::info!("shutdown signal received");
}
