//! Running nvidia-smi with a deadline.
//!
//! nvidia-smi can hang for many seconds (a driver waking GPUs without
//! persistence mode, a GPU fallen off the bus). Each run gets its own process
//! group, so that on timeout the whole group is killed, including any child
//! that still holds the output pipes (which would otherwise block the reader
//! threads for good). Plain threads rather than an async runtime: the
//! provider then works under any executor, and the CLI's runtime needs no
//! I/O or timer driver.

use std::io::Read;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::Instant;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// What a finished run printed.
#[derive(Debug)]
pub struct Finished {
    /// How it ended.
    pub status: ExitStatus,
    /// Standard output, lossily decoded.
    pub stdout: String,
    /// Standard error, lossily decoded.
    pub stderr: String,
}

/// Why a run produced no [`Finished`].
#[derive(Debug)]
pub enum RunError {
    /// The program could not be started.
    Spawn(std::io::Error),
    /// It was still running (or its output still open) at the deadline; it
    /// has been killed.
    Timeout,
}

/// A started nvidia-smi. Dropping it unfinished kills its process group.
pub struct Running {
    pgid: Pid,
    /// Listed until the run is over, for a gpusel stopped by a signal
    /// ([`gpusel_core::kill_child_groups`]). Dropped after [`Drop::drop`].
    _listed: gpusel_core::ChildGroup,
    exit: Receiver<std::io::Result<ExitStatus>>,
    stdout: Receiver<Vec<u8>>,
    stderr: Receiver<Vec<u8>>,
    done: bool,
}

/// Starts `program args` with stdin closed and both outputs captured.
pub fn start(program: &Path, args: &[String]) -> Result<Running, RunError> {
    let (mut child, listed) = gpusel_core::ChildGroup::spawn(
        Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    )
    .map_err(RunError::Spawn)?;
    let pgid = Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
    let threads = (move || {
        let stdout = drain(child.stdout.take())?;
        let stderr = drain(child.stderr.take())?;
        let (tx, exit) = channel();
        thread(move || {
            let _ = tx.send(child.wait());
        })?;
        Ok((stdout, stderr, exit))
    })();
    match threads {
        Ok((stdout, stderr, exit)) => Ok(Running {
            pgid,
            _listed: listed,
            exit,
            stdout,
            stderr,
            done: false,
        }),
        Err(e) => {
            let _ = killpg(pgid, Signal::SIGKILL);
            Err(RunError::Spawn(e))
        }
    }
}

/// A thread, or the OS's reason for refusing one (`std::thread::spawn`
/// would panic instead).
fn thread(f: impl FnOnce() + Send + 'static) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("nvidia-smi".into())
        .spawn(f)
        .map(drop)
}

/// Reads a pipe to its end on a thread; the bytes arrive on the receiver.
fn drain(pipe: Option<impl Read + Send + 'static>) -> std::io::Result<Receiver<Vec<u8>>> {
    let (tx, rx) = channel();
    thread(move || {
        let mut buf = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut buf);
        }
        let _ = tx.send(buf);
    })?;
    Ok(rx)
}

impl Running {
    /// Waits until the program has exited and closed its output, or until
    /// `deadline`, when it is killed.
    pub fn finish(mut self, deadline: Instant) -> Result<Finished, RunError> {
        let outcome = (|| {
            let out = until(&self.stdout, deadline)?;
            let err = until(&self.stderr, deadline)?;
            let status = until(&self.exit, deadline)?;
            Ok((out, err, status))
        })();
        match outcome {
            Ok((out, err, Ok(status))) => {
                self.done = true;
                Ok(Finished {
                    status,
                    stdout: String::from_utf8_lossy(&out).into_owned(),
                    stderr: String::from_utf8_lossy(&err).into_owned(),
                })
            }
            Ok((_, _, Err(e))) => Err(RunError::Spawn(e)),
            Err(RecvTimeoutError::Timeout) => Err(RunError::Timeout),
            Err(RecvTimeoutError::Disconnected) => Err(RunError::Spawn(std::io::Error::other(
                "a thread reading nvidia-smi stopped",
            ))),
        }
    }
}

fn until<T>(rx: &Receiver<T>, deadline: Instant) -> Result<T, RecvTimeoutError> {
    rx.recv_timeout(deadline.saturating_duration_since(Instant::now()))
}

impl Drop for Running {
    fn drop(&mut self) {
        if !self.done {
            // The group outlives its leader only while a member runs, so this
            // reaches nvidia-smi or what it started, not an unrelated process.
            let _ = killpg(self.pgid, Signal::SIGKILL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn sh(script: &str) -> Running {
        start(Path::new("/bin/sh"), &["-c".into(), script.into()]).expect("sh starts")
    }

    #[test]
    fn output_and_status_come_back() {
        let done = sh("echo out; echo err >&2; exit 3")
            .finish(Instant::now() + Duration::from_secs(30))
            .unwrap();
        assert_eq!(done.stdout, "out\n");
        assert_eq!(done.stderr, "err\n");
        assert_eq!(done.status.code(), Some(3));
    }

    #[test]
    fn a_hung_program_and_its_children_are_killed_at_the_deadline() {
        // The background sleep holds stdout open after sh is gone: the
        // deadline must still end the wait, and the kill must reach it.
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("alive");
        let script = format!(
            "(trap '' TERM; while :; do touch {m}; sleep 0.05; done) & sleep 1000",
            m = marker.display()
        );
        let run = sh(&script);
        let result = run.finish(Instant::now() + Duration::from_millis(300));
        assert!(matches!(result, Err(RunError::Timeout)), "{result:?}");
        // Once killed, nothing touches the marker any more.
        std::thread::sleep(Duration::from_millis(200));
        let _ = std::fs::remove_file(&marker);
        std::thread::sleep(Duration::from_millis(300));
        assert!(!marker.exists(), "a child of the hung program survived");
    }

    #[test]
    fn a_missing_program_is_a_spawn_error() {
        let err = start(Path::new("/nonexistent/nvidia-smi"), &[]).err();
        assert!(
            matches!(err, Some(RunError::Spawn(ref e)) if e.kind() == std::io::ErrorKind::NotFound)
        );
    }
}
