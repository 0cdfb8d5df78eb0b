//! Exec plugins with real processes: small `#!/bin/sh` plugins in a
//! directory that only the lookup sees (the test process's own `PATH` is
//! left alone), run by `PluginProvider`.

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use gpusel::{GpuInfoProvider, PluginProvider, ProviderError, ProviderRegistry};

const LAB: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/lab-8xa100.json");
const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples");
/// Generous: plenty for a healthy plugin on a loaded CI machine.
const PATIENT: Duration = Duration::from_secs(60);

/// The test plugins, `(NAME, body of the sh script)`.
fn scripts() -> Vec<(&'static str, String)> {
    vec![
        ("good", format!("[ $# -eq 0 ] || exit 9\ncat '{LAB}'")),
        (
            "arg",
            "[ $# -eq 1 ] || { echo \"got $# arguments\" >&2; exit 9; }\ncat \"$1\"".into(),
        ),
        ("fail", "echo 'first line' >&2\necho 'no driver here' >&2\nexit 3".into()),
        ("broken", "echo 'not json'".into()),
        (
            "wrong-schema",
            r#"echo '{"schema_version": 1, "gpus": []}'"#.into(),
        ),
        (
            "future",
            r#"echo 'from the future' >&2
echo '{"schema_version": 9, "host": "h", "time": "2026-01-01T00:00:00Z", "provider": "x", "gpus": []}'"#
                .into(),
        ),
        ("empty", "echo 'nothing to say' >&2\nexit 0".into()),
        ("signal", "kill -9 $$".into()),
        ("hung", "echo 'waiting for the driver' >&2\nsleep 600".into()),
        // A background child holds stdout (and writes its pid to $1).
        ("hung-child", "sleep 600 &\necho $! > \"$1\"\necho\nwait".into()),
        // The leader is gone; its child still holds stdout.
        ("orphan", "sleep 600 &\necho $! > \"$1\"\nexit 0".into()),
        ("big", "exec yes '{\"gpus\": []}'".into()),
    ]
}

/// The directory of plugins, written once before any test runs one: a file
/// still open for writing in a child forked meanwhile could not be executed
/// (ETXTBSY).
fn plugins() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temporary directory");
        for (name, body) in scripts() {
            let path = dir.path().join(format!("gpusel-provider-{name}"));
            std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write a plugin");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                .expect("make it executable");
        }
        // Not executable: never found.
        let path = dir.path().join("gpusel-provider-noexec");
        std::fs::write(&path, "#!/bin/sh\nexit 0\n").expect("write a plugin");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        dir
    })
    .path()
}

/// A `PATH` value: an empty entry, a missing directory, then the plugins.
fn search_path() -> std::ffi::OsString {
    let mut path = std::ffi::OsString::from(":/nonexistent/gpusel-test:");
    path.push(plugins());
    path
}

fn find(name: &str, arg: Option<&str>, timeout: Duration) -> Result<PluginProvider, ProviderError> {
    PluginProvider::find_in(name, arg, timeout, Some(&search_path()))
}

fn read(name: &str, arg: Option<&str>, timeout: Duration) -> Result<gpusel::Snapshot, String> {
    let plugin = find(name, arg, timeout).map_err(|e| format!("find: {e}"))?;
    plugin.read().map_err(|e| match e {
        ProviderError::Failed { provider, .. } if provider != format!("gpusel-provider-{name}") => {
            panic!("a failure of another provider: {provider}")
        }
        ProviderError::Failed { .. } => e.to_string(),
        other => panic!("not a provider failure: {other:?}"),
    })
}

#[track_caller]
fn failure(name: &str, arg: Option<&str>, timeout: Duration) -> String {
    let error = read(name, arg, timeout).expect_err("the plugin fails");
    assert!(
        error.contains(&format!("gpusel-provider-{name}")),
        "the error names the plugin: {error}"
    );
    error
}

#[test]
fn a_good_plugin_gives_its_snapshot_as_a_local_provider() {
    let plugin = find("good", None, PATIENT).unwrap();
    assert_eq!(plugin.name(), "gpusel-provider-good");
    assert_eq!(plugin.program(), plugins().join("gpusel-provider-good"));
    assert!(!plugin.is_remote());
    let snapshot = plugin.read().unwrap();
    assert_eq!(snapshot.gpus.len(), 8);
    assert_eq!(snapshot.host, "lab-gpu01");
}

#[test]
fn the_argument_is_the_one_and_only_argument() {
    let snapshot = read("arg", Some(LAB), PATIENT).unwrap();
    assert_eq!(snapshot.gpus.len(), 8);
    // With spaces, as one argument; never through a shell.
    let dir = tempfile::tempdir().unwrap();
    let spaced = dir.path().join("my lab; rm -rf x.json");
    std::fs::copy(LAB, &spaced).unwrap();
    let snapshot = read("arg", spaced.to_str(), PATIENT).unwrap();
    assert_eq!(snapshot.gpus.len(), 8);
    let error = failure("arg", None, PATIENT);
    assert!(error.contains("got 0 arguments"), "{error}");
}

#[test]
fn a_failing_plugin_says_its_status_and_last_stderr_line() {
    let error = failure("fail", None, PATIENT);
    assert!(error.contains("exited with status 3"), "{error}");
    assert!(error.contains("no driver here"), "{error}");
    assert!(!error.contains("first line"), "only the last line: {error}");
}

#[test]
fn output_that_is_no_snapshot_is_an_error() {
    let error = failure("broken", None, PATIENT);
    assert!(error.contains("no gpusel snapshot"), "{error}");
    assert!(
        error.contains("expected ident") || error.contains("line 1"),
        "serde says where: {error}"
    );

    let error = failure("wrong-schema", None, PATIENT);
    assert!(error.contains("missing field"), "{error}");

    let error = failure("future", None, PATIENT);
    assert!(
        error.contains("invalid snapshot") && error.contains("version 9"),
        "{error}"
    );
    assert!(error.contains("from the future"), "{error}");

    let error = failure("empty", None, PATIENT);
    assert!(error.contains("printed nothing"), "{error}");
    assert!(error.contains("nothing to say"), "{error}");

    let error = failure("signal", None, PATIENT);
    assert!(error.contains("killed by signal SIGKILL"), "{error}");
}

/// Whether `pid` is gone (or a zombie, dead and not yet reaped by init).
fn dead(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X')),
    }
}

/// Reads the pid the plugin wrote, then waits (bounded) for it to be dead.
#[track_caller]
fn assert_killed(pid_file: &Path) {
    let pid: i32 = std::fs::read_to_string(pid_file)
        .expect("the plugin wrote its child's pid")
        .trim()
        .parse()
        .expect("a pid");
    let deadline = Instant::now() + PATIENT;
    while !dead(pid) {
        assert!(
            Instant::now() < deadline,
            "the plugin's child {pid} survived"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_hung_plugin_is_killed_at_the_timeout() {
    let start = Instant::now();
    let error = failure("hung", None, Duration::from_secs(1));
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "{:?}",
        start.elapsed()
    );
    assert!(
        error.contains("did not answer within 1s; it was killed"),
        "{error}"
    );
    assert!(error.contains("waiting for the driver"), "{error}");
}

#[test]
fn a_child_holding_stdout_does_not_hang_the_caller() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["hung-child", "orphan"] {
        let pid_file = dir.path().join(name);
        let start = Instant::now();
        let error = failure(name, pid_file.to_str(), Duration::from_secs(1));
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{name}: {:?}",
            start.elapsed()
        );
        assert!(error.contains("did not answer within 1s"), "{error}");
        assert_killed(&pid_file);
    }
}

#[test]
fn output_past_the_cap_is_an_error() {
    let error = failure("big", None, PATIENT);
    assert!(error.contains("more than 16 MiB"), "{error}");
}

#[test]
fn names_that_cannot_name_a_plugin_are_refused() {
    for name in ["../x", "", "a/b", "x y", "é", "/bin/sh"] {
        let error = find(name, None, PATIENT).expect_err(name);
        assert!(
            matches!(error, ProviderError::UnknownProvider { plugin: None, .. }),
            "{name:?}: {error:?}"
        );
        assert!(
            error.to_string().contains("ASCII letters, digits"),
            "{error}"
        );
    }
}

#[test]
fn an_unknown_name_says_which_executable_was_looked_for() {
    for name in ["nope", "noexec"] {
        let error = find(name, None, PATIENT).expect_err(name);
        let text = error.to_string();
        assert!(
            text.contains(&format!("no plugin gpusel-provider-{name} on PATH")),
            "{text}"
        );
    }
    let error = PluginProvider::find_in("good", None, PATIENT, None).expect_err("no PATH");
    assert!(
        error.to_string().contains("gpusel-provider-good"),
        "{error}"
    );
}

#[test]
fn the_registry_falls_back_to_plugins_but_auto_never_does() {
    let mut registry = ProviderRegistry::with_builtin();
    registry.set_fallback(gpusel::plugin_fallback(PATIENT));
    // The fallback searches this process's PATH, which the test leaves
    // alone: a name nobody installed.
    let error = registry.open("gpusel-test-none:x").err().expect("unknown");
    assert_eq!(
        error.to_string(),
        "unknown provider 'gpusel-test-none:x'; available: auto, file:PATH; no plugin gpusel-provider-gpusel-test-none on PATH"
    );
    let error = registry.open("../x").err().expect("unknown");
    assert_eq!(
        error.to_string(),
        "unknown provider '../x'; available: auto, file:PATH"
    );
    assert!(matches!(
        registry.open("auto"),
        Err(ProviderError::NoProvider { .. })
    ));
    assert_eq!(
        registry.open(&format!("file:{LAB}")).unwrap().name(),
        format!("file:{LAB}")
    );
}

#[test]
fn the_example_plugin_prints_its_own_snapshot_or_the_file_given() {
    let path: &OsStr = EXAMPLES.as_ref();
    let plugin = PluginProvider::find_in("static", None, PATIENT, Some(path)).unwrap();
    let snapshot = plugin.read().unwrap();
    assert_eq!(snapshot.gpus.len(), 2);
    let plugin = PluginProvider::find_in("static", Some(LAB), PATIENT, Some(path)).unwrap();
    assert_eq!(plugin.read().unwrap().gpus.len(), 8);
    let missing =
        PluginProvider::find_in("static", Some("/nonexistent/x.json"), PATIENT, Some(path))
            .unwrap()
            .read()
            .unwrap_err()
            .to_string();
    assert!(
        missing.contains("exited with status 1") && missing.contains("/nonexistent/x.json"),
        "{missing}"
    );
}

#[test]
fn the_first_directory_on_path_that_has_it_wins() {
    // Never run, so writing it here cannot make another test's exec fail.
    let first = tempfile::tempdir().unwrap();
    let shadow = first.path().join("gpusel-provider-good");
    std::fs::write(&shadow, "#!/bin/sh\nexit 1\n").unwrap();
    std::fs::set_permissions(&shadow, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut path = std::ffi::OsString::from(first.path());
    path.push(":");
    path.push(plugins());
    let plugin = PluginProvider::find_in("good", None, PATIENT, Some(&path)).unwrap();
    assert_eq!(plugin.program(), shadow);
    let mut path = std::ffi::OsString::from(plugins());
    path.push(":");
    path.push(first.path());
    let plugin = PluginProvider::find_in("good", None, PATIENT, Some(&path)).unwrap();
    let expected: PathBuf = plugins().join("gpusel-provider-good");
    assert_eq!(plugin.program(), expected);
}
