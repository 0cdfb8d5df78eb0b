//! The one path every caller takes: visible set, filters, strategy, result.

use std::collections::HashSet;
use std::fmt;
use std::num::NonZeroUsize;

use serde::{Deserialize, Serialize};

use crate::cvd::{CvdProblem, PCI_BUS_ID, Visible};
use crate::device::{Device, DeviceLabel};
use crate::holder::Holder;
use crate::lease::{Lease, LeaseError, LeaseState, LockDir};
use crate::model::{SCHEMA_VERSION, Snapshot};
use crate::provider::ProviderError;
use crate::reason::Reason;
use crate::request::{DeviceSpec, Request};
use crate::strategy::{SelectStrategy, StrategyError};
use crate::topology::SetLink;

/// How the selection is written into `CUDA_VISIBLE_DEVICES`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteOptions {
    /// Write UUIDs (`GPU-...`) instead of indices or the original tokens.
    pub uuids: bool,
}

/// The verdict on one device: chosen, or why not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// `3` or `3:1`.
    pub device: String,
    /// The device's UUID.
    pub uuid: String,
    /// The device's name.
    pub name: String,
    /// True when this device is part of the selection.
    pub selected: bool,
    /// Why it cannot be used; empty for a device that qualifies.
    pub reasons: Vec<Reason>,
}

impl Verdict {
    /// Whether someone asking why the selection failed needs to see it: the
    /// device does not qualify, for more than `CUDA_VISIBLE_DEVICES` hiding
    /// it (which the headline already says).
    pub fn explains_a_failure(&self) -> bool {
        !(self.reasons.is_empty() || self.reasons == [Reason::HiddenByCudaVisibleDevices])
    }
}

/// One chosen device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SelectedDevice {
    /// NVML index of the GPU (the parent, for a MIG device).
    pub index: u32,
    /// MIG device index, for a MIG device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mig_index: Option<u32>,
    /// UUID of the device.
    pub uuid: String,
    /// Name of the device.
    pub name: String,
    /// What goes into `CUDA_VISIBLE_DEVICES` for it.
    pub token: String,
}

/// The result every mode renders: the devices, and the environment to give
/// the job. A selection made by [`select_leased`] holds the devices' leases
/// until it is dropped.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Selection {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Host the devices are on.
    pub host: String,
    /// Strategy that ranked them.
    pub strategy: String,
    /// The chosen devices, in `CUDA_VISIBLE_DEVICES` order.
    pub devices: Vec<SelectedDevice>,
    /// Value for `CUDA_VISIBLE_DEVICES`.
    pub cuda_visible_devices: String,
    /// Value for `CUDA_DEVICE_ORDER`, set when indices are written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cuda_device_order: Option<String>,
    /// What joins every pair of the chosen GPUs (its weakest pair), when
    /// several are chosen and the provider reads topology.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<SetLink>,
    /// The weakest pair's link as `nvidia-smi topo -m` prints it (`NV4`,
    /// `PIX`, `PXB`, `PHB`, `NODE`, `SYS`), alongside [`link`](Self::link).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_code: Option<String>,
    /// The verdict on every device.
    pub verdicts: Vec<Verdict>,
    /// Held for as long as the selection lives.
    #[serde(skip)]
    leases: Vec<Lease>,
}

impl Selection {
    /// The leases this selection holds (none from [`select`]).
    pub fn leases(&self) -> &[Lease] {
        &self.leases
    }

    /// Keeps every lease open across `exec`, for the program exec'd to hold
    /// them until it exits (see [`Lease::keep_across_exec`]).
    pub fn keep_leases_across_exec(&self) -> Result<(), LeaseError> {
        self.leases.iter().try_for_each(Lease::keep_across_exec)
    }

    /// Spawns the guardian that holds this selection's leases for as long
    /// as the program about to be exec'd runs, even if it closes the
    /// descriptors it inherits (see [`Lease::guard_for_exec`]). Returns the
    /// guardian's pid, or `None` when the selection holds no lease. Call it
    /// after [`Selection::keep_leases_across_exec`], last before `exec`.
    pub fn guard_leases_for_exec(&self) -> Result<Option<u32>, crate::GuardError> {
        Lease::guard_for_exec(&self.leases)
    }

    /// The environment variables to set for the job, in order.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![(
            crate::cvd::CUDA_VISIBLE_DEVICES,
            self.cuda_visible_devices.clone(),
        )];
        if let Some(order) = &self.cuda_device_order {
            env.push((crate::cvd::CUDA_DEVICE_ORDER, order.clone()));
        }
        env
    }
}

/// Which filters the strategy filled in because the request left them unset
/// (idle-random's "no load, no process"), so that a caller can tell a
/// rejection by the strategy's defaults from one by the user's own filters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StrategyDefaults {
    /// The utilization limit.
    pub utilization: bool,
    /// The memory-bandwidth utilization limit.
    pub memory_utilization: bool,
    /// The process-count limit.
    pub processes: bool,
}

impl StrategyDefaults {
    fn between(before: &Request, after: &Request) -> Self {
        StrategyDefaults {
            utilization: before.max_utilization.is_none() && after.max_utilization.is_some(),
            memory_utilization: before.max_memory_utilization.is_none()
                && after.max_memory_utilization.is_some(),
            processes: before.max_processes.is_none() && after.max_processes.is_some(),
        }
    }

    /// Whether `reason` comes from a filter the strategy filled in.
    pub fn explains(&self, reason: &Reason) -> bool {
        match reason {
            Reason::Utilization { .. } | Reason::UtilizationPeak { .. } => self.utilization,
            Reason::MemoryUtilization { .. } | Reason::MemoryUtilizationPeak { .. } => {
                self.memory_utilization
            }
            Reason::Processes { .. } | Reason::UnaccountedMemory { .. } => self.processes,
            _ => false,
        }
    }
}

/// Why no selection could be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SelectError {
    /// The provider could not give a snapshot.
    #[error(transparent)]
    Provider(#[from] ProviderError),
    /// A wait ran out; `last` is why the last try failed.
    #[error("timed out after {} waiting: {last}", humantime::format_duration(*timeout))]
    TimedOut {
        /// The limit that ran out.
        timeout: std::time::Duration,
        /// The last try's failure.
        last: Box<SelectError>,
    },
    /// A wait was stopped by the selector's
    /// [`cancel_if`](crate::Selector::cancel_if) test.
    #[error("the wait was cancelled")]
    Cancelled,
    /// The lock directory cannot be used.
    #[error(transparent)]
    Lease(#[from] LeaseError),
    /// The strategy cannot work with the request.
    #[error(transparent)]
    Strategy(#[from] StrategyError),
    /// The request would take its user past a site limit.
    #[error(transparent)]
    OverLimit(#[from] crate::limits::OverLimit),
    /// A share was asked for without the memory to reserve.
    #[error(transparent)]
    ShareWithoutMemory(#[from] crate::share::ShareWithoutMemory),
    /// `--devices` names a device this machine does not have.
    #[error("device {spec}: no such device on this machine (it has {known})")]
    UnknownDevice {
        /// The spec that matched nothing.
        spec: String,
        /// The devices there are, e.g. `0-7`.
        known: String,
    },
    /// Fewer devices qualify than asked for.
    #[error("{}", no_match_headline(*count, *eligible, *visible, cuda_visible_devices.as_deref(), cvd_problem.as_ref()))]
    NoMatch {
        /// Devices asked for (the least a range or `all` accepts).
        requested: usize,
        /// The count as asked for: exactly `requested`, all, or a range.
        count: crate::Count,
        /// Devices that qualify.
        eligible: usize,
        /// Devices visible under `CUDA_VISIBLE_DEVICES`.
        visible: usize,
        /// The `CUDA_VISIBLE_DEVICES` value in force, if any.
        cuda_visible_devices: Option<String>,
        /// What made part of it ineffective, if anything.
        cvd_problem: Option<CvdProblem>,
        /// The verdict on every device.
        verdicts: Vec<Verdict>,
        /// The filters the strategy filled in.
        strategy_defaults: StrategyDefaults,
    },
}

impl SelectError {
    /// The verdict on every device, for a [`NoMatch`](Self::NoMatch) or a
    /// wait that timed out on one.
    pub fn verdicts(&self) -> Option<&[Verdict]> {
        match self {
            SelectError::NoMatch { verdicts, .. } => Some(verdicts),
            SelectError::TimedOut { last, .. } => last.verdicts(),
            _ => None,
        }
    }

    /// For a [`NoMatch`](Self::NoMatch) (or a wait that timed out on one):
    /// whether some device is kept out by nothing but the filters the
    /// strategy filled in (idle-random's "no load, no process"), so that
    /// loosening them, or another strategy, would help. Callers phrase the
    /// hint for their users.
    pub fn only_strategy_defaults_keep_out(&self) -> bool {
        match self {
            SelectError::NoMatch {
                verdicts,
                strategy_defaults,
                ..
            } => verdicts.iter().any(|v| {
                !v.reasons.is_empty() && v.reasons.iter().all(|r| strategy_defaults.explains(r))
            }),
            SelectError::TimedOut { last, .. } => last.only_strategy_defaults_keep_out(),
            _ => false,
        }
    }
}

fn no_match_headline(
    count: crate::Count,
    eligible: usize,
    visible: usize,
    cvd: Option<&str>,
    problem: Option<&CvdProblem>,
) -> String {
    let requested = count.min().get();
    let gpus = |n: usize| if n == 1 { "device" } else { "devices" };
    if visible == 0 {
        return match (cvd, problem) {
            (Some(v), Some(p)) => {
                format!("CUDA_VISIBLE_DEVICES='{v}' leaves no device visible: {p}; fix or unset it")
            }
            (Some(v), None) => format!(
                "CUDA_VISIBLE_DEVICES='{v}' hides every device; unset it to select among all"
            ),
            _ => "this machine has no GPU".to_string(),
        };
    }
    let scope = match cvd {
        Some(v) => format!(" (CUDA_VISIBLE_DEVICES='{v}')"),
        None => String::new(),
    };
    if requested > visible {
        return format!(
            "asked for {requested} {}, but only {visible} {} visible{scope}",
            gpus(requested),
            if visible == 1 { "is" } else { "are" }
        );
    }
    let need = if count.is_exact() {
        format!("{requested} {}", gpus(requested))
    } else {
        format!("at least {requested} {}", gpus(requested))
    };
    format!(
        "no GPU satisfies the request: need {need}, {eligible} of {visible} visible qualify{scope}"
    )
}

/// Runs the pipeline on a snapshot: restrict to `visible`, apply the
/// strategy's defaults and every filter, rank, take `count`, and write the
/// environment. Pure: no I/O, no environment reads, no leases (see
/// [`select_leased`]); `rng` drives random choices.
pub fn select(
    snapshot: &Snapshot,
    request: &Request,
    strategy: &dyn SelectStrategy,
    visible: &Visible,
    write: WriteOptions,
    rng: &mut dyn rand::Rng,
) -> Result<Selection, SelectError> {
    pipeline(snapshot, request, strategy, visible, write, rng, None)
}

/// A lock directory and the holder to record in it: what [`select_leased`]
/// needs to lease devices.
#[derive(Debug)]
pub struct Leaser {
    /// Where the leases live.
    pub dir: LockDir,
    /// Who takes them.
    pub holder: Holder,
}

impl Leaser {
    /// Who leases `uuid`, when it is leased: as `look` shows it where it
    /// shows it held, else as [`LockDir::state`] finds it.
    fn leased_by(&self, uuid: &str, look: Option<&crate::lease::Look>) -> Option<Option<Holder>> {
        if let Some(look) = look
            && let Some(pid) = self.dir.live_holder_seen(uuid, look)
        {
            return Some(self.dir.holder_seen(uuid, pid, look));
        }
        match self.dir.state(uuid) {
            Ok(LeaseState::Leased(by)) => Some(by),
            _ => None,
        }
    }

    /// Opens (creating if missing) the lock directory at `path`, for this
    /// process about to run `command`.
    pub fn open(
        path: impl Into<std::path::PathBuf>,
        command: Vec<String>,
    ) -> Result<Self, LeaseError> {
        Ok(Leaser {
            dir: LockDir::open(path)?,
            holder: Holder::current(command),
        })
    }
}

/// [`select`], then leases: devices leased by others are passed over
/// ([`Reason::Leased`]), and candidates are leased in rank order, skipping
/// any that a concurrent gpusel takes first, until `count` are held. All or
/// nothing: when fewer can be leased, those taken are released and the
/// error is [`SelectError::NoMatch`]. The [`Selection`] owns the leases;
/// dropping it releases them.
pub fn select_leased(
    snapshot: &Snapshot,
    request: &Request,
    strategy: &dyn SelectStrategy,
    visible: &Visible,
    write: WriteOptions,
    rng: &mut dyn rand::Rng,
    leaser: &Leaser,
) -> Result<Selection, SelectError> {
    pipeline(
        snapshot,
        request,
        strategy,
        visible,
        write,
        rng,
        Some((leaser, &leaser.dir.look())),
    )
}

pub(crate) fn pipeline(
    snapshot: &Snapshot,
    original: &Request,
    strategy: &dyn SelectStrategy,
    visible: &Visible,
    write: WriteOptions,
    rng: &mut dyn rand::Rng,
    leasing: Option<(&Leaser, &crate::lease::Look)>,
) -> Result<Selection, SelectError> {
    // Leasing, with the try's look at the lock directory.
    let (leaser, look) = (leasing.map(|(l, _)| l), leasing.map(|(_, look)| look));
    let mut request = original.clone();
    strategy.apply_defaults(&mut request);
    let strategy_defaults = StrategyDefaults::between(original, &request);
    strategy.validate(&request)?;
    crate::share::validate(&request)?;
    let count = request.count.min().get();
    let most = request.count.max().map_or(usize::MAX, NonZeroUsize::get);
    let several = request.count.may_take_several();

    let devices = Device::all(&snapshot.gpus);
    check_specs_exist(&request.devices, snapshot, &devices)?;

    let mut labelled: Vec<(DeviceLabel, Verdict)> = Vec::with_capacity(devices.len() + 1);
    let mut candidates = Vec::new();
    let mut visible_count = 0;
    for gpu in snapshot
        .gpus
        .iter()
        .filter(|g| g.mig_enabled() && g.mig_devices.is_empty())
    {
        let label = DeviceLabel {
            gpu: gpu.index,
            mig: None,
        };
        labelled.push((
            label,
            Verdict {
                device: label.to_string(),
                uuid: gpu.uuid.clone(),
                name: gpu.name.clone(),
                selected: false,
                reasons: vec![Reason::MigWithoutInstances],
            },
        ));
    }
    for device in &devices {
        let mut reasons = Vec::new();
        // A hidden device is out of reach whatever its state: one reason is enough.
        if visible.contains(device.uuid(), device.parent_uuid()) {
            visible_count += 1;
            reasons.extend(request.evaluate(device));
            crate::share::explain(&request, device, &mut reasons);
            crate::queue::explain(&request, device, &mut reasons);
            if device.is_mig() && several {
                reasons.push(if request.count.is_exact() {
                    Reason::MigNeedsSingleDevice { count }
                } else {
                    Reason::MigNeedsSingleDeviceOf {
                        count: request.count.to_string(),
                    }
                });
            }
        } else {
            reasons.push(Reason::HiddenByCudaVisibleDevices);
        }
        if reasons.is_empty() {
            candidates.push(*device);
        }
        labelled.push((
            device.label(),
            Verdict {
                device: device.label().to_string(),
                uuid: device.uuid().to_string(),
                name: device.name(),
                selected: false,
                reasons,
            },
        ));
    }
    labelled.sort_by_key(|(label, _)| *label);
    let mut verdicts: Vec<Verdict> = labelled.into_iter().map(|(_, v)| v).collect();
    for v in &verdicts {
        tracing::debug!(device = %v.device, uuid = %v.uuid, "{v}");
    }
    tracing::debug!(
        count = %request.count,
        candidates = candidates.len(),
        visible = visible_count,
        strategy = strategy.name(),
        "filtered"
    );

    if candidates.len() < count {
        // Too few even before leasing; still say which of them others hold,
        // so that the reasons (and a waiter's status) are complete.
        let mut eligible = candidates.len();
        if let Some(leaser) = leaser {
            for device in &candidates {
                if let Some(by) = leaser.leased_by(device.uuid(), look) {
                    eligible -= 1;
                    if let Some(v) = verdicts.iter_mut().find(|v| v.uuid == device.uuid()) {
                        v.reasons.push(Reason::Leased { by });
                    }
                }
            }
        }
        return Err(SelectError::NoMatch {
            requested: count,
            count: request.count,
            eligible,
            visible: visible_count,
            cuda_visible_devices: visible.value.clone(),
            cvd_problem: visible.warning().cloned(),
            verdicts,
            strategy_defaults,
        });
    }

    let order = strategy.rank(&candidates, &request, rng);
    tracing::debug!(
        strategy = strategy.name(),
        order = ?order.iter().filter_map(|&i| candidates.get(i)).map(|d| d.label().to_string()).collect::<Vec<_>>(),
        "ranked"
    );
    let mut taken = Vec::with_capacity(count.max(candidates.len().min(most)));
    let mut leases = Vec::new();
    let mut passed_over = 0;
    let mut seen = HashSet::new();
    // A well-behaved strategy returns a permutation; a third-party one that
    // does not is padded in candidate order rather than trusted.
    let order: Vec<usize> = order
        .into_iter()
        .chain(0..candidates.len())
        .filter(|&pos| pos < candidates.len() && seen.insert(pos))
        .collect();
    // For several devices, the best-joined set first (see `topology`).
    let mut picker = crate::topology::Picker::new(&candidates, order, count, most);
    while let Some(pos) = picker.next() {
        let device = candidates[pos];
        let Some(leaser) = leaser else {
            taken.push(device);
            continue;
        };
        // What the look shows held by a live process is not asked for:
        // asking locks the lock table, and the answer is known.
        let seen = look.and_then(|look| {
            let pid = leaser.dir.live_holder_seen(device.uuid(), look)?;
            Some(leaser.dir.holder_seen(device.uuid(), pid, look))
        });
        let asked = match seen {
            Some(by) => Ok(crate::share::Taken::Seen(by)),
            None => leaser.take(&device, &request),
        };
        let reason = match asked {
            Ok(crate::share::Taken::Seen(by)) => Reason::Leased { by },
            Ok(crate::share::Taken::Lease(lease)) => {
                tracing::debug!(device = %device.label(), "leased");
                taken.push(device);
                leases.push(lease);
                continue;
            }
            Ok(crate::share::Taken::Refused(reason)) => reason,
            Ok(crate::share::Taken::Held) => match leaser.dir.state(device.uuid()) {
                Ok(LeaseState::Blocked(message)) => Reason::LeaseUnavailable { message },
                Ok(LeaseState::Leased(by)) => Reason::Leased { by },
                _ => Reason::Leased { by: None },
            },
            // One bad lock file must not make every other GPU unusable.
            Err(e) => Reason::LeaseUnavailable {
                message: e.to_string(),
            },
        };
        // The set is chosen again without it; what the new set leaves out is let go.
        for dropped in picker.failed(pos) {
            if let Some(i) = taken
                .iter()
                .position(|d: &Device<'_>| d.uuid() == candidates[dropped].uuid())
            {
                taken.remove(i);
                leases.remove(i);
            }
        }
        passed_over += 1;
        tracing::debug!(device = %device.label(), reason = %reason, "passed over");
        if let Some(v) = verdicts.iter_mut().find(|v| v.uuid == device.uuid()) {
            v.reasons.push(reason);
        }
    }
    if taken.len() < count {
        // All or nothing: `leases` drops here, releasing what was taken.
        return Err(SelectError::NoMatch {
            requested: count,
            count: request.count,
            eligible: candidates.len() - passed_over,
            visible: visible_count,
            cuda_visible_devices: visible.value.clone(),
            cvd_problem: visible.warning().cloned(),
            verdicts,
            strategy_defaults,
        });
    }

    // Keep the order the devices had: CUDA_VISIBLE_DEVICES order when it was
    // set, index order otherwise.
    taken.sort_by_key(|d| (visible.position(d.uuid(), d.parent_uuid()), d.label()));

    let chosen: Vec<SelectedDevice> = taken
        .iter()
        .map(|d| SelectedDevice {
            index: d.gpu.index,
            mig_index: d.mig.map(|m| m.index),
            uuid: d.uuid().to_string(),
            name: d.name(),
            token: token_for(d, visible, write),
        })
        .collect();
    for v in &mut verdicts {
        v.selected = chosen.iter().any(|c| c.uuid == v.uuid);
    }
    let cuda_visible_devices = chosen
        .iter()
        .map(|c| c.token.as_str())
        .collect::<Vec<_>>()
        .join(",");
    let writes_ordinals = chosen.iter().any(|c| {
        c.token
            .starts_with(|ch: char| ch.is_ascii_digit() || ch == '+')
    });
    let link = crate::topology::set_link(taken.iter().map(|d| d.gpu));
    if let Some(link) = &link {
        let labels: Vec<String> = taken.iter().map(|d| d.label().to_string()).collect();
        tracing::info!("GPUs {}: {} ({})", labels.join(","), link.link, link.code);
    }
    Ok(Selection {
        schema_version: SCHEMA_VERSION,
        host: snapshot.host.clone(),
        strategy: strategy.name().to_string(),
        devices: chosen,
        cuda_visible_devices,
        cuda_device_order: writes_ordinals.then(|| PCI_BUS_ID.to_string()),
        link: link.as_ref().map(|l| l.link),
        link_code: link.map(|l| l.code),
        verdicts,
        leases,
    })
}

fn token_for(device: &Device<'_>, visible: &Visible, write: WriteOptions) -> String {
    // MIG devices can only be named by UUID.
    if write.uuids || device.is_mig() {
        return device.uuid().to_string();
    }
    match visible.token_for(device.uuid()) {
        Some(token) => token.to_string(),
        None => device.gpu.index.to_string(),
    }
}

fn check_specs_exist(
    specs: &[DeviceSpec],
    snapshot: &Snapshot,
    devices: &[Device<'_>],
) -> Result<(), SelectError> {
    for spec in specs {
        let exists = devices.iter().any(|d| spec.matches(d))
            || snapshot
                .gpus
                .iter()
                .any(|g| spec.matches(&Device::whole(g)));
        if !exists {
            return Err(SelectError::UnknownDevice {
                spec: spec.to_string(),
                known: describe_indices(snapshot),
            });
        }
    }
    Ok(())
}

fn describe_indices(snapshot: &Snapshot) -> String {
    let mut idx: Vec<u32> = snapshot.gpus.iter().map(|g| g.index).collect();
    idx.sort_unstable();
    match (idx.first(), idx.last()) {
        (None, _) | (_, None) => "no GPU".into(),
        (Some(a), Some(b)) if a == b => format!("GPU {a}"),
        (Some(a), Some(b)) if (b - a) as usize + 1 == idx.len() => format!("GPUs {a}-{b}"),
        _ => format!(
            "GPUs {}",
            idx.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
        ),
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GPU {} ({}): ", self.device, self.name)?;
        if self.selected {
            f.write_str("selected")
        } else if self.reasons.is_empty() {
            f.write_str("qualifies")
        } else {
            let text: Vec<String> = self.reasons.iter().map(ToString::to_string).collect();
            f.write_str(&text.join("; "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Gpu;

    struct InOrder;
    impl SelectStrategy for InOrder {
        fn name(&self) -> &str {
            "in-order"
        }
        fn rank(&self, c: &[Device<'_>], _: &Request, _: &mut dyn rand::Rng) -> Vec<usize> {
            (0..c.len()).collect()
        }
    }

    fn two_gpus() -> Snapshot {
        let mut snapshot = Snapshot::new("h", "test");
        snapshot.gpus = vec![Gpu::new(0, "GPU-a", "T4"), Gpu::new(1, "GPU-b", "T4")];
        snapshot
    }

    #[test]
    fn leasing_skips_taken_devices_and_is_all_or_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let leaser = Leaser::open(tmp.path().join("locks"), vec!["job".into()]).unwrap();
        let rival = Leaser::open(tmp.path().join("locks"), vec!["rival".into()]).unwrap();
        let snapshot = two_gpus();
        let visible = Visible::parse(None, &snapshot.gpus);
        let mut rng = <rand::rngs::SmallRng as rand::SeedableRng>::seed_from_u64(1);
        let held = rival
            .dir
            .try_lease("GPU-a", &rival.holder)
            .unwrap()
            .unwrap();

        let pick = |request: &Request, rng: &mut dyn rand::Rng| {
            select_leased(
                &snapshot,
                request,
                &InOrder,
                &visible,
                WriteOptions::default(),
                rng,
                &leaser,
            )
        };

        let got = pick(&Request::new(), &mut rng).unwrap();
        assert_eq!(got.cuda_visible_devices, "1", "GPU 0 is the rival's");
        assert_eq!(got.leases().len(), 1);
        let reasons = &got.verdicts[0].reasons;
        assert!(
            matches!(&reasons[..], [Reason::Leased { by: Some(h) }] if h.command == ["rival"]),
            "{reasons:?}"
        );
        drop(got);

        let two = Request::new().count(std::num::NonZeroUsize::new(2).unwrap());
        let err = pick(&two, &mut rng).unwrap_err();
        assert!(
            matches!(err, SelectError::NoMatch { eligible: 1, .. }),
            "{err:?}"
        );
        // GPU 1 was leased on the way and released with the failure.
        assert_eq!(leaser.dir.state("GPU-b").unwrap(), LeaseState::Free);

        drop(held);
        assert_eq!(pick(&two, &mut rng).unwrap().cuda_visible_devices, "0,1");
        // The pure pipeline ignores leases.
        assert!(
            select(
                &snapshot,
                &two,
                &InOrder,
                &visible,
                WriteOptions::default(),
                &mut rng
            )
            .is_ok()
        );
    }
}
