"""The Python suite's fixtures. It runs against the installed wheel (the one
`pip wheel .` builds), never against the source tree, with fake-nvml in
place of NVIDIA's library: the real NVML provider code runs, behind the
same C ABI a driver would answer.

`python/tests/python.rs` (part of `cargo test --workspace`) builds the wheel
and fake-nvml, installs the wheel in a fresh venv and runs this suite with
GPUSEL_TEST_FAKE_NVML set. By hand:

    GPUSEL_TEST_FAKE_NVML=target/debug/libfake_nvml.so python -m pytest python/tests
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "nvml"
EXAMPLES = ROOT / "examples"

def _clean_env() -> List[str]:
    """Every variable gpusel reads, cleared for each test: the names in
    tests/clean-env.txt, which the CLI tests clear too."""
    lines = (ROOT / "tests" / "clean-env.txt").read_text().splitlines()
    names = (line.strip() for line in lines)
    return [name for name in names if name and not name.startswith("#")]


CLEAN_ENV = _clean_env()


def fake_nvml_library() -> str:
    path = os.environ.get("GPUSEL_TEST_FAKE_NVML")
    if not path or not Path(path).is_file():
        pytest.fail(
            "GPUSEL_TEST_FAKE_NVML must name fake-nvml's libfake_nvml.so "
            "(cargo build -p fake-nvml; `cargo test -p gpusel-python` sets it)"
        )
    return path


def gpusel_binary() -> str:
    """The `gpusel` the wheel installed beside this interpreter."""
    found = Path(sys.executable).with_name("gpusel")
    if not found.is_file():
        pytest.fail(f"the wheel installed no gpusel binary beside {sys.executable}")
    return str(found)


class Machine:
    """One fake machine: a scenario for fake-nvml, a lock directory, no
    config, and the environment that points gpusel (Python or CLI) at them."""

    def __init__(self, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.tmp = tmp
        self.monkeypatch = monkeypatch
        self.lock_dir = tmp / "locks"
        self.scenario_path = tmp / "scenario.json"
        self.config_home = tmp / "config"
        self.config_home.mkdir()
        for name in CLEAN_ENV:
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("GPUSEL_SYSTEM_CONFIG", str(tmp / "no-system-config.toml"))
        monkeypatch.setenv("XDG_CONFIG_HOME", str(self.config_home))
        monkeypatch.setenv("GPUSEL_LOCK_DIR", str(self.lock_dir))
        monkeypatch.setenv("GPUSEL_NVML_LIB", fake_nvml_library())
        monkeypatch.setenv("FAKE_NVML_SCENARIO", str(self.scenario_path))
        self.use("lab-8xa100")

    def use(self, name: str) -> Dict[str, Any]:
        """Makes tests/fixtures/nvml/NAME.json the machine's state."""
        data: Dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
        self.write(data)
        return data

    def write(self, data: Dict[str, Any]) -> None:
        partial = self.scenario_path.with_suffix(".partial")
        partial.write_text(json.dumps(data))
        partial.replace(self.scenario_path)

    def config(self, text: str) -> None:
        """Writes the user's gpusel config."""
        (self.config_home / "gpusel").mkdir(exist_ok=True)
        (self.config_home / "gpusel" / "config.toml").write_text(text)

    def env(self, **extra: str) -> Dict[str, str]:
        """The environment for a child process on this machine."""
        env = dict(os.environ)
        env.update(extra)
        return env

    def cli(self, *args: str, check: bool = True, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        """Runs the wheel's `gpusel` binary on this machine."""
        result = subprocess.run(
            [gpusel_binary(), *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=60,
            **kwargs,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"gpusel {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
        return result

    def python(self, code: str, *args: str, **kwargs: Any) -> subprocess.Popen[str]:
        """Starts `python -c CODE` on this machine."""
        return subprocess.Popen(
            [sys.executable, "-c", code, *args],
            env=self.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            **kwargs,
        )

    def leased(self) -> Dict[int, Any]:
        """GPU index to lease holder, as `gpusel list --json` shows them."""
        out = json.loads(self.cli("list", "--json").stdout)
        return {g["index"]: g["lease"] for g in out["gpus"] if g.get("lease")}


@pytest.fixture
def machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Machine]:
    """A fake 8xA100 lab server (tests/fixtures/nvml/lab-8xa100.json: GPUs 1,
    3, 5 and 7 idle), with a lock directory and config of its own."""
    import gpusel

    yield Machine(tmp_path, monkeypatch)
    # No selection a test made outlives it.
    from gpusel import _select

    for held in list(_select._held):
        held.release()
    assert gpusel  # imported from the wheel, not the source tree
