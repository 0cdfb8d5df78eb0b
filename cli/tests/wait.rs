//! `--wait`, `--timeout`, `--interval` and `--least-used`, with the snapshot
//! changing under a waiting gpusel.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

/// GPU `index` at 100% with one process.
fn busy_gpu(index: u32) -> serde_json::Value {
    let mut gpu = idle_gpu(index);
    gpu["utilization_gpu"] = 100.into();
    gpu["processes"] = serde_json::json!([{"pid": 4242, "used_memory": 1073741824u64}]);
    gpu
}

#[test]
fn a_waiter_proceeds_when_a_gpu_becomes_free() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(
        &dir,
        "s.json",
        &snapshot_json("h", vec![busy_gpu(0), busy_gpu(1)]),
    );
    let mut child = gpusel_std_on(&path)
        .args(["--wait", "--interval", "100ms"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Its first status line says it is waiting, and why.
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    while !seen.contains("GPU 1 ") {
        let mut line = String::new();
        assert_ne!(
            stderr.read_line(&mut line).unwrap(),
            0,
            "stderr ended: {seen}"
        );
        seen.push_str(&line);
    }
    assert!(seen.contains("gpusel: waited"), "{seen}");
    assert!(
        seen.contains("for 1 device, checking every 100ms"),
        "{seen}"
    );
    assert!(seen.contains("utilization 100% > 0% allowed"), "{seen}");
    assert_eq!(child.try_wait().unwrap(), None, "still waiting");

    let freed = Instant::now();
    replace_file(&path, &snapshot_json("h", vec![busy_gpu(0), idle_gpu(1)]));
    let out: Out = child.wait_with_output().unwrap().into();
    eprintln!(
        "proceeded {:?} after the GPU became free (interval 100ms)",
        freed.elapsed()
    );
    assert_eq!(out.ok(), "1\n");
}

#[test]
fn a_waiter_takes_a_gpu_when_its_holder_exits() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(&dir, "s.json", &snapshot_json("h", vec![idle_gpu(0)]));
    let locks = fresh_lock_dir();
    let mut holder = gpusel_std_on(&path)
        .env("GPUSEL_LOCK_DIR", &locks)
        .args(["--", "sh", "-c", "read line"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // Bounded, so that a lease that never shows fails instead of hanging.
    let leased = (0..500).any(|_| {
        let list = out(gpusel_on(&path)
            .env("GPUSEL_LOCK_DIR", &locks)
            .args(["list", "--json"]));
        let json: serde_json::Value = serde_json::from_str(list.ok()).unwrap();
        json["gpus"][0].get("lease").is_some() || {
            std::thread::sleep(Duration::from_millis(20));
            false
        }
    });
    assert!(leased, "the holder never leased GPU 0");
    let mut waiter = gpusel_std_on(&path)
        .env("GPUSEL_LOCK_DIR", &locks)
        .args([
            "--wait",
            "--interval",
            "50ms",
            "--",
            "sh",
            "-c",
            "echo got $CUDA_VISIBLE_DEVICES",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(waiter.stderr.take().unwrap());
    let mut line = String::new();
    let mut seen = String::new();
    while !seen.contains("leased by") {
        line.clear();
        assert_ne!(
            stderr.read_line(&mut line).unwrap(),
            0,
            "stderr ended: {seen}"
        );
        seen.push_str(&line);
    }
    // The holder's job ends when its stdin closes.
    drop(holder.stdin.take());
    holder.wait().unwrap();
    let mut stdout = String::new();
    BufReader::new(waiter.stdout.take().unwrap())
        .read_line(&mut stdout)
        .unwrap();
    assert_eq!(stdout, "got 0\n");
    assert!(waiter.wait().unwrap().success());
}

#[test]
fn timeout_exits_3_with_the_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(
        &dir,
        "s.json",
        &snapshot_json("h", vec![busy_gpu(0), busy_gpu(1)]),
    );
    let out = out(gpusel_on(&path).args(["--timeout", "300ms", "--interval", "100ms"]));
    out.code(3).no_stdout();
    let error = out.one_error_naming("timed out after 300ms waiting");
    assert!(error.contains("no GPU satisfies the request"), "{error}");
    assert!(
        out.stderr
            .contains("GPU 0 (NVIDIA A100-SXM4-80GB): utilization 100% > 0% allowed"),
        "{out:#?}"
    );
    assert!(
        out.stderr
            .contains("GPU 1 (NVIDIA A100-SXM4-80GB): utilization 100%"),
        "{out:#?}"
    );
    // In run mode, gpusel's own failure is 125, and the command never runs.
    let out = out_run(&path);
    out.code(125).stderr_has("timed out after");
    assert_eq!(out.stdout, "");
}

fn out_run(path: &Path) -> Out {
    out(gpusel_on(path).args([
        "--timeout",
        "200ms",
        "--interval",
        "50ms",
        "--",
        "echo",
        "ran",
    ]))
}

#[test]
fn waiting_for_more_gpus_than_there_are_fails_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(&dir, "s.json", &snapshot_json("h", vec![idle_gpu(0)]));
    // The timeout only bounds the test should it wait.
    let out = out(gpusel_on(&path).args(["--wait", "-n", "2", "--timeout", "120s"]));
    out.code(3)
        .one_error_naming("asked for 2 devices, but only 1 is visible");
    assert!(!out.stderr.contains("timed out"), "{out:#?}");
}

#[test]
fn bad_durations_are_usage_errors() {
    for (flag, value, says) in [
        ("--timeout", "soon", "'soon' is not a duration"),
        ("--interval", "5 parsecs", "e.g. 30s, 5m"),
        ("--interval", "0s", "too short"),
    ] {
        let out = out(lab().args([flag, value]));
        out.code(2).no_stdout().one_error_naming(says);
    }
    let out = out(lab().env("GPUSEL_INTERVAL", "forever"));
    out.code(2).one_error_naming("GPUSEL_INTERVAL");
}

#[test]
fn least_used_takes_a_busy_gpu_instead_of_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let mut lighter = busy_gpu(1);
    lighter["utilization_gpu"] = 20.into();
    let path = write_file(
        &dir,
        "s.json",
        &snapshot_json("h", vec![busy_gpu(0), lighter]),
    );
    assert_eq!(out(gpusel_on(&path).arg("--least-used")).ok(), "1\n");
    let out = out(gpusel_on(&path).args(["--least-used", "--wait"]));
    out.code(2).one_error_naming("--wait");
}
