//! The lease guardian: a small process that holds a job's lease descriptors
//! for as long as the job runs, so that a job that closes the descriptors it
//! inherited (`os.closerange(3, 65536)`, as launchers and daemons do) keeps
//! its lease all the same.
//!
//! The lock and the holder record are `flock`s on open file descriptions:
//! the guardian's copies share them with the job's, so the locks stay held
//! while either has them open. The guardian is spawned just before `exec`,
//! by a double fork: the intermediate child exits at once and is reaped
//! before `exec`, so the guardian is never the job's child (the job sees no
//! unexpected `SIGCHLD` or zombie). It starts a session of its own (the
//! terminal's Ctrl-C reaches the job, not it), ignores `SIGINT`, `SIGHUP`,
//! `SIGTERM` and `SIGPIPE`, moves to `/`, puts `/dev/null` on its standard
//! descriptors, closes every other descriptor but the lease's and a pidfd
//! of the job, names itself `gpusel-guard` and waits, in `poll`, for the job
//! to exit. Then it closes the holder records, then the locks (the order
//! [`Lease`](crate::Lease)'s drop keeps), and exits. Where `pidfd_open` is
//! missing (Linux before 5.3) it looks at the job's `/proc/PID/stat` every
//! 100 ms instead, and takes a changed start time for the job's end (the
//! pid reused).
//!
//! The job keeps the pid gpusel had, so the kernel's lock table still names
//! the job as the lock's holder, and `gpusel list` shows the job, never the
//! guardian.
//!
//! The process that forks may have other threads: between `fork` and its
//! end the guardian makes only async-signal-safe system calls, with
//! everything it needs (descriptor lists, paths, the pidfd) prepared before
//! the fork. It allocates nothing and takes no lock.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::libc;

/// The name the guardian gives itself (`comm`, as `ps` and `/proc/PID/comm`
/// show it).
pub const GUARDIAN_NAME: &str = GUARDIAN_CNAME_STR;

/// [`GUARDIAN_NAME`] as the C string `prctl(PR_SET_NAME)` takes, made before
/// the fork (the child may not allocate).
const GUARDIAN_CNAME: &std::ffi::CStr = c"gpusel-guard";
const GUARDIAN_CNAME_STR: &str = match GUARDIAN_CNAME.to_str() {
    Ok(s) => s,
    Err(_) => panic!("the guardian's name is ASCII"),
};

/// How often the guardian looks at the job's `/proc` entry where it has no
/// pidfd to wait on.
const POLL_MS: libc::c_long = 100;

/// Why no guardian could be started: the lease is then held only by the
/// descriptors the job inherited, until it exits or closes them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GuardError {
    /// A system call the guardian needs failed.
    #[error("cannot start the lease guardian: {what} failed: {}", errno.desc())]
    System {
        /// What was being done.
        what: &'static str,
        /// The error.
        errno: Errno,
    },
    /// Neither a pidfd nor `/proc` can tell the guardian when the job ends.
    #[error(
        "cannot start the lease guardian: this kernel has no pidfd_open and /proc/{pid}/stat cannot be read, so nothing could tell it when the job ends; mount /proc"
    )]
    NoWatch {
        /// The job's pid.
        pid: u32,
    },
}

fn sys(what: &'static str) -> impl Fn(Errno) -> GuardError {
    move |errno| GuardError::System { what, errno }
}

/// How the guardian learns that the job has ended.
enum Watch {
    /// Readable once the process has exited.
    Pidfd(OwnedFd),
    /// `/proc/PID/stat` and the job's start time in it.
    Proc { stat: CString, start: u64 },
}

/// Everything the guardian uses, made before the fork.
struct Plan<'a> {
    records: &'a [RawFd],
    locks: &'a [RawFd],
    /// Every descriptor kept open, sorted, 0, 1 and 2 included.
    keep: Vec<RawFd>,
    watch: Watch,
    devnull: OwnedFd,
    /// One past the highest descriptor number to close where `close_range`
    /// is missing.
    fd_limit: RawFd,
}

/// Spawns a guardian holding `records` (holder records) and `locks` (lease
/// locks) open until the calling process, or the program it is about to
/// `exec`, exits; returns the guardian's pid. Call it last before `exec`.
pub(crate) fn spawn(records: &[RawFd], locks: &[RawFd]) -> Result<u32, GuardError> {
    let job = std::process::id();
    spawn_watching(watch(job, true)?, records, locks)
}

/// [`spawn`], for the job that `watch` watches.
fn spawn_watching(watch: Watch, records: &[RawFd], locks: &[RawFd]) -> Result<u32, GuardError> {
    let devnull = nix::fcntl::open(
        "/dev/null",
        nix::fcntl::OFlag::O_RDWR | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(sys("opening /dev/null"))?;
    let mut keep: Vec<RawFd> = [0, 1, 2]
        .into_iter()
        .chain(records.iter().copied())
        .chain(locks.iter().copied())
        .chain(match &watch {
            Watch::Pidfd(fd) => Some(fd.as_raw_fd()),
            Watch::Proc { .. } => None,
        })
        .collect();
    keep.sort_unstable();
    keep.dedup();
    let mut limit = libc::rlimit {
        rlim_cur: 65_536,
        rlim_max: 65_536,
    };
    // SAFETY: getrlimit(2) fills in the struct given.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    let fd_limit = limit.rlim_cur.min(1 << 20) as RawFd;
    let plan = Plan {
        records,
        locks,
        keep,
        watch,
        devnull,
        fd_limit,
    };
    // The guardian's pid, from the intermediate child.
    let (read_end, write_end) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(sys("pipe"))?;
    // SAFETY: the children make only async-signal-safe calls (see `middle`
    // and `guard`) and end in `_exit`.
    let middle = unsafe { libc::fork() };
    if middle < 0 {
        return Err(GuardError::System {
            what: "fork",
            errno: Errno::last(),
        });
    }
    if middle == 0 {
        // SAFETY: as above; never returns.
        unsafe { intermediate(&plan, write_end.as_raw_fd()) }
    }
    drop(write_end);
    let mut status = 0;
    loop {
        // SAFETY: waits for the child just forked, by its pid.
        if unsafe { libc::waitpid(middle, &mut status, 0) } >= 0 {
            break;
        }
        let e = Errno::last();
        if e != Errno::EINTR {
            return Err(GuardError::System {
                what: "waiting for the guardian's parent",
                errno: e,
            });
        }
    }
    let mut pid = [0u8; 4];
    let read = nix::unistd::read(&read_end, &mut pid).map_err(sys("reading the guardian's pid"))?;
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) || read != pid.len() {
        return Err(GuardError::System {
            what: "fork",
            errno: Errno::EAGAIN,
        });
    }
    Ok(u32::from_ne_bytes(pid))
}

/// A pidfd of `pid` where the kernel has them (and `pidfd` asks for one),
/// else its `/proc` entry.
fn watch(pid: u32, pidfd: bool) -> Result<Watch, GuardError> {
    // SAFETY: pidfd_open(2) takes a pid and flags; it returns a descriptor
    // (close-on-exec) or -1.
    let fd = match pidfd {
        true => unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) },
        false => -1,
    };
    if fd >= 0 {
        // SAFETY: a new descriptor that nothing else owns.
        return Ok(Watch::Pidfd(unsafe { OwnedFd::from_raw_fd(fd as RawFd) }));
    }
    let path = format!("/proc/{pid}/stat");
    let start = std::fs::read_to_string(&path)
        .ok()
        .and_then(|stat| crate::procfs::start_ticks(&stat))
        .ok_or(GuardError::NoWatch { pid })?;
    let stat = CString::new(path).map_err(|_| GuardError::NoWatch { pid })?;
    Ok(Watch::Proc { stat, start })
}

/// The intermediate child: starts a session, forks the guardian, writes its
/// pid to `report` and exits, so that the guardian is reparented away from
/// the job.
///
/// # Safety
///
/// Only in the child of a `fork`.
unsafe fn intermediate(plan: &Plan<'_>, report: RawFd) -> ! {
    // SAFETY: async-signal-safe system calls only.
    unsafe {
        libc::setsid();
        let guardian = libc::fork();
        if guardian == 0 {
            guard(plan)
        }
        let code = if guardian > 0 {
            let pid = (guardian as u32).to_ne_bytes();
            let written = libc::write(report, pid.as_ptr().cast(), pid.len());
            i32::from(written != pid.len() as isize)
        } else {
            1
        };
        libc::_exit(code)
    }
}

/// The guardian itself.
///
/// # Safety
///
/// Only in the child of a `fork`.
unsafe fn guard(plan: &Plan<'_>) -> ! {
    // SAFETY: async-signal-safe system calls only, on descriptors and
    // memory prepared before the fork.
    unsafe {
        libc::prctl(libc::PR_SET_NAME, GUARDIAN_CNAME.as_ptr(), 0, 0, 0);
        for signal in [libc::SIGINT, libc::SIGHUP, libc::SIGTERM, libc::SIGPIPE] {
            libc::signal(signal, libc::SIG_IGN);
        }
        libc::chdir(c"/".as_ptr());
        let devnull = plan.devnull.as_raw_fd();
        for fd in 0..3 {
            if !plan.records.contains(&fd) && !plan.locks.contains(&fd) && fd != devnull {
                libc::dup2(devnull, fd);
            }
        }
        close_all_but(&plan.keep, plan.fd_limit);
        match &plan.watch {
            Watch::Pidfd(fd) => {
                let mut poll = libc::pollfd {
                    fd: fd.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                loop {
                    let n = libc::poll(&mut poll, 1, -1);
                    if n > 0 || (n < 0 && Errno::last() != Errno::EINTR) {
                        break;
                    }
                }
            }
            Watch::Proc { stat, start } => {
                let pause = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: POLL_MS * 1_000_000,
                };
                while alive(stat, *start) {
                    libc::nanosleep(&pause, std::ptr::null_mut());
                }
            }
        }
        for &fd in plan.records.iter().chain(plan.locks) {
            libc::close(fd);
        }
        libc::_exit(0)
    }
}

/// Closes every descriptor below `limit` (and, where `close_range` exists,
/// above it too) that `keep` (sorted) does not name.
///
/// # Safety
///
/// Closes descriptors that Rust objects may own: only in a child that never
/// returns to them.
unsafe fn close_all_but(keep: &[RawFd], limit: RawFd) {
    let mut from: RawFd = 0;
    for &next in keep.iter().chain(std::iter::once(&RawFd::MAX)) {
        if next > from {
            let last = next.saturating_sub(1);
            // SAFETY: close_range(2) and close(2) on plain numbers.
            unsafe {
                let done = libc::syscall(
                    libc::SYS_close_range,
                    from as libc::c_uint,
                    last as libc::c_uint,
                    0 as libc::c_uint,
                ) == 0;
                if !done {
                    for fd in from..last.min(limit.saturating_sub(1)).saturating_add(1) {
                        libc::close(fd);
                    }
                }
            }
        }
        from = next.saturating_add(1);
    }
}

/// Whether the process whose `/proc/PID/stat` is `stat` still runs, and is
/// the one that started at `start` (not a later one given the same pid).
/// Async-signal-safe: reads into a buffer on the stack.
///
/// # Safety
///
/// Makes system calls only; safe to call in a forked child.
unsafe fn alive(stat: &CString, start: u64) -> bool {
    let mut buf = [0u8; 1024];
    // SAFETY: open/read/close on a buffer of our own.
    let len = unsafe {
        let fd = libc::open(stat.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return false;
        }
        let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
        libc::close(fd);
        n
    };
    let Ok(len) = usize::try_from(len) else {
        // Unreadable for a moment: still there as far as we know.
        return true;
    };
    match parse_stat(&buf[..len.min(buf.len())]) {
        Some((state, started)) => !matches!(state, b'Z' | b'X') && started == start,
        None => true,
    }
}

/// The state (field 3) and start time (field 22) of a `/proc/PID/stat`
/// line, without allocating: fields are counted from the last `)`, since
/// the command name may hold spaces and parentheses.
fn parse_stat(line: &[u8]) -> Option<(u8, u64)> {
    let mut fields = crate::procfs::stat_fields(line)?;
    let state = *fields.next()?.first()?;
    let start = fields.nth(18)?;
    let mut value: u64 = 0;
    for &digit in start {
        if !digit.is_ascii_digit() {
            return None;
        }
        value = value
            .checked_mul(10)?
            .checked_add(u64::from(digit - b'0'))?;
    }
    Some((state, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `path` is locked exclusively by someone else.
    fn locked(path: &std::path::Path) -> bool {
        let file = std::fs::File::open(path).unwrap();
        match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockSharedNonblock) {
            Ok(_) => false,
            Err((_, Errno::EWOULDBLOCK)) => true,
            Err((_, e)) => panic!("{e}"),
        }
    }

    /// A guardian, watching a `sleep` child one way or the other, holds a
    /// lock this process has let go of until the child dies, then exits.
    fn guards_until_the_job_dies(pidfd: bool) {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("lock");
        // Locked without `Flock`, whose drop would unlock it for the
        // guardian too (the lock is the open file's): closing it does not.
        let lock = std::fs::File::create(&path).unwrap();
        // SAFETY: flock(2) on a descriptor of ours.
        assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) }, 0);
        let mut job = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap();
        let watch = watch(job.id(), pidfd).unwrap();
        assert_eq!(matches!(watch, Watch::Pidfd(_)), pidfd);
        let guardian = spawn_watching(watch, &[], &[lock.as_raw_fd()]).unwrap();
        drop(lock);
        assert!(locked(&path), "the guardian holds the lock");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let comm = || std::fs::read_to_string(format!("/proc/{guardian}/comm")).unwrap();
        while comm().trim() != GUARDIAN_NAME {
            assert!(std::time::Instant::now() < deadline, "named {}", comm());
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        job.kill().unwrap();
        job.wait().unwrap();
        while locked(&path) {
            assert!(
                std::time::Instant::now() < deadline,
                "the lock outlived the job"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    #[test]
    fn a_guardian_on_a_pidfd_lets_go_when_the_job_dies() {
        guards_until_the_job_dies(true);
    }

    #[test]
    fn a_guardian_on_proc_lets_go_when_the_job_dies() {
        guards_until_the_job_dies(false);
    }

    #[test]
    fn stat_lines_are_read_without_allocating() {
        let stat = b"4242 (evil) name (x)) S 1 4242 4242 0 -1 4194560 100 0 0 0 5 1 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(parse_stat(stat), Some((b'S', 987654)));
        let mine = std::fs::read(format!("/proc/{}/stat", std::process::id())).unwrap();
        let text = String::from_utf8_lossy(&mine);
        assert_eq!(
            parse_stat(&mine).map(|(_, t)| t),
            crate::procfs::start_ticks(&text)
        );
        assert_eq!(parse_stat(b"1 (x) S 1 2"), None);
    }

    #[test]
    fn this_process_is_alive_and_a_changed_start_time_is_not() {
        let path = CString::new(format!("/proc/{}/stat", std::process::id())).unwrap();
        let text = std::fs::read_to_string(path.to_str().unwrap()).unwrap();
        let start = crate::procfs::start_ticks(&text).unwrap();
        // SAFETY: reads a file.
        unsafe {
            assert!(alive(&path, start));
            assert!(!alive(&path, start + 1));
            assert!(!alive(&c"/proc/no-such-pid/stat".into(), start));
        }
    }
}
