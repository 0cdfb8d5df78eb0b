//! provider-http: a [`GpuInfoProvider`] that reads another node's GPUs from
//! its agent (`gpusel serve`) over HTTP, and the async [`Client`] a master
//! uses to poll many agents at once.
//!
//! ```text
//! GET {base}/api/v1/snapshot      Authorization: Bearer <token>   (if a token file is set)
//! 200 application/json            a gpusel_core::Snapshot, as `gpusel list --json` writes it
//! ```
//!
//! The snapshot is returned as the agent took it: its `host` is the remote
//! node's name, not this one's. It is validated like every provider's.
//!
//! - **Plain HTTP only.** There is no TLS stack in gpusel; `https://` gets an
//!   error that says how to tunnel instead. The agent serves read-only data.
//! - **Tokens come from files** ([`Token`]; the CLI names the file in
//!   [`ENV_TOKEN_FILE`] or its config file), never from the command
//!   line or the URL: every user of a machine can read its processes' argv.
//! - **Bounded.** A connect timeout ([`Settings::connect_timeout`], default
//!   3 s; the CLI reads [`ENV_CONNECT_TIMEOUT`]), a deadline on the whole
//!   request ([`Settings::timeout`], default 10 s; [`ENV_TIMEOUT`]), and a
//!   body cap ([`DEFAULT_MAX_BODY`]): a hostile or broken server can neither
//!   hang gpusel nor exhaust its memory.
//!
//! The client is hyper's, the HTTP stack the agent already serves with
//! (through axum), with hyper-util's pooled client: keep-alive connections
//! matter to a master that polls a hundred agents every few seconds, and
//! reqwest would add its URL, redirect and proxy machinery for nothing.

#![warn(missing_docs)]
// Library code reports failures as typed errors, never by panicking on
// them (tests may unwrap).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod client;
mod endpoint;
mod error;
pub mod limits;
pub mod nvgpu;
mod parse;
mod token;

use async_trait::async_trait;
use gpusel_core::{GpuInfoProvider, ProviderError, Snapshot};

pub use crate::client::{
    Client, DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_BODY, DEFAULT_TIMEOUT, Settings,
};
pub use crate::endpoint::{Endpoint, SNAPSHOT_PATH};
pub use crate::error::{ErrorClass, HttpError};
pub use crate::parse::Remote;
pub use crate::token::Token;

/// The private parsers, for the fuzz targets in `fuzz/`. Not part of the
/// API: it may change at any time.
#[doc(hidden)]
pub mod fuzzing {
    /// The message of an agent's JSON error body, if that is what it is.
    pub use crate::parse::agent_error;
    /// An agent's answer to `GET /api/v1/snapshot` as the provider reads it:
    /// the snapshot and the agent's status, validated; `url` names it in errors.
    pub use crate::parse::snapshot as answer;
}

/// Name of the provider in `--provider http://HOST:PORT`.
pub const NAME: &str = "http";
/// Environment variable naming a file that holds the agent's bearer token.
pub const ENV_TOKEN_FILE: &str = gpusel_core::config::ENV_HTTP_TOKEN_FILE;
/// Environment variable holding the limit on a whole request (`10s`, `500ms`,
/// or seconds).
pub const ENV_TIMEOUT: &str = gpusel_core::config::ENV_HTTP_TIMEOUT;
/// Environment variable holding the limit on making the connection.
pub const ENV_CONNECT_TIMEOUT: &str = gpusel_core::config::ENV_HTTP_CONNECT_TIMEOUT;

/// Reads a remote node's GPUs from its agent.
#[derive(Debug, Clone)]
pub struct HttpProvider {
    client: Client,
    endpoint: Endpoint,
    token: Option<Token>,
    /// A runtime of its own, for callers outside any (the CLI, a
    /// synchronous program using `gpusel_core::block_on`).
    runtime: std::sync::OnceLock<std::sync::Arc<tokio::runtime::Runtime>>,
}

impl HttpProvider {
    /// A provider for the agent at `endpoint`.
    pub fn new(client: Client, endpoint: Endpoint, token: Option<Token>) -> Self {
        HttpProvider {
            client,
            endpoint,
            token,
            runtime: std::sync::OnceLock::new(),
        }
    }

    /// The agent read.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    fn own_runtime(&self) -> Result<&tokio::runtime::Runtime, ProviderError> {
        if let Some(rt) = self.runtime.get() {
            return Ok(rt);
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| {
                ProviderError::failed(
                    self.endpoint.url(),
                    format!("cannot start the async runtime: {e}"),
                )
            })?;
        Ok(self.runtime.get_or_init(|| std::sync::Arc::new(rt)))
    }

    /// The snapshot and the agent's status exactly as the agent sent them,
    /// with the typed error.
    pub async fn fetch(&self) -> Result<Remote, HttpError> {
        self.client.fetch(&self.endpoint, self.token.as_ref()).await
    }
}

#[async_trait]
impl GpuInfoProvider for HttpProvider {
    fn name(&self) -> &str {
        self.endpoint.url()
    }

    /// The agent's snapshot; its `provider` becomes `nvml via http://...`,
    /// so that what `list` shows says where the data came from.
    async fn snapshot(&self) -> Result<Snapshot, ProviderError> {
        let Remote {
            mut snapshot,
            agent,
        } = if tokio::runtime::Handle::try_current().is_ok() {
            self.fetch().await?
        } else {
            self.own_runtime()?.block_on(self.fetch())?
        };
        if let Some(error) = agent.and_then(|a| a.last_error) {
            // Still worth showing, as long as it is clear how old it is.
            tracing::warn!(
                "{}: the agent's last attempt to read its GPUs failed ({error}); this is its last good snapshot, taken at {}",
                self.endpoint,
                gpusel_core::timefmt::format(snapshot.time)
            );
        }
        snapshot.provider = format!("{} via {}", snapshot.provider, self.endpoint);
        Ok(snapshot)
    }

    fn is_remote(&self) -> bool {
        true
    }
}
