"""gpusel.select, its leases and its errors, on the fake lab server
(tests/fixtures/nvml/lab-8xa100.json: GPUs 1, 3, 5 and 7 idle; 0, 4 and 6
busy; 2 holds an idle notebook process)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import List

import pytest

import gpusel
from conftest import EXAMPLES, Machine

IDLE = {"1", "3", "5", "7"}


def test_the_package_is_the_installed_wheel_with_its_binary() -> None:
    assert "site-packages" in gpusel.__file__, gpusel.__file__
    binary = Path(sys.executable).with_name("gpusel")
    out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("gpusel "), out.stdout
    assert gpusel.__version__ in out.stdout
    # The real binary, not a Python entry-point script.
    assert binary.read_bytes()[:4] == b"\x7fELF"


def test_select_leases_an_idle_gpu_and_sets_the_environment(machine: Machine) -> None:
    selection = gpusel.select()
    assert selection
    assert selection.cuda_visible_devices in IDLE
    assert str(selection) == selection.cuda_visible_devices
    assert os.environ["CUDA_VISIBLE_DEVICES"] == selection.cuda_visible_devices
    assert os.environ["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    assert selection.env == {
        "CUDA_VISIBLE_DEVICES": selection.cuda_visible_devices,
        "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
    }
    [device] = selection.devices
    assert device.label == selection.cuda_visible_devices
    assert device.name == "NVIDIA A100-SXM4-80GB"
    assert device.uuid.startswith("GPU-")
    assert device.memory_total == 85899345920
    assert device.memory_free is not None and device.memory_free > 79 * 2**30
    assert device.utilization == 0
    assert device.processes == []
    assert device.power is not None and 0 < device.power < 400
    assert selection.held and selection.strategy == "idle-random"

    # `gpusel list` (the CLI) shows this process as the holder.
    leases = machine.leased()
    assert list(leases) == [device.index]
    holder = leases[device.index]["holder"]
    assert holder["pid"] == os.getpid()
    assert holder["command"][0].endswith(("python", "pytest")) or "python" in holder["command"][0]

    selection.release()
    assert not selection.held
    assert machine.leased() == {}
    assert "CUDA_VISIBLE_DEVICES" not in os.environ
    assert "CUDA_DEVICE_ORDER" not in os.environ
    selection.release()  # a second release does nothing


def test_a_with_block_holds_the_gpus_until_it_ends(machine: Machine) -> None:
    os.environ["CUDA_DEVICE_ORDER"] = "FASTEST_FIRST"
    with gpusel.select(count=2, mem="20GiB", strategy="best-fit") as gpus:
        assert len(gpus) == 2
        labels = gpus.cuda_visible_devices.split(",")
        # best-fit packs: the least free memory that still fits 20 GiB
        # (GPU 6, a running job with 60 GiB free, and the notebook's 2).
        assert set(labels) == {"2", "6"}
        assert sorted(machine.leased()) == sorted(int(x) for x in labels)
        assert [d.label for d in gpus] == labels
    assert machine.leased() == {}
    assert os.environ["CUDA_DEVICE_ORDER"] == "FASTEST_FIRST", "put back as it was"


class Holder:
    """A Python process of the test's, run line by line: it prints, then
    waits for a line on its stdin before going on."""

    def __init__(self, machine: Machine, code: str) -> None:
        self.process = machine.python(code, stdin=subprocess.PIPE)
        self.pid = self.process.pid

    def said(self) -> str:
        assert self.process.stdout is not None
        return self.process.stdout.readline().strip()

    def go_on(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("\n")
        self.process.stdin.flush()

    def __enter__(self) -> "Holder":
        return self

    def __exit__(self, *failure: object) -> None:
        try:
            if failure[0] is None:
                assert self.process.stdin is not None
                self.process.stdin.close()
                assert self.process.wait(timeout=60) == 0
        finally:
            self.process.kill()
            self.process.wait(timeout=60)


def test_a_dropped_selection_keeps_its_lease_until_the_process_ends(machine: Machine) -> None:
    with Holder(
        machine,
        "import gc, sys, gpusel\n"
        "gpusel.select(count=2)\n"  # the result is not kept
        "gc.collect()\n"
        "print('selected', flush=True)\n"
        "sys.stdin.readline()\n",
    ) as child:
        assert child.said() == "selected"
        leases = machine.leased()
        assert len(leases) == 2
        assert {lease["holder"]["pid"] for lease in leases.values()} == {child.pid}
    assert machine.leased() == {}, "the process's end gave them back"


def test_a_forked_child_letting_go_of_its_copy_keeps_the_parents_lease(machine: Machine) -> None:
    # A fork shares the locks' open files: were the child's release an
    # unlock, it would free the parent's GPUs while the parent still runs.
    with Holder(
        machine,
        "import os, sys, gpusel\n"
        "s = gpusel.select(count=2)\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    s.release()\n"
        "    os._exit(0 if not s.held else 3)\n"
        "_, status = os.waitpid(pid, 0)\n"
        "print(s, s.held, status, flush=True)\n"
        "sys.stdin.readline()\n"
        "s.release()\n"
        "print('released', flush=True)\n"
        "sys.stdin.readline()\n",
    ) as child:
        labels, held, status = child.said().split()
        assert (held, status) == ("True", "0"), "the child let go of its copy"
        leases = machine.leased()
        assert sorted(leases) == sorted(int(x) for x in labels.split(","))
        assert {lease["holder"]["pid"] for lease in leases.values()} == {child.pid}
        # The other two idle GPUs are all that is left.
        with gpusel.select(count=2) as rest:
            assert set(rest.cuda_visible_devices.split(",")) == IDLE - set(labels.split(","))
            with pytest.raises(gpusel.NoGpuError):
                gpusel.select()
        child.go_on()
        assert child.said() == "released"
        assert machine.leased() == {}, "the parent's own release still lets go"


def test_a_sigkilled_python_holder_frees_its_gpus_at_once(machine: Machine) -> None:
    child = machine.python(
        "import sys, gpusel\n"
        "s = gpusel.select(count=4)\n"
        "print(s, flush=True)\n"
        "sys.stdin.readline()\n",
        stdin=subprocess.PIPE,
    )
    assert child.stdout is not None
    held = child.stdout.readline().strip()
    assert set(held.split(",")) == IDLE
    with pytest.raises(gpusel.NoGpuError):
        gpusel.select()
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL
    # No wait, no clean-up step: the kernel dropped the locks with the process.
    with gpusel.select(count=4) as again:
        assert set(again.cuda_visible_devices.split(",")) == IDLE


RACER = """
import os, sys, time, gpusel
go = sys.argv[1]
while not os.path.exists(go):
    time.sleep(0.001)
try:
    s = gpusel.select(set_env=False)
    print(s.devices[0].uuid, flush=True)
except gpusel.NoGpuError:
    print("none", flush=True)
sys.stdin.readline()
"""


def test_python_processes_racing_for_gpus_never_share_one(machine: Machine, tmp_path: Path) -> None:
    go = tmp_path / "go"
    racers = [machine.python(RACER, str(go), stdin=subprocess.PIPE) for _ in range(8)]
    try:
        time.sleep(0.5)  # let them import; the start line is the file, not this
        go.touch()
        got = []
        for r in racers:
            assert r.stdout is not None
            got.append(r.stdout.readline().strip())
        chosen = [g for g in got if g != "none"]
        assert len(chosen) == 4, got
        assert len(set(chosen)) == 4, f"two processes share a GPU: {got}"
        assert len(machine.leased()) == 4
    finally:
        for r in racers:
            r.kill()
            r.wait(timeout=60)


def test_python_and_the_cli_see_each_others_leases(machine: Machine) -> None:
    job = subprocess.Popen(
        [str(Path(sys.executable).with_name("gpusel")), "-n", "3", "--", "sleep", "600"],
        env=machine.env(),
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while len(machine.leased()) < 3:
            assert job.poll() is None, job.stderr.read() if job.stderr else ""
            assert time.monotonic() < deadline, "the CLI job never took its leases"
            time.sleep(0.05)
        cli_leased = machine.leased()
        assert {lease["holder"]["command"][0] for lease in cli_leased.values()} == {"sleep"}

        # Python sees the CLI's leases...
        snap = gpusel.snapshot()
        leased = {g.index: g.lease for g in snap.gpus if g.lease is not None}
        assert sorted(leased) == sorted(cli_leased)
        assert all(lease.command == ["sleep", "600"] for lease in leased.values())
        with pytest.raises(gpusel.NoGpuError) as failed:
            gpusel.select(count=2)
        assert "leased" in str(failed.value)
        # ...and takes the one GPU left, which the CLI then sees as Python's.
        with gpusel.select() as mine:
            [left] = IDLE - {str(i) for i in cli_leased}
            assert mine.cuda_visible_devices == left
            assert machine.leased()[int(left)]["holder"]["pid"] == os.getpid()
            refused = machine.cli("--", "true", check=False)
            assert refused.returncode != 0
            assert "leased" in refused.stderr
    finally:
        job.kill()
        job.wait(timeout=60)


def test_no_gpu_error_carries_the_clis_text_and_each_devices_reasons(machine: Machine) -> None:
    with pytest.raises(gpusel.NoGpuError) as failed:
        gpusel.select(count=5)
    error = failed.value
    message = str(error)
    lines = message.splitlines()
    assert lines[0] == "no GPU satisfies the request: need 5 devices, 4 of 8 visible qualify"
    assert (error.requested, error.eligible, error.visible) == (5, 4, 8)
    # The CLI prints the same headline and device lines (its hint names flags).
    cli = machine.cli("-n", "5", check=False)
    assert cli.returncode == 3
    cli_lines = [line.removeprefix("gpusel: error: ") for line in cli.stderr.splitlines()]
    assert [x for x in lines if "hint" not in x] == [x for x in cli_lines if "hint" not in x]
    assert lines[-1].strip().startswith("hint: idle-random takes only idle GPUs")
    assert "max_util=" in lines[-1] and "--max-util" not in lines[-1]

    assert error.reasons["1"] == []
    assert error.reasons["0"] == [
        "utilization 98% > 0% allowed",
        "memory utilization 61% > 0% allowed",
        "1 process > 0 allowed",
    ]
    assert error.reasons["2"] == ["1 process > 0 allowed"]
    [zero] = [v for v in error.verdicts if v.device == "0"]
    assert zero.details[0] == {"reason": "utilization", "value": 98, "max": 0}
    assert isinstance(error, gpusel.Error) and not isinstance(error, ValueError)


def test_silent_returns_an_empty_falsy_selection(machine: Machine) -> None:
    nothing = gpusel.select(count=5, silent=True)
    assert not nothing
    assert str(nothing) == "" and nothing.devices == [] and nothing.env == {}
    assert "CUDA_VISIBLE_DEVICES" not in os.environ
    assert machine.leased() == {}


def test_filters_strategies_and_custom_tests(machine: Machine) -> None:
    # A notebook on GPU 2 is allowed with max_processes=1; best-fit packs.
    with gpusel.select(max_processes=1, devices=[2, 3]) as s:
        assert s.cuda_visible_devices in {"2", "3"}
    with gpusel.select(devices="0,2", max_util=100, max_mem_util=100, max_processes=2,
                       mem=10 * 2**30, strategy="best-fit") as s:
        assert s.cuda_visible_devices == "0", "0 has 17.5 GiB free, the least that fits"
    with gpusel.select(exclude=["1", 3, 5]) as s:
        assert s.cuda_visible_devices == "7"
    with gpusel.select(count="all", strategy="random", max_mem_used="20%") as s:
        assert s.cuda_visible_devices.split(",") == ["1", "2", "3", "5", "7"], "nvgpu's rule"
    with pytest.raises(gpusel.NoGpuError) as failed:
        gpusel.select(devices=0, max_mem_used=2**30, strategy="random")
    assert failed.value.reasons["0"] == ["62.5 GiB in use > 1 GiB allowed"]
    with gpusel.select(max_power="70W", name="A100") as s:
        assert s.cuda_visible_devices in IDLE
    with gpusel.select(uuid=True) as s:
        assert s.cuda_visible_devices.startswith("GPU-")
        assert s.env == {"CUDA_VISIBLE_DEVICES": s.cuda_visible_devices}

    seen: List[gpusel.Device] = []

    def only_five(device: gpusel.Device) -> bool:
        seen.append(device)
        return device.index == 5

    with gpusel.select(where=only_five) as s:
        assert s.cuda_visible_devices == "5"
    assert {d.index for d in seen} >= {5}
    assert all(isinstance(d, gpusel.Device) and d.name for d in seen)

    with pytest.raises(gpusel.NoGpuError) as failed:
        gpusel.select(where=lambda d: False)
    assert failed.value.reasons["1"] == ["rejected by custom filter 'where='"]


def test_an_exception_in_where_reaches_the_caller(machine: Machine) -> None:
    def broken(device: gpusel.Device) -> bool:
        raise KeyError("mine")

    with pytest.raises(KeyError, match="mine"):
        gpusel.select(where=broken)
    assert machine.leased() == {}


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"mem": "20XB"}, ValueError, "mem='20XB'"),
        ({"mem": -1}, ValueError, "mem=-1"),
        ({"mem": [1]}, TypeError, "mem="),
        ({"max_util": 150}, ValueError, "max_util=150"),
        ({"max_mem_util": "lots"}, ValueError, "max_mem_util='lots'"),
        ({"max_processes": -2}, ValueError, "max_processes=-2"),
        ({"max_power": "eighty"}, ValueError, "max_power='eighty'"),
        ({"max_mem_used": "half"}, ValueError, "max_mem_used='half'"),
        ({"timeout": "soon"}, ValueError, "timeout='soon'"),
        ({"interval": 0.001}, ValueError, "interval=0.001"),
        ({"devices": "x,,"}, ValueError, "devices='x,,'"),
        ({"devices": []}, ValueError, "devices=[]"),
        ({"devices": [True]}, TypeError, "devices="),
        ({"strategy": "fastest"}, ValueError, "unknown strategy 'fastest'; available: idle-random"),
        ({"provider": "cloud"}, ValueError, "cloud"),
        ({"provider": "torch"}, ValueError, "CUDA context"),
        ({"count": 0}, ValueError, "count=0"),
        ({"count": "two"}, ValueError, "count='two'"),
        ({"count": "4..2"}, ValueError, "the range ends below its start"),
        ({"count": 2.0}, TypeError, "count="),
        ({"where": 3}, TypeError, "where="),
    ],
)
def test_bad_arguments_raise_naming_the_value(
    machine: Machine, kwargs: dict, error: type, words: str
) -> None:
    with pytest.raises(error) as raised:
        gpusel.select(**kwargs)
    assert words in str(raised.value)
    if error is ValueError:
        assert isinstance(raised.value, gpusel.UsageError)
        assert isinstance(raised.value, gpusel.Error)
    assert machine.leased() == {}


def test_wait_with_a_timeout_raises_wait_timeout(machine: Machine) -> None:
    started = time.monotonic()
    with pytest.raises(gpusel.WaitTimeout) as failed:
        gpusel.select(count=5, wait=True, timeout=0.6, interval=0.1)
    assert time.monotonic() - started >= 0.6
    error = failed.value
    assert isinstance(error, TimeoutError) and isinstance(error, gpusel.NoGpuError)
    assert str(error).startswith("timed out after 600ms waiting: no GPU satisfies the request")
    assert error.timeout == pytest.approx(0.6)
    assert error.reasons["0"], "the last try's reasons"


def test_wait_picks_up_a_gpu_as_soon_as_it_is_given_back(machine: Machine) -> None:
    holder = machine.python(
        "import sys, gpusel\n"
        "s = gpusel.select(count=4)\n"
        "print(s, flush=True)\n"
        "sys.stdin.readline()\n",
        stdin=subprocess.PIPE,
    )
    assert holder.stdout is not None and holder.stdin is not None
    assert set(holder.stdout.readline().strip().split(",")) == IDLE
    result: List[gpusel.Selection] = []
    ticks = 0
    waiter = threading.Thread(
        target=lambda: result.append(gpusel.select(wait=True, timeout=120, interval=0.1))
    )
    waiter.start()
    # The GIL is free while select waits: this thread keeps running.
    before = time.monotonic()
    while time.monotonic() - before < 0.5:
        ticks += 1
    assert waiter.is_alive() and ticks > 1000
    holder.stdin.close()
    holder.wait(timeout=60)
    waiter.join(timeout=120)
    assert not waiter.is_alive()
    [got] = result
    assert got.cuda_visible_devices in IDLE
    got.release()


def test_a_wait_rides_out_a_provider_failure(
    machine: Machine, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    snapshot = tmp_path / "snapshot.json"
    snapshot.write_text("{ half a file")  # caught mid-rewrite
    fixed = threading.Event()

    def fix() -> None:
        # Once the failure has been reported, the file is whole again.
        deadline = time.monotonic() + 60
        while "the provider failed" not in capfd.readouterr().err:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        (tmp_path / "whole.json").write_text((EXAMPLES / "lab-8xa100.json").read_text())
        (tmp_path / "whole.json").replace(snapshot)
        fixed.set()

    fixer = threading.Thread(target=fix)
    fixer.start()
    with gpusel.select(provider=f"file:{snapshot}", wait=True, interval=1, timeout=120) as s:
        assert s.cuda_visible_devices in IDLE
    fixer.join(timeout=60)
    assert fixed.is_set()
    with pytest.raises(gpusel.ProviderError, match="snapshot"):
        snapshot.write_text("{ broken for good")
        gpusel.select(provider=f"file:{snapshot}", wait=True, interval=0.05, timeout=120)


def test_ctrl_c_stops_a_wait_with_keyboard_interrupt(machine: Machine) -> None:
    child = machine.python(
        "import time, gpusel\n"
        "try:\n"
        "    gpusel.select(count=5, wait=True, interval=60)\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted', flush=True)\n"
    )
    assert child.stderr is not None and child.stdout is not None
    line = child.stderr.readline()
    assert "waiting for 5 devices (4 of 8 qualify now)" in line, line
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=30)
    assert out.strip() == "interrupted", err
    assert child.returncode == 0


def test_a_warning_when_cuda_is_already_initialised(
    machine: Machine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A stand-in for torch after a CUDA call: the check reads only
    # torch.cuda.is_initialized(), which needs a GPU to be true for real.
    torch = ModuleType("torch")
    torch.cuda = SimpleNamespace(is_initialized=lambda: True)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torch", torch)
    with pytest.warns(gpusel.CudaAlreadyInitializedWarning, match="already initialised CUDA"):
        gpusel.select().release()
    torch.cuda = SimpleNamespace(is_initialized=lambda: False)  # type: ignore[attr-defined]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gpusel.select().release()


def test_a_second_selection_chooses_within_the_first(machine: Machine) -> None:
    # The first one set CUDA_VISIBLE_DEVICES, as `gpusel -- CMD` does for a
    # job: what runs after it, gpusel included, sees only its devices.
    with gpusel.select(count=2, lease=False) as outer:
        with gpusel.select() as inner:
            assert inner.cuda_visible_devices in outer.cuda_visible_devices.split(",")
            assert inner.devices[0] in outer.devices
        assert os.environ["CUDA_VISIBLE_DEVICES"] == outer.cuda_visible_devices


def test_lease_false_and_set_env_false(machine: Machine) -> None:
    with gpusel.select(lease=False, set_env=False) as s:
        assert s and not s.held
        assert machine.leased() == {}
        assert "CUDA_VISIBLE_DEVICES" not in os.environ


def test_cuda_visible_devices_limits_the_choice(machine: Machine) -> None:
    os.environ["CUDA_VISIBLE_DEVICES"] = "0,3,5"
    with gpusel.select(count=2) as s:
        assert sorted(s.cuda_visible_devices.split(",")) == ["3", "5"]
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "0,3,5", "put back"
    with pytest.raises(gpusel.NoGpuError, match="asked for 4 devices, but only 3 are visible"):
        gpusel.select(count=4, wait=True)


def test_the_sites_config_applies(machine: Machine) -> None:
    machine.config('strategy = "best-fit"\n[filters]\nmem = "30GiB"\n')
    with gpusel.select(max_util=100, max_mem_util=100, max_processes=9) as s:
        assert s.strategy == "best-fit"
        assert s.cuda_visible_devices == "6", "the least free memory that fits 30 GiB"
    # The site can make waiting the default (autocvd's); wait=False opts out.
    machine.config('wait = true\ntimeout = "0.3s"\ninterval = "0.1s"\n')
    with pytest.raises(gpusel.WaitTimeout, match="timed out after 300ms"):
        gpusel.select(count=5)
    with pytest.raises(gpusel.NoGpuError) as at_once:
        gpusel.select(count=5, wait=False)
    assert not isinstance(at_once.value, gpusel.WaitTimeout)
    with pytest.raises(ValueError, match="wait=False"):
        gpusel.select(count=5, wait=False, timeout=1)
    machine.config('strategy = "fastest"\n')
    with pytest.raises(ValueError, match=r"unknown strategy 'fastest'.*\(set by .*config.toml"):
        gpusel.select()
    machine.config("lock_dir = [1]\n")
    with pytest.raises(gpusel.ConfigError, match="config.toml"):
        gpusel.select()


def test_provider_errors(machine: Machine, tmp_path: Path) -> None:
    machine.use("driver-not-loaded")
    with pytest.raises(gpusel.ProviderError) as failed:
        gpusel.select(provider="nvml")
    assert "driver" in str(failed.value).lower()
    with pytest.raises(gpusel.ProviderError, match="no GPU provider works"):
        gpusel.snapshot()
    with pytest.raises(gpusel.ProviderError, match="missing.json"):
        gpusel.select(provider=f"file:{tmp_path / 'missing.json'}")


def test_snapshot_is_list_json(machine: Machine) -> None:
    with gpusel.select() as mine:
        snap = gpusel.snapshot()
        cli = json.loads(machine.cli("list", "--json").stdout)
        ours = snap.to_dict()
        for taken in (ours, cli):
            del taken["time"]
        assert ours == cli
    assert snap.host and snap.provider == "nvml" and snap.driver_version == "570.124.06"
    assert len(snap.gpus) == 8
    zero = snap.gpus[0]
    assert zero.utilization == 98 and zero.memory_utilization == 61
    [process] = zero.processes or []
    assert process.pid == 48213 and process.name == "python3"
    leased = [g for g in snap.gpus if g.lease is not None]
    assert [g.uuid for g in leased] == [mine.devices[0].uuid]
    assert leased[0].lease is not None and leased[0].lease.pid == os.getpid()


def test_status_is_gpustatus(machine: Machine) -> None:
    everything = gpusel.status(all=True)
    assert [g["device"] for g in everything] == list(range(8))
    zero = everything[0]
    for key in ("device", "name", "utilization", "mem_utilization", "processes",
                "performance_state", "power_usage", "temperature"):
        assert key in zero
    assert zero["utilization"] == 98 and zero["processes"] == 1
    assert zero["power_usage"] == 352118, "milliwatts, as gpuselect reports"
    assert zero["temperature"] == 67
    os.environ["CUDA_VISIBLE_DEVICES"] = "1,4"
    assert [g["device"] for g in gpusel.status()] == [1, 4]
    assert len(gpusel.status(all=True)) == 8


def test_mig_devices(machine: Machine) -> None:
    machine.use("mig-h100")
    snap = gpusel.snapshot()
    [mig_gpu, whole] = snap.gpus
    assert [d.label for d in mig_gpu.mig_devices] == ["0:0", "0:1", "0:2"]
    assert all(d.uuid.startswith("MIG-") for d in mig_gpu.mig_devices)
    assert whole.mig_devices == []
    # A process can use one MIG device: asked for one, with the whole H100
    # excluded, it gets an idle MIG device by its UUID.
    with gpusel.select(exclude=1, strategy="best-fit", mem="1GiB", max_processes=0) as s:
        [device] = s.devices
        assert device.label == "0:2", "the smallest that fits"
        assert device.mig_profile == "1g.10gb"
        assert s.cuda_visible_devices == device.uuid
        assert device.memory_total is not None and device.memory_total < 10 * 2**30


def test_all_and_ranges(machine: Machine) -> None:
    with gpusel.select(count="all") as every:
        assert set(every.cuda_visible_devices.split(",")) == IDLE
    with gpusel.select(count="2..3", set_env=False) as some:
        assert len(some) == 3, "as many as qualify, up to 3"
        left = IDLE - set(some.cuda_visible_devices.split(","))
        with pytest.raises(gpusel.NoGpuError, match="need at least 2 devices, 1 of 8"):
            gpusel.select(count="2..")
        with gpusel.select(count="..4") as rest:
            assert set(rest.cuda_visible_devices.split(",")) == left
    assert machine.leased() == {}


def test_strategies_lists_the_clis() -> None:
    names = gpusel.strategies()
    assert list(names)[:1] == ["idle-random"]
    assert {"best-fit", "worst-fit", "random", "least-used"} <= set(names)


def test_idleness_the_driver_proves(machine: Machine) -> None:
    # tests/fixtures/nvml/idleness.json: 0 holds 30 GiB no listed process
    # holds, 1 is a job paused for data loading (72% two seconds ago), 2 has
    # only the X server, 3 is Prohibited, 4 Exclusive_Process with a client.
    machine.use("idleness")
    with gpusel.select(count=2) as s:
        assert s.cuda_visible_devices == "2,5"
        assert [d.compute_mode for d in s.devices] == ["default", "default"]
        assert [d.utilization_peak for d in s.devices] == [0, 0]
    with pytest.raises(gpusel.NoGpuError) as failed:
        gpusel.select(count=3)
    reasons = failed.value.reasons
    assert reasons["0"][0].startswith("30 GiB in use by no process visible here")
    assert reasons["1"][0].startswith("utilization peaked at 72% 2 s ago")
    assert reasons["3"] == ["compute mode is Prohibited: the driver lets no process create a CUDA context on it"]
    exclusive = next(v for v in failed.value.verdicts if v.device == "4")
    assert exclusive.details[0] == {"reason": "compute_exclusive", "pid": 1}
    # The same arguments as the flags: a shorter window, a looser tolerance.
    with gpusel.select(count=4, idle_window="1s", unaccounted_memory="40GiB") as s:
        assert s.cuda_visible_devices == "0,1,2,5"
    with pytest.raises(gpusel.UsageError, match="idle_window"):
        gpusel.select(idle_window="soon")
