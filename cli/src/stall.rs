//! Says on stderr what gpusel is waiting on when the provider takes long: a
//! driver hung at start-up (NVML init that never returns) otherwise leaves
//! `gpusel list` and `gpusel -- CMD` hanging without a word.

use std::sync::mpsc::{RecvTimeoutError, Sender, channel};
use std::time::{Duration, Instant};

use crate::out;

/// How long before the first word: an honest NVML init or nvidia-smi run
/// takes well under a second, a busy machine a few.
pub const FIRST: Duration = Duration::from_secs(5);
/// How often it repeats while the wait goes on.
const AGAIN: Duration = Duration::from_secs(30);

/// What to do about a driver that does not answer.
pub const DRIVER_HINT: &str = "the driver may be hung (a GPU fallen off the bus? see `dmesg`); Ctrl-C stops gpusel, and --provider smi or --provider file:PATH read the GPUs another way";

/// What to do about an agent that does not answer.
pub const REMOTE_HINT: &str = "the agent at the other end has not answered yet (gpusel gives up at GPUSEL_HTTP_TIMEOUT, default 10 s); Ctrl-C stops gpusel";

/// Speaks up while it lives; dropping it ends the watch.
pub struct Watchdog {
    _stop: Option<Sender<()>>,
}

/// Starts watching: after [`FIRST`], and every [`AGAIN`] after that, says
/// `gpusel: still waiting for WHAT (N s); HINT` until the returned guard is
/// dropped.
pub fn watch(what: String, hint: &'static str) -> Watchdog {
    let (stop, stopped) = channel::<()>();
    let started = Instant::now();
    let spawned = std::thread::Builder::new()
        .name("gpusel-watchdog".into())
        .spawn(move || {
            let mut wait = FIRST;
            // Ends when the guard drops its sender (`Disconnected`).
            while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(wait) {
                out::eprint_line(
                    "",
                    &format!(
                        "still waiting for {what} ({} s); {hint}",
                        started.elapsed().as_secs()
                    ),
                );
                wait = AGAIN;
            }
        });
    // No thread (the OS refused one): no words, but the work goes on.
    Watchdog {
        _stop: spawned.ok().map(|_| stop),
    }
}
