//! Helpers for running gpusel with `--provider smi` against the fake
//! `nvidia-smi` in `tests/fixtures/smi/` (see the README there). The provider
//! code is the real one: it finds the fake first on `PATH` and runs it.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use super::{Out, gpusel, gpusel_std, out};

/// The directory holding the fake `nvidia-smi` and its scenarios.
pub const SMI_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/smi");

/// The scenario equivalent to `examples/lab-8xa100.json`.
pub const SMI_LAB: &str = "lab-8xa100";

/// The fake `nvidia-smi` itself.
pub fn fake_smi() -> PathBuf {
    Path::new(SMI_DIR).join("nvidia-smi")
}

/// `PATH` with the fake first, then the system's (for `sh`, `awk`, `sleep`).
pub fn path_with_fake() -> std::ffi::OsString {
    let mut dirs = vec![PathBuf::from(SMI_DIR)];
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    std::env::join_paths(dirs).expect("PATH entries hold no ':'")
}

/// `gpusel` with the fake on `PATH` serving `scenario`, and no provider
/// chosen yet.
pub fn gpusel_with_fake(scenario: &str) -> assert_cmd::Command {
    let mut cmd = gpusel();
    cmd.env("PATH", path_with_fake())
        .env("FAKE_SMI_SCENARIO", scenario);
    cmd
}

/// [`smi`] as a `std::process::Command`, to spawn it.
pub fn smi_std(scenario: &str) -> std::process::Command {
    let mut cmd = gpusel_std();
    cmd.env("PATH", path_with_fake())
        .env("FAKE_SMI_SCENARIO", scenario)
        .args(["-p", "smi"]);
    cmd
}

/// `gpusel -p smi` on `scenario`.
pub fn smi(scenario: &str) -> assert_cmd::Command {
    let mut cmd = gpusel_with_fake(scenario);
    cmd.args(["-p", "smi"]);
    cmd
}

/// Runs `gpusel -p smi ARGS` on `scenario`.
pub fn smi_out<I, S>(scenario: &str, args: I) -> Out
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    out(smi(scenario).args(args))
}

/// The device rows of a `list` table (the process and lease lines under
/// them are indented), with the availability marker masked. The fixtures'
/// pids belong to the machine they describe: here they are someone else's
/// processes or none, so what `/proc` adds (users, start times, whether the
/// process is visible, hence `[~]` or `[!]`) differs from machine to machine.
pub fn device_rows(table: &str) -> String {
    table
        .lines()
        .filter(|line| !line.starts_with(' '))
        .map(|line| match line.find(" [") {
            Some(at) if line[at..].len() > 4 => format!("{} [.]{}", &line[..at], &line[at + 4..]),
            _ => line.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}
