//! The HTTP listener: an accept loop over hyper's HTTP/1.1 server, with the bounds `axum::serve` lacks. Same
//! protocols as `axum::serve` gave us (HTTP/1.1; axum's `http2` feature is off, so no h2c), minus connection
//! upgrades, which no route uses. hyper's own `header_read_timeout` is not used: it runs from the moment a
//! connection waits for a request, so it cannot tell an idle keep-alive connection from a slow head.
//!
//! - a connection cap (`http_max_connections`): beyond it a new connection is accepted and closed at once (the
//!   client sees the connection closed and retries; the kernel's backlog does not fill with connections that
//!   would only time out), counted in `wabridge_http_connections_refused_total`;
//! - an idle timeout (`http_idle_timeout_ms`): a connection with no request in progress, new or kept alive
//!   after a response, is closed when no byte of a next request arrives in time;
//! - a header-read timeout (`http_header_read_timeout_ms`): from the first byte of a request head to its end
//!   (slowloris);
//! - a body-read deadline (`http_body_read_timeout_ms`, [`body_deadline`]): the whole body must arrive within
//!   this long of its head, else 408 and the connection is closed.
//!
//! Timed-out connections are dropped (closed) and counted in `wabridge_http_connections_timed_out_total{phase}`.
//! Graceful stop: the listener closes, idle connections close, in-flight requests finish.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify, Semaphore};
use tokio::time::{Instant, Sleep};
use tower::ServiceExt;

use super::error::ApiError;
use super::AppState;
use crate::metrics::{Metrics, PhaseLabels};

/// The connection bounds, from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub idle_timeout: Duration,
    pub header_read_timeout: Duration,
}

impl Limits {
    pub fn from_config(c: &crate::config::Config) -> Limits {
        Limits {
            max_connections: c.http_max_connections,
            idle_timeout: Duration::from_millis(c.http_idle_timeout_ms),
            header_read_timeout: Duration::from_millis(c.http_header_read_timeout_ms),
        }
    }
}

/// Serves `app` on `listener` until `stop` turns true, then stops gracefully: stops accepting, lets in-flight
/// requests finish, and returns when every connection is closed.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) -> io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.keep_alive(true);
    let mut accept_failing = false;
    let mut refusing = false;
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stop.wait_for(|s| *s) => break,
        };
        let (stream, peer) = match accepted {
            Ok((stream, peer)) => {
                if accept_failing {
                    tracing::info!("HTTP listener accepts connections again");
                    accept_failing = false;
                }
                (stream, peer)
            }
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                // EMFILE/ENFILE and the like: the next accept would fail at once too. Log once per streak, wait.
                if !accept_failing {
                    tracing::error!(error = %e, "HTTP accept failed; retrying every second until it works");
                    accept_failing = true;
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    _ = stop.wait_for(|s| *s) => break,
                }
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            metrics.http_connections_refused.inc();
            if !refusing {
                tracing::warn!(
                    limit = limits.max_connections,
                    "HTTP connection limit reached: closing new connections"
                );
                refusing = true;
            }
            drop(stream);
            continue;
        };
        if refusing && slots.available_permits() > limits.max_connections / 10 {
            tracing::info!("HTTP connections below the limit again");
            refusing = false;
        }
        let _ = stream.set_nodelay(true);
        let conn_state = Arc::new(ConnState::new(limits));
        let io = TokioIo::new(TrackedIo { inner: stream, state: conn_state.clone() });
        let service = ConnService { app: app.clone(), state: conn_state.clone(), peer };
        let conn = graceful.watch(builder.serve_connection(io, service));
        let metrics = metrics.clone();
        metrics.http_connections_open.inc();
        tokio::spawn(async move {
            let _permit = permit;
            tokio::select! {
                r = conn => if let Err(e) = r {
                    tracing::trace!(error = %e, "HTTP connection ended with an error");
                },
                phase = conn_state.expired() => {
                    metrics.http_connections_timed_out.get_or_create(&PhaseLabels { phase: phase.into() }).inc();
                }
            }
            metrics.http_connections_open.dec();
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// Errors of one connection that the next `accept` does not share (as `axum::serve` and hyper treat them).
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    )
}

/// Where a connection is: waiting for a request (since), reading a request head (since its first byte), or
/// serving requests (how many; hyper's HTTP/1.1 serves one at a time, upgrades aside).
#[derive(Debug, Clone, Copy)]
enum Phase {
    Idle(Instant),
    Head(Instant),
    Busy(usize),
}

struct ConnState {
    phase: Mutex<Phase>,
    changed: Notify,
    limits: Limits,
}

impl ConnState {
    fn new(limits: Limits) -> Self {
        ConnState { phase: Mutex::new(Phase::Idle(Instant::now())), changed: Notify::new(), limits }
    }

    fn set(&self, f: impl FnOnce(Phase) -> Phase) {
        let mut p = self.phase.lock().unwrap_or_else(|e| e.into_inner());
        *p = f(*p);
        drop(p);
        self.changed.notify_one();
    }

    /// Bytes arrived: an idle connection starts reading a request head.
    fn on_read(&self) {
        let idle = matches!(*self.phase.lock().unwrap_or_else(|e| e.into_inner()), Phase::Idle(_));
        if idle {
            self.set(|p| if let Phase::Idle(_) = p { Phase::Head(Instant::now()) } else { p });
        }
    }

    fn begin(&self) {
        self.set(|p| match p {
            Phase::Busy(n) => Phase::Busy(n + 1),
            _ => Phase::Busy(1),
        });
    }

    fn end(&self) {
        self.set(|p| match p {
            Phase::Busy(n) if n > 1 => Phase::Busy(n - 1),
            _ => Phase::Idle(Instant::now()),
        });
    }

    fn deadline(&self) -> Option<(Instant, &'static str)> {
        match *self.phase.lock().unwrap_or_else(|e| e.into_inner()) {
            Phase::Idle(t) => Some((t + self.limits.idle_timeout, "idle")),
            Phase::Head(t) => Some((t + self.limits.header_read_timeout, "header")),
            Phase::Busy(_) => None,
        }
    }

    /// Resolves with the phase whose timeout ran out (never while a request is being served).
    async fn expired(&self) -> &'static str {
        loop {
            // `notify_one` keeps a permit when nobody waits, so a change between reading the deadline and waiting
            // is not lost.
            match self.deadline() {
                None => self.changed.notified().await,
                Some((at, phase)) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(at) => {
                            if let Some((at, now_phase)) = self.deadline() {
                                if at <= Instant::now() && now_phase == phase {
                                    return phase;
                                }
                            }
                        }
                        _ = self.changed.notified() => {}
                    }
                }
            }
        }
    }
}

/// The socket, telling the connection state when bytes arrive.
struct TrackedIo {
    inner: TcpStream,
    state: Arc<ConnState>,
}

impl AsyncRead for TrackedIo {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.state.on_read();
        }
        r
    }
}

impl AsyncWrite for TrackedIo {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The router, per connection: marks the connection busy from a request's head until its response is sent, and
/// gives every request the connection's peer address (axum's `ConnectInfo<SocketAddr>`, as `axum::serve` does).
#[derive(Clone)]
struct ConnService {
    app: Router,
    state: Arc<ConnState>,
    peer: SocketAddr,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl hyper::service::Service<Request<Incoming>> for ConnService {
    type Response = Response<BusyBody>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        req.extensions_mut().insert(ConnectInfo(self.peer));
        self.state.begin();
        let guard = BusyGuard(self.state.clone());
        let app = self.app.clone();
        Box::pin(async move {
            let resp = match app.oneshot(req.map(Body::new)).await {
                Ok(r) => r,
                Err(never) => match never {},
            };
            Ok(resp.map(|inner| BusyBody { inner, _guard: guard }))
        })
    }
}

/// Ends the connection's busy phase when dropped (the response body was sent, or the connection went away).
struct BusyGuard(Arc<ConnState>);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.end();
    }
}

/// A response body that holds the connection's [`BusyGuard`] until hyper is done with it.
pub struct BusyBody {
    inner: Body,
    _guard: BusyGuard,
}

impl http_body::Body for BusyBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Middleware: the whole request body must arrive within `http_body_read_timeout_ms` of the request head; when
/// it does not, whatever the handler made of the failed read becomes 408 and the connection is closed.
pub async fn body_deadline(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if http_body::Body::is_end_stream(req.body()) {
        return next.run(req).await;
    }
    let timeout = Duration::from_millis(state.config.http_body_read_timeout_ms);
    let hit = Arc::new(AtomicBool::new(false));
    let flag = hit.clone();
    let req = req.map(|inner| {
        Body::new(DeadlineBody {
            inner,
            sleep: Box::pin(tokio::time::sleep_until(Instant::now() + timeout)),
            hit: flag,
        })
    });
    let resp = next.run(req).await;
    if !hit.load(Ordering::Relaxed) {
        return resp;
    }
    let mut resp = ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        "request_timeout",
        format!("the request body did not arrive within {} ms", timeout.as_millis()),
    )
    .into_response();
    resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// A request body that fails once its deadline has passed.
struct DeadlineBody {
    inner: Body,
    sleep: Pin<Box<Sleep>>,
    hit: Arc<AtomicBool>,
}

#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
pub struct BodyTimeout;

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        if self.sleep.as_mut().poll(cx).is_ready() {
            self.hit.store(true, Ordering::Relaxed);
            return Poll::Ready(Some(Err(axum::Error::new(BodyTimeout))));
        }
        Poll::Pending
    }
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
