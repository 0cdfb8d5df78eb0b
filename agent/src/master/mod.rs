//! The master: `gpusel serve --agents FILE` polls every agent the file
//! lists (and, for its `self` entry, this machine's own GPUs) and shows all
//! nodes on one page, in `/api/v1/cluster` and in `/metrics`.
//!
//! Every interval all nodes are polled at once, each with the timeout; each
//! answer is published as it arrives, and every request is answered from
//! what is there. A node that is down or slow is shown as such, with its
//! error and when it was last seen; it never holds up the page or the other
//! nodes. The master is as read-only as an agent, escapes what nodes send
//! the same way, and takes the same `--token-file`.
//!
//! Routes: `GET /` (the page), `GET /api/v1/cluster`, `GET /metrics`,
//! `GET /healthz` (503 while this machine's GPUs cannot be read, when
//! `self` is listed, else while no node answers), and `GET /api/v1/snapshot`
//! (this machine's own snapshot, when `self` is listed, so that masters can
//! be stacked).

mod agents_file;
mod cluster;
mod metrics;
mod page;
mod poll;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::extract::State as Shared;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use gpusel_core::GpuInfoProvider;
use gpusel_http::{Client, Settings};

pub use agents_file::{AgentsFile, AgentsFileError, NodeSource, NodeSpec, SELF, load, parse};
pub use cluster::{Cluster, ClusterJson, MetricsText, Node, NodeJson, NodeState, Rounds, Status};

use crate::error::AgentError;
use crate::routes::{self, JSON, json_error, protect};
use crate::server::{Local, STALL, Server, serve_router};
use crate::state::State;

/// The longest a poll of one node may take by default: the interval, but
/// never more than this.
pub const MAX_DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// The per-node timeout: the file's `timeout`, else the interval capped at
/// [`MAX_DEFAULT_TIMEOUT`].
pub fn node_timeout(agents: &AgentsFile, interval: Duration) -> Duration {
    agents
        .timeout
        .unwrap_or_else(|| interval.min(MAX_DEFAULT_TIMEOUT))
}

impl Server {
    /// Serves as a master over `agents` until `shutdown`. `provider` reads
    /// this machine's GPUs for the `self` entry; it is required when the
    /// file lists `self`, and unused otherwise.
    pub async fn run_master(
        self,
        provider: Option<Box<dyn GpuInfoProvider>>,
        agents: AgentsFile,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), AgentError> {
        let (listener, options) = self.into_parts();
        let mut shutdown = std::pin::pin!(shutdown);
        let local = match (agents.has_self(), provider) {
            (false, _) => None,
            (true, None) => return Err(AgentError::NoSelfProvider),
            (true, Some(provider)) => {
                let mut local = Local::start(provider, &options)?;
                tokio::select! {
                    _ = tokio::time::timeout(STALL, &mut local.first) => {}
                    () = &mut shutdown => return Ok(()),
                }
                Some(local)
            }
        };
        let timeout = node_timeout(&agents, options.interval);
        let mut cluster = Cluster::new(agents.nodes, options.interval, timeout);
        cluster.idle = options.idle;
        let cluster = Arc::new(cluster);
        // Every node pending, until the first round is done.
        metrics::publish(&cluster);
        let client = Client::new(Settings {
            connect_timeout: timeout.min(gpusel_http::DEFAULT_CONNECT_TIMEOUT),
            timeout,
            max_body: gpusel_http::DEFAULT_MAX_BODY,
        });
        let (first_tx, first_rx) = tokio::sync::oneshot::channel();
        let polling = tokio::spawn(poll::run(
            Arc::clone(&cluster),
            client,
            local.as_ref().map(|l| Arc::clone(&l.state)),
            options.expose_cmdline,
            first_tx,
        ));
        // Abort the loop however this function ends.
        let _stop = AbortOnDrop(polling);
        tokio::select! {
            _ = tokio::time::timeout(timeout + Duration::from_secs(1), first_rx) => {}
            () = &mut shutdown => return Ok(()),
        }
        let app = router(
            cluster,
            local.as_ref().map(|l| Arc::clone(&l.state)),
            options.token.clone(),
            options.request_timeout,
        );
        serve_router(listener, app, &options, shutdown).await;
        Ok(())
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The master's whole router, with the agent's protections.
pub fn router(
    cluster: Arc<Cluster>,
    local: Option<Arc<State>>,
    token: Option<routes::Token>,
    request_timeout: Duration,
) -> Router {
    let master = Router::new()
        .route("/", get(page_route))
        .route("/api/v1/cluster", get(cluster_route))
        .route("/metrics", get(metrics_route));
    let health = Health {
        cluster: Arc::clone(&cluster),
        local: local.clone(),
    };
    let mut app = protect(master, token.clone()).with_state(cluster);
    app = match local {
        Some(state) => app.merge(
            protect(
                Router::new()
                    .route("/api/v1/snapshot", get(routes::snapshot))
                    .route(gpusel_http::nvgpu::PATH, get(routes::gpu_status)),
                token,
            )
            .with_state(state),
        ),
        None => app.route("/api/v1/snapshot", get(no_self)),
    };
    let app = app.merge(
        Router::new()
            .route("/healthz", get(healthz))
            .with_state(health),
    );
    routes::harden(app, request_timeout)
}

#[derive(Clone)]
struct Health {
    cluster: Arc<Cluster>,
    local: Option<Arc<State>>,
}

/// With `self` listed, whether this machine's GPUs can be read, as an
/// agent's `/healthz` says (a down node is the node's problem, shown on the
/// page); without it, whether any node answers, since a master none of
/// whose nodes answer serves nothing of use.
async fn healthz(Shared(health): Shared<Health>) -> Response {
    let (up, failing) = match &health.local {
        Some(state) => (
            state.current().status.up,
            "failing: this machine's GPUs cannot be read\n",
        ),
        None => (
            health
                .cluster
                .nodes
                .iter()
                .any(|n| n.state().status.answered()),
            "failing: no node answers\n",
        ),
    };
    let (code, text) = if up {
        (StatusCode::OK, "ok\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, failing)
    };
    (
        code,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        text,
    )
        .into_response()
}

async fn no_self() -> Response {
    json_error(
        StatusCode::NOT_FOUND,
        "this master reads no GPUs of its own (its agents file has no `self` entry); the nodes' snapshots are in /api/v1/cluster",
    )
}

async fn page_route(Shared(cluster): Shared<Arc<Cluster>>) -> Response {
    match page::render(&cluster) {
        Ok(html) => ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot render the master page");
            json_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page cannot be rendered; /api/v1/cluster has the same data",
            )
        }
    }
}

async fn cluster_route(Shared(cluster): Shared<Arc<Cluster>>) -> Response {
    let now = SystemTime::now();
    let view = cluster.view();
    let body = ClusterJson {
        schema_version: gpusel_core::SCHEMA_VERSION,
        master: &cluster.master,
        interval_ms: cluster.interval.as_millis(),
        timeout_ms: cluster.timeout.as_millis(),
        rounds: cluster.rounds(),
        nodes: view
            .iter()
            .map(|(spec, state)| NodeJson::new(spec, state, now))
            .collect(),
    };
    match serde_json::to_vec(&body) {
        Ok(json) => ([(header::CONTENT_TYPE, JSON)], json).into_response(),
        Err(e) => json_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

async fn metrics_route(Shared(cluster): Shared<Arc<Cluster>>, headers: HeaderMap) -> Response {
    let text = cluster.metrics();
    if routes::wants_openmetrics(&headers) {
        (
            [(header::CONTENT_TYPE, crate::metrics::OPENMETRICS)],
            text.openmetrics.clone(),
        )
            .into_response()
    } else {
        (
            [(header::CONTENT_TYPE, crate::metrics::CLASSIC)],
            text.classic.clone(),
        )
            .into_response()
    }
}
