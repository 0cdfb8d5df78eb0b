//! The `gpusel list` table: one row per GPU and per MIG device under its
//! parent, each followed by its processes and its lease, fitted to a width
//! and colored by load.
//!
//! Rendered into a `String` so that tests can see exactly what a terminal of
//! any width gets. Every string that comes from the driver or `/proc` goes
//! through [`crate::sanitize::clean`] before it is measured or printed.

use std::time::SystemTime;

use gpusel_core::timefmt::ago;
use gpusel_core::{
    Gpu, GpuProcess, LeaseStatus, MigDevice, Occupancy, ProcessKind, Snapshot, format_bytes,
};

use crate::sanitize::{clean, fit, width};

/// How to render the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Look {
    /// Columns available; `None`: no limit (a pipe or a file).
    pub width: Option<usize>,
    /// Write ANSI colors.
    pub color: bool,
    /// Show each process's whole command line, not only its name.
    pub full_cmd: bool,
    /// Show every column (performance state, PCI bus id, UUID, process
    /// kind) and never drop or cut one, whatever the width.
    pub wide: bool,
    /// The site's bans: a banned device is marked `[x]`, never `[ ]`.
    pub bans: Vec<gpusel_core::Ban>,
    /// The site's idle rules (the unaccounted-memory tolerance).
    pub idle: gpusel_core::IdleRules,
}

/// Cells of the memory bar.
const BAR: usize = 10;
/// Narrowest a GPU name is cut to when nothing else can give way.
const MIN_NAME: usize = 10;
/// Name width kept whole before the expendable columns are dropped: every
/// NVIDIA model name (less the `NVIDIA ` prefix) fits in it.
const KEEP_NAME: usize = 20;
/// Spaces between columns.
const GAP: usize = 2;
/// Indent of the process and lease lines under their device.
const INDENT: &str = "    ";

/// A color (SGR attribute) for a piece of text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Style {
    #[default]
    Plain,
    Bold,
    Dim,
    Green,
    Yellow,
    Red,
    Magenta,
}

impl Style {
    fn sgr(self) -> Option<&'static str> {
        match self {
            Style::Plain => None,
            Style::Bold => Some("1"),
            Style::Dim => Some("2"),
            Style::Green => Some("32"),
            Style::Yellow => Some("33"),
            Style::Red => Some("31"),
            Style::Magenta => Some("1;35"),
        }
    }

    /// Light load green, moderate yellow, heavy red, as nvitop and gpustat
    /// color utilization.
    fn load(percent: u8) -> Style {
        match percent {
            0..10 => Style::Green,
            10..80 => Style::Yellow,
            _ => Style::Red,
        }
    }

    fn temperature(celsius: i32) -> Style {
        match celsius {
            ..60 => Style::Plain,
            60..80 => Style::Yellow,
            _ => Style::Red,
        }
    }
}

/// A line as styled pieces, cut and colored only when written out.
type Line = Vec<(String, Style)>;

/// The availability marker, as nvgpu shows it, plus leases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Mark {
    /// [`Occupancy::Free`].
    Free,
    /// [`Occupancy::InUse`].
    InUse,
    /// [`Occupancy::Leased`].
    Leased,
    /// [`Occupancy::Unknown`].
    Unusable,
    /// Banned by the site's config, or [`Occupancy::Unusable`] (compute
    /// mode `Prohibited`): never given out, whatever its state.
    Banned,
}

impl Mark {
    fn text(self) -> (&'static str, Style) {
        match self {
            Mark::Free => (Occupancy::Free.mark(), Style::Green),
            Mark::InUse => (Occupancy::InUse.mark(), Style::Yellow),
            Mark::Leased => (Occupancy::Leased.mark(), Style::Magenta),
            Mark::Unusable => (Occupancy::Unknown.mark(), Style::Red),
            Mark::Banned => ("[x]", Style::Red),
        }
    }

    fn of_gpu(gpu: &Gpu, idle: &gpusel_core::IdleRules) -> Self {
        gpu.occupancy_with(idle).into()
    }

    fn of_mig(gpu: &Gpu, mig: &MigDevice, idle: &gpusel_core::IdleRules) -> Self {
        gpu.mig_occupancy(mig, idle).into()
    }
}

impl From<Occupancy> for Mark {
    fn from(o: Occupancy) -> Self {
        match o {
            Occupancy::Free => Mark::Free,
            Occupancy::InUse => Mark::InUse,
            Occupancy::Leased => Mark::Leased,
            Occupancy::Unknown => Mark::Unusable,
            Occupancy::Unusable => Mark::Banned,
        }
    }
}

/// The device columns, in the order they are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Col {
    Index,
    Mark,
    Name,
    Util,
    MemUtil,
    Memory,
    Bar,
    Temp,
    Power,
    Sm,
    Perf,
    Mode,
    Bus,
    Uuid,
}

impl Col {
    const ALL: [Col; 14] = [
        Col::Index,
        Col::Mark,
        Col::Name,
        Col::Util,
        Col::MemUtil,
        Col::Memory,
        Col::Bar,
        Col::Temp,
        Col::Power,
        Col::Sm,
        Col::Perf,
        Col::Mode,
        Col::Bus,
        Col::Uuid,
    ];

    /// Dropped first, in this order, when the table is too wide; the
    /// others stay (the name is cut instead).
    const EXPENDABLE: [Col; 5] = [Col::Sm, Col::MemUtil, Col::Bar, Col::Temp, Col::Power];

    fn title(self) -> &'static str {
        match self {
            Col::Index => "GPU",
            Col::Mark => "",
            Col::Name => "NAME",
            Col::Util => "UTIL",
            Col::MemUtil => "MEM%",
            Col::Memory => "MEMORY",
            Col::Bar => "",
            Col::Temp => "TEMP",
            Col::Power => "POWER",
            Col::Sm => "SM CLOCK",
            Col::Perf => "PERF",
            Col::Mode => "COMPUTE M.",
            Col::Bus => "BUS",
            Col::Uuid => "UUID",
        }
    }

    fn right_aligned(self) -> bool {
        matches!(
            self,
            Col::Util | Col::MemUtil | Col::Memory | Col::Temp | Col::Power | Col::Sm
        )
    }

    fn wide_only(self) -> bool {
        matches!(self, Col::Perf | Col::Mode | Col::Bus | Col::Uuid)
    }
}

/// One device row: a cell per column.
struct Row {
    cells: Vec<(Col, String, Style)>,
    /// Process and lease lines under it.
    below: Vec<Below>,
}

impl Row {
    fn cell(&self, col: Col) -> Option<&(Col, String, Style)> {
        self.cells.iter().find(|(c, _, _)| *c == col)
    }
}

/// A line under a device row.
enum Below {
    Process(ProcessCells),
    /// A lease or a note, already worded.
    Text(String, Style),
}

/// The parts of a process line, aligned across the whole table.
struct ProcessCells {
    hidden: bool,
    pid: String,
    user: String,
    memory: String,
    since: String,
    kind: String,
    command: String,
}

/// Renders `snapshot` as the host line, the column titles and a row per
/// device, fitted to `look.width`.
pub fn render(snapshot: &Snapshot, look: &Look) -> String {
    let mut rows = Vec::new();
    for gpu in &snapshot.gpus {
        rows.push(gpu_row(gpu, snapshot.time, look));
        for mig in &gpu.mig_devices {
            rows.push(mig_row(gpu, mig, snapshot.time, look));
        }
    }
    let cols = columns(&rows, look);
    let limit = if look.wide { None } else { look.width };

    let mut lines: Vec<Line> = vec![host_line(snapshot)];
    let widths: Vec<(Col, usize)> = cols
        .iter()
        .map(|&c| (c, column_width(&rows, c, &cols, look)))
        .collect();
    let titles: Vec<(Col, String, Style)> = cols
        .iter()
        .map(|&c| (c, c.title().to_string(), Style::Bold))
        .collect();
    lines.push(device_line(&titles, &widths));
    let procs = ProcessWidths::of(&rows, look);
    for row in &rows {
        lines.push(device_line(&row.cells, &widths));
        for below in &row.below {
            lines.push(match below {
                Below::Process(p) => procs.line(p, limit, look),
                Below::Text(t, s) => vec![(INDENT.to_string(), Style::Plain), (t.clone(), *s)],
            });
        }
    }
    let mut out = String::new();
    for line in lines {
        write_line(&mut out, line, limit, look.color);
    }
    out
}

/// The columns that fit: every one in wide mode, else the standard ones
/// minus the expendable ones that do not fit.
fn columns(rows: &[Row], look: &Look) -> Vec<Col> {
    let mut cols: Vec<Col> = Col::ALL
        .iter()
        .copied()
        .filter(|c| look.wide || !c.wide_only())
        .collect();
    let Some(limit) = look.width.filter(|_| !look.wide) else {
        return cols;
    };
    let total = |cols: &[Col]| -> usize {
        cols.iter()
            .map(|&c| {
                if c == Col::Name {
                    natural_width(rows, c).min(KEEP_NAME)
                } else {
                    natural_width(rows, c)
                }
            })
            .sum::<usize>()
            + GAP * cols.len().saturating_sub(1)
    };
    for drop in Col::EXPENDABLE {
        if total(&cols) <= limit {
            break;
        }
        cols.retain(|&c| c != drop);
    }
    cols
}

/// Widest cell of `col`, title included.
fn natural_width(rows: &[Row], col: Col) -> usize {
    rows.iter()
        .filter_map(|r| r.cell(col))
        .map(|(_, text, _)| width(text))
        .chain([width(col.title())])
        .max()
        .unwrap_or(0)
}

/// Width given to `col`: its natural width, but the name gives up what the
/// other columns need, down to [`MIN_NAME`].
fn column_width(rows: &[Row], col: Col, cols: &[Col], look: &Look) -> usize {
    let natural = natural_width(rows, col);
    let Some(limit) = look.width.filter(|_| !look.wide && col == Col::Name) else {
        return natural;
    };
    let others: usize = cols
        .iter()
        .filter(|&&c| c != Col::Name)
        .map(|&c| natural_width(rows, c))
        .sum::<usize>()
        + GAP * cols.len().saturating_sub(1);
    natural.min(limit.saturating_sub(others).max(MIN_NAME))
}

fn device_line(cells: &[(Col, String, Style)], widths: &[(Col, usize)]) -> Line {
    let mut line = Line::new();
    for (i, &(col, w)) in widths.iter().enumerate() {
        let (text, style) = cells
            .iter()
            .find(|(c, _, _)| *c == col)
            .map(|(_, t, s)| (fit(t, w), *s))
            .unwrap_or_default();
        if i > 0 {
            line.push((" ".repeat(GAP), Style::Plain));
        }
        let pad = " ".repeat(w.saturating_sub(width(&text)));
        if col.right_aligned() {
            line.push((pad, Style::Plain));
            line.push((text, style));
        } else {
            line.push((text, style));
            line.push((pad, Style::Plain));
        }
    }
    line
}

/// Appends `line` to `out`: trailing blanks dropped, cut at `limit` columns
/// (with `…`), colored when `color`.
fn write_line(out: &mut String, mut line: Line, limit: Option<usize>, color: bool) {
    while let Some((text, _)) = line.last_mut() {
        let trimmed = text.trim_end().len();
        if trimmed == 0 {
            line.pop();
        } else {
            text.truncate(trimmed);
            break;
        }
    }
    let total: usize = line.iter().map(|(t, _)| width(t)).sum();
    let mut room = limit.unwrap_or(usize::MAX);
    let cut = total > room;
    for (text, style) in line {
        if room == 0 {
            break;
        }
        let w = width(&text);
        let piece = if cut && w >= room {
            // The last piece that fits: `fit` ends it with the ellipsis.
            let piece = fit(&format!("{text}…"), room);
            room = 0;
            piece
        } else {
            room -= w;
            text
        };
        match style.sgr().filter(|_| color && !piece.is_empty()) {
            Some(sgr) => {
                out.push_str("\x1b[");
                out.push_str(sgr);
                out.push('m');
                out.push_str(&piece);
                out.push_str("\x1b[0m");
            }
            None => out.push_str(&piece),
        }
    }
    out.push('\n');
}

fn host_line(s: &Snapshot) -> Line {
    let mut rest = format!(
        "  {} GPU{}",
        s.gpus.len(),
        if s.gpus.len() == 1 { "" } else { "s" }
    );
    if let Some(v) = &s.driver_version {
        rest.push_str(&format!("  driver {}", clean(v)));
    }
    if let Some(v) = &s.cuda_driver_version {
        rest.push_str(&format!("  CUDA {}", clean(v)));
    }
    rest.push_str(&format!(
        "  {}  {}",
        clean(&s.provider),
        gpusel_core::timefmt::format(s.time)
    ));
    vec![(clean(&s.host), Style::Bold), (rest, Style::Plain)]
}

fn percent(v: Option<u8>) -> (String, Style) {
    match v {
        Some(p) => (format!("{p}%"), Style::load(p)),
        None => ("-".into(), Style::Dim),
    }
}

/// `62/80 GiB` when both share a unit, `4 MiB/80 GiB` when not.
fn memory_text(used: Option<u64>, total: Option<u64>) -> String {
    let split = |b: u64| {
        let t = format_bytes(b);
        match t.split_once(' ') {
            Some((n, u)) => (n.to_string(), u.to_string()),
            None => (t, String::new()),
        }
    };
    match (used, total) {
        (Some(u), Some(t)) => {
            let ((un, uu), (tn, tu)) = (split(u), split(t));
            if uu == tu {
                format!("{un}/{tn} {tu}")
            } else {
                format!("{un} {uu}/{tn} {tu}")
            }
        }
        (None, Some(t)) => format!("?/{}", format_bytes(t)),
        (Some(u), None) => format!("{}/?", format_bytes(u)),
        (None, None) => "-".into(),
    }
}

fn memory_fraction(used: Option<u64>, total: Option<u64>) -> Option<f64> {
    match (used, total) {
        (Some(u), Some(t)) if t > 0 => Some((u as f64 / t as f64).clamp(0.0, 1.0)),
        _ => None,
    }
}

fn bar(fraction: Option<f64>) -> (String, Style) {
    let Some(f) = fraction else {
        return (String::new(), Style::Plain);
    };
    let full = (f * BAR as f64).round() as usize;
    let text = format!(
        "{}{}",
        "█".repeat(full),
        "░".repeat(BAR.saturating_sub(full))
    );
    (text, Style::load((f * 100.0).round() as u8))
}

fn watts(mw: u32) -> String {
    // Rounded without `mw + 500`, which overflows on a snapshot file's or a
    // remote agent's u32::MAX.
    format!("{}", mw / 1000 + u32::from(mw % 1000 >= 500))
}

fn power(draw: Option<u32>, limit: Option<u32>) -> String {
    match (draw, limit) {
        (Some(d), Some(l)) => format!("{}/{} W", watts(d), watts(l)),
        (Some(d), None) => format!("{} W", watts(d)),
        (None, Some(l)) => format!("?/{} W", watts(l)),
        (None, None) => "-".into(),
    }
}

fn gpu_row(gpu: &Gpu, now: SystemTime, look: &Look) -> Row {
    let name = clean(&gpu.name);
    let name = match name.strip_prefix("NVIDIA ") {
        Some(short) if !look.wide => short.to_string(),
        _ => name,
    };
    let fraction = memory_fraction(gpu.memory_used, gpu.memory_total);
    let (mem, bar_) = (
        memory_text(gpu.memory_used, gpu.memory_total),
        bar(fraction),
    );
    let mem_style = fraction.map_or(Style::Dim, |f| Style::load((f * 100.0).round() as u8));
    let ban = banned_by(&look.bans, gpusel_core::Device::whole(gpu));
    let mark = if ban.is_some() {
        Mark::Banned
    } else {
        Mark::of_gpu(gpu, &look.idle)
    };
    let (mark, mark_style) = mark.text();
    let (util, util_style) = percent(gpu.utilization_gpu);
    let (mem_util, mem_util_style) = percent(gpu.utilization_memory);
    let (temp, temp_style) = match gpu.temperature {
        Some(t) => (format!("{t}C"), Style::temperature(t)),
        None => ("-".into(), Style::Dim),
    };
    let cells = vec![
        (Col::Index, gpu.index.to_string(), Style::Bold),
        (Col::Mark, mark.into(), mark_style),
        (Col::Name, name, Style::Plain),
        (Col::Util, util, util_style),
        (Col::MemUtil, mem_util, mem_util_style),
        (Col::Memory, mem, mem_style),
        (Col::Bar, bar_.0, bar_.1),
        (Col::Temp, temp, temp_style),
        (
            Col::Power,
            power(gpu.power_draw, gpu.power_limit),
            Style::Plain,
        ),
        (
            Col::Sm,
            gpu.sm_clock.map_or("-".into(), |c| format!("{c} MHz")),
            Style::Plain,
        ),
        (
            Col::Perf,
            gpu.performance_state
                .map_or("-".into(), |p| format!("P{p}")),
            Style::Plain,
        ),
        (
            Col::Mode,
            gpu.compute_mode.map_or("-", compute_mode).into(),
            Style::Plain,
        ),
        (
            Col::Bus,
            gpu.pci_bus_id.as_deref().map_or("-".into(), clean),
            Style::Plain,
        ),
        (Col::Uuid, clean(&gpu.uuid), Style::Dim),
    ];
    let mut below = Vec::new();
    if gpu.compute_mode == Some(gpusel_core::ComputeMode::Prohibited) {
        below.push(Below::Text(
            format!("[x] {}", gpusel_core::Reason::ComputeProhibited),
            Style::Red,
        ));
    }
    if let Some(note) = gpusel_core::peak_note(gpu) {
        below.push(Below::Text(note, Style::Yellow));
    }
    if !gpu.mig_enabled() {
        below.extend(processes_below(gpu.processes.as_deref(), now, look));
        below.extend(ghost_below(gpusel_core::Device::whole(gpu), look));
    } else if gpu.mig_devices.is_empty() {
        below.push(Below::Text(
            "[!] MIG mode: its MIG devices are not listed (the nvml provider lists them)".into(),
            Style::Red,
        ));
    }
    below.extend(ban.map(ban_below));
    below.extend(lease_below(gpu.lease.as_ref()));
    below.extend(share_lines(gpu.lease.as_ref()));
    Row { cells, below }
}

/// Memory no listed process holds, when it is over the idle tolerance.
fn ghost_below(device: gpusel_core::Device<'_>, look: &Look) -> Option<Below> {
    let ghost = look.idle.ghost(&device)?;
    Some(Below::Text(
        format!(
            "[!] {} in use by no process visible here",
            format_bytes(ghost.unaccounted)
        ),
        Style::Red,
    ))
}

/// nvidia-smi's name for a compute mode in its table.
fn compute_mode(mode: gpusel_core::ComputeMode) -> &'static str {
    match mode {
        gpusel_core::ComputeMode::Default => "Default",
        gpusel_core::ComputeMode::ExclusiveThread => "E. Thread",
        gpusel_core::ComputeMode::Prohibited => "Prohibited",
        gpusel_core::ComputeMode::ExclusiveProcess => "E. Process",
    }
}

/// The ban that keeps `device` from every job, if one does.
fn banned_by<'a>(
    bans: &'a [gpusel_core::Ban],
    device: gpusel_core::Device<'_>,
) -> Option<&'a gpusel_core::Ban> {
    bans.iter().find(|b| b.matches(&device))
}

fn ban_below(ban: &gpusel_core::Ban) -> Below {
    Below::Text(
        format!(
            "[x] banned by {} ({}): never given out",
            clean(&ban.source),
            ban.rule
        ),
        Style::Red,
    )
}

fn mig_row(gpu: &Gpu, mig: &MigDevice, now: SystemTime, look: &Look) -> Row {
    let fraction = memory_fraction(mig.memory_used, mig.memory_total);
    let mem_style = fraction.map_or(Style::Dim, |f| Style::load((f * 100.0).round() as u8));
    let ban = banned_by(&look.bans, gpusel_core::Device::mig(gpu, mig));
    let mark = if ban.is_some() {
        Mark::Banned
    } else {
        Mark::of_mig(gpu, mig, &look.idle)
    };
    let (mark, mark_style) = mark.text();
    let bar_ = bar(fraction);
    let profile = mig.profile.as_deref().map_or("?".into(), clean);
    let cells = vec![
        (
            Col::Index,
            format!("{}:{}", gpu.index, mig.index),
            Style::Bold,
        ),
        (Col::Mark, mark.into(), mark_style),
        (Col::Name, format!("└ MIG {profile}"), Style::Plain),
        (
            Col::Memory,
            memory_text(mig.memory_used, mig.memory_total),
            mem_style,
        ),
        (Col::Bar, bar_.0, bar_.1),
        (Col::Uuid, clean(&mig.uuid), Style::Dim),
    ];
    let mut below = processes_below(mig.processes.as_deref(), now, look);
    below.extend(ghost_below(gpusel_core::Device::mig(gpu, mig), look));
    below.extend(ban.map(ban_below));
    below.extend(lease_below(mig.lease.as_ref()));
    below.extend(share_lines(mig.lease.as_ref()));
    Row { cells, below }
}

fn processes_below(list: Option<&[GpuProcess]>, now: SystemTime, look: &Look) -> Vec<Below> {
    let Some(list) = list else {
        return vec![Below::Text(
            "[!] processes unknown: the driver did not list them".into(),
            Style::Red,
        )];
    };
    list.iter()
        .map(|p| Below::Process(process_cells(p, now, look)))
        .collect()
}

fn process_cells(p: &GpuProcess, now: SystemTime, look: &Look) -> ProcessCells {
    // A hidden compute client makes the GPU's state unknown; a hidden
    // graphics client (the X server in another namespace) does not.
    let hidden = p.visible == Some(false) && p.is_compute();
    let name = p.name.as_deref().map(clean).or_else(|| {
        p.command_line
            .as_ref()
            .and_then(|c| c.first())
            .map(|a| clean(a.rsplit('/').next().unwrap_or(a)))
    });
    let mut command = match (&p.command_line, look.full_cmd) {
        (Some(args), true) => args.iter().map(|a| clean(a)).collect::<Vec<_>>().join(" "),
        _ => name.unwrap_or_else(|| "?".into()),
    };
    if p.visible == Some(false) {
        command.push_str("  (not visible in /proc here)");
    }
    ProcessCells {
        hidden,
        pid: p.pid.to_string(),
        user: p.user.as_deref().map_or("?".into(), clean),
        memory: p.used_memory.map_or("-".into(), format_bytes),
        since: p.start_time.map_or("-".into(), |t| ago(t, now)),
        kind: match p.kind {
            Some(ProcessKind::Compute) => "C",
            Some(ProcessKind::Graphics) => "G",
            Some(ProcessKind::ComputeGraphics) => "C+G",
            None => "-",
        }
        .into(),
        command,
    }
}

/// The lease line. Leases are read live even when the snapshot is replayed
/// from a file, so their age is counted from now, not from the snapshot.
fn lease_below(lease: Option<&LeaseStatus>) -> Option<Below> {
    let now = SystemTime::now();
    let text = match lease? {
        LeaseStatus {
            blocked: Some(why), ..
        } => {
            return Some(Below::Text(
                format!("[!] unusable: {}", clean(why)),
                Style::Red,
            ));
        }
        // Shared: one line per share (share_lines).
        LeaseStatus {
            holder: None,
            shares,
            ..
        } if !shares.is_empty() => return None,
        LeaseStatus { holder: None, .. } => "leased (the holder left no record)".to_string(),
        LeaseStatus {
            holder: Some(h), ..
        } => format!(
            "leased by {} (pid {}, {}) {}: {}",
            clean(&h.user),
            h.pid,
            clean(&h.host),
            ago(h.since, now),
            h.command
                .iter()
                .map(|a| clean(a))
                .collect::<Vec<_>>()
                .join(" ")
        ),
    };
    Some(Below::Text(text, Style::Magenta))
}

/// One line per share of a shared device: who, what it reserved, what its
/// processes use so far.
fn share_lines(lease: Option<&LeaseStatus>) -> Vec<Below> {
    let now = SystemTime::now();
    lease
        .map(|l| l.shares.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|s| {
            let h = &s.holder;
            let used = s.used.map_or("-".into(), format_bytes);
            Below::Text(
                format!(
                    "shared by {} (pid {}, {}) {}: {} reserved, {used} used: {}",
                    clean(&h.user),
                    h.pid,
                    clean(&h.host),
                    ago(h.since, now),
                    format_bytes(s.reserved),
                    h.command
                        .iter()
                        .map(|a| clean(a))
                        .collect::<Vec<_>>()
                        .join(" ")
                ),
                Style::Magenta,
            )
        })
        .collect()
}

/// Widths of the process line parts, shared by every process line.
struct ProcessWidths {
    pid: usize,
    user: usize,
    memory: usize,
    since: usize,
    kind: usize,
}

impl ProcessWidths {
    /// Longest user name shown whole on a terminal; longer ones are cut
    /// unless `--wide`.
    const USER: usize = 12;

    fn of(rows: &[Row], look: &Look) -> Self {
        let procs = || {
            rows.iter().flat_map(|r| &r.below).filter_map(|b| match b {
                Below::Process(p) => Some(p),
                Below::Text(..) => None,
            })
        };
        let max = |f: fn(&ProcessCells) -> &str| procs().map(|p| width(f(p))).max().unwrap_or(0);
        let user = max(|p| &p.user);
        ProcessWidths {
            pid: max(|p| &p.pid),
            // Cut only to fit a terminal: a pipe gets every name whole.
            user: match look.width {
                Some(_) if !look.wide => user.min(Self::USER),
                _ => user,
            },
            memory: max(|p| &p.memory),
            since: max(|p| &p.since),
            kind: if look.wide { max(|p| &p.kind) } else { 0 },
        }
    }

    fn line(&self, p: &ProcessCells, limit: Option<usize>, look: &Look) -> Line {
        let pad_left = |t: &str, w: usize| format!("{}{t}", " ".repeat(w.saturating_sub(width(t))));
        let pad_right =
            |t: &str, w: usize| format!("{t}{}", " ".repeat(w.saturating_sub(width(t))));
        let gap = " ".repeat(GAP);
        let mut line: Line = vec![(INDENT.into(), Style::Plain)];
        if p.hidden {
            line.push(("[!] ".into(), Style::Red));
        }
        line.push((pad_left(&p.pid, self.pid), Style::Plain));
        line.push((gap.clone(), Style::Plain));
        let user = fit(&p.user, self.user);
        line.push((pad_right(&user, self.user), Style::Bold));
        line.push((gap.clone(), Style::Plain));
        line.push((pad_left(&p.memory, self.memory), Style::Plain));
        line.push((gap.clone(), Style::Plain));
        line.push((pad_right(&p.since, self.since), Style::Dim));
        line.push((gap.clone(), Style::Plain));
        if look.wide {
            line.push((pad_right(&p.kind, self.kind), Style::Plain));
            line.push((gap, Style::Plain));
        }
        let used: usize = line.iter().map(|(t, _)| width(t)).sum();
        let command = match limit {
            Some(l) => fit(&p.command, l.saturating_sub(used)),
            None => p.command.clone(),
        };
        let style = if p.hidden { Style::Red } else { Style::Plain };
        line.push((command, style));
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn look(width: Option<usize>) -> Look {
        Look {
            width,
            color: false,
            full_cmd: false,
            wide: false,
            bans: Vec::new(),
            idle: Default::default(),
        }
    }

    fn snapshot_with(processes: Vec<GpuProcess>) -> Snapshot {
        let mut s = Snapshot::new("box", "test");
        let mut gpu = Gpu::new(0, "GPU-0", "NVIDIA Test GPU");
        gpu.processes = Some(processes);
        gpu.utilization_gpu = Some(0);
        gpu.utilization_memory = Some(0);
        s.gpus.push(gpu);
        s
    }

    #[test]
    fn hostile_process_names_cannot_reach_the_terminal() {
        let mut p = GpuProcess::new(7);
        p.name = Some("py\x1b]0;owned\x07thon\x1b[2J".into());
        p.user = Some("bob\r".into());
        p.command_line = Some(vec!["\x1b[31mred".into(), "\u{202e}gnp.exe".into()]);
        for full_cmd in [false, true] {
            let text = render(
                &snapshot_with(vec![p.clone()]),
                &Look {
                    full_cmd,
                    ..look(None)
                },
            );
            assert!(!text.contains('\x1b') && !text.contains('\x07'), "{text:?}");
            assert!(
                !text.contains('\r') && !text.contains('\u{202e}'),
                "{text:?}"
            );
            assert!(text.contains("bob\\r"), "{text}");
        }
    }

    #[test]
    fn every_line_fits_the_width() {
        let mut p = GpuProcess::new(123_456);
        p.name = Some("名前".repeat(100));
        p.user = Some("a-very-long-user-name-indeed".into());
        let s = snapshot_with(vec![p]);
        for cols in [20, 40, 80, 100] {
            let text = render(&s, &look(Some(cols)));
            for line in text.lines() {
                assert!(width(line) <= cols, "{cols}: {line:?}");
            }
        }
    }

    #[test]
    fn colors_only_when_asked() {
        let s = snapshot_with(vec![]);
        assert!(!render(&s, &look(None)).contains('\x1b'));
        let colored = render(
            &s,
            &Look {
                color: true,
                ..look(None)
            },
        );
        assert!(colored.contains("\x1b[32m[ ]\x1b[0m"), "{colored:?}");
    }
}
