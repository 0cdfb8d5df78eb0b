"""gpusel.compat: the five seeds' drop-ins, on the fake lab server.

The README examples in seeds/ run as subprocesses (as a user runs them);
the unit tests call the drop-ins in this process. lab-8xa100: GPUs 1, 3, 5
and 7 idle (about 60 W, 80 GiB free), 0, 4 and 6 busy (GPU 0 has 17.5 GiB
free, GPU 4 9 GiB), 2 idle with a notebook process on it (88.5 W)."""

from __future__ import annotations

import ast
import copy
import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pytest

import gpusel

SEEDS = Path(__file__).resolve().parent / "seeds"
STUBS = SEEDS / "_stubs"
IDLE = {1, 3, 5, 7}
GIB = 1024**3
LIMIT = 180  # seconds any one subprocess may take, however loaded the machine

# Runs one seed example as `python example.py` would (or, with --repl, as the
# interpreter's prompt does, echoing each expression's value), with the
# stand-ins the examples use but never define, then prints its environment
# and plain globals on a line of its own; with --hold it then waits for a
# line on stdin, so that the test can look at its leases while it lives.
RUNNER = r"""
import ast, json, os, sys, types
path = sys.argv[1]
flags = sys.argv[2:]
sys.argv = [path]
import torch, seed_standins
scope = {"__name__": "__main__", "__file__": path, "model": seed_standins.Model(),
         "torch": torch}
tree = ast.parse(open(path, encoding="utf-8").read(), path)
if "--repl" in flags:
    for node in tree.body:
        exec(compile(ast.Interactive(body=[node]), path, "single"), scope)
else:
    exec(compile(tree, path, "exec"), scope)
plain = {k: v for k, v in scope.items() if not k.startswith("_")
         and isinstance(v, (str, int, float, list, dict, tuple, type(None)))}
env = {k: os.environ.get(k) for k in ("CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER")}
print("END " + json.dumps({"env": env, "globals": plain}, default=repr), flush=True)
if "--hold" in flags:
    sys.stdin.readline()
"""


class Seed:
    """One seed example running on the machine."""

    def __init__(self, machine: Any, name: str, *flags: str, **env: str) -> None:
        self.machine = machine
        self.out: List[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-c", RUNNER, str(SEEDS / name), *flags],
            env=machine.env(PYTHONPATH=str(STUBS), **env),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.end: Optional[Dict[str, Any]] = None
        self._killer = threading.Timer(LIMIT, self.proc.kill)
        self._killer.start()

    def until(self, prefix: str) -> str:
        """The next line of its stdout that starts with ``prefix`` (the lines
        before it are kept in ``out``)."""
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            if line.startswith("END "):
                self.end = json.loads(line[4:])
            if line.startswith(prefix):
                return line
            self.out.append(line)
        self.finish()
        raise AssertionError(f"the example ended without {prefix!r}:\n{self.report()}")

    def answer(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()

    def finish(self) -> int:
        """Lets it end; its exit status."""
        try:
            rest, self.err = self.proc.communicate(timeout=LIMIT)
        finally:
            self._killer.cancel()
        for line in rest.splitlines():
            if line.startswith("END "):
                self.end = json.loads(line[4:])
            self.out.append(line)
        return self.proc.returncode

    def report(self) -> str:
        return "\n".join(self.out) + "\n--- stderr\n" + getattr(self, "err", "")

    @property
    def stdout(self) -> str:
        return "\n".join(self.out)

    @property
    def cvd(self) -> Optional[str]:
        assert self.end is not None
        value: Optional[str] = self.end["env"]["CUDA_VISIBLE_DEVICES"]
        return value


def run(machine: Any, name: str, *flags: str, **env: str) -> Seed:
    """Runs an example to its end, which must be a clean one."""
    seed = Seed(machine, name, *flags, **env)
    rc = seed.finish()
    assert rc == 0, seed.report()
    assert seed.end is not None, seed.report()
    return seed


def held(machine: Any, name: str, *flags: str, **env: str) -> Seed:
    """Runs an example until it has run through and holds on (--hold)."""
    seed = Seed(machine, name, "--hold", *flags, **env)
    seed.until("END ")
    return seed


def done(seed: Seed) -> None:
    seed.answer()
    assert seed.finish() == 0, seed.report()


def indices(cvd: Optional[str]) -> List[int]:
    assert cvd, f"CUDA_VISIBLE_DEVICES is {cvd!r}"
    return [int(t) for t in cvd.split(",")]


def holders(machine: Any) -> Dict[int, Optional[int]]:
    """GPU index to the pid holding its lease."""
    return {i: (lease.get("holder") or {}).get("pid") for i, lease in machine.leased().items()}


# Scenarios derived from the fixtures.


def gpus_of(machine: Any, base: str) -> Dict[str, Any]:
    return copy.deepcopy(machine.use(base))


def busy(device: Dict[str, Any], pid: int) -> None:
    device["utilization"] = {"gpu": 90, "memory": 40}
    device["power_usage"] = 300000
    device["compute_processes"] = [{"pid": pid, "used_memory": 10 * GIB, "name": "python"}]


def all_busy(machine: Any) -> Dict[str, Any]:
    data = gpus_of(machine, "lab-8xa100")
    for i, d in enumerate(data["devices"]):
        busy(d, 4194400 + i)
    machine.write(data)
    return data


class Holder:
    """Another process holding a gpusel lease on ``gpu`` until closed."""

    def __init__(self, machine: Any, gpu: int) -> None:
        code = (
            "import sys, gpusel\n"
            f"s = gpusel.select(devices={gpu}, strategy='random')\n"
            "print(s, flush=True)\n"
            "sys.stdin.readline()\n"
        )
        self.proc = machine.python(code, stdin=subprocess.PIPE)
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline() == f"{gpu}\n"

    def __enter__(self) -> Holder:
        return self

    def __exit__(self, *exc: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=LIMIT)


def free_memory(device: Dict[str, Any], free: int) -> None:
    total = device["memory"]["total"]
    device["memory"].update(used=total - free, free=free, reserved=0)


# The seeds' README examples.


def test_gpuselect_intro_leases_an_idle_gpu_for_the_scripts_life(machine: Any) -> None:
    for name in ("gpuselect_intro.py", "gpuselect_default.py"):
        seed = held(machine, name)
        [gpu] = indices(seed.cvd)
        assert gpu in IDLE
        assert seed.end is not None and seed.end["env"]["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
        assert holders(machine) == {gpu: seed.proc.pid}
        done(seed)
        assert machine.leased() == {}, "the lease ends with the process"


def test_gpuselect_name_example(machine: Any) -> None:
    data = gpus_of(machine, "idle-8xa100")
    for i in (2, 3, 4):
        data["devices"][i]["name"] = "NVIDIA RTX A6000"
    machine.write(data)
    seed = held(machine, "gpuselect_name.py")
    chosen = indices(seed.cvd)
    assert len(chosen) == 2 and set(chosen) <= {2, 3, 4}
    # The second call replaced the first's choice: only its GPUs are held.
    assert holders(machine) == {i: seed.proc.pid for i in chosen}
    done(seed)

    machine.use("lab-8xa100")  # no A6000 there
    seed = Seed(machine, "gpuselect_name.py")
    assert seed.finish() != 0
    assert "NoGpuError" in seed.err and "A6000" in seed.err, seed.report()


def test_gpuselect_thresholds_example(machine: Any) -> None:
    seed = held(machine, "gpuselect_thresholds.py")
    [gpu] = indices(seed.cvd)
    assert gpu in IDLE | {2}  # 2's one process is allowed now
    assert set(machine.leased()) == {gpu}
    done(seed)


def test_gpuselect_devices_example(machine: Any) -> None:
    machine.use("idle-8xa100")
    seed = held(machine, "gpuselect_devices.py")
    assert seed.cvd == "0,1"
    assert holders(machine) == {0: seed.proc.pid, 1: seed.proc.pid}
    done(seed)

    machine.use("lab-8xa100")  # GPU 0 is busy
    seed = Seed(machine, "gpuselect_devices.py")
    assert seed.finish() != 0
    assert "GPU 0" in seed.err and "utilization 98%" in seed.err, seed.report()
    assert machine.leased() == {}


def test_gpuselect_selector_example(machine: Any) -> None:
    data = gpus_of(machine, "lab-8xa100")
    for i in range(4):
        data["devices"][i]["name"] = "NVIDIA GeForce RTX 3090"
    machine.write(data)
    seed = held(machine, "gpuselect_selector.py")
    [gpu] = indices(seed.cvd)
    assert gpu in {1, 2, 3}  # 3090s with <= 5% utilization (0 has 98%)
    assert set(machine.leased()) == {gpu}
    done(seed)


def test_gpuselect_errors_example(machine: Any) -> None:
    seed = held(machine, "gpuselect_errors.py")
    assert "Failed" not in seed.stdout  # the lab has 4 idle GPUs
    assert set(indices(seed.cvd)) == IDLE
    assert set(machine.leased()) == IDLE
    done(seed)

    machine.use("busy-mixed")
    seed = run(machine, "gpuselect_errors.py")
    lines = seed.stdout.splitlines()
    assert lines[0].startswith("Failed to select GPUs: no GPU satisfies the request: need 4")
    assert "Failed to select GPUs" in lines
    assert seed.cvd is None
    assert machine.leased() == {}


def test_gpuselect_logging_example(machine: Any) -> None:
    seed = run(machine, "gpuselect_logging.py")
    assert "count=1,devices=None" in seed.err
    assert "CUDA_VISIBLE_DEVICES=" in seed.err, seed.report()


def test_gpuselect_status_example(machine: Any) -> None:
    seed = run(machine, "gpuselect_status.py", CUDA_VISIBLE_DEVICES="1,3")
    assert seed.end is not None
    visible = seed.end["globals"]["gpu_info"]
    every = seed.end["globals"]["all_gpu_info"]
    assert [g["device"] for g in visible] == [1, 3]
    assert [g["device"] for g in every] == list(range(8))
    documented = {
        "device": int,
        "name": str,
        "utilization": int,
        "mem_utilization": int,
        "processes": int,
        "performance_state": int,
        "power_usage": int,
        "temperature": int,
    }
    for key, kind in documented.items():
        assert isinstance(every[0][key], kind), key
    assert every[0]["utilization"] == 98 and every[0]["processes"] == 1
    assert every[0]["power_usage"] == 352118  # milliwatts


def test_autocvd_example(machine: Any) -> None:
    seed = held(machine, "autocvd_code.py")
    assert seed.out[0] == "Selecting 1 free GPU(s)"
    [gpu] = indices(seed.cvd)
    assert gpu in IDLE
    assert f"Selected GPU(s): [{gpu}]." in seed.out
    assert seed.end is not None and seed.end["env"]["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    assert holders(machine) == {gpu: seed.proc.pid}
    done(seed)
    assert machine.leased() == {}


def test_gpu_scheduler_quickstart_holds_the_gpu_inside_the_block(machine: Any) -> None:
    seed = Seed(machine, "gpu_scheduler_quickstart.py", "--hold")
    line = seed.until("HELD ")
    gpu = int(line.removeprefix("HELD cuda:"))
    assert gpu in IDLE
    assert holders(machine) == {gpu: seed.proc.pid}
    assert f"torch stand-in: cuda.set_device({gpu})" in seed.out
    seed.answer()
    assert seed.until("HELD ") == "HELD cuda"  # torch.device("cuda")
    seed.answer()
    seed.until("END ")
    assert machine.leased() == {}, "the block's end gives the GPU back"
    assert seed.cvd is None, "GPU Scheduler leaves CUDA_VISIBLE_DEVICES alone"
    done(seed)


def test_gpu_scheduler_device_handling_example(machine: Any) -> None:
    seed = run(machine, "gpu_scheduler_device_handling.py")
    assert seed.end is not None
    gpu_ids = seed.end["globals"]["gpu_ids"]
    assert len(gpu_ids) == 1 and gpu_ids[0] in IDLE
    assert f"torch stand-in: device('cuda:{gpu_ids[0]}')" in seed.out
    assert f"torch stand-in: cuda.set_device({gpu_ids[0]})" in seed.out


def test_gpu_scheduler_basic_example(machine: Any) -> None:
    seed = Seed(machine, "gpu_scheduler_basic.py")
    seed.until("HELD ")
    using = [line for line in seed.out if line.startswith("Using GPU: ")]
    assert len(using) == 1
    gpu = int(using[0].split()[2])
    assert gpu in IDLE and using[0] == f"Using GPU: {gpu} on device: cuda:{gpu}"
    assert set(machine.leased()) == {gpu}
    seed.answer()
    assert seed.finish() == 0, seed.report()


def test_gpu_scheduler_multiple_example_waits_for_gpus_that_fit(machine: Any) -> None:
    # The lab's idle GPUs draw about 60 W: none passes power_threshold_w=50,
    # so the example waits (polling every 10 s, the default) until two do.
    seed = Seed(machine, "gpu_scheduler_multiple.py")
    assert seed.proc.stderr is not None
    waiting = seed.proc.stderr.readline()
    assert re.search(r"waiting for 2 (GPUs|devices) \(0 of 8 qualify now\)", waiting), waiting
    data = gpus_of(machine, "lab-8xa100")
    for i in (3, 5):
        data["devices"][i]["power_usage"] = 40000
    machine.write(data)
    line = seed.until("Using GPUs: ")
    assert sorted(ast.literal_eval(line.removeprefix("Using GPUs: "))) == [3, 5]
    assert seed.finish() == 0, seed.report()


def test_gpu_scheduler_debug_example_skips_the_health_checks(machine: Any) -> None:
    all_busy(machine)
    seed = run(machine, "gpu_scheduler_debug.py")
    [line] = [x for x in seed.out if x.startswith("Using GPU: ")]
    assert int(line.split()[2]) in range(8)


def test_gpu_scheduler_info_example(machine: Any) -> None:
    seed = run(machine, "gpu_scheduler_info.py")
    out = seed.stdout
    assert "GPU 1: NVIDIA A100-SXM4-80GB" in out
    assert "  Memory: 81916MB free / 81920MB total" in out  # GPU 1, in MiB
    assert "  Power: 61.244W / 400.0W" in out
    assert "  Utilization: 98%" in out  # GPU 0
    assert out.splitlines()[-2] == "Found 0 free GPUs"  # every idle GPU draws > 50 W

    data = gpus_of(machine, "lab-8xa100")
    for i in (1, 7):
        data["devices"][i]["power_usage"] = 40000
    machine.write(data)
    assert run(machine, "gpu_scheduler_info.py").out[-2] == "Found 2 free GPUs"


def test_gpu_utils_example_best_fit(machine: Any) -> None:
    seed = run(machine, "gpu_utils_quickstart.py")
    # BEST_FIT: the least free memory that still takes 800 MB: GPU 4 (9 GiB).
    [line] = [x for x in seed.out if x.startswith("gpu ")]
    assert "'cuda_id': 4" in line and line.endswith(" is the best option now!")
    assert "torch stand-in: cuda.device('cuda:4')" in seed.out
    assert machine.leased() == {}  # GPU-utils reports; it never reserved


def test_nvgpu_example(machine: Any) -> None:
    seed = run(machine, "nvgpu_python_api.py", "--repl")
    assert seed.out[0] == "['1', '2', '3', '5', '7']"  # <= 20% of memory in use
    info = ast.literal_eval(seed.out[1])
    assert [g["index"] for g in info] == [str(i) for i in range(8)]
    assert info[1]["mem_total"] == 81920 and info[1]["type"] == "NVIDIA A100-SXM4-80GB"


# gpuselect


def test_gpuselect_maps_its_thresholds(machine: Any) -> None:
    from gpusel.compat import gpuselect

    # GPU 6: 45% utilization, 22% memory utilization, one process.
    assert gpuselect(devices=6, util=45, mem_util=22, processes=1) == "6"
    for util, mem_util, processes, why in [
        (44, 22, 1, "utilization 45% > 44% allowed"),
        (45, 21, 1, "memory utilization 22% > 21% allowed"),
        (45, 22, 0, "1 process > 0 allowed"),
    ]:
        with pytest.raises(gpusel.NoGpuError, match=why):
            gpuselect(devices=6, util=util, mem_util=mem_util, processes=processes)


def test_gpuselect_count_and_return_type(machine: Any) -> None:
    from gpusel.compat import gpuselect

    cvd = gpuselect(count=2, util=50, mem_util=30, processes=1)
    assert isinstance(cvd, str)
    chosen = indices(cvd)
    assert len(chosen) == 2 and set(chosen) <= IDLE | {2, 6}
    assert os.environ["CUDA_VISIBLE_DEVICES"] == cvd
    assert set(machine.leased()) == set(chosen)


def test_gpuselect_second_call_replaces_the_first(machine: Any) -> None:
    from gpusel.compat import gpuselect

    assert gpuselect(devices=1) == "1"
    assert gpuselect(devices=[3, 5]) == "3,5"
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "3,5"
    assert set(machine.leased()) == {3, 5}


def test_gpuselect_silent_and_set_cvd(machine: Any) -> None:
    from gpusel.compat import gpuselect

    assert gpuselect(count=5, silent=True) == ""
    assert "CUDA_VISIBLE_DEVICES" not in os.environ
    assert machine.leased() == {}
    cvd = gpuselect(set_cvd=False)
    assert "CUDA_VISIBLE_DEVICES" not in os.environ
    assert set(machine.leased()) == set(indices(cvd))  # leased all the same


def test_gpuselect_refuses_what_the_seed_refused(machine: Any) -> None:
    from gpusel.compat import gpuselect

    with pytest.raises(ValueError, match="count must be >= 1"):
        gpuselect(count=0)
    with pytest.raises(ValueError, match="only one of 'devices' and 'name'"):
        gpuselect(devices=1, name="A100")
    with pytest.raises(ValueError, match="must be >= 0"):
        gpuselect(util=-1)
    with pytest.raises(Exception):
        gpuselect(count=5)


def test_gpuselect_selector_sees_gpuinfo_and_overrides_the_filters(machine: Any) -> None:
    from gpusel.compat import GpuInfo, gpuselect

    seen: Dict[int, GpuInfo] = {}

    def only_2(gpu: GpuInfo) -> bool:
        seen[gpu.device] = gpu
        return gpu.device == 2

    # GPU 2 has a process, which the default processes=0 would refuse.
    assert gpuselect(selector=only_2) == "2"
    zero = seen[0]
    assert isinstance(zero, GpuInfo) and isinstance(zero, tuple)
    assert (zero.device, zero.name, zero.util, zero.mem_util, zero.processes) == (
        0,
        "NVIDIA A100-SXM4-80GB",
        98,
        61,
        1,
    )
    assert zero.mem_free == 18790481920 and zero.power_usage == 352118
    assert zero.effective_power_limt == zero.effective_power_limit == 400000
    assert GpuInfo._fields[:8] == (
        "device",
        "name",
        "util",
        "mem_util",
        "mem_free",
        "mem_used",
        "mem_total",
        "processes",
    )


def test_gpustatus_respects_cuda_visible_devices(machine: Any) -> None:
    from gpusel.compat import gpustatus

    machine.monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5")
    assert [g["device"] for g in gpustatus()] == [5]
    assert len(gpustatus(only_cvd=False)) == 8


# autocvd


def test_autocvd_returns_a_list_of_ints_and_sets_both_variables(
    machine: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from gpusel.compat import autocvd

    gpus = autocvd(num_gpus=2)
    assert isinstance(gpus, list) and all(type(g) is int for g in gpus)
    assert len(gpus) == 2 and set(gpus) <= IDLE
    assert os.environ["CUDA_VISIBLE_DEVICES"] == ",".join(map(str, gpus))
    assert os.environ["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    assert set(machine.leased()) == set(gpus)
    out = capsys.readouterr().out
    assert out == f"Selecting 2 free GPU(s)\nSelected GPU(s): {gpus}.\n"


def test_autocvd_least_used_takes_busy_gpus_at_once(machine: Any) -> None:
    from gpusel.compat import autocvd

    all_busy(machine)
    gpus = autocvd(num_gpus=3, least_used=True, set_env=False, verbose=False)
    assert len(gpus) == 3 and "CUDA_VISIBLE_DEVICES" not in os.environ
    assert set(machine.leased()) == set(gpus)


def test_autocvd_refuses_bad_arguments(machine: Any) -> None:
    from gpusel.compat import autocvd

    with pytest.raises(ValueError, match="greater than 0"):
        autocvd(num_gpus=0)
    with pytest.raises(ValueError, match="only 8 are installed"):
        autocvd(num_gpus=9)
    with pytest.raises(ValueError, match="interval"):
        autocvd(interval=-1)


def test_autocvd_timeout_is_a_timeout_error(
    machine: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from gpusel.compat import autocvd

    with pytest.raises(TimeoutError, match="Could not acquire 5 GPU"):
        autocvd(num_gpus=5, timeout=1, interval=1, verbose=False)
    assert capsys.readouterr() == ("", "")  # verbose=False: not a word
    with pytest.raises(TimeoutError, match="4 of 8 visible qualify"):
        autocvd(num_gpus=5, timeout=1, interval=1)
    assert re.search(r"waiting for 5 (GPUs|devices)", capsys.readouterr().err)
    assert machine.leased() == {}


def test_autocvd_waits_until_a_gpu_is_free(machine: Any) -> None:
    all_busy(machine)
    code = "from gpusel.compat import autocvd; print(autocvd(interval=1), flush=True)"
    proc = machine.python(code)
    try:
        assert proc.stderr is not None and proc.stdout is not None
        waiting = proc.stderr.readline()
        wanted = r"waiting for 1 (GPU|device) \(0 of 8 qualify now\), trying every 1s"
        assert re.search(wanted, waiting), waiting
        data = gpus_of(machine, "lab-8xa100")
        for i, d in enumerate(data["devices"]):
            if i != 5:
                busy(d, 4194400 + i)
        machine.write(data)
        assert proc.stdout.readline() == "Selecting 1 free GPU(s)\n"
        assert proc.stdout.readline() == "Selected GPU(s): [5].\n"
        assert proc.stdout.readline() == "[5]\n"
        assert proc.wait(timeout=LIMIT) == 0
    finally:
        proc.kill()


# GPU Scheduler


def test_gpu_scheduler_defaults_need_20_gib_free(machine: Any) -> None:
    from gpusel.compat import GPUScheduler

    data = gpus_of(machine, "lab-8xa100")
    free_memory(data["devices"][1], 19 * GIB)
    free_memory(data["devices"][3], 21 * GIB)
    machine.write(data)
    with pytest.raises(gpusel.WaitTimeout, match="GPU 1"):
        with GPUScheduler(specific_gpus=[1], max_wait_time=0.5, poll_interval=0.1):
            pass
    with GPUScheduler(specific_gpus=[1, 3], max_wait_time=0.5, poll_interval=0.1) as ids:
        assert ids == [3]


def test_gpu_scheduler_defaults_need_80_w_and_1_percent(machine: Any) -> None:
    from gpusel.compat import GPUScheduler

    fast = {"max_wait_time": 0.5, "poll_interval": 0.1}
    with pytest.raises(TimeoutError, match="power"):  # GPU 2: 88.5 W
        with GPUScheduler(specific_gpus=[2], **fast):
            pass
    with GPUScheduler(specific_gpus=[2], power_threshold_w=None, **fast) as ids:
        assert ids == [2]  # its notebook process is no health check's business
    with pytest.raises(TimeoutError, match="utilization 45%"):  # GPU 6
        with GPUScheduler(specific_gpus=[6], power_threshold_w=None, **fast):
            pass
    big = {"power_threshold_w": 300, "utilization_threshold_percent": 45.5}
    with GPUScheduler(specific_gpus=[6], **big, **fast) as ids:
        assert ids == [6]


def test_gpu_scheduler_leases_inside_the_block_only(machine: Any) -> None:
    from gpusel.compat import GPUScheduler

    with GPUScheduler(num_gpus=2) as ids:
        assert isinstance(ids, list) and all(type(i) is int for i in ids)
        assert len(ids) == 2 and set(ids) <= IDLE
        assert set(machine.leased()) == set(ids)
        assert "CUDA_VISIBLE_DEVICES" not in os.environ
    assert machine.leased() == {}


def test_gpu_scheduler_waits_with_its_poll_interval(machine: Any) -> None:
    all_busy(machine)
    code = (
        "from gpusel.compat import GPUScheduler\n"
        "with GPUScheduler(poll_interval=0.2) as ids:\n"
        "    print(ids, flush=True)\n"
    )
    proc = machine.python(code)
    try:
        assert proc.stderr is not None and proc.stdout is not None
        assert "trying every 200ms" in proc.stderr.readline()
        machine.use("idle-8xa100")
        assert ast.literal_eval(proc.stdout.readline())[0] in range(8)
        assert proc.wait(timeout=LIMIT) == 0
    finally:
        proc.kill()


def test_gpu_scheduler_info_functions(machine: Any) -> None:
    from gpusel.compat import (
        find_free_gpus,
        get_gpu_info,
        get_gpu_memory_usage,
        get_gpu_names,
        get_gpu_power_usage,
        get_gpu_utilization,
        get_total_num_gpus,
    )

    info = get_gpu_info()
    assert get_total_num_gpus() == len(info) == 8
    assert info[0] == {
        "gpu_id": 0,
        "name": "NVIDIA A100-SXM4-80GB",
        "memory_used": 64000,
        "memory_total": 81920,
        "memory_free": 17920,
        "power_draw": 352.118,
        "power_limit": 400.0,
        "utilization": 98,
    }
    assert get_gpu_memory_usage()[4]["memory_free"] == 9216
    assert get_gpu_names()[7] == {"gpu_id": 7, "name": "NVIDIA A100-SXM4-80GB"}
    assert get_gpu_power_usage()[2]["power_draw"] == 88.53
    assert get_gpu_utilization()[6] == {"gpu_id": 6, "utilization": 45}
    # find_free_gpus' own defaults: 1 GB, any power, 1%.
    assert [g["gpu_id"] for g in find_free_gpus()] == [1, 2, 3, 5, 7]
    assert [g["gpu_id"] for g in find_free_gpus(20, 80, 1)] == [1, 3, 5, 7]
    with Holder(machine, 3):  # leased by someone: not free
        assert [g["gpu_id"] for g in find_free_gpus(20, 80, 1)] == [1, 5, 7]


# GPU-utils


@pytest.fixture
def gpus(machine: Any) -> Iterator[List[Any]]:
    from gpusel.compat import NvmlGPUInfoObtainer

    yield NvmlGPUInfoObtainer().gpus()


def test_gpu_utils_obtainer(machine: Any, gpus: List[Any]) -> None:
    from gpusel.compat import GPU, NvmlGPUInfoObtainer

    assert NvmlGPUInfoObtainer().gpus_available() is True
    assert all(isinstance(g, GPU) for g in gpus) and len(gpus) == 8
    assert gpus[0].cuda_id == 0 and gpus[0].free_memory_bytes() == 18790481920
    assert gpus[4].to_torch_device() == "cuda:4"
    machine.use("driver-not-loaded")
    assert NvmlGPUInfoObtainer().gpus_available() is False


def test_gpu_utils_strategies(machine: Any, gpus: List[Any]) -> None:
    from gpusel.compat import GPUSelectorFactory, GPUSelectStrategy

    def pick(strategy: Any, among: List[Any], size: int) -> Any:
        return GPUSelectorFactory().selector(strategy).select(among, size)

    mb800 = 800 * 1024 * 1024
    assert pick(GPUSelectStrategy.BEST_FIT, gpus, mb800) is gpus[4]
    assert pick(GPUSelectStrategy.WORST_FIT, gpus, mb800).cuda_id in IDLE
    assert pick(GPUSelectStrategy.BEST_FIT, [gpus[0], gpus[6]], mb800) is gpus[0]
    assert pick(GPUSelectStrategy.BEST_FIT, [gpus[0], gpus[6]], 19 * GIB) is gpus[6]
    assert pick(GPUSelectStrategy.WORST_FIT, [gpus[0], gpus[6]], mb800) is gpus[6]
    # "able to allocate": more than that much free, as GPU-utils.
    exact = gpus[0].free_memory_bytes()
    assert pick(GPUSelectStrategy.RANDOM, [gpus[0], gpus[4]], exact - 1) is gpus[0]
    assert pick(GPUSelectStrategy.RANDOM, [gpus[0], gpus[4]], exact // 2) in (gpus[0], gpus[4])
    assert machine.leased() == {}
    with Holder(machine, 4):  # leased by another user: passed over
        assert pick(GPUSelectStrategy.BEST_FIT, gpus, mb800) is gpus[0]


def test_gpu_utils_errors(machine: Any, gpus: List[Any]) -> None:
    from gpusel.compat import (
        EmptyGPUListError,
        GPUSelectorFactory,
        GPUSelectStrategy,
        NoGPUAvailableError,
    )

    selector = GPUSelectorFactory().selector(GPUSelectStrategy.BEST_FIT)
    with pytest.raises(EmptyGPUListError):
        selector.select([], 1)
    with pytest.raises(NoGPUAvailableError) as caught:
        selector.select([gpus[0]], gpus[0].free_memory_bytes())
    assert isinstance(caught.value, gpusel.NoGpuError)
    assert caught.value.reasons["0"]  # says why


# nvgpu


def test_nvgpu(machine: Any) -> None:
    from gpusel.compat import nvgpu

    info = nvgpu.gpu_info()
    assert set(info[0]) == {"index", "type", "uuid", "mem_used", "mem_total", "mem_used_percent"}
    assert info[0]["index"] == "0" and info[0]["mem_used"] == 64000
    assert isinstance(info[0]["mem_used_percent"], float)
    assert 78.1 < info[0]["mem_used_percent"] < 78.2
    assert info[0]["uuid"].startswith("GPU-")
    assert nvgpu.available_gpus() == ["1", "2", "3", "5", "7"]
    assert nvgpu.available_gpus(30) == ["1", "2", "3", "5", "6", "7"]
    # GPU 6 has 25.107% of its memory in use: whole percent and fractions.
    assert nvgpu.available_gpus(26) == ["1", "2", "3", "5", "6", "7"]
    assert nvgpu.available_gpus(25.0) == ["1", "2", "3", "5", "7"]
    assert nvgpu.available_gpus(25.2) == ["1", "2", "3", "5", "6", "7"]
    assert nvgpu.available_gpus(25.1) == ["1", "2", "3", "5", "7"]
    with Holder(machine, 2):
        assert nvgpu.available_gpus() == ["1", "3", "5", "7"]
    with pytest.raises(ValueError):
        nvgpu.available_gpus(101)


# The package


def test_every_drop_in_imports_from_gpusel_compat() -> None:
    import gpusel.compat

    names = [
        "gpuselect",
        "gpustatus",
        "GpuInfo",
        "autocvd",
        "GPUScheduler",
        "get_gpu_info",
        "find_free_gpus",
        "NvmlGPUInfoObtainer",
        "GPUSelectorFactory",
        "GPUSelectStrategy",
        "available_gpus",
        "gpu_info",
        "nvgpu",
    ]
    for name in names:
        assert name in gpusel.compat.__all__
        assert getattr(gpusel.compat, name) is not None
    assert sorted(gpusel.compat.__all__) == sorted(set(gpusel.compat.__all__))
    for name in gpusel.compat.__all__:
        getattr(gpusel.compat, name)


def test_import_gpusel_does_not_import_compat(machine: Any) -> None:
    code = "import sys, gpusel; print('gpusel.compat' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=machine.env(),
        capture_output=True,
        text=True,
        timeout=LIMIT,
    )
    assert out.stdout == "False\n", out.stderr
