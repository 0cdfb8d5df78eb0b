//! The poll loop: every interval, every node at once, each with its own
//! timeout. A node's new state is published the moment it answers, so a
//! slow node delays nobody's data, and requests read whatever is there.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use gpusel_http::{Client, Remote};
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;

use super::agents_file::{Kind, NodeSource};
use super::cluster::{Cluster, InFlight, Node, Outcome, Status};
use crate::redact;
use crate::state::State;

/// Polls forever (the caller aborts the task). Rounds start on the
/// interval's beat whatever the last one is doing: a node still answering
/// the last round is skipped, so a slow node slows only itself. `first` is
/// told when the first round is done, so that the first page is not all
/// "pending".
pub async fn run(
    cluster: Arc<Cluster>,
    client: Client,
    local: Option<Arc<State>>,
    expose_cmdline: bool,
    first: tokio::sync::oneshot::Sender<()>,
) {
    let mut first = Some(first);
    let mut beat = tokio::time::interval(cluster.interval);
    beat.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        beat.tick().await;
        let started = Instant::now();
        let mut round = JoinSet::new();
        for node in &cluster.nodes {
            if let Some(flight) = node.start_poll() {
                round.spawn(poll(
                    flight,
                    Arc::clone(node),
                    client.clone(),
                    local.clone(),
                    expose_cmdline,
                ));
            }
        }
        let cluster = Arc::clone(&cluster);
        let first = first.take();
        tokio::spawn(async move {
            while round.join_next().await.is_some() {}
            let took = started.elapsed();
            cluster.round_done(took);
            super::metrics::publish(&cluster);
            tracing::debug!(?took, "poll round done");
            if let Some(first) = first {
                let _ = first.send(());
            }
        });
    }
}

async fn poll(
    _flight: InFlight,
    node: Arc<Node>,
    client: Client,
    local: Option<Arc<State>>,
    expose_cmdline: bool,
) {
    let attempt = SystemTime::now();
    let started = Instant::now();
    let outcome: Outcome = match &node.spec.source {
        NodeSource::Remote {
            endpoint,
            token,
            kind,
        } => match kind {
            Kind::Gpusel => client.fetch(endpoint, token.as_ref()).await,
            Kind::Nvgpu => client
                .fetch_nvgpu(endpoint, token.as_ref())
                .await
                .map(|snapshot| Remote {
                    snapshot,
                    agent: None,
                }),
        }
        .map(|mut r| {
            // Everything an agent sends is shown on pages, in JSON read
            // on terminals and in /metrics: no control character or
            // bidi override of its survives (see gpusel_core::sanitize).
            gpusel_core::sanitize::clean_snapshot(&mut r.snapshot);
            if let Some(agent) = &mut r.agent {
                gpusel_core::sanitize::clean_agent_status(agent);
            }
            // An agent run with --expose-cmdline shows its command
            // lines to its own readers; this master's readers see them
            // only when this master is told so too.
            if !expose_cmdline {
                redact::hide_command_lines(&mut r.snapshot);
                if let Some(agent) = &mut r.agent {
                    agent.command_lines = false;
                }
            }
            (Arc::new(r.snapshot), r.agent)
        })
        .map_err(|e| {
            (
                Status::of(&e),
                gpusel_core::sanitize::clean_lines(&e.to_string()),
            )
        }),
        NodeSource::This => match local.map(|s| s.current()) {
            Some(round) => match &round.snapshot {
                Some(s) => Ok((Arc::clone(s), Some(round.status.clone()))),
                None => Err((
                    Status::Error,
                    format!(
                        "no GPU snapshot yet: {}",
                        round
                            .status
                            .last_error
                            .as_deref()
                            .unwrap_or("the first one is being taken")
                    ),
                )),
            },
            None => Err((Status::Error, "this master reads no GPUs of its own".into())),
        },
    };
    node.record(attempt, started.elapsed(), outcome);
}
