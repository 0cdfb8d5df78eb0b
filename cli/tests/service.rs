//! The library's promise, tested as an outside user meets it: the
//! GPU-utils-style service in examples/gpu-service (a crate that depends on
//! the `gpusel` facade alone) reads the site's config like the CLI, so two
//! copies of it get different GPUs and `gpusel list` shows both leases in
//! the lock directory the site config names.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use common::*;

/// Builds examples/gpu-service into the same target directory (a no-op when
/// it is up to date) and gives the path of its binary.
fn service() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let mut cargo = Command::new(env!("CARGO"));
        cargo
            .arg("build")
            .arg("--manifest-path")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/gpu-service/Cargo.toml"))
            .args([
                "-p",
                "gpu-service",
                "--message-format=json-render-diagnostics",
            ]);
        if !cfg!(debug_assertions) {
            cargo.arg("--release");
        }
        let out = cargo.output().expect("run cargo to build gpu-service");
        assert!(
            out.status.success(),
            "cargo build -p gpu-service failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        stdout
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "gpu-service")
            .find_map(|m| m["executable"].as_str().map(PathBuf::from))
            .unwrap_or_else(|| panic!("cargo built no gpu-service binary:\n{stdout}"))
    })
}

#[test]
fn two_services_get_different_gpus_and_list_shows_both_leases() {
    let dir = tempfile::tempdir().unwrap();
    let locks = dir.path().join("site-locks");
    // The site sets the lock directory and the provider; neither the
    // services nor `gpusel list` are told anything else.
    let site = write_file(
        &dir,
        "config.toml",
        &format!(
            "lock_dir = {:?}\nprovider = {:?}\n",
            locks.display().to_string(),
            provider(LAB)
        ),
    );
    let start = || {
        let mut cmd = Command::new(service());
        for name in clean_env() {
            cmd.env_remove(name);
        }
        cmd.env("GPUSEL_SYSTEM_CONFIG", &site)
            .env("XDG_CONFIG_HOME", NO_CONFIG)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start gpu-service")
    };
    let mut first = start();
    let first_out = Collected::new(first.stdout.take().unwrap());
    let one = first_out.wait_for("the first service's GPU", |t| t.ends_with('\n'));
    let mut second = start();
    let second_out = Collected::new(second.stdout.take().unwrap());
    let two = second_out.wait_for("the second service's GPU", |t| t.ends_with('\n'));
    let gpu = |line: &str| {
        line.trim()
            .strip_prefix("serving on GPU ")
            .unwrap_or_else(|| panic!("unexpected output {line:?}"))
            .to_string()
    };
    let (one, two) = (gpu(&one), gpu(&two));
    assert_ne!(
        one, two,
        "the second service must not get the first one's GPU"
    );

    // Best fit for 800 MiB on the lab box: the fullest GPUs that still fit,
    // GPU 4 (9 GiB free), then GPU 0 (17.5 GiB free).
    assert_eq!((one.as_str(), two.as_str()), ("4", "0"));

    let mut list = Command::new(bin());
    for name in clean_env() {
        list.env_remove(name);
    }
    let listed = list
        .env("GPUSEL_SYSTEM_CONFIG", &site)
        .env("XDG_CONFIG_HOME", NO_CONFIG)
        .args(["list", "--json"])
        .output()
        .unwrap();
    assert!(listed.status.success(), "{listed:?}");
    let snapshot: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let leased: Vec<(String, u64)> = snapshot["gpus"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| !g["lease"].is_null())
        .map(|g| {
            (
                g["index"].to_string(),
                g["lease"]["holder"]["pid"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        leased,
        vec![
            (two.clone(), second.id() as u64),
            (one.clone(), first.id() as u64)
        ],
        "{}",
        String::from_utf8_lossy(&listed.stdout)
    );
    assert!(locks.is_dir(), "the site's lock directory was used");

    // A service that stops gives its GPU back.
    drop(first.stdin.take().unwrap().write_all(b"\n"));
    assert!(first.wait().unwrap().success());
    let mut third = start();
    let third_out = Collected::new(third.stdout.take().unwrap());
    let three = gpu(&third_out.wait_for("the third service's GPU", |t| t.ends_with('\n')));
    assert_eq!(three, one, "the first service's GPU is free again");
    for mut child in [second, third] {
        drop(child.stdin.take());
        assert!(child.wait().unwrap().success());
    }
}
