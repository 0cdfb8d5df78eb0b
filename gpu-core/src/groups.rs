//! The process groups gpusel has started and not yet reaped (nvidia-smi
//! runs, provider plugins), so that a gpusel stopped by a signal, or a
//! server shutting down, can take them with it. Each such child runs in a
//! group of its own (so that a timeout can kill what it started too), which
//! also keeps a terminal's Ctrl-C from reaching it: without this list, a
//! hung nvidia-smi outlived the gpusel that ran it, reparented to init.
//!
//! [`kill_child_groups`] is for a gpusel on its way out: from then on no
//! child is started, so that a thread still running (a server's snapshot
//! loop, whose nvidia-smi was just killed, trying again) cannot start one
//! that outlives the process.

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};

use std::os::unix::process::CommandExt;
use std::process::{Child, Command};

use nix::sys::signal::{SigSet, SigmaskHow, Signal, killpg, pthread_sigmask};
use nix::unistd::Pid;

/// Groups that can be listed at once; more (not a case gpusel has: it runs
/// one child at a time per provider) are run but not listed.
const SLOTS: usize = 64;

/// Group ids, 0 in a free slot.
static LIVE: [AtomicI32; SLOTS] = [const { AtomicI32::new(0) }; SLOTS];

/// Set by [`kill_child_groups`]: no child is started after it.
static CLOSED: AtomicBool = AtomicBool::new(false);

/// Spawns between their check of [`CLOSED`] and their group being listed.
static STARTING: AtomicUsize = AtomicUsize::new(0);

/// How long (in milliseconds) [`kill_child_groups`] waits for a spawn under
/// way to list its group: a fork and an exec take milliseconds, even on a
/// loaded machine.
const STARTING_WAIT_MS: u32 = 2000;

/// A started child's process group, listed for [`kill_child_groups`] until
/// this is dropped. Drop it only once the group is gone (killed, or its
/// leader reaped), so that a signal arriving in between still reaches it.
#[derive(Debug)]
pub struct ChildGroup {
    slot: Option<usize>,
}

impl ChildGroup {
    /// Starts `command` as the leader of a process group of its own and
    /// lists the group. SIGTERM, SIGINT and SIGHUP are held off between the
    /// two (the child starts with none blocked), so that no signal can end
    /// gpusel with the child started and not yet listed.
    ///
    /// Once [`kill_child_groups`] has run, nothing is started: the error
    /// says gpusel is stopping.
    pub fn spawn(command: &mut Command) -> std::io::Result<(Child, ChildGroup)> {
        let mut hold = SigSet::empty();
        for signal in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
            hold.add(signal);
        }
        let mut before = SigSet::empty();
        let held = pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&hold), Some(&mut before)).is_ok();
        // Counted only while those signals are held off here, so that a
        // handler calling kill_child_groups never waits on its own thread.
        STARTING.fetch_add(1, Ordering::SeqCst);
        let spawned = if CLOSED.load(Ordering::SeqCst) {
            Err(stopping())
        } else {
            command.process_group(0).spawn().map(|child| {
                let pgid = i32::try_from(child.id()).unwrap_or(0);
                (child, ChildGroup::register(pgid))
            })
        };
        STARTING.fetch_sub(1, Ordering::SeqCst);
        if held {
            let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&before), None);
        }
        let (child, group) = spawned?;
        // Closed while it started, after the killer stopped waiting.
        if CLOSED.load(Ordering::SeqCst) {
            group.kill();
        }
        Ok((child, group))
    }

    /// Lists the group `pgid` (the pid of a child started with
    /// `process_group(0)`); [`ChildGroup::spawn`] does both.
    pub fn register(pgid: i32) -> Self {
        let slot = (pgid > 0)
            .then(|| {
                LIVE.iter().position(|s| {
                    s.compare_exchange(0, pgid, Ordering::SeqCst, Ordering::SeqCst)
                        .is_ok()
                })
            })
            .flatten();
        ChildGroup { slot }
    }

    fn kill(&self) {
        if let Some(slot) = self.slot {
            let pgid = LIVE[slot].load(Ordering::SeqCst);
            if pgid > 0 {
                let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
            }
        }
    }
}

fn stopping() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::Interrupted,
        "gpusel is stopping: no new process is started",
    )
}

impl Drop for ChildGroup {
    fn drop(&mut self) {
        if let Some(slot) = self.slot {
            LIVE[slot].store(0, Ordering::SeqCst);
        }
    }
}

/// Sends SIGKILL to every listed group, and makes every later
/// [`ChildGroup::spawn`] fail: for a gpusel that is stopping. A spawn under
/// way is waited for (up to two seconds) and its group killed with the
/// rest. Async-signal-safe (atomics, `nanosleep(2)` and `kill(2)`; no
/// allocation, no lock), so a signal handler may call it before the program
/// dies of the signal.
pub fn kill_child_groups() {
    CLOSED.store(true, Ordering::SeqCst);
    let pause = nix::libc::timespec {
        tv_sec: 0,
        tv_nsec: 1_000_000,
    };
    for _ in 0..STARTING_WAIT_MS {
        if STARTING.load(Ordering::SeqCst) == 0 {
            break;
        }
        // SAFETY: a valid timespec; no remainder is asked for.
        unsafe { nix::libc::nanosleep(&pause, std::ptr::null_mut()) };
    }
    for slot in &LIVE {
        let pgid = slot.load(Ordering::SeqCst);
        if pgid > 0 {
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_groups_are_killed_and_dropped_ones_forgotten() {
        let (mut child, group) =
            ChildGroup::spawn(std::process::Command::new("sleep").arg("1000")).unwrap();
        kill_child_groups();
        let status = child.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(9));
        let pgid = child.id() as i32;
        drop(group);
        assert!(LIVE.iter().all(|s| s.load(Ordering::SeqCst) != pgid));
        // Stopping: nothing more is started.
        let refused =
            ChildGroup::spawn(std::process::Command::new("sleep").arg("1000")).unwrap_err();
        assert!(refused.to_string().contains("stopping"), "{refused}");
    }
}
