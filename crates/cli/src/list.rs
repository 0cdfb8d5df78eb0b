//! `gpusel list`: a table of the GPUs the provider sees.

use comfy_table::{CellAlignment, ContentArrangement, Table, presets};
use std::path::Path;

use gpu_core::{Gpu, GpuProcess, LeaseStatus, MigDevice, Snapshot, format_bytes, format_power};

/// Fills in who leases each device. A lock directory that cannot be used is
/// a warning here, not a failure: the GPUs are still worth showing.
pub fn add_leases(snapshot: &mut Snapshot, lock_dir: &Path) {
    if let Err(e) = gpu_core::add_leases(snapshot, lock_dir) {
        crate::out::eprint_line("warning: ", &format!("leases not shown: {e}"));
    }
}

/// Renders the snapshot as a header line and a table.
pub fn render(snapshot: &Snapshot) -> String {
    let mut header = format!("{}  ({} GPUs", snapshot.host, snapshot.gpus.len());
    if let Some(v) = &snapshot.driver_version {
        header.push_str(&format!(", driver {v}"));
    }
    if let Some(v) = &snapshot.cuda_driver_version {
        header.push_str(&format!(", CUDA {v}"));
    }
    header.push_str(&format!(
        ", {} at {})\n",
        snapshot.provider,
        gpu_core::timefmt::format(snapshot.time)
    ));

    // The column appears only when something is leased, so the common
    // table stays narrow.
    let leased = snapshot
        .gpus
        .iter()
        .any(|g| g.lease.is_some() || g.mig_devices.iter().any(|m| m.lease.is_some()));
    let mut columns = vec![
        "GPU",
        "NAME",
        "MEMORY",
        "UTIL",
        "MEM%",
        "TEMP",
        "POWER",
        "PROCESSES",
    ];
    if leased {
        columns.push("LEASED BY");
    }
    let mut table = Table::new();
    table
        .load_style(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(columns);
    for gpu in &snapshot.gpus {
        let mut row = gpu_row(gpu);
        if leased {
            row.push(lease(gpu.lease.as_ref()));
        }
        table.add_row(row);
        for mig in &gpu.mig_devices {
            let mut row = mig_row(gpu, mig);
            if leased {
                row.push(lease(mig.lease.as_ref()));
            }
            table.add_row(row);
        }
    }
    for (idx, col) in table.column_iter_mut().enumerate() {
        col.set_padding((0, 2));
        if (2..=6).contains(&idx) {
            col.set_cell_alignment(CellAlignment::Right);
        }
    }
    let mut text = header;
    for line in table.to_string().lines() {
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

fn or_dash<T>(v: Option<T>, f: impl Fn(T) -> String) -> String {
    v.map(f).unwrap_or_else(|| "-".into())
}

fn memory(used: Option<u64>, total: Option<u64>) -> String {
    match (used, total) {
        (Some(u), Some(t)) => format!("{} / {}", format_bytes(u), format_bytes(t)),
        (None, Some(t)) => format!("? / {}", format_bytes(t)),
        (Some(u), None) => format!("{} / ?", format_bytes(u)),
        (None, None) => "-".into(),
    }
}

fn processes(list: Option<&[GpuProcess]>) -> String {
    let Some(list) = list else {
        return "?".into();
    };
    if list.is_empty() {
        return "-".into();
    }
    list.iter()
        .map(|p| {
            let who = p.user.as_deref().unwrap_or("?");
            let what = p
                .name
                .as_deref()
                .map(|n| format!(" {}", sanitize(n)))
                .unwrap_or_default();
            let mem = p
                .used_memory
                .map(|m| format!(" {}", format_bytes(m)))
                .unwrap_or_default();
            format!("{}:{}{what}{mem}", sanitize(who), p.pid)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn lease(status: Option<&LeaseStatus>) -> String {
    match status {
        None => "-".into(),
        Some(LeaseStatus { holder: None }) => "? (no record)".into(),
        Some(LeaseStatus { holder: Some(h) }) => {
            let command = h.command.join(" ");
            let since = gpu_core::timefmt::format(h.since);
            format!(
                "{}:{} {} since {since}",
                sanitize(&h.user),
                h.pid,
                sanitize(&command)
            )
        }
    }
}

/// Drops control characters so a hostile process name cannot drive the terminal.
fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .take(40)
        .collect()
}

fn gpu_row(gpu: &Gpu) -> Vec<String> {
    let power = match (gpu.power_draw, gpu.power_limit) {
        (Some(d), Some(l)) => format!("{} / {}", format_power(d), format_power(l)),
        (Some(d), None) => format_power(d),
        _ => "-".into(),
    };
    vec![
        gpu.index.to_string(),
        sanitize(&gpu.name),
        memory(gpu.memory_used, gpu.memory_total),
        or_dash(gpu.utilization_gpu, |u| format!("{u}%")),
        or_dash(gpu.utilization_memory, |u| format!("{u}%")),
        or_dash(gpu.temperature, |t| format!("{t}C")),
        power,
        if gpu.mig_enabled() {
            "MIG".into()
        } else {
            processes(gpu.processes.as_deref())
        },
    ]
}

fn mig_row(gpu: &Gpu, mig: &MigDevice) -> Vec<String> {
    vec![
        format!("{}:{}", gpu.index, mig.index),
        format!("  MIG {}", sanitize(mig.profile.as_deref().unwrap_or("?"))),
        memory(mig.memory_used, mig.memory_total),
        "-".into(),
        "-".into(),
        String::new(),
        String::new(),
        processes(mig.processes.as_deref()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_names_are_defused() {
        assert_eq!(sanitize("\x1b[2Jevil\n"), "?[2Jevil?");
        let mut p = GpuProcess::new(7);
        p.name = Some("py\x07thon".into());
        p.user = Some("bob".into());
        assert_eq!(processes(Some(&[p])), "bob:7 py?thon");
    }
}
