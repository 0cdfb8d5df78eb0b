//! [`Selector`]: the one entry point the CLI, the agent and the Python
//! binding share. Request, strategy, leasing, lock directory, visible set and
//! waiting, with defaults from the site's [`Config`].

use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::block_on::block_on;
use crate::config::Config;
use crate::cvd::Visible;
use crate::device::Device;
use crate::lease::DEFAULT_LOCK_DIR;
use crate::model::Snapshot;
use crate::provider::{GpuInfoProvider, ProviderError};
use crate::queue::{Behind, Ticket, Wake, Wanted};
use crate::reason::Reason;
use crate::request::{Ban, DeviceSpec, Request};
use crate::select::{Leaser, SelectError, Selection, Verdict, WriteOptions, pipeline};
use crate::strategy::SelectStrategy;

/// What a waiting [`Selector`] reports to its progress callback.
#[derive(Debug)]
#[non_exhaustive]
pub enum Progress<'a> {
    /// The request cannot be met yet; the next try is in `interval`.
    Waiting {
        /// Time since the selection started.
        waited: Duration,
        /// Time between tries.
        interval: Duration,
        /// The verdict on every device at this try.
        verdicts: &'a [Verdict],
    },
    /// The provider failed at this try (a snapshot file caught mid-rewrite,
    /// an nvidia-smi that timed out once); the next try is in `interval`.
    /// The wait ends with this error once it has failed
    /// [`MAX_PROVIDER_FAILURES`] tries in a row.
    ProviderFailed {
        /// Time since the selection started.
        waited: Duration,
        /// Time between tries.
        interval: Duration,
        /// Why this try failed.
        error: &'a ProviderError,
        /// Tries in a row that have failed, this one included.
        failures: usize,
        /// The tries in a row that end the wait ([`MAX_PROVIDER_FAILURES`]).
        limit: usize,
    },
    /// `CUDA_VISIBLE_DEVICES` holds tokens that name no device here (it is
    /// honoured as CUDA would honour it). Reported once per selection.
    VisibleProblem {
        /// The visible set, with its problem.
        visible: &'a Visible,
    },
}

type ProgressFn = Box<dyn FnMut(Progress<'_>) + Send>;
type CancelFn = Box<dyn FnMut() -> bool + Send>;

/// Tries in a row whose snapshot fails that end a wait. One failed try is
/// usually a passing state (a snapshot file caught mid-rewrite, an
/// nvidia-smi that timed out once) and the next try gets past it; a provider
/// that fails three times running (a driver gone, a file deleted) has a
/// problem waiting will not cure, and is reported within three intervals
/// (15 s at the default 5 s) rather than at the timeout, which may be hours
/// away or never come.
pub const MAX_PROVIDER_FAILURES: usize = 3;

/// How often, at least, a waiter tries while more waiters are ahead of it
/// than it sees devices (or every interval, when that is longer): between
/// tries it only watches the queue (see [`Behind`]).
const BEHIND_RETRY: Duration = Duration::from_secs(1);

/// The shortest pause between two tries of a waiter woken early (see
/// [`Wake`]).
const WAKE_FLOOR: Duration = Duration::from_millis(20);

/// How often a waiting selector asks its [`cancel_if`](Selector::cancel_if)
/// test, however long the interval between tries.
pub const CANCEL_CHECK: Duration = Duration::from_millis(50);

/// Where the visible set comes from.
#[derive(Debug, Clone)]
enum VisibleFrom {
    Env,
    Value(Option<String>),
}

/// Selects GPUs the way `gpusel` does, from a Rust program: build it from the
/// site's [`Config`] (so the lock directory, bans and default filters are
/// the CLI's), adjust the request, and [`select`](Selector::select) from a
/// provider. By default it leases what it selects (the returned
/// [`Selection`] holds the leases until it is dropped), honours
/// `CUDA_VISIBLE_DEVICES`, and does not wait.
///
/// ```
/// use gpusel_core::{Config, FileProvider, Selector, Snapshot, Gpu};
/// # let dir = tempfile::tempdir().unwrap();
/// # let mut snapshot = Snapshot::new("node1", "example");
/// # for i in 0..2 { let mut g = Gpu::new(i, format!("GPU-{i}"), "A100"); g.memory_free = Some(40 << 30); snapshot.gpus.push(g); }
/// # let path = dir.path().join("gpus.json");
/// # std::fs::write(&path, serde_json::to_string(&snapshot).unwrap()).unwrap();
/// # struct AnyFree;
/// # impl gpusel_core::SelectStrategy for AnyFree {
/// #     fn name(&self) -> &str { "any" }
/// #     fn rank(&self, c: &[gpusel_core::Device<'_>], _: &gpusel_core::Request, _: &mut dyn gpusel_core::rand::Rng) -> Vec<usize> { (0..c.len()).collect() }
/// # }
/// let config = Config::default(); // or Config::load()?, as the CLI reads it
/// let provider = FileProvider::new(&path);
/// let mut selector = Selector::from_config(&config, AnyFree)
///     .lock_dir(dir.path().join("locks"))
///     .min_free_memory(20 << 30);
/// let first = selector.select(&provider).unwrap();
/// let second = selector.select(&provider).unwrap();
/// assert_ne!(first.cuda_visible_devices, second.cuda_visible_devices, "leased apart");
/// assert!(selector.select(&provider).is_err(), "both are leased");
/// # Ok::<(), gpusel_core::ConfigError>(())
/// ```
pub struct Selector {
    request: Request,
    bans: Vec<Ban>,
    limits: crate::config::Limits,
    strategy: Box<dyn SelectStrategy>,
    lease: bool,
    lock_dir: PathBuf,
    command: Option<Vec<String>>,
    visible: VisibleFrom,
    write: WriteOptions,
    wait: Option<Option<Duration>>,
    default_timeout: Option<Duration>,
    interval: Duration,
    rng: rand::rngs::SmallRng,
    progress: Option<ProgressFn>,
    cancel: Option<CancelFn>,
}

impl fmt::Debug for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Selector")
            .field("request", &self.request)
            .field("bans", &self.bans)
            .field("strategy", &self.strategy.name())
            .field("lease", &self.lease)
            .field("lock_dir", &self.lock_dir)
            .field("visible", &self.visible)
            .field("write", &self.write)
            .field("wait", &self.wait)
            .field("interval", &self.interval)
            .field("cancellable", &self.cancel.is_some())
            .finish_non_exhaustive()
    }
}

impl Selector {
    /// A selector with gpusel's built-in defaults (lock directory
    /// [`DEFAULT_LOCK_DIR`], no bans, no default filters) and `strategy`.
    /// Prefer [`Selector::from_config`], which shares the site's settings.
    pub fn new(strategy: impl SelectStrategy + 'static) -> Self {
        Selector {
            request: Request::new(),
            bans: Vec::new(),
            limits: crate::config::Limits::default(),
            strategy: Box::new(strategy),
            lease: true,
            lock_dir: PathBuf::from(DEFAULT_LOCK_DIR),
            command: None,
            visible: VisibleFrom::Env,
            write: WriteOptions::default(),
            wait: None,
            default_timeout: None,
            interval: crate::config::DEFAULT_INTERVAL,
            rng: rand::make_rng::<rand::rngs::SmallRng>(),
            progress: None,
            cancel: None,
        }
    }

    /// A selector with the site's settings: its lock directory, bans, poll
    /// interval and default filters (which the setters below override, as
    /// flags override the config in the CLI; bans cannot be lifted).
    pub fn from_config(config: &Config, strategy: impl SelectStrategy + 'static) -> Self {
        let f = &config.filters;
        let mut s = Selector::new(strategy);
        s.lock_dir = config.lock_dir.value.clone();
        s.interval = config.interval.value;
        s.default_timeout = config.timeout.as_ref().map(|t| t.value);
        if config.wait.value {
            s.wait = Some(s.default_timeout);
        }
        s.bans = config.bans.clone();
        s.limits = config.limits.clone();
        s.request.min_free_memory = f.mem.as_ref().map(|v| v.value);
        s.request.max_utilization = f.max_util.as_ref().map(|v| v.value);
        s.request.max_memory_utilization = f.max_mem_util.as_ref().map(|v| v.value);
        s.request.max_processes = f.max_processes.as_ref().map(|v| v.value);
        s.request.max_power = f.max_power.as_ref().map(|v| v.value);
        s.request.max_memory_used = f.max_mem_used.as_ref().map(|v| v.value);
        s.request.idle = config.idle_rules();
        s
    }

    /// The request as it stands (the strategy's defaults are applied at
    /// selection time, to filters still unset).
    pub fn request(&self) -> &Request {
        &self.request
    }

    /// Replaces the whole request (the site's bans still apply).
    pub fn with_request(mut self, request: Request) -> Self {
        self.request = request;
        self
    }

    /// Changes the request in place, for filters without a setter here.
    pub fn map_request(mut self, f: impl FnOnce(Request) -> Request) -> Self {
        self.request = f(self.request);
        self
    }

    /// The strategy that ranks the candidates.
    pub fn strategy(mut self, strategy: impl SelectStrategy + 'static) -> Self {
        self.strategy = Box::new(strategy);
        self
    }

    /// The name of the strategy in use.
    pub fn strategy_name(&self) -> &str {
        self.strategy.name()
    }

    /// How many devices (default 1): a `NonZeroUsize` for exactly that
    /// many, or a [`Count`](crate::Count): every one that qualifies
    /// ([`Count::all`](crate::Count::all)) or a range.
    pub fn count(mut self, count: impl Into<crate::Count>) -> Self {
        self.request.count = count.into();
        self
    }

    /// At least `bytes` free on each device.
    pub fn min_free_memory(mut self, bytes: u64) -> Self {
        self.request.min_free_memory = Some(bytes);
        self
    }

    /// At most `percent` GPU utilization.
    pub fn max_utilization(mut self, percent: u8) -> Self {
        self.request.max_utilization = Some(percent);
        self
    }

    /// At most `percent` memory-bandwidth utilization.
    pub fn max_memory_utilization(mut self, percent: u8) -> Self {
        self.request.max_memory_utilization = Some(percent);
        self
    }

    /// At most `n` processes already on each device.
    pub fn max_processes(mut self, n: usize) -> Self {
        self.request.max_processes = Some(n);
        self
    }

    /// At most `milliwatts` of power draw.
    pub fn max_power(mut self, milliwatts: u32) -> Self {
        self.request.max_power = Some(milliwatts);
        self
    }

    /// At most `amount` of memory in use: bytes, or a percentage of each
    /// device's total (nvgpu's `available` takes those at most 20% used).
    pub fn max_memory_used(mut self, amount: crate::MemoryAmount) -> Self {
        self.request.max_memory_used = Some(amount);
        self
    }

    /// Shares the devices with other sharers instead of leasing them
    /// exclusively: each share reserves the request's minimum free memory
    /// ([`min_free_memory`](Selector::min_free_memory), required), and is
    /// admitted only while that fits beside the live shares' outstanding
    /// reservations. A device holds one exclusive lease or any number of
    /// shares, never both.
    pub fn share(mut self, share: bool) -> Self {
        self.request.share = share;
        self
    }

    /// Memory no listed process holds that a device may show and still be
    /// idle, as a size or a share of the board (see
    /// [`IdleRules`](crate::IdleRules); the default is the built-in
    /// tolerance, or the config's `idle.unaccounted_memory`).
    pub fn unaccounted_memory(mut self, amount: crate::MemoryAmount) -> Self {
        self.request.idle = crate::IdleRules::with_unaccounted_memory(Some(amount));
        self
    }

    /// Only devices whose name contains `pattern` (case-insensitive).
    pub fn name(mut self, pattern: impl Into<String>) -> Self {
        self.request.name = Some(pattern.into());
        self
    }

    /// Only these devices.
    pub fn devices(mut self, devices: Vec<DeviceSpec>) -> Self {
        self.request.devices = devices;
        self
    }

    /// Never these devices.
    pub fn exclude(mut self, devices: Vec<DeviceSpec>) -> Self {
        self.request.exclude = devices;
        self
    }

    /// A custom filter (gpuselect's `selector`); `label` names it when it rejects.
    pub fn filter(
        mut self,
        label: impl Into<String>,
        test: impl Fn(&Device<'_>) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.request = self.request.predicate(label, test);
        self
    }

    /// Whether to lease what is selected (default true). Without a lease,
    /// another job can be given the same devices.
    pub fn lease(mut self, lease: bool) -> Self {
        self.lease = lease;
        self
    }

    /// The lock directory (default: the site's, as the CLI uses).
    pub fn lock_dir(mut self, path: impl Into<PathBuf>) -> Self {
        self.lock_dir = path.into();
        self
    }

    /// The command recorded with the lease, as `gpusel list` shows it
    /// (default: this program's arguments).
    pub fn command(mut self, command: Vec<String>) -> Self {
        self.command = Some(command);
        self
    }

    /// Chooses only among the devices `value` names, as CUDA reads
    /// `CUDA_VISIBLE_DEVICES` (`None`: all). By default the variable is
    /// read from this process's environment.
    pub fn visible(mut self, value: Option<String>) -> Self {
        self.visible = VisibleFrom::Value(value);
        self
    }

    /// Writes UUIDs into `CUDA_VISIBLE_DEVICES` instead of indices.
    pub fn uuids(mut self, uuids: bool) -> Self {
        self.write.uuids = uuids;
        self
    }

    /// Waits until the request can be met, trying every
    /// [`interval`](Selector::interval), for at most `timeout` (`None`:
    /// forever). A request for more devices than are visible at all fails
    /// at once: waiting cannot help it. A try whose snapshot fails is
    /// retried too, until [`MAX_PROVIDER_FAILURES`] tries in a row have
    /// failed, which ends the wait with the last one's error. The progress
    /// callback hears why each try failed. A waiter with more waiters ahead
    /// of it in the queue than devices it could be given only watches the
    /// queue until enough of them leave, trying at least every second (or
    /// every interval, when longer); the callback then hears the last try's
    /// reasons again. A waiter tries before its interval is up (at most
    /// every 20 ms) when a lease that keeps a device from it is let go or a
    /// waiter ahead leaves, where inotify can tell it.
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use std::time::Duration;
    /// use gpusel_core::{Config, FileProvider, Gpu, Progress, SelectError, Selector, Snapshot};
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let mut snapshot = Snapshot::new("node1", "example");
    /// # let mut gpu = Gpu::new(0, "GPU-0", "A100"); gpu.memory_free = Some(10 << 30); snapshot.gpus.push(gpu);
    /// # let path = dir.path().join("gpus.json");
    /// # std::fs::write(&path, serde_json::to_string(&snapshot).unwrap()).unwrap();
    /// # struct InOrder;
    /// # impl gpusel_core::SelectStrategy for InOrder {
    /// #     fn name(&self) -> &str { "in-order" }
    /// #     fn rank(&self, c: &[gpusel_core::Device<'_>], _: &gpusel_core::Request, _: &mut dyn gpusel_core::rand::Rng) -> Vec<usize> { (0..c.len()).collect() }
    /// # }
    /// let tries = Arc::new(Mutex::new(0));
    /// let counted = Arc::clone(&tries);
    /// let result = Selector::from_config(&Config::default(), InOrder)
    ///     .lock_dir(dir.path().join("locks"))
    ///     .min_free_memory(40 << 30) // more than GPU 0 has free
    ///     .filter("not a display GPU", |d| !d.name().contains("Quadro"))
    ///     .wait(Some(Duration::from_millis(200)))
    ///     .interval(Duration::from_millis(50))
    ///     .on_progress(move |p| {
    ///         if let Progress::Waiting { verdicts, .. } = p {
    ///             assert!(verdicts[0].to_string().contains("free"));
    ///             *counted.lock().unwrap() += 1;
    ///         }
    ///     })
    ///     .select(&FileProvider::new(&path));
    /// assert!(matches!(result, Err(SelectError::TimedOut { .. })));
    /// assert!(*tries.lock().unwrap() >= 1);
    /// ```
    pub fn wait(mut self, timeout: Option<Duration>) -> Self {
        self.wait = Some(timeout);
        self
    }

    /// Waits for at most the site's `timeout` (for ever when the config sets
    /// none): what `--wait` without `--timeout` does.
    pub fn wait_configured(mut self) -> Self {
        self.wait = Some(self.default_timeout);
        self
    }

    /// Whether [`select`](Selector::select) waits.
    pub fn waits(&self) -> bool {
        self.wait.is_some()
    }

    /// The time between tries while waiting, as set or configured.
    pub fn poll_interval(&self) -> Duration {
        self.interval
    }

    /// Does not wait (the default, unless the site's config sets `wait`).
    pub fn no_wait(mut self) -> Self {
        self.wait = None;
        self
    }

    /// Time between tries while waiting (default: the site's, else 5 s).
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// Seeds the random choices, for reproducible picks.
    pub fn seed(mut self, seed: u64) -> Self {
        self.rng = <rand::rngs::SmallRng as rand::SeedableRng>::seed_from_u64(seed);
        self
    }

    /// Called while waiting, with why the request cannot be met yet.
    pub fn on_progress(mut self, f: impl FnMut(Progress<'_>) + Send + 'static) -> Self {
        self.progress = Some(Box::new(f));
        self
    }

    /// Asked every [`CANCEL_CHECK`] while waiting: when `test` returns
    /// true, [`select`](Selector::select) stops with
    /// [`SelectError::Cancelled`]. The Python binding answers Ctrl-C with it.
    pub fn cancel_if(mut self, test: impl FnMut() -> bool + Send + 'static) -> Self {
        self.cancel = Some(Box::new(test));
        self
    }

    /// Sleeps `time`, asking the cancel test as it goes; true if cancelled.
    /// With a `wake`, it ends early when that goes off, but not before
    /// [`WAKE_FLOOR`] has passed: a waiter woken by every lease let go on a
    /// busy machine must not try more often than that.
    fn pause(&mut self, time: Duration, wake: Option<&Wake>) -> bool {
        let start = Instant::now();
        let (end, floor) = (start + time, start + WAKE_FLOOR);
        loop {
            if let Some(cancel) = &mut self.cancel
                && cancel()
            {
                return true;
            }
            let now = Instant::now();
            let left = end.saturating_duration_since(now);
            if left.is_zero() {
                return false;
            }
            let slice = if self.cancel.is_some() {
                left.min(CANCEL_CHECK)
            } else {
                left
            };
            match wake {
                Some(wake) if now >= floor => {
                    if wake.wait(slice) {
                        return false;
                    }
                }
                Some(_) => std::thread::sleep(slice.min(floor.saturating_duration_since(now))),
                None => std::thread::sleep(slice),
            }
        }
    }

    fn report(&mut self, progress: Progress<'_>) {
        if let Some(f) = &mut self.progress {
            f(progress);
        }
    }

    /// Takes a snapshot from `provider` and selects, leasing and waiting as
    /// set. A remote provider's devices are never leased from here (their
    /// leases live on their node; devices leased there are passed over) and
    /// this process's `CUDA_VISIBLE_DEVICES` does not apply to them.
    pub fn select(&mut self, provider: &dyn GpuInfoProvider) -> Result<Selection, SelectError> {
        self.select_with_snapshot(provider)
            .map(|(selection, _)| selection)
    }

    /// [`select`](Selector::select), also returning the snapshot the
    /// selection was made from (every device's state at that moment), for
    /// callers that show more of the chosen devices than their UUIDs.
    pub fn select_with_snapshot(
        &mut self,
        provider: &dyn GpuInfoProvider,
    ) -> Result<(Selection, Snapshot), SelectError> {
        let remote = provider.is_remote();
        let mut request = self.request.clone();
        request.banned.extend(self.bans.iter().cloned());
        if remote && self.lease {
            // The node's own jobs hold these (its agent reads its lock
            // directory); a job started there would be refused them.
            request = request.predicate("not leased on the remote node", |d| {
                d.mig.map_or(d.gpu.lease.is_none(), |m| m.lease.is_none())
            });
        }
        let leaser = if self.lease && !remote {
            let command = self.command.clone().unwrap_or_else(|| {
                // Lossy: an argument that is not UTF-8 must not stop the job.
                std::env::args_os()
                    .map(|a| a.to_string_lossy().into_owned())
                    .collect()
            });
            Some(Leaser::open(self.lock_dir.clone(), command)?)
        } else {
            None
        };
        let start = Instant::now();
        let mut warned = false;
        let mut failures = 0;
        // Taken when the first try fails and the selection waits; dropped
        // (leaving the queue) when it returns.
        let mut ticket: Option<Ticket> = None;
        // While more waiters are ahead than there are devices, the last
        // try's answer stands and no try is made (see `Behind`).
        let mut behind: Option<Behind> = None;
        let mut last: Option<SelectError> = None;
        let mut wake: Option<Wake> = None;
        let slow = self.interval.max(BEHIND_RETRY);
        loop {
            let still = match (&mut behind, &leaser) {
                (Some(behind), Some(leaser)) => behind.still(&leaser.dir),
                _ => false,
            };
            let error = match last.take().filter(|_| still) {
                Some(error) => error,
                None => {
                    let mut ahead = Vec::new();
                    let tried = self.try_once(
                        provider,
                        &request,
                        leaser.as_ref(),
                        ticket.as_ref(),
                        &mut warned,
                        &mut ahead,
                    );
                    let error = match tried {
                        Ok(found) => return Ok(found),
                        Err(e) => e,
                    };
                    // Its ticket, when it has none yet, goes behind every
                    // ticket there is (`ahead`, then).
                    behind = match (&leaser, self.wait, &error) {
                        (Some(leaser), Some(_), SelectError::NoMatch { verdicts, .. }) => {
                            // The devices it could ever be given.
                            let reachable = verdicts
                                .iter()
                                .filter(|v| !v.reasons.iter().any(Reason::lasts))
                                .count();
                            let behind = Behind::new(&leaser.dir, ahead.clone(), reachable, slow);
                            if wake.is_none() {
                                wake = Wake::new(&leaser.dir);
                            }
                            if let Some(wake) = &mut wake {
                                // What only a lease keeps from it, if it can act.
                                let leased: Vec<&str> = verdicts
                                    .iter()
                                    .filter(|v| {
                                        behind.is_none()
                                            && !v.reasons.is_empty()
                                            && v.reasons.iter().all(|r| {
                                                matches!(
                                                    r,
                                                    Reason::Leased { .. }
                                                        | Reason::Shared { .. }
                                                        | Reason::SharesFull { .. }
                                                        | Reason::Claimed { .. }
                                                )
                                            })
                                    })
                                    .map(|v| v.uuid.as_str())
                                    .collect();
                                wake.set(&leased, ahead);
                            }
                            behind
                        }
                        _ => None,
                    };
                    error
                }
            };
            let Some(timeout) = self.wait else {
                return Err(error);
            };
            // A provider failure is retried, until it persists.
            let failed = matches!(error, SelectError::Provider(_));
            failures = if failed { failures + 1 } else { 0 };
            if failures >= MAX_PROVIDER_FAILURES || (!failed && !worth_waiting(&error)) {
                return Err(error);
            }
            let waited = start.elapsed();
            let left = timeout.map(|t| t.saturating_sub(waited));
            if let (Some(timeout), Some(Duration::ZERO)) = (timeout, left) {
                return Err(SelectError::TimedOut {
                    timeout,
                    last: Box::new(error),
                });
            }
            if let (None, Some(leaser), SelectError::NoMatch { .. }) = (&ticket, &leaser, &error) {
                ticket = self.take_ticket(leaser, &request);
            }
            let interval = self.interval;
            match &error {
                SelectError::NoMatch { verdicts, .. } => self.report(Progress::Waiting {
                    waited,
                    interval,
                    verdicts,
                }),
                SelectError::Provider(error) => self.report(Progress::ProviderFailed {
                    waited,
                    interval,
                    error,
                    failures,
                    limit: MAX_PROVIDER_FAILURES,
                }),
                _ => {}
            }
            // Woken when a lease it waits for is let go or a waiter ahead
            // leaves (see `Wake`).
            if self.pause(
                left.map_or(self.interval, |l| l.min(self.interval)),
                wake.as_ref(),
            ) {
                return Err(SelectError::Cancelled);
            }
            last = Some(error);
        }
    }

    /// A place in the queue for this waiting selection; `None` (it waits
    /// unordered, as before queues) when the ticket cannot be written.
    fn take_ticket(&self, leaser: &Leaser, request: &Request) -> Option<Ticket> {
        let mut wanted = request.clone();
        self.strategy.apply_defaults(&mut wanted);
        let visible = match &self.visible {
            VisibleFrom::Env => std::env::var(crate::cvd::CUDA_VISIBLE_DEVICES).ok(),
            VisibleFrom::Value(v) => v.clone(),
        };
        match leaser
            .dir
            .take_ticket(&leaser.holder, &Wanted::of(&wanted, visible))
        {
            Ok(ticket) => Some(ticket),
            Err(e) => {
                tracing::warn!(error = %e, "cannot take a place in the queue; waiting without one");
                None
            }
        }
    }

    /// The pipeline for `request`, passing over the devices `claimed` by
    /// older waiters.
    fn claimed_pipeline(
        &mut self,
        snapshot: &Snapshot,
        request: &Request,
        visible: &Visible,
        leaser: Option<&Leaser>,
        look: Option<&crate::lease::Look>,
        claimed: &mut Vec<crate::Claim>,
    ) -> Result<Selection, SelectError> {
        let request = if claimed.is_empty() {
            std::borrow::Cow::Borrowed(request)
        } else {
            let mut with = request.clone();
            with.claimed = std::mem::take(claimed);
            std::borrow::Cow::Owned(with)
        };
        pipeline(
            snapshot,
            &request,
            self.strategy.as_ref(),
            visible,
            self.write,
            &mut self.rng,
            leaser.zip(look),
        )
    }

    /// One try: a snapshot, then the pipeline on it.
    fn try_once(
        &mut self,
        provider: &dyn GpuInfoProvider,
        request: &Request,
        leaser: Option<&Leaser>,
        ticket: Option<&Ticket>,
        warned: &mut bool,
        ahead: &mut Vec<String>,
    ) -> Result<(Selection, Snapshot), SelectError> {
        let remote = provider.is_remote();
        // Only a pick of several devices looks at how they are joined.
        let mut snapshot = if request.count.may_take_several() {
            block_on(provider.snapshot())?
        } else {
            block_on(provider.snapshot_without_topology())?
        };
        let mut claimed = Vec::new();
        // One look at the lock directory for the whole try.
        let look = leaser.map(|l| l.dir.look());
        if let (Some(leaser), Some(look)) = (leaser, &look) {
            leaser.dir.clean_dead(leaser.holder.uid, &look.names, look);
            crate::limits::check(&self.limits, &leaser.dir, look, leaser.holder.uid, request)?;
            leaser.dir.add_shares_seen(&mut snapshot, look);
            (claimed, *ahead) = leaser.dir.claims_seen(&snapshot, ticket, &[], look);
        }
        tracing::debug!(
            provider = provider.name(),
            gpus = snapshot.gpus.len(),
            "snapshot taken"
        );
        let visible = match (&self.visible, remote) {
            (_, true) => Visible::all(),
            (VisibleFrom::Env, false) => Visible::from_env(&snapshot.gpus),
            (VisibleFrom::Value(v), false) => Visible::parse(v.as_deref(), &snapshot.gpus),
        };
        let claimed_before = claimed.clone();
        let mut result = self.claimed_pipeline(
            &snapshot,
            request,
            &visible,
            leaser,
            look.as_ref(),
            &mut claimed,
        );
        // A device that freed between reading the queue and leasing it may
        // be an older waiter's: asked again with the leases held (counted
        // as free), and handed back, to lease around it, when it is. Until
        // no lease held is claimed: the claims only add up, and each round
        // passes over one more device, so this ends. (Three rounds once
        // returned the third one's leases unasked: under load a 1-GPU
        // waiter could take the GPU a 4-GPU waiter ahead of it had claimed.)
        let mut passed_over = claimed_before;
        while let (Ok(selection), Some(leaser)) = (&result, leaser) {
            let held: Vec<&str> = selection.leases().iter().map(|l| l.uuid()).collect();
            let look = leaser.dir.look();
            let (again, _) = leaser.dir.claims_seen(&snapshot, ticket, &held, &look);
            if !again.iter().any(|c| held.contains(&c.uuid.as_str())) {
                break;
            }
            let before = passed_over.len();
            for claim in again {
                if !passed_over.iter().any(|c| c.uuid == claim.uuid) {
                    passed_over.push(claim);
                }
            }
            if passed_over.len() == before {
                // Cannot be (a device passed over is never leased): no loop.
                break;
            }
            claimed = passed_over.clone();
            // Released before leasing again: our own lease would be in the way.
            drop(std::mem::replace(&mut result, Err(SelectError::Cancelled)));
            result = self.claimed_pipeline(
                &snapshot,
                request,
                &visible,
                Some(leaser),
                Some(&look),
                &mut claimed,
            );
        }
        // When nothing is visible the error itself explains the variable.
        let explained = matches!(result, Err(SelectError::NoMatch { visible: 0, .. }));
        if visible.warning().is_some() && !explained && !*warned {
            *warned = true;
            self.report(Progress::VisibleProblem { visible: &visible });
        }
        result.map(|selection| (selection, snapshot))
    }
}

/// Whether waiting can help: not when more devices are asked for than are
/// visible at all, nor for a request that is wrong in itself.
fn worth_waiting(error: &SelectError) -> bool {
    match error {
        SelectError::NoMatch {
            requested, visible, ..
        } => requested <= visible,
        // Until the user's own jobs end.
        SelectError::OverLimit(over) => over.may_fit(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    use crate::model::Gpu;

    /// Fails the tries listed in `fail` (0 is the first), else one idle GPU.
    struct Flaky {
        tries: AtomicUsize,
        fail: Vec<usize>,
    }

    #[async_trait::async_trait]
    impl GpuInfoProvider for Flaky {
        fn name(&self) -> &str {
            "flaky"
        }
        async fn snapshot(&self) -> Result<Snapshot, ProviderError> {
            let n = self.tries.fetch_add(1, Ordering::SeqCst);
            if self.fail.contains(&n) {
                return Err(ProviderError::failed("flaky", format!("try {n} failed")));
            }
            let mut s = Snapshot::new("box", "flaky");
            let mut gpu = Gpu::new(0, "GPU-0", "T4");
            // Busy until every listed failure is past.
            let busy = self.fail.iter().any(|&f| f > n);
            gpu.utilization_gpu = Some(if busy { 90 } else { 0 });
            s.gpus.push(gpu);
            Ok(s)
        }
    }

    struct First;
    impl SelectStrategy for First {
        fn name(&self) -> &str {
            "first"
        }
        fn rank(&self, c: &[Device<'_>], _: &Request, _: &mut dyn rand::Rng) -> Vec<usize> {
            (0..c.len()).collect()
        }
    }

    /// What the progress callback heard: failures in a row, and the error.
    type Heard = Arc<Mutex<Vec<(usize, String)>>>;

    fn selector(wait: bool) -> (Selector, Heard) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let heard = Arc::clone(&seen);
        let mut s = Selector::new(First)
            .lease(false)
            .visible(None)
            .max_utilization(10)
            .interval(Duration::from_millis(1))
            .on_progress(move |p| {
                if let Progress::ProviderFailed {
                    error,
                    failures,
                    limit,
                    ..
                } = p
                {
                    assert_eq!(limit, MAX_PROVIDER_FAILURES);
                    heard.lock().unwrap().push((failures, error.to_string()));
                }
            });
        if wait {
            s = s.wait(None);
        }
        (s, seen)
    }

    fn flaky(fail: impl IntoIterator<Item = usize>) -> Flaky {
        Flaky {
            tries: AtomicUsize::new(0),
            fail: fail.into_iter().collect(),
        }
    }

    #[test]
    fn a_failed_snapshot_while_waiting_is_retried_and_reported() {
        let (mut s, seen) = selector(true);
        let provider = flaky([0, 2, 3]);
        s.select(&provider).expect("the fifth try succeeds");
        assert_eq!(provider.tries.load(Ordering::SeqCst), 5);
        let seen = seen.lock().unwrap();
        let failures: Vec<usize> = seen.iter().map(|(n, _)| *n).collect();
        assert_eq!(failures, [1, 1, 2], "counted in a row");
        assert!(seen[0].1.contains("try 0 failed"), "{seen:?}");
    }

    #[test]
    fn a_failure_that_persists_ends_the_wait_with_the_last_error() {
        let (mut s, seen) = selector(true);
        let provider = flaky(0..100);
        let e = s.select(&provider).unwrap_err();
        assert!(matches!(e, SelectError::Provider(_)), "{e:?}");
        assert!(e.to_string().contains("try 2 failed"), "{e}");
        assert_eq!(provider.tries.load(Ordering::SeqCst), MAX_PROVIDER_FAILURES);
        assert_eq!(seen.lock().unwrap().len(), MAX_PROVIDER_FAILURES - 1);
    }

    #[test]
    fn without_a_wait_a_failure_fails_at_once() {
        let (mut s, seen) = selector(false);
        let provider = flaky([0]);
        assert!(matches!(s.select(&provider), Err(SelectError::Provider(_))));
        assert_eq!(provider.tries.load(Ordering::SeqCst), 1);
        assert!(seen.lock().unwrap().is_empty());
    }
}
