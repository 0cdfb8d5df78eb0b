//! What the job needs: every filter of the tools gpusel replaces.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use crate::count::Count;
use crate::device::Device;
use crate::idle::Load;
use crate::reason::Reason;

/// A device named on the command line: an NVML index (`3`), a MIG device
/// (`3:1`), or a UUID or unique UUID prefix (`GPU-5f2c`, `MIG-8a1b`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DeviceSpec {
    /// NVML index of a GPU (also matches its MIG devices).
    Index(u32),
    /// GPU index and MIG device index.
    Mig(u32, u32),
    /// UUID or UUID prefix, compared without regard to case.
    Uuid(String),
}

/// A device spec that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid device '{input}': write a GPU index (3), a MIG device (3:1) or a UUID (GPU-5f2c..., MIG-8a1b...)"
)]
pub struct DeviceSpecError {
    /// What the user wrote.
    pub input: String,
}

impl FromStr for DeviceSpec {
    type Err = DeviceSpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let err = || DeviceSpecError {
            input: s.to_string(),
        };
        let upper = t.get(..4).map(str::to_ascii_uppercase);
        if matches!(upper.as_deref(), Some("GPU-") | Some("MIG-")) {
            if t.len() == 4 || !t.is_ascii() || t.contains(char::is_whitespace) {
                return Err(err());
            }
            return Ok(DeviceSpec::Uuid(t.to_string()));
        }
        if let Some((g, m)) = t.split_once(':') {
            let g = g.parse().map_err(|_| err())?;
            let m = m.parse().map_err(|_| err())?;
            return Ok(DeviceSpec::Mig(g, m));
        }
        t.parse().map(DeviceSpec::Index).map_err(|_| err())
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Index(i) => write!(f, "{i}"),
            DeviceSpec::Mig(g, m) => write!(f, "{g}:{m}"),
            DeviceSpec::Uuid(u) => f.write_str(u),
        }
    }
}

impl DeviceSpec {
    /// Parses a comma-separated list (`0,2,GPU-5f2c`).
    pub fn parse_list(s: &str) -> Result<Vec<DeviceSpec>, DeviceSpecError> {
        s.split(',')
            .filter(|p| !p.trim().is_empty())
            .map(str::parse)
            .collect()
    }

    /// Whether this spec names `device`.
    pub fn matches(&self, device: &Device<'_>) -> bool {
        match self {
            DeviceSpec::Index(i) => device.gpu.index == *i,
            DeviceSpec::Mig(g, m) => {
                device.gpu.index == *g && device.mig.is_some_and(|mig| mig.index == *m)
            }
            DeviceSpec::Uuid(prefix) => {
                let p = prefix.to_ascii_lowercase();
                device.uuid().to_ascii_lowercase().starts_with(&p)
                    || (device.is_mig() && device.gpu.uuid.to_ascii_lowercase().starts_with(&p))
            }
        }
    }
}

/// What a site's ban names: devices (by index, MIG label or UUID), or every
/// device whose name contains a pattern (case-insensitive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BanRule {
    /// Devices as `--devices` names them.
    Device(DeviceSpec),
    /// Devices whose name contains this text.
    Name(String),
}

/// A device the site never gives out, and where the ban comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ban {
    /// What is banned.
    pub rule: BanRule,
    /// Where it is configured, shown in the rejection reason.
    pub source: String,
}

impl Ban {
    /// Whether this ban covers `device`.
    pub fn matches(&self, device: &Device<'_>) -> bool {
        match &self.rule {
            BanRule::Device(spec) => spec.matches(device),
            BanRule::Name(pattern) => device
                .name()
                .to_lowercase()
                .contains(&pattern.to_lowercase()),
        }
    }
}

impl fmt::Display for BanRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BanRule::Device(spec) => write!(f, "{spec}"),
            BanRule::Name(pattern) => write!(f, "name contains '{pattern}'"),
        }
    }
}

/// A custom filter from library code: `true` keeps the device.
pub type PredicateFn = dyn Fn(&Device<'_>) -> bool + Send + Sync;

/// A labelled custom filter; the label is what `--explain` shows when it rejects.
#[derive(Clone)]
pub struct Predicate {
    /// Shown in the rejection reason.
    pub label: String,
    /// The test itself.
    pub test: Arc<PredicateFn>,
}

impl fmt::Debug for Predicate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Predicate")
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
}

/// Everything a job asks of its GPUs. Unset filters (`None`) do not filter,
/// unless the strategy brings a default (see
/// [`SelectStrategy::apply_defaults`](crate::SelectStrategy::apply_defaults)).
///
/// A filter that is set rejects a device whose value the provider does not
/// report (`Reason::Unknown`): gpusel does not guess that an unmeasured GPU is
/// idle. The exceptions:
///
/// - utilization on MIG devices, which NVML never reports per instance; there
///   the process count and memory decide;
/// - a utilization filter relaxed to its limit (`max_utilization` or
///   `max_memory_utilization` of 100) accepts a device that does not report
///   that value: the filter allows anything, so an unreported value must not
///   lock a provider out;
/// - with [`idle_memory_utilization_may_be_unknown`](Self::idle_memory_utilization_may_be_unknown)
///   (set by the default strategy's own default, never by a user's
///   `max_memory_utilization`), an unreported memory-bandwidth utilization
///   passes when GPU utilization is reported as 0 and the process list is
///   known and empty: memory traffic without any kernel running is no job,
///   so those two prove the device idle (providers other than NVML, such as
///   plugins, often report no memory utilization).
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// How many devices: exactly N, all that qualify, or a range.
    pub count: Count,
    /// Minimum free memory, bytes.
    pub min_free_memory: Option<u64>,
    /// Maximum GPU utilization, %.
    pub max_utilization: Option<u8>,
    /// Maximum memory-bandwidth utilization, %.
    pub max_memory_utilization: Option<u8>,
    /// Whether `max_memory_utilization` accepts a device that does not report
    /// memory utilization when it reports 0% GPU utilization and an empty
    /// process list. Set by a strategy's default (idle-random's), so that
    /// the default idle rule does not lock out a provider without memory
    /// utilization; a user's explicit maximum leaves it `false`.
    pub idle_memory_utilization_may_be_unknown: bool,
    /// Maximum number of compute clients already on the device (as
    /// gpuselect counts: a graphics-only client such as the X server does
    /// not count). A device with no compute client listed but memory in use
    /// beyond the idle tolerance ([`idle`](Self::idle)) counts as having
    /// one: a process gpusel cannot see.
    pub max_processes: Option<usize>,
    /// Maximum power draw, mW.
    pub max_power: Option<u32>,
    /// Maximum memory in use (nvgpu's "memory used ≤ 20%").
    pub max_memory_used: Option<crate::MemoryAmount>,
    /// Case-insensitive substring of the device name.
    pub name: Option<String>,
    /// Only these devices (empty: any).
    pub devices: Vec<DeviceSpec>,
    /// Never these devices.
    pub exclude: Vec<DeviceSpec>,
    /// Custom filters from library code.
    pub predicates: Vec<Predicate>,
    /// Devices the site bans, whatever else is asked.
    pub banned: Vec<Ban>,
    /// Share the devices with other sharers, reserving `min_free_memory` on
    /// each, instead of leasing them exclusively (see
    /// [`LockDir`](crate::LockDir) and `gpusel --share`).
    pub share: bool,
    /// Devices that older waiters in the queue have first claim on (the
    /// [`Selector`](crate::Selector) fills it in at every try from the lock
    /// directory's tickets): a claimed device is not taken.
    pub claimed: Vec<crate::Claim>,
    /// The idle rules: how much memory no listed process holds a device
    /// may show (see [`IdleRules`](crate::IdleRules)).
    pub idle: crate::IdleRules,
}

impl Request {
    /// One device, no filters.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets how many devices to select: a `NonZeroUsize` for exactly that
    /// many, or a [`Count`] (all that qualify, a range).
    pub fn count(mut self, count: impl Into<Count>) -> Self {
        self.count = count.into();
        self
    }

    /// Requires at least `bytes` of free memory.
    pub fn min_free_memory(mut self, bytes: u64) -> Self {
        self.min_free_memory = Some(bytes);
        self
    }

    /// Allows at most `percent` GPU utilization.
    pub fn max_utilization(mut self, percent: u8) -> Self {
        self.max_utilization = Some(percent);
        self
    }

    /// Allows at most `percent` memory-bandwidth utilization.
    pub fn max_memory_utilization(mut self, percent: u8) -> Self {
        self.max_memory_utilization = Some(percent);
        self
    }

    /// Allows at most `n` processes already on the device.
    pub fn max_processes(mut self, n: usize) -> Self {
        self.max_processes = Some(n);
        self
    }

    /// Allows at most `milliwatts` of power draw.
    pub fn max_power(mut self, milliwatts: u32) -> Self {
        self.max_power = Some(milliwatts);
        self
    }

    /// Allows at most `amount` of memory in use (bytes or a percentage of
    /// each device's total).
    pub fn max_memory_used(mut self, amount: crate::MemoryAmount) -> Self {
        self.max_memory_used = Some(amount);
        self
    }

    /// Requires `pattern` in the device name (case-insensitive).
    pub fn name(mut self, pattern: impl Into<String>) -> Self {
        self.name = Some(pattern.into());
        self
    }

    /// Restricts selection to these devices.
    pub fn devices(mut self, devices: Vec<DeviceSpec>) -> Self {
        self.devices = devices;
        self
    }

    /// Never selects these devices.
    pub fn exclude(mut self, devices: Vec<DeviceSpec>) -> Self {
        self.exclude = devices;
        self
    }

    /// Adds a custom filter; `label` names it in rejection reasons.
    pub fn predicate(
        mut self,
        label: impl Into<String>,
        test: impl Fn(&Device<'_>) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.predicates.push(Predicate {
            label: label.into(),
            test: Arc::new(test),
        });
        self
    }

    /// Shares the devices instead of leasing them exclusively, reserving
    /// [`min_free_memory`](Self::min_free_memory) on each.
    pub fn share(mut self, share: bool) -> Self {
        self.share = share;
        self
    }

    /// Never selects what `ban` names.
    pub fn ban(mut self, ban: Ban) -> Self {
        self.banned.push(ban);
        self
    }

    /// Every reason `device` fails this request; empty means it qualifies.
    pub fn evaluate(&self, device: &Device<'_>) -> Vec<Reason> {
        let mut reasons = Vec::new();
        if let Some(ban) = self.banned.iter().find(|b| b.matches(device)) {
            reasons.push(Reason::Banned {
                source: ban.source.clone(),
            });
        }
        if !self.devices.is_empty() && !self.devices.iter().any(|s| s.matches(device)) {
            reasons.push(Reason::NotRequested);
        }
        if self.exclude.iter().any(|s| s.matches(device)) {
            reasons.push(Reason::Excluded);
        }
        if let Some(pattern) = &self.name {
            let name = device.name();
            if !name.to_lowercase().contains(&pattern.to_lowercase()) {
                reasons.push(Reason::NameMismatch {
                    name,
                    pattern: pattern.clone(),
                });
            }
        }
        if let Some(required) = self.min_free_memory {
            match device.memory_free() {
                Some(free) if free < required => {
                    reasons.push(Reason::NotEnoughMemory { free, required })
                }
                Some(_) => {}
                None => reasons.push(unknown("free memory")),
            }
        }
        match crate::mode_block(device) {
            Some(crate::ModeBlock::Prohibited) => reasons.push(Reason::ComputeProhibited),
            Some(crate::ModeBlock::ExclusiveProcess { pid }) => {
                reasons.push(Reason::ComputeExclusive { pid })
            }
            None => {}
        }
        if !device.is_mig() {
            if let Some(max) = self.max_utilization {
                match over(Load::gpu(device.gpu), max) {
                    Some(Over::Instant(value)) => reasons.push(Reason::Utilization { value, max }),
                    Some(Over::Peak(value, age_ms, window_ms)) => {
                        reasons.push(Reason::UtilizationPeak {
                            value,
                            max,
                            age_ms,
                            window_ms,
                        })
                    }
                    Some(Over::Unknown) => reasons.push(unknown("utilization")),
                    None => {}
                }
            }
            if let Some(max) = self.max_memory_utilization {
                match over(Load::memory(device.gpu), max) {
                    Some(Over::Instant(value)) => {
                        reasons.push(Reason::MemoryUtilization { value, max })
                    }
                    Some(Over::Peak(value, age_ms, window_ms)) => {
                        reasons.push(Reason::MemoryUtilizationPeak {
                            value,
                            max,
                            age_ms,
                            window_ms,
                        })
                    }
                    Some(Over::Unknown)
                        if self.idle_memory_utilization_may_be_unknown && proven_idle(device) => {}
                    Some(Over::Unknown) => reasons.push(unknown("memory utilization")),
                    None => {}
                }
            }
        }
        if let Some(max) = self.max_processes {
            // Only compute clients count (a display server does not); with
            // none listed, memory that no listed process holds counts as
            // one: a job in another container is a process all the same.
            match device.processes() {
                Some(p) => {
                    let count = p.iter().filter(|p| p.is_compute()).count();
                    if count > max {
                        reasons.push(Reason::Processes { count, max });
                    } else if count == 0
                        && max == 0
                        && let Some(ghost) = self.idle.ghost(device)
                    {
                        reasons.push(Reason::UnaccountedMemory {
                            unaccounted: ghost.unaccounted,
                            tolerance: ghost.tolerance,
                        });
                    }
                }
                None => reasons.push(unknown("process list")),
            }
        }
        if let Some(limit) = self.max_memory_used {
            match (device.memory_used(), limit.bytes_of(device.memory_total())) {
                (Some(used), Some(max)) if used > max => reasons.push(Reason::MemoryUsed {
                    used,
                    max,
                    limit: limit.to_string(),
                }),
                (Some(_), Some(_)) => {}
                (None, _) => reasons.push(unknown("memory used")),
                (Some(_), None) => reasons.push(unknown("total memory")),
            }
        }
        if let Some(max) = self.max_power {
            match device.power_draw() {
                Some(draw) if draw > max => reasons.push(Reason::Power { draw, max }),
                Some(_) => {}
                None => reasons.push(unknown("power draw")),
            }
        }
        for p in &self.predicates {
            if !(p.test)(device) {
                reasons.push(Reason::Predicate {
                    label: p.label.clone(),
                });
            }
        }
        reasons
    }
}

/// No kernel ran in the last sample and no process holds a context: what
/// makes an unreported memory utilization no reason to doubt idleness.
/// How a load fails its limit: over it now, over it at the window's peak
/// (value, age, window), or not reported (a limit of 100 allows that).
enum Over {
    Instant(u8),
    Peak(u8, u64, u64),
    Unknown,
}

fn over(load: Load, max: u8) -> Option<Over> {
    match load {
        Load {
            percent: Some(value),
            peak: Some((age, window)),
        } if value > max => Some(Over::Peak(value, age, window)),
        Load {
            percent: Some(value),
            ..
        } if value > max => Some(Over::Instant(value)),
        Load {
            percent: Some(_), ..
        } => None,
        _ if max >= 100 => None,
        _ => Some(Over::Unknown),
    }
}

fn proven_idle(device: &Device<'_>) -> bool {
    crate::Load::gpu(device.gpu).percent == Some(0)
        && device
            .processes()
            .is_some_and(|p| !p.iter().any(crate::GpuProcess::is_compute))
}

fn unknown(what: &str) -> Reason {
    Reason::Unknown {
        what: what.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Gpu, GpuProcess};

    fn gpu() -> Gpu {
        let mut g = Gpu::new(2, "GPU-abcd-1234", "NVIDIA A100-SXM4-80GB");
        g.memory_free = Some(10 << 30);
        g.utilization_gpu = Some(35);
        g.utilization_memory = Some(0);
        g.processes = Some(vec![GpuProcess::new(1), GpuProcess::new(2)]);
        g.power_draw = Some(250_000);
        g
    }

    #[test]
    fn specs_parse() {
        assert_eq!("3".parse(), Ok(DeviceSpec::Index(3)));
        assert_eq!("3:1".parse(), Ok(DeviceSpec::Mig(3, 1)));
        assert_eq!("gpu-ab".parse(), Ok(DeviceSpec::Uuid("gpu-ab".into())));
        assert!("x".parse::<DeviceSpec>().is_err());
        assert!("GPU-".parse::<DeviceSpec>().is_err());
        assert!("-1".parse::<DeviceSpec>().is_err());
        assert_eq!(
            DeviceSpec::parse_list("0, 2,GPU-ab").unwrap().len(),
            3,
            "list with spaces"
        );
    }

    #[test]
    fn every_failing_filter_gives_its_reason() {
        let g = gpu();
        let d = Device::whole(&g);
        let r = Request::new()
            .min_free_memory(20 << 30)
            .max_utilization(0)
            .max_memory_utilization(0)
            .max_processes(0)
            .max_power(80_000)
            .name("H100")
            .devices(vec![DeviceSpec::Index(0)])
            .exclude(vec![DeviceSpec::Uuid("GPU-ABCD".into())])
            .predicate("needs NVLink", |_| false)
            .ban(Ban {
                rule: BanRule::Name("a100-sxm4".into()),
                source: "/etc/gpusel/config.toml".into(),
            });
        let text: Vec<String> = r.evaluate(&d).iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "banned by the site configuration (/etc/gpusel/config.toml)",
                "not named by --devices",
                "excluded by --exclude",
                "name 'NVIDIA A100-SXM4-80GB' does not contain 'H100'",
                "10 GiB free < 20 GiB needed",
                "utilization 35% > 0% allowed",
                "2 processes > 0 allowed",
                "power draw 250 W > 80 W allowed",
                "rejected by custom filter 'needs NVLink'",
            ]
        );
    }

    #[test]
    fn passing_and_unknown() {
        let g = gpu();
        let d = Device::whole(&g);
        let r = Request::new()
            .min_free_memory(1 << 30)
            .max_utilization(50)
            .name("a100")
            .devices(vec![DeviceSpec::Index(2)]);
        assert!(r.evaluate(&d).is_empty());
        let bare = Gpu::new(0, "GPU-1", "X");
        let r = Request::new().min_free_memory(1).max_processes(0);
        assert_eq!(
            r.evaluate(&Device::whole(&bare))
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            [
                "free memory unknown (the provider does not report it)",
                "process list unknown (the provider does not report it)"
            ]
        );
    }

    fn reasons(request: &Request, gpu: &Gpu) -> Vec<String> {
        request
            .evaluate(&Device::whole(gpu))
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn a_filter_relaxed_to_its_limit_accepts_unknown() {
        let bare = Gpu::new(0, "GPU-1", "X");
        let relaxed = Request::new()
            .max_utilization(100)
            .max_memory_utilization(100);
        assert!(reasons(&relaxed, &bare).is_empty());
        let strict = Request::new()
            .max_utilization(99)
            .max_memory_utilization(99);
        assert_eq!(
            reasons(&strict, &bare),
            [
                "utilization unknown (the provider does not report it)",
                "memory utilization unknown (the provider does not report it)"
            ]
        );
    }

    #[test]
    fn idle_proves_unknown_memory_utilization_only_for_the_strategys_default() {
        let mut idle = Gpu::new(0, "GPU-1", "X");
        idle.utilization_gpu = Some(0);
        idle.processes = Some(Vec::new());
        let user = Request::new().max_memory_utilization(0);
        assert_eq!(
            reasons(&user, &idle),
            ["memory utilization unknown (the provider does not report it)"]
        );
        let mut default = user.clone();
        default.idle_memory_utilization_may_be_unknown = true;
        assert!(reasons(&default, &idle).is_empty());

        // GPU utilization or the process list is the proof: without either,
        // unknown stays unknown.
        let mut busy = idle.clone();
        busy.utilization_gpu = Some(1);
        let mut unmeasured = idle.clone();
        unmeasured.utilization_gpu = None;
        let mut unlisted = idle.clone();
        unlisted.processes = None;
        let mut running = idle.clone();
        running.processes = Some(vec![GpuProcess::new(7)]);
        for gpu in [busy, unmeasured, unlisted, running] {
            assert_eq!(
                reasons(&default, &gpu),
                ["memory utilization unknown (the provider does not report it)"],
                "{gpu:?}"
            );
        }
        // A reported value is judged as reported.
        idle.utilization_memory = Some(4);
        assert_eq!(
            reasons(&default, &idle),
            ["memory utilization 4% > 0% allowed"]
        );
    }
}
