//! Shared leases (`--share --mem SIZE`): any number of jobs on one device,
//! each admitted only while the memory it reserves still fits.
//!
//! A share is a *shared* `flock` on the device's lock file, held by the job
//! for its life (so exclusive leases, which need the exclusive lock, cannot
//! coexist with it), plus a share record `gpusel-<uuid>.<uid>.<pid>-<n>.share`
//! (the holder and the bytes reserved, as JSON), written by the holder into a
//! file of its own uid and exclusively locked by it for the share's life: a
//! record counts only while its writer lives, so a SIGKILLed job's
//! reservation vanishes with its descriptors, as an exclusive lease does.
//!
//! Admission is serialized per device by an exclusive lock on
//! `gpusel-<uuid>.admit`, held only while a newcomer reads the live records,
//! checks that the memory the driver reports free, less every live share's
//! outstanding reservation (reserved minus what its processes already use,
//! from the same snapshot), still fits, and writes its own record. Two racing
//! sharers therefore cannot both take the last free bytes.
//!
//! Readers (`list`, `serve`) tell a share's shared lock from a blocker's by
//! its record: a shared lock held by the pid of a live record of the same
//! uid is a share; any other shared lock that outlives a probe still marks
//! the lock file blocked.

use std::fs::File;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use nix::sys::stat::FileStat;
use serde::{Deserialize, Serialize};

use crate::device::Device;
use crate::holder::{Holder, Share};
use crate::lease::Lease;
use crate::lease::{ExitedWait, LeaseError, LockDir, LockTable, Look, key};
use crate::model::{GpuProcess, Snapshot};
use crate::reason::Reason;
use crate::request::Request;
use crate::select::Leaser;

/// What a share record holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    holder: Holder,
    reserved: u64,
}

/// The share in a record file owned by `uid`, as another sharer reads it:
/// `None` when it is no share record, or claims another user.
fn parse_record(text: &[u8], uid: u32) -> Option<Record> {
    let record: Record = serde_json::from_slice(text).ok()?;
    (record.holder.uid == uid).then_some(record)
}

/// A share record's holder and bytes reserved, for the fuzz targets.
pub fn parse_share_record(text: &[u8], uid: u32) -> Option<(Holder, u64)> {
    parse_record(text, uid).map(|r| (r.holder, r.reserved))
}

/// How long a newcomer waits for other sharers' admissions to finish (each
/// takes about a millisecond; a hundred racing ones on a loaded machine
/// take well under this).
const ADMISSION_WAIT: Duration = Duration::from_secs(20);

/// Tells apart the shares one process takes of one device.
static NEXT_SHARE: AtomicU64 = AtomicU64::new(0);

/// A request that asks to share without saying how much memory.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "a share reserves memory on the device, and the request does not say how much (set the minimum free memory)"
)]
pub struct ShareWithoutMemory;

/// Refuses a share request without memory.
pub(crate) fn validate(request: &Request) -> Result<(), ShareWithoutMemory> {
    if request.share && request.min_free_memory.is_none() {
        return Err(ShareWithoutMemory);
    }
    Ok(())
}

/// What the device's shares add to the `reasons` the filters gave: an
/// exclusive request cannot join them, and a shortage of free memory that
/// their reservations make is said to be theirs.
pub(crate) fn explain(request: &Request, device: &Device<'_>, reasons: &mut Vec<Reason>) {
    let Some(lease) = device.lease().filter(|l| !l.shares.is_empty()) else {
        return;
    };
    let outstanding = lease.outstanding();
    for reason in reasons.iter_mut() {
        if let (Reason::NotEnoughMemory { required, .. }, Some(free)) =
            (&*reason, device.memory_free_reported())
            && outstanding > 0
            && free >= *required
        {
            *reason = Reason::SharesFull {
                free,
                outstanding,
                shares: lease.shares.len(),
                required: *required,
            };
        }
    }
    if !request.share {
        reasons.push(Reason::Shared {
            shares: lease.shares.len(),
            reserved: lease.shares.iter().map(|s| s.reserved).sum(),
        });
    }
}

/// What asking for a device gave.
#[derive(Debug)]
pub(crate) enum Taken {
    /// The lease (exclusive or a share).
    Lease(Lease),
    /// Someone holds it (exclusively, for a share; at all, for a lease).
    Held,
    /// Not asked for: the look at the directory shows it held by a live
    /// process, this holder.
    Seen(Option<Holder>),
    /// Not admitted, for this reason.
    Refused(Reason),
}

impl Leaser {
    /// Leases `device` for `request`: a share for a share request, an
    /// exclusive lease otherwise.
    pub(crate) fn take(&self, device: &Device<'_>, request: &Request) -> Result<Taken, LeaseError> {
        match (request.share, request.min_free_memory) {
            (true, Some(bytes)) => self.dir.try_share(device, &self.holder, bytes),
            _ => Ok(self
                .dir
                .try_lease(device.uuid(), &self.holder)?
                .map_or(Taken::Held, Taken::Lease)),
        }
    }
}

/// One share record found in the directory.
struct Found {
    name: String,
    key: String,
    uid: u32,
    /// The record, when its writer still holds it; `None`: left by a job
    /// that ended.
    live: Option<Record>,
    /// The record file's status, for a live one: whether its job has
    /// exited is [`Look::writer_exited`] of it.
    stat: Option<FileStat>,
}

impl Found {
    /// Whether the job of this live record has exited, its guardian letting
    /// the record go (an instant): as `look` (or the kernel, asked again)
    /// shows it.
    fn letting_go(&self, dir: &LockDir, look: &Look) -> bool {
        self.stat
            .as_ref()
            .is_some_and(|st| look.writer_exited(dir, &self.name, st))
    }
}

/// `gpusel-<key>.<uid>.<pid>-<n>.share` split into key and uid.
fn parse_name(name: &str) -> Option<(&str, u32)> {
    let mut parts = name.strip_suffix(".share")?.split('.');
    let (key, uid, tag) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || !key.starts_with("gpusel-") || tag.is_empty() {
        return None;
    }
    Some((key, uid.parse().ok()?))
}

/// The memory the processes of `pid` (itself and its descendants) use among
/// `processes`; `None` when the provider lists none.
fn used_by(processes: Option<&[GpuProcess]>, pid: u32, parents: &mut Parents) -> Option<u64> {
    let processes = processes?;
    Some(
        processes
            .iter()
            .filter(|p| parents.descends_from(p.pid, pid))
            .filter_map(|p| p.used_memory)
            .sum(),
    )
}

/// The parent of each process asked about, read from `/proc` once per
/// snapshot (every share asks about every process of its device).
#[derive(Debug, Default)]
pub(crate) struct Parents(std::collections::HashMap<u32, Option<u32>>);

impl Parents {
    /// The parent of `pid`; `None` when it cannot be read.
    fn of(&mut self, pid: u32) -> Option<u32> {
        *self.0.entry(pid).or_insert_with(|| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| crate::procfs::parent_pid(&stat))
        })
    }

    /// Whether `pid` is `ancestor` or one of its descendants.
    fn descends_from(&mut self, pid: u32, ancestor: u32) -> bool {
        let mut pid = pid;
        for _ in 0..64 {
            if pid == ancestor {
                return true;
            }
            match self.of(pid) {
                Some(parent) if parent > 1 => pid = parent,
                _ => return false,
            }
        }
        false
    }
}

impl LockDir {
    /// Every share record in the directory, live or left over, of the device
    /// keys `keep` accepts.
    fn share_records(&self, names: &[String], keep: impl Fn(&str) -> bool) -> Vec<Found> {
        names
            .iter()
            .filter_map(|name| {
                let (key, uid) = parse_name(name)?;
                if !keep(key) {
                    return None;
                }
                let key = key.to_string();
                let (live, stat) = match self.live_record(name, uid)? {
                    Some((record, st)) => (Some(record), Some(st)),
                    None => (None, None),
                };
                Some(Found {
                    name: name.clone(),
                    key,
                    uid,
                    live,
                    stat,
                })
            })
            .collect()
    }

    /// `Some(Some((record, its file's status)))` when `name` is a live
    /// record of `uid`'s, `Some(None)` when it is one left over, `None` when
    /// it is no record of `uid`'s at all (planted by another user,
    /// unreadable, not JSON).
    fn live_record(&self, name: &str, uid: u32) -> Option<Option<(Record, FileStat)>> {
        let Some((text, st)) = self.read_live(name, uid)? else {
            return Some(None);
        };
        parse_record(&text, uid).map(|record| Some((record, st)))
    }

    /// The devices `uid` holds, by their file key, from its live holder
    /// records (`None`) and share records (the bytes reserved), among the
    /// names in `look`, each with whether the job that holds it has exited
    /// ([`Look::writer_exited`]).
    pub(crate) fn live_records_of(
        &self,
        uid: u32,
        look: &Look,
    ) -> Vec<(String, Option<u64>, bool)> {
        look.names
            .iter()
            .filter_map(|name| {
                if let Some((key, owner)) = parse_name(name) {
                    if owner != uid {
                        return None;
                    }
                    let (record, st) = self.live_record(name, uid)??;
                    let exited = look.writer_exited(self, name, &st);
                    return Some((key.to_string(), Some(record.reserved), exited));
                }
                let (key, owner) = name.strip_suffix(".holder")?.rsplit_once('.')?;
                if owner.parse() != Ok(uid) {
                    return None;
                }
                let (text, st) = self.read_live(name, uid)??;
                crate::holder::parse_record(&text, uid)?;
                Some((key.to_string(), None, look.writer_exited(self, name, &st)))
            })
            .collect()
    }

    /// The live share records of device `uuid`, whoever wrote them: what
    /// admission counts and what keeps an exclusive lease off the device.
    pub(crate) fn live_share_records(&self, uuid: &str) -> Vec<Holder> {
        let key = key(uuid);
        self.share_records(&self.names(), |k| k == key)
            .into_iter()
            .filter_map(|f| f.live.map(|r| r.holder))
            .collect()
    }

    /// The shares of `uuid` to show: live records whose holder the kernel
    /// confirms (its pid holds a shared lock on the lock file `st`, and
    /// runs as the record's uid), oldest first; `used` is left to the caller,
    /// which has the snapshot.
    pub(crate) fn checked_shares(
        &self,
        uuid: &str,
        st: &FileStat,
        table: &LockTable,
    ) -> Vec<Share> {
        let key = key(uuid);
        let records: Vec<Record> = self
            .share_records(&self.names(), |k| k == key)
            .into_iter()
            .filter_map(|f| f.live)
            .collect();
        if records.is_empty() {
            return Vec::new();
        }
        let lockers = table.shared_lockers(st);
        let mut shares: Vec<Share> = records
            .into_iter()
            .filter(|r| lockers.contains(&r.holder.pid))
            .filter_map(|r| {
                Some(Share {
                    holder: crate::lease::confirmed(r.holder)?,
                    reserved: r.reserved,
                    used: None,
                })
            })
            .collect();
        shares.sort_by_key(|s| s.holder.since);
        shares
    }

    /// Marks every device of `snapshot` with its live shares (unverified:
    /// what admission counts), so that filters and strategies see their
    /// outstanding reservations as used memory. One read of the directory.
    pub fn add_shares(&self, snapshot: &mut Snapshot) {
        self.add_shares_seen(snapshot, &self.look());
    }

    /// [`add_shares`](Self::add_shares) from the names in `look`.
    pub(crate) fn add_shares_seen(&self, snapshot: &mut Snapshot, look: &Look) {
        // A record whose job has exited is being let go by its guardian (an
        // instant): counted, it could keep the next job off the memory its
        // job just left. Admission waits it out (`try_share`).
        let mut live: Vec<(String, Record)> = self
            .share_records(&look.names, |_| true)
            .into_iter()
            .filter(|f| !f.letting_go(self, look))
            .filter_map(|f| f.live.map(|r| (f.key, r)))
            .collect();
        live.sort_by_key(|(_, r)| r.holder.since);
        let mut parents = Parents::default();
        let mut shares_of = |uuid: &str, processes: Option<&[GpuProcess]>| -> Vec<Share> {
            let key = key(uuid);
            live.iter()
                .filter(|(k, _)| *k == key)
                .map(|(_, r)| Share {
                    holder: r.holder.clone(),
                    reserved: r.reserved,
                    used: used_by(processes, r.holder.pid, &mut parents),
                })
                .collect()
        };
        for gpu in &mut snapshot.gpus {
            let shares = shares_of(&gpu.uuid, gpu.processes.as_deref());
            set_shares(&mut gpu.lease, shares);
            for mig in &mut gpu.mig_devices {
                let shares = shares_of(&mig.uuid, mig.processes.as_deref());
                set_shares(&mut mig.lease, shares);
            }
        }
    }

    /// Holds the admission lock of `uuid` (waiting out other admissions).
    fn admission(&self, uuid: &str) -> Result<Flock<File>, LeaseError> {
        let name = format!("{}.admit", key(uuid));
        let mut file = self.open_lock_file(&name)?;
        let start = Instant::now();
        let mut pause = Duration::from_micros(100);
        loop {
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(lock) => return Ok(lock),
                Err((f, Errno::EWOULDBLOCK)) if start.elapsed() < ADMISSION_WAIT => {
                    file = f;
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(20));
                }
                Err((_, Errno::EWOULDBLOCK)) => {
                    return Err(self.lock_error(
                        &name,
                        format!(
                            "another process has held this admission lock for {}s, which keeps every share out",
                            ADMISSION_WAIT.as_secs()
                        ),
                    ));
                }
                Err((_, e)) => return Err(self.lock_error(&name, e.desc())),
            }
        }
    }

    /// Takes a share of `device` reserving `reserved` bytes, if no exclusive
    /// lease holds it and the memory it reports free (in the snapshot the
    /// device comes from), less the outstanding reservations of the live
    /// shares, fits.
    pub(crate) fn try_share(
        &self,
        device: &Device<'_>,
        holder: &Holder,
        reserved: u64,
    ) -> Result<Taken, LeaseError> {
        let uuid = device.uuid();
        let name = format!("{}.lock", key(uuid));
        for _ in 0..4 {
            let file = self.open_lock_file(&name)?;
            let lock = match Flock::lock(file, FlockArg::LockSharedNonblock) {
                Ok(lock) => lock,
                Err((_, Errno::EWOULDBLOCK)) => return Ok(Taken::Held),
                Err((_, e)) => return Err(self.lock_error(&name, e.desc())),
            };
            if !self.still_linked(&name, &lock) {
                continue;
            }
            // An exclusive holder whose lock file was deleted under it.
            if self.read_holder(uuid).is_some() {
                return Ok(Taken::Held);
            }
            // A share whose job has exited is let go by its guardian an
            // instant later: what it reserved is waited out (up to
            // EXITED_HOLDER_WAIT, as an exclusive lease is) before the
            // device counts as full, so that `gpusel --share -- A; gpusel
            // --share -- B` does not refuse B the memory A just left.
            let mut wait = ExitedWait::new();
            let (admission, outstanding, shares) = loop {
                let admission = self.admission(uuid)?;
                let (outstanding, shares, letting_go) = self.outstanding(device, holder.uid);
                let full = device
                    .memory_free_reported()
                    .is_some_and(|free| free.saturating_sub(outstanding) < reserved);
                if !(full && letting_go) || wait.over() {
                    break (admission, outstanding, shares);
                }
                drop(admission);
                wait.pause(|| {
                    tracing::debug!(
                        uuid,
                        "a share's job has exited and its reservation is in the way; waiting for it to be let go"
                    );
                });
            };
            let Some(free) = device.memory_free_reported() else {
                return Ok(Taken::Refused(Reason::Unknown {
                    what: "free memory".into(),
                }));
            };
            if free.saturating_sub(outstanding) < reserved {
                return Ok(Taken::Refused(Reason::SharesFull {
                    free,
                    outstanding,
                    shares,
                    required: reserved,
                }));
            }
            let record = self.write_share_record(uuid, holder, reserved)?;
            drop(admission);
            return Ok(Taken::Lease(Lease::share(uuid, reserved, lock, record)));
        }
        Err(self.lock_error(&name, "it keeps being replaced while gpusel locks it"))
    }

    /// What the live shares of `device` reserve and do not use yet, how
    /// many they are, and whether the job of one of them has exited (its
    /// guardian letting it go). Records left by jobs of `me` that ended are
    /// deleted. Only under the device's admission lock; one look at the
    /// directory.
    fn outstanding(&self, device: &Device<'_>, me: u32) -> (u64, usize, bool) {
        let my_key = key(device.uuid());
        let look = self.look();
        let (mut outstanding, mut shares, mut letting_go) = (0u64, 0, false);
        let mut parents = Parents::default();
        for found in self.share_records(&look.names, |k| k == my_key) {
            match &found.live {
                Some(r) => {
                    shares += 1;
                    letting_go |= found.letting_go(self, &look);
                    let used = used_by(device.processes(), r.holder.pid, &mut parents).unwrap_or(0);
                    outstanding = outstanding.saturating_add(r.reserved.saturating_sub(used));
                }
                // Left by a job of ours that ended: nobody else may delete
                // it, and under the admission lock nobody can be reusing its
                // name for this device.
                None if found.uid == me && found.key == my_key => {
                    self.unlink(&found.name);
                }
                None => {}
            }
        }
        (outstanding, shares, letting_go)
    }

    /// Writes and locks this process's share record of `uuid`. Unlike a
    /// holder record it must exist: an unrecorded share would be invisible
    /// to the next admission.
    fn write_share_record(
        &self,
        uuid: &str,
        holder: &Holder,
        reserved: u64,
    ) -> Result<Flock<File>, LeaseError> {
        let json = serde_json::to_vec(&Record {
            holder: holder.clone(),
            reserved,
        })
        .map_err(|e| self.lock_error(uuid, e.to_string()))?;
        let mut last = Errno::EPERM;
        for _ in 0..8 {
            let n = NEXT_SHARE.fetch_add(1, Ordering::Relaxed);
            let base = format!("{}.{}.{}-{n}", key(uuid), holder.uid, holder.pid);
            let (new, name) = (format!("{base}.new"), format!("{base}.share"));
            // Written and locked under a name no reader looks at, then put in
            // place: a reader never finds it unlocked (nor probes it while
            // its writer locks it). Planted by another user, or held: try
            // another name.
            let placed = self.write_locked(&new, holder.uid, &json).and_then(|lock| {
                nix::fcntl::renameat(self.fd(), new.as_str(), self.fd(), name.as_str())
                    .map(|()| lock)
                    .inspect_err(|_| self.unlink(&new))
            });
            match placed {
                Ok(lock) => return Ok(lock),
                Err(e @ (Errno::EPERM | Errno::EWOULDBLOCK)) => last = e,
                Err(e) => {
                    return Err(self.lock_error(
                        &name,
                        format!("cannot write the share record: {}", e.desc()),
                    ));
                }
            }
        }
        Err(self.lock_error(
            &format!("{}.{}.*.share", key(uuid), holder.uid),
            format!(
                "every share record name is taken by another user's file: {}",
                last.desc()
            ),
        ))
    }
}

/// Puts `shares` into a device's lease field (dropping stale ones).
fn set_shares(lease: &mut Option<crate::holder::LeaseStatus>, shares: Vec<Share>) {
    match lease {
        Some(status) => status.shares = shares,
        None if !shares.is_empty() => {
            *lease = Some(crate::holder::LeaseStatus {
                holder: None,
                blocked: None,
                shares,
            });
        }
        None => {}
    }
}

/// Fills in what each share's processes use, from the snapshot's process
/// lists (`gpusel list`: the shares came from [`LockDir::state`]).
pub(crate) fn add_usage(
    lease: &mut Option<crate::holder::LeaseStatus>,
    processes: Option<&[GpuProcess]>,
    parents: &mut Parents,
) {
    for share in lease.iter_mut().flat_map(|l| l.shares.iter_mut()) {
        share.used = used_by(processes, share.holder.pid, parents);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_names_parse() {
        assert_eq!(
            parse_name("gpusel-gpu-ab.1000.4242-0.share"),
            Some(("gpusel-gpu-ab", 1000))
        );
        assert_eq!(parse_name("gpusel-gpu-ab.1000.share"), None);
        assert_eq!(parse_name("gpusel-gpu-ab.x.1-0.share"), None);
        assert_eq!(parse_name("other.1000.1-0.share"), None);
        assert_eq!(parse_name("gpusel-gpu-ab.1000.1-0.holder"), None);
    }

    #[test]
    fn parent_pids_parse_past_odd_names() {
        assert_eq!(crate::procfs::parent_pid("12 (a) b) S 7 12 12"), Some(7));
        assert_eq!(crate::procfs::parent_pid("garbage"), None);
        let mut parents = Parents::default();
        assert!(parents.descends_from(std::process::id(), std::process::id()));
        let parent = std::os::unix::process::parent_id();
        assert!(parents.descends_from(std::process::id(), parent));
        assert!(!parents.descends_from(parent, std::process::id()));
    }
}
