//! The process groups gpusel has started and not yet reaped (nvidia-smi
//! runs, provider plugins), so that a gpusel stopped by a signal, or a
//! server shutting down, can take them with it. Each such child runs in a
//! group of its own (so that a timeout can kill what it started too), which
//! also keeps a terminal's Ctrl-C from reaching it: without this list, a
//! hung nvidia-smi outlived the gpusel that ran it, reparented to init.

use std::sync::atomic::{AtomicI32, Ordering};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// Groups that can be listed at once; more (not a case gpusel has: it runs
/// one child at a time per provider) are run but not listed.
const SLOTS: usize = 64;

/// Group ids, 0 in a free slot.
static LIVE: [AtomicI32; SLOTS] = [const { AtomicI32::new(0) }; SLOTS];

/// A started child's process group, listed for [`kill_child_groups`] until
/// this is dropped. Drop it only once the group is gone (killed, or its
/// leader reaped), so that a signal arriving in between still reaches it.
#[derive(Debug)]
pub struct ChildGroup {
    slot: Option<usize>,
}

impl ChildGroup {
    /// Lists the group `pgid` (the pid of a child started with
    /// `process_group(0)`).
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
}

impl Drop for ChildGroup {
    fn drop(&mut self) {
        if let Some(slot) = self.slot {
            LIVE[slot].store(0, Ordering::SeqCst);
        }
    }
}

/// Sends SIGKILL to every listed group. Async-signal-safe (atomic loads and
/// `kill(2)`, no allocation, no lock), so a signal handler may call it
/// before the program dies of the signal.
pub fn kill_child_groups() {
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
    use std::os::unix::process::CommandExt;

    #[test]
    fn listed_groups_are_killed_and_dropped_ones_forgotten() {
        let mut child = std::process::Command::new("sleep")
            .arg("1000")
            .process_group(0)
            .spawn()
            .unwrap();
        let group = ChildGroup::register(child.id() as i32);
        kill_child_groups();
        let status = child.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(9));
        let pgid = child.id() as i32;
        drop(group);
        assert!(LIVE.iter().all(|s| s.load(Ordering::SeqCst) != pgid));
    }
}
