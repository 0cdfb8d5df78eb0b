//! agent: the HTTP side of gpusel (`gpusel serve`).
//!
//! One background thread takes a snapshot every interval, adds the leases,
//! and renders it once into the bodies the server sends: the JSON of
//! `/api/v1/snapshot` and the Prometheus text of `/metrics`. Requests only
//! copy a pointer to those bodies (the dashboard is rendered from the same
//! snapshot), so no request ever touches the driver, and a slow or failing
//! driver shows as a stale snapshot with an error, never as a slow server.
//!
//! With an agents file, [`Server::run_master`] serves a whole cluster
//! instead: see [`master`].
//!
//! Routes ([`routes::router`]): `GET /` (dashboard), `GET /api/v1/snapshot`,
//! `GET /metrics`, `GET /healthz`. Everything is read-only; see
//! [`ServeOptions`] for the safety settings.
//!
//! ```no_run
//! # async fn demo(provider: Box<dyn gpusel_core::GpuInfoProvider>) -> Result<(), gpusel_agent::AgentError> {
//! let options = gpusel_agent::ServeOptions::new("127.0.0.1:9477".parse().unwrap());
//! let server = gpusel_agent::Server::bind(options).await?;
//! println!("listening on {}", server.local_addr());
//! // Serves until `stop` is sent or dropped (`gpusel serve`: SIGTERM or SIGINT).
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! # drop(stop);
//! server.run(provider, async { let _ = stopped.await; }).await
//! # }
//! ```

#![warn(missing_docs)]
// Library code reports failures as typed errors, never by panicking on
// them (tests may unwrap).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod auth;
mod conns;
mod error;
mod latest;
pub mod master;
pub mod metrics;
mod options;
mod page;
mod poller;
mod redact;
pub mod routes;
mod server;
mod state;

pub use error::AgentError;
pub use options::{DEFAULT_PORT, ServeOptions, Token};
pub use server::{HEADER_TIMEOUT, MAX_HEADER_BYTES, Server, serve_router};
pub use state::{Published, State};
