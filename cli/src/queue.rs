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
    let rows: Vec<[String; 6]> = waiters
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let h = &w.holder;
            [
                (i + 1).to_string(),
                clean(&h.user),
                h.pid.to_string(),
                ago(h.since, now),
                describe(&w.wanted),
                clean(&h.command.join(" ")),
            ]
        })
        .collect();
    let header = ["#", "USER", "PID", "SINCE", "WANTS", "COMMAND"];
    let widths: Vec<usize> = (0..5)
        .map(|c| {
            rows.iter()
                .map(|r| r[c].chars().count())
                .chain([header[c].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: [&str; 6]| -> String {
        let mut text = String::new();
        for (c, cell) in cells.iter().enumerate().take(5) {
            text.push_str(&format!("{cell:<w$}  ", w = widths[c]));
        }
        text.push_str(cells[5]);
        text.trim_end().to_string() + "\n"
    };
    let mut text = line(header);
    for r in &rows {
        text.push_str(&line([&r[0], &r[1], &r[2], &r[3], &r[4], &r[5]]));
    }
    out::print(&text)
}
