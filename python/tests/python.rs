//! The Python package's suite, as part of `cargo test --workspace`: builds
//! the wheel as a user does (`pip wheel .` at the repository root, maturin
//! fetched by pip), installs it in a fresh venv with pytest and mypy, and
//! runs `python/tests/` (pytest, on fake-nvml) and `mypy --strict` on the
//! package and the examples of docs/python.md.
//!
//! Python comes from `GPUSEL_TEST_PYTHON` (`.ci/run` sets it) or
//! `python3`; the test fails, never skips, when it cannot build or install.

#[path = "../../fake-nvml/locate.rs"]
mod fake_nvml;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The versions the suite is checked with (pip fetches them).
const PYTEST: &str = "pytest==9.2.0";
const MYPY: &str = "mypy==2.4.1";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("python/ is in the repository root")
        .to_path_buf()
}

/// The target directory this test was built into (`CARGO_TARGET_DIR` or
/// `target/`), from the test binary's own path: target/<profile>/deps/x.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test knows its own path");
    exe.ancestors()
        .nth(3)
        .expect("the test binary lies in <target>/<profile>/deps")
        .to_path_buf()
}

fn run(what: &str, cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A command with none of the variables cargo sets for tests (maturin runs
/// cargo again, which must see the user's environment, not this test's).
fn clean(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new(program);
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy().into_owned();
        let keep = matches!(
            name.as_str(),
            "CARGO_HOME" | "CARGO_TARGET_DIR" | "CARGO_TERM_COLOR" | "CARGO_BUILD_JOBS"
        );
        if (name.starts_with("CARGO_") || name.starts_with("RUSTC") || name == "RUST_LOG") && !keep
        {
            cmd.env_remove(&name);
        }
    }
    cmd
}

#[test]
fn python_suite_passes_on_the_wheel() {
    let root = root();
    let target = target_dir();
    let python = std::env::var_os("GPUSEL_TEST_PYTHON").unwrap_or_else(|| "python3".into());

    // The wheel, as `pip wheel .` builds it. It shares this target
    // directory (maturin builds in release, so nothing of the test build is
    // touched).
    let wheels = target.join("python-wheel");
    let _ = std::fs::remove_dir_all(&wheels);
    run(
        "pip wheel . (building the gpusel wheel)",
        clean(&python)
            .args([
                "-m",
                "pip",
                "wheel",
                "--no-deps",
                "--quiet",
                "--disable-pip-version-check",
                "-w",
            ])
            .arg(&wheels)
            .arg(&root)
            .env("CARGO_TARGET_DIR", &target)
            .current_dir(&root),
    );
    let wheel = std::fs::read_dir(&wheels)
        .expect("pip wheel made its output directory")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "whl"))
        .expect("pip wheel built a .whl");

    // A fresh venv with the wheel, pytest and mypy: what a user gets.
    let venv = target.join("python-suite-venv");
    let _ = std::fs::remove_dir_all(&venv);
    run(
        "python -m venv",
        clean(&python).args(["-m", "venv"]).arg(&venv),
    );
    let venv_python = venv.join("bin/python");
    run(
        "pip install (the wheel, pytest, mypy)",
        clean(&venv_python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .arg(&wheel)
            .args([PYTEST, MYPY]),
    );

    let fake = fake_nvml::library();
    let path = format!(
        "{}:{}",
        venv.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    // Run from the tests' folder, so that `import gpusel` can only find
    // the installed wheel, never python/gpusel in the source tree.
    let out = clean(&venv_python)
        .args([
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-x",
            "--color=no",
        ])
        .arg(root.join("python/tests"))
        .env("GPUSEL_TEST_FAKE_NVML", fake)
        .env("PATH", &path)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .current_dir(root.join("python/tests"))
        .output()
        .expect("cannot run pytest");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "the Python suite failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The package and the documented examples type-check as a user's code
    // would: against the installed wheel.
    let mypy = |what: &str, args: &[&std::ffi::OsStr]| {
        run(
            what,
            clean(&venv_python)
                .args([
                    "-m",
                    "mypy",
                    "--strict",
                    "--no-incremental",
                    "--cache-dir=/dev/null",
                ])
                .args(args)
                .current_dir(root.join("python/tests")),
        )
    };
    mypy(
        "mypy --strict -p gpusel",
        &["-p".as_ref(), "gpusel".as_ref()],
    );
    mypy(
        "mypy --strict python/examples",
        &[root.join("python/examples").as_os_str()],
    );
}
