//! Registry changes between processors on one PostgreSQL database. Every
//! transaction that registers, re-owns or revokes a device also runs
//! `pg_notify('wattstream_registry', device_id)`; PostgreSQL delivers it at
//! commit to every session listening. Each processor keeps one such session
//! ([`listen`]) and refreshes the devices it hears about from the store, so a
//! revocation through one processor is enforced by the others as soon as the
//! notification arrives (milliseconds on a LAN), not at their next start.
//!
//! Notifications sent while a listener is disconnected are lost, so after
//! every (re)connection the listener says [`Change::Resync`]: reload every
//! device. That covers the start, too: changes between loading the registry
//! and listening are not missed.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_postgres::AsyncMessage;

/// The channel the store notifies on.
pub const CHANNEL: &str = "wattstream_registry";

/// A payload naming a project whose definitions changed (device ids are hex,
/// so they never start with it).
pub const PROJECT_PREFIX: &str = "project:";

/// What a listener hears.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// This device's row changed: read it again.
    Device(String),
    /// This project's applets or environment changed: reload it.
    Project(String),
    /// Listening (again): changes may have been missed, read every device.
    Resync,
}

/// Listens on `url` until the receiver is dropped, reconnecting (every
/// `retry`) when the session is lost.
pub fn listen(url: String, retry: Duration) -> mpsc::Receiver<Change> {
    let (tx, rx) = mpsc::channel(1024);
    tokio::spawn(async move {
        loop {
            match session(&url, &tx).await {
                Ok(()) => return, // the receiver is gone
                Err(e) => {
                    tracing::warn!(error = %e, "registry listener lost its PostgreSQL session; reconnecting")
                }
            }
            if tx.is_closed() {
                return;
            }
            tokio::time::sleep(retry).await;
        }
    });
    rx
}

/// One session: `LISTEN`, say `Resync`, forward notifications. `Ok` when the
/// receiver went away, `Err` when the session did.
async fn session(url: &str, tx: &mpsc::Sender<Change>) -> Result<(), String> {
    let mut config: tokio_postgres::Config = url.parse().map_err(|e: tokio_postgres::Error| e.to_string())?;
    config.application_name("wattstream-registry-listener");
    let (client, mut connection) = config
        .connect(tokio_postgres::NoTls)
        .await
        .map_err(|e| e.to_string())?;
    let (msgs_tx, mut msgs) = mpsc::unbounded_channel();
    // The connection must be polled for the client's LISTEN to complete and
    // for notifications to arrive; it ends when the session does.
    let driver = tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(n))) => {
                    if msgs_tx.send(Ok(n.payload().to_string())).is_err() {
                        return;
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    let _ = msgs_tx.send(Err(e));
                    return;
                }
                None => return,
            }
        }
    });
    client
        .batch_execute(&format!("LISTEN {CHANNEL}"))
        .await
        .map_err(|e| e.to_string())?;
    if tx.send(Change::Resync).await.is_err() {
        driver.abort();
        return Ok(());
    }
    loop {
        let next = tokio::select! {
            m = msgs.recv() => m,
            () = tx.closed() => {
                driver.abort();
                return Ok(());
            }
        };
        match next {
            Some(Ok(payload)) => {
                let change = match payload.strip_prefix(PROJECT_PREFIX) {
                    Some(project) => Change::Project(project.to_string()),
                    None => Change::Device(payload),
                };
                if tx.send(change).await.is_err() {
                    driver.abort();
                    return Ok(());
                }
            }
            Some(Err(e)) => return Err(e.to_string()),
            // The driver ended without an error: the server closed the session.
            None => return Err("the server closed the session".into()),
        }
    }
}
