//! `gpusel -- CMD` (exec the job) and `gpusel env` (export lines): what the
//! job or the shell receives.

mod common;

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;

use common::*;

/// Runs `gpusel -p file:LAB ARGS -- REPORT` and returns the child's line,
/// split into CUDA_VISIBLE_DEVICES, CUDA_DEVICE_ORDER and pid.
fn report(cmd: &mut assert_cmd::Command) -> (String, String, String) {
    let out = out(cmd.arg("--").args(REPORT));
    let stdout = out.ok();
    let line = stdout.strip_suffix('\n').expect("one line");
    let parts: Vec<&str> = line.split('|').collect();
    assert_eq!(parts.len(), 3, "{stdout:?}");
    (parts[0].into(), parts[1].into(), parts[2].into())
}

// ---- run mode: the environment -------------------------------------------------------

#[test]
fn child_sees_the_index_and_pci_bus_order() {
    let (cvd, order, _) = report(lab().args(["--devices", "3"]));
    assert_eq!((cvd.as_str(), order.as_str()), ("3", "PCI_BUS_ID"));
}

#[test]
fn child_sees_an_idle_gpu_by_default() {
    for seed in 0..4 {
        let (cvd, order, _) = report(lab().args(["--seed", &seed.to_string()]));
        assert!(LAB_IDLE.contains(&cvd.as_str()), "{cvd}");
        assert_eq!(order, "PCI_BUS_ID");
    }
}

#[test]
fn child_sees_two_gpus() {
    let (cvd, order, _) = report(lab().args(["-n", "2", "--devices", "7,1"]));
    assert_eq!((cvd.as_str(), order.as_str()), ("1,7", "PCI_BUS_ID"));
}

#[test]
fn pci_bus_order_replaces_the_callers_order_with_ordinals() {
    let (cvd, order, _) = report(
        lab()
            .env("CUDA_DEVICE_ORDER", "FASTEST_FIRST")
            .args(["--devices", "3"]),
    );
    assert_eq!((cvd.as_str(), order.as_str()), ("3", "PCI_BUS_ID"));
}

#[test]
fn child_sees_full_uuids_with_uuid_flag_and_no_order() {
    let (cvd, order, _) = report(lab().args(["--uuid", "--devices", "7"]));
    assert_eq!((cvd.as_str(), order.as_str()), (LAB_GPU7_UUID, "unset"));
}

#[test]
fn child_sees_a_subset_of_the_callers_uuid_tokens() {
    let (cvd, order, _) = report(lab().env("CUDA_VISIBLE_DEVICES", "GPU-c8d2b6e0,GPU-5f2c"));
    assert_eq!((cvd.as_str(), order.as_str()), ("GPU-c8d2b6e0", "unset"));
}

#[test]
fn child_sees_a_subset_of_the_callers_ordinals_in_their_order() {
    let (cvd, order, _) = report(lab().env("CUDA_VISIBLE_DEVICES", "7,0,5").args(["-n", "2"]));
    assert_eq!((cvd.as_str(), order.as_str()), ("7,5", "PCI_BUS_ID"));
}

#[test]
fn child_sees_a_mig_uuid_and_no_order() {
    let (cvd, order, _) = report(mig().env("CUDA_VISIBLE_DEVICES", "0"));
    assert!(MIG_IDLE_UUIDS.contains(&cvd.as_str()), "{cvd}");
    assert_eq!(order, "unset");
}

#[test]
fn child_keeps_the_rest_of_the_environment() {
    let out = out(lab()
        .env("GPUSEL_TEST_MARKER", "kept")
        .args(["--devices", "3", "--", "env"]));
    let stdout = out.ok();
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines.contains(&"GPUSEL_TEST_MARKER=kept"), "{stdout}");
    assert!(lines.contains(&"CUDA_VISIBLE_DEVICES=3"), "{stdout}");
    assert!(lines.contains(&"CUDA_DEVICE_ORDER=PCI_BUS_ID"), "{stdout}");
}

// ---- run mode: exec ---------------------------------------------------------------------

#[test]
fn childs_exit_code_is_gpusels() {
    for code in [0, 1, 7, 42, 255] {
        let out = out(lab().args(["--devices", "3", "--", "sh", "-c", &format!("exit {code}")]));
        out.code(code);
        assert_eq!(out.stderr, "", "{out:#?}");
    }
}

#[test]
fn childs_signal_is_gpusels() {
    let status = gpusel_std()
        .args(["-p", &provider(LAB), "--devices", "3", "--"])
        .args(["sh", "-c", "kill -TERM $$"])
        .status()
        .unwrap();
    assert_eq!(status.signal(), Some(15), "{status:?}");
}

#[test]
fn exec_keeps_the_pid() {
    let mut child = gpusel_std()
        .args(["-p", &provider(LAB), "--devices", "3", "--"])
        .args(REPORT)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}: {stderr}");
    assert_eq!(stdout, format!("3|PCI_BUS_ID|{pid}\n"), "{stderr}");
}

#[test]
fn arguments_pass_through_intact() {
    let args = [
        "a b",
        "it's",
        "\"quoted\"",
        "héllo ✓ 日本",
        "",
        "$HOME",
        "*",
        "--help",
        "-n",
        "2",
        "--",
        "tab\there",
        "new\nline",
    ];
    let out = out(lab()
        .args([
            "--devices",
            "3",
            "--",
            "sh",
            "-c",
            r#"printf '[%s]\n' "$@""#,
            "sh",
        ])
        .args(args));
    let expected: String = args.iter().map(|a| format!("[{a}]\n")).collect();
    assert_eq!(out.ok(), expected);
}

#[test]
fn flags_after_the_command_belong_to_it() {
    // gpusel must not read flags after `--` as its own.
    let out = out(lab().args([
        "--devices",
        "3",
        "--",
        "sh",
        "-c",
        r#"printf '%s %s\n' "$0" "$1""#,
        "-n",
        "--json",
    ]));
    assert_eq!(out.ok(), "-n --json\n");
}

#[test]
fn missing_command_exits_127() {
    lab_out(["--", "nonexistent-command-xyz"])
        .code(127)
        .no_stdout()
        .stderr_has("command not found")
        .stderr_has("nonexistent-command-xyz");
}

#[test]
fn non_executable_file_exits_126() {
    let dir = tempfile::tempdir().unwrap();
    let script = write_file(&dir, "job.sh", "#!/bin/sh\necho RAN\n");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = lab_out([std::ffi::OsStr::new("--"), script.as_os_str()]);
    out.code(126).no_stdout().stderr_has("job.sh");
}

// ---- run mode: gpusel's own failures exit 125 and never run the job ----------------

#[track_caller]
fn failed_before_running(out: &Out) {
    out.code(125).no_stdout().stderr_has("gpusel: error:");
}

const RAN: [&str; 4] = ["--", "sh", "-c", "echo RAN"];

#[test]
fn run_mode_no_gpu_exits_125() {
    let out = lab_out(["--name", "H100"].into_iter().chain(RAN));
    failed_before_running(&out);
    out.stderr_has("does not contain 'H100'");
}

#[test]
fn run_mode_bad_provider_exits_125() {
    let out = out(gpusel().args(["-p", "nope"]).args(RAN));
    failed_before_running(&out);
    out.stderr_has("nope");
}

#[test]
fn run_mode_missing_snapshot_exits_125() {
    let out = out(gpusel().args(["-p", "file:/does/not/exist"]).args(RAN));
    failed_before_running(&out);
    out.stderr_has("/does/not/exist");
}

#[test]
fn run_mode_zero_count_exits_125() {
    let out = lab_out(["--count", "0"].into_iter().chain(RAN));
    failed_before_running(&out);
}

#[test]
fn run_mode_silent_exits_125() {
    let out = lab_out(["--silent"].into_iter().chain(RAN));
    failed_before_running(&out);
    out.stderr_has("--silent");
}

#[test]
fn run_mode_without_a_command_exits_125() {
    let out = lab_out(["--devices", "3", "--"]);
    failed_before_running(&out);
}

#[test]
fn run_mode_true_is_not_run_on_failure() {
    lab_out(["--count", "0", "--", "true"]).code(125);
    lab_out(["--silent", "--", "true"]).code(125);
}

// ---- env mode ---------------------------------------------------------------------------

#[test]
fn env_prints_export_lines() {
    let out = lab_out(["env", "--devices", "3"]);
    assert_eq!(
        out.ok(),
        "export CUDA_VISIBLE_DEVICES=3\nexport CUDA_DEVICE_ORDER=PCI_BUS_ID\n"
    );
}

#[test]
fn env_output_evaluates_in_sh() {
    let out = out(gpusel().args(["-p", &provider(LAB), "env", "--devices", "3"]));
    let exports = out.ok().to_string();
    let sh = std::process::Command::new("sh")
        .env_remove("CUDA_VISIBLE_DEVICES")
        .env_remove("CUDA_DEVICE_ORDER")
        .args([
            "-c",
            r#"eval "$1"; printf '%s|%s\n' "$CUDA_VISIBLE_DEVICES" "$CUDA_DEVICE_ORDER""#,
            "sh",
            &exports,
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&sh.stdout), "3|PCI_BUS_ID\n");
}

#[test]
fn env_eval_of_command_substitution() {
    let sh = isolated(std::process::Command::new("sh"))
        .args([
            "-c",
            r#"eval "$("$0" -p "$1" env --devices 3)"; echo $CUDA_VISIBLE_DEVICES"#,
        ])
        .arg(bin())
        .arg(provider(LAB))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&sh.stdout), "3\n");
    assert_eq!(String::from_utf8_lossy(&sh.stderr), "");
}

#[test]
fn env_with_callers_uuids_exports_no_order() {
    let out = out(lab()
        .env("CUDA_VISIBLE_DEVICES", "GPU-c8d2b6e0,GPU-5f2c")
        .arg("env"));
    assert_eq!(out.ok(), "export CUDA_VISIBLE_DEVICES=GPU-c8d2b6e0\n");
}

#[test]
fn env_two_gpus() {
    let out = lab_out(["env", "-n", "4"]);
    assert_eq!(
        out.ok(),
        "export CUDA_VISIBLE_DEVICES=1,3,5,7\nexport CUDA_DEVICE_ORDER=PCI_BUS_ID\n"
    );
}

#[test]
fn env_json_is_the_selection() {
    let out = lab_out(["env", "--devices", "3", "--json"]);
    let v: serde_json::Value = serde_json::from_str(out.ok()).expect("valid JSON");
    assert_eq!(v["schema_version"], 1);
    assert_eq!(v["cuda_visible_devices"], "3");
    assert_eq!(v["cuda_device_order"], "PCI_BUS_ID");
}

#[test]
fn env_no_gpu_exits_3() {
    lab_out(["env", "--name", "H100"])
        .code(3)
        .no_stdout()
        .stderr_has("does not contain 'H100'");
}

#[test]
fn selection_flags_before_env_are_refused() {
    lab_out(["--count", "2", "env"])
        .code(2)
        .no_stdout()
        .one_error_naming("must come after `env`");
}

// ---- run mode: a stderr that cannot be written ------------------------------------------

/// `gpusel -vv ARGS -- sh -c 'echo ran'` on [`LAB`] with stderr set up by
/// `stderr`; returns the exit status and what the job printed.
fn run_with_stderr(stderr: Stdio, shell_redirect: &str) -> (Option<i32>, String) {
    // The shell applies `shell_redirect` (e.g. `2>&-`) to gpusel itself.
    let script = format!("exec \"$0\" \"$@\" {shell_redirect}");
    let cmd = gpusel_std_on(LAB);
    let args = cmd.get_args().map(|a| a.to_owned()).collect::<Vec<_>>();
    let mut sh = std::process::Command::new("sh");
    sh.arg("-c").arg(script).arg(bin()).args(args);
    sh.args(["-vv", "--", "sh", "-c", "echo ran"]);
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => sh.env(k, v),
            None => sh.env_remove(k),
        };
    }
    let child = sh
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("sh starts");
    let output = child.wait_with_output().expect("gpusel ends");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

#[test]
fn the_job_runs_when_stderr_is_closed_or_cannot_be_written() {
    // A pipe nobody reads any more (EPIPE), a full disk (ENOSPC), and a
    // descriptor closed outright: -vv logs on every step, and a failed log
    // write once panicked (exit 101, "failed printing to stderr").
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full");
    for (name, stderr, redirect) in [
        ("closed pipe", Stdio::from(writer), ""),
        ("full disk", Stdio::from(full), ""),
        ("2>&-", Stdio::inherit(), "2>&-"),
    ] {
        let (code, stdout) = run_with_stderr(stderr, redirect);
        assert_eq!(
            (code, stdout.as_str()),
            (Some(0), "ran\n"),
            "stderr: {name}"
        );
    }
}
