//! `gpusel list`: the table, `--json`, and a reader that goes away.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use common::*;

fn read_json(path: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn list_shows_a_header_and_a_row_per_gpu() {
    let out = lab_out(["list"]);
    let stdout = out.ok();
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("lab-gpu01"), "{stdout}");
    assert!(lines[0].contains("8 GPUs"), "{stdout}");
    assert!(lines[1].starts_with("GPU"), "column header: {stdout}");
    assert_eq!(
        lines.len(),
        10,
        "host line, column header, 8 rows: {stdout}"
    );
    for (i, row) in lines[2..].iter().enumerate() {
        assert_eq!(
            row.split_whitespace().next(),
            Some(i.to_string().as_str()),
            "{stdout}"
        );
        assert!(row.contains("NVIDIA A100-SXM4-80GB"), "{row}");
    }
    for user in ["alice", "bob", "carol", "dave"] {
        assert!(stdout.contains(user), "no {user}: {stdout}");
    }
    assert!(lines[2].contains("98%"), "{}", lines[2]);
    assert!(
        lines[3].trim_end().ends_with('-'),
        "idle GPU 1: {}",
        lines[3]
    );
}

#[test]
fn list_shows_mig_devices_under_their_gpu() {
    let out = mig_out(["list"]);
    let stdout = out.ok();
    let first: Vec<&str> = stdout
        .lines()
        .skip(2)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(first, ["0", "0:0", "0:1", "0:2", "1"], "{stdout}");
    assert!(stdout.lines().next().unwrap().starts_with("lab-h100"));
    assert!(stdout.contains("erin"), "{stdout}");
    for profile in ["3g.40gb", "2g.20gb", "1g.10gb"] {
        assert!(stdout.contains(profile), "no {profile}: {stdout}");
    }
}

#[test]
fn list_json_is_the_snapshot() {
    for path in [LAB, MIG] {
        let out = out(gpusel_on(path).args(["list", "--json"]));
        let got: serde_json::Value = serde_json::from_str(out.ok()).expect("valid JSON");
        assert_eq!(got, read_json(path), "{path}");
    }
}

#[test]
fn list_json_flag_before_the_subcommand() {
    let out = out(gpusel_on(LAB).args(["--json", "list"]));
    let got: serde_json::Value = serde_json::from_str(out.ok()).expect("valid JSON");
    assert_eq!(got, read_json(LAB));
}

#[test]
fn list_json_round_trips_as_a_provider() {
    let dir = tempfile::tempdir().unwrap();
    let first = out(gpusel_on(MIG).args(["list", "--json"]));
    let path = write_file(&dir, "again.json", first.ok());
    let second = out(gpusel_on(&path).args(["list", "--json"]));
    assert_eq!(second.ok(), first.stdout);
}

#[test]
fn list_into_head_does_not_panic() {
    let out = std::process::Command::new("sh")
        .args(["-c", r#""$0" -p "$1" list | head -1"#])
        .arg(bin())
        .arg(provider(LAB))
        .env_remove("CUDA_VISIBLE_DEVICES")
        .env_remove("GPUSEL_PROVIDER")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{out:?}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(stderr, "");
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(stdout.starts_with("lab-gpu01"), "{stdout}");
}

#[test]
fn list_to_a_reader_that_goes_away_exits_quietly() {
    // Far more than a pipe buffer holds, so the write must meet a closed pipe.
    let dir = tempfile::tempdir().unwrap();
    let gpus = (0..2000).map(idle_gpu).collect();
    let path = write_file(&dir, "big.json", &snapshot_json("big", gpus));
    let mut child = gpusel_std()
        .args(["-p", &provider(&path), "list"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.starts_with("big"), "{first}");
    // The reader is dropped here: the rest of the table meets a closed pipe.
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(stderr, "");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
}

#[test]
fn list_ignores_cuda_visible_devices() {
    let out = out(lab().env("CUDA_VISIBLE_DEVICES", "3").arg("list"));
    assert_eq!(out.ok().lines().count(), 10);
}

#[test]
fn list_refuses_selection_flags() {
    lab_out(["--devices", "3", "list"])
        .code(2)
        .no_stdout()
        .one_error_naming("--devices");
}
