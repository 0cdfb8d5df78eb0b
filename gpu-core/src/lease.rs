//! Exclusive device leases: no two gpusel jobs on one GPU.
//!
//! The design is on [`LockDir`], where the public documentation shows it.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, FcntlArg, FdFlag, Flock, FlockArg, OFlag, fcntl, open, openat};
use nix::sys::stat::{FileStat, Mode, SFlag, fchmod, fstat, fstatat};
use nix::unistd::Pid;

use crate::guardian::GuardError;
use crate::holder::{Holder, LeaseStatus, Share};

/// Where leases live unless configured otherwise: machine-wide, shared by
/// every user and every systemd service (see [`LockDir`]).
pub const DEFAULT_LOCK_DIR: &str = "/run/lock";

/// Largest holder record read; a bigger file is not a record gpusel wrote.
const MAX_RECORD: u64 = 64 * 1024;

/// How often, at most, an exclusive lock waits out readers that probe the
/// file with a shared lock for an instant (`list`, `serve` every interval).
/// The waits double from 20 µs, about 80 ms in all: a probe lasts
/// microseconds, but a prober the scheduler preempts while it holds the lock
/// can hold it for milliseconds on a loaded machine. Only a job that keeps
/// meeting probes waits that long.
const PROBE_WAITS: u32 = 12;

/// Locks `file` exclusively unless somebody holds it exclusively (`Ok(Err)`
/// hands the file back). A shared lock in the way is a reader's probe, not a
/// lease: it is waited out rather than taken for a holder.
fn lock_exclusive(file: File) -> Result<Result<Flock<File>, File>, Errno> {
    let mut file = file;
    for wait in 0..=PROBE_WAITS {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => return Ok(Ok(lock)),
            Err((f, Errno::EWOULDBLOCK)) => {
                // A shared lock is granted only while nobody holds the file
                // exclusively: then what blocked us were probes.
                let shared = match Flock::lock(f, FlockArg::LockSharedNonblock) {
                    Ok(shared) => shared,
                    Err((f, Errno::EWOULDBLOCK)) => return Ok(Err(f)),
                    Err((_, e)) => return Err(e),
                };
                file = shared.unlock().map_err(|(_, e)| e)?;
                if wait < PROBE_WAITS {
                    std::thread::sleep(std::time::Duration::from_micros(20 << wait));
                }
            }
            Err((_, e)) => return Err(e),
        }
    }
    // Probed without pause for milliseconds: give way as to a holder.
    Ok(Err(file))
}

/// How long a job waits for a lease whose holder has exited to be let go.
/// A job's lease outlives it by as long as its guardian (see
/// [`Lease::guard_for_exec`]) takes to wake up and close it: an instant,
/// but one in which `gpusel -- A; gpusel -- B` would otherwise refuse B the
/// GPU that A just left. A lock whose holder exited and left it with a
/// child of its own is waited on this long before the GPU counts as taken.
pub(crate) const EXITED_HOLDER_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// [`lock_exclusive`], waiting (up to [`EXITED_HOLDER_WAIT`]) while the
/// process that the kernel names as the lock's holder has exited.
fn lock_exclusive_past_exits(file: File) -> Result<Result<Flock<File>, File>, Errno> {
    let st = fstat(file.as_fd())?;
    let mut wait = ExitWait::new(file_id(&st));
    let mut file = file;
    loop {
        match lock_exclusive(file)? {
            Ok(lock) => return Ok(Ok(lock)),
            Err(held) if wait.again(kernel_holder(&st, 3)) => file = held,
            Err(held) => return Ok(Err(held)),
        }
    }
}

/// The holders (lock file, pid) this process waited [`EXITED_HOLDER_WAIT`]
/// for in vain (a job that exited and left its lock to a child of its own):
/// not waited for again, so that a waiter's every try is not 2 s longer.
static WAITED_IN_VAIN: std::sync::Mutex<Vec<(FileId, u32)>> = std::sync::Mutex::new(Vec::new());

/// Waiting out a job that has exited while its guardian lets go of what it
/// held (a lease, a share, what counts against a limit): up to
/// [`EXITED_HOLDER_WAIT`], a short pause at a time, told once.
pub(crate) struct ExitedWait {
    deadline: std::time::Instant,
    said: bool,
}

impl ExitedWait {
    /// A wait starting now.
    pub(crate) fn new() -> Self {
        ExitedWait {
            deadline: std::time::Instant::now() + EXITED_HOLDER_WAIT,
            said: false,
        }
    }

    /// Whether [`EXITED_HOLDER_WAIT`] has passed: waited long enough.
    pub(crate) fn over(&self) -> bool {
        std::time::Instant::now() >= self.deadline
    }

    /// Pauses a moment before the caller looks again; `say` (a debug line
    /// saying what is waited for) runs the first time only.
    pub(crate) fn pause(&mut self, say: impl FnOnce()) {
        if !std::mem::replace(&mut self.said, true) {
            say();
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Waiting out a holder that has exited while its guardian lets go: one
/// wait per lock taken, and none for a holder already waited for in vain.
struct ExitWait {
    file: FileId,
    wait: ExitedWait,
    unseen: u32,
}

impl ExitWait {
    fn new(file: FileId) -> Self {
        ExitWait {
            file,
            wait: ExitedWait::new(),
            unseen: 0,
        }
    }

    /// Whether to ask again, the lock being held by `holder` (as the
    /// kernel or a live record names it; `None`: not in the lock table):
    /// yes, after a pause, while it names a process that has exited.
    fn again(&mut self, holder: Option<u32>) -> bool {
        let Some(pid) = holder else {
            // Let go since it was refused (or a read skipped it): ask
            // again, a few times.
            self.unseen += 1;
            return self.unseen <= 8;
        };
        if !exited(pid) {
            return false;
        }
        let mut in_vain = WAITED_IN_VAIN
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if in_vain.contains(&(self.file, pid)) {
            return false;
        }
        if self.wait.over() {
            if in_vain.len() >= 64 {
                in_vain.remove(0);
            }
            in_vain.push((self.file, pid));
            return false;
        }
        drop(in_vain);
        self.wait.pause(|| {
            tracing::debug!(
                pid,
                "the lease's holder has exited; waiting for it to be let go"
            );
        });
        true
    }
}

/// The process the kernel's lock table names as holding the file `st`
/// describes exclusively, asking up to `reads` times (a read of the table
/// can skip a line while other locks change).
fn kernel_holder(st: &FileStat, reads: usize) -> Option<u32> {
    (0..reads).find_map(|_| LockTable::read()?.exclusive_holder(st))
}

/// Whether process `pid` has exited (gone, or a zombie). 0 (a process in a
/// pid namespace this one cannot see) and this process have not.
pub(crate) fn exited(pid: u32) -> bool {
    if pid == 0 || pid == std::process::id() {
        return false;
    }
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    // Asked of the kernel first: with /proc mounted `hidepid=2`, another
    // user's live process has no /proc entry to read, yet it runs (EPERM).
    if nix::sys::signal::kill(Pid::from_raw(raw), None) == Err(Errno::ESRCH) {
        return true;
    }
    // It exists; a zombie (or one dying) has exited all the same.
    std::fs::read(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        crate::procfs::stat_state(&stat).is_some_and(|s| matches!(s, b'Z' | b'X'))
    })
}

/// How old a file left under a temporary name (`….new`) must be before its
/// user's next gpusel removes it: it exists for an instant while its writer
/// lives, and is not told apart from one a crash left any sooner.
pub const LEFT_NEW_AGE: std::time::Duration = std::time::Duration::from_secs(10);

/// Who wrote the share record, queue ticket or temporary file `name`
/// (`gpusel-….<uid>.<pid>-<n>.share`, `.ticket` or `.new`): its uid, its
/// pid, and whether it is a temporary one.
fn written_by(name: &str) -> Option<(u32, u32, bool)> {
    let (base, temporary) = match name.rsplit_once('.')? {
        (base, "share" | "ticket") => (base, false),
        (base, "new") => (base, true),
        _ => return None,
    };
    let (rest, tag) = base.rsplit_once('.')?;
    let (prefix, uid) = rest.rsplit_once('.')?;
    let (pid, n) = tag.split_once('-')?;
    if !prefix.starts_with("gpusel-") || n.parse::<u64>().is_err() {
        return None;
    }
    Some((uid.parse().ok()?, pid.parse().ok()?, temporary))
}

/// A lock directory that cannot be used, or a lock file that cannot be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LeaseError {
    /// The directory is a symbolic link.
    #[error(
        "lock directory {} is a symbolic link, which gpusel does not follow", path.display()
    )]
    Symlink {
        /// The directory.
        path: PathBuf,
    },
    /// The path exists and is not a directory.
    #[error(
        "lock directory {} exists and is not a directory; remove it", path.display()
    )]
    NotADirectory {
        /// The path.
        path: PathBuf,
    },
    /// Owned by another user: that user could delete everyone's lock files.
    #[error(
        "lock directory {} is owned by uid {owner}, neither root nor you (uid {me}), so its owner could delete your leases; an administrator fixes it for everyone with `chown root {}` (a systemd-tmpfiles entry `d {} 1777 root root -` recreates it so at boot)", path.display(), path.display(), path.display()
    )]
    BadOwner {
        /// The directory.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// The current effective uid.
        me: u32,
    },
    /// Writable by others without the sticky bit: anyone could delete lock files.
    #[error(
        "lock directory {} has mode {mode:04o}: writable by other users without the sticky bit, so anyone could delete its lock files; run `chmod +t {}` (as its owner)", path.display(), path.display()
    )]
    UnsafeMode {
        /// The directory.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The directory is missing and cannot be created.
    #[error(
        "cannot create lock directory {}: {message}; create it as root with `mkdir -m 1777 {}`", path.display(), path.display()
    )]
    Create {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        message: String,
    },
    /// The directory exists and cannot be opened.
    #[error(
        "cannot open lock directory {}: {message}; check its permissions", path.display()
    )]
    Open {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        message: String,
    },
    /// A lock file cannot be opened or locked.
    #[error(
        "lock file {}: {message}; an administrator can remove it (gpusel recreates it)", path.display()
    )]
    LockFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
}

/// An opened, checked lock directory. Every file in it is opened relative to
/// this descriptor, so the directory cannot be swapped under gpusel.
///
/// # Design
///
/// One lock directory, shared by every user of the machine
/// ([`DEFAULT_LOCK_DIR`], `/run/lock`). In it, per device (a GPU by its
/// UUID, a MIG device by its MIG UUID; every name starts `gpusel-` so that the
/// directory can be a shared one):
///
/// - `gpusel-<uuid>.lock`: the lease itself. A lease is an exclusive, non-blocking
///   `flock` on it. The file is created (mode 0644) by the first user who
///   needs it and opened **read-only** by everyone else: `flock` needs no write
///   access, so no user can write into another's lock file. Lock files are
///   never deleted: deleting one while another process waits on it would let
///   two processes lock two different files of the same name. The kernel
///   drops the lock when the last descriptor closes, so a job killed with
///   SIGKILL leaves no stale lease, and no daemon or TTL is needed.
/// - `gpusel-<uuid>.<uid>.holder`: who holds the lease (a [`Holder`] as JSON),
///   written by the holder into a file of its own uid, which only that user
///   can write, and exclusively `flock`ed by the holder for as long as it
///   holds the lease. A reader trusts a record only if the lease is held, the
///   file is a regular file owned by the uid in its name, the record names the
///   same uid, and the file is still locked by its writer (a record left by
///   an earlier holder is not). So one user can neither forge a record in
///   another's name nor make a stale record look current.
///
/// The directory is created mode 1777 (sticky, like `/tmp`), so users cannot
/// delete or rename each other's files. A directory that is a symbolic link,
/// not a directory, owned by someone other than root or the current user, or
/// writable by group or others without the sticky bit, is refused: any of
/// those would let another user swap the lock files. Every file is opened
/// relative to the directory's descriptor, with `O_NOFOLLOW` (no symlink is
/// followed) and `O_NONBLOCK` (a FIFO planted in its place cannot hang
/// gpusel), and must be a regular file.
///
/// The directory must belong to root or to the current user: a directory of
/// another user's could have its files deleted by that user. That is why the
/// default is `/run/lock` itself, which the system creates root-owned and
/// sticky, rather than a `gpusel` directory under it, which the first user to
/// run gpusel would own and everyone else would then have to refuse. A site
/// that wants a directory of its own creates it as root (a systemd-tmpfiles
/// entry is in `examples/`).
///
/// `/run/lock` rather than `/tmp`: `/run/lock` is one tmpfs for the whole
/// machine (mode 1777 on Debian, Ubuntu, Fedora; `/var/lock` links to it), and
/// systemd's `PrivateTmp=yes` gives a service its own `/tmp` but leaves
/// `/run/lock` shared, so jobs started by a service and by users see the same
/// leases. It is emptied at boot, when no lease can be held anyway.
///
/// The user who first created a lock file owns it and could delete it (the
/// sticky bit stops everyone else). That does not let a second job on: the
/// holder keeps its record locked for the lease's life, and a live record
/// counts as the lease ([`LockDir::try_lease`] refuses the device,
/// [`LockDir::state`] reports it leased). A process that finds its lock file
/// replaced between opening and locking it retries on the new one.
///
/// # Across `exec`: the guardian
///
/// `gpusel -- CMD` execs the job, which keeps gpusel's pid and inherits the
/// lease descriptors ([`Lease::keep_across_exec`]). A job that closes the
/// descriptors it inherited (`os.closerange(3, 65536)`, common in launchers
/// and daemons) would drop its lease while still running, so just before
/// `exec` gpusel also spawns a *guardian* ([`Lease::guard_for_exec`]): a
/// process holding its own copies of the lock and holder-record
/// descriptors. The copies share the open file descriptions, so the locks
/// stay held while the job or the guardian has them open. A double fork
/// makes it no child of the job (the job sees no unexpected `SIGCHLD` or
/// zombie); it starts a session of its own (the terminal's Ctrl-C reaches
/// the job, not it), ignores `SIGINT`, `SIGHUP`, `SIGTERM` and `SIGPIPE`,
/// moves to `/` (it keeps no file system busy), puts `/dev/null` on its
/// standard descriptors (it keeps no terminal), closes every other
/// descriptor (no GPU device, no pipe of the job's), names itself
/// `gpusel-guard` and waits in `poll` on a pidfd of the job. When the job
/// exits, however it exits, it closes the holder records, then the locks,
/// and exits. Where `pidfd_open` is missing (Linux before 5.3) it reads the
/// job's `/proc/PID/stat` every 100 ms instead (a changed start time is a
/// reused pid: the job is gone). The kernel's lock table names the process
/// that took a lock, which is the job (same pid), so readers show the job
/// as the holder, never the guardian. The process that forks may have
/// other threads: between `fork` and its end the guardian makes only
/// async-signal-safe system calls on what was prepared before the fork.
///
/// The guardian wakes an instant after the job exits; a job that asks for
/// a lease whose holder (as the kernel names it) has exited waits up to
/// 2 s for it to be let go, so that `gpusel -- A; gpusel -- B` gives B the
/// GPU A just left. `gpusel list` may show such a lease for that instant.
/// When no guardian can be started (no fork, no pidfd and no `/proc`), the
/// job alone holds its lease, as long as it keeps the descriptors.
///
/// Readers ([`LockDir::state`], behind `list` and every round of `serve`)
/// probe a lock file with a *shared* lock for an instant, and read a holder
/// record under a shared lock too. A lease is always *exclusive*, so a job
/// whose exclusive lock is refused asks for a shared one: granted means only
/// readers were in the way, and it retries (for about 80 ms at most) instead
/// of taking a probe for a holder and passing over a free GPU.
#[derive(Debug)]
pub struct LockDir {
    path: PathBuf,
    fd: OwnedFd,
    /// The queue tickets read so far (a ticket never changes once in place).
    pub(crate) tickets: crate::queue::TicketCache,
}

/// An exclusive lease on one device, released when dropped (or, once kept
/// across `exec`, when the job exits, however it exits).
#[derive(Debug)]
pub struct Lease {
    uuid: String,
    /// Bytes reserved, for a share (then `lock` is a shared lock).
    pub(crate) reserved: Option<u64>,
    // Declared (so dropped) before `lock`: the record stops counting as
    // live before the lock is free, so a job that takes the lock the next
    // instant never sees this lease's record as another live holder.
    record: Option<Held>,
    lock: Held,
}

/// A lock this process took: unlocked when dropped, in that process only.
///
/// A `fork`ed child (Python's `os.fork`, a `multiprocessing` worker) shares
/// the lock's open file with its parent, and `flock(LOCK_UN)` acts on that
/// shared file: a child dropping its copy of a [`Lease`] would free the
/// parent's GPU. In any process but the one that took it, the file is only
/// closed, which leaves the lock to the others that hold it. (Unlike nix's
/// `Flock`, a failed unlock is not a panic: a job may have closed the
/// descriptor under it, `os.closerange`, and the close ends the lock anyway.)
#[derive(Debug)]
struct Held {
    file: File,
    taken_by: u32,
}

impl Held {
    fn new(flock: Flock<File>) -> Self {
        // SAFETY: `Flock<File>` only wraps the `File`; it is read out once
        // and the wrapper forgotten, so the file is owned once, here, and
        // the wrapper's unlock does not run (ours, below, does).
        let file = unsafe { std::ptr::read(&*flock) };
        std::mem::forget(flock);
        Held {
            file,
            taken_by: std::process::id(),
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if std::process::id() == self.taken_by {
            // SAFETY: flock(2) on a descriptor this value owns.
            unsafe { nix::libc::flock(self.file.as_raw_fd(), nix::libc::LOCK_UN) };
        }
        // Then the file is closed, by its own drop.
    }
}

impl PartialEq for Lease {
    fn eq(&self, other: &Self) -> bool {
        self.uuid == other.uuid
    }
}

impl Eq for Lease {}

impl Lease {
    /// The device this lease is on.
    pub fn uuid(&self) -> &str {
        &self.uuid
    }

    /// For a share (`--share`), the bytes it reserved; `None` for an
    /// exclusive lease.
    pub fn reserved(&self) -> Option<u64> {
        self.reserved
    }

    /// A share: its shared lock on the lock file and its locked record.
    pub(crate) fn share(uuid: &str, reserved: u64, lock: Flock<File>, record: Flock<File>) -> Self {
        Lease {
            uuid: uuid.to_string(),
            reserved: Some(reserved),
            record: Some(Held::new(record)),
            lock: Held::new(lock),
        }
    }

    /// Keeps the lease's descriptors open across `exec`, so that the program
    /// exec'd holds the lease until it exits. Call it just before `exec`: a
    /// child spawned after it would hold the lease too.
    pub fn keep_across_exec(&self) -> Result<(), LeaseError> {
        for held in std::iter::once(&self.lock).chain(self.record.as_ref()) {
            fcntl(&held.file, FcntlArg::F_SETFD(FdFlag::empty())).map_err(|e| {
                LeaseError::LockFile {
                    path: PathBuf::from(&self.uuid),
                    message: format!("cannot keep it open for the job: {e}"),
                }
            })?;
        }
        Ok(())
    }

    /// Spawns a *guardian* that holds `leases` for as long as this process,
    /// or the program it is about to `exec`, runs: a job that closes the
    /// descriptors it inherited (`os.closerange(3, 65536)`) keeps its
    /// leases all the same. Returns the guardian's pid, or `None` when
    /// `leases` is empty (nothing to guard).
    ///
    /// Call it last before `exec`, after [`Lease::keep_across_exec`]: the
    /// guardian shares the leases' open files with this process, so the
    /// locks stay held while either has them open, and it lets go of them
    /// (holder records first, as a [`Lease`]'s drop does) once this process
    /// has exited. It is not this process's child, runs in a session of its
    /// own named `gpusel-guard` ([`GUARDIAN_NAME`]), ignores the terminal's
    /// signals, holds no other descriptor and sits in `/`; the kernel's lock
    /// table still names this process, so readers ([`LockDir::state`],
    /// `gpusel list`) show the job as the holder. The design is on
    /// [`LockDir`].
    ///
    /// On an error no guardian runs: the leases are then held only by this
    /// process's descriptors (and the job's, across `exec`), as before.
    ///
    /// [`GUARDIAN_NAME`]: crate::GUARDIAN_NAME
    pub fn guard_for_exec(leases: &[Lease]) -> Result<Option<u32>, GuardError> {
        if leases.is_empty() {
            return Ok(None);
        }
        let records: Vec<_> = leases
            .iter()
            .filter_map(|l| l.record.as_ref().map(|r| r.file.as_raw_fd()))
            .collect();
        let locks: Vec<_> = leases.iter().map(|l| l.lock.file.as_raw_fd()).collect();
        crate::guardian::spawn(&records, &locks).map(Some)
    }
}

/// Whether a device is leased, as a reader sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LeaseState {
    /// Nobody holds it.
    Free,
    /// Someone holds it; the holder, as the kernel's lock table and the
    /// holder's own record agree on it, when they do.
    Leased(Option<Holder>),
    /// Nobody leases it, yet no job could: why (see [`LeaseStatus::blocked`]).
    Blocked(String),
    /// Jobs share it (`--share`): their shares, oldest first, each holder
    /// confirmed by the kernel's lock table.
    Shared(Vec<Share>),
}

impl LeaseState {
    /// The `lease` field of `gpusel list --json`.
    pub fn status(self) -> Option<LeaseStatus> {
        match self {
            LeaseState::Free => None,
            LeaseState::Leased(holder) => Some(LeaseStatus {
                holder,
                blocked: None,
                shares: Vec::new(),
            }),
            LeaseState::Blocked(why) => Some(LeaseStatus {
                holder: None,
                blocked: Some(why),
                shares: Vec::new(),
            }),
            LeaseState::Shared(shares) => Some(LeaseStatus {
                holder: None,
                blocked: None,
                shares,
            }),
        }
    }
}

/// One `flock` from the kernel's lock table (`/proc/locks`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct KernelFlock {
    pid: u32,
    exclusive: bool,
}

/// The kernel's lock table (`/proc/locks`), read once.
///
/// Every read of `/proc/locks` takes the kernel's lock-table lock for
/// writing, which holds up every `flock` and every close of a locked file on
/// the machine while it lasts: a try reads it once (into one buffer, in one
/// system call as a rule: the table is listed consistently within one read)
/// and asks this copy everything it needs.
#[derive(Debug, Clone, Default)]
pub(crate) struct LockTable {
    /// Every granted `flock`, with its file.
    flocks: Vec<(FileId, KernelFlock)>,
}

impl LockTable {
    /// The table now; `None` when `/proc/locks` cannot be read.
    pub(crate) fn read() -> Option<Self> {
        let text = read_proc_locks()?;
        Some(LockTable {
            flocks: every_flock(&text).collect(),
        })
    }

    /// This table with `other`'s locks too: a read can skip a line while
    /// other locks change, so what must not be missed is read twice.
    fn with(mut self, other: Option<LockTable>) -> Self {
        let mut seen: std::collections::HashSet<_> = self.flocks.iter().copied().collect();
        for lock in other.into_iter().flat_map(|t| t.flocks) {
            if seen.insert(lock) {
                self.flocks.push(lock);
            }
        }
        self
    }

    /// The `flock`s on the file `st` describes.
    fn on(&self, st: &FileStat) -> impl Iterator<Item = KernelFlock> + '_ {
        let id = file_id(st);
        self.flocks
            .iter()
            .filter(move |(file, _)| *file == id)
            .map(|(_, lock)| *lock)
    }

    /// The process holding the file `st` describes exclusively, if any.
    pub(crate) fn exclusive_holder(&self, st: &FileStat) -> Option<u32> {
        self.on(st).find(|l| l.exclusive).map(|l| l.pid)
    }

    /// The processes holding a shared `flock` on the file `st` describes.
    pub(crate) fn shared_lockers(&self, st: &FileStat) -> Vec<u32> {
        let mut pids: Vec<u32> = self
            .on(st)
            .filter(|l| !l.exclusive)
            .map(|l| l.pid)
            .collect();
        pids.sort_unstable();
        pids.dedup();
        pids
    }
}

/// A file's identity as `/proc/locks` writes it: device major, minor, inode.
type FileId = (u64, u64, u64);

/// The identity of the file `st` describes.
fn file_id(st: &FileStat) -> FileId {
    let dev = st.st_dev;
    (
        nix::sys::stat::major(dev),
        nix::sys::stat::minor(dev),
        st.st_ino,
    )
}

/// `/proc/locks`, in as few reads as it takes (each one locks the table).
fn read_proc_locks() -> Option<String> {
    let mut file = File::open("/proc/locks").ok()?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut len = 0;
    loop {
        if len == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
        // The kernel hands out a page or so of the table per read.
        let n = file.read(&mut buf[len..]).ok()?;
        if n == 0 {
            break;
        }
        len += n;
    }
    buf.truncate(len);
    String::from_utf8(buf).ok()
}

/// The table read `reads` times over (see [`LockTable::with`]); `None`
/// when `/proc/locks` cannot be read.
pub(crate) fn lock_table(reads: usize) -> Option<LockTable> {
    let first = LockTable::read()?;
    Some((1..reads).fold(first, |t, _| t.with(LockTable::read())))
}

/// One look at a lock directory, for one selection try: its names (one
/// listing) and the kernel's lock table (one read, when anything asks),
/// which every part of the try (limits, shares, the queue, the leases) asks
/// instead of reading them again. What it says is a moment old: it decides
/// what is worth trying, never what is taken (taking a lease always asks
/// the kernel itself).
#[derive(Debug)]
pub(crate) struct Look {
    /// The directory's names.
    pub(crate) names: Vec<String>,
    /// The kernel's lock table, once read; `None` inside when
    /// `/proc/locks` cannot be read.
    table: std::sync::OnceLock<Option<LockTable>>,
}

impl Look {
    /// The process the lock table names as holding the file `st`
    /// exclusively, if any (reading the table, the first time).
    pub(crate) fn exclusive_holder(&self, st: &FileStat) -> Option<u32> {
        self.table
            .get_or_init(LockTable::read)
            .as_ref()?
            .exclusive_holder(st)
    }

    /// Whether the job that kept the record file `st` locked (when it was
    /// read) has exited and its guardian is letting the record go: the lock
    /// table names the process that took the lock, and it is gone, or the
    /// record is no longer locked at all (let go since). A locker in a PID
    /// namespace this one cannot see shows as 0, which has not exited (the
    /// record's own pid would be another namespace's, and look gone). A
    /// record the table does not show, read again (let go since, a read
    /// that skipped its line, or a filesystem whose device numbers the
    /// table writes otherwise, as btrfs), is asked itself: it counts as let
    /// go only if nobody holds it any more. Without a lock table, nobody is
    /// known to have exited.
    pub(crate) fn writer_exited(&self, dir: &LockDir, name: &str, st: &FileStat) -> bool {
        let Some(table) = self.table.get_or_init(LockTable::read) else {
            return false;
        };
        match table.exclusive_holder(st).or_else(|| kernel_holder(st, 1)) {
            Some(pid) => exited(pid),
            None => dir.let_go(name, st),
        }
    }

    /// [`exclusive_holder`](Self::exclusive_holder), when the table has
    /// been read already (a try among waiters reads it for the queue);
    /// `None` otherwise. Where nobody waits, a lone selection asks the lock
    /// files themselves rather than lock the kernel's table to read it.
    fn known_holder(&self, st: &FileStat) -> Option<u32> {
        self.table.get()?.as_ref()?.exclusive_holder(st)
    }
}

#[cfg(test)]
fn parse_flocks(table: &str, dev: u64, ino: u64) -> Vec<KernelFlock> {
    let id = (nix::sys::stat::major(dev), nix::sys::stat::minor(dev), ino);
    every_flock(table)
        .filter(|(file, _)| *file == id)
        .map(|(_, lock)| lock)
        .collect()
}

/// Every granted `flock` in the lock table `table`, with its file.
fn every_flock(table: &str) -> impl Iterator<Item = (FileId, KernelFlock)> + '_ {
    table.lines().filter_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        // "1: FLOCK  ADVISORY  WRITE 1234 00:1b:5678 0 EOF"; waiters have "->".
        if f.get(1) != Some(&"FLOCK") {
            return None;
        }
        let exclusive = match *f.get(3)? {
            "WRITE" => true,
            "READ" => false,
            _ => return None,
        };
        let pid: u32 = f.get(4)?.parse().ok()?;
        let mut id = f.get(5)?.split(':');
        let maj = u64::from_str_radix(id.next()?, 16).ok()?;
        let min = u64::from_str_radix(id.next()?, 16).ok()?;
        let node: u64 = id.next()?.parse().ok()?;
        Some(((maj, min, node), KernelFlock { pid, exclusive }))
    })
}

/// A holder as the kernel knows it: the process that holds the lock, its
/// owner's name from its uid, its command line and start time from `/proc`.
pub(crate) fn holder_from_kernel(pid: u32) -> Option<Holder> {
    use std::os::unix::fs::MetadataExt;
    let uid = std::fs::metadata(format!("/proc/{pid}")).ok()?.uid();
    let mut process = crate::model::GpuProcess::new(pid);
    crate::procfs::ProcReader::default().enrich(&mut process);
    Some(Holder {
        pid,
        uid,
        user: process.user.unwrap_or_else(|| uid.to_string()),
        command: process.command_line.unwrap_or_default(),
        host: crate::model::host_name(),
        since: process
            .start_time
            .unwrap_or(std::time::SystemTime::now())
            .min(std::time::SystemTime::now()),
    })
}

/// A record's `holder`, where the kernel confirms it: its pid runs as its
/// uid (see [`holder_from_kernel`]).
pub(crate) fn confirmed(holder: Holder) -> Option<Holder> {
    let kernel = holder_from_kernel(holder.pid)?;
    (kernel.uid == holder.uid).then(|| confirmed_by(holder, kernel))
}

/// `holder` as the kernel confirmed it (`kernel`, same pid and uid): the
/// user's name from the uid, the time no later than now.
fn confirmed_by(mut holder: Holder, kernel: Holder) -> Holder {
    holder.user = kernel.user;
    holder.since = holder.since.min(std::time::SystemTime::now());
    holder
}

/// The holder to show: the record, where the kernel confirms it (same pid,
/// same owner), with the user's name from the uid and the time clamped to
/// now; else what the kernel says; else the record alone (no lock table).
fn checked_holder(record: Option<Holder>, kernel: Option<u32>) -> Option<Holder> {
    let now = std::time::SystemTime::now();
    let Some(pid) = kernel.filter(|&p| p != 0) else {
        return record.map(|mut h| {
            h.since = h.since.min(now);
            h
        });
    };
    let from_kernel = holder_from_kernel(pid);
    match (record, from_kernel) {
        (Some(h), Some(k)) if h.pid == pid && h.uid == k.uid => Some(confirmed_by(h, k)),
        (_, Some(k)) => Some(k),
        (record, None) => record.filter(|h| h.pid == pid).map(|mut h| {
            h.since = h.since.min(now);
            h
        }),
    }
}

/// Fills in who leases each device of `snapshot` (GPUs and MIG devices), as
/// `gpusel list` and the agent show it. Probing never takes a lease. A
/// device whose lock file cannot be read is shown as not leased: the
/// snapshot is still worth showing.
///
/// Fails only when the lock directory itself cannot be used, leaving the
/// snapshot as it was; the caller decides whether that is a warning.
pub fn add_leases(snapshot: &mut crate::Snapshot, lock_dir: &Path) -> Result<(), LeaseError> {
    let dir = LockDir::open(lock_dir)?;
    // One look at the kernel's lock table for every device (read three
    // times over: a read can skip a line while other locks change).
    let table = lock_table(3).unwrap_or_default();
    let state = |uuid: &str| {
        dir.state_with(uuid, Some(&table))
            .ok()
            .and_then(LeaseState::status)
    };
    snapshot.waiters = dir.queue();
    let mut parents = crate::share::Parents::default();
    for gpu in &mut snapshot.gpus {
        gpu.lease = state(&gpu.uuid);
        crate::share::add_usage(&mut gpu.lease, gpu.processes.as_deref(), &mut parents);
        for mig in &mut gpu.mig_devices {
            mig.lease = state(&mig.uuid);
            crate::share::add_usage(&mut mig.lease, mig.processes.as_deref(), &mut parents);
        }
    }
    Ok(())
}

/// What an error opening an existing lock file says about it.
fn lock_file_problem(e: Errno) -> String {
    match e {
        Errno::ELOOP => "is a symbolic link".to_string(),
        Errno::EINVAL => "is not a regular file".to_string(),
        Errno::EACCES => {
            "is not readable by you (its mode lets nobody but its owner in)".to_string()
        }
        e => format!("cannot be opened: {}", e.desc()),
    }
}

pub(crate) fn is(st: &FileStat, kind: SFlag) -> bool {
    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == kind
}

/// A file name for a device: UUIDs are ASCII, but a snapshot file could hold
/// anything, and the name must never leave the directory. The prefix keeps
/// gpusel's files apart from others' in a shared directory like `/run/lock`.
pub(crate) fn key(uuid: &str) -> String {
    let name: String = uuid
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '-') => c,
            _ => '_',
        })
        .collect();
    format!("gpusel-{name}")
}

impl LockDir {
    /// Opens `path`, creating it (mode 1777) when missing; its parent must
    /// exist. Refuses a directory another user could tamper with.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, LeaseError> {
        let path = path.into();
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let mut created = false;
        let fd = loop {
            match open(&path, flags, Mode::empty()) {
                Ok(fd) => break fd,
                Err(Errno::ENOENT) if !created => {
                    match nix::unistd::mkdir(&path, Mode::from_bits_truncate(0o1777)) {
                        Ok(()) | Err(Errno::EEXIST) => created = true,
                        Err(e) => {
                            return Err(LeaseError::Create {
                                path,
                                message: e.desc().to_string(),
                            });
                        }
                    }
                }
                Err(Errno::ELOOP | Errno::ENOTDIR) => {
                    let link =
                        std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink());
                    return Err(if link {
                        LeaseError::Symlink { path }
                    } else {
                        LeaseError::NotADirectory { path }
                    });
                }
                Err(e) => {
                    return Err(LeaseError::Open {
                        path,
                        message: e.desc().to_string(),
                    });
                }
            }
        };
        let st = fstat(&fd).map_err(|e| LeaseError::Open {
            path: path.clone(),
            message: e.desc().to_string(),
        })?;
        let me = nix::unistd::geteuid().as_raw();
        if created && st.st_uid == me {
            // mkdir's mode went through the umask; the sticky, world-writable
            // mode is what lets every user lease.
            let _ = fchmod(&fd, Mode::from_bits_truncate(0o1777));
        }
        let st = fstat(&fd).unwrap_or(st);
        if st.st_uid != 0 && st.st_uid != me {
            return Err(LeaseError::BadOwner {
                path,
                owner: st.st_uid,
                me,
            });
        }
        let mode = st.st_mode & 0o7777;
        if mode & 0o022 != 0 && mode & 0o1000 == 0 {
            return Err(LeaseError::UnsafeMode { path, mode });
        }
        Ok(LockDir {
            path,
            fd,
            tickets: Default::default(),
        })
    }

    /// The directory's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The names in the directory (those that are UTF-8: every name gpusel
    /// writes is); none when it cannot be read.
    pub(crate) fn names(&self) -> Vec<String> {
        std::fs::read_dir(&self.path).map_or_else(
            |_| Vec::new(),
            |entries| {
                entries
                    .filter_map(Result::ok)
                    .filter_map(|e| e.file_name().into_string().ok())
                    .collect()
            },
        )
    }

    /// A [`Look`] at the directory now.
    pub(crate) fn look(&self) -> Look {
        Look {
            names: self.names(),
            table: std::sync::OnceLock::new(),
        }
    }

    /// Whether the record `name` (the file `st` describes) is locked by
    /// nobody now: a shared lock on it is granted. A record replaced or
    /// gone since counts as let go.
    pub(crate) fn let_go(&self, name: &str, st: &FileStat) -> bool {
        !matches!(
            self.read_live(name, st.st_uid),
            Some(Some((_, now))) if now.st_ino == st.st_ino && now.st_dev == st.st_dev
        )
    }

    /// The status of the file `name` in the directory (not following a
    /// symbolic link).
    pub(crate) fn stat(&self, name: &str) -> Option<FileStat> {
        fstatat(&self.fd, name, AtFlags::AT_SYMLINK_NOFOLLOW).ok()
    }

    /// The process that `look` names as holding `uuid`'s lease
    /// exclusively (when it has read the lock table), when it is one that still runs (not this one: a lease
    /// of this selection's own is no other holder's).
    pub(crate) fn live_holder_seen(&self, uuid: &str, look: &Look) -> Option<u32> {
        let st = self.stat(&format!("{}.lock", key(uuid)))?;
        look.known_holder(&st)
            .filter(|&pid| pid != std::process::id() && !exited(pid))
    }

    /// Who holds `uuid`'s lease, which `look` shows held by `pid`: its
    /// record where the kernel confirms it (see [`checked_holder`]).
    pub(crate) fn holder_seen(&self, uuid: &str, pid: u32, look: &Look) -> Option<Holder> {
        checked_holder(self.read_holder_in(uuid, &look.names), Some(pid))
    }

    /// Removes `uid`'s files among `names` that a writer which has exited
    /// left behind: a share record or queue ticket nobody holds any more,
    /// or one written under its temporary name (`.new`) and never put in
    /// place (a crash in between). Such a name carries its writer's pid,
    /// and only that process writes under it; a file is removed only once
    /// that pid has exited, nobody holds the file locked, and (for a `.new`)
    /// it is older than [`LEFT_NEW_AGE`]. Another user's files are never
    /// touched (the sticky bit would refuse it anyway); holder records are
    /// kept (each user's one per device is reused).
    pub(crate) fn clean_dead(&self, uid: u32, names: &[String], look: &Look) {
        for name in names {
            let Some((owner, pid, temporary)) = written_by(name) else {
                continue;
            };
            if owner != uid {
                continue;
            }
            let Some(st) = self.stat(name) else {
                continue;
            };
            let old = || {
                let changed = std::time::UNIX_EPOCH
                    + std::time::Duration::new(
                        st.st_ctime.max(0).unsigned_abs(),
                        st.st_ctime_nsec.clamp(0, 999_999_999) as u32,
                    );
                changed.elapsed().is_ok_and(|age| age >= LEFT_NEW_AGE)
            };
            if st.st_uid != uid
                || look.exclusive_holder(&st).is_some()
                || !exited(pid)
                || (temporary && !old())
            {
                continue;
            }
            let Ok(file) = self.open_file(name, OFlag::O_RDONLY, 0) else {
                continue;
            };
            if let Ok(_dead) = Flock::lock(file, FlockArg::LockExclusiveNonblock)
                && self.stat(name).is_some_and(|now| now.st_ino == st.st_ino)
            {
                tracing::debug!(
                    file = name.as_str(),
                    "removing a file its writer left behind"
                );
                self.unlink(name);
            }
        }
    }

    /// The directory's descriptor, to open and rename files relative to.
    pub(crate) fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    pub(crate) fn lock_error(&self, name: &str, message: impl Into<String>) -> LeaseError {
        LeaseError::LockFile {
            path: self.path.join(name),
            message: message.into(),
        }
    }

    /// Removes `name` from the directory (a file of this user's: the sticky
    /// bit refuses any other); failing to is harmless.
    pub(crate) fn unlink(&self, name: &str) {
        let _ = nix::unistd::unlinkat(&self.fd, name, nix::unistd::UnlinkatFlags::NoRemoveDir);
    }

    /// Opens a regular file in the directory, following no symlink.
    pub(crate) fn open_file(&self, name: &str, flags: OFlag, mode: u32) -> Result<File, Errno> {
        let flags = flags | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
        let fd = openat(&self.fd, name, flags, Mode::from_bits_truncate(mode))?;
        let st = fstat(&fd)?;
        if !is(&st, SFlag::S_IFREG) {
            return Err(Errno::EINVAL);
        }
        Ok(File::from(fd))
    }

    /// The lock file of `name`, created (0644) if it does not exist yet.
    pub(crate) fn open_lock_file(&self, name: &str) -> Result<File, LeaseError> {
        for _ in 0..4 {
            match self.open_file(name, OFlag::O_RDONLY, 0) {
                Ok(f) => return Ok(f),
                Err(Errno::ENOENT) => {}
                Err(e) => return Err(self.lock_error(name, format!("it {}", lock_file_problem(e)))),
            }
            let create = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL;
            match self.open_file(name, create, 0o644) {
                Ok(f) => {
                    // Past the umask: others must be able to open it to lock it.
                    let _ = fchmod(f.as_fd(), Mode::from_bits_truncate(0o644));
                    return Ok(f);
                }
                Err(Errno::EEXIST) => continue,
                // Creating failed, not reading: say what the directory lacks.
                Err(Errno::EACCES | Errno::EPERM | Errno::EROFS) => {
                    return Err(self.lock_error(
                        name,
                        format!(
                            "it does not exist yet and you cannot create it: the lock directory {} is not writable by you (an administrator makes it so for everyone with `chmod 1777 {}`)",
                            self.path.display(),
                            self.path.display()
                        ),
                    ));
                }
                Err(e) => return Err(self.lock_error(name, format!("it {}", lock_file_problem(e)))),
            }
        }
        Err(self.lock_error(name, "it keeps disappearing"))
    }

    /// Whether `name` still is the file `file` has open: a lock taken on a
    /// file that was deleted or replaced excludes no one.
    pub(crate) fn still_linked(&self, name: &str, file: &File) -> bool {
        match (
            fstat(file.as_fd()),
            fstatat(&self.fd, name, AtFlags::AT_SYMLINK_NOFOLLOW),
        ) {
            (Ok(a), Ok(b)) => a.st_dev == b.st_dev && a.st_ino == b.st_ino,
            _ => false,
        }
    }

    /// Takes the lease on device `uuid` if nobody holds it, recording
    /// `holder`. `Ok(None)` means someone else holds it.
    pub fn try_lease(&self, uuid: &str, holder: &Holder) -> Result<Option<Lease>, LeaseError> {
        let name = format!("{}.lock", key(uuid));
        for _ in 0..4 {
            let file = self.open_lock_file(&name)?;
            let lock = match lock_exclusive_past_exits(file) {
                Ok(Ok(lock)) => lock,
                Ok(Err(_held)) => return Ok(None),
                Err(e) => return Err(self.lock_error(&name, e.desc())),
            };
            if !self.still_linked(&name, &lock) {
                continue;
            }
            // A holder whose lock file was deleted under it (by the user who
            // created the file: the sticky bit lets its owner delete it)
            // still holds its record locked: its lease counts, and the new
            // lock file just locked excludes no one from it.
            // Shares hold shared locks the exclusive one just taken would
            // exclude, unless they are on a deleted lock file: their live
            // records count the same way.
            if !self.live_share_records(uuid).is_empty() {
                return Ok(None);
            }
            // A record whose writer has exited is being let go by its
            // guardian: waited out like the lock itself.
            let mut wait = ExitWait::new(fstat(lock.as_fd()).map_or((0, 0, 0), |st| file_id(&st)));
            while let Some(record) = self.read_holder(uuid) {
                if !wait.again(Some(record.pid)) {
                    return Ok(None);
                }
            }
            let record = self.write_record(uuid, holder);
            return Ok(Some(Lease {
                uuid: uuid.to_string(),
                reserved: None,
                lock: Held::new(lock),
                record: record.map(Held::new),
            }));
        }
        Err(self.lock_error(&name, "it keeps being replaced while gpusel locks it"))
    }

    /// Writes `json` into the record `name` of `uid`'s (created 0644 when
    /// missing) and returns it locked exclusively, for its writer to hold for
    /// as long as the record is true. `EPERM`: a file of another user's is
    /// there (planted under `uid`'s name); `EWOULDBLOCK`: someone holds it.
    pub(crate) fn write_locked(
        &self,
        name: &str,
        uid: u32,
        json: &[u8],
    ) -> Result<Flock<File>, Errno> {
        let file = self.open_file(name, OFlag::O_WRONLY | OFlag::O_CREAT, 0o644)?;
        // Planted by another user under our uid's name: not ours to use.
        if fstat(file.as_fd())?.st_uid != uid {
            return Err(Errno::EPERM);
        }
        let mut lock = lock_exclusive(file)?.map_err(|_held| Errno::EWOULDBLOCK)?;
        nix::unistd::ftruncate(lock.as_fd(), 0)?;
        let _ = fchmod(lock.as_fd(), Mode::from_bits_truncate(0o644));
        lock.write_all(json)
            .map_err(|e| e.raw_os_error().map_or(Errno::EIO, Errno::from_raw))?;
        Ok(lock)
    }

    /// Writes the holder record. Failing to is not fatal: the lease holds
    /// all the same, `list` just cannot say by whom.
    fn write_record(&self, uuid: &str, holder: &Holder) -> Option<Flock<File>> {
        let name = format!("{}.{}.holder", key(uuid), holder.uid);
        let result = serde_json::to_vec(holder)
            .map_err(|_| Errno::EINVAL)
            .and_then(|json| self.write_locked(&name, holder.uid, &json));
        match result {
            Ok(lock) => Some(lock),
            Err(e) => {
                tracing::warn!(file = %self.path.join(&name).display(), error = %e, "cannot record the lease holder");
                None
            }
        }
    }

    /// Whether device `uuid` is leased, and by whom. Probes without taking
    /// the lease: a shared lock for an instant.
    pub fn state(&self, uuid: &str) -> Result<LeaseState, LeaseError> {
        self.state_with(uuid, None)
    }

    /// [`state`](Self::state), asking `table` (one read of the kernel's
    /// lock table for every device of a snapshot) rather than reading it
    /// again about a lock file nobody holds exclusively.
    fn state_with(&self, uuid: &str, table: Option<&LockTable>) -> Result<LeaseState, LeaseError> {
        let name = format!("{}.lock", key(uuid));
        let file = match self.open_file(&name, OFlag::O_RDONLY, 0) {
            Ok(f) => f,
            // No lock file, yet a live record: a holder whose lock file was
            // deleted under it still holds the device (see `try_lease`).
            Err(Errno::ENOENT) => return Ok(self.live_record_state(uuid)),
            // No job can open it either: the device is blocked, not free.
            Err(e) => {
                return Ok(LeaseState::Blocked(format!(
                    "its lock file {} {}; an administrator removes it (gpusel recreates it)",
                    self.path.join(&name).display(),
                    lock_file_problem(e)
                )));
            }
        };
        let st = fstat(file.as_fd()).map_err(|e| self.lock_error(&name, e.desc()))?;
        match Flock::lock(file, FlockArg::LockSharedNonblock) {
            Ok(shared) => {
                // Let go at once: a probe must stay an instant, whatever is
                // looked at next (a job waits out probes for ~80 ms at most).
                drop(shared);
                // Shares hold shared locks for good: their holders are not
                // blockers. Any other shared lock that outlives a probe is.
                // One look at the lock table for both questions.
                let read;
                let table = match table {
                    Some(table) => table,
                    None => {
                        read = lock_table(3).unwrap_or_default();
                        &read
                    }
                };
                let shares = self.checked_shares(uuid, &st, table);
                let sharers: Vec<u32> = shares.iter().map(|s| s.holder.pid).collect();
                if let Some(pid) = self.shared_blocker(&st, &sharers, table) {
                    let who = holder_from_kernel(pid)
                        .map(|h| format!(" ({})", h.user))
                        .unwrap_or_default();
                    return Ok(LeaseState::Blocked(format!(
                        "pid {pid}{who} holds a shared lock on its lock file {}, which keeps every job out",
                        self.path.join(&name).display()
                    )));
                }
                if !shares.is_empty() {
                    return Ok(LeaseState::Shared(shares));
                }
                Ok(self.live_record_state(uuid))
            }
            Err((_, Errno::EWOULDBLOCK)) => {
                // The exclusive lock is there (the probe was refused), but a
                // read of /proc/locks can skip a line while other locks come
                // and go (it is read in pieces): read it again before
                // falling back to the record alone.
                let kernel = kernel_holder(&st, 8);
                Ok(LeaseState::Leased(checked_holder(
                    self.read_holder(uuid),
                    kernel,
                )))
            }
            Err((_, e)) => Err(self.lock_error(&name, e.desc())),
        }
    }

    /// Leased by the holder of a live record of `uuid` (one its writer still
    /// holds locked), when there is one; free otherwise.
    fn live_record_state(&self, uuid: &str) -> LeaseState {
        match self.read_holder(uuid) {
            Some(holder) => LeaseState::Leased(Some(holder)),
            None => LeaseState::Free,
        }
    }

    /// A process other than this one holding a shared lock on the lock file
    /// `st` for longer than a probe lasts (`list` and `serve` probe for
    /// microseconds) and not one of the `sharers` (the holders of live
    /// shares): looked at twice, 100 ms apart, first in `table`.
    fn shared_blocker(&self, st: &FileStat, sharers: &[u32], table: &LockTable) -> Option<u32> {
        let me = std::process::id();
        let look = |table: &LockTable| -> Vec<u32> {
            let mut pids = table.shared_lockers(st);
            pids.retain(|pid| *pid != me && !sharers.contains(pid));
            pids
        };
        let first = look(table);
        if first.is_empty() {
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        let second = look(&lock_table(3).unwrap_or_default());
        first.into_iter().find(|pid| second.contains(pid))
    }

    /// The trusted, live holder record of `uuid`, if any (the newest, should
    /// there be several).
    pub(crate) fn read_holder(&self, uuid: &str) -> Option<Holder> {
        self.read_holder_in(uuid, &self.names())
    }

    /// [`read_holder`](Self::read_holder) among the directory's `names`.
    fn read_holder_in(&self, uuid: &str, names: &[String]) -> Option<Holder> {
        let prefix = format!("{}.", key(uuid));
        names
            .iter()
            .filter_map(|name| {
                let uid: u32 = name
                    .strip_prefix(&prefix)?
                    .strip_suffix(".holder")?
                    .parse()
                    .ok()?;
                self.trusted_record(name, uid)
            })
            .max_by_key(|h| h.since)
    }

    pub(crate) fn trusted_record(&self, name: &str, uid: u32) -> Option<Holder> {
        let (text, _) = self.read_live(name, uid)??;
        crate::holder::parse_record(&text, uid)
    }

    /// A record file `name` of `uid`'s (holder record, share record, queue
    /// ticket): `None` when it is no file of `uid`'s; `Some(None)` when
    /// nobody holds it (left over by a writer that is gone); its text and
    /// status when its writer still holds it locked, which means it is
    /// current.
    pub(crate) fn read_live(&self, name: &str, uid: u32) -> Option<Option<(Vec<u8>, FileStat)>> {
        let file = self.open_file(name, OFlag::O_RDONLY, 0).ok()?;
        let st = fstat(file.as_fd()).ok()?;
        if st.st_uid != uid {
            return None;
        }
        let mut file = match Flock::lock(file, FlockArg::LockSharedNonblock) {
            Ok(_) => return Some(None),
            Err((file, Errno::EWOULDBLOCK)) => file,
            Err(_) => return None,
        };
        let mut text = Vec::new();
        (&mut file).take(MAX_RECORD).read_to_end(&mut text).ok()?;
        Some(Some((text, st)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_process_has_exited_once_gone_or_a_zombie_and_not_before() {
        let mut child = std::process::Command::new("sleep")
            .arg("1000")
            .spawn()
            .unwrap();
        let pid = child.id();
        assert!(!exited(pid), "running");
        // Another user's live process (init) has not exited either.
        assert!(!exited(1));
        child.kill().unwrap();
        // Killed, not yet reaped: a zombie.
        let mut zombie = false;
        for _ in 0..6000 {
            if exited(pid) {
                zombie = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(zombie, "a zombie counts as exited");
        child.wait().unwrap();
        assert!(exited(pid), "reaped: gone");
    }

    #[test]
    fn the_kernels_lock_table_is_read_for_one_file() {
        let table = "1: FLOCK  ADVISORY  WRITE 4242 00:1b:77 0 EOF\n\
                     1: -> FLOCK  ADVISORY  WRITE 4343 00:1b:77 0 EOF\n\
                     2: FLOCK  ADVISORY  READ 99 00:1b:77 0 EOF\n\
                     3: POSIX  ADVISORY  WRITE 5 00:1b:77 0 EOF\n\
                     4: FLOCK  ADVISORY  WRITE 6 00:1c:77 0 EOF\n\
                     5: FLOCK  ADVISORY  WRITE 7 00:1b:78 0 EOF\n\
                     garbage\n";
        let dev = nix::sys::stat::makedev(0, 0x1b);
        assert_eq!(
            parse_flocks(table, dev, 77),
            [
                KernelFlock {
                    pid: 4242,
                    exclusive: true
                },
                KernelFlock {
                    pid: 99,
                    exclusive: false
                },
            ]
        );
    }

    #[test]
    fn the_kernel_names_the_holder_whatever_its_record_says() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = LockDir::open(tmp.path().join("locks")).unwrap();
        // A record that lies about the pid and is dated in the future.
        let mut liar = me(1);
        liar.user = "root".into();
        liar.since = std::time::SystemTime::now() + std::time::Duration::from_secs(86_400 * 365);
        let _lease = dir.try_lease("GPU-a", &liar).unwrap().expect("free");
        match dir.state("GPU-a").unwrap() {
            LeaseState::Leased(Some(h)) => {
                assert_eq!(h.pid, std::process::id(), "the pid holding the lock: {h:?}");
                assert!(h.since <= std::time::SystemTime::now(), "{h:?}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_blocked_lock_file_is_reported_not_free() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = LockDir::open(tmp.path().join("locks")).unwrap();
        // A shared lock held for good (by another process: the kernel
        // table names pids, and this one's own locks are not blockers).
        let path = dir.path().join(format!("{}.lock", key("GPU-b")));
        std::fs::write(&path, "").unwrap();
        let mut blocker = std::process::Command::new("flock")
            .arg("--shared")
            .arg(&path)
            .args(["sleep", "60"])
            .spawn()
            .expect("flock(1) from util-linux");
        let mut state = dir.state("GPU-b").unwrap();
        for _ in 0..100 {
            if state != LeaseState::Free {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
            state = dir.state("GPU-b").unwrap();
        }
        blocker.kill().unwrap();
        blocker.wait().unwrap();
        match state {
            LeaseState::Blocked(why) => assert!(why.contains("holds a shared lock"), "{why}"),
            other => panic!("{other:?}"),
        }
        // A symlink where the lock file goes.
        std::os::unix::fs::symlink(
            "/etc/passwd",
            dir.path().join(format!("{}.lock", key("GPU-c"))),
        )
        .unwrap();
        match dir.state("GPU-c").unwrap() {
            LeaseState::Blocked(why) => assert!(why.contains("is a symbolic link"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    fn me(pid: u32) -> Holder {
        let mut h = Holder::current(vec!["train".into()]);
        h.pid = pid;
        h
    }

    #[test]
    fn lease_is_exclusive_and_released_on_drop() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = LockDir::open(tmp.path().join("locks")).unwrap();
        let mode = std::fs::metadata(dir.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o7777, 0o1777);
        assert_eq!(dir.state("GPU-a").unwrap(), LeaseState::Free);
        let lease = dir
            .try_lease("GPU-a", &me(std::process::id()))
            .unwrap()
            .expect("free");
        assert_eq!(lease.uuid(), "GPU-a");
        assert!(dir.try_lease("GPU-a", &me(12)).unwrap().is_none());
        assert!(dir.try_lease("GPU-b", &me(12)).unwrap().is_some());
        match dir.state("GPU-a").unwrap() {
            LeaseState::Leased(Some(h)) => {
                assert_eq!(
                    (h.pid, &h.command[..]),
                    (std::process::id(), &["train".to_string()][..])
                )
            }
            other => panic!("{other:?}"),
        }
        drop(lease);
        assert_eq!(dir.state("GPU-a").unwrap(), LeaseState::Free);
        let again = dir
            .try_lease("GPU-a", &me(std::process::id()))
            .unwrap()
            .expect("released");
        match dir.state("GPU-a").unwrap() {
            LeaseState::Leased(Some(h)) => assert_eq!(h.pid, std::process::id()),
            other => panic!("{other:?}"),
        }
        drop(again);
    }

    #[test]
    fn probes_are_never_taken_for_a_holder() {
        // `list` and `serve` probe every lock file with a shared lock for an
        // instant; a job taking a free GPU in that instant must still get
        // it, and its holder record must still be written.
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("locks");
        let dir = LockDir::open(&path).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let probes = Arc::new(AtomicU64::new(0));
        let probers: Vec<_> = (0..2)
            .map(|_| {
                let (path, stop, probes) = (path.clone(), Arc::clone(&stop), Arc::clone(&probes));
                std::thread::spawn(move || {
                    let dir = LockDir::open(&path).unwrap();
                    while !stop.load(Ordering::Relaxed) {
                        dir.state("GPU-a").unwrap();
                        probes.fetch_add(1, Ordering::Relaxed);
                        // Busy, but not so busy that a prober preempted
                        // with the lock held is the common case: that the
                        // bounded wait gives way to, by design.
                        std::thread::sleep(std::time::Duration::from_micros(20));
                    }
                })
            })
            .collect();
        // At least 2000 leases, and on until the probers have probed 1000
        // times (a loaded machine may run them late), within a minute.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let (mut leases, mut refused, mut unrecorded) = (0u32, 0, 0);
        while leases < 2000 || probes.load(Ordering::Relaxed) < 1000 {
            assert!(
                std::time::Instant::now() < deadline,
                "the probers hardly ran"
            );
            match dir.try_lease("GPU-a", &me(leases)).unwrap() {
                Some(lease) => unrecorded += usize::from(lease.record.is_none()),
                None => refused += 1,
            }
            leases += 1;
        }
        stop.store(true, Ordering::Relaxed);
        probers.into_iter().for_each(|p| p.join().unwrap());
        let probes = probes.load(Ordering::Relaxed);
        assert_eq!(
            (refused, unrecorded),
            (0, 0),
            "{leases} leases of a free GPU under {probes} probes"
        );
    }

    #[test]
    fn unsafe_directories_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let real = tmp.path().join("real");
        std::fs::create_dir(&real).unwrap();
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert!(matches!(
            LockDir::open(&link),
            Err(LeaseError::Symlink { .. })
        ));

        let file = tmp.path().join("file");
        std::fs::write(&file, "").unwrap();
        assert!(matches!(
            LockDir::open(&file),
            Err(LeaseError::NotADirectory { .. })
        ));

        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = LockDir::open(&real).unwrap_err();
        assert!(e.to_string().contains("chmod +t"), "{e}");
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o1777)).unwrap();
        assert!(LockDir::open(&real).is_ok());

        let e = LockDir::open(tmp.path().join("no/such")).unwrap_err();
        assert!(e.to_string().contains("mkdir -m 1777"), "{e}");
    }

    #[test]
    fn planted_files_are_not_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = LockDir::open(tmp.path().join("locks")).unwrap();
        let target = tmp.path().join("victim");
        std::fs::write(&target, "keep").unwrap();
        std::os::unix::fs::symlink(&target, dir.path().join("gpusel-gpu-x.lock")).unwrap();
        let e = dir.try_lease("GPU-X", &me(1)).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        nix::unistd::mkfifo(
            &dir.path().join("gpusel-gpu-y.lock"),
            Mode::from_bits_truncate(0o644),
        )
        .unwrap();
        let e = dir.try_lease("GPU-Y", &me(1)).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
    }

    #[test]
    fn left_files_name_their_writer() {
        assert_eq!(
            written_by("gpusel-gpu-ab.1000.42-7.share"),
            Some((1000, 42, false))
        );
        assert_eq!(
            written_by("gpusel-queue.1000.42-0.ticket"),
            Some((1000, 42, false))
        );
        assert_eq!(
            written_by("gpusel-queue.1000.42-0.new"),
            Some((1000, 42, true))
        );
        assert_eq!(written_by("gpusel-gpu-ab.1000.holder"), None);
        assert_eq!(written_by("gpusel-gpu-ab.lock"), None);
        assert_eq!(written_by("other.1000.42-0.new"), None);
        assert_eq!(written_by("gpusel-gpu-ab.1000.x-0.share"), None);
    }

    #[test]
    fn names_never_leave_the_directory() {
        assert_eq!(key("GPU-AB/../x"), "gpusel-gpu-ab____x");
    }
}
