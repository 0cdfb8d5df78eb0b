//! The dashboard in a real browser: headless Chromium loads the page that
//! `gpusel serve` renders from fake NVML, and the test reads the DOM the
//! browser built. Driver strings that are HTML must come out as text.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::nvml::{fixture, nvml_std};
use common::serve::serve;

/// Headless Chromium as root in a container: no sandbox, no GPU, nothing
/// fetched from the network, a profile of its own.
fn chromium(profile: &Path, args: &[&str]) -> Option<std::process::Output> {
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

/// Where the screenshot is kept for people to look at.
fn artifact() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("dashboard.png")
}

#[test]
fn the_browser_shows_hostile_names_as_text() {
    let server = serve(nvml_std(fixture("hostile-names")), &[]);
    let url = format!("http://{}/", server.addr);
    let profile = tempfile::tempdir().unwrap();
    let Some(out) = chromium(profile.path(), &["--dump-dom", &url]) else {
        return;
    };
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The rows the browser built: one per GPU.
    assert_eq!(dom.matches("<tr class=\"gpu\"").count(), 2, "{dom}");
    assert!(
        dom.contains("data-gpu=\"0\"") && dom.contains("data-gpu=\"1\""),
        "{dom}"
    );
    assert!(dom.contains("62.5 GiB / 80 GiB"), "{dom}");
    // The names are text nodes, serialised escaped, inside the cells they
    // belong in; no element came out of them.
    assert!(
        dom.contains("<span class=\"pname\">&lt;img src=x onerror=alert(1)&gt;</span>"),
        "{dom}"
    );
    assert!(
        dom.contains("<span class=\"pname\">\"&gt;&lt;b id=injected&gt;bold</span>"),
        "{dom}"
    );
    assert!(
        dom.contains("<td class=\"name\">NVIDIA A100-SXM4-80GB &lt;svg onload=alert(2)&gt;</td>"),
        "{dom}"
    );
    for element in ["<img", "<svg", "<b ", "id=\"injected\"", "<script"] {
        assert!(!dom.contains(element), "the page holds {element}: {dom}");
    }

    let png = artifact();
    let _ = std::fs::remove_file(&png);
    let profile = tempfile::tempdir().unwrap();
    let shot = format!("--screenshot={}", png.display());
    let out = chromium(profile.path(), &[&shot, "--window-size=1280,800", &url]).unwrap();
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = std::fs::read(&png).expect("chromium wrote the screenshot");
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    eprintln!("screenshot: {}", png.display());
}
