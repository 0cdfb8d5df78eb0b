//! Messages that once misled: each test pins what the user now reads.

mod common;

use common::*;

#[test]
fn idle_hint_only_when_load_is_what_keeps_gpus_out() {
    // The idle GPUs fail only on the name: allowing load would not help.
    let out = lab_out(["--name", "H100"]);
    out.code(3);
    assert!(!out.stderr.contains("hint:"), "{}", out.stderr);

    // Asking for more idle GPUs than there are: allowing load would help.
    let out = lab_out(["-n", "5"]);
    out.code(3)
        .stderr_has("hint: idle-random takes only idle GPUs; allow some load with --max-util");
}

#[test]
fn flags_before_list_are_said_to_be_meaningless_there() {
    let out = lab_out(["--devices", "3", "list"]);
    out.code(2).no_stdout();
    out.one_error_naming("--devices has no meaning for `list`");
}

#[test]
fn flags_before_env_are_said_to_belong_after_it() {
    let out = lab_out(["--devices", "3", "env"]);
    out.code(2).no_stdout();
    out.one_error_naming("--devices must come after `env`");
}

#[test]
fn duplicate_cvd_is_reported_once() {
    let out = out(lab().env("CUDA_VISIBLE_DEVICES", "1,1"));
    out.code(3);
    assert_eq!(
        out.stderr.matches("listed twice").count(),
        1,
        "{}",
        out.stderr
    );
}

#[test]
fn invalid_cvd_token_warns_once_when_some_devices_remain() {
    let out = out(lab().env("CUDA_VISIBLE_DEVICES", "1,x,3"));
    out.code(0);
    assert_eq!(out.stdout, "1\n");
    assert_eq!(out.stderr.matches("'x'").count(), 1, "{}", out.stderr);
    out.stderr_has("gpusel: warning: CUDA_VISIBLE_DEVICES='1,x,3'");
}

#[test]
fn memory_shortfall_smaller_than_rounding_shows_bytes() {
    // The idle GPUs have 80 GiB - 4 MiB free: "80 GiB free < 80 GiB needed" would be nonsense.
    let out = lab_out(["--mem", "80GiB", "-d", "1"]);
    out.code(3)
        .stderr_has("85895151616 bytes free < 85899345920 bytes needed");
}

#[test]
fn list_rounds_sizes_one_way() {
    let out = lab_out(["list"]);
    let table = out.ok();
    // 30 GiB - 4 MiB is "30 GiB", as 41 GiB is "41 GiB": no "30.0".
    assert!(table.contains("51902  carol    30 GiB"), "{table}");
    assert!(!table.contains(".0 GiB"), "{table}");
}

#[test]
fn clap_errors_carry_the_gpusel_prefix() {
    let out = lab_out(["--strategy", "fastest"]);
    out.code(2)
        .stderr_has("gpusel: error: invalid value 'fastest' for '--strategy <STRATEGY>'");
}
