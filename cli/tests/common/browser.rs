//! Headless Chromium for the tests that read the DOM a real browser builds
//! from gpusel's pages (the dashboard and the master's page).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What a Chromium run left: its exit status, stdout and stderr.
pub struct Run {
    /// Whether it exited with 0.
    pub ok: bool,
    /// What it printed (the DOM, with --dump-dom).
    pub stdout: String,
    /// Its complaints.
    pub stderr: String,
}

/// Headless Chromium as root in a container: no sandbox, no GPU, nothing
/// fetched from the network, a profile of its own. `None` when it is not
/// installed outside CI; killed (and the test failed) if it hangs.
pub fn chromium(args: &[&str]) -> Option<Run> {
    let binary = std::env::var("GPUSEL_TEST_CHROMIUM").unwrap_or_else(|_| "chromium".into());
    let scratch = tempfile::tempdir().unwrap();
    let stdout = scratch.path().join("stdout");
    let stderr = scratch.path().join("stderr");
    let spawned = Command::new(&binary)
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
        .arg(format!(
            "--user-data-dir={}",
            scratch.path().join("profile").display()
        ))
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
            super::skip_missing_tool(&binary, "chromium", &e);
            return None;
        }
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{binary} {args:?} did not finish in 120 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let read = |path: &Path| String::from_utf8_lossy(&std::fs::read(path).unwrap()).into_owned();
    Some(Run {
        ok: status.success(),
        stdout: read(&stdout),
        stderr: read(&stderr),
    })
}

/// Where a screenshot called `name` is kept for people to look at.
pub fn artifact(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}
