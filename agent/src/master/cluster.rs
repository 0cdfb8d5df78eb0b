//! What the master knows about each node, updated by the poll loop and read
//! by every request.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use crate::latest::Latest;
use std::time::{Duration, SystemTime};

use axum::body::Bytes;
use gpusel_core::{AgentStatus, Snapshot};
use gpusel_http::{ErrorClass, HttpError};
use serde::Serialize;
use serde_json::value::RawValue;

use super::agents_file::NodeSpec;

/// How a node answered its last poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Not polled yet.
    Pending,
    /// Answered with a fresh snapshot.
    Up,
    /// Answered, but its own driver reads fail: the snapshot is its last good one.
    Failing,
    /// Did not answer within the timeout.
    Slow,
    /// Cannot be reached: nothing listens, the host is unknown or unreachable.
    Down,
    /// Wants a (different) token.
    Unauthorized,
    /// Answers with something other than a snapshot.
    Error,
}

impl Status {
    /// The word the page and the JSON show.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Up => "up",
            Status::Failing => "failing",
            Status::Slow => "slow",
            Status::Down => "down",
            Status::Unauthorized => "unauthorized",
            Status::Error => "error",
        }
    }

    /// Whether the node answered with a snapshot.
    pub fn answered(self) -> bool {
        matches!(self, Status::Up | Status::Failing)
    }

    /// The status an error means.
    pub fn of(error: &HttpError) -> Self {
        match error.class() {
            ErrorClass::Slow => Status::Slow,
            ErrorClass::Down => Status::Down,
            ErrorClass::Unauthorized => Status::Unauthorized,
            ErrorClass::BadAnswer | ErrorClass::Config => Status::Error,
        }
    }
}

/// What one poll of a node brings: its snapshot and its agent's status, or
/// the status that its failure means and the error.
pub type Outcome = Result<(Arc<Snapshot>, Option<AgentStatus>), (Status, String)>;

/// A node's state after its last poll.
#[derive(Debug, Clone)]
pub struct NodeState {
    /// How it answered.
    pub status: Status,
    /// Why it is not up, when it is not.
    pub error: Option<String>,
    /// When it was last polled.
    pub last_attempt: Option<SystemTime>,
    /// How long the last poll took.
    pub latency: Option<Duration>,
    /// When it last answered with a snapshot.
    pub last_success: Option<SystemTime>,
    /// Its last snapshot (kept while it is down, with its age).
    pub snapshot: Option<Arc<Snapshot>>,
    /// That snapshot in JSON, serialized once when it arrived rather than
    /// on every `GET /api/v1/cluster`.
    pub snapshot_json: Option<Arc<Box<RawValue>>>,
    /// Its agent's status, as of the last snapshot.
    pub agent: Option<AgentStatus>,
}

impl NodeState {
    fn pending() -> Self {
        NodeState {
            status: Status::Pending,
            error: None,
            last_attempt: None,
            latency: None,
            last_success: None,
            snapshot: None,
            snapshot_json: None,
            agent: None,
        }
    }
}

/// One node: what the agents file says, and its latest state.
#[derive(Debug)]
pub struct Node {
    /// Its entry in the agents file.
    pub spec: NodeSpec,
    state: Latest<NodeState>,
    polling: AtomicBool,
}

/// A node's poll in flight; dropping it (done, or the task aborted) frees
/// the node for the next round.
#[derive(Debug)]
pub struct InFlight(Arc<Node>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.polling.store(false, Ordering::Release);
    }
}

impl Node {
    /// A node not polled yet.
    pub fn new(spec: NodeSpec) -> Self {
        Node {
            spec,
            state: Latest::new(NodeState::pending()),
            polling: AtomicBool::new(false),
        }
    }

    /// Marks the node as being polled, unless its last poll is still in
    /// flight (a slow node is not asked twice at once).
    pub fn start_poll(self: &Arc<Self>) -> Option<InFlight> {
        (!self.polling.swap(true, Ordering::AcqRel)).then(|| InFlight(Arc::clone(self)))
    }

    /// Its latest state. The lock is held only to clone the pointer.
    pub fn state(&self) -> Arc<NodeState> {
        self.state.get()
    }

    /// Records the outcome of a poll that started at `attempt` and took `latency`.
    pub fn record(&self, attempt: SystemTime, latency: Duration, outcome: Outcome) {
        let previous = self.state();
        let outcome = outcome.and_then(|(snapshot, agent)| {
            match serde_json::value::to_raw_value(&*snapshot) {
                Ok(json) => Ok((snapshot, Arc::new(json), agent)),
                Err(e) => Err((
                    Status::Error,
                    format!("its snapshot cannot be written as JSON: {e}"),
                )),
            }
        });
        let next = match outcome {
            Ok((snapshot, snapshot_json, agent)) => {
                let failing = agent.as_ref().and_then(|a| a.last_error.clone());
                NodeState {
                    status: if failing.is_some() {
                        Status::Failing
                    } else {
                        Status::Up
                    },
                    error: failing,
                    last_attempt: Some(attempt),
                    latency: Some(latency),
                    last_success: Some(attempt),
                    snapshot: Some(snapshot),
                    snapshot_json: Some(snapshot_json),
                    agent,
                }
            }
            Err((status, error)) => NodeState {
                status,
                error: Some(error),
                last_attempt: Some(attempt),
                latency: Some(latency),
                last_success: previous.last_success,
                snapshot: previous.snapshot.clone(),
                snapshot_json: previous.snapshot_json.clone(),
                agent: previous.agent.clone(),
            },
        };
        self.state.set(next);
    }
}

/// How the poll rounds go.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Rounds {
    /// Rounds finished since the master started.
    pub count: u64,
    /// How long the last finished round took, from its start until every
    /// node it polled had answered or timed out, in milliseconds.
    pub last_ms: Option<f64>,
    /// When the last round finished.
    #[serde(with = "gpusel_core::timefmt::rfc3339_opt")]
    pub last_finished: Option<SystemTime>,
}

/// Every node, and the round statistics.
#[derive(Debug)]
pub struct Cluster {
    /// The nodes, in the agents file's order.
    pub nodes: Vec<Arc<Node>>,
    /// How often the nodes are polled.
    pub interval: Duration,
    /// How long one node may take to answer.
    pub timeout: Duration,
    /// This machine's host name, read once.
    pub master: String,
    /// The idle rules its count of idle GPUs applies.
    pub idle: gpusel_core::IdleRules,
    rounds: RwLock<Rounds>,
    metrics: Latest<MetricsText>,
}

/// The master's `/metrics` bodies, rendered once per poll round (see
/// [`Cluster::set_metrics`]) rather than per scrape.
#[derive(Debug, Clone, Default)]
pub struct MetricsText {
    /// For Prometheus (OpenMetrics).
    pub openmetrics: Bytes,
    /// For everyone else (the classic text format).
    pub classic: Bytes,
}

impl Cluster {
    /// A cluster of `specs`, none polled yet.
    pub fn new(specs: Vec<NodeSpec>, interval: Duration, timeout: Duration) -> Self {
        Cluster {
            nodes: specs.into_iter().map(|s| Arc::new(Node::new(s))).collect(),
            interval,
            timeout,
            master: gpusel_core::host_name(),
            idle: gpusel_core::IdleRules::default(),
            rounds: RwLock::new(Rounds::default()),
            metrics: Latest::default(),
        }
    }

    /// The `/metrics` bodies last set.
    pub fn metrics(&self) -> Arc<MetricsText> {
        self.metrics.get()
    }

    /// Publishes new `/metrics` bodies.
    pub fn set_metrics(&self, text: MetricsText) {
        self.metrics.set(text);
    }

    /// The round statistics.
    pub fn rounds(&self) -> Rounds {
        match self.rounds.read() {
            Ok(g) => *g,
            Err(p) => *p.into_inner(),
        }
    }

    /// Records a finished round that took `took`.
    pub fn round_done(&self, took: Duration) {
        let mut g = match self.rounds.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        g.count += 1;
        g.last_ms = Some(took.as_secs_f64() * 1000.0);
        g.last_finished = Some(SystemTime::now());
    }

    /// Every node's state at this moment.
    pub fn view(&self) -> Vec<(&NodeSpec, Arc<NodeState>)> {
        self.nodes.iter().map(|n| (&n.spec, n.state())).collect()
    }
}

/// The body of `GET /api/v1/cluster`.
#[derive(Debug, Serialize)]
pub struct ClusterJson<'a> {
    /// [`gpusel_core::SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The master's host name.
    pub master: &'a str,
    /// How often nodes are polled, in milliseconds.
    pub interval_ms: u128,
    /// How long one node may take, in milliseconds.
    pub timeout_ms: u128,
    /// The poll rounds.
    pub rounds: Rounds,
    /// The nodes, in the agents file's order.
    pub nodes: Vec<NodeJson<'a>>,
}

/// One node in `GET /api/v1/cluster`.
#[derive(Debug, Serialize)]
pub struct NodeJson<'a> {
    /// Its name.
    pub name: &'a str,
    /// Its agent URL, or `self`.
    pub url: &'a str,
    /// `up`, `failing`, `slow`, `down`, `unauthorized`, `error` or `pending`.
    pub status: Status,
    /// Why it is not up.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'a str>,
    /// When it was last polled.
    #[serde(with = "gpusel_core::timefmt::rfc3339_opt")]
    pub last_attempt: Option<SystemTime>,
    /// How long the last poll took, in milliseconds.
    pub latency_ms: Option<f64>,
    /// When it last answered with a snapshot.
    #[serde(with = "gpusel_core::timefmt::rfc3339_opt")]
    pub last_success: Option<SystemTime>,
    /// Seconds since then.
    pub age_seconds: Option<u64>,
    /// Its agent's status, as of the last snapshot.
    pub agent: Option<&'a AgentStatus>,
    /// Its last snapshot, kept while it is down (see `age_seconds`).
    pub snapshot: Option<&'a RawValue>,
}

impl<'a> NodeJson<'a> {
    /// The JSON view of one node at `now`.
    pub fn new(spec: &'a NodeSpec, state: &'a NodeState, now: SystemTime) -> Self {
        NodeJson {
            name: &spec.name,
            url: spec.url(),
            status: state.status,
            error: state.error.as_deref(),
            last_attempt: state.last_attempt,
            latency_ms: state.latency.map(|d| d.as_secs_f64() * 1000.0),
            last_success: state.last_success,
            age_seconds: state
                .last_success
                .map(|t| now.duration_since(t).unwrap_or_default().as_secs()),
            agent: state.agent.as_ref(),
            snapshot: state.snapshot_json.as_deref().map(|j| &**j),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::master::agents_file::NodeSource;

    fn cluster() -> Cluster {
        let spec = NodeSpec {
            name: "me".into(),
            source: NodeSource::This,
        };
        Cluster::new(vec![spec], Duration::from_secs(1), Duration::from_secs(1))
    }

    #[test]
    fn a_snapshot_is_served_as_it_came_and_kept_while_the_node_is_down() {
        let cluster = cluster();
        let node = &cluster.nodes[0];
        let mut snapshot = Snapshot::new("host\"1", "test");
        snapshot
            .gpus
            .push(gpusel_core::Gpu::new(0, "GPU-0", "A100 <b>"));
        let want = serde_json::to_value(&snapshot).unwrap();
        let now = SystemTime::now();
        node.record(now, Duration::ZERO, Ok((Arc::new(snapshot), None)));
        let json = |state: &NodeState| {
            serde_json::to_value(NodeJson::new(&node.spec, state, now)).unwrap()
        };
        assert_eq!(json(&node.state())["snapshot"], want);
        node.record(
            now,
            Duration::ZERO,
            Err((Status::Down, "connection refused".into())),
        );
        let down = json(&node.state());
        assert_eq!(down["status"], "down");
        assert_eq!(down["snapshot"], want);
    }

    #[test]
    fn metrics_change_when_published_not_when_a_node_answers() {
        let cluster = cluster();
        crate::master::metrics::publish(&cluster);
        let before = cluster.metrics();
        assert!(
            std::str::from_utf8(&before.classic)
                .unwrap()
                .contains("gpusel_node_up{node=\"me\",url=\"self\"} 0"),
            "{before:?}"
        );
        let node = &cluster.nodes[0];
        let snapshot = Arc::new(Snapshot::new("h", "test"));
        node.record(SystemTime::now(), Duration::ZERO, Ok((snapshot, None)));
        assert_eq!(cluster.metrics().classic, before.classic);
        crate::master::metrics::publish(&cluster);
        let after = cluster.metrics();
        assert!(
            std::str::from_utf8(&after.classic)
                .unwrap()
                .contains("gpusel_node_up{node=\"me\",url=\"self\"} 1"),
            "{after:?}"
        );
        assert!(after.openmetrics.ends_with(b"# EOF\n"));
    }
}
