//! What users of the five reference tools type, on NVML (the real
//! provider-nvml over fake-nvml's `lab-8xa100`: GPUs 1, 3, 5 and 7 idle):
//! nvgpu's `available`, counts and ranges, gpuselect's and autocvd's flag
//! spellings, waiting as a configured default, and the failure outputs that
//! scripts read.

mod common;

use common::nvml::*;
use common::*;

#[test]
fn nvgpu_available_and_available_l_1() {
    // `CUDA_VISIBLE_DEVICES=$(nvgpu available)`: memory use alone.
    let all = ["-n", "all", "--strategy", "random", "--max-mem-used", "20%"];
    assert_eq!(nvml_lab_out(all).ok(), "1,2,3,5,7\n");
    let one = nvml_lab_out(["-n", "..1", "--strategy", "random", "--max-mem-used", "20%"]);
    assert!(
        ["1", "2", "3", "5", "7"].contains(&one.ok().trim()),
        "{one:?}"
    );
    // gpusel's own idle rule with every GPU it allows.
    assert_eq!(nvml_lab_out(["-n", "all"]).ok(), "1,3,5,7\n");
    nvml_lab_out(["-n", "2..", "-d", "0,1"])
        .code(3)
        .stderr_has("need at least 2 devices, 1 of 8 visible qualify");
}

#[test]
fn gpuselect_and_autocvd_flags() {
    assert_eq!(
        nvml_lab_out([
            "--util",
            "100",
            "--mem_util",
            "100",
            "--processes",
            "2",
            "-n",
            "all"
        ])
        .ok(),
        "0,1,2,3,4,5,6,7\n"
    );
    assert_eq!(nvml_lab_out(["--num-gpus", "4"]).ok(), "1,3,5,7\n");
    nvml_lab_out(["-n", "5", "-t", "0.2", "-i", "0.05"])
        .code(3)
        .stderr_has("timed out after 200ms waiting: no GPU satisfies the request");
    // A misspelling is pointed at gpuselect's spelling, not at --mem.
    nvml_lab_out(["--mem_uti", "3"])
        .code(2)
        .stderr_has("a similar argument exists: '--mem_util'");
}

#[test]
fn waiting_as_the_default_and_silent_after_a_timeout() {
    let waits = |cmd: &mut assert_cmd::Command| {
        cmd.env("GPUSEL_WAIT", "1")
            .env("GPUSEL_TIMEOUT", "200ms")
            .env("GPUSEL_INTERVAL", "50ms");
    };
    let mut cmd = nvml(fixture("lab-8xa100"));
    waits(&mut cmd);
    out(cmd.args(["-n", "5"]))
        .code(3)
        .stderr_has("timed out after 200ms");
    let mut cmd = nvml(fixture("lab-8xa100"));
    waits(&mut cmd);
    let at_once = out(cmd.args(["-n", "5", "--no-wait"]));
    at_once.code(3);
    assert!(!at_once.stderr.contains("timed out"), "{at_once:?}");
    let mut cmd = nvml(fixture("lab-8xa100"));
    waits(&mut cmd);
    out(cmd.args(["-n", "5", "--silent"])).code(0).no_stdout();
}

#[test]
fn a_failed_json_request_prints_its_error_and_the_verdicts() {
    let failed = nvml_lab_out(["-n", "5", "--json"]);
    failed.code(3);
    let json: serde_json::Value = serde_json::from_str(&failed.stdout).expect("one object");
    assert_eq!(json["error"]["kind"], "no_gpu");
    let verdicts = json["verdicts"].as_array().expect("verdicts");
    assert_eq!(verdicts.len(), 8);
    assert_eq!(verdicts[2]["reasons"][0]["reason"], "processes");
    // The same for the `env` mode.
    let env = nvml_lab_out(["env", "-n", "5", "--json"]);
    let json: serde_json::Value = serde_json::from_str(&env.stdout).expect("one object");
    assert_eq!(json["error"]["kind"], "no_gpu");
}

#[test]
fn list_marks_a_banned_gpu_and_debug_logs_the_decision() {
    let table = out(nvml(fixture("lab-8xa100"))
        .env("GPUSEL_BAN", "5")
        .arg("list"));
    let table = table.ok();
    let row = table
        .lines()
        .find(|l| l.starts_with("5 "))
        .expect("GPU 5's row");
    assert!(row.contains("[x]"), "{row}");
    assert!(
        table.contains("[x] banned by $GPUSEL_BAN (5): never given out"),
        "{table}"
    );

    let log = nvml_lab_out(["-vv", "-n", "2"]);
    let log = &log.code(0).stderr;
    assert!(log.contains("ranked"), "{log}");
    assert!(
        log.contains("GPU 4 (NVIDIA A100-SXM4-80GB): utilization 76%"),
        "{log}"
    );
}
