//! The NVML and nvidia-smi providers, each through its real code and its
//! fake driver, on the same lab machine (`lab-8xa100` in both fixture sets):
//! a user must get the same picks, the same rejections for the same reasons
//! and the same exit codes whichever provider reads the GPUs. (Each is also
//! compared with the snapshot file in `nvml.rs` and `smi.rs`.)

mod common;

use common::nvml::{fixture, nvml_out};
use common::smi::{SMI_LAB, smi_out};

#[track_caller]
fn same(args: &[&str]) -> String {
    let by_nvml = nvml_out(fixture("lab-8xa100"), args);
    let by_smi = smi_out(SMI_LAB, args);
    by_nvml.no_panic();
    by_smi.no_panic();
    assert_eq!(
        (by_nvml.code, &by_nvml.stdout, &by_nvml.stderr),
        (by_smi.code, &by_smi.stdout, &by_smi.stderr),
        "gpusel {args:?}: nvml (left) and smi (right) differ"
    );
    by_nvml.stdout
}

#[test]
fn every_mode_and_strategy_agrees() {
    for seed in ["0", "3", "11"] {
        same(&["--seed", seed]);
        same(&["-n", "2", "--seed", seed]);
        same(&["env", "-n", "2", "--seed", seed]);
        same(&[
            "--seed",
            seed,
            "--",
            "sh",
            "-c",
            "echo $CUDA_VISIBLE_DEVICES",
        ]);
    }
    for strategy in ["best-fit", "worst-fit", "least-used", "random"] {
        same(&[
            "--strategy",
            strategy,
            "--mem",
            "20GiB",
            "--max-util",
            "100",
            "--max-mem-util",
            "100",
            "--max-processes",
            "9",
            "-n",
            "3",
            "--seed",
            "5",
        ]);
    }
    assert_eq!(same(&["-n", "4"]), "1,3,5,7\n");
}

#[test]
fn rejections_and_failures_agree() {
    same(&["-n", "5", "--explain"]);
    for seed in ["1", "2"] {
        same(&[
            "--explain",
            "--max-util",
            "50",
            "--max-processes",
            "1",
            "-n",
            "2",
            "--seed",
            seed,
        ]);
        same(&[
            "--max-power",
            "100W",
            "--max-util",
            "100",
            "-n",
            "2",
            "--seed",
            seed,
        ]);
    }
    same(&["--name", "H100"]);
    same(&["-d", "0", "--", "true"]);
    same(&["--silent", "-n", "8"]);
}
