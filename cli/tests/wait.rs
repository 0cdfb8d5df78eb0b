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
    let seen = read_until(&mut stderr, "GPU 1 ");
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

// ---- a provider that fails while gpusel waits ----------------------------------------

/// Reads `stderr` line by line until the text read holds `needle`; returns it.
#[track_caller]
fn read_until(stderr: &mut impl BufRead, needle: &str) -> String {
    let mut seen = String::new();
    while !seen.contains(needle) {
        let mut line = String::new();
        assert_ne!(
            stderr.read_line(&mut line).unwrap(),
            0,
            "stderr ended before {needle:?}: {seen}"
        );
        seen.push_str(&line);
    }
    seen
}

#[test]
fn a_snapshot_file_caught_mid_rewrite_does_not_end_the_wait() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(&dir, "s.json", &snapshot_json("h", vec![busy_gpu(0)]));
    // Two intervals to spare between the failure shown and the fix: three
    // failed tries in a row would end the wait.
    let mut child = gpusel_std_on(&path)
        .args(["--wait", "--interval", "2s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    read_until(&mut stderr, "utilization 100% > 0% allowed");
    // Half written, as a writer that does not rename into place leaves it.
    replace_file(&path, "{\"schema_version\": 1, \"gpus\": [");
    let seen = read_until(&mut stderr, "trying again in 2s");
    assert!(
        seen.contains("the provider failed (1 of 3 tries in a row end the wait"),
        "{seen}"
    );
    assert!(seen.contains("s.json is not a gpusel snapshot"), "{seen}");
    replace_file(&path, &snapshot_json("h", vec![idle_gpu(0)]));
    let status = child.wait().unwrap();
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout).unwrap();
    assert_eq!((status.code(), stdout.as_str()), (Some(0), "0\n"));
}

#[test]
fn a_provider_that_keeps_failing_ends_the_wait_with_its_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(&dir, "s.json", "not json");
    let out = out(gpusel_on(&path)
        .args(["--wait", "--interval", "50ms"])
        .timeout(PATIENCE));
    out.code(4).no_stdout();
    assert_eq!(
        out.stderr.matches("the provider failed").count(),
        2,
        "the third failure ends it: {}",
        out.stderr
    );
    out.one_error_naming("s.json is not a gpusel snapshot");
    // The same with `-- CMD`: the job is not run, exit 125.
    let run = crate::out(
        gpusel_on(&path)
            .args(["--wait", "--interval", "50ms", "--", "echo", "ran"])
            .timeout(PATIENCE),
    );
    run.code(125).no_stdout();
}

#[test]
fn an_nvidia_smi_that_fails_once_does_not_end_the_wait() {
    // A scenario of its own: the fake takes `fail-once` away as it fails.
    let dir = tempfile::tempdir().unwrap();
    let lab = Path::new(common::smi::SMI_DIR).join(common::smi::SMI_LAB);
    for entry in std::fs::read_dir(&lab).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    let scenario = dir.path().display().to_string();
    let fail_once = dir.path().join("fail-once");
    // Without --wait the failure is the answer, at once.
    std::fs::write(&fail_once, "").unwrap();
    let once = out(common::smi::smi(&scenario).timeout(PATIENCE));
    once.code(4).no_stdout();
    once.one_error_naming("Unable to determine the device handle");
    assert!(!fail_once.exists(), "the fake failed");
    // With it, the next try succeeds.
    std::fs::write(&fail_once, "").unwrap();
    let waited = out(common::smi::smi(&scenario)
        .args(["--wait", "--interval", "50ms", "--devices", "3"])
        .timeout(PATIENCE));
    waited
        .code(0)
        .stderr_has("the provider failed (1 of 3 tries in a row");
    assert_eq!(waited.stdout, "3\n");
}
