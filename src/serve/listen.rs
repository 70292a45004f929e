//! The accept loop, with the limits no client can talk its way around: a cap on open
//! connections in all and per client address, a deadline for each request's headers
//! (which also closes connections that send nothing and keep-alive connections left
//! idle), and a shutdown that stops accepting, lets requests in flight finish, and
//! closes whatever is still open at the drain deadline. Request bodies have their own
//! deadline (`protect::read_body`).
//!
//! Every connection is accepted at once, so the listen backlog never holds a probe
//! behind idle sockets. One that finds the budget spent (its address holds
//! `max_per_client` connections, or all `max_connections` are open) is served in a
//! small reserve ([`RESERVE`] connections, one request each, [`RESERVE_HEADER_TIMEOUT`]
//! to send it): `/healthz`, `/readyz` and `/metrics` are answered as usual, anything
//! else gets 429 (its address is over its share) or 503 (the server is full) with
//! `Retry-After: 1`. Beyond the reserve, the connection gets that answer written
//! without reading anything, and is closed.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderValue, Method, Response, StatusCode};
use axum::Router;
use futures::future::Either;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Connections served over budget at once (probes only).
pub const RESERVE: usize = 64;
/// A connection over budget must send its request within this (or `header_timeout`, if shorter).
pub const RESERVE_HEADER_TIMEOUT: Duration = Duration::from_secs(2);
/// Paths answered over budget.
const PROBE_PATHS: [&str; 3] = ["/healthz", "/readyz", "/metrics"];
/// At most one log line per this about connections over budget.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// Connection limits of `triage serve`.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// Open connections at most (beyond it: the reserve, see the module doc).
    pub max_connections: usize,
    /// Open connections from one client address at most; 0: no per-client limit
    /// (behind a proxy every connection comes from the proxy's address).
    pub max_per_client: usize,
    /// A request's headers must arrive within this, counted from when the
    /// connection is ready for the next request (so a connection that sends nothing,
    /// and an idle keep-alive one, ends there too).
    pub header_timeout: Duration,
    /// A request's body must arrive within this, counted from its headers.
    pub body_timeout: Duration,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            max_connections: 1024,
            max_per_client: 512,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
        }
    }
}

/// Why a connection is over budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Over {
    /// Its address holds `max_per_client` connections.
    Client,
    /// `max_connections` are open.
    Total,
}

/// Open connections per client address.
#[derive(Default)]
struct Clients(Mutex<HashMap<IpAddr, usize>>);

/// One connection counted against its address; uncounted when dropped.
struct ClientSlot {
    clients: Arc<Clients>,
    ip: IpAddr,
}

impl Clients {
    fn counts(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Count one more connection of `ip`, unless it holds `max` already.
    fn take(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<ClientSlot> {
        let mut counts = self.counts();
        let n = counts.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(ClientSlot { clients: self.clone(), ip })
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut counts = self.clients.counts();
        if let Some(n) = counts.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

/// What a new connection gets.
enum Admission {
    /// Everything; holds its slots until it closes.
    Full(OwnedSemaphorePermit, Option<ClientSlot>),
    /// Probes only, one request.
    Reserve(OwnedSemaphorePermit, Over),
    /// The over-budget answer, then closed.
    Refused(Over),
}

struct Budget {
    limits: ConnLimits,
    slots: Arc<Semaphore>,
    reserve: Arc<Semaphore>,
    clients: Arc<Clients>,
    /// Connections over budget since the last log line, and when that was.
    over: (u64, Instant),
}

impl Budget {
    fn new(limits: ConnLimits) -> Self {
        Budget {
            limits,
            slots: Arc::new(Semaphore::new(limits.max_connections.max(1))),
            reserve: Arc::new(Semaphore::new(RESERVE)),
            clients: Arc::new(Clients::default()),
            over: (0, Instant::now()),
        }
    }

    fn admit(&mut self, ip: IpAddr) -> Admission {
        let client = match self.limits.max_per_client {
            0 => Ok(None),
            max => self.clients.take(ip.to_canonical(), max).map(Some).ok_or(Over::Client),
        };
        let over = match client {
            Ok(client) => match self.slots.clone().try_acquire_owned() {
                Ok(slot) => return Admission::Full(slot, client),
                Err(_) => Over::Total,
            },
            Err(over) => over,
        };
        self.note_over(ip, over);
        match self.reserve.clone().try_acquire_owned() {
            Ok(permit) => Admission::Reserve(permit, over),
            Err(_) => Admission::Refused(over),
        }
    }

    fn note_over(&mut self, ip: IpAddr, over: Over) {
        self.over.0 += 1;
        if self.over.1.elapsed() >= LOG_EVERY {
            let why = match over {
                Over::Client => format!("{ip} holds --max-connections-per-client ({})", self.limits.max_per_client),
                Over::Total => format!("--max-connections ({}) are open", self.limits.max_connections),
            };
            tracing::warn!("{} connection(s) over budget in the last {} s (latest: {why}); answering probes only", self.over.0, self.over.1.elapsed().as_secs());
            self.over = (0, Instant::now());
        }
    }
}

/// The answer to a request over budget: 429 when the client's address is over its
/// share, 503 when the server is full; `Retry-After: 1`, and the connection closes.
fn over_budget_answer(over: Over) -> (StatusCode, String) {
    let (status, message) = match over {
        Over::Client => (
            StatusCode::TOO_MANY_REQUESTS,
            "too many open connections from your address (--max-connections-per-client); close idle ones or retry \
             after 1 second",
        ),
        Over::Total => (
            StatusCode::SERVICE_UNAVAILABLE,
            "the server has its maximum of open connections (--max-connections); retry after 1 second",
        ),
    };
    (status, serde_json::json!({"error": {"code": "too_many_connections", "message": message}}).to_string())
}

fn over_budget(over: Over) -> Response<Body> {
    let (status, body) = over_budget_answer(over);
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// The same answer as bytes, for a connection refused without reading from it.
fn over_budget_bytes(over: Over) -> Vec<u8> {
    let (status, body) = over_budget_answer(over);
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
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
    let mut budget = Budget::new(limits);
    let (stop, stopping) = watch::channel(false);
    let mut full = hyper::server::conn::http1::Builder::new();
    full.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout);
    let mut reserve = hyper::server::conn::http1::Builder::new();
    reserve.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout.min(RESERVE_HEADER_TIMEOUT)).keep_alive(false);
    let mut conns = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        while conns.try_join_next().is_some() {}
        let (stream, peer) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(s) => s,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        match budget.admit(peer.ip()) {
            Admission::Full(slot, client) => {
                let conn = full.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
                conns.spawn(run_connection(conn, stopping.clone(), (slot, client)));
            }
            Admission::Reserve(permit, over) => {
                let probes = TowerToHyperService::new(app.clone());
                let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                    let probe = req.method() == Method::GET && PROBE_PATHS.contains(&req.uri().path());
                    if probe {
                        Either::Left(hyper::service::Service::call(&probes, req))
                    } else {
                        Either::Right(std::future::ready(Ok(over_budget(over))))
                    }
                });
                let conn = reserve.serve_connection(TokioIo::new(stream), service);
                conns.spawn(run_connection(conn, stopping.clone(), permit));
            }
            Admission::Refused(over) => refuse(stream, over),
        }
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

/// Write the over-budget answer if the socket takes it at once, and close.
fn refuse(stream: TcpStream, over: Over) {
    let _ = stream.try_write(&over_budget_bytes(over));
    drop(stream);
}

/// Drive one connection until it ends; on shutdown, finish the request in flight and
/// take no new one. `held` (its slots) is released when it ends.
async fn run_connection<C, E, H>(conn: C, mut stopping: watch::Receiver<bool>, held: H)
where
    C: Future<Output = Result<(), E>> + GracefulShutdown,
    E: std::fmt::Display,
{
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = stopping.changed() => {
            conn.as_mut().shutdown_gracefully();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!("connection ended: {e}");
    }
    drop(held);
}

/// `hyper`'s graceful shutdown of a connection, for any of its service types.
trait GracefulShutdown {
    fn shutdown_gracefully(self: std::pin::Pin<&mut Self>);
}

impl<S, B> GracefulShutdown for hyper::server::conn::http1::Connection<TokioIo<TcpStream>, S>
where
    S: hyper::service::HttpService<Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: hyper::body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn shutdown_gracefully(self: std::pin::Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))
    }

    #[test]
    fn each_address_gets_its_share_then_the_reserve_then_a_refusal() {
        let limits = ConnLimits { max_connections: 3, max_per_client: 2, ..ConnLimits::default() };
        let mut b = Budget::new(limits);
        let a1 = b.admit(ip("10.0.0.1"));
        let a2 = b.admit(ip("10.0.0.1"));
        assert!(matches!(a1, Admission::Full(..)) && matches!(a2, Admission::Full(..)));
        assert!(matches!(b.admit(ip("10.0.0.1")), Admission::Reserve(_, Over::Client)));
        // An IPv4-mapped IPv6 address is the same client.
        assert!(matches!(b.admit(ip("::ffff:10.0.0.1")), Admission::Reserve(_, Over::Client)));
        let other = b.admit(ip("10.0.0.2"));
        assert!(matches!(other, Admission::Full(..)));
        assert!(matches!(b.admit(ip("10.0.0.3")), Admission::Reserve(_, Over::Total)));
        // A closed connection frees its address's share and its slot.
        drop(a1);
        assert!(matches!(b.admit(ip("10.0.0.1")), Admission::Full(..)));
        assert!(b.clients.counts().len() <= 2);
        // The reserve is bounded: beyond it, refusals. (Two of three slots are held.)
        let held: Vec<Admission> = (0..=RESERVE).map(|_| b.admit(ip("10.0.0.9"))).collect();
        assert!(matches!(held[0], Admission::Full(..)));
        assert_eq!(held.iter().filter(|a| matches!(a, Admission::Reserve(_, Over::Total))).count(), RESERVE);
        assert!(matches!(b.admit(ip("10.0.0.9")), Admission::Refused(Over::Total)));
        let bytes = String::from_utf8(over_budget_bytes(Over::Client)).unwrap_or_default();
        assert!(bytes.starts_with("HTTP/1.1 429 Too Many Requests\r\n"), "{bytes}");
        assert!(bytes.contains("retry-after: 1\r\n") && bytes.ends_with('}'), "{bytes}");
    }

    #[test]
    fn no_per_client_limit_when_it_is_zero() {
        let mut b = Budget::new(ConnLimits { max_connections: 5, max_per_client: 0, ..ConnLimits::default() });
        let all: Vec<Admission> = (0..5).map(|_| b.admit(ip("10.0.0.1"))).collect();
        assert!(all.iter().all(|a| matches!(a, Admission::Full(..))));
        assert!(matches!(b.admit(ip("10.0.0.1")), Admission::Reserve(_, Over::Total)));
    }
}
