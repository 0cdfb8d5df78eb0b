//! `--provider smi`: the real provider running the fake `nvidia-smi` of
//! `tests/fixtures/smi/`. On the `lab-8xa100` scenario every mode must give
//! what `--provider file:examples/lab-8xa100.json` gives: the same picks,
//! the same rejections for the same reasons, the same exit codes.

mod common;

use common::smi::*;
use common::*;

/// Runs ARGS through both providers and asserts that the user saw the same
/// thing; returns the smi run.
#[track_caller]
fn same_as_file(args: &[&str]) -> Out {
    let by_file = lab_out(args);
    let by_smi = smi_out(SMI_LAB, args);
    by_smi.no_panic();
    assert_eq!(
        (by_smi.code, &by_smi.stdout, &by_smi.stderr),
        (by_file.code, &by_file.stdout, &by_file.stderr),
        "gpusel {args:?}: smi (left) and file (right) differ"
    );
    by_smi
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

// ---- parity with the file provider on the lab -----------------------------------------

#[test]
fn print_mode_picks_the_same_gpus() {
    for seed in ["0", "1", "7", "42"] {
        let out = same_as_file(&["--seed", seed]);
        assert!(LAB_IDLE.contains(&tokens(&out.stdout)[0]), "{out:?}");
        same_as_file(&["-n", "2", "--seed", seed]);
    }
    assert_eq!(same_as_file(&["-n", "4"]).stdout, "1,3,5,7\n");
}

#[test]
fn every_strategy_ranks_the_same() {
    for strategy in [
        "idle-random",
        "best-fit",
        "worst-fit",
        "random",
        "least-used",
    ] {
        for n in ["1", "3"] {
            same_as_file(&[
                "--strategy",
                strategy,
                "-n",
                n,
                "--seed",
                "5",
                "--max-util",
                "100",
                "--max-mem-util",
                "100",
                "--max-processes",
                "2",
            ]);
        }
    }
}

#[test]
fn filters_reject_the_same_gpus_for_the_same_reasons() {
    let cases: &[&[&str]] = &[
        &[
            "--mem",
            "20GiB",
            "--max-util",
            "50",
            "--max-mem-util",
            "50",
            "--max-processes",
            "1",
            "-n",
            "5",
            "--explain",
        ],
        &["--mem", "80000MiB", "--explain"],
        &["--max-power", "61W", "--explain"],
        &["--max-power", "62W", "-n", "2", "--explain"],
        &["--name", "a100-sxm4", "--devices", "0,2,4,6,7", "--explain"],
        &["--exclude", "1,3", "-n", "2", "--explain"],
        &["--devices", "GPU-d6a0", "--uuid"],
        &["--strategy", "least-used", "-n", "8", "--explain"],
    ];
    for args in cases {
        // idle-random is random among equals: seed it.
        let args: Vec<&str> = args.iter().copied().chain(["--seed", "1"]).collect();
        let out = same_as_file(&args);
        assert_eq!(out.code, Some(0), "{args:?}: {out:?}");
    }
}

#[test]
fn no_match_exits_3_with_the_same_reasons() {
    for args in [
        &["--mem", "100GiB"][..],
        &["-n", "5"][..],
        &["--devices", "0", "--explain"][..],
        &["--name", "H100"][..],
    ] {
        let out = same_as_file(args);
        out.code(3).no_stdout();
        assert!(out.stderr.contains("no GPU satisfies"), "{out:?}");
    }
    same_as_file(&["--mem", "100GiB", "--silent"])
        .code(0)
        .no_stdout();
}

#[test]
fn explain_is_the_same() {
    let out = same_as_file(&["-n", "2", "--seed", "3", "--explain"]);
    assert!(
        out.stderr
            .contains("GPU 4 (NVIDIA A100-SXM4-80GB): utilization 76% > 0% allowed"),
        "{out:?}"
    );
}

#[test]
fn env_mode_prints_the_same_exports() {
    let out = same_as_file(&["env", "-n", "2", "--seed", "9"]);
    assert!(
        out.stdout.starts_with("export CUDA_VISIBLE_DEVICES="),
        "{out:?}"
    );
    same_as_file(&["env", "--uuid", "--devices", "7"]);
}

#[test]
fn run_mode_gives_the_job_the_same_environment() {
    let job = [
        "--",
        "sh",
        "-c",
        r#"printf "%s|%s\n" "$CUDA_VISIBLE_DEVICES" "${CUDA_DEVICE_ORDER-unset}""#,
    ];
    for extra in [
        &["--seed", "11"][..],
        &["-n", "2", "--seed", "4"],
        &["--uuid", "-d", "5"],
    ] {
        let args: Vec<&str> = extra.iter().chain(job.iter()).copied().collect();
        let out = same_as_file(&args);
        out.code(0);
    }
    // gpusel's own failure before the job: 125 from both.
    let args: Vec<&str> = ["--mem", "1TiB"]
        .iter()
        .chain(job.iter())
        .copied()
        .collect();
    same_as_file(&args).code(125);
}

#[test]
fn selection_json_is_the_same_but_for_the_host() {
    for args in [
        &["--json", "--seed", "2"][..],
        &["env", "--json", "-n", "3", "--seed", "8"],
    ] {
        let by_file = lab_out(args);
        let by_smi = smi_out(SMI_LAB, args);
        let (mut a, mut b) = (json(by_smi.ok()), json(by_file.ok()));
        assert_eq!(b["host"], "lab-gpu01");
        assert!(a["host"].as_str().is_some_and(|h| !h.is_empty()), "{a}");
        a["host"] = serde_json::Value::Null;
        b["host"] = serde_json::Value::Null;
        assert_eq!(a, b, "gpusel {args:?}");
    }
}

#[test]
fn list_shows_the_same_table() {
    let by_file = lab_out(["list"]);
    let by_smi = smi_out(SMI_LAB, ["list"]);
    let (smi_header, smi_table) = by_smi.ok().split_once('\n').expect("a header line");
    let (_, file_table) = by_file.ok().split_once('\n').expect("a header line");
    assert_eq!(device_rows(smi_table), device_rows(file_table));
    assert!(
        smi_header.contains("  8 GPUs  driver 570.124.06  smi  "),
        "{smi_header:?}"
    );
    // What the driver reports is shown as is; users come from /proc.
    let process = smi_table
        .lines()
        .find(|l| l.contains(" 48213  "))
        .unwrap_or_else(|| panic!("no process 48213: {smi_table}"));
    assert!(
        process.contains("62 GiB") && process.contains("python3"),
        "{process}"
    );
}

#[test]
fn list_json_is_the_same_snapshot() {
    let file = json(lab_out(["list", "--json"]).ok());
    let smi = json(smi_out(SMI_LAB, ["list", "--json"]).ok());
    assert_eq!(smi["provider"], "smi");
    assert_eq!(smi["driver_version"], file["driver_version"]);
    assert_eq!(smi["schema_version"], file["schema_version"]);
    let (smi_gpus, file_gpus) = (
        smi["gpus"].as_array().expect("gpus"),
        file["gpus"].as_array().expect("gpus"),
    );
    assert_eq!(smi_gpus.len(), file_gpus.len());
    for (s, f) in smi_gpus.iter().zip(file_gpus) {
        let (mut s, mut f) = (s.clone(), f.clone());
        // nvidia-smi prints watts with two decimals: 352118 mW is 352.12 W.
        for key in ["power_draw", "power_limit"] {
            let (a, b) = (s[key].as_i64().unwrap(), f[key].as_i64().unwrap());
            assert!((a - b).abs() <= 5, "GPU {}: {key} {a} vs {b}", f["index"]);
            s[key] = serde_json::Value::Null;
            f[key] = serde_json::Value::Null;
        }
        // /proc describes this machine's processes, not the lab's; and
        // --query-compute-apps cannot tell compute from compute+graphics.
        for gpu in [&mut s, &mut f] {
            for p in gpu["processes"].as_array_mut().expect("processes listed") {
                let p = p.as_object_mut().unwrap();
                for key in ["user", "start_time", "command_line", "kind", "visible"] {
                    p.remove(key);
                }
            }
        }
        assert_eq!(s, f);
    }
}

#[test]
fn auto_falls_back_to_smi_and_says_so() {
    let out = out(gpusel_with_fake(SMI_LAB).args(["-vv", "list", "--json"]));
    out.code(0);
    assert_eq!(json(&out.stdout)["provider"], "smi");
    out.stderr_has("auto: using provider provider=smi");
}

// ---- other scenarios ------------------------------------------------------------------

#[test]
fn a_mig_gpu_is_never_offered_whole() {
    // GPU 6 is in MIG mode; nvidia-smi cannot list its MIG devices.
    assert_eq!(smi_out("h100-8x", ["-n", "5"]).ok(), "0,1,3,4,7\n");
    let out = smi_out("h100-8x", ["--devices", "6", "--max-util", "100"]);
    out.code(3).no_stdout();
    out.stderr_has("GPU 6 (NVIDIA H100 80GB HBM3): MIG mode is on");
    let list = smi_out("h100-8x", ["list"]);
    let lines: Vec<&str> = list.ok().lines().collect();
    let at = lines
        .iter()
        .position(|l| l.starts_with("6 "))
        .expect("GPU 6 listed");
    // Not free: nobody here can see what runs on its MIG devices.
    assert!(lines[at].starts_with("6    [!]"), "{:?}", lines[at]);
    assert!(
        lines[at + 1].contains("MIG mode: its MIG devices are not listed"),
        "{:?}",
        lines[at + 1]
    );
}

#[test]
fn processes_and_their_names_come_from_nvidia_smi() {
    let snapshot = json(smi_out("h100-8x", ["list", "--json"]).ok());
    let procs = snapshot["gpus"][2]["processes"].as_array().expect("listed");
    let got: Vec<(u64, &str, u64)> = procs
        .iter()
        .map(|p| {
            (
                p["pid"].as_u64().unwrap(),
                p["name"].as_str().unwrap(),
                p["used_memory"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (11327, "/root/tools/memhog", 2566 << 20),
            (11328, "/root/tools/memhog", 1542 << 20),
            (11345, "./gpu_burn", 15690 << 20),
        ]
    );
    assert_eq!(snapshot["gpus"][0]["processes"], serde_json::json!([]));
    assert_eq!(snapshot["gpus"][0]["memory_total"], 81559u64 << 20);
    assert_eq!(snapshot["gpus"][0]["power_draw"], 69_850);
    assert_eq!(snapshot["gpus"][6]["mig_mode"], true);
    assert_eq!(
        snapshot["gpus"][6]["utilization_gpu"],
        serde_json::Value::Null
    );
}

#[test]
fn unreadable_fields_are_unknown_and_fail_filters_that_need_them() {
    let snapshot = json(smi_out("na-fields", ["list", "--json"]).ok());
    let gtx780 = &snapshot["gpus"][1];
    for key in [
        "memory_used",
        "memory_free",
        "utilization_gpu",
        "utilization_memory",
        "power_draw",
        "power_limit",
        "performance_state",
        "sm_clock",
        "mig_mode",
    ] {
        assert_eq!(gtx780[key], serde_json::Value::Null, "{key}");
    }
    assert_eq!(gtx780["temperature"], 40);
    let process = &snapshot["gpus"][0]["processes"][0];
    assert_eq!(process["pid"], 3107);
    assert_eq!(process["used_memory"], serde_json::Value::Null);

    let out = smi_out("na-fields", ["--max-processes", "1", "--max-power", "100W"]);
    out.code(3).no_stdout();
    out.stderr_has("GPU 0 (NVIDIA GeForce GTX 1080 Ti): power draw unknown");
    assert_eq!(smi_out("na-fields", ["--max-processes", "1"]).ok(), "0\n");
}

#[test]
fn a_driver_warning_before_the_csv_is_not_a_gpu() {
    assert_eq!(smi_out("warning", ["-n", "2"]).ok(), "0,1\n");
    let out = smi_out("warning", ["-v", "list"]);
    out.code(0);
    assert_eq!(
        out.stdout.lines().count(),
        4,
        "header, columns, 2 GPUs: {out:?}"
    );
    out.stderr_has("WARNING: infoROM is corrupted at gpu 0000:04:00.0");
}

#[test]
fn an_old_driver_without_mig_fields_still_works() {
    let snapshot = json(smi_out("old-driver", ["list", "--json"]).ok());
    assert_eq!(snapshot["driver_version"], "418.87.01");
    assert_eq!(snapshot["gpus"][0]["mig_mode"], serde_json::Value::Null);
    assert_eq!(smi_out("old-driver", &[] as &[&str]).ok(), "1\n");
}

#[test]
fn busy_mixed_box() {
    assert_eq!(smi_out("busy-mixed", ["--name", "A100"]).ok(), "3\n");
    let out = smi_out(
        "busy-mixed",
        ["--strategy", "least-used", "-n", "4", "--explain"],
    );
    assert_eq!(out.code, Some(0), "{out:?}");
    out.stderr_has("4 qualify");
}

// ---- failures: exit 4 and a message that says what to do ------------------------------

#[test]
fn a_hung_nvidia_smi_is_killed_at_the_timeout() {
    let hung = out(smi("hang").env("GPUSEL_SMI_TIMEOUT", "300ms"));
    hung.code(4).no_stdout();
    let line = hung.one_error_naming("nvidia-smi did not answer within 300ms");
    assert!(line.contains("GPUSEL_SMI_TIMEOUT"), "{line}");
    // In run mode the job never starts and gpusel's own failure code is used.
    let hung = out(smi("hang")
        .env("GPUSEL_SMI_TIMEOUT", "0.3")
        .args(["--", "sh", "-c", "echo ran"]));
    hung.code(125).no_stdout();
}

#[test]
fn missing_nvidia_smi() {
    let empty = tempfile::tempdir().unwrap();
    let missing = out(smi(SMI_LAB).env("PATH", empty.path()));
    missing.code(4).no_stdout();
    missing.one_error_naming(
        "nvidia-smi not found on PATH: install the NVIDIA driver utilities or set GPUSEL_NVIDIA_SMI",
    );
    let wrong = out(smi(SMI_LAB).env("GPUSEL_NVIDIA_SMI", "/opt/nowhere/nvidia-smi"));
    wrong.code(4).no_stdout();
    wrong.one_error_naming("/opt/nowhere/nvidia-smi (GPUSEL_NVIDIA_SMI) cannot be run");
}

#[test]
fn the_binary_can_be_named() {
    let fake = fake_smi();
    let by_spec = out(gpusel_with_fake(SMI_LAB)
        .env("PATH", path_without_fake())
        .arg("-p")
        .arg(format!("smi:{}", fake.display()))
        .args(["-n", "4"]));
    assert_eq!(by_spec.ok(), "1,3,5,7\n");
    let by_env = out(gpusel_with_fake(SMI_LAB)
        .env("PATH", path_without_fake())
        .env("GPUSEL_NVIDIA_SMI", &fake)
        .args(["-p", "smi", "-n", "4"]));
    assert_eq!(by_env.ok(), "1,3,5,7\n");
}

/// The system's `PATH` (for `sh` and `awk`), without the fake.
fn path_without_fake() -> std::ffi::OsString {
    std::env::var_os("PATH").unwrap_or_default()
}

#[test]
fn driver_not_loaded() {
    let out = smi_out("driver-not-loaded", ["list"]);
    out.code(4).no_stdout();
    let line = out.one_error_naming(
        "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver",
    );
    assert!(line.contains("exit code 9"), "{line}");
}

#[test]
fn a_signal_while_nvidia_smi_hangs_takes_its_process_group_along() {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    use std::os::unix::process::ExitStatusExt;
    // nvidia-smi runs in a group of its own (so that a timeout kills what it
    // started): once, a SIGTERM to gpusel left it running, reparented.
    for (i, (signal, args)) in [
        (Signal::SIGTERM, &["list"][..]),
        (Signal::SIGINT, &["--wait", "--", "true"]),
        (Signal::SIGTERM, &["--", "true"]),
    ]
    .into_iter()
    .enumerate()
    {
        let mut child = smi_std("hang")
            .env("GPUSEL_SMI_TIMEOUT", "1h")
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = Collected::new(child.stderr.take().unwrap());
        // The fake and its `sleep` are running: the hang is real.
        let group = child_group(child.id(), 2);
        if i == 0 {
            // And gpusel says what it waits on.
            let said = stderr.wait_for("the watchdog", |t| t.contains("still waiting"));
            assert!(
                said.contains("still waiting for provider 'smi' to read the GPUs (")
                    && said.contains("the driver may be hung"),
                "{said}"
            );
        }
        kill(Pid::from_raw(child.id() as i32), signal).unwrap();
        let status = child.wait().unwrap();
        assert_eq!(status.signal(), Some(signal as i32), "{args:?}: {status:?}");
        group_gone(group);
    }
}

#[test]
fn an_agent_runs_topo_m_once_whether_it_answers_or_fails() {
    // `topo -m` walks the whole fabric, seconds on a big board: an agent
    // polling every 100 ms runs it once for its GPUs, and a driver that
    // cannot answer it is not asked again (and says so at -vv, every round).
    for (scenario, topology) in [("nvlink-pairs", true), ("lab-8xa100", false)] {
        let dir = tempfile::tempdir().unwrap();
        let calls = dir.path().join("calls");
        let mut cmd = smi_std(scenario);
        cmd.env("FAKE_SMI_CALLS", &calls).arg("-vv");
        let server = common::serve::serve(cmd, &["--interval", "100ms"]);
        let runs = |what: &str| {
            std::fs::read_to_string(&calls)
                .unwrap_or_default()
                .lines()
                .filter(|l| l.starts_with(what))
                .count()
        };
        eventually("the agent to take 6 snapshots", || {
            match runs("--query-gpu") {
                n if n >= 6 => Ok(()),
                n => Err(format!("{n} so far")),
            }
        });
        assert_eq!(runs("topo"), 1, "{scenario}: {}", server.stderr());
        let json = server.get("/api/v1/snapshot").json();
        let links = json["gpus"][1]["links"].as_array().map_or(0, Vec::len);
        assert_eq!(links > 0, topology, "{scenario}: {json:#}");
        if !topology {
            eventually("the failure said on more than one round", || {
                let said = server.stderr();
                match said
                    .matches("GPU topology unknown error=nvidia-smi topo -m failed (exit code 2)")
                    .count()
                {
                    n if n >= 2 => Ok(()),
                    _ => Err(said),
                }
            });
        }
    }
}
