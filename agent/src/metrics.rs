//! `/metrics`: the snapshot in the Prometheus (OpenMetrics) text format,
//! rendered once per snapshot.
//!
//! Names follow Prometheus's rules: a `gpusel_` prefix, base units in the
//! name (`_bytes`, `_celsius`, `_ratio` for 0-1 fractions, `_watts`,
//! `_hertz`, `_seconds`), and on every GPU series the labels `gpu` (the
//! index `gpusel list` shows), `uuid`, `name` and `host`. A value the driver
//! does not report is left out, not written as 0. docs/metrics.md maps each
//! one to its dcgm-exporter name.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use gpusel_core::{Gpu, Snapshot};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::{Registry, Unit};

/// The `Content-Type` of the OpenMetrics body [`render`] writes, which
/// Prometheus asks for.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The `Content-Type` of the classic Prometheus text format of
/// [`to_classic`], served to every other client (curl, promtool, older
/// scrapers), as dcgm-exporter and node_exporter serve it.
pub const CLASSIC: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What one round of the snapshot loop knows, for [`render`].
#[derive(Debug, Clone, Copy)]
pub struct Round<'a> {
    /// The last good snapshot, if any.
    pub snapshot: Option<&'a Snapshot>,
    /// Whether the last attempt succeeded.
    pub up: bool,
    /// How long the last attempt took.
    pub duration: Duration,
    /// Failed attempts since the agent started.
    pub errors_total: u64,
    /// Whether the lease directory could be read on the last good snapshot.
    pub leases_known: bool,
}

pub(crate) type Labels = Vec<(&'static str, String)>;

/// A gauge family whose series are written in the order they were set (GPU
/// order), where prometheus-client's `Family` writes them in a hash map's
/// order: a person reading `/metrics` finds GPU 0 first.
#[derive(Debug, Clone)]
pub(crate) struct Series(Arc<SeriesInner>);

#[derive(Debug)]
struct SeriesInner {
    name: String,
    help: String,
    unit: Option<Unit>,
    samples: Mutex<Vec<(Labels, f64)>>,
}

impl Series {
    pub(crate) fn set(&self, labels: &Labels, value: f64) {
        self.samples().push((labels.clone(), value));
    }

    fn samples(&self) -> std::sync::MutexGuard<'_, Vec<(Labels, f64)>> {
        self.0
            .samples
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Collector for Series {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let samples = self.samples();
        // Like the registry's own metrics: no samples, no family.
        if samples.is_empty() {
            return Ok(());
        }
        let inner = &self.0;
        let mut metric = encoder.encode_descriptor(
            &inner.name,
            &inner.help,
            inner.unit.as_ref(),
            MetricType::Gauge,
        )?;
        for (labels, value) in samples.iter() {
            ConstGauge::new(*value).encode(metric.encode_family(labels)?)?;
        }
        Ok(())
    }
}

/// One gauge family, registered with its help text and unit.
pub(crate) fn gauge(registry: &mut Registry, name: &str, help: &str, unit: Option<Unit>) -> Series {
    let series = Series(Arc::new(SeriesInner {
        name: name.into(),
        // The registry ends its own metrics' help with a period.
        help: format!("{help}."),
        unit,
        samples: Mutex::default(),
    }));
    registry.register_collector(Box::new(series.clone()));
    series
}

fn ratio() -> Option<Unit> {
    Some(Unit::Other("ratio".into()))
}

/// Renders the metrics text of one round.
pub fn render(round: &Round<'_>) -> String {
    let mut registry = Registry::with_prefix("gpusel");
    let up = Gauge::<i64>::default();
    registry.register(
        "up",
        "1 when the last attempt to read the GPUs succeeded, 0 while the values below are the last good ones",
        up.clone(),
    );
    up.set(i64::from(round.up));
    let errors = Counter::<u64>::default();
    registry.register(
        "snapshot_errors",
        "Failed attempts to read the GPUs since the agent started",
        errors.clone(),
    );
    errors.inc_by(round.errors_total);
    let duration = Gauge::<f64, AtomicU64>::default();
    registry.register_with_unit(
        "snapshot_duration",
        "How long the last attempt to read the GPUs took",
        Unit::Seconds,
        duration.clone(),
    );
    duration.set(round.duration.as_secs_f64());

    if let Some(snapshot) = round.snapshot {
        SnapshotFamilies::register(&mut registry).record(snapshot, round.leases_known, None);
    }
    finish(&registry)
}

/// Every family a snapshot fills: its timestamp, `gpu_info`, the per-GPU and
/// the per-MIG-device series. The agent records its one snapshot; the master
/// records each node's, labelled with the node's name.
pub(crate) struct SnapshotFamilies {
    timestamp: Series,
    info: Series,
    waiters: Series,
    gpus: GpuFamilies,
    migs: MigFamilies,
}

impl SnapshotFamilies {
    pub(crate) fn register(registry: &mut Registry) -> Self {
        SnapshotFamilies {
            timestamp: gauge(
                registry,
                "snapshot_timestamp",
                "When the served snapshot was taken, in seconds since the Unix epoch; time() minus this is its age",
                Some(Unit::Seconds),
            ),
            info: gauge(
                registry,
                "gpu_info",
                "Always 1; labels carry the GPU's PCI bus id, driver and provider",
                None,
            ),
            waiters: gauge(
                registry,
                "waiters",
                "gpusel jobs waiting (--wait) in the node's queue",
                None,
            ),
            gpus: GpuFamilies::register(registry),
            migs: MigFamilies::register(registry),
        }
    }

    /// Records `snapshot`'s series; the lease series only when
    /// `leases_known` (a lease directory that cannot be read leaves them
    /// out rather than claim every GPU is free). `node`, on the master,
    /// labels every series with the node's name in the agents file, which
    /// tells two entries for one host apart.
    pub(crate) fn record(&self, snapshot: &Snapshot, leases_known: bool, node: Option<&str>) {
        // Label values are what the snapshot says, cleaned when it was
        // stored (the poller, the master's poll): an agent, or whoever
        // named a device, reaches no terminal that shows them.
        let host = snapshot.host.as_str();
        let with_node = |mut labels: Labels| {
            if let Some(node) = node {
                labels.push(("node", node.to_string()));
            }
            labels
        };
        let since_epoch = snapshot
            .time
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        self.timestamp.set(
            &with_node(vec![("host", host.to_string())]),
            since_epoch.as_secs_f64(),
        );
        if leases_known {
            self.waiters.set(
                &with_node(vec![("host", host.to_string())]),
                snapshot.waiters.len() as f64,
            );
        }
        for gpu in &snapshot.gpus {
            for mig in &gpu.mig_devices {
                self.migs
                    .record(mig, &with_node(mig_labels(gpu, mig, host)), leases_known);
            }
            let labels = with_node(labels(gpu, host));
            let mut info_labels = labels.clone();
            info_labels.push(("pci_bus_id", or_empty(gpu.pci_bus_id.as_deref())));
            info_labels.push((
                "driver_version",
                or_empty(snapshot.driver_version.as_deref()),
            ));
            info_labels.push(("provider", snapshot.provider.clone()));
            self.info.set(&info_labels, 1.0);
            self.gpus.record(gpu, &labels, leases_known);
        }
    }
}

/// The same metrics in the classic text format (0.0.4): OpenMetrics without
/// its `# UNIT` and `# EOF` lines, and with counters' `HELP` and `TYPE`
/// under the sample's name (`x_total`), where OpenMetrics puts the family's.
pub fn to_classic(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut text = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        match renamed {
            Some(line) => text.push_str(&line),
            None => text.push_str(line),
        }
        text.push('\n');
    }
    text
}

pub(crate) fn finish(registry: &Registry) -> String {
    let mut text = String::with_capacity(8192);
    // Writing into a String cannot fail.
    let _ = encode(&mut text, registry);
    text
}

fn or_empty(text: Option<&str>) -> String {
    text.unwrap_or_default().to_string()
}

fn mig_labels(gpu: &Gpu, mig: &gpusel_core::MigDevice, host: &str) -> Labels {
    vec![
        ("gpu", gpu.index.to_string()),
        ("mig", mig.index.to_string()),
        ("uuid", mig.uuid.clone()),
        ("profile", or_empty(mig.profile.as_deref())),
        ("host", host.to_string()),
    ]
}

fn labels(gpu: &Gpu, host: &str) -> Labels {
    vec![
        ("gpu", gpu.index.to_string()),
        ("uuid", gpu.uuid.clone()),
        ("name", gpu.name.clone()),
        ("host", host.to_string()),
    ]
}

/// The per-GPU families.
struct GpuFamilies {
    memory_total: Series,
    memory_used: Series,
    memory_free: Series,
    utilization: Series,
    memory_utilization: Series,
    temperature: Series,
    power_draw: Series,
    power_limit: Series,
    sm_clock: Series,
    performance_state: Series,
    processes: Series,
    process_memory: Series,
    mig_mode: Series,
    leased: Series,
    shares: Series,
    reserved: Series,
}

impl GpuFamilies {
    fn register(r: &mut Registry) -> Self {
        GpuFamilies {
            memory_total: gauge(r, "gpu_memory_total", "Total GPU memory", Some(Unit::Bytes)),
            memory_used: gauge(r, "gpu_memory_used", "Used GPU memory", Some(Unit::Bytes)),
            memory_free: gauge(r, "gpu_memory_free", "Free GPU memory", Some(Unit::Bytes)),
            utilization: gauge(
                r,
                "gpu_utilization",
                "Fraction of the last sample period in which a kernel ran (0-1)",
                ratio(),
            ),
            memory_utilization: gauge(
                r,
                "gpu_memory_utilization",
                "Fraction of the last sample period in which memory was read or written (0-1)",
                ratio(),
            ),
            temperature: gauge(
                r,
                "gpu_temperature",
                "GPU core temperature",
                Some(Unit::Celsius),
            ),
            power_draw: gauge(
                r,
                "gpu_power_draw",
                "Power draw",
                Some(Unit::Other("watts".into())),
            ),
            power_limit: gauge(
                r,
                "gpu_power_limit",
                "Enforced power limit",
                Some(Unit::Other("watts".into())),
            ),
            sm_clock: gauge(
                r,
                "gpu_sm_clock",
                "Current SM clock",
                Some(Unit::Other("hertz".into())),
            ),
            performance_state: gauge(
                r,
                "gpu_performance_state",
                "Performance state, 0 (P0, fastest) to 15",
                None,
            ),
            processes: gauge(
                r,
                "gpu_processes",
                "Processes holding a context on the GPU (or its MIG devices)",
                None,
            ),
            process_memory: gauge(
                r,
                "gpu_process_memory_used",
                "GPU memory used by all the processes on the GPU, as the driver accounts it",
                Some(Unit::Bytes),
            ),
            mig_mode: gauge(r, "gpu_mig_mode", "1 when MIG mode is on", None),
            leased: gauge(
                r,
                "gpu_leased",
                "1 when a gpusel job leases the GPU or one of its MIG devices",
                None,
            ),
            shares: gauge(
                r,
                "gpu_shares",
                "gpusel jobs sharing the GPU (--share)",
                None,
            ),
            reserved: gauge(
                r,
                "gpu_memory_reserved",
                "GPU memory the GPU's shares reserved and have not allocated yet",
                Some(Unit::Bytes),
            ),
        }
    }

    fn record(&self, gpu: &Gpu, labels: &Labels, leases_known: bool) {
        let set = |family: &Series, value: Option<f64>| {
            if let Some(v) = value {
                family.set(labels, v);
            }
        };
        set(&self.memory_total, gpu.memory_total.map(|v| v as f64));
        set(&self.memory_used, gpu.memory_used.map(|v| v as f64));
        set(&self.memory_free, gpu.memory_free.map(|v| v as f64));
        set(
            &self.utilization,
            gpu.utilization_gpu.map(|v| f64::from(v) / 100.0),
        );
        set(
            &self.memory_utilization,
            gpu.utilization_memory.map(|v| f64::from(v) / 100.0),
        );
        set(&self.temperature, gpu.temperature.map(f64::from));
        set(
            &self.power_draw,
            gpu.power_draw.map(|mw| f64::from(mw) / 1000.0),
        );
        set(
            &self.power_limit,
            gpu.power_limit.map(|mw| f64::from(mw) / 1000.0),
        );
        set(&self.sm_clock, gpu.sm_clock.map(|mhz| f64::from(mhz) * 1e6));
        set(
            &self.performance_state,
            gpu.performance_state.map(f64::from),
        );
        set(
            &self.mig_mode,
            gpu.mig_mode.map(|on| f64::from(u8::from(on))),
        );
        // A MIG GPU's processes live on its MIG devices; count them all, and
        // say nothing when any list is unknown rather than undercount.
        let lists: Option<Vec<&Vec<gpusel_core::GpuProcess>>> = if gpu.mig_devices.is_empty() {
            gpu.processes.as_ref().map(|p| vec![p])
        } else {
            gpu.mig_devices
                .iter()
                .map(|m| m.processes.as_ref())
                .collect()
        };
        if let Some(lists) = lists {
            let all = lists.iter().flat_map(|l| l.iter());
            set(&self.processes, Some(all.clone().count() as f64));
            let memory: Option<u64> = all.map(|p| p.used_memory).sum();
            set(&self.process_memory, memory.map(|m| m as f64));
        }
        if leases_known {
            let any = gpu.lease.is_some() || gpu.mig_devices.iter().any(|m| m.lease.is_some());
            set(&self.leased, Some(f64::from(u8::from(any))));
            let shares = gpu.lease.as_ref().map_or(0, |l| l.shares.len());
            set(&self.shares, Some(shares as f64));
            let outstanding = gpu.lease.as_ref().map_or(0, |l| l.outstanding());
            set(&self.reserved, Some(outstanding as f64));
        }
    }
}

/// The per-MIG-device families: a MIG device is what a job gets, so its
/// memory, processes and lease are what a dashboard of a MIG GPU shows.
struct MigFamilies {
    memory_total: Series,
    memory_used: Series,
    memory_free: Series,
    processes: Series,
    leased: Series,
}

impl MigFamilies {
    fn register(r: &mut Registry) -> Self {
        let help = |what: &str| {
            format!(
                "{what} (labels: gpu is the parent GPU's index, mig the device's, uuid its MIG UUID)"
            )
        };
        MigFamilies {
            memory_total: gauge(
                r,
                "mig_memory_total",
                &help("Total memory of a MIG device"),
                Some(Unit::Bytes),
            ),
            memory_used: gauge(
                r,
                "mig_memory_used",
                &help("Used memory of a MIG device"),
                Some(Unit::Bytes),
            ),
            memory_free: gauge(
                r,
                "mig_memory_free",
                &help("Free memory of a MIG device"),
                Some(Unit::Bytes),
            ),
            processes: gauge(r, "mig_processes", &help("Processes on a MIG device"), None),
            leased: gauge(
                r,
                "mig_leased",
                &help("1 when a gpusel job leases the MIG device"),
                None,
            ),
        }
    }

    fn record(&self, mig: &gpusel_core::MigDevice, labels: &Labels, leases_known: bool) {
        let set = |family: &Series, value: Option<f64>| {
            if let Some(v) = value {
                family.set(labels, v);
            }
        };
        set(&self.memory_total, mig.memory_total.map(|v| v as f64));
        set(&self.memory_used, mig.memory_used.map(|v| v as f64));
        set(&self.memory_free, mig.memory_free.map(|v| v as f64));
        set(
            &self.processes,
            mig.processes.as_ref().map(|p| p.len() as f64),
        );
        if leases_known {
            set(&self.leased, Some(f64::from(u8::from(mig.lease.is_some()))));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_and_waiters_are_counted() {
        let mut s = Snapshot::new("node1", "test");
        let mut gpu = Gpu::new(0, "GPU-0", "A100");
        let share = |reserved: u64, used: Option<u64>| gpusel_core::Share {
            holder: gpusel_core::Holder::current(vec!["job".into()]),
            reserved,
            used,
        };
        gpu.lease = Some(gpusel_core::LeaseStatus {
            holder: None,
            blocked: None,
            shares: vec![share(30 << 30, Some(10 << 30)), share(1 << 30, None)],
        });
        s.gpus.push(gpu);
        let waiter: gpusel_core::Waiter = serde_json::from_value(serde_json::json!({
            "holder": gpusel_core::Holder::current(vec!["wait".into()]),
            "wanted": {"count": "4"},
        }))
        .unwrap();
        s.waiters = vec![waiter.clone(), waiter];
        let text = render(&Round {
            snapshot: Some(&s),
            up: true,
            duration: Duration::from_millis(3),
            errors_total: 0,
            leases_known: true,
        });
        let labels = r#"{gpu="0",uuid="GPU-0",name="A100",host="node1"}"#;
        for line in [
            format!("gpusel_gpu_shares{labels} 2.0"),
            // 20 GiB still outstanding of the first, all 1 GiB of the second.
            format!("gpusel_gpu_memory_reserved_bytes{labels} 22548578304.0"),
            r#"gpusel_waiters{host="node1"} 2.0"#.to_string(),
        ] {
            assert!(text.lines().any(|l| l == line), "no line {line} in\n{text}");
        }
    }

    #[test]
    fn units_and_labels() {
        let mut s = Snapshot::new("node\"1", "test");
        let mut gpu = Gpu::new(3, "GPU-3", "NVIDIA A100\n\"evil\"");
        gpu.memory_total = Some(80 << 30);
        gpu.utilization_gpu = Some(45);
        gpu.power_draw = Some(87_500);
        gpu.processes = Some(vec![]);
        s.gpus.push(gpu);
        // Rendered as the poller stores it: cleaned.
        gpusel_core::sanitize::clean_snapshot(&mut s);
        let of = |s: &Snapshot| {
            render(&Round {
                snapshot: Some(s),
                up: true,
                duration: Duration::from_millis(3),
                errors_total: 2,
                leases_known: true,
            })
        };
        let text = of(&s);
        // The line break was cleaned into `\n` (gpusel_core::sanitize), whose
        // backslash the text format escapes.
        let labels = r#"{gpu="3",uuid="GPU-3",name="NVIDIA A100\\n\"evil\"",host="node\"1"}"#;
        for line in [
            format!("gpusel_gpu_memory_total_bytes{labels} 85899345920.0"),
            format!("gpusel_gpu_utilization_ratio{labels} 0.45"),
            format!("gpusel_gpu_power_draw_watts{labels} 87.5"),
            format!("gpusel_gpu_processes{labels} 0.0"),
            format!("gpusel_gpu_leased{labels} 0.0"),
            "gpusel_up 1".to_string(),
            "gpusel_snapshot_errors_total 2".to_string(),
        ] {
            assert!(text.lines().any(|l| l == line), "no line {line} in\n{text}");
        }
        let classic = to_classic(&text);
        let mut s = s.clone();
        s.gpus[0].name = "A100\x1b]52;c;ZXZpbA==\x07\r\u{202e}".into();
        gpusel_core::sanitize::clean_snapshot(&mut s);
        let evil = of(&s);
        assert!(
            !evil
                .chars()
                .any(|c| (c.is_control() && c != '\n') || c == '\u{202e}'),
            "{evil:?}"
        );
        assert!(
            evil.contains(r#"name="A100\\e]52;c;ZXZpbA==\\x07\\r\\u{202e}""#),
            "{evil}"
        );
        assert!(
            classic.contains("# HELP gpusel_snapshot_errors_total Failed"),
            "{classic}"
        );
        assert!(
            classic.contains(
                "# TYPE gpusel_snapshot_errors_total counter\ngpusel_snapshot_errors_total 2\n"
            ),
            "{classic}"
        );
        assert!(
            !classic.contains("# UNIT") && !classic.contains("# EOF"),
            "{classic}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
        // Unknown is absent, not zero.
        assert!(!text.contains("gpusel_gpu_temperature_celsius{"), "{text}");
    }

    #[test]
    fn series_come_in_gpu_order() {
        let mut s = Snapshot::new("h", "test");
        for i in 0..12 {
            let mut gpu = Gpu::new(i, format!("GPU-{i}"), "A100");
            gpu.temperature = Some(30 + i as i32);
            s.gpus.push(gpu);
        }
        let text = render(&Round {
            snapshot: Some(&s),
            up: true,
            duration: Duration::ZERO,
            errors_total: 0,
            leases_known: false,
        });
        let order: Vec<String> = text
            .lines()
            .filter(|l| l.starts_with("gpusel_gpu_temperature_celsius{"))
            .map(|l| l.split('"').nth(1).unwrap().to_string())
            .collect();
        let expected: Vec<String> = (0..12).map(|i| i.to_string()).collect();
        assert_eq!(order, expected);
        assert!(
            !text.contains("gpusel_gpu_leased"),
            "leases unknown: {text}"
        );
        assert!(
            !text.contains("gpusel_mig_"),
            "no MIG device, no MIG family: {text}"
        );
    }
}
