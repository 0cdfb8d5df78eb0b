//! The listener and its connections: hyper with a header timeout and a
//! header size limit, a cap on connections that sheds idle ones, and a
//! graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use gpusel_core::GpuInfoProvider;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

use crate::conns::{BusyHandle, Conns};
use crate::error::AgentError;
use crate::options::ServeOptions;
use crate::poller::{self, LoopOptions};
use crate::routes;
use crate::state::{Published, State};

/// How long an attempt to read the GPUs may run before it is shown as a
/// failure (the provider is then likely hung in a driver call), and the
/// longest the server waits for the first snapshot before it starts
/// answering (with 503 until the snapshot arrives).
pub const STALL: Duration = Duration::from_secs(5);

/// How many connections the kernel may hold ready for `accept` (it caps
/// this at `net.core.somaxconn`, 4096 by default). Under a flood of
/// connections a fuller queue costs a new client milliseconds, since every
/// queued one is accepted (and, at the cap, an idle one shed) in
/// microseconds; a full queue drops its SYN, which costs it a second.
const BACKLOG: u32 = 4096;

/// A listening socket on `addr`, with [`BACKLOG`].
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// A bound, not yet serving, agent.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    addr: SocketAddr,
    options: ServeOptions,
}

impl Server {
    /// Binds the listen address, so that a port in use fails before anything
    /// else starts. Port 0 picks a free port: see [`local_addr`](Self::local_addr).
    pub async fn bind(options: ServeOptions) -> Result<Self, AgentError> {
        let bind_error = |source| AgentError::Bind {
            addr: options.listen,
            source,
        };
        let listener = listen(options.listen).map_err(bind_error)?;
        let addr = listener.local_addr().map_err(bind_error)?;
        Ok(Server {
            listener,
            addr,
            options,
        })
    }

    /// The listener and the options, for a server that serves another router.
    pub(crate) fn into_parts(self) -> (TcpListener, ServeOptions) {
        (self.listener, self.options)
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Starts the snapshot loop on `provider`, waits (briefly) for its first
    /// snapshot, and serves until `shutdown` completes; then stops accepting,
    /// lets requests in flight finish (up to the grace period) and returns.
    pub async fn run(
        self,
        provider: Box<dyn GpuInfoProvider>,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), AgentError> {
        let options = &self.options;
        let mut local = Local::start(provider, options)?;
        let mut shutdown = std::pin::pin!(shutdown);
        tokio::select! {
            _ = tokio::time::timeout(STALL, &mut local.first) => {}
            () = &mut shutdown => return Ok(()),
        }
        let state = Arc::clone(&local.state);
        let app = routes::router(state, options.request_timeout);
        serve_router(self.listener, app, options, shutdown).await;
        Ok(())
    }
}

/// This machine's GPUs, read in the background: the snapshot loop and the
/// watchdog that flags it when its provider hangs. Both stop when this is
/// dropped.
pub(crate) struct Local {
    /// What the loop publishes.
    pub(crate) state: Arc<State>,
    /// Told once the first round is published.
    pub(crate) first: tokio::sync::oneshot::Receiver<()>,
    _poller: poller::Poller,
    watchdog: tokio::task::JoinHandle<()>,
}

impl Local {
    /// Starts the loop on `provider` and its watchdog.
    pub(crate) fn start(
        provider: Box<dyn GpuInfoProvider>,
        options: &ServeOptions,
    ) -> Result<Self, AgentError> {
        let state = Arc::new(
            State::new(
                Published::starting(options.interval, options.expose_cmdline),
                options.token.clone(),
                options.interval,
            )
            .with_idle_rules(options.idle),
        );
        let provider_name = provider.name().to_string();
        let (first_tx, first) = tokio::sync::oneshot::channel();
        let poller = poller::spawn(
            provider,
            LoopOptions {
                interval: options.interval,
                lock_dir: options.lock_dir.clone(),
                expose_cmdline: options.expose_cmdline,
            },
            Arc::clone(&state),
            first_tx,
        )?;
        let watchdog = tokio::spawn(watch(Arc::clone(&state), provider_name));
        Ok(Local {
            state,
            first,
            _poller: poller,
            watchdog,
        })
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        self.watchdog.abort();
    }
}

/// Once a second, checks whether the snapshot loop is stuck in its provider.
async fn watch(state: Arc<State>, provider: String) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        state.check_stalled(STALL, |round, running| {
            let mut status = round.status.clone();
            status.up = false;
            status.last_error = Some(format!(
                "provider '{provider}' has not answered for {} s; the driver may be hung",
                running.as_secs()
            ));
            Published::render(round.snapshot.clone(), status, running, round.errors_total)
        });
    }
}

/// The longest a client may take to send a request's headers (and the
/// longest a kept-alive connection may sit idle), unless the request
/// timeout is shorter. A client on the slowest link sends a GET's few
/// hundred bytes in well under a second; a slot held longer only serves
/// someone holding it on purpose.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(3);

/// The largest request head (request line and headers) accepted: larger
/// ones get `431 Request Header Fields Too Large`.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Serves `app` on `listener` until `shutdown`, with the connection limits of
/// `options`. The master serves its router through this too.
///
/// At the connection cap the oldest connection that is not answering a
/// request is closed to make room (see `conns.rs`), so that clients
/// that hold connections open without finishing a request cannot lock
/// everyone else out.
pub async fn serve_router(
    listener: TcpListener,
    app: Router,
    options: &ServeOptions,
    shutdown: impl Future<Output = ()>,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    // A client must send its headers within HEADER_TIMEOUT: a slow client
    // cannot hold a connection (and a shutdown) open for long.
    http.timer(TokioTimer::new())
        .header_read_timeout(options.request_timeout.min(HEADER_TIMEOUT))
        .max_header_size(MAX_HEADER_BYTES)
        .max_buf_size(MAX_HEADER_BYTES);
    let graceful = GracefulShutdown::new();
    let conns = Conns::new(options.max_connections);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            () = conns.room() => {}
            () = &mut shutdown => break,
        }
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors or a connection reset before accept:
                    // pause instead of spinning, then go on serving.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let mut slot = conns.open();
        let service = Tracked {
            inner: TowerToHyperService::new(app.clone()),
            busy: slot.busy_handle(),
        };
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            tokio::select! {
                ended = connection => if let Err(e) = ended {
                    tracing::debug!(error = %e, "connection ended with an error");
                },
                _ = &mut slot.shed => {
                    tracing::debug!("connection shed to make room for a new one");
                }
            }
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(options.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            "requests still running after {:?}; closing them",
            options.shutdown_grace
        );
    }
}

/// The app as hyper calls it, with the connection marked busy while a
/// request is answered (a busy connection is not shed).
struct Tracked<S> {
    inner: S,
    busy: BusyHandle,
}

impl<S, B> hyper::service::Service<hyper::Request<B>> for Tracked<S>
where
    S: hyper::service::Service<hyper::Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = std::pin::Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn call(&self, request: hyper::Request<B>) -> Self::Future {
        let busy = self.busy.enter();
        let answer = self.inner.call(request);
        Box::pin(async move {
            let response = answer.await;
            drop(busy);
            response
        })
    }
}
