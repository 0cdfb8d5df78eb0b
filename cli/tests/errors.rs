//! Bad input: each gives its exit code and one clear error line naming the
//! bad value, and never a panic. Plus `--help`.

mod common;

use common::*;

// ---- bad flag values: exit 2 ----------------------------------------------------------

#[test]
fn mem_without_a_number() {
    lab_out(["--mem", "lots"])
        .code(2)
        .no_stdout()
        .one_error_naming("'lots'");
}

#[test]
fn mem_without_a_unit_suggests_one() {
    let out = lab_out(["--mem", "800"]);
    out.code(2).no_stdout();
    let line = out.one_error_naming("'800'");
    assert!(line.contains("800MiB"), "{line}");
}

#[test]
fn count_zero() {
    lab_out(["--count", "0"])
        .code(2)
        .no_stdout()
        .one_error_naming("'0'");
}

#[test]
fn count_not_a_number() {
    lab_out(["--count", "abc"])
        .code(2)
        .no_stdout()
        .one_error_naming("'abc'");
}

#[test]
fn more_gpus_than_the_machine_has() {
    lab_out(["-n", "9"])
        .code(3)
        .no_stdout()
        .one_error_naming("only 8 are visible");
}

#[test]
fn max_util_over_100() {
    lab_out(["--max-util", "101"])
        .code(2)
        .no_stdout()
        .one_error_naming("'101'");
}

#[test]
fn max_power_without_a_number() {
    lab_out(["--max-power", "lots"])
        .code(2)
        .no_stdout()
        .one_error_naming("'lots'");
}

#[test]
fn devices_not_a_device() {
    lab_out(["--devices", "foo"])
        .code(2)
        .no_stdout()
        .one_error_naming("'foo'");
}

#[test]
fn unknown_strategy_lists_the_strategies() {
    let out = lab_out(["--strategy", "fastest"]);
    out.code(2).no_stdout().one_error_naming("'fastest'");
    for name in [
        "idle-random",
        "best-fit",
        "worst-fit",
        "random",
        "least-used",
    ] {
        out.stderr_has(name);
    }
}

#[test]
fn unknown_strategy_from_the_environment() {
    let out = out(lab().env("GPUSEL_STRATEGY", "fastest"));
    out.code(2).no_stdout().one_error_naming("'fastest'");
}

#[test]
fn best_fit_needs_mem() {
    lab_out(["--strategy", "best-fit"])
        .code(2)
        .no_stdout()
        .one_error_naming("--mem");
}

#[test]
fn unknown_provider_lists_the_providers() {
    let out = out(gpusel().args(["--provider", "nope"]));
    out.code(2).no_stdout().one_error_naming("'nope'");
    out.stderr_has("file:PATH");
}

#[test]
fn unknown_flag() {
    lab_out(["--fastest"])
        .code(2)
        .no_stdout()
        .one_error_naming("--fastest");
}

// ---- provider failures: exit 4 -----------------------------------------------------------

#[test]
fn missing_snapshot_file() {
    out(gpusel().args(["--provider", "file:/does/not/exist"]))
        .code(4)
        .no_stdout()
        .one_error_naming("/does/not/exist");
}

#[test]
fn malformed_snapshot_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(&dir, "bad.json", r#"{"gpus": ["#);
    let out = out(gpusel_on(&path));
    out.code(4).no_stdout();
    let line = out.one_error_naming("bad.json");
    assert!(line.contains("not a gpusel snapshot"), "{line}");
}

#[test]
fn snapshot_of_the_wrong_shape() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(&dir, "array.json", "[1, 2, 3]");
    out(gpusel_on(&path))
        .code(4)
        .no_stdout()
        .one_error_naming("not a gpusel snapshot");
}

#[test]
fn snapshot_from_a_newer_gpusel() {
    let dir = tempfile::tempdir().unwrap();
    let text = snapshot_json("h", vec![idle_gpu(0)])
        .replace(r#""schema_version":1"#, r#""schema_version":99"#);
    assert!(text.contains("99"), "{text}");
    let path = write_file(&dir, "future.json", &text);
    let out = out(gpusel_on(&path));
    out.code(4).no_stdout();
    let line = out.one_error_naming("99");
    assert!(line.contains("upgrade gpusel"), "{line}");
}

#[test]
fn snapshot_with_duplicate_uuids() {
    let dir = tempfile::tempdir().unwrap();
    let mut second = idle_gpu(1);
    second["uuid"] = idle_gpu(0)["uuid"].clone();
    let path = write_file(
        &dir,
        "dup.json",
        &snapshot_json("h", vec![idle_gpu(0), second]),
    );
    let uuid = idle_gpu(0)["uuid"].as_str().unwrap().to_string();
    out(gpusel_on(&path))
        .code(4)
        .no_stdout()
        .one_error_naming(&uuid);
}

#[test]
fn snapshot_with_duplicate_uuids_differing_in_case() {
    let dir = tempfile::tempdir().unwrap();
    let mut second = idle_gpu(1);
    second["uuid"] = idle_gpu(0)["uuid"]
        .as_str()
        .unwrap()
        .to_ascii_lowercase()
        .into();
    let path = write_file(
        &dir,
        "dup.json",
        &snapshot_json("h", vec![idle_gpu(0), second]),
    );
    out(gpusel_on(&path))
        .code(4)
        .no_stdout()
        .one_error_naming("UUID");
}

#[test]
fn empty_snapshot_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(&dir, "empty.json", "");
    out(gpusel_on(&path))
        .code(4)
        .no_stdout()
        .one_error_naming("empty.json");
}

#[test]
fn snapshot_path_is_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    out(gpusel_on(dir.path()))
        .code(4)
        .no_stdout()
        .one_error_naming(&dir.path().display().to_string());
}

#[test]
fn default_provider_without_a_gpu_provider() {
    // As on a machine without a driver, even where the tests run on a GPU
    // machine: no libnvidia-ml and no nvidia-smi to be found.
    let empty = tempfile::tempdir().unwrap();
    let nowhere = empty.path().join("libnvidia-ml.so.1");
    for args in [&[][..], &["list"][..], &["env"][..]] {
        let out = out(gpusel()
            .env("PATH", empty.path())
            .env("GPUSEL_NVML_LIB", &nowhere)
            .args(args));
        out.code(4)
            .no_stdout()
            .one_error_naming("--provider file:PATH");
    }
}

#[test]
fn provider_from_the_environment() {
    let out = out(gpusel()
        .env("GPUSEL_PROVIDER", provider(LAB))
        .args(["--devices", "3"]));
    assert_eq!(out.ok(), "3\n");
}

#[test]
fn snapshot_without_gpus() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(&dir, "none.json", &snapshot_json("h", vec![]));
    out(gpusel_on(&path))
        .code(3)
        .no_stdout()
        .one_error_naming("no GPU");
}

#[test]
fn snapshot_with_only_identity_fields() {
    // Unknown measurements never count as idle: idle-random refuses, and the
    // reason says what is unknown.
    let dir = tempfile::tempdir().unwrap();
    let gpu = serde_json::json!({"index": 0, "uuid": "GPU-1234", "name": "Tesla T4"});
    let path = write_file(&dir, "bare.json", &snapshot_json("h", vec![gpu]));
    out(gpusel_on(&path)).code(3).stderr_has("unknown");
    assert_eq!(
        out(gpusel_on(&path).args(["--strategy", "random"])).ok(),
        "0\n"
    );
}

// ---- --help -----------------------------------------------------------------------------

#[test]
fn help_lists_strategies_and_exit_codes() {
    let out = out(gpusel().arg("--help"));
    let help = out.ok();
    for name in [
        "idle-random",
        "best-fit",
        "worst-fit",
        "random",
        "least-used",
    ] {
        assert!(help.contains(name), "--help lacks {name}");
    }
    for code in ["125", "126", "127", "Exit codes"] {
        assert!(help.contains(code), "--help lacks {code}");
    }
}

#[test]
fn version() {
    let out = out(gpusel().arg("--version"));
    assert!(out.ok().starts_with("gpusel "), "{out:#?}");
}

// ---- the libraries say what went wrong, the CLI names the flag ------------------------

#[test]
fn library_errors_get_the_cli_flag_that_gets_past_them() {
    let line = lab_out(["--strategy", "best-fit"])
        .code(2)
        .one_error_naming("strategy 'best-fit'")
        .to_string();
    assert!(
        line.ends_with("needs the job's memory: add --mem SIZE (e.g. --mem 20GiB)"),
        "{line}"
    );
    let line = lab_out(["--devices", "42"])
        .code(3)
        .one_error_naming("--devices 42: no such device on this machine")
        .to_string();
    assert!(line.ends_with("; see `gpusel list`"), "{line}");
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("not-a-dir");
    std::fs::write(&file, "").unwrap();
    let line = lab_out([std::ffi::OsStr::new("--lock-dir"), file.as_os_str()])
        .code(5)
        .one_error_naming("exists and is not a directory")
        .to_string();
    assert!(
        line.ends_with("; remove it, or choose another with --lock-dir"),
        "{line}"
    );
    let missing = tmp.path().join("nope.json");
    let line = out(gpusel_on(&missing))
        .code(4)
        .one_error_naming("nope.json")
        .to_string();
    assert!(
        line.ends_with("; check the path given to --provider file:PATH"),
        "{line}"
    );
}

// ---- snapshot files that are not files ---------------------------------------------

#[test]
fn a_fifo_as_snapshot_is_refused_at_once_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("gpus.fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    // No writer ever comes: reading it once blocked for good. The timeout
    // only turns a regression into a failure instead of a hung suite.
    for args in [&["list"][..], &["--", "true"]] {
        let seen = out(gpusel_on(&fifo).args(args).timeout(PATIENCE));
        seen.no_stdout();
        let line = seen.one_error_naming("gpus.fifo");
        assert!(
            line.contains("a FIFO (named pipe), not a regular file"),
            "{line}"
        );
        assert!(line.contains("--provider file:PATH"), "{line}");
    }
}

#[test]
fn dev_zero_and_oversized_snapshots_are_refused() {
    let zero = out(gpusel_on("/dev/zero").arg("list").timeout(PATIENCE));
    zero.code(4).no_stdout();
    zero.one_error_naming("/dev/zero: it is a character device, not a regular file");
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.json");
    // Sparse: 17 MiB of zeros that take no disk space.
    std::fs::File::create(&big)
        .unwrap()
        .set_len(17 << 20)
        .unwrap();
    let big = out(gpusel_on(&big).arg("list").timeout(PATIENCE));
    big.code(4).no_stdout();
    big.one_error_naming("is larger than 16 MiB");
}
