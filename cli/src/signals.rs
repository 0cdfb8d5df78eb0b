//! SIGTERM, SIGINT and SIGHUP while gpusel reads the GPUs: the children it
//! started (a hung nvidia-smi, a plugin) run in process groups of their own,
//! out of reach of the signal, so they are killed before gpusel dies of it.

use nix::libc::c_int;
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, raise, sigaction};

const SIGNALS: [Signal; 3] = [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP];

extern "C" fn on_signal(signal: c_int) {
    // Async-signal-safe: atomic loads and kill(2).
    gpusel_core::kill_child_groups();
    // SA_RESETHAND put back the default action: raised again, the signal
    // ends gpusel once this returns, with the status it always had.
    if let Ok(signal) = Signal::try_from(signal) {
        let _ = raise(signal);
    }
}

/// Kills the child groups on a terminating signal, then dies of it. `-- CMD`
/// gives the job the default actions back at exec; `list --watch` and
/// `serve` handle these signals themselves, and replace this.
pub fn kill_children_on_termination() {
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::SA_RESETHAND,
        SigSet::empty(),
    );
    for signal in SIGNALS {
        // SAFETY: the handler does only async-signal-safe work.
        let _ = unsafe { sigaction(signal, &action) };
    }
}
