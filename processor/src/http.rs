//! Serving the API to clients that may be hostile: an accept loop over
//! hyper's HTTP/1 server instead of `axum::serve`, which sets no timer and so
//! lets a slow-loris client hold a connection (and a file descriptor) forever.
//!
//! - headers must arrive within `limits.header_read_timeout_s`; the same
//!   timer runs while a kept-alive connection waits for its next request, so
//!   idle connections are closed too;
//! - bodies must arrive within `limits.body_read_timeout_s` (enforced where
//!   they are read, `api::read_body`);
//! - at most `limits.max_connections` connections are served at once; the
//!   rest wait in the kernel's backlog, so a flood delays clients instead of
//!   exhausting descriptors;
//! - on shutdown the listener closes, requests in flight finish (for at most
//!   30 s), and idle connections are closed;
//! - with TLS, the handshake runs in the connection's own task and must end
//!   within the header timeout too, so a client that opens a socket and says
//!   nothing holds it no longer than one that sends no headers;
//! - a client that closes its connection ends the response in flight at
//!   once: hyper reads the socket while it writes a response, and without
//!   half-closes (its default, kept here: never `half_close(true)`) the end
//!   of the stream drops the response, so a closed or reloaded dashboard
//!   gives its live stream's place back then, not at the next heartbeat's
//!   failed write 15 to 30 s on (`processor/tests/dashboard_api.rs`).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::config::Limits;
use crate::tls::Tls;

/// How long requests in flight may take to finish after shutdown begins.
const DRAIN: Duration = Duration::from_secs(30);

/// Serves `router` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: &Limits,
    tls: Option<Tls>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let handshake_within = Duration::from_secs(limits.header_read_timeout_s.max(1));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(limits.header_read_timeout_s.max(1)))
        .keep_alive(true);
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors and the like: pause rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let (http, router, watcher, tls) = (http.clone(), router.clone(), graceful.watcher(), tls.clone());
        tokio::spawn(async move {
            let service = TowerToHyperService::new(router);
            let result = match tls {
                None => {
                    watcher
                        .watch(http.serve_connection(TokioIo::new(stream), service))
                        .await
                }
                Some(tls) => {
                    match tokio::time::timeout(handshake_within, tls.acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            watcher
                                .watch(http.serve_connection(TokioIo::new(stream), service))
                                .await
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(error = %e, "TLS handshake failed");
                            Ok(())
                        }
                        Err(_) => {
                            tracing::debug!("TLS handshake timed out");
                            Ok(())
                        }
                    }
                }
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(DRAIN) => tracing::warn!("connections still open after {DRAIN:?}; closing them"),
    }
}
