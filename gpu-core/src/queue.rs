//! First come, first served among gpusel's waiters: queue tickets in the
//! lock directory.
//!
//! A waiting selection takes a ticket, `gpusel-queue.<uid>.<pid>-<n>.ticket`:
//! the waiter and what it asks for (its filters as the strategy completed
//! them, its `CUDA_VISIBLE_DEVICES`), as JSON, in a file only its user can
//! write, exclusively locked by the waiter for as long as it waits. A waiter
//! killed with SIGKILL leaves the queue at once: its ticket is no longer
//! locked, and a ticket nobody holds counts for nothing.
//!
//! **Order** is the ticket file's change time (`ctime`), which the kernel
//! sets when the file is written and renamed into place and which no user
//! can set back (`utimes` sets the access and modification times, never the
//! change time; any later write or `chmod` moves it *forward*). So a user
//! can make their ticket younger, never older than another's, and a clock
//! the user controls (the time written in the record) plays no part. A
//! counter file would need to be writable by every user, and so rewritable
//! by any of them; the change time needs no shared writable state. Ties
//! (one clock tick) are broken by name.
//!
//! **Claims**: every selection (waiting or not) reads the live tickets
//! older than its own. In order, each older waiter claims, among the
//! devices that nobody leases now, up to as many as it asks for that its
//! request accepts; a claimed device is not taken by a younger selection.
//! So a request for 4 GPUs collects them as they free, and a request no
//! older waiter's filters accept is not held up.

use std::fs::File;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use nix::fcntl::Flock;
use nix::sys::stat::fstat;
use serde::{Deserialize, Serialize};

use crate::cvd::Visible;
use crate::device::Device;
use crate::holder::Holder;
use crate::lease::{LeaseError, LockDir, Look, key};
use crate::model::Snapshot;
use crate::reason::Reason;
use crate::request::{DeviceSpec, Request};

const PREFIX: &str = "gpusel-queue.";
const SUFFIX: &str = ".ticket";

/// Tells apart the tickets one process takes.
static NEXT_TICKET: AtomicU64 = AtomicU64::new(0);

/// What a waiter asks for, as its ticket records it: the request's filters
/// (custom predicates cannot be written down: a waiter with one is taken to
/// want whatever its other filters accept).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wanted {
    /// The count, as written (`1`, `all`, `2..4`).
    pub count: String,
    /// Minimum free memory, bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_free_memory: Option<u64>,
    /// Maximum GPU utilization, %.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_utilization: Option<u8>,
    /// Maximum memory-bandwidth utilization, %.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_memory_utilization: Option<u8>,
    /// See [`Request::idle_memory_utilization_may_be_unknown`].
    #[serde(default)]
    pub idle_memory_utilization_may_be_unknown: bool,
    /// Maximum processes already on a device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_processes: Option<usize>,
    /// Maximum power draw, mW.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_power: Option<u32>,
    /// Maximum memory in use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_memory_used: Option<crate::MemoryAmount>,
    /// Name pattern.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Only these devices.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<String>,
    /// Never these devices.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
    /// A share rather than an exclusive lease.
    #[serde(default)]
    pub share: bool,
    /// The waiter's `CUDA_VISIBLE_DEVICES`, if set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visible: Option<String>,
}

impl Wanted {
    /// What `request` (with its strategy's defaults applied) asks for, seen
    /// through `visible`.
    pub fn of(request: &Request, visible: Option<String>) -> Self {
        Wanted {
            count: request.count.to_string(),
            min_free_memory: request.min_free_memory,
            max_utilization: request.max_utilization,
            max_memory_utilization: request.max_memory_utilization,
            idle_memory_utilization_may_be_unknown: request.idle_memory_utilization_may_be_unknown,
            max_processes: request.max_processes,
            max_power: request.max_power,
            max_memory_used: request.max_memory_used,
            name: request.name.clone(),
            devices: request.devices.iter().map(ToString::to_string).collect(),
            exclude: request.exclude.iter().map(ToString::to_string).collect(),
            share: request.share,
            visible,
        }
    }

    /// The request again; `None` when the ticket does not parse (it is then
    /// taken to want any device).
    fn request(&self) -> Option<Request> {
        let specs = |list: &[String]| -> Option<Vec<DeviceSpec>> {
            list.iter().map(|s| s.parse().ok()).collect()
        };
        let mut r = Request::new().count(crate::Count::parse(&self.count).ok()?);
        r.min_free_memory = self.min_free_memory;
        r.max_utilization = self.max_utilization;
        r.max_memory_utilization = self.max_memory_utilization;
        r.idle_memory_utilization_may_be_unknown = self.idle_memory_utilization_may_be_unknown;
        r.max_processes = self.max_processes;
        r.max_power = self.max_power;
        r.max_memory_used = self.max_memory_used;
        r.name = self.name.clone();
        r.devices = specs(&self.devices)?;
        r.exclude = specs(&self.exclude)?;
        r.share = self.share;
        Some(r)
    }
}

/// A waiter in the queue, as `gpusel queue` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Waiter {
    /// Who waits (the kernel confirms the pid holds the ticket).
    pub holder: Holder,
    /// What it asks for.
    pub wanted: Wanted,
}

/// The tickets a [`LockDir`] has read, by name: a ticket is written under
/// another name and renamed into place, and never written again, so a file
/// of the same inode and change time holds the same waiter.
pub(crate) type TicketCache = std::sync::Mutex<std::collections::HashMap<String, Cached>>;

/// A ticket as read, and which version of its file it was read from.
#[derive(Debug)]
pub(crate) struct Cached {
    /// The file's inode and change time.
    version: (u64, i64, i64),
    waiter: Waiter,
}

/// A live ticket, with its place in the queue.
#[derive(Debug, Clone)]
struct Found {
    name: String,
    /// (ctime seconds, nanoseconds, pid, n): the queue order, ties (one clock
    /// tick) broken by the name's numbers.
    order: Order,
    waiter: Waiter,
}

type Order = (i64, i64, u32, u64);

/// This process's place in the queue, held while it waits; dropping it
/// leaves the queue.
#[derive(Debug)]
pub struct Ticket {
    name: String,
    order: Order,
    dir: std::os::fd::OwnedFd,
    // Dropped after the file is unlinked (see Drop).
    _lock: Flock<File>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        // Ours alone to remove (sticky directory); nobody waits on a
        // ticket's lock, so removing it cannot split two lockers.
        let _ = nix::unistd::unlinkat(
            &self.dir,
            self.name.as_str(),
            nix::unistd::UnlinkatFlags::NoRemoveDir,
        );
    }
}

/// A device an older waiter has first claim on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The device.
    pub uuid: String,
    /// The older waiter.
    pub by: Holder,
    /// How many devices it asks for, as written.
    pub count: String,
}

/// `gpusel-queue.<uid>.<pid>-<n>.ticket` to (uid, pid, n).
/// The waiter in a ticket file owned by `uid`, as another waiter reads it:
/// `None` when it is no ticket, or claims another user; its time clamped to
/// now.
pub fn parse_ticket(text: &[u8], uid: u32) -> Option<Waiter> {
    let mut waiter: Waiter = serde_json::from_slice(text).ok()?;
    if waiter.holder.uid != uid {
        return None;
    }
    waiter.holder.since = waiter.holder.since.min(SystemTime::now());
    Some(waiter)
}

impl Waiter {
    /// What the waiter asks for, as a request (`None`: a ticket whose
    /// request does not parse; it is taken to want any device).
    pub fn request(&self) -> Option<Request> {
        self.wanted.request()
    }
}

fn parse_name(name: &str) -> Option<(u32, u32, u64)> {
    let mut parts = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?.split('.');
    let (uid, tag) = (parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let (pid, n) = tag.split_once('-')?;
    Some((uid.parse().ok()?, pid.parse().ok()?, n.parse().ok()?))
}

fn order(st: &nix::sys::stat::FileStat, pid: u32, n: u64) -> Order {
    (st.st_ctime, st.st_ctime_nsec, pid, n)
}

impl LockDir {
    /// Takes a ticket for `holder`, who waits for `wanted`. Written under a
    /// temporary name and renamed into place, locked, so that a ticket in
    /// the queue is never seen unlocked by anyone cleaning up.
    pub fn take_ticket(&self, holder: &Holder, wanted: &Wanted) -> Result<Ticket, LeaseError> {
        let json = serde_json::to_vec(&Waiter {
            holder: holder.clone(),
            wanted: wanted.clone(),
        })
        .map_err(|e| self.lock_error("queue ticket", e.to_string()))?;
        self.clean_tickets(holder.uid);
        let n = NEXT_TICKET.fetch_add(1, Ordering::Relaxed);
        let base = format!("{PREFIX}{}.{}-{n}", holder.uid, holder.pid);
        let (new, name) = (format!("{base}.new"), format!("{base}{SUFFIX}"));
        let lock = self.write_locked(&new, holder.uid, &json).map_err(|e| {
            self.lock_error(&new, format!("cannot write the queue ticket: {}", e.desc()))
        })?;
        nix::fcntl::renameat(self.fd(), new.as_str(), self.fd(), name.as_str()).map_err(|e| {
            self.lock_error(&name, format!("cannot queue the ticket: {}", e.desc()))
        })?;
        let st = fstat(lock.as_fd()).map_err(|e| self.lock_error(&name, e.desc()))?;
        let dir = self
            .fd()
            .try_clone()
            .map_err(|e| self.lock_error(&name, e.to_string()))?;
        Ok(Ticket {
            name,
            order: order(&st, holder.pid, n),
            dir,
            _lock: lock,
        })
    }

    /// Removes `uid`'s tickets that nobody holds (left by killed waiters).
    fn clean_tickets(&self, uid: u32) {
        let look = self.look();
        self.clean_dead(uid, &look.names, &look);
    }

    /// The live tickets in `look`, oldest first. A ticket's file is read
    /// once (it never changes in place: see [`TicketCache`]); whether it is
    /// live comes from the lock table in `look`, and only a ticket the table
    /// does not show locked is probed (a dead one, or one a read skipped).
    fn tickets(&self, look: &Look) -> Vec<Found> {
        let mut cache = self
            .tickets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut found: Vec<Found> = look
            .names
            .iter()
            .filter_map(|name| {
                let (uid, pid, n) = parse_name(name)?;
                let st = self.stat(name)?;
                if !crate::lease::is(&st, nix::sys::stat::SFlag::S_IFREG) || st.st_uid != uid {
                    return None;
                }
                let version = (st.st_ino, st.st_ctime, st.st_ctime_nsec);
                let cached = cache.get(name).filter(|c| c.version == version);
                let waiter = match (cached, look.exclusive_holder(&st)) {
                    (Some(c), Some(_)) => c.waiter.clone(),
                    _ => {
                        let (text, st) = self.read_live(name, uid)??;
                        let waiter = parse_ticket(&text, uid)?;
                        let version = (st.st_ino, st.st_ctime, st.st_ctime_nsec);
                        cache.insert(
                            name.clone(),
                            Cached {
                                version,
                                waiter: waiter.clone(),
                            },
                        );
                        waiter
                    }
                };
                Some(Found {
                    name: name.clone(),
                    order: order(&st, pid, n),
                    waiter,
                })
            })
            .collect();
        cache.retain(|name, _| look.names.contains(name));
        found.sort_by_key(|f| f.order);
        found
    }

    /// The waiters in the queue, oldest first, as `gpusel queue` shows them:
    /// live tickets whose pid runs as the ticket's user.
    pub fn queue(&self) -> Vec<Waiter> {
        self.tickets(&self.look())
            .into_iter()
            .filter_map(|f| {
                Some(Waiter {
                    holder: crate::lease::confirmed(f.waiter.holder)?,
                    wanted: f.waiter.wanted,
                })
            })
            .collect()
    }

    /// The devices of `snapshot` that waiters older than `mine` (all of them,
    /// without a ticket) have first claim on; the devices in `held` (this
    /// selection's own leases) count as free.
    pub fn claims(&self, snapshot: &Snapshot, mine: Option<&Ticket>, held: &[&str]) -> Vec<Claim> {
        self.claims_seen(snapshot, mine, held, &self.look()).0
    }

    /// [`claims`](Self::claims) as `look` shows the directory, and the
    /// names of the older waiters' tickets (the waiters ahead of `mine`).
    pub(crate) fn claims_seen(
        &self,
        snapshot: &Snapshot,
        mine: Option<&Ticket>,
        held: &[&str],
        look: &Look,
    ) -> (Vec<Claim>, Vec<String>) {
        let older: Vec<Found> = self
            .tickets(look)
            .into_iter()
            .filter(|f| match mine {
                Some(t) => f.order < t.order && f.name != t.name,
                None => true,
            })
            .collect();
        let ahead = older.iter().map(|f| f.name.clone()).collect();
        (self.claims_of(snapshot, older, held, look), ahead)
    }

    /// What the `older` waiters claim of the devices of `snapshot` that
    /// `look` shows nobody holds (or this selection, `held`).
    fn claims_of(
        &self,
        snapshot: &Snapshot,
        older: Vec<Found>,
        held: &[&str],
        look: &Look,
    ) -> Vec<Claim> {
        if older.is_empty() {
            return Vec::new();
        }
        let devices = Device::all(&snapshot.gpus);
        // Devices nobody holds now, in index order.
        let mut open: Vec<&Device<'_>> = devices
            .iter()
            .filter(|d| held.contains(&d.uuid()) || !self.leased(d.uuid(), look))
            .collect();
        let mut claims = Vec::new();
        for ticket in older {
            let wanted = &ticket.waiter.wanted;
            let request = wanted.request();
            let visible = Visible::parse(wanted.visible.as_deref(), &snapshot.gpus);
            let most = request
                .as_ref()
                .and_then(|r| r.count.max())
                .map_or(usize::MAX, std::num::NonZeroUsize::get);
            let mut taken = 0;
            open.retain(|device| {
                let usable = taken < most
                    && visible.contains(device.uuid(), device.parent_uuid())
                    && request.as_ref().is_none_or(|r| {
                        let mut reasons = r.evaluate(device);
                        crate::share::explain(r, device, &mut reasons);
                        reasons.is_empty()
                    });
                if usable {
                    taken += 1;
                    claims.push(Claim {
                        uuid: device.uuid().to_string(),
                        by: ticket.waiter.holder.clone(),
                        count: wanted.count.clone(),
                    });
                }
                !usable
            });
            if open.is_empty() {
                break;
            }
        }
        claims
    }

    /// Whether `look` shows `uuid`'s lock file held exclusively.
    fn leased(&self, uuid: &str, look: &Look) -> bool {
        self.stat(&format!("{}.lock", key(uuid)))
            .is_some_and(|st| look.exclusive_holder(&st).is_some())
    }
}

/// A waiter that cannot act: more waiters are ahead of it than it can see
/// devices, so whatever frees goes to one of them first. Until enough of
/// them leave, it does not try (a try reads every lock file and the
/// kernel's lock table); it looks at the directory's change time, and at
/// its listing when that moved, to count the tickets ahead that are still
/// there. It tries all the same at least every `slow`, for what the
/// listing cannot show (a waiter ahead that was killed leaves its ticket
/// file behind, dead).
#[derive(Debug)]
pub(crate) struct Behind {
    ahead: Vec<String>,
    devices: usize,
    changed: Option<(i64, i64)>,
    until: std::time::Instant,
}

impl Behind {
    /// Behind the tickets `ahead`, seeing `devices` devices; `None` when
    /// it can act (fewer waiters ahead than devices).
    pub(crate) fn new(
        dir: &LockDir,
        ahead: Vec<String>,
        devices: usize,
        slow: std::time::Duration,
    ) -> Option<Self> {
        (ahead.len() >= devices.max(1)).then(|| Behind {
            ahead,
            devices: devices.max(1),
            changed: dir_changed(dir),
            until: std::time::Instant::now() + slow,
        })
    }

    /// Whether it still cannot act.
    pub(crate) fn still(&mut self, dir: &LockDir) -> bool {
        if std::time::Instant::now() >= self.until {
            return false;
        }
        let changed = dir_changed(dir);
        // A change time is coarse (a clock tick): one that is recent may
        // hide a second change in the same tick, so it is listed anyway.
        let recent = changed.is_none_or(|(s, ns)| {
            let then = std::time::UNIX_EPOCH
                + std::time::Duration::new(
                    s.max(0).unsigned_abs(),
                    ns.clamp(0, 999_999_999) as u32,
                );
            SystemTime::now()
                .duration_since(then)
                .ok()
                .is_none_or(|age| age < std::time::Duration::from_millis(50))
        });
        if changed != self.changed || recent {
            self.changed = changed;
            let names = dir.names();
            self.ahead.retain(|n| names.contains(n));
        }
        self.ahead.len() >= self.devices
    }
}

/// A waiter's alarm: an inotify watch on the lock directory that goes off
/// when a ticket ahead of it leaves the queue, and, for a waiter that can
/// act, when the lock file of a device only a lease keeps from it is closed
/// (when that was its last descriptor, the lease is let go). The waiter
/// then tries again, or counts the tickets ahead again, rather than at its
/// next interval. Only a hint: a try decides. A waiter behind others
/// watches removals only, so that the closes of a busy directory wake
/// nobody but the waiters they concern.
#[derive(Debug)]
pub(crate) struct Wake {
    inotify: nix::sys::inotify::Inotify,
    path: std::path::PathBuf,
    /// Whether closes are watched.
    closes: bool,
    /// Whether closes are worth watching: a try tells a live holder from a
    /// lock file to ask only by the kernel's lock table. Where it cannot be
    /// read, every try opens and closes the lock files it wants, and would
    /// set off its own alarm (and its fellow waiters') on every try.
    closes_useful: bool,
    /// The lock files whose closing sets it off.
    locks: Vec<String>,
    /// The tickets whose removal sets it off.
    ahead: Vec<String>,
}

impl Wake {
    /// A watch on `dir`; `None` where inotify is missing or its limits are
    /// reached (the waiter then waits out its intervals, as before).
    pub(crate) fn new(dir: &LockDir) -> Option<Self> {
        use nix::sys::inotify::{InitFlags, Inotify};
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC).ok()?;
        let mut wake = Wake {
            inotify,
            path: dir.path().to_path_buf(),
            closes: true,
            closes_useful: crate::lease::LockTable::read().is_some(),
            locks: Vec::new(),
            ahead: Vec::new(),
        };
        wake.watch(false).then_some(wake)
    }

    /// Watches removals, and closes too when `closes`; whether it could.
    fn watch(&mut self, closes: bool) -> bool {
        use nix::sys::inotify::AddWatchFlags as F;
        if closes == self.closes {
            return true;
        }
        let mut mask = F::IN_DELETE | F::IN_ONLYDIR;
        if closes {
            mask |= F::IN_CLOSE_WRITE | F::IN_CLOSE_NOWRITE;
        }
        // On a path already watched, this replaces the mask.
        let done = self.inotify.add_watch(&self.path, mask).is_ok();
        if done {
            self.closes = closes;
        }
        done
    }

    /// Sets it off from now on when one of the `locks` (devices, by UUID)
    /// is closed or one of the tickets `ahead` leaves.
    pub(crate) fn set(&mut self, locks: &[&str], ahead: Vec<String>) {
        self.locks = locks
            .iter()
            .map(|uuid| format!("{}.lock", key(uuid)))
            .collect();
        self.ahead = ahead;
        let closes = self.closes_useful && !self.locks.is_empty();
        self.watch(closes);
    }

    /// Waits up to `time` for the alarm; whether it went off.
    pub(crate) fn wait(&self, time: std::time::Duration) -> bool {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        use nix::sys::inotify::AddWatchFlags as F;
        let mut fds = [PollFd::new(self.inotify.as_fd(), PollFlags::POLLIN)];
        let timeout = PollTimeout::try_from(time).unwrap_or(PollTimeout::MAX);
        match poll(&mut fds, timeout) {
            Ok(0) => return false,
            Ok(_) => {}
            Err(_) => {
                std::thread::sleep(time);
                return false;
            }
        }
        let Ok(events) = self.inotify.read_events() else {
            return false;
        };
        events.iter().any(|event| {
            if event.mask.contains(F::IN_Q_OVERFLOW) {
                return true;
            }
            let Some(name) = event.name.as_ref().and_then(|n| n.to_str()) else {
                return false;
            };
            let closed = event
                .mask
                .intersects(F::IN_CLOSE_WRITE | F::IN_CLOSE_NOWRITE);
            let list = if closed { &self.locks } else { &self.ahead };
            list.iter().any(|n| n == name)
        })
    }
}

/// The lock directory's modification time (it moves as tickets come and go).
fn dir_changed(dir: &LockDir) -> Option<(i64, i64)> {
    fstat(dir.fd().as_fd())
        .ok()
        .map(|st| (st.st_mtime, st.st_mtime_nsec))
}

/// The reason a device is not taken: an older waiter claims it.
pub(crate) fn explain(request: &Request, device: &Device<'_>, reasons: &mut Vec<Reason>) {
    if let Some(claim) = request.claimed.iter().find(|c| c.uuid == device.uuid()) {
        reasons.push(Reason::Claimed {
            by: claim.by.clone(),
            count: claim.count.clone(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticket_names_parse() {
        assert_eq!(
            parse_name("gpusel-queue.1000.42-7.ticket"),
            Some((1000, 42, 7))
        );
        assert_eq!(parse_name("gpusel-queue.1000.ticket"), None);
        assert_eq!(parse_name("gpusel-queue.x.1-0.ticket"), None);
        assert_eq!(parse_name("gpusel-queue.1000.42-0.new"), None);
    }

    #[test]
    fn older_tickets_claim_what_they_ask_for_and_leave_the_rest() {
        use crate::model::Gpu;
        let tmp = tempfile::tempdir().unwrap();
        let dir = LockDir::open(tmp.path().join("locks")).unwrap();
        let mut snapshot = Snapshot::new("h", "test");
        for i in 0..3 {
            let mut gpu = Gpu::new(i, format!("GPU-{i}"), if i == 2 { "T4" } else { "A100" });
            gpu.memory_free = Some(40 << 30);
            snapshot.gpus.push(gpu);
        }
        let me = Holder::current(vec!["test".into()]);
        let two_a100 = Request::new()
            .count(std::num::NonZeroUsize::new(2).unwrap())
            .name("A100");
        let first = dir.take_ticket(&me, &Wanted::of(&two_a100, None)).unwrap();
        let any = dir
            .take_ticket(&me, &Wanted::of(&Request::new(), None))
            .unwrap();
        assert!(
            dir.claims(&snapshot, Some(&first), &[]).is_empty(),
            "nobody is older"
        );
        let claimed: Vec<String> = dir
            .claims(&snapshot, Some(&any), &[])
            .into_iter()
            .map(|c| c.uuid)
            .collect();
        assert_eq!(claimed, ["GPU-0", "GPU-1"]);
        let all: Vec<String> = dir
            .claims(&snapshot, None, &[])
            .into_iter()
            .map(|c| c.uuid)
            .collect();
        assert_eq!(all, ["GPU-0", "GPU-1", "GPU-2"]);
        assert_eq!(dir.queue().len(), 2);
        drop(first);
        let after: Vec<String> = dir
            .claims(&snapshot, None, &[])
            .into_iter()
            .map(|c| c.uuid)
            .collect();
        assert_eq!(after, ["GPU-0"], "the first ticket left the queue");
        // A ticket nobody holds any more is no ticket.
        drop(any);
        assert!(dir.queue().is_empty());
    }
}
