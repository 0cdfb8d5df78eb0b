//! gpu-core: the heart of gpusel.
//!
//! - the model ([`Gpu`], [`GpuProcess`], [`MigDevice`], [`Snapshot`]) and its
//!   versioned JSON schema;
//! - the two extension traits, [`GpuInfoProvider`] (where GPU state comes
//!   from) and [`SelectStrategy`] (how candidates are ordered), and the
//!   [`ProviderRegistry`] that maps `--provider` strings to providers, and
//!   [`block_on`] to call a local provider without an async runtime;
//! - [`Request`] with every filter, whose [`Request::evaluate`] says why a
//!   device is rejected;
//! - `CUDA_VISIBLE_DEVICES` parsing and writing ([`Visible`]);
//! - the pipeline, [`select()`], which every caller takes, and
//!   [`select_leased`], which also leases the devices (see [`LockDir`] for
//!   how leases work) and returns a [`Selection`] that holds them until it is
//!   dropped.
//!
//! ```
//! use gpusel_core::{Device, Gpu, Request, SelectStrategy, Snapshot, Visible, WriteOptions, select};
//!
//! /// The emptiest GPU first.
//! struct MostFree;
//! impl SelectStrategy for MostFree {
//!     fn name(&self) -> &str { "most-free" }
//!     fn rank(&self, c: &[Device<'_>], _: &Request, _: &mut dyn gpusel_core::rand::Rng) -> Vec<usize> {
//!         let mut order: Vec<usize> = (0..c.len()).collect();
//!         order.sort_by_key(|&i| std::cmp::Reverse(c[i].memory_free()));
//!         order
//!     }
//! }
//!
//! let mut snapshot = Snapshot::new("node1", "example");
//! for (i, free) in [(0, 10u64 << 30), (1, 70 << 30)] {
//!     let mut gpu = Gpu::new(i, format!("GPU-{i}"), "NVIDIA A100");
//!     gpu.memory_free = Some(free);
//!     snapshot.gpus.push(gpu);
//! }
//! let request = Request::new().min_free_memory(20 << 30);
//! let visible = Visible::parse(None, &snapshot.gpus);
//! use gpusel_core::rand::{SeedableRng, rngs::SmallRng};
//! let mut rng = SmallRng::seed_from_u64(1); // or `rand::make_rng()`, or any `rand::Rng`
//! let selection = select(&snapshot, &request, &MostFree, &visible, WriteOptions::default(), &mut rng).unwrap();
//! assert_eq!(selection.cuda_visible_devices, "1");
//! assert_eq!(selection.cuda_device_order.as_deref(), Some("PCI_BUS_ID"));
//!
//! // The same, leasing GPU 1 for as long as `leased` lives: a concurrent
//! // process (or this one) cannot lease it meanwhile.
//! # let tmp = tempfile::tempdir().unwrap();
//! # let lock_dir = tmp.path().join("locks"); // normally gpusel_core::DEFAULT_LOCK_DIR
//! let leaser = gpusel_core::Leaser::open(lock_dir, vec!["train.py".into()]).unwrap();
//! let leased = gpusel_core::select_leased(&snapshot, &request, &MostFree, &visible, WriteOptions::default(), &mut rng, &leaser).unwrap();
//! assert_eq!(leased.leases()[0].uuid(), "GPU-1");
//! let again = gpusel_core::select_leased(&snapshot, &request, &MostFree, &visible, WriteOptions::default(), &mut rng, &leaser);
//! assert!(again.is_err(), "GPU 1 is leased");
//! drop(leased);
//! assert!(gpusel_core::select_leased(&snapshot, &request, &MostFree, &visible, WriteOptions::default(), &mut rng, &leaser).is_ok());
//! ```

#![warn(missing_docs)]
// Library code reports failures as typed errors, never by panicking on
// them (tests may unwrap).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod agent_status;
mod block_on;
pub mod config;
mod count;
mod cvd;
mod device;
mod duration;
mod file_provider;
mod groups;
mod guardian;
mod holder;
mod idle;
mod lease;
mod limits;
mod model;
mod occupancy;
mod procfs;
mod provider;
mod queue;
mod reason;
mod registry;
mod request;
pub mod sanitize;
mod select;
mod selector;
mod share;
mod size;
mod strategy;
#[cfg(feature = "testing")]
pub mod testing;
pub mod timefmt;
mod topology;

pub use agent_status::{AgentError, AgentSnapshot, AgentStatus};
/// The attribute for implementing [`GpuInfoProvider`], re-exported so that
/// an implementation needs no `async-trait` dependency of its own: write
/// `#[gpusel_core::async_trait]` on the `impl`.
pub use async_trait::async_trait;
pub use block_on::block_on;
pub use config::{Config, ConfigError, Limits, Setting, Source};
pub use count::{Count, CountError};
pub use cvd::{
    CUDA_DEVICE_ORDER, CUDA_VISIBLE_DEVICES, CvdProblem, PCI_BUS_ID, Visible, VisibleEntry,
};
pub use device::{Device, DeviceLabel};
pub use duration::{DurationError, MAX_DURATION, parse_duration, parse_duration_min};
pub use file_provider::{
    FileProvider, FileReadError, MAX_SNAPSHOT_FILE, parse_snapshot, read_regular_file,
    read_regular_text, read_snapshot_file,
};
pub use groups::{ChildGroup, kill_child_groups};
pub use guardian::{GUARDIAN_NAME, GuardError};
pub use holder::{Holder, LeaseStatus, Share};
pub use idle::{
    BASE_TOLERANCE, Ghost, IdleRules, Load, ModeBlock, V1_ALLOWANCE_PERCENT, mode_block, peak_note,
    unaccounted_memory,
};
pub use lease::{DEFAULT_LOCK_DIR, Lease, LeaseError, LeaseState, LockDir, add_leases};
pub use limits::OverLimit;
pub use model::{
    ComputeMode, Gpu, GpuLink, GpuProcess, MigDevice, PcieLevel, Peak, ProcessKind, SCHEMA_VERSION,
    Snapshot, SnapshotError, UtilizationWindow, host_name,
};
pub use occupancy::Occupancy;
pub use procfs::ProcReader;
pub use provider::{BoxedError, GpuInfoProvider, ProviderError};
pub use queue::{Claim, Ticket, Waiter, Wanted};
pub use rand;
pub use reason::Reason;
pub use registry::{ProviderFactory, ProviderFallback, ProviderRegistry, ProviderSpec};
pub use request::{Ban, BanRule, DeviceSpec, DeviceSpecError, Predicate, PredicateFn, Request};
pub use select::{
    Leaser, SelectError, SelectedDevice, Selection, StrategyDefaults, Verdict, WriteOptions,
    select, select_leased,
};
pub use selector::{CANCEL_CHECK, MAX_PROVIDER_FAILURES, Progress, Selector};
pub use share::ShareWithoutMemory;
pub use size::{
    MemoryAmount, MemoryAmountError, PercentError, PowerError, SizeError, format_bytes,
    format_power, parse_percent, parse_power, parse_size,
};
pub use strategy::{SelectStrategy, StrategyError};
pub use topology::{PairLink, SetLink, choose as choose_set, has_topology, pair_link, set_link};

/// The private parsers, for the fuzz targets in `fuzz/`. Not part of the
/// API: it may change at any time.
#[doc(hidden)]
pub mod fuzzing {
    /// The holder in a lease's record file owned by `uid`, as a reader of
    /// the lock directory takes it (`None`: not a record, or another user's).
    pub use crate::holder::parse_record as holder_record;
    /// A waiter's ticket file owned by `uid`, as other waiters read it.
    pub use crate::queue::parse_ticket as ticket;
    /// A share record owned by `uid`: its holder and bytes reserved.
    pub use crate::share::parse_share_record as share_record;
}

impl Visible {
    /// Reads `CUDA_VISIBLE_DEVICES` from this process's environment and
    /// resolves it against `gpus`. A value that is not UTF-8 is read lossily,
    /// which makes its bad bytes an invalid token, as CUDA would treat them.
    pub fn from_env(gpus: &[Gpu]) -> Self {
        let value =
            std::env::var_os(CUDA_VISIBLE_DEVICES).map(|v| v.to_string_lossy().into_owned());
        Visible::parse(value.as_deref(), gpus)
    }
}
