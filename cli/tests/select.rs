//! Print mode (`gpusel` prints `3`): strategies, filters, `--json`,
//! `--explain`, `--silent`, and `CUDA_VISIBLE_DEVICES` set by the caller.

mod common;

use std::collections::BTreeSet;

use common::*;

// ---- default strategy: idle-random ------------------------------------------

#[test]
fn default_prints_one_idle_gpu_and_a_newline() {
    let out = lab_out::<_, &str>([]);
    let stdout = out.ok();
    assert!(
        LAB_IDLE.iter().any(|g| stdout == format!("{g}\n")),
        "expected one of 1,3,5,7 and a newline, got {stdout:?}"
    );
}

#[test]
fn a_seed_reproduces_the_choice() {
    for seed in ["0", "7", "42", "18446744073709551615"] {
        let by_env = || out(lab().env("GPUSEL_SEED", seed)).ok().to_string();
        let by_flag = || lab_out(["--seed", seed]).ok().to_string();
        let first = by_env();
        assert!(LAB_IDLE.contains(&tokens(&first)[0]), "{first:?}");
        assert_eq!(by_env(), first, "GPUSEL_SEED={seed} twice");
        assert_eq!(by_flag(), first, "--seed {seed} and GPUSEL_SEED={seed}");
        assert_eq!(by_flag(), first, "--seed {seed} twice");
    }
}

#[test]
fn different_seeds_spread_over_the_idle_gpus() {
    let chosen: BTreeSet<String> = (0..20)
        .map(|seed| lab_out(["--seed", &seed.to_string()]).ok().to_string())
        .collect();
    for c in &chosen {
        assert!(LAB_IDLE.iter().any(|g| *c == format!("{g}\n")), "{c:?}");
    }
    assert!(chosen.len() >= 2, "20 seeds all chose {chosen:?}");
}

#[test]
fn unseeded_runs_spread_over_the_idle_gpus() {
    // 40 runs all landing on one of 4 GPUs by chance: probability 4^-39.
    let mut chosen = BTreeSet::new();
    for _ in 0..40 {
        let stdout = lab_out::<_, &str>([]).ok().to_string();
        assert!(
            LAB_IDLE.iter().any(|g| stdout == format!("{g}\n")),
            "{stdout:?}"
        );
        chosen.insert(stdout);
        if chosen.len() >= 2 {
            return;
        }
    }
    panic!("40 unseeded runs always chose {chosen:?}");
}

#[test]
fn two_gpus_are_distinct_idle_and_ascending() {
    for seed in 0..10 {
        let out = lab_out(["-n", "2", "--seed", &seed.to_string()]);
        let got = tokens(out.ok());
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got.iter().all(|g| LAB_IDLE.contains(g)), "{got:?}");
        let n: Vec<u32> = got.iter().map(|g| g.parse().unwrap()).collect();
        assert!(n[0] < n[1], "not distinct and ascending: {got:?}");
    }
}

#[test]
fn four_gpus_are_all_the_idle_ones() {
    assert_eq!(lab_out(["-n", "4"]).ok(), "1,3,5,7\n");
    assert_eq!(lab_out(["--count", "4", "--seed", "3"]).ok(), "1,3,5,7\n");
}

// ---- -n all and ranges ----------------------------------------------------------

#[test]
fn all_takes_every_gpu_that_qualifies() {
    assert_eq!(lab_out(["-n", "all"]).ok(), "1,3,5,7\n");
    assert_eq!(
        lab_out(["-n", "all", "--max-processes", "1"]).ok(),
        "1,2,3,5,7\n",
        "the notebook's GPU too once one process is allowed"
    );
    // random has no idle rule of its own: every GPU passes.
    let json: serde_json::Value =
        serde_json::from_str(lab_out(["-n", "all", "--json", "--strategy", "random"]).ok())
            .expect("JSON");
    assert_eq!(json["devices"].as_array().map(Vec::len), Some(8));
}

#[test]
fn a_range_takes_as_many_as_qualify_within_it() {
    for seed in 0..6 {
        let seed = seed.to_string();
        let got = tokens(lab_out(["-n", "2..3", "--seed", &seed]).ok()).len();
        assert_eq!(got, 3, "as many as qualify, up to 3");
    }
    assert_eq!(tokens(lab_out(["-n", "..9"]).ok()).len(), 4);
    assert_eq!(lab_out(["-n", "4.."]).ok(), "1,3,5,7\n");
    lab_out(["-n", "5.."])
        .code(3)
        .no_stdout()
        .stderr_has("need at least 5 devices, 4 of 8 visible qualify");
    lab_out(["-n", "4..2"])
        .code(2)
        .stderr_has("'4..2' is not a count: the range ends below its start");
    lab_out(["-n", "0"])
        .code(2)
        .stderr_has("a count is at least 1");
}

#[test]
fn all_never_mixes_mig_devices_into_a_set() {
    let out = mig_out(["-n", "all", "--explain"]);
    assert_eq!(out.code(0).stdout, "1\n", "only the whole H100");
    out.stderr_has("MIG device, and a process can use only one (asked for all devices)");
    // One MIG device is fine when at most one is asked for.
    let one = mig_out(["-n", "..1", "-x", "1"]);
    assert!(MIG_IDLE_UUIDS.contains(&tokens(one.ok())[0]), "{one:?}");
}

#[test]
fn silent_also_covers_a_timed_out_wait() {
    lab_out([
        "-n",
        "5",
        "--silent",
        "--timeout",
        "200ms",
        "--interval",
        "50ms",
    ])
    .code(0)
    .no_stdout();
}

#[test]
fn a_failed_json_request_prints_one_object_with_the_error() {
    let failed = lab_out(["-n", "5", "--json"]);
    failed.code(3).stderr_has("no GPU satisfies the request");
    let json: serde_json::Value = serde_json::from_str(&failed.stdout).expect("one JSON object");
    assert_eq!(json["error"]["kind"], "no_gpu");
    assert!(
        json["error"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("no GPU satisfies the request: need 5 devices"))
    );
    let verdicts = json["verdicts"].as_array().expect("every device's verdict");
    assert_eq!(verdicts.len(), 8);
    assert_eq!(verdicts[0]["reasons"][0]["reason"], "utilization");
    assert_eq!(verdicts[1]["reasons"], serde_json::json!([]));

    let missing = out(gpusel().args(["-p", "file:/nonexistent.json", "--json", "list"]));
    missing.code(4);
    let json: serde_json::Value = serde_json::from_str(&missing.stdout).expect("one JSON object");
    assert_eq!(json["error"]["kind"], "provider");
    assert!(json.get("verdicts").is_none());
}

#[test]
fn debug_logging_tells_the_decision() {
    let out = lab_out(["-vv", "-n", "2"]);
    let log = &out.code(0).stderr;
    for needle in [
        "GPU 0 (NVIDIA A100-SXM4-80GB): utilization 98%",
        "filtered",
        "ranked",
        "leased",
    ] {
        assert!(log.contains(needle), "-vv lacks {needle:?}:\n{log}");
    }
}

// ---- other strategies ----------------------------------------------------------

#[test]
fn best_fit_takes_the_least_free_gpu_that_fits() {
    // Free: 0 17.5 GiB, 4 9 GiB (too small); 6 59.9 GiB; 2 76.8 GiB; 1,3,5,7 80 GiB.
    let out = lab_out([
        "--strategy",
        "best-fit",
        "--mem",
        "50GiB",
        "--max-util",
        "100",
        "--max-mem-util",
        "100",
        "--max-processes",
        "9",
    ]);
    assert_eq!(out.ok(), "6\n");
}

#[test]
fn worst_fit_takes_the_most_free_gpu_lowest_index_on_ties() {
    assert_eq!(lab_out(["--strategy", "worst-fit"]).ok(), "1\n");
    assert_eq!(lab_out(["-s", "worst-fit", "--exclude", "1"]).ok(), "3\n");
}

#[test]
fn least_used_takes_idle_gpus_then_the_one_with_less_free_memory() {
    // Utilization 0% on 1,2,3,5,7; of those 2 has the least free memory, so
    // it comes fifth, ahead of 6 (45%), 4 (76%) and 0 (98%).
    for seed in 0..5 {
        let seed = seed.to_string();
        let four = lab_out([
            "--strategy",
            "least-used",
            "--max-processes",
            "9",
            "-n",
            "4",
            "--seed",
            &seed,
        ]);
        assert_eq!(four.ok(), "1,3,5,7\n");
        let five = lab_out([
            "--strategy",
            "least-used",
            "--max-processes",
            "9",
            "-n",
            "5",
            "--seed",
            &seed,
        ]);
        assert_eq!(five.ok(), "1,2,3,5,7\n");
    }
    let six = lab_out(["-s", "least-used", "--max-processes", "9", "-n", "6"]);
    assert_eq!(six.ok(), "1,2,3,5,6,7\n");
}

#[test]
fn strategy_from_the_environment() {
    let out = out(lab().env("GPUSEL_STRATEGY", "worst-fit"));
    assert_eq!(out.ok(), "1\n");
}

// ---- filters ---------------------------------------------------------------------

#[test]
fn name_filter_matches_case_insensitively() {
    let stdout = lab_out(["--name", "A100"]).ok().to_string();
    assert!(LAB_IDLE.contains(&tokens(&stdout)[0]), "{stdout:?}");
    let stdout = lab_out(["--name", "a100-sxm4"]).ok().to_string();
    assert!(LAB_IDLE.contains(&tokens(&stdout)[0]), "{stdout:?}");
}

#[test]
fn name_that_matches_nothing_exits_3_with_the_reason() {
    lab_out(["--name", "H100"])
        .code(3)
        .no_stdout()
        .stderr_has("gpusel: error:")
        .stderr_has("does not contain 'H100'");
}

#[test]
fn devices_restricts_the_choice() {
    assert_eq!(lab_out(["--devices", "3"]).ok(), "3\n");
    assert_eq!(lab_out(["-d", "3"]).ok(), "3\n");
    assert_eq!(lab_out(["-d", "5,3", "-n", "2"]).ok(), "3,5\n");
    assert_eq!(lab_out(["-d", "5", "-d", "3", "-n", "2"]).ok(), "3,5\n");
}

#[test]
fn devices_naming_a_busy_gpu_exits_3() {
    lab_out(["--devices", "0"])
        .code(3)
        .no_stdout()
        .stderr_has("utilization 98% > 0% allowed");
}

#[test]
fn devices_naming_a_missing_gpu_exits_3() {
    lab_out(["--devices", "9"])
        .code(3)
        .no_stdout()
        .one_error_naming("--devices 9");
}

#[test]
fn exclude_removes_gpus() {
    assert_eq!(lab_out(["--exclude", "1,3,5", "-n", "1"]).ok(), "7\n");
    assert_eq!(lab_out(["-x", "1", "-x", "3,5"]).ok(), "7\n");
}

#[test]
fn devices_by_uuid_prefix() {
    assert_eq!(lab_out(["--devices", "GPU-d6a0"]).ok(), "7\n");
    assert_eq!(lab_out(["--devices", "gpu-D6A0F4B8"]).ok(), "7\n");
}

#[test]
fn uuid_flag_writes_the_full_uuid() {
    assert_eq!(
        lab_out(["--uuid", "--devices", "7"]).ok(),
        format!("{LAB_GPU7_UUID}\n")
    );
}

#[test]
fn max_power_keeps_only_gpus_drawing_little_enough() {
    // Power draw: 1 61.244 W, 3 59.871 W, 5 60.310 W, 7 62.005 W; the rest more.
    let mut chosen = BTreeSet::new();
    for seed in 0..24 {
        let out = lab_out([
            "--max-power",
            "61W",
            "--strategy",
            "random",
            "--seed",
            &seed.to_string(),
        ]);
        let stdout = out.ok().to_string();
        assert!(
            stdout == "3\n" || stdout == "5\n",
            "seed {seed}: {stdout:?}"
        );
        chosen.insert(stdout);
    }
    assert_eq!(chosen.len(), 2, "only {chosen:?} over 24 seeds");
    assert_eq!(
        lab_out(["--max-power", "61W", "-s", "random", "-n", "2"]).ok(),
        "3,5\n"
    );
}

#[test]
fn mem_filter_with_units() {
    // Every idle GPU has 85895151616 B (just under 80 GiB) free.
    let stdout = lab_out(["--mem", "79GiB"]).ok().to_string();
    assert!(LAB_IDLE.contains(&tokens(&stdout)[0]), "{stdout:?}");
    lab_out(["--mem", "80GiB"])
        .code(3)
        .stderr_has("free < 80 GiB needed");
}

// ---- --json ------------------------------------------------------------------------

#[test]
fn json_is_the_selection_with_every_verdict() {
    let out = lab_out(["--json", "--seed", "1"]);
    let v: serde_json::Value = serde_json::from_str(out.ok()).expect("valid JSON");
    assert_eq!(v["schema_version"], 1);
    assert_eq!(v["host"], "lab-gpu01");
    assert_eq!(v["strategy"], "idle-random");
    let cvd = v["cuda_visible_devices"].as_str().expect("a string");
    assert!(LAB_IDLE.contains(&cvd), "{cvd}");
    assert_eq!(v["cuda_device_order"], "PCI_BUS_ID");

    let devices = v["devices"].as_array().expect("devices");
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0]["index"].to_string(), cvd);
    assert_eq!(devices[0]["token"], cvd);
    let snapshot: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(LAB).unwrap()).unwrap();
    let idx: usize = cvd.parse().unwrap();
    assert_eq!(devices[0]["uuid"], snapshot["gpus"][idx]["uuid"]);

    let verdicts = v["verdicts"].as_array().expect("verdicts");
    assert_eq!(verdicts.len(), 8);
    for (i, verdict) in verdicts.iter().enumerate() {
        assert_eq!(verdict["device"], i.to_string());
        assert_eq!(verdict["uuid"], snapshot["gpus"][i]["uuid"]);
        assert_eq!(verdict["selected"], i == idx, "{verdict}");
    }
    assert_eq!(
        verdicts[2]["reasons"],
        serde_json::json!([{"reason": "processes", "count": 1, "max": 0}])
    );
    assert_eq!(
        verdicts[0]["reasons"][0],
        serde_json::json!({"reason": "utilization", "value": 98, "max": 0})
    );
    for i in [1, 3, 5, 7] {
        assert_eq!(verdicts[i]["reasons"], serde_json::json!([]));
    }
}

#[test]
fn json_and_text_agree_for_a_seed() {
    let text = lab_out(["--seed", "11", "-n", "2"]).ok().to_string();
    let json = lab_out(["--seed", "11", "-n", "2", "--json"]);
    let v: serde_json::Value = serde_json::from_str(json.ok()).unwrap();
    assert_eq!(
        format!("{}\n", v["cuda_visible_devices"].as_str().unwrap()),
        text
    );
}

// ---- --explain ----------------------------------------------------------------------

#[test]
fn explain_lists_every_gpu_on_stderr() {
    let out = lab_out(["--explain", "--seed", "5"]);
    out.code(0);
    let chosen = tokens(&out.stdout)[0].to_string();
    assert!(LAB_IDLE.contains(&chosen.as_str()), "{out:#?}");
    let err = &out.stderr;
    assert!(
        err.contains("8 devices, 4 qualify, strategy idle-random"),
        "{err}"
    );
    for i in 0..8 {
        let prefix = format!("GPU {i} (NVIDIA A100-SXM4-80GB): ");
        let lines: Vec<&str> = err.lines().filter(|l| l.contains(&prefix)).collect();
        assert_eq!(lines.len(), 1, "GPU {i} not listed once: {err}");
        let verdict = &lines[0][lines[0].find(&prefix).unwrap() + prefix.len()..];
        if i.to_string() == chosen {
            assert_eq!(verdict, "selected");
        } else if LAB_IDLE.contains(&i.to_string().as_str()) {
            assert_eq!(verdict, "qualifies");
        } else {
            assert!(verdict.contains("allowed"), "GPU {i}: {verdict}");
        }
    }
    assert!(
        err.contains("GPU 0 (NVIDIA A100-SXM4-80GB): utilization 98% > 0% allowed"),
        "{err}"
    );
    assert!(
        err.contains("GPU 2 (NVIDIA A100-SXM4-80GB): 1 process > 0 allowed"),
        "{err}"
    );
    assert!(!err.contains("error"), "{err}");
}

#[test]
fn explain_on_failure_shows_every_gpu() {
    let out = lab_out(["--explain", "--name", "H100"]);
    out.code(3).no_stdout();
    for i in 0..8 {
        out.stderr_has(&format!("GPU {i} (NVIDIA A100-SXM4-80GB): "));
    }
}

// ---- --silent -----------------------------------------------------------------------

#[test]
fn silent_prints_nothing_when_no_gpu_fits() {
    let out = lab_out(["--name", "H100", "--silent"]);
    assert_eq!(out.ok(), "");
}

#[test]
fn silent_still_prints_a_choice() {
    assert_eq!(lab_out(["--silent", "--devices", "3"]).ok(), "3\n");
}

#[test]
fn silent_does_not_hide_provider_failures() {
    out(gpusel().args(["-p", "file:/does/not/exist", "--silent"]))
        .code(4)
        .stderr_has("/does/not/exist");
}

#[test]
fn silent_does_not_hide_usage_errors() {
    lab_out(["--silent", "--strategy", "best-fit"])
        .code(2)
        .stderr_has("--mem");
}

// ---- CUDA_VISIBLE_DEVICES set by the caller ---------------------------------------------

#[test]
fn cvd_ordinals_restrict_the_choice() {
    for seed in 0..5 {
        let out = out(lab()
            .env("CUDA_VISIBLE_DEVICES", "0,3")
            .args(["--seed", &seed.to_string()]));
        assert_eq!(out.ok(), "3\n");
    }
}

#[test]
fn cvd_uuids_are_written_back_as_given() {
    let out = out(lab().env("CUDA_VISIBLE_DEVICES", "GPU-c8d2b6e0,GPU-5f2c"));
    assert_eq!(out.ok(), "GPU-c8d2b6e0\n");
}

#[test]
fn cvd_order_is_kept() {
    let out = out(lab().env("CUDA_VISIBLE_DEVICES", "5, 3").args(["-n", "2"]));
    assert_eq!(out.ok(), "5,3\n");
}

#[test]
fn cvd_invalid_token_warns_and_ends_the_list() {
    let out = out(lab().env("CUDA_VISIBLE_DEVICES", "1,x,3").args(["-n", "2"]));
    out.code(3).no_stdout();
    let warning = out
        .stderr
        .lines()
        .find(|l| l.contains("warning"))
        .unwrap_or_else(|| panic!("no warning: {out:#?}"));
    assert!(warning.contains("'x'"), "{warning}");
    out.stderr_has("only 1 is visible");
}

#[test]
fn cvd_invalid_token_still_allows_the_devices_before_it() {
    let out = out(lab().env("CUDA_VISIBLE_DEVICES", "1,x,3"));
    out.code(0).stderr_has("'x'");
    assert_eq!(out.stdout, "1\n");
}

#[test]
fn cvd_empty_hides_every_device() {
    for value in ["", "-1"] {
        let out = out(lab().env("CUDA_VISIBLE_DEVICES", value));
        out.code(3)
            .no_stdout()
            .one_error_naming("hides every device");
        assert!(!out.stderr.contains("warning"), "{out:#?}");
    }
}

#[test]
fn cvd_duplicate_hides_every_device() {
    out(lab().env("CUDA_VISIBLE_DEVICES", "1,1"))
        .code(3)
        .no_stdout()
        .stderr_has("listed twice");
}

// ---- MIG --------------------------------------------------------------------------------

#[test]
fn mig_gpu_in_cvd_gives_an_idle_mig_device() {
    let mut seen = BTreeSet::new();
    for seed in 0..16 {
        let out = out(mig()
            .env("CUDA_VISIBLE_DEVICES", "0")
            .args(["--seed", &seed.to_string()]));
        let stdout = out.ok().to_string();
        let token = tokens(&stdout)[0].to_string();
        assert!(token.starts_with("MIG-"), "{token}");
        assert!(MIG_IDLE_UUIDS.contains(&token.as_str()), "{token}");
        seen.insert(token);
    }
    assert_eq!(seen.len(), 2, "only {seen:?} over 16 seeds");
}

#[test]
fn mig_devices_by_label() {
    assert_eq!(
        mig_out(["--devices", "0:2"]).ok(),
        format!("{}\n", MIG_IDLE_UUIDS[1])
    );
    mig_out(["--devices", "0:0"])
        .code(3)
        .stderr_has("1 process > 0 allowed");
}

#[test]
fn mig_devices_cannot_be_combined() {
    mig_out(["-n", "2"])
        .code(3)
        .no_stdout()
        .stderr_has("a process can use only one");
}

#[test]
fn mig_snapshot_whole_gpu_is_an_index() {
    assert_eq!(mig_out(["--devices", "1"]).ok(), "1\n");
}

// ---- a provider that reports no memory utilization --------------------------

/// Two GPUs as a plugin or another non-NVML source reports them: GPU
/// utilization and processes, but no memory-bandwidth utilization. GPU 1 runs
/// a kernel.
fn without_memory_utilization(tmp: &tempfile::TempDir) -> std::path::PathBuf {
    let mut gpus: Vec<_> = (0..2)
        .map(|i| {
            let mut gpu = idle_gpu(i);
            gpu.as_object_mut().unwrap().remove("utilization_memory");
            gpu
        })
        .collect();
    gpus[1]["utilization_gpu"] = serde_json::json!(55);
    write_file(tmp, "no-mem-util.json", &snapshot_json("plugin-box", gpus))
}

#[test]
fn an_idle_gpu_without_memory_utilization_is_taken_by_default_only() {
    let tmp = tempfile::tempdir().unwrap();
    let path = without_memory_utilization(&tmp);
    for seed in ["0", "1", "2", "3"] {
        assert_eq!(out(gpusel_on(&path).args(["--seed", seed])).ok(), "0\n");
    }
    let list = out(gpusel_on(&path).arg("list"));
    let lines: Vec<&str> = list.ok().lines().collect();
    assert!(lines[2].starts_with("0    [ ]"), "{lines:#?}");
    assert!(lines[3].starts_with("1    [~]"), "{lines:#?}");

    // A maximum the user sets wants the value.
    let strict = out(gpusel_on(&path).args(["--max-mem-util", "50"]));
    strict.code(3).no_stdout().stderr_has(
        "GPU 0 (NVIDIA A100-SXM4-80GB): memory utilization unknown (the provider does not report it)",
    );
}

#[test]
fn filters_relaxed_to_100_accept_unreported_utilization() {
    let tmp = tempfile::tempdir().unwrap();
    let mut gpu = idle_gpu(0);
    let fields = gpu.as_object_mut().unwrap();
    fields.remove("utilization_gpu");
    fields.remove("utilization_memory");
    let path = write_file(&tmp, "no-util.json", &snapshot_json("box", vec![gpu]));
    out(gpusel_on(&path)).code(3).stderr_has(
        "GPU 0 (NVIDIA A100-SXM4-80GB): utilization unknown (the provider does not report it)",
    );
    assert_eq!(
        out(gpusel_on(&path).args(["--max-util", "100", "--max-mem-util", "100"])).ok(),
        "0\n"
    );
}
