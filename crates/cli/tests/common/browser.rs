//! Headless Chromium for the tests that read the DOM a real browser builds
//! from gpusel's pages.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Headless Chromium as root in a container: no sandbox, no GPU, nothing
/// fetched from the network, a profile of its own.
pub fn chromium(profile: &Path, args: &[&str]) -> Option<std::process::Output> {
    let binary = std::env::var("GPUSEL_TEST_CHROMIUM").unwrap_or_else(|_| "chromium".into());
    let result = Command::new(&binary)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .output();
    match result {
        Ok(out) => Some(out),
        Err(e) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "{binary} is needed in CI (.ci/run installs Debian's chromium): {e}"
            );
            eprintln!("SKIPPED: {binary} not installed (apt-get install chromium)");
            None
        }
    }
}

/// Where a screenshot called `name` is kept for people to look at.
pub fn artifact(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}
