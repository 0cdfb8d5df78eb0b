//! Shared helpers for the end-to-end tests: they run the real `gpusel`
//! binary with a clean environment against the snapshots in `examples/`.

// Each test file compiles this module on its own and uses only part of it.
#![allow(dead_code)]

pub mod browser;
pub mod http;
pub mod nvml;
pub mod serve;
pub mod smi;
pub mod users;

use std::borrow::BorrowMut;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Output;

/// A loopback address that refuses connections for as long as the returned
/// socket lives: bound, so no other test can take the port, and never
/// listening, so a connection gets a reset. (A port bound and closed again
/// can be handed to the next test's server in between.)
pub fn refusing_addr() -> (socket2::Socket, std::net::SocketAddr) {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    let any: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
    socket.bind(&any.into()).unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    (socket, addr)
}

/// 8 A100s: 1, 3, 5, 7 idle; 0, 4, 6 busy; 2 has one process at 0%.
pub const LAB: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/lab-8xa100.json");
/// 2 H100s: GPU 0 in MIG mode (0:0 busy, 0:1 and 0:2 idle), GPU 1 idle.
pub const MIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/mig-2xh100.json");

/// The GPUs of [`LAB`] that idle-random may choose.
pub const LAB_IDLE: [&str; 4] = ["1", "3", "5", "7"];

/// Flags that let any load through (random order, any utilization, any
/// number of processes): what a request that relaxes every filter passes.
pub const ANY_LOAD: [&str; 8] = [
    "--strategy",
    "random",
    "--max-util",
    "100",
    "--max-mem-util",
    "100",
    "--max-processes",
    "9",
];
/// UUID of GPU 7 in [`LAB`].
pub const LAB_GPU7_UUID: &str = "GPU-d6a0f4b8-7c2e-4a1d-9f3b-7c9d1f3b5c87";
/// UUIDs of the idle MIG devices 0:1 and 0:2 in [`MIG`].
pub const MIG_IDLE_UUIDS: [&str; 2] = [
    "MIG-8b6d0f2a-3e5c-5b7d-a1e3-4f6b8d0a2c22",
    "MIG-c0e2a4b6-5f7d-5c9e-b3f5-6a8c0e2b4d33",
];

/// A child for `-- CMD` that prints what it received, one line:
/// `CUDA_VISIBLE_DEVICES|CUDA_DEVICE_ORDER (or unset)|pid`.
pub const REPORT: [&str; 3] = [
    "sh",
    "-c",
    r#"printf "%s|%s|%s\n" "$CUDA_VISIBLE_DEVICES" "${CUDA_DEVICE_ORDER-unset}" "$$""#,
];

/// Variables the tests' own environment must not leak into gpusel: the
/// names in `tests/clean-env.txt`, which the Python suite clears too.
pub fn clean_env() -> impl Iterator<Item = &'static str> {
    include_str!("../../../tests/clean-env.txt")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
}

/// A lock directory of its own (not yet created) for one gpusel run, so that
/// tests running at once never see each other's leases, nor the machine's.
pub fn fresh_lock_dir() -> PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let parent = Path::new(env!("CARGO_TARGET_TMPDIR")).join("locks");
    std::fs::create_dir_all(&parent).expect("create the lock dirs' parent");
    let dir = parent.join(format!(
        "{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    // An earlier run whose test binary had the same pid may have left it.
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Whether `program` can be run. Outside CI a missing tool is a skipped
/// check, said on stderr; in CI (`CI` set: `.ci/run` installs the Debian
/// package `package`) it is a failure.
pub fn have_tool(program: &str, package: &str) -> bool {
    let status = std::process::Command::new(program)
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    match status {
        Ok(_) => true,
        Err(e) => {
            skip_missing_tool(program, package, &e);
            false
        }
    }
}

/// Says that `program` (from the Debian package `package`) could not be
/// started, `e`, and that the check is skipped; fails in CI instead.
pub fn skip_missing_tool(program: &str, package: &str, e: &std::io::Error) {
    assert!(
        std::env::var_os("CI").is_none(),
        "{program} is needed in CI (.ci/run installs Debian's {package}): {e}"
    );
    eprintln!("SKIPPED: {program} not installed (apt-get install {package})");
}

/// A config directory holding nothing, so the user's own config stays out.
pub const NO_CONFIG: &str = "/nonexistent/gpusel-test-config";

/// Gives `cmd` a clean environment: none of the variables gpusel reads, no
/// site or user config, and a lock directory of its own.
fn isolate<C: EnvCommand>(cmd: &mut C) {
    for name in clean_env() {
        cmd.remove(name);
    }
    cmd.set("GPUSEL_SYSTEM_CONFIG", &format!("{NO_CONFIG}/system.toml"));
    cmd.set("XDG_CONFIG_HOME", NO_CONFIG);
    cmd.set("GPUSEL_LOCK_DIR", &fresh_lock_dir().display().to_string());
}

/// Gives a command other than gpusel (a script that runs gpusel) the clean
/// environment [`gpusel_std`] has.
pub fn isolated(mut cmd: std::process::Command) -> std::process::Command {
    isolate(&mut cmd);
    cmd
}

/// The two command types the tests build.
trait EnvCommand {
    fn remove(&mut self, name: &str);
    fn set(&mut self, name: &str, value: &str);
}

impl EnvCommand for assert_cmd::Command {
    fn remove(&mut self, name: &str) {
        self.env_remove(name);
    }
    fn set(&mut self, name: &str, value: &str) {
        self.env(name, value);
    }
}

impl EnvCommand for std::process::Command {
    fn remove(&mut self, name: &str) {
        self.env_remove(name);
    }
    fn set(&mut self, name: &str, value: &str) {
        self.env(name, value);
    }
}

/// Path of the binary under test.
pub fn bin() -> &'static Path {
    assert_cmd::cargo::cargo_bin!("gpusel")
}

/// `file:PATH` for `--provider`.
pub fn provider(path: impl AsRef<Path>) -> String {
    format!("file:{}", path.as_ref().display())
}

/// `gpusel` with none of the variables it reads set, and no provider.
pub fn gpusel() -> assert_cmd::Command {
    let mut cmd = assert_cmd::cargo::cargo_bin_cmd!("gpusel");
    isolate(&mut cmd);
    cmd
}

/// The same as [`gpusel`], as a `std::process::Command` (to spawn it).
pub fn gpusel_std() -> std::process::Command {
    let mut cmd = std::process::Command::new(bin());
    isolate(&mut cmd);
    cmd
}

/// [`gpusel_std`] on `snapshot`.
pub fn gpusel_std_on(snapshot: impl AsRef<Path>) -> std::process::Command {
    let mut cmd = gpusel_std();
    cmd.arg("-p").arg(provider(snapshot));
    cmd
}

/// `gpusel -p file:PATH`.
pub fn gpusel_on(snapshot: impl AsRef<Path>) -> assert_cmd::Command {
    let mut cmd = gpusel();
    cmd.arg("-p").arg(provider(snapshot));
    cmd
}

/// `gpusel -p file:examples/lab-8xa100.json`.
pub fn lab() -> assert_cmd::Command {
    gpusel_on(LAB)
}

/// `gpusel -p file:examples/mig-2xh100.json`.
pub fn mig() -> assert_cmd::Command {
    gpusel_on(MIG)
}

/// What a run of gpusel showed the user.
#[derive(Debug)]
pub struct Out {
    /// Exit code; `None` when killed by a signal.
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl From<Output> for Out {
    fn from(o: Output) -> Self {
        Out {
            code: o.status.code(),
            stdout: String::from_utf8(o.stdout).expect("stdout is UTF-8"),
            stderr: String::from_utf8(o.stderr).expect("stderr is UTF-8"),
        }
    }
}

impl Out {
    /// Asserts exit code `code` and that nothing panicked; returns `self`.
    #[track_caller]
    pub fn code(&self, code: i32) -> &Self {
        assert_eq!(self.code, Some(code), "unexpected exit code: {self:#?}");
        self.no_panic()
    }

    /// Asserts success with an empty stderr; returns stdout.
    #[track_caller]
    pub fn ok(&self) -> &str {
        self.code(0);
        assert_eq!(self.stderr, "", "unexpected stderr: {self:#?}");
        &self.stdout
    }

    /// Asserts stderr has no panic message.
    #[track_caller]
    pub fn no_panic(&self) -> &Self {
        assert!(
            !self.stderr.contains("panicked") && !self.stderr.contains("RUST_BACKTRACE"),
            "gpusel panicked: {self:#?}"
        );
        self
    }

    /// Asserts stderr contains `needle`.
    #[track_caller]
    pub fn stderr_has(&self, needle: &str) -> &Self {
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}: {self:#?}"
        );
        self
    }

    /// Asserts stdout is empty.
    #[track_caller]
    pub fn no_stdout(&self) -> &Self {
        assert_eq!(self.stdout, "", "unexpected stdout: {self:#?}");
        self
    }

    /// Asserts stderr holds exactly one error line, that it names `value`,
    /// and returns that line.
    #[track_caller]
    pub fn one_error_naming(&self, value: &str) -> &str {
        let errors: Vec<&str> = self
            .stderr
            .lines()
            .filter(|l| l.contains("error:"))
            .collect();
        assert_eq!(errors.len(), 1, "expected one error line: {self:#?}");
        assert!(
            errors[0].contains(value),
            "the error line does not name {value:?}: {self:#?}"
        );
        errors[0]
    }
}

/// Runs `cmd` and returns what it showed.
pub fn out(mut cmd: impl BorrowMut<assert_cmd::Command>) -> Out {
    cmd.borrow_mut()
        .output()
        .expect("gpusel can be started")
        .into()
}

/// Runs `gpusel -p file:LAB ARGS`.
pub fn lab_out<I, S>(args: I) -> Out
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    out(lab().args(args))
}

/// Runs `gpusel -p file:MIG ARGS`.
pub fn mig_out<I, S>(args: I) -> Out
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    out(mig().args(args))
}

/// Replaces the file at `path` with `text` at once (a write to a sibling,
/// then a rename), as a driver's state changes: a reader polling it (a
/// waiter, `--watch`, `gpusel serve`) never sees half a file.
pub fn replace_file(path: &Path, text: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, text).expect("write the new file");
    std::fs::rename(&tmp, path).expect("rename it into place");
}

/// A FIFO (named pipe) `name` in `dir` that nobody ever writes: a reader
/// that opens it as a plain file blocks for good.
pub fn fifo(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    let path = dir.path().join(name);
    nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o644)).expect("mkfifo");
    path
}

/// Writes `text` to `name` in `dir` and returns the path.
pub fn write_file(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, text).expect("write the snapshot");
    path
}

/// A snapshot of `host` holding `gpus` (JSON values), as gpusel writes them.
pub fn snapshot_json(host: &str, gpus: Vec<serde_json::Value>) -> String {
    serde_json::json!({
        "schema_version": 1,
        "host": host,
        "time": "2026-11-22T10:00:00Z",
        "provider": "test",
        "gpus": gpus,
    })
    .to_string()
}

/// An idle 80 GiB A100 with index `index`.
pub fn idle_gpu(index: u32) -> serde_json::Value {
    serde_json::json!({
        "index": index,
        "uuid": format!("GPU-{index:08x}-0000-4000-8000-{index:012x}"),
        "name": "NVIDIA A100-SXM4-80GB",
        "memory_total": 85899345920u64,
        "memory_used": 4194304u64,
        "memory_free": 85895151616u64,
        "utilization_gpu": 0,
        "utilization_memory": 0,
        "power_draw": 60000,
        "power_limit": 400000,
        "processes": [],
    })
}

/// The set of GPUs a `0,2`-style output names.
pub fn tokens(stdout: &str) -> Vec<&str> {
    let line = stdout
        .strip_suffix('\n')
        .unwrap_or_else(|| panic!("output does not end in a newline: {stdout:?}"));
    assert!(!line.contains('\n'), "more than one line: {stdout:?}");
    line.split(',').collect()
}

/// How long a test waits for what a loaded CI machine must get done: long
/// enough never to be the cause of a failure, and a hang still fails.
pub const PATIENCE: std::time::Duration = std::time::Duration::from_secs(60);

/// Calls `probe` every 20 ms until it gives `Ok`, and returns that. After
/// [`PATIENCE`] it fails, naming `what` it waited for and what `probe` last
/// saw (its `Err`).
#[track_caller]
pub fn eventually<T>(what: &str, mut probe: impl FnMut() -> Result<T, String>) -> T {
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        match probe() {
            Ok(value) => return value,
            Err(seen) => assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {what}; {seen}"
            ),
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A running child's output (stdout or stderr), read on a thread of its own
/// so that a test can wait for what the child has printed so far (a first
/// frame, an error, the address it listens on) instead of sleeping and
/// hoping it was enough.
pub struct Collected {
    text: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Collected {
    /// Starts reading `from` until it closes.
    pub fn new(mut from: impl std::io::Read + Send + 'static) -> Self {
        let text = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = text.clone();
        let reader = std::thread::spawn(move || {
            let mut chunk = [0u8; 8192];
            while let Ok(n @ 1..) = from.read(&mut chunk) {
                sink.lock().unwrap().extend_from_slice(&chunk[..n]);
            }
        });
        Collected {
            text,
            reader: Some(reader),
        }
    }

    /// What has been read so far.
    pub fn so_far(&self) -> String {
        String::from_utf8_lossy(&self.text.lock().unwrap()).into_owned()
    }

    /// Whether the child has closed its end and all of it has been read.
    pub fn closed(&self) -> bool {
        self.reader.as_ref().is_none_or(|r| r.is_finished())
    }

    /// Waits until what has been read satisfies `ok`, and returns it. Fails
    /// with the output after [`PATIENCE`], or at once when the output ends
    /// without it.
    #[track_caller]
    pub fn wait_for(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        eventually(what, || {
            // Closed first: then the text read next is all there will be.
            let closed = self.closed();
            let text = self.so_far();
            if ok(&text) {
                return Ok(text);
            }
            assert!(!closed, "the output ended before {what}:\n{text}");
            Err(format!("the output so far:\n{text}"))
        })
    }

    /// Everything, once the child has closed its end.
    pub fn finish(mut self) -> Vec<u8> {
        if let Some(reader) = self.reader.take() {
            reader.join().expect("the reader thread");
        }
        std::mem::take(&mut self.text.lock().unwrap())
    }
}

/// One process as `/proc/PID/stat` shows it.
#[derive(Debug, Clone)]
pub struct Proc {
    /// Its pid.
    pub pid: u32,
    /// `R`, `S`, `Z`, ...
    pub state: char,
    /// Its parent.
    pub ppid: u32,
    /// Its process group.
    pub pgrp: u32,
    /// Its name.
    pub comm: String,
}

/// Every live (not zombie) process of this machine, from `/proc`.
pub fn processes() -> Vec<Proc> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|entry| {
        let pid: u32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
        // Gone in between: not there.
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let (comm, rest) = stat.split_once(" (")?.1.rsplit_once(") ")?;
        let mut fields = rest.split_whitespace();
        let state = fields.next()?.chars().next()?;
        let ppid = fields.next()?.parse().ok()?;
        let pgrp = fields.next()?.parse().ok()?;
        Some(Proc {
            pid,
            state,
            ppid,
            pgrp,
            comm: comm.to_string(),
        })
    })
    .filter(|p| p.state != 'Z' && p.state != 'X')
    .collect()
}

/// The live processes of process group `pgid`.
pub fn group_members(pgid: u32) -> Vec<Proc> {
    processes().into_iter().filter(|p| p.pgrp == pgid).collect()
}

/// Waits until process group `pgid` has no live process left.
#[track_caller]
pub fn group_gone(pgid: u32) {
    eventually(
        &format!("process group {pgid} to be gone"),
        || match group_members(pgid) {
            left if left.is_empty() => Ok(()),
            left => Err(format!("still running: {left:?}")),
        },
    );
}

/// Waits until `parent` has started a child in a process group of its own
/// with at least `members` live processes, and returns that group.
#[track_caller]
pub fn child_group(parent: u32, members: usize) -> u32 {
    eventually(&format!("a child group of {parent}"), || {
        let all = processes();
        let parent_group = all.iter().find(|p| p.pid == parent).map(|p| p.pgrp);
        all.iter()
            .filter(|p| p.ppid == parent && Some(p.pgrp) != parent_group && p.pgrp == p.pid)
            .map(|p| p.pgrp)
            .find(|&g| all.iter().filter(|p| p.pgrp == g).count() >= members)
            .ok_or_else(|| "none yet".to_string())
    })
}

/// A value for `GPUSEL_TEST_MARK` unique to this call: set on a gpusel
/// run, it is inherited by every process that run starts, which
/// [`marked_gone`] then looks for.
pub fn test_mark() -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// The live processes with `GPUSEL_TEST_MARK=mark` in their environment.
pub fn marked(mark: &str) -> Vec<Proc> {
    let needle = format!("GPUSEL_TEST_MARK={mark}");
    processes()
        .into_iter()
        .filter(|p| {
            std::fs::read(format!("/proc/{}/environ", p.pid))
                .is_ok_and(|env| env.split(|&b| b == 0).any(|v| v == needle.as_bytes()))
        })
        .collect()
}

/// Waits until no live process is [`marked`] `mark`: nothing a run
/// started outlived it.
#[track_caller]
pub fn marked_gone(mark: &str) {
    eventually(
        &format!("the processes marked {mark} to be gone"),
        || match marked(mark) {
            left if left.is_empty() => Ok(()),
            left => Err(format!("still running: {left:?}")),
        },
    );
}

/// Waits until `mark` marks gpusel and a hung child: the fake nvidia-smi
/// and its `sleep`.
#[track_caller]
pub fn marked_hang(mark: &str) {
    eventually("a hung nvidia-smi", || match marked(mark) {
        found if found.iter().any(|p| p.comm == "sleep") => Ok(()),
        found => Err(format!("running: {found:?}")),
    });
}
