//! The accept loop, with the limits no client can talk its way around: a cap on open
//! connections, a deadline for each request's headers (which also closes keep-alive
//! connections left idle), and a shutdown that stops accepting, lets requests in
//! flight finish, and closes whatever is still open at the drain deadline. Request
//! bodies have their own deadline (`protect::read_body`).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Connection limits of `triage serve`.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// Open connections at most; beyond it new connections wait in the listen backlog.
    pub max_connections: usize,
    /// A request's headers must arrive within this, counted from when the
    /// connection is ready for the next request (so idle keep-alive ends there too).
    pub header_timeout: Duration,
    /// A request's body must arrive within this, counted from its headers.
    pub body_timeout: Duration,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            max_connections: 1024,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
        }
    }
}

/// Serve `app` on `listener` until `shutdown` resolves; then stop accepting, ask every
/// connection to close after its current request, and wait at most `drain` for them.
/// Connections still open at that deadline are closed (their requests cancelled).
/// Returns the deadline, so what else drains after the connections (webhook
/// deliveries) can share it.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnLimits,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) -> Instant {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let (stop, stopping) = watch::channel(false);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout);
    let mut conns = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        while conns.try_join_next().is_some() {}
        let slot = tokio::select! {
            biased;
            () = &mut shutdown => break,
            slot = slots.clone().acquire_owned() => match slot {
                Ok(s) => s,
                Err(_) => break,
            },
        };
        let stream = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let service = TowerToHyperService::new(app.clone());
        let conn = http.serve_connection(TokioIo::new(stream), service);
        let mut stopping = stopping.clone();
        conns.spawn(async move {
            tokio::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                _ = stopping.changed() => {
                    // Finish the request in flight, take no new one.
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                tracing::debug!("connection ended: {e}");
            }
            drop(slot);
        });
    }
    drop(listener);
    let deadline = Instant::now() + drain;
    let _ = stop.send(true);
    let open = conns.len();
    let drained = tokio::time::timeout_at(deadline, async { while conns.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(
            "closing {} of {open} connection(s) still open at the drain deadline ({} s)",
            conns.len(),
            drain.as_secs_f64()
        );
        conns.shutdown().await;
    }
    deadline
}
