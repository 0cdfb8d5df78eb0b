//! How `gpusel serve` is set up.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The port `gpusel serve` listens on by default: next to dcgm-exporter's
/// 9400 in the exporters' range, and free of the well-known ones.
pub const DEFAULT_PORT: u16 = 9477;

/// Everything the server needs besides the provider.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Where to listen. `127.0.0.1` unless the operator chooses to expose it.
    pub listen: SocketAddr,
    /// How often to take a snapshot.
    pub interval: Duration,
    /// The lease directory whose leases are shown.
    pub lock_dir: PathBuf,
    /// Required from every client except `/healthz`, when set.
    pub token: Option<Token>,
    /// Serve process command lines (and lease holders' and waiters' full
    /// commands).
    /// Off by default: arguments can hold secrets.
    pub expose_cmdline: bool,
    /// The longest a request may take, headers included, before it is cut off.
    pub request_timeout: Duration,
    /// The most connections served at once. At the cap the oldest one not
    /// answering a request is closed to make room; while every one is
    /// answering a request, new ones wait to be accepted.
    pub max_connections: usize,
    /// How long a shutdown waits for requests in flight.
    pub shutdown_grace: Duration,
    /// The idle rules the dashboard's marks, the nvgpu `is_available` and
    /// the master's idle count apply (the site's, as `gpusel list`'s).
    pub idle: gpusel_core::IdleRules,
}

impl ServeOptions {
    /// The defaults, listening on `listen`: a snapshot every 2 s, leases from
    /// [`gpusel_core::DEFAULT_LOCK_DIR`], no token, no command lines.
    pub fn new(listen: SocketAddr) -> Self {
        ServeOptions {
            listen,
            interval: Duration::from_secs(2),
            lock_dir: PathBuf::from(gpusel_core::DEFAULT_LOCK_DIR),
            token: None,
            expose_cmdline: false,
            request_timeout: Duration::from_secs(10),
            max_connections: 1024,
            shutdown_grace: Duration::from_secs(5),
            idle: gpusel_core::IdleRules::default(),
        }
    }
}

/// The bearer token clients must send, read from a file so that it never
/// shows in `ps` or the shell history: the same type, read by the same rule,
/// as the token the `http://` provider and the master send to agents.
pub use gpusel_http::Token;
