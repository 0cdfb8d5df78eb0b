//! From nvidia-smi's CSV to gpusel's model. Units: MiB become bytes, watts
//! (with decimals) milliwatts, `P0` becomes 0. A value nvidia-smi could not
//! read (`[N/A]`, `[Not Supported]`, `[Insufficient Permissions]`,
//! `[Unknown Error]`, any other bracketed note, `N/A`, empty) becomes `None`.

use gpusel_core::{Gpu, GpuProcess};

use crate::csv::split_row;

/// The `--query-gpu` fields, in the order the row parser reads them.
pub const GPU_FIELDS: [&str; 17] = [
    "index",
    "uuid",
    "name",
    "pci.bus_id",
    "memory.total",
    "memory.used",
    "memory.free",
    "utilization.gpu",
    "utilization.memory",
    "temperature.gpu",
    "power.draw",
    "power.limit",
    "pstate",
    "clocks.sm",
    "mig.mode.current",
    "driver_version",
    "compute_mode",
];
/// Fields that drivers older than R450 reject (`Field "mig.mode.current" is
/// not a valid field to query.`); the query is retried without them.
pub const NEWER_GPU_FIELDS: [&str; 1] = ["mig.mode.current"];

/// The `--query-compute-apps` fields, in the order the row parser reads them.
pub const PROCESS_FIELDS: [&str; 4] = ["pid", "process_name", "used_memory", "gpu_uuid"];
/// Column of the process name, the one that may hold commas.
const PROCESS_NAME_COLUMN: usize = 1;

/// The GPUs of a `--query-gpu` output, the driver version, and the lines
/// that were not GPU rows (warnings, garbage), for the caller to log.
#[derive(Debug, Default)]
pub struct GpuRows {
    /// One per GPU row, in output (index) order.
    pub gpus: Vec<Gpu>,
    /// Driver version from the first row that has one.
    pub driver_version: Option<String>,
    /// Non-empty lines that were not GPU rows.
    pub skipped: Vec<String>,
}

/// Parses the output of `--query-gpu=FIELDS`, where `fields` is
/// [`GPU_FIELDS`] or a subset of it in the same order.
pub fn gpus(text: &str, fields: &[&str]) -> GpuRows {
    let mut rows = GpuRows::default();
    for line in text.lines() {
        if line.trim().is_empty() {
            continue;
        }
        match gpu_row(line, fields) {
            Some((gpu, driver)) => {
                if rows.driver_version.is_none() {
                    rows.driver_version = driver;
                }
                rows.gpus.push(gpu);
            }
            None => rows.skipped.push(line.to_string()),
        }
    }
    rows
}

fn gpu_row(line: &str, fields: &[&str]) -> Option<(Gpu, Option<String>)> {
    let name_column = fields.iter().position(|f| *f == "name")?;
    let f = split_row(line, fields.len(), name_column)?;
    // By name, so that a query without some fields still parses.
    let field = |i: usize| {
        let name = GPU_FIELDS.get(i)?;
        let column = fields.iter().position(|f| f == name)?;
        f.get(column).and_then(|v| value(v))
    };
    // A row without a numeric index and a GPU UUID is not a GPU row (a
    // warning that happens to hold many commas); everything else may be unknown.
    let index: u32 = field(0)?.parse().ok()?;
    let uuid = field(1).filter(|u| u.starts_with("GPU-"))?;
    let mut gpu = Gpu::new(index, uuid, field(2).unwrap_or("?"));
    gpu.pci_bus_id = field(3).map(str::to_string);
    gpu.memory_total = field(4).and_then(mib);
    gpu.memory_used = field(5).and_then(mib);
    gpu.memory_free = field(6).and_then(mib);
    gpu.utilization_gpu = field(7).and_then(percent);
    gpu.utilization_memory = field(8).and_then(percent);
    gpu.temperature = field(9).and_then(|t| number(t).parse().ok());
    gpu.power_draw = field(10).and_then(milliwatts);
    gpu.power_limit = field(11).and_then(milliwatts);
    gpu.performance_state = field(12).and_then(pstate);
    gpu.sm_clock = field(13).and_then(|c| number(c).parse().ok());
    gpu.mig_mode = field(14).and_then(enabled);
    let driver = field(15).map(str::to_string);
    gpu.compute_mode = field(16).and_then(gpusel_core::ComputeMode::from_smi_name);
    Some((gpu, driver))
}

/// One row of `--query-compute-apps=PROCESS_FIELDS`: the GPU UUID and the process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessRow {
    /// UUID of the GPU the process uses.
    pub gpu_uuid: String,
    /// The process, with pid, name (as nvidia-smi prints it) and used memory.
    pub process: GpuProcess,
}

/// The process rows of a `--query-compute-apps` output, and the lines that
/// were not rows. `No running processes found` (printed by some drivers
/// even in CSV mode) is an empty list, not a skipped line.
pub fn processes(text: &str) -> (Vec<ProcessRow>, Vec<String>) {
    let mut rows = Vec::new();
    let mut skipped = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.eq_ignore_ascii_case("No running processes found") {
            continue;
        }
        match process_row(line) {
            Some(row) => rows.push(row),
            None => skipped.push(line.to_string()),
        }
    }
    (rows, skipped)
}

fn process_row(line: &str) -> Option<ProcessRow> {
    let f = split_row(line, PROCESS_FIELDS.len(), PROCESS_NAME_COLUMN)?;
    let field = |i: usize| f.get(i).and_then(|v| value(v));
    let pid: u32 = field(0)?.parse().ok()?;
    let gpu_uuid = field(3)?.to_string();
    let mut process = GpuProcess::new(pid);
    process.name = field(1).map(str::to_string);
    process.used_memory = field(2).and_then(mib);
    Some(ProcessRow { gpu_uuid, process })
}

/// `None` for the ways nvidia-smi says "no value": empty, `N/A`, and any
/// bracketed note (`[N/A]`, `[Not Supported]`, `[Insufficient Permissions]`,
/// `[Unknown Error]`, `[Requested functionality has been deprecated]`, ...).
pub fn value(raw: &str) -> Option<&str> {
    let v = raw.trim();
    let bracketed = v.starts_with('[') && v.ends_with(']');
    (!v.is_empty() && !bracketed && !v.eq_ignore_ascii_case("N/A")).then_some(v)
}

/// The number at the start of a value, dropping a unit nvidia-smi may print
/// despite `nounits` (`81559 MiB`, `69.85 W`, `0 %`).
fn number(v: &str) -> &str {
    v.split_whitespace().next().unwrap_or("")
}

fn mib(v: &str) -> Option<u64> {
    number(v).parse::<u64>().ok()?.checked_mul(1 << 20)
}

fn percent(v: &str) -> Option<u8> {
    number(v).parse::<u8>().ok().filter(|p| *p <= 100)
}

/// Watts with decimals (`352.12`) to milliwatts, in integers so that no
/// float rounding can move a value across a `--max-power` limit.
fn milliwatts(v: &str) -> Option<u32> {
    let n = number(v);
    let (whole, frac) = n.split_once('.').unwrap_or((n, ""));
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut milli: u32 = 0;
    for i in 0..3 {
        let digit = frac.as_bytes().get(i).map_or(0, |b| u32::from(b - b'0'));
        milli = milli * 10 + digit;
    }
    let round_up = frac.as_bytes().get(3).is_some_and(|b| *b >= b'5');
    whole
        .parse::<u32>()
        .ok()?
        .checked_mul(1000)?
        .checked_add(milli + u32::from(round_up))
}

fn pstate(v: &str) -> Option<u8> {
    let n: u8 = v
        .strip_prefix('P')
        .or_else(|| v.strip_prefix('p'))?
        .parse()
        .ok()?;
    (n <= 15).then_some(n)
}

fn enabled(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "enabled" => Some(true),
        "disabled" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// GPU 0 of the recorded H100 capture (see tests/fixtures/smi/README.md),
    /// in GPU_FIELDS order.
    const H100_ROW: &str = "0, GPU-00000000-0000-0000-0000-000000000000, NVIDIA H100 80GB HBM3, 00000000:00:09.0, 81559, 19818, 61263, 100, 11, 59, 631.95, 700.00, P0, 1980, Disabled, 590.48.01, Exclusive_Process";

    #[test]
    fn a_recorded_row_fills_every_field_in_model_units() {
        let rows = gpus(H100_ROW, &GPU_FIELDS);
        assert!(rows.skipped.is_empty());
        assert_eq!(rows.driver_version.as_deref(), Some("590.48.01"));
        let [gpu] = rows.gpus.as_slice() else {
            panic!("{rows:?}")
        };
        assert_eq!(gpu.index, 0);
        assert_eq!(gpu.uuid, "GPU-00000000-0000-0000-0000-000000000000");
        assert_eq!(gpu.name, "NVIDIA H100 80GB HBM3");
        assert_eq!(gpu.pci_bus_id.as_deref(), Some("00000000:00:09.0"));
        assert_eq!(gpu.memory_total, Some(81559 << 20));
        assert_eq!(gpu.memory_used, Some(19818 << 20));
        assert_eq!(gpu.memory_free, Some(61263 << 20));
        assert_eq!(gpu.utilization_gpu, Some(100));
        assert_eq!(gpu.utilization_memory, Some(11));
        assert_eq!(gpu.temperature, Some(59));
        assert_eq!(gpu.power_draw, Some(631_950));
        assert_eq!(gpu.power_limit, Some(700_000));
        assert_eq!(gpu.performance_state, Some(0));
        assert_eq!(gpu.sm_clock, Some(1980));
        assert_eq!(gpu.mig_mode, Some(false));
        assert_eq!(
            gpu.compute_mode,
            Some(gpusel_core::ComputeMode::ExclusiveProcess)
        );
        assert_eq!(gpu.processes, None, "processes come from the other query");
    }

    #[test]
    fn every_no_value_marker_becomes_none() {
        for marker in [
            "[N/A]",
            "[Not Supported]",
            "[Insufficient Permissions]",
            "[Unknown Error]",
            "[Requested functionality has been deprecated]",
            "N/A",
            "",
            "  ",
        ] {
            assert_eq!(value(marker), None, "{marker:?}");
        }
        let row = "1, GPU-1, NVIDIA GeForce GTX 1080, [N/A], [N/A], [Insufficient Permissions], [Unknown Error], [Not Supported], [Not Supported], N/A, [N/A], [Not Supported], [N/A], [N/A], [N/A], [N/A], [N/A]";
        let rows = gpus(row, &GPU_FIELDS);
        let gpu = &rows.gpus[0];
        let mut expected = Gpu::new(1, "GPU-1", "NVIDIA GeForce GTX 1080");
        expected.processes = None;
        assert_eq!(gpu, &expected);
        assert_eq!(rows.driver_version, None);
    }

    #[test]
    fn an_old_driver_without_mig_fields_parses() {
        let fields: Vec<&str> = GPU_FIELDS
            .into_iter()
            .filter(|f| !NEWER_GPU_FIELDS.contains(f))
            .collect();
        let row = H100_ROW.replace(", Disabled,", ",");
        let rows = gpus(&row, &fields);
        assert!(rows.skipped.is_empty(), "{rows:?}");
        assert_eq!(rows.gpus[0].mig_mode, None);
        assert_eq!(rows.gpus[0].sm_clock, Some(1980));
        assert_eq!(rows.driver_version.as_deref(), Some("590.48.01"));
    }

    #[test]
    fn units_and_odd_values() {
        assert_eq!(milliwatts("69.85"), Some(69_850));
        assert_eq!(milliwatts("700"), Some(700_000));
        assert_eq!(milliwatts("62.005"), Some(62_005));
        assert_eq!(milliwatts("0.0004"), Some(0));
        assert_eq!(milliwatts("0.0005"), Some(1));
        assert_eq!(milliwatts("69.85 W"), Some(69_850));
        assert_eq!(milliwatts("-1.0"), None);
        assert_eq!(milliwatts(".5"), None);
        assert_eq!(milliwatts("1e3"), None);
        assert_eq!(milliwatts("4294968.00"), None, "overflows u32 milliwatts");
        assert_eq!(mib("81559 MiB"), Some(81559 << 20));
        assert_eq!(mib("-1"), None);
        assert_eq!(mib("18446744073709551615"), None, "overflows bytes");
        assert_eq!(percent("101"), None);
        assert_eq!(percent("0 %"), Some(0));
        assert_eq!(pstate("P8"), Some(8));
        assert_eq!(pstate("P16"), None);
        assert_eq!(pstate("8"), None);
        assert_eq!(enabled("Enabled"), Some(true));
        assert_eq!(enabled("Disabled"), Some(false));
        assert_eq!(enabled("Pending"), None);
    }

    #[test]
    fn a_warning_line_first_is_skipped_not_a_gpu() {
        let text = format!("WARNING: infoROM is corrupted at gpu 0000:00:09.0\n{H100_ROW}\n");
        let rows = gpus(&text, &GPU_FIELDS);
        assert_eq!(rows.gpus.len(), 1);
        assert_eq!(
            rows.skipped,
            ["WARNING: infoROM is corrupted at gpu 0000:00:09.0"]
        );
    }

    #[test]
    fn rows_with_missing_columns_or_no_identity_are_skipped() {
        let short = "0, GPU-0, NVIDIA A100, 00000000:07:00.0, 81920";
        let no_index = H100_ROW.replacen("0, ", "x, ", 1);
        let no_uuid = H100_ROW.replace("GPU-00000000", "[N/A]");
        let rows = gpus(&format!("{short}\n{no_index}\n{no_uuid}\n"), &GPU_FIELDS);
        assert!(rows.gpus.is_empty());
        assert_eq!(rows.skipped.len(), 3);
    }

    #[test]
    fn a_gpu_name_with_a_comma_keeps_the_other_columns_in_place() {
        let row = H100_ROW.replace("NVIDIA H100 80GB HBM3", "NVIDIA H100, rev 2");
        let quoted = H100_ROW.replace("NVIDIA H100 80GB HBM3", "\"NVIDIA H100, rev 2\"");
        for text in [row, quoted] {
            let gpu = &gpus(&text, &GPU_FIELDS).gpus[0];
            assert_eq!(gpu.name, "NVIDIA H100, rev 2");
            assert_eq!(gpu.pci_bus_id.as_deref(), Some("00000000:00:09.0"));
            assert_eq!(gpu.sm_clock, Some(1980));
        }
    }

    #[test]
    fn recorded_process_rows() {
        // The H100 capture under load: names are what the driver reports
        // (argv[0], a path as often as not).
        let text = "11327, /root/tools/memhog, 2566, GPU-00000000-0000-0000-0000-000000000000\n\
                    11345, ./gpu_burn, 15690, GPU-00000000-0000-0000-0000-000000000000\n";
        let (rows, skipped) = processes(text);
        assert!(skipped.is_empty());
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].gpu_uuid, "GPU-00000000-0000-0000-0000-000000000000");
        assert_eq!(rows[0].process.pid, 11327);
        assert_eq!(rows[0].process.name.as_deref(), Some("/root/tools/memhog"));
        assert_eq!(rows[0].process.used_memory, Some(2566 << 20));
        assert_eq!(rows[1].process.name.as_deref(), Some("./gpu_burn"));
    }

    #[test]
    fn process_edge_cases() {
        let (rows, skipped) = processes("");
        assert!(
            rows.is_empty() && skipped.is_empty(),
            "no processes: empty output"
        );
        let (rows, skipped) = processes("No running processes found\n");
        assert!(rows.is_empty() && skipped.is_empty());
        // In MIG mode the driver cannot attribute memory per process.
        let (rows, _) = processes("4242, python, [N/A], GPU-1\n");
        assert_eq!(rows[0].process.used_memory, None);
        let (rows, _) = processes("4242, [Insufficient Permissions], 10, GPU-1\n");
        assert_eq!(rows[0].process.name, None, "left for /proc to fill");
        let (rows, _) = processes("4242, a, b, c, 10, GPU-1\n");
        assert_eq!(rows[0].process.name.as_deref(), Some("a, b, c"));
        let (rows, skipped) = processes("x, python, 10, GPU-1\n4242, python, 10\n");
        assert!(rows.is_empty());
        assert_eq!(skipped.len(), 2);
    }

    proptest! {
        #[test]
        fn arbitrary_output_never_panics(text in "(?s).{0,400}") {
            let rows = gpus(&text, &GPU_FIELDS);
            for gpu in &rows.gpus {
                prop_assert!(gpu.uuid.starts_with("GPU-"));
            }
            let _ = processes(&text);
        }

        #[test]
        fn csv_like_output_never_panics(
            lines in proptest::collection::vec(
                proptest::collection::vec(
                    prop_oneof![
                        "[0-9]{1,12}",
                        "[0-9]{1,6}\\.[0-9]{0,4}",
                        Just("[N/A]".to_string()),
                        Just("[Not Supported]".to_string()),
                        "GPU-[0-9a-f-]{0,12}",
                        "P[0-9]{1,3}",
                        "\"[^\"]{0,8}\"?",
                        ".{0,10}",
                    ],
                    0..20,
                ),
                0..6,
            )
        ) {
            let text: String = lines.iter().map(|l| l.join(", ") + "\n").collect();
            let rows = gpus(&text, &GPU_FIELDS);
            prop_assert_eq!(rows.gpus.len() + rows.skipped.len(), text.lines().filter(|l| !l.trim().is_empty()).count());
            let _ = processes(&text);
        }
    }
}
