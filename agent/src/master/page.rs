//! The master page: every node, one section each, with the agent
//! dashboard's table. askama escapes every value a node sends.

use std::time::SystemTime;

use askama::Template;

use super::cluster::{Cluster, Status};
use gpusel_core::Occupancy;
use gpusel_core::timefmt::ago;

use crate::page::{Lease, Processes, Row, rows};

#[derive(Template)]
#[template(path = "master.html")]
struct MasterPage {
    version: &'static str,
    title: String,
    refresh_secs: u64,
    summary: String,
    nodes: Vec<NodeSection>,
}

struct NodeSection {
    name: String,
    url: String,
    status: &'static str,
    host: Option<String>,
    facts: Vec<String>,
    problem: Option<String>,
    show_table: bool,
    rows: Vec<Row>,
    leased: bool,
}

/// Renders the page from the cluster's state now.
pub fn render(cluster: &Cluster) -> Result<String, askama::Error> {
    let now = SystemTime::now();
    let view = cluster.view();
    let mut sections = Vec::with_capacity(view.len());
    let (mut answered, mut gpus, mut idle) = (0, 0, 0);
    for (spec, state) in &view {
        let snapshot = state.snapshot.as_deref();
        let age = |t: SystemTime| ago(t, now);
        let mut facts = Vec::new();
        if let Some(s) = snapshot {
            facts.push(format!("{} GPUs", s.gpus.len()));
            if let Some(v) = &s.driver_version {
                facts.push(format!("driver {v}"));
            }
            facts.push(format!("snapshot {}", age(s.time)));
        }
        if let Some(l) = state.latency.filter(|_| state.status.answered()) {
            facts.push(format!("answered in {} ms", l.as_millis()));
        }
        let seen = match state.last_success {
            Some(t) => format!(
                "Last seen {} ({}).",
                age(t),
                gpusel_core::timefmt::format(t)
            ),
            None => "Never seen since the master started.".into(),
        };
        let problem = match (state.status, &state.error) {
            (Status::Up, _) => None,
            (Status::Pending, _) => Some("Not polled yet.".to_string()),
            (Status::Failing, Some(e)) => Some(format!(
                "The node's agent cannot read its GPUs: {} Shown: its last good snapshot.",
                sentence(e)
            )),
            (status, Some(e)) => Some(format!(
                "{}: {} {seen}",
                title_case(status.as_str()),
                sentence(e)
            )),
            (status, None) => Some(format!("{}. {seen}", title_case(status.as_str()))),
        };
        // A node that does not answer shows no table: yesterday's GPUs
        // would read as today's.
        let show_table = state.status.answered();
        let (rows, leased) = match (show_table, snapshot) {
            (true, Some(s)) => rows(s, &cluster.idle),
            _ => (Vec::new(), false),
        };
        if state.status.answered() {
            answered += 1;
            if let Some(s) = snapshot {
                gpus += s.gpus.len();
                // Idle as `gpusel list` marks a GPU free.
                idle += s
                    .gpus
                    .iter()
                    .filter(|g| g.occupancy_with(&cluster.idle) == Occupancy::Free)
                    .count();
            }
        }
        sections.push(NodeSection {
            name: spec.name.clone(),
            url: spec.url().to_string(),
            status: state.status.as_str(),
            host: snapshot.map(|s| s.host.clone()).filter(|h| *h != spec.name),
            facts,
            problem,
            show_table,
            rows,
            leased,
        });
    }
    MasterPage {
        version: env!("CARGO_PKG_VERSION"),
        title: format!("{answered}/{} nodes up — gpusel", view.len()),
        refresh_secs: cluster.interval.as_secs().max(2),
        summary: format!(
            "{answered} of {} nodes answering · {gpus} GPUs · {idle} idle",
            view.len()
        ),
        nodes: sections,
    }
    .render()
}

/// `text` ending in a full stop, unless it ends in punctuation already.
fn sentence(text: &str) -> String {
    let t = text.trim_end();
    if t.ends_with(['.', '?', '!']) {
        t.to_string()
    } else {
        format!("{t}.")
    }
}

fn title_case(word: &str) -> String {
    let mut c = word.chars();
    match c.next() {
        Some(first) => first.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}
