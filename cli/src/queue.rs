//! `gpusel queue`: gpusel's waiters, oldest first.

use std::path::Path;
use std::time::SystemTime;

use gpusel_core::timefmt::ago;
use gpusel_core::{LockDir, SCHEMA_VERSION, Waiter, Wanted, format_bytes};
use serde::Serialize;

use crate::failure::Failure;
use crate::out;
use crate::sanitize::clean;

/// `gpusel queue --json`.
#[derive(Serialize)]
struct Queue<'a> {
    schema_version: u32,
    lock_dir: &'a Path,
    waiters: &'a [Waiter],
}

/// What a waiter asks for, in a few words: `4 GPUs, 20 GiB free, name A100`.
pub fn describe(wanted: &Wanted) -> String {
    let mut parts = vec![match wanted.count.as_str() {
        "1" => "1 GPU".to_string(),
        n => format!("{n} GPUs"),
    }];
    if let Some(bytes) = wanted.min_free_memory {
        parts.push(match wanted.share {
            true => format!("a {} share", format_bytes(bytes)),
            false => format!("{} free", format_bytes(bytes)),
        });
    }
    if wanted.max_utilization == Some(0) && wanted.max_processes == Some(0) {
        parts.push("idle".into());
    }
    if let Some(name) = &wanted.name {
        parts.push(format!("name {}", clean(name)));
    }
    if !wanted.devices.is_empty() {
        parts.push(format!("devices {}", clean(&wanted.devices.join(","))));
    }
    if !wanted.exclude.is_empty() {
        parts.push(format!("not {}", clean(&wanted.exclude.join(","))));
    }
    if let Some(visible) = &wanted.visible {
        parts.push(format!("CUDA_VISIBLE_DEVICES={}", clean(visible)));
    }
    parts.join(", ")
}

/// Prints the queue of the lock directory `lock_dir`.
pub fn show(lock_dir: &Path, json: bool) -> Result<(), Failure> {
    let dir = LockDir::open(lock_dir)?;
    let waiters = dir.queue();
    if json {
        return out::print_json(&Queue {
            schema_version: SCHEMA_VERSION,
            lock_dir,
            waiters: &waiters,
        });
    }
    if waiters.is_empty() {
        return out::print("no gpusel job is waiting\n");
    }
    let now = SystemTime::now();
    let header = ["#", "USER", "PID", "SINCE", "WANTS", "COMMAND"];
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|t| t.to_string()).collect()];
    rows.extend(waiters.iter().enumerate().map(|(i, w)| {
        let h = &w.holder;
        vec![
            (i + 1).to_string(),
            clean(&h.user),
            h.pid.to_string(),
            ago(h.since, now),
            describe(&w.wanted),
            clean(&h.command.join(" ")),
        ]
    }));
    out::print(&out::columns(&rows))
}
