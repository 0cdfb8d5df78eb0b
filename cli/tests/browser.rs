//! The dashboard in a real browser: headless Chromium loads the page that
//! `gpusel serve` renders from fake NVML, and the test reads the DOM the
//! browser built. Driver strings that are HTML must come out as text.

mod common;

use common::browser::{artifact, chromium};
use common::nvml::{fixture, nvml_std};
use common::serve::serve;

#[test]
fn the_browser_shows_hostile_names_as_text() {
    let server = serve(nvml_std(fixture("hostile-names")), &[]);
    let url = format!("http://{}/", server.addr);
    let Some(run) = chromium(&["--dump-dom", &url]) else {
        return;
    };
    assert!(run.ok, "chromium failed: {}", run.stderr);
    let dom = run.stdout;

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

    let png = artifact("dashboard.png");
    let _ = std::fs::remove_file(&png);
    let shot = format!("--screenshot={}", png.display());
    let run = chromium(&[&shot, "--window-size=1280,800", &url]).unwrap();
    assert!(run.ok, "chromium failed: {}", run.stderr);
    let bytes = std::fs::read(&png).expect("chromium wrote the screenshot");
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    eprintln!("screenshot: {}", png.display());
}

#[test]
fn the_browser_shows_every_node_of_the_master_page_and_hostile_names_as_text() {
    let hostile = serve(nvml_std(fixture("hostile-names")), &["--interval", "100ms"]);
    let lab = serve(nvml_std(fixture("lab-8xa100")), &["--interval", "100ms"]);
    // A port nothing listens on: the node that is down.
    let (_held, gone) = common::refusing_addr();
    let dir = tempfile::tempdir().unwrap();
    let agents = common::write_file(
        &dir,
        "agents.toml",
        &format!(
            "timeout = \"30s\"\n\
             [[agent]]\nurl = \"http://{}\"\nname = \"hostile <i>node</i>\"\n\
             [[agent]]\nurl = \"http://{}\"\nname = \"lab\"\n\
             [[agent]]\nurl = \"http://{gone}\"\nname = \"gone\"\n",
            hostile.addr, lab.addr
        ),
    );
    let master = serve(
        common::gpusel_std(),
        &["--agents", agents.to_str().unwrap(), "--interval", "100ms"],
    );
    master.wait_for("/api/v1/cluster", |r| {
        r.json()["nodes"]
            .as_array()
            .is_some_and(|n| n.iter().all(|n| n["status"] != "pending"))
    });
    let url = format!("http://{}/", master.addr);
    let Some(run) = chromium(&["--dump-dom", &url]) else {
        return;
    };
    assert!(run.ok, "chromium failed: {}", run.stderr);
    let dom = run.stdout;

    // One section per node, in the file's order, each with its status.
    let sections: Vec<&str> = dom
        .match_indices("<section ")
        .map(|(i, _)| &dom[i..])
        .collect();
    assert_eq!(sections.len(), 3, "{dom}");
    assert!(sections[0].starts_with("<section class=\"node\" id=\"node-1\" data-node=\"hostile &lt;i&gt;node&lt;/i&gt;\" data-status=\"up\">"), "{dom}");
    assert!(
        sections[1].starts_with(
            "<section class=\"node\" id=\"node-2\" data-node=\"lab\" data-status=\"up\">"
        ),
        "{dom}"
    );
    assert!(
        sections[2].starts_with(
            "<section class=\"node\" id=\"node-3\" data-node=\"gone\" data-status=\"down\">"
        ),
        "{dom}"
    );
    assert_eq!(dom.matches("<tr class=\"gpu\"").count(), 2 + 8, "{dom}");
    assert!(
        dom.contains("<span class=\"node-name\">hostile &lt;i&gt;node&lt;/i&gt;</span>"),
        "{dom}"
    );
    assert!(
        dom.contains("<span class=\"pname\">&lt;img src=x onerror=alert(1)&gt;</span>"),
        "{dom}"
    );
    assert!(
        dom.contains("<td class=\"name\">NVIDIA A100-SXM4-80GB &lt;svg onload=alert(2)&gt;</td>"),
        "{dom}"
    );
    let gone_section = sections[2];
    assert!(
        gone_section.contains("connection refused; is `gpusel serve` running on"),
        "{gone_section}"
    );
    assert!(
        gone_section.contains("running on 127.0.0.1:")
            && gone_section.contains("? Never seen since the master started."),
        "{gone_section}"
    );
    for element in ["<img", "<svg", "<b ", "<i>", "id=\"injected\"", "<script"] {
        assert!(!dom.contains(element), "the page holds {element}: {dom}");
    }

    let png = artifact("master.png");
    let _ = std::fs::remove_file(&png);
    let shot = format!("--screenshot={}", png.display());
    let run = chromium(&[&shot, "--window-size=1280,1600", &url]).unwrap();
    assert!(run.ok, "chromium failed: {}", run.stderr);
    let bytes = std::fs::read(&png).expect("chromium wrote the screenshot");
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    eprintln!("screenshot: {}", png.display());
}
