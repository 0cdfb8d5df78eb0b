//! The HTML dashboard, rendered per request from the published snapshot
//! with askama, which escapes every value it writes into the page.
//!
//! The snapshot's text is written as it is: it was cleaned of control and
//! bidi characters once, when it was stored (the agent's poller, the
//! master's poll of a node: `gpusel_core::sanitize::clean_snapshot`). Only
//! error messages, which come from elsewhere, are cleaned here.

use std::time::{Duration, SystemTime};

use askama::Template;
use gpusel_core::sanitize::clean_lines;
use gpusel_core::{Gpu, GpuProcess, LeaseStatus, MigDevice, Occupancy, format_bytes, format_power};

use crate::state::Published;

/// The dashboard of one agent.
#[derive(Template)]
#[template(path = "dashboard.html")]
struct Dashboard<'a> {
    version: &'static str,
    title: String,
    refresh_secs: u64,
    header: Option<Header>,
    rows: Vec<Row>,
    leased: bool,
    problem: Option<String>,
    lease_problem: Option<&'a str>,
}

/// The line above the table.
struct Header {
    host: String,
    facts: Vec<String>,
    taken: String,
    age: String,
    stale: bool,
}

/// One table row: a GPU or a MIG device.
pub(crate) struct Row {
    pub(crate) id: String,
    /// `[ ]`, `[~]`, `[L]` or `[!]`, as `gpusel list` marks it.
    pub(crate) mark: &'static str,
    /// The class of the mark: free, busy, leased, unknown.
    pub(crate) mark_class: &'static str,
    pub(crate) name: String,
    pub(crate) mig: bool,
    pub(crate) memory: String,
    pub(crate) memory_pct: Option<u8>,
    pub(crate) util: Option<u8>,
    pub(crate) mem_util: String,
    pub(crate) temp: String,
    pub(crate) power: String,
    /// SM clock.
    pub(crate) clock: String,
    /// When the oldest process started, as words (`2 days ago`).
    pub(crate) since: String,
    pub(crate) processes: Processes,
    pub(crate) lease: Lease,
}

pub(crate) enum Lease {
    Free,
    NoRecord,
    Blocked(String),
    Held {
        who: String,
        command: String,
        since: String,
    },
}

pub(crate) enum Processes {
    Unknown,
    OnMig,
    List(Vec<Proc>),
}

pub(crate) struct Proc {
    pub(crate) user: String,
    pub(crate) pid: u32,
    pub(crate) name: String,
    pub(crate) memory: String,
    pub(crate) since: String,
}

/// Renders the dashboard. The page reloads itself every snapshot interval
/// (at least every 2 s): a meta refresh, no script.
pub fn dashboard(
    round: &Published,
    interval: Duration,
    idle: &gpusel_core::IdleRules,
) -> Result<String, askama::Error> {
    let now = SystemTime::now();
    let header = round.snapshot.as_deref().map(|s| {
        let mut facts = vec![format!("{} GPUs", s.gpus.len())];
        if let Some(v) = &s.driver_version {
            facts.push(format!("driver {v}"));
        }
        if let Some(v) = &s.cuda_driver_version {
            facts.push(format!("CUDA {v}"));
        }
        facts.push(s.provider.clone());
        Header {
            host: s.host.clone(),
            facts,
            taken: gpusel_core::timefmt::format(s.time),
            age: gpusel_core::timefmt::ago(s.time, now),
            stale: !round.status.up,
        }
    });
    let (rows, leased) = round
        .snapshot
        .as_deref()
        .map(|s| rows(s, idle))
        .unwrap_or_default();
    let problem = match (&round.snapshot, &round.status.last_error) {
        (_, Some(e)) => Some(format!(
            "The last attempt to read the GPUs failed ({}): {}",
            gpusel_core::timefmt::format(round.status.last_attempt),
            clean_lines(e)
        )),
        (None, None) => Some("The first snapshot is being taken.".into()),
        _ => None,
    };
    let title = match &header {
        Some(h) => format!("{} GPUs — gpusel", h.host),
        None => "gpusel".into(),
    };
    Dashboard {
        version: env!("CARGO_PKG_VERSION"),
        title,
        refresh_secs: interval.as_secs().max(2),
        header,
        rows,
        leased,
        problem,
        lease_problem: round.status.lease_error.as_deref(),
    }
    .render()
}

/// The table rows of `snapshot`, and whether any device is leased (the
/// lease column is shown only then).
pub(crate) fn rows(
    snapshot: &gpusel_core::Snapshot,
    idle: &gpusel_core::IdleRules,
) -> (Vec<Row>, bool) {
    let now = SystemTime::now();
    let mut rows = Vec::new();
    let mut leased = false;
    for gpu in &snapshot.gpus {
        leased |= gpu.lease.is_some();
        rows.push(gpu_row(gpu, now, idle));
        for mig in &gpu.mig_devices {
            leased |= mig.lease.is_some();
            rows.push(mig_row(gpu, mig, now, idle));
        }
    }
    (rows, leased)
}

fn percent(used: Option<u64>, total: Option<u64>) -> Option<u8> {
    match (used, total) {
        // In u128: `u * 100` overflows u64 on memory a snapshot file or a
        // remote agent may claim.
        (Some(u), Some(t)) if t > 0 => Some((u128::from(u.min(t)) * 100 / u128::from(t)) as u8),
        _ => None,
    }
}

fn memory(used: Option<u64>, total: Option<u64>) -> String {
    match (used, total) {
        (Some(u), Some(t)) => format!("{} / {}", format_bytes(u), format_bytes(t)),
        (None, Some(t)) => format!("? / {}", format_bytes(t)),
        (Some(u), None) => format!("{} / ?", format_bytes(u)),
        (None, None) => "–".into(),
    }
}

fn dash<T>(v: Option<T>, f: impl Fn(T) -> String) -> String {
    v.map(f).unwrap_or_else(|| "–".into())
}

fn mark(o: Occupancy) -> (&'static str, &'static str) {
    let class = match o {
        Occupancy::Free => "free",
        Occupancy::InUse => "busy",
        Occupancy::Leased => "leased",
        Occupancy::Unknown => "unknown",
        Occupancy::Unusable => "unusable",
    };
    (o.mark(), class)
}

fn since(start: Option<SystemTime>, now: SystemTime) -> String {
    start.map_or_else(String::new, |t| gpusel_core::timefmt::ago(t, now))
}

fn processes(list: Option<&[GpuProcess]>, now: SystemTime) -> Processes {
    match list {
        None => Processes::Unknown,
        Some(list) => Processes::List(
            list.iter()
                .map(|p| Proc {
                    user: p.user.clone().unwrap_or_else(|| "?".into()),
                    pid: p.pid,
                    name: p.name.clone().unwrap_or_else(|| "?".into()),
                    memory: p.used_memory.map(format_bytes).unwrap_or_default(),
                    since: since(p.start_time, now),
                })
                .collect(),
        ),
    }
}

fn lease(status: Option<&LeaseStatus>) -> Lease {
    match status {
        None => Lease::Free,
        Some(LeaseStatus {
            blocked: Some(why), ..
        }) => Lease::Blocked(why.clone()),
        Some(LeaseStatus { holder: None, .. }) => Lease::NoRecord,
        Some(LeaseStatus {
            holder: Some(h), ..
        }) => Lease::Held {
            who: format!("{}:{}", h.user, h.pid),
            command: h.command.join(" "),
            since: gpusel_core::timefmt::format(h.since),
        },
    }
}

fn gpu_row(gpu: &Gpu, now: SystemTime, idle: &gpusel_core::IdleRules) -> Row {
    let power = match (gpu.power_draw, gpu.power_limit) {
        (Some(d), Some(l)) => format!("{} / {}", format_power(d), format_power(l)),
        (Some(d), None) => format_power(d),
        _ => "–".into(),
    };
    let (mark, mark_class) = mark(gpu.occupancy_with(idle));
    Row {
        id: gpu.index.to_string(),
        mark,
        mark_class,
        name: gpu.name.clone(),
        mig: false,
        memory: memory(gpu.memory_used, gpu.memory_total),
        memory_pct: percent(gpu.memory_used, gpu.memory_total),
        util: gpu.utilization_gpu,
        mem_util: dash(gpu.utilization_memory, |u| format!("{u}%")),
        temp: dash(gpu.temperature, |t| format!("{t} °C")),
        power,
        clock: dash(gpu.sm_clock, |c| format!("{c} MHz")),
        since: since(gpu.first_start(), now),
        processes: if gpu.mig_enabled() {
            Processes::OnMig
        } else {
            processes(gpu.processes.as_deref(), now)
        },
        lease: lease(gpu.lease.as_ref()),
    }
}

fn mig_row(gpu: &Gpu, mig: &MigDevice, now: SystemTime, idle: &gpusel_core::IdleRules) -> Row {
    let (mark, mark_class) = mark(gpu.mig_occupancy(mig, idle));
    let first = mig.first_start();
    Row {
        id: format!("{}:{}", gpu.index, mig.index),
        mark,
        mark_class,
        name: format!("MIG {}", mig.profile.as_deref().unwrap_or("?")),
        mig: true,
        memory: memory(mig.memory_used, mig.memory_total),
        memory_pct: percent(mig.memory_used, mig.memory_total),
        util: None,
        mem_util: "–".into(),
        temp: String::new(),
        power: String::new(),
        clock: String::new(),
        since: since(first, now),
        processes: processes(mig.processes.as_deref(), now),
        lease: lease(mig.lease.as_ref()),
    }
}
