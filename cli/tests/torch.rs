//! `--provider torch`, the deprecated libtorch provider (issue 8), as a user
//! meets it. The default build must say how to get it; a `--features torch`
//! build must warn about its cost and, on a machine without a GPU (CI), fail
//! cleanly with exit 4 because CUDA is not available, which it can only say
//! if libtorch_cuda really was linked in.
//!
//! `.ci/run` runs this file in both builds. On a GPU machine, set
//! `GPUSEL_TEST_HAS_GPU=1` and compare `list` with nvidia-smi by hand.

mod common;

use common::*;

#[cfg(feature = "torch")]
const DEPRECATION: &str = "gpusel: warning: --provider torch is deprecated: libtorch creates a CUDA context on every GPU it queries, \
     which holds hundreds of MiB of that GPU's memory while gpusel runs; use --provider nvml or --provider smi";

#[cfg(feature = "torch")]
fn has_gpu() -> bool {
    std::env::var_os("GPUSEL_TEST_HAS_GPU").is_some()
}

#[cfg(not(feature = "torch"))]
#[test]
fn without_the_feature_it_says_how_to_rebuild() {
    for args in [&["list"][..], &[][..], &["env"][..]] {
        let out = out(gpusel().args(["--provider", "torch"]).args(args));
        out.code(4).no_stdout();
        assert_eq!(
            out.stderr,
            "gpusel: error: provider 'torch' is unavailable: gpusel was built without torch support; rebuild with --features torch\n",
            "{args:?}"
        );
    }
    // Run mode keeps its own exit code for gpusel's failures, and runs nothing.
    let run = common::out(gpusel().args(["--provider", "torch", "--", "echo", "ran"]));
    run.code(125).no_stdout();
    run.one_error_naming("rebuild with --features torch");
}

#[cfg(feature = "torch")]
#[test]
fn without_a_gpu_it_warns_then_says_cuda_is_not_available() {
    if has_gpu() {
        return with_a_gpu_it_lists_every_gpu_with_memory_only();
    }
    let out = out(gpusel().args(["--provider", "torch", "list"]));
    out.code(4).no_stdout();
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{out:#?}");
    assert_eq!(lines[0], DEPRECATION);
    // "libtorch sees no CUDA device", never "libtorch_cuda is not linked":
    // the latter means the link dropped libtorch_cuda and CUDA would be
    // missing on a GPU machine too.
    assert!(
        lines[1].starts_with(
            "gpusel: error: provider 'torch' is unavailable: CUDA is not available to libtorch (libtorch sees no CUDA device: "
        ),
        "{out:#?}"
    );
    assert!(
        lines[1].ends_with(
            "); run on a machine with an NVIDIA GPU and driver, or use --provider smi or --provider file:PATH"
        ),
        "{out:#?}"
    );

    let run = common::out(gpusel().args(["--provider", "torch", "--", "echo", "ran"]));
    run.code(125).no_stdout();
    run.one_error_naming("CUDA is not available to libtorch");
}

#[cfg(feature = "torch")]
fn with_a_gpu_it_lists_every_gpu_with_memory_only() {
    let out = out(gpusel().args(["--provider", "torch", "--json", "list"]));
    out.code(0);
    assert_eq!(out.stderr.trim_end(), DEPRECATION);
    let snapshot: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(snapshot["provider"], "torch");
    let gpus = snapshot["gpus"].as_array().unwrap();
    assert!(!gpus.is_empty(), "{out:#?}");
    for gpu in gpus {
        assert!(gpu["uuid"].as_str().unwrap().starts_with("GPU-"), "{gpu}");
        assert!(gpu["memory_total"].as_u64().unwrap() > 0, "{gpu}");
        assert!(gpu["memory_free"].as_u64().is_some(), "{gpu}");
        for none in [
            "memory_used",
            "utilization_gpu",
            "temperature",
            "power_draw",
            "processes",
        ] {
            assert!(gpu[none].is_null(), "{none} should be None: {gpu}");
        }
    }
}

#[test]
fn torch_takes_no_argument() {
    let out = out(gpusel().args(["--provider", "torch:0", "list"]));
    out.code(2).no_stdout();
    out.one_error_naming("torch (it takes no argument)");
    assert!(!out.stderr.contains("deprecated"), "{out:#?}");
}

#[test]
fn auto_never_tries_torch() {
    // Whatever auto finds here, it never creates CUDA contexts behind the user's back.
    let out = out(gpusel().args(["--provider", "auto", "list"]));
    out.no_panic();
    assert!(!out.stderr.contains("torch"), "{out:#?}");
}

#[test]
fn unknown_provider_lists_torch() {
    let out = out(gpusel().args(["--provider", "nope"]));
    out.code(2).no_stdout();
    out.one_error_naming("smi[:PATH], torch");
}

/// What the torch provider reports (memory only) replayed from a file: the
/// README's advice holds, memory strategies work and idle-random says why not.
#[test]
fn a_memory_only_snapshot_selects_by_memory() {
    let dir = tempfile::tempdir().unwrap();
    let gpu = |i: u32, free: u64| {
        format!(
            r#"{{"index":{i},"uuid":"GPU-{i}0000000-0000-0000-0000-000000000000","name":"NVIDIA H100 80GB HBM3","memory_total":85520809984,"memory_free":{free}}}"#
        )
    };
    let snapshot = format!(
        r#"{{"schema_version":1,"host":"h","time":"2026-11-22T03:00:00Z","provider":"torch","gpus":[{},{}]}}"#,
        gpu(0, 10 << 30),
        gpu(1, 70 << 30)
    );
    let path = write_file(&dir, "torch.json", &snapshot);
    for strategy in ["worst-fit", "best-fit"] {
        let out = out(gpusel_on(&path).args(["--strategy", strategy, "--mem", "20GiB"]));
        assert_eq!(out.ok(), "1\n", "{strategy}");
    }
    let out = out(gpusel_on(&path));
    out.code(3).no_stdout();
    out.stderr_has("process list unknown (the provider does not report it)");
}
