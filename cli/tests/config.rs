//! Site policy: the system config, the user's, `GPUSEL_*`, flags (later
//! wins, bans add up), `gpusel config`, and bad files.

mod common;

use std::path::PathBuf;

use common::*;

/// A site config and a user config directory in a temp dir.
struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new(system: &str, user: Option<&str>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("system.toml"), system).unwrap();
        if let Some(text) = user {
            std::fs::create_dir(dir.path().join("gpusel")).unwrap();
            std::fs::write(dir.path().join("gpusel/config.toml"), text).unwrap();
        }
        Files { dir }
    }

    fn system(&self) -> PathBuf {
        self.dir.path().join("system.toml")
    }

    fn user(&self) -> PathBuf {
        self.dir.path().join("gpusel/config.toml")
    }

    /// `gpusel -p file:LAB` reading these files.
    fn gpusel(&self) -> assert_cmd::Command {
        let mut cmd = lab();
        cmd.env("GPUSEL_SYSTEM_CONFIG", self.system())
            .env("XDG_CONFIG_HOME", self.dir.path());
        cmd
    }
}

const SITE: &str = r#"
# The site's policy.
strategy = "worst-fit"
interval = "2s"

[ban]
gpus = ["1"]
names = ["H100"]

[filters]
mem = "10GiB"
"#;

#[test]
fn config_shows_each_value_and_its_source() {
    let files = Files::new(
        SITE,
        Some("strategy = \"best-fit\"\n[ban]\ngpus = [\"3\"]\n"),
    );
    let out = out(files.gpusel().env("GPUSEL_INTERVAL", "750ms").args([
        "--lock-dir",
        "/tmp/site-locks",
        "config",
    ]));
    let stdout = out.ok();
    let row = |key: &str| -> Vec<String> {
        stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(key))
            .unwrap_or_else(|| panic!("no {key}: {stdout}"))
            .split_whitespace()
            .map(String::from)
            .collect()
    };
    let system = files.system().display().to_string();
    let user = files.user().display().to_string();
    assert_eq!(
        row("lock_dir"),
        ["lock_dir", "/tmp/site-locks", "--lock-dir"]
    );
    assert_eq!(row("strategy"), ["strategy", "best-fit", user.as_str()]);
    assert_eq!(row("interval"), ["interval", "750ms", "$GPUSEL_INTERVAL"]);
    assert_eq!(
        row("filters.mem"),
        ["filters.mem", "10", "GiB", system.as_str()]
    );
    assert_eq!(row("filters.max_util"), ["filters.max_util", "-", "unset"]);
    assert!(stdout.contains(&format!("# {system} (read)")), "{stdout}");
    assert!(stdout.contains(&format!("# {user} (read)")), "{stdout}");
    // Bans from both files add up.
    let bans: Vec<&str> = stdout.lines().filter(|l| l.starts_with("ban ")).collect();
    assert_eq!(bans.len(), 3, "{stdout}");
    assert!(
        bans[0].contains(" 1 ") && bans[0].ends_with(&system),
        "{stdout}"
    );
    assert!(bans[1].contains("name contains 'H100'"), "{stdout}");
    assert!(
        bans[2].contains(" 3 ") && bans[2].ends_with(&user),
        "{stdout}"
    );
}

#[test]
fn config_json_lists_files_and_settings() {
    let files = Files::new(SITE, None);
    let out = out(files.gpusel().args(["config", "--json"]));
    let json: serde_json::Value = serde_json::from_str(out.ok()).unwrap();
    assert_eq!(json["schema_version"], 1);
    assert_eq!(json["files"][0]["found"], true);
    assert_eq!(json["files"][1]["found"], false);
    let strategy = json["settings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["key"] == "strategy")
        .unwrap();
    assert_eq!(strategy["value"], "worst-fit");
    assert_eq!(strategy["source"], files.system().display().to_string());
}

#[test]
fn later_sources_win() {
    let files = Files::new(
        "strategy = \"best-fit\"\n",
        Some("strategy = \"worst-fit\"\n"),
    );
    // The user's worst-fit: the most free memory, lowest index first.
    assert_eq!(out(files.gpusel()).ok(), "1\n");
    // The environment beats the files (best-fit: GPU 4, 9 GiB free, is the
    // tightest fit), and the flag beats the environment.
    let out_env = out(files
        .gpusel()
        .env("GPUSEL_STRATEGY", "best-fit")
        .args(["--mem", "1GiB"]));
    assert_eq!(out_env.ok(), "4\n");
    let flag = out(files
        .gpusel()
        .env("GPUSEL_STRATEGY", "nonsense")
        .args(["--strategy", "worst-fit"]));
    assert_eq!(flag.ok(), "1\n");
}

#[test]
fn bans_and_default_filters_apply() {
    let files = Files::new(SITE, None);
    // 1 is banned, so the idle ones left are 3, 5, 7; worst-fit takes 3.
    let out = out(files.gpusel().args(["--explain"]));
    assert_eq!(out.stdout, "3\n");
    let system = files.system().display().to_string();
    assert!(
        out.stderr.contains(&format!(
            "GPU 1 (NVIDIA A100-SXM4-80GB): banned by the site configuration ({system})"
        )),
        "{out:#?}"
    );
    // A ban holds even when the GPU is asked for by name.
    let denied = common::out(files.gpusel().args(["--devices", "1"]));
    denied
        .code(3)
        .stderr_has("banned by the site configuration");
    // GPUSEL_BAN adds to the file's bans.
    let more = common::out(
        files
            .gpusel()
            .env("GPUSEL_BAN", "3,5")
            .args(["--devices", "3,5"]),
    );
    more.code(3)
        .stderr_has("banned by the site configuration ($GPUSEL_BAN)");
    // The config's mem filter is a default: a flag replaces it.
    let mem = common::out(files.gpusel().arg("--explain").args(common::ANY_LOAD));
    assert!(
        mem.stderr
            .contains("GPU 4 (NVIDIA A100-SXM4-80GB): 9 GiB free < 10 GiB needed"),
        "{mem:#?}"
    );
}

#[test]
fn config_lock_dir_is_used() {
    let locks = fresh_lock_dir();
    let files = Files::new(&format!("lock_dir = \"{}\"\n", locks.display()), None);
    // The per-test variable would win over the file.
    let out = out(files
        .gpusel()
        .env_remove("GPUSEL_LOCK_DIR")
        .args(["-d", "3"]));
    assert_eq!(out.ok(), "3\n");
    assert!(
        locks
            .join("gpusel-gpu-c8d2b6e0-4a9f-4b1c-a7e3-3e5f7b9d1e43.lock")
            .exists()
    );
}

#[test]
fn bad_toml_names_the_file_line_and_column() {
    let files = Files::new("strategy = \"worst-fit\"\ninterval = 5s\n", None);
    let out = out(files.gpusel());
    out.code(2).no_stdout();
    let error = out.one_error_naming(&files.system().display().to_string());
    assert!(error.contains("line 2, column"), "{error}");

    let files = Files::new("[filters]\nmem = \"lots\"\n", None);
    let out = common::out(&mut files.gpusel());
    out.code(2);
    let error = out.one_error_naming("line 2, column 7");
    assert!(error.contains("filters.mem"), "{error}");

    let files = Files::new("colour = \"blue\"\n", None);
    let out = common::out(&mut files.gpusel());
    out.code(2).one_error_naming("unknown field `colour`");

    let files = Files::new("[filters]\nmax_util = 300\n", None);
    common::out(&mut files.gpusel())
        .code(2)
        .one_error_naming("max_util");
}

#[test]
fn unknown_strategy_from_a_config_file_names_the_file() {
    let files = Files::new("strategy = \"fastest\"\n", None);
    let out = out(files.gpusel());
    out.code(2)
        .one_error_naming(&files.system().display().to_string());
}

/// Whether `gpusel config`'s table has the row `key value ...` (the columns
/// are as wide as the longest key).
fn has_row(table: &str, key: &str, value: &str) -> bool {
    table.lines().any(|l| {
        let mut cells = l.split_whitespace();
        cells.next() == Some(key) && l[key.len()..].trim_start().starts_with(value)
    })
}

#[test]
fn the_example_site_config_is_valid() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/site-config.toml");
    let out = out(lab().env("GPUSEL_SYSTEM_CONFIG", example).arg("config"));
    let stdout = out.ok();
    assert!(stdout.contains("name contains 'T400'"), "{stdout}");
    assert!(has_row(stdout, "filters.max_power", "250 W"), "{stdout}");
    assert!(has_row(stdout, "idle.window", "10s"), "{stdout}");
}

#[test]
fn waiting_can_be_the_sites_default_and_no_wait_opts_out() {
    let files = Files::new(
        "wait = true\ntimeout = \"300ms\"\ninterval = \"100ms\"\n",
        None,
    );
    out(files.gpusel().args(["-n", "5"]))
        .code(3)
        .no_stdout()
        .stderr_has("waited 0s for 5 devices, checking every 100ms")
        .stderr_has("timed out after 300ms waiting: no GPU satisfies the request");
    let at_once = out(files.gpusel().args(["-n", "5", "--no-wait"]));
    at_once.code(3).stderr_has("no GPU satisfies the request");
    assert!(!at_once.stderr.contains("waited"), "{at_once:?}");
    // --wait without --timeout takes the config's timeout; --timeout wins.
    out(files
        .gpusel()
        .args(["-n", "5", "--wait", "--timeout", "200ms"]))
    .code(3)
    .stderr_has("timed out after 200ms");
    out(files.gpusel().args(["-n", "5", "--silent"]))
        .code(0)
        .no_stdout();
    out(files.gpusel().args(["--no-wait", "--wait"]))
        .code(2)
        .stderr_has("cannot be used with");
    let shown = out(files.gpusel().arg("config"));
    let shown = shown.ok();
    assert!(has_row(shown, "wait", "true"), "{shown}");
    assert!(has_row(shown, "timeout", "300ms"), "{shown}");
}

#[test]
fn gpusel_wait_and_gpusel_timeout() {
    out(lab()
        .env("GPUSEL_WAIT", "yes")
        .env("GPUSEL_TIMEOUT", "0.2")
        .env("GPUSEL_INTERVAL", "50ms")
        .args(["-n", "5"]))
    .code(3)
    .stderr_has("timed out after 200ms");
    out(lab().env("GPUSEL_WAIT", "0").args(["-n", "5"]))
        .code(3)
        .stderr_has("no GPU satisfies");
    out(lab().env("GPUSEL_WAIT", "maybe"))
        .code(2)
        .stderr_has("GPUSEL_WAIT: 'maybe' is not a yes or no");
    out(lab().env("GPUSEL_TIMEOUT", "soon"))
        .code(2)
        .stderr_has("GPUSEL_TIMEOUT");
}

#[test]
fn list_marks_banned_gpus() {
    let files = Files::new(SITE, None);
    let table = out(files.gpusel().arg("list"));
    let table = table.ok();
    let line = table
        .lines()
        .find(|l| l.starts_with("1 "))
        .expect("GPU 1's row");
    assert!(line.contains("[x]"), "GPU 1 is banned, yet: {line}");
    assert!(
        table.contains("[x] banned by") && table.contains("system.toml (1): never given out"),
        "{table}"
    );
    let free = table
        .lines()
        .find(|l| l.starts_with("3 "))
        .expect("GPU 3's row");
    assert!(free.contains("[ ]"), "{free}");
}

#[test]
fn a_fifo_config_file_is_refused_not_read() {
    // No writer ever comes: reading it as a file blocked gpusel for good.
    // The timeout only turns a regression into a failure, not a hang.
    let dir = tempfile::tempdir().unwrap();
    let site = fifo(&dir, "system.toml");
    let seen = out(lab()
        .env("GPUSEL_SYSTEM_CONFIG", &site)
        .arg("list")
        .timeout(PATIENCE));
    seen.no_stdout();
    let line = seen.one_error_naming(&site.display().to_string());
    assert!(
        line.contains("a FIFO (named pipe), not a regular file"),
        "{line}"
    );
}

#[test]
fn every_variable_gpusel_reads_is_one_the_tests_clear() {
    // A variable that gpusel (or a fake it runs) reads and the tests do not
    // clear lets a developer's shell change what a test sees. The names are
    // those the sources quote ("GPUSEL_X") or expand ($GPUSEL_X, ${X-}), and
    // the output conventions' (COLUMNS, NO_COLOR, CLICOLOR_FORCE).
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap();
    let mut files = vec![root.join("tests/fixtures/smi/nvidia-smi")];
    let mut dirs: Vec<PathBuf> = [
        "gpu-core/src",
        "strategies/src",
        "provider-nvml/src",
        "provider-smi/src",
        "provider-torch/src",
        "provider-http/src",
        "fake-nvml/src",
        "agent/src",
        "cli/src",
        "gpusel/src",
        "python/src",
        "python/gpusel",
    ]
    .iter()
    .map(|d| root.join(d))
    .collect();
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs" || e == "py") {
                files.push(path);
            }
        }
    }
    let mut read = std::collections::BTreeSet::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for prefix in ["GPUSEL_", "FAKE_NVML_", "FAKE_SMI_", "CUDA_"] {
            for (at, _) in text.match_indices(prefix) {
                let before = text[..at].chars().next_back();
                if !matches!(before, Some('"' | '$' | '{')) {
                    continue;
                }
                let name: String = text[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                    .collect();
                if name.len() > prefix.len() {
                    read.insert(name);
                }
            }
        }
        // The output conventions gpusel follows (cli/src/term.rs): a
        // developer's exported COLUMNS narrowed every table a test reads
        // from a pipe, and CLICOLOR_FORCE colored it.
        for name in ["COLUMNS", "NO_COLOR", "CLICOLOR_FORCE"] {
            if text.contains(&format!("\"{name}\"")) {
                read.insert(name.to_string());
            }
        }
    }
    // Set by the tests on purpose (isolate()), or read by tests only.
    read.retain(|n| n != "GPUSEL_SYSTEM_CONFIG" && !n.starts_with("GPUSEL_TEST_"));
    assert!(
        read.len() >= 20,
        "the scan finds what gpusel reads: {read:?}"
    );
    let cleared: std::collections::BTreeSet<String> = clean_env().map(String::from).collect();
    let missing: Vec<&String> = read.difference(&cleared).collect();
    assert!(
        missing.is_empty(),
        "read but not cleared by the tests: {missing:?}; add them to tests/clean-env.txt"
    );
}
