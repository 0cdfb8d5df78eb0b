//! The master's `/metrics`: whether each node answers, and every answering
//! node's series under the agent's names, told apart by their `node` label
//! (the name in the agents file: one host listed twice is two nodes), so one
//! scrape of the master covers the cluster.

use std::time::SystemTime;

use prometheus_client::registry::{Registry, Unit};

use axum::body::Bytes;

use super::cluster::{Cluster, MetricsText};
use crate::metrics::{SnapshotFamilies, finish, gauge, to_classic};

/// Renders the cluster's metrics now and publishes them: once per poll
/// round, so that a scrape costs a copy, not a render of every node.
pub fn publish(cluster: &Cluster) {
    let openmetrics = render(cluster);
    cluster.set_metrics(MetricsText {
        classic: Bytes::from(to_classic(&openmetrics)),
        openmetrics: Bytes::from(openmetrics),
    });
}

/// Renders the metrics text of the cluster now.
pub fn render(cluster: &Cluster) -> String {
    let mut registry = Registry::with_prefix("gpusel");
    let up = gauge(
        &mut registry,
        "node_up",
        "1 when the node answered the master's last poll with a snapshot",
        None,
    );
    let last_success = gauge(
        &mut registry,
        "node_last_success_timestamp",
        "When the node last answered with a snapshot, in seconds since the Unix epoch",
        Some(Unit::Seconds),
    );
    let poll = gauge(
        &mut registry,
        "node_poll_duration",
        "How long the node's last poll took",
        Some(Unit::Seconds),
    );
    let round = gauge(
        &mut registry,
        "master_round_duration",
        "How long the last poll round took, until every node had answered or timed out",
        Some(Unit::Seconds),
    );
    if let Some(ms) = cluster.rounds().last_ms {
        round.set(&Vec::new(), ms / 1000.0);
    }
    let families = SnapshotFamilies::register(&mut registry);
    for (spec, state) in cluster.view() {
        let node = vec![("node", spec.name.clone()), ("url", spec.url().to_string())];
        up.set(&node, f64::from(u8::from(state.status.answered())));
        if let Some(t) = state.last_success {
            let secs = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
            last_success.set(&node, secs.as_secs_f64());
        }
        if let Some(l) = state.latency {
            poll.set(&node, l.as_secs_f64());
        }
        let Some(snapshot) = state
            .snapshot
            .as_deref()
            .filter(|_| state.status.answered())
        else {
            continue;
        };
        // A node whose agent cannot read its lease directory, or that says
        // nothing of it, has no lease series, as on the agent itself.
        let leases_known = state
            .agent
            .as_ref()
            .is_some_and(|a| a.lease_error.is_none());
        families.record(snapshot, leases_known, Some(&spec.name));
    }
    finish(&registry)
}
