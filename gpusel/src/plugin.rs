//! Exec plugins: `--provider NAME[:ARG]` for a NAME no built-in provider has
//! runs `gpusel-provider-NAME [ARG]` from `PATH` and reads one snapshot in
//! gpusel's JSON schema from its stdout, as git runs `git-remote-NAME` and
//! cargo `cargo-NAME`. The protocol is in `docs/providers.md`.
//!
//! The plugin runs in a process group of its own with stdin on `/dev/null`.
//! When it does not finish within the timeout, or prints more than
//! [`MAX_PLUGIN_OUTPUT`], the whole group is killed (a child it left holding
//! the pipe must not hang gpusel) and reaped. Plain threads rather than an
//! async runtime, as for nvidia-smi: the provider works under any executor.

use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc::{RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use gpusel_core::{GpuInfoProvider, ProviderError, ProviderSpec, Snapshot};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::{AccessFlags, Pid, access};

/// What a plugin's executable name starts with: `gpusel-provider-NAME`.
pub const PLUGIN_PREFIX: &str = "gpusel-provider-";
/// How long a plugin may take to print its snapshot before it is killed.
pub const DEFAULT_PLUGIN_TIMEOUT: Duration = gpusel_core::config::DEFAULT_PLUGIN_TIMEOUT;
/// The most a plugin may print on stdout (16 MiB); more is an error.
pub const MAX_PLUGIN_OUTPUT: usize = 16 << 20;

/// How much of the end of stderr is kept to find its last line.
const STDERR_TAIL: usize = 8 << 10;
/// How many characters of that line a message quotes.
const STDERR_LINE: usize = 300;
/// How long to wait, after killing the group, for the leader to be reaped
/// and the pipes to close. SIGKILL takes effect at once; this only bounds a
/// kernel that is slow about it.
const KILL_GRACE: Duration = Duration::from_secs(2);

/// A provider that runs the executable `gpusel-provider-NAME` once per
/// snapshot. Its GPUs are this machine's ([`is_remote`] is false): leases
/// and `gpusel -- CMD` work as with NVML.
///
/// [`is_remote`]: GpuInfoProvider::is_remote
#[derive(Debug, Clone)]
pub struct PluginProvider {
    executable: String,
    program: PathBuf,
    argument: Option<String>,
    timeout: Duration,
}

/// Whether `name` may follow [`PLUGIN_PREFIX`]: ASCII letters, digits, `-`
/// and `_`, at least one. Nothing else, so that a name can neither leave the
/// `PATH` directories (`../x`, `/x`) nor surprise a shell.
pub fn is_plugin_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl PluginProvider {
    /// Finds `gpusel-provider-NAME` on this process's `PATH`: see
    /// [`find_in`](Self::find_in).
    pub fn find(
        name: &str,
        argument: Option<&str>,
        timeout: Duration,
    ) -> Result<Self, ProviderError> {
        Self::find_in(name, argument, timeout, std::env::var_os("PATH").as_deref())
    }

    /// Finds `gpusel-provider-NAME` in the directories of `path` (a `PATH`
    /// value; empty entries are skipped): the first executable regular file
    /// of that name. It will be run with `argument` as its one argument
    /// (none when `None`), and killed after `timeout`. A NAME that
    /// [`is_plugin_name`] refuses, or one found nowhere, is
    /// [`ProviderError::UnknownProvider`]; nothing is run yet.
    pub fn find_in(
        name: &str,
        argument: Option<&str>,
        timeout: Duration,
        path: Option<&OsStr>,
    ) -> Result<Self, ProviderError> {
        if !is_plugin_name(name) {
            return Err(ProviderError::UnknownProvider {
                spec: name.to_string(),
                available: vec![format!(
                    "{PLUGIN_PREFIX}NAME on PATH, with a NAME of ASCII letters, digits, '-' and '_'"
                )],
                plugin: None,
            });
        }
        let executable = format!("{PLUGIN_PREFIX}{name}");
        let found = path
            .map(std::env::split_paths)
            .into_iter()
            .flatten()
            .filter(|dir| !dir.as_os_str().is_empty())
            .map(|dir| dir.join(&executable))
            .find(|candidate| is_executable(candidate));
        match found {
            Some(program) => Ok(PluginProvider {
                executable,
                program,
                argument: argument.map(str::to_string),
                timeout,
            }),
            None => Err(ProviderError::UnknownProvider {
                spec: name.to_string(),
                available: Vec::new(),
                plugin: Some(executable),
            }),
        }
    }

    /// The executable that will run.
    pub fn program(&self) -> &Path {
        &self.program
    }

    /// Its argument, if any.
    pub fn argument(&self) -> Option<&str> {
        self.argument.as_deref()
    }

    /// The limit on one run.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Runs the plugin once and reads its snapshot. Blocks the calling
    /// thread for as long as the plugin runs (at most the timeout, plus a
    /// moment to reap it when it had to be killed).
    pub fn read(&self) -> Result<Snapshot, ProviderError> {
        let run = self.run()?;
        let said = run
            .stderr_line
            .as_deref()
            .map(|l| format!("; it said: {l}"))
            .unwrap_or_default();
        if let Some(code) = run.status.code().filter(|c| *c != 0) {
            return Err(self.failed(format!(
                "exited with status {code}{}",
                run.stderr_line
                    .as_deref()
                    .map(|l| format!(": {l}"))
                    .unwrap_or_default()
            )));
        }
        if let Some(signal) = run.status.signal() {
            let name =
                Signal::try_from(signal).map_or_else(|_| signal.to_string(), |s| s.to_string());
            return Err(self.failed(format!("was killed by signal {name}{said}")));
        }
        parse_output(&run.stdout).map_err(|what| self.failed(format!("{what}{said}")))
    }

    fn failed(&self, what: String) -> ProviderError {
        ProviderError::failed(
            self.executable.clone(),
            format!("{} {what}", self.program.display()),
        )
    }

    fn run(&self) -> Result<Finished, ProviderError> {
        // Listed until this run is over, for a gpusel stopped by a signal.
        let (mut child, _listed) = gpusel_core::ChildGroup::spawn(
            Command::new(&self.program)
                .args(self.argument.as_slice())
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        )
        .map_err(|e| self.failed(format!("cannot be run: {e}")))?;
        let group = Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
        let started = Instant::now();
        // A timeout too long to add is no timeout at all; a year will do.
        let deadline = started
            .checked_add(self.timeout)
            .unwrap_or(started + Duration::from_secs(365 * 24 * 3600));

        let (tx, events) = channel();
        let tail = Arc::new(Mutex::new(Vec::new()));
        let threads = (|| {
            let stdout = child.stdout.take();
            let out_tx = tx.clone();
            thread(move || {
                let _ = out_tx.send(Event::Stdout(read_capped(stdout)));
            })?;
            let stderr = child.stderr.take();
            let err_tx = tx.clone();
            let err_tail = Arc::clone(&tail);
            thread(move || {
                keep_tail(stderr, &err_tail);
                let _ = err_tx.send(Event::StderrClosed);
            })?;
            Ok::<_, std::io::Error>(())
        })();
        if let Err(e) = threads {
            let _ = killpg(group, Signal::SIGKILL);
            let _ = child.wait();
            return Err(self.failed(format!("cannot be watched: {e}")));
        }
        wait_on_thread(child, tx).map_err(|(mut child, e)| {
            let _ = killpg(group, Signal::SIGKILL);
            let _ = child.wait();
            self.failed(format!("cannot be watched: {e}"))
        })?;

        let mut state = State::default();
        let trouble = loop {
            if state.complete() {
                break None;
            }
            match events.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(Event::Stdout(Ok(bytes))) => state.stdout = Some(bytes),
                Ok(Event::Stdout(Err(Overflow))) => break Some(Trouble::Overflow),
                Ok(Event::StderrClosed) => state.stderr_closed = true,
                Ok(Event::Exit(Ok(status))) => state.status = Some(status),
                Ok(Event::Exit(Err(e))) => break Some(Trouble::Wait(e)),
                Err(RecvTimeoutError::Timeout) => break Some(Trouble::Timeout),
                // Every sender gone without a word: a thread died.
                Err(RecvTimeoutError::Disconnected) => {
                    break Some(Trouble::Wait(std::io::Error::other(
                        "a thread reading it stopped",
                    )));
                }
            }
        };
        let Some(trouble) = trouble else {
            return Ok(Finished {
                status: state.status.unwrap_or_else(|| ExitStatus::from_raw(0)),
                stdout: state.stdout.unwrap_or_default(),
                stderr_line: last_line(&tail),
            });
        };

        // The group outlives its leader only while a member runs, and the
        // leader's pid is not reused before it is reaped (by the waiting
        // thread, whose answer is not in yet or the group still has members
        // holding a pipe): this reaches the plugin or what it started, not
        // an unrelated process.
        let _ = killpg(group, Signal::SIGKILL);
        let grace = Instant::now() + KILL_GRACE;
        while !(state.status.is_some() && state.stderr_closed) {
            match events.recv_timeout(grace.saturating_duration_since(Instant::now())) {
                Ok(Event::Exit(Ok(status))) => state.status = Some(status),
                Ok(Event::StderrClosed) => state.stderr_closed = true,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        let said = last_line(&tail)
            .map(|l| format!("; it said: {l}"))
            .unwrap_or_default();
        Err(self.failed(match trouble {
            Trouble::Timeout => format!(
                "did not answer within {}; it was killed{said}",
                short_duration(self.timeout)
            ),
            Trouble::Overflow => format!(
                "printed more than {} MiB on stdout; it was killed (a snapshot is far smaller){said}",
                MAX_PLUGIN_OUTPUT >> 20
            ),
            Trouble::Wait(e) => format!("could not be waited for: {e}; it was killed{said}"),
        }))
    }
}

/// `10s` or `1500ms`: the timeout, exactly.
/// The snapshot a plugin printed on stdout, validated; else what is wrong
/// with it, as the end of a sentence that starts with the plugin's name.
pub fn parse_output(stdout: &[u8]) -> Result<Snapshot, String> {
    if stdout.iter().all(u8::is_ascii_whitespace) {
        return Err(
            "printed nothing on stdout; a plugin prints one snapshot in gpusel's JSON schema"
                .into(),
        );
    }
    let snapshot: Snapshot = serde_json::from_slice(stdout).map_err(|e| {
        format!(
            "printed no gpusel snapshot on stdout: {}; print one in the schema `gpusel list --json` writes",
            printable(&e.to_string())
        )
    })?;
    snapshot
        .validate()
        .map_err(|e| format!("printed an invalid snapshot: {}", printable(&e.to_string())))?;
    Ok(snapshot)
}

/// `text` on one line, its control characters escaped: the errors quote the
/// plugin's strings as they are (`bad time '...'`, a UUID), and they must not
/// drive the reader's terminal.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn short_duration(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// Whether `path` is a regular file (after symlinks) this process may run.
fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file()) && access(path, AccessFlags::X_OK).is_ok()
}

struct Finished {
    status: ExitStatus,
    stdout: Vec<u8>,
    stderr_line: Option<String>,
}

/// stdout went past [`MAX_PLUGIN_OUTPUT`].
struct Overflow;

enum Event {
    Stdout(Result<Vec<u8>, Overflow>),
    StderrClosed,
    Exit(std::io::Result<ExitStatus>),
}

enum Trouble {
    Timeout,
    Overflow,
    Wait(std::io::Error),
}

#[derive(Default)]
struct State {
    stdout: Option<Vec<u8>>,
    stderr_closed: bool,
    status: Option<ExitStatus>,
}

impl State {
    fn complete(&self) -> bool {
        self.stdout.is_some() && self.stderr_closed && self.status.is_some()
    }
}

/// A thread, or the OS's reason for refusing one (`std::thread::spawn`
/// would panic instead).
fn thread(f: impl FnOnce() + Send + 'static) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("gpusel-provider".into())
        .spawn(f)
        .map(drop)
}

/// Reaps `child` on a thread of its own; the child back when no thread can
/// be had.
fn wait_on_thread(
    child: std::process::Child,
    tx: Sender<Event>,
) -> Result<(), (std::process::Child, std::io::Error)> {
    // The child moves into the thread only once the thread exists.
    let (give, take) = channel::<std::process::Child>();
    match thread(move || {
        if let Ok(mut child) = take.recv() {
            let _ = tx.send(Event::Exit(child.wait()));
        }
    }) {
        Ok(()) => {
            // The receiver lives until it has the child: this cannot fail.
            let _ = give.send(child);
            Ok(())
        }
        Err(e) => Err((child, e)),
    }
}

/// All of `pipe`, or [`Overflow`] as soon as it is past the cap (then the
/// rest is left unread: the plugin is about to be killed).
fn read_capped(pipe: Option<impl Read>) -> Result<Vec<u8>, Overflow> {
    let mut buf = Vec::new();
    if let Some(pipe) = pipe {
        let cap = u64::try_from(MAX_PLUGIN_OUTPUT).unwrap_or(u64::MAX);
        let _ = pipe.take(cap + 1).read_to_end(&mut buf);
    }
    if buf.len() > MAX_PLUGIN_OUTPUT {
        Err(Overflow)
    } else {
        Ok(buf)
    }
}

/// Reads `pipe` to its end, keeping the last [`STDERR_TAIL`] bytes in `tail`
/// as they come (so that they can be read after a kill, too).
fn keep_tail(pipe: Option<impl Read>, tail: &Mutex<Vec<u8>>) {
    let Some(mut pipe) = pipe else { return };
    let mut chunk = [0u8; 4096];
    loop {
        match pipe.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => {
                let mut kept = tail.lock().unwrap_or_else(|e| e.into_inner());
                kept.extend_from_slice(&chunk[..n]);
                let excess = kept.len().saturating_sub(STDERR_TAIL);
                kept.drain(..excess);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// The last non-empty line of what stderr kept, trimmed and shortened.
fn last_line(tail: &Mutex<Vec<u8>>) -> Option<String> {
    let kept = tail.lock().unwrap_or_else(|e| e.into_inner());
    let text = String::from_utf8_lossy(&kept);
    let line = text.lines().map(str::trim).rfind(|l| !l.is_empty())?;
    let mut short: String = line.chars().take(STDERR_LINE).collect();
    if short.len() < line.len() {
        short.push_str("...");
    }
    Some(short)
}

#[async_trait]
impl GpuInfoProvider for PluginProvider {
    fn name(&self) -> &str {
        &self.executable
    }

    async fn snapshot(&self) -> Result<Snapshot, ProviderError> {
        self.read()
    }
}

/// A fallback for [`ProviderRegistry::set_fallback`]: a spec `NAME[:ARG]`
/// whose NAME no registered provider has opens the plugin
/// `gpusel-provider-NAME` on this process's `PATH` (looked up when the
/// registry opens it), with `ARG` as its argument (`NAME:` is `NAME`), and
/// `timeout` per snapshot. NAME is taken as written, not lowercased. A NAME
/// that cannot name a plugin is left to the registry's "unknown provider".
///
/// ```
/// let mut registry = gpusel::ProviderRegistry::with_builtin();
/// registry.set_fallback(gpusel::plugin_fallback(gpusel::DEFAULT_PLUGIN_TIMEOUT));
/// let error = registry.open("no-such-plugin").err().unwrap();
/// assert!(error.to_string().contains("no plugin gpusel-provider-no-such-plugin on PATH"));
/// ```
///
/// [`ProviderRegistry::set_fallback`]: gpusel_core::ProviderRegistry::set_fallback
pub fn plugin_fallback(
    timeout: Duration,
) -> impl Fn(&ProviderSpec) -> Option<Result<Box<dyn GpuInfoProvider>, ProviderError>>
+ Send
+ Sync
+ 'static {
    move |spec| {
        let name = spec.raw.split(':').next().unwrap_or_default().trim();
        if !is_plugin_name(name) {
            return None;
        }
        let argument = spec.argument.as_deref().filter(|a| !a.is_empty());
        let path: Option<OsString> = std::env::var_os("PATH");
        Some(
            PluginProvider::find_in(name, argument, timeout, path.as_deref())
                .map(|p| Box::new(p) as Box<dyn GpuInfoProvider>),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_value_is_quoted_on_one_line_without_control_characters() {
        // Found by fuzz/ (plugin_output): serde's message held the plugin's
        // string as it was, newlines and terminal escapes included.
        for bad in [
            r#"{"schema_version":1,"host":"h","time":"x\nnext line\u001b[31m","provider":"p","gpus":[]}"#,
            r#"{"schema_version":1,"host":"h","time":"2026-11-22T10:00:00Z","provider":"p","gpus":[{"index":0,"uuid":"GPU-1","name":"n","processes":[{"pid":1,"kind":"\u001b]0;owned\u0007"}]}]}"#,
            r#"{"schema_version":1,"host":"h","time":"2026-11-22T10:00:00Z","provider":"p","gpus":[{"index":0,"uuid":"GPU-\f1","name":"n"},{"index":1,"uuid":"GPU-\f1","name":"n"}]}"#,
        ] {
            let e = parse_output(bad.as_bytes()).unwrap_err();
            assert!(!e.chars().any(char::is_control), "{e:?}");
            assert!(e.starts_with("printed "), "{e}");
        }
    }
}
