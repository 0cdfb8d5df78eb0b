//! `--provider NAME[:ARG]` with exec plugins, end to end: the real `gpusel`
//! binary finds `gpusel-provider-NAME` on the PATH the test gives it, selects
//! from its snapshot, leases from it like from NVML, and reports a broken,
//! failing or hung plugin as a provider failure (exit 4, 125 with `-- CMD`).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::*;

/// The test plugins, `(NAME, body of the sh script)`.
fn scripts() -> Vec<(&'static str, String)> {
    vec![
        ("lab", format!("cat '{LAB}'")),
        (
            "arg",
            "[ $# -eq 1 ] || { echo \"got $# arguments\" >&2; exit 9; }\ncat \"$1\"".into(),
        ),
        ("broken", "echo 'not json'".into()),
        ("fail", "echo 'no driver here' >&2\nexit 3".into()),
        (
            "hung",
            "echo 'waiting for the driver' >&2\nsleep 600".into(),
        ),
    ]
}

/// The plugins' directory, written once before any test starts gpusel: a
/// file still open for writing in a child forked meanwhile could not be
/// executed (ETXTBSY).
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
        dir
    })
    .path()
}

/// The plugins first, then this process's PATH (for sh, cat, sleep).
fn search_path() -> std::ffi::OsString {
    let mut path = std::ffi::OsString::from(plugins());
    if let Some(own) = std::env::var_os("PATH") {
        path.push(":");
        path.push(own);
    }
    path
}

/// `gpusel -p PROVIDER` with the plugins on its PATH.
fn with_plugin(provider: &str) -> assert_cmd::Command {
    let mut cmd = gpusel();
    cmd.env("PATH", search_path())
        .env_remove("GPUSEL_PLUGIN_TIMEOUT")
        .args(["-p", provider]);
    cmd
}

fn with_plugin_std(provider: &str, locks: &Path) -> std::process::Command {
    let mut cmd = gpusel_std();
    cmd.env("PATH", search_path())
        .env_remove("GPUSEL_PLUGIN_TIMEOUT")
        .env("GPUSEL_LOCK_DIR", locks)
        .args(["-p", provider]);
    cmd
}

#[test]
fn a_plugin_provider_selects_from_its_snapshot() {
    for seed in 0..4 {
        let o = out(with_plugin("lab").args(["--seed", &seed.to_string()]));
        let chosen = o.ok().trim().to_string();
        assert!(LAB_IDLE.contains(&chosen.as_str()), "{chosen}");
    }
    // The same choice as from the same snapshot in a file.
    let args = ["--strategy", "best-fit", "--mem", "1GiB"];
    let o = out(with_plugin("lab").args(args));
    assert_eq!(o.ok(), lab_out(args).ok());

    let o = out(with_plugin("lab").args(["list", "--json"]));
    let json: serde_json::Value = serde_json::from_str(o.ok()).expect("JSON");
    assert_eq!(json["gpus"].as_array().map(Vec::len), Some(8));
}

#[test]
fn the_argument_reaches_the_plugin() {
    let o = out(with_plugin(&format!("arg:{MIG}")).args(["list", "--json"]));
    let json: serde_json::Value = serde_json::from_str(o.ok()).expect("JSON");
    assert_eq!(json["gpus"].as_array().map(Vec::len), Some(2));
    // Without one, none: this plugin then fails.
    out(with_plugin("arg"))
        .code(4)
        .one_error_naming("gpusel-provider-arg");
}

#[test]
fn the_example_plugin_works_from_examples() {
    let examples = Path::new(LAB).parent().expect("examples/");
    let mut cmd = gpusel();
    let mut path = std::ffi::OsString::from(examples);
    if let Some(own) = std::env::var_os("PATH") {
        path.push(":");
        path.push(own);
    }
    cmd.env("PATH", path)
        .args(["-p", "static", "list", "--json"]);
    let o = out(cmd);
    let json: serde_json::Value = serde_json::from_str(o.ok()).expect("JSON");
    assert_eq!(json["gpus"].as_array().map(Vec::len), Some(2));
}

#[test]
fn a_job_on_a_plugin_provider_holds_a_lease_that_list_shows() {
    let locks = fresh_lock_dir();
    let mut job = with_plugin_std("lab", &locks)
        .args(["--", "sleep", "60"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start gpusel");
    let leased = eventually("the job's lease", || {
        if let Ok(Some(status)) = job.try_wait() {
            panic!("the job ended early: {status}");
        }
        let o: Out = with_plugin_std("lab", &locks)
            .args(["list", "--json"])
            .output()
            .expect("run gpusel list")
            .into();
        let json: serde_json::Value = serde_json::from_str(o.ok()).expect("JSON");
        let leased: Vec<u64> = json["gpus"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|g| g.get("lease").is_some())
            .filter_map(|g| g["index"].as_u64())
            .collect();
        if leased.is_empty() {
            Err("no lease yet".into())
        } else {
            Ok(leased)
        }
    });
    let _ = job.kill();
    let _ = job.wait();
    assert_eq!(leased.len(), 1, "{leased:?}");
    assert!(
        LAB_IDLE.contains(&leased[0].to_string().as_str()),
        "{leased:?}"
    );
}

#[test]
fn a_broken_or_failing_plugin_is_a_provider_failure() {
    let o = out(with_plugin("broken"));
    o.code(4).no_stdout();
    let line = o.one_error_naming("gpusel-provider-broken");
    assert!(line.contains("no gpusel snapshot"), "{line}");

    let o = out(with_plugin("fail").args(["list"]));
    o.code(4).no_stdout();
    let line = o.one_error_naming("gpusel-provider-fail");
    assert!(
        line.contains("exited with status 3") && line.contains("no driver here"),
        "{line}"
    );

    for name in ["broken", "fail"] {
        let o = out(with_plugin(name).args(["--", "sh", "-c", "echo RAN"]));
        o.code(125).no_stdout();
        o.one_error_naming(&format!("gpusel-provider-{name}"));
    }
}

#[test]
fn a_hung_plugin_is_killed_at_the_plugin_timeout() {
    for args in [&[][..], &["--", "sh", "-c", "echo RAN"][..]] {
        let start = Instant::now();
        let o = out(with_plugin("hung")
            .env("GPUSEL_PLUGIN_TIMEOUT", "1s")
            .args(args));
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{:?}",
            start.elapsed()
        );
        o.code(if args.is_empty() { 4 } else { 125 }).no_stdout();
        let line = o.one_error_naming("gpusel-provider-hung");
        assert!(line.contains("did not answer within 1s"), "{line}");
        assert!(line.contains("waiting for the driver"), "{line}");
    }
}

#[test]
fn a_bad_plugin_timeout_is_a_usage_error() {
    for value in ["0", "0s", "soon", "-1"] {
        let o = out(with_plugin("lab").env("GPUSEL_PLUGIN_TIMEOUT", value));
        o.code(2).one_error_naming("GPUSEL_PLUGIN_TIMEOUT");
    }
    let o = out(with_plugin("lab")
        .env("GPUSEL_PLUGIN_TIMEOUT", "30")
        .arg("config"));
    assert!(
        o.ok()
            .lines()
            .any(|l| l.starts_with("plugin.timeout") && l.contains("30s")),
        "{o:?}"
    );
}

#[test]
fn an_unknown_provider_names_the_plugin_looked_for() {
    let o = out(with_plugin("nope"));
    o.code(2).no_stdout();
    let line = o.one_error_naming("no plugin gpusel-provider-nope on PATH");
    assert!(line.contains("available: auto"), "{line}");

    let o = out(with_plugin("nope").args(["--", "sh", "-c", "echo RAN"]));
    o.code(125).no_stdout();
    o.one_error_naming("gpusel-provider-nope");

    // `auto` never runs a plugin (on a machine without NVIDIA's driver it
    // fails; with one it picks a real GPU).
    let o = out(with_plugin("auto").arg("list"));
    o.no_panic();
    assert!(!o.stderr.contains("gpusel-provider"), "{o:?}");
}
