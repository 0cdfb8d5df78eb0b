#!/usr/bin/env python3
"""Whole Python processes that pick a GPU, on the fake NVML library and its
8-GPU lab scenario (tests/fixtures/nvml/lab-8xa100.json), against the Python
tools people use for the same job.

  python -c pass        the bare interpreter: the floor under every row
  import gpusel         the wheel's package and its native module
  import + select       `import gpusel; gpusel.select(provider="nvml", lock_dir=D)`:
                        NVML snapshot, selection, lease (a fresh empty lock
                        directory D per run, so no run sees another's lease)
  select, filtered      the same with the filters the peers are given below
                        (mem="20GiB", max_util=10)
  nvitop select_dev     `select_devices(format="index", min_count=1,
                        max_count=1, min_free_memory="20GiB",
                        max_gpu_utilization=10)`: nvitop's Python API
  gpustat new_query     `gpustat.new_query()`, then the first GPU with 20 GiB
                        free and at most 10 % utilization: GPUtil's
                        getAvailable() done over NVML (GPUtil itself runs
                        nvidia-smi, which a fake NVML cannot serve). gpustat
                        1.1.1 sleeps 0.1 s per GPU in every query (for psutil's
                        cpu_percent of the GPU's processes), so on 8 GPUs it
                        takes over 0.8 s on real hardware too
  pynvml by hand        nvidia-ml-py alone: init, count, and per GPU memory
                        and utilization, then the first that fits; what a
                        hand-written script costs, the Python floor for
                        reading NVML

Every row runs the same way (stdout a pipe; the same environment, free of
CUDA_/GPUSEL_/PYTHON* settings, with no gpusel config: GPUSEL_SYSTEM_CONFIG
and XDG_CONFIG_HOME point at nothing), round-robin over the rows after one
warm-up run of each, so that load from elsewhere falls on all rows alike.
pynvml, nvitop and gpustat load the fake as `libnvidia-ml.so.1` from
LD_LIBRARY_PATH; gpusel through GPUSEL_NVML_LIB. The script prints median and
p90 wall time, median CPU time (user + system: it moves less than wall time
when other work shares the machine), peak resident memory (GNU time), what
each row picked, and two targets (on wall time):
  overhead  median(import + select) - median(python -c pass)  <= 10 ms
  speedup   median(nvitop select_devices) / median(gpusel filtered) >= 10x
A missed target prints MISSED; only a failing command fails the script.
No Python process can be faster than `python -c pass`, so the speedup has a
ceiling, nvitop / python -c pass, which the script prints too, along with the
ratio of the times above that floor. nvitop also asks fake-nvml for 11
functions it does not have (fan speed, ECC, encoder...) and logs a traceback
for each, about 5 ms of its time here; on a real driver those calls succeed.

    cargo build --release -p fake-nvml
    python3 bench/python.py                 # builds the wheel and both venvs under the target dir
    python3 bench/python.py --wheel-venv V --peers-venv P --lib target/release/libfake_nvml.so

--wheel-venv and --peers-venv take a venv or its python. Without
--wheel-venv the script builds the wheel (`pip wheel .`, release) and installs
it into <target>/bench-python/venv; without --peers-venv it installs the
pinned peers below into <target>/bench-python/peers. --smoke (CI) runs a few
times, without peers.
"""

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile

from nvml import fake_nvml, peak_rss_kib
from timing import run_once, summary

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The peers, pinned; nvidia-ml-py is the pin the NVML ABI check uses (.ci/run).
PEERS = ["nvitop==1.7.2", "gpustat==1.1.1", "nvidia-ml-py==12.575.51"]

MEM, UTIL = "20GiB", 10  # the filters every selecting row is given

SELECT = ("import sys, gpusel; "
          "print(gpusel.select(provider='nvml', lock_dir=sys.argv[1]).cuda_visible_devices)")
SELECT_FILTERED = ("import sys, gpusel; "
                   f"print(gpusel.select(mem={MEM!r}, max_util={UTIL}, provider='nvml', "
                   "lock_dir=sys.argv[1]).cuda_visible_devices)")
NVITOP = ("from nvitop import select_devices; "
          f"print(select_devices(format='index', min_count=1, max_count=1, min_free_memory={MEM!r}, "
          f"max_gpu_utilization={UTIL}))")
GPUSTAT = ("import gpustat; "
           f"print([g.index for g in gpustat.new_query() if g.memory_free >= 20 * 1024 and g.utilization <= {UTIL}][:1])")
PYNVML = """\
import pynvml as n
n.nvmlInit()
fit = []
for i in range(n.nvmlDeviceGetCount()):
    h = n.nvmlDeviceGetHandleByIndex(i)
    if n.nvmlDeviceGetMemoryInfo(h).free >= 20 << 30 and n.nvmlDeviceGetUtilizationRates(h).gpu <= %d:
        fit.append(i)
n.nvmlShutdown()
print(fit[:1])
""" % UTIL

LOCKS = "{locks}"  # replaced by a fresh lock directory in every run


def venv_python(path):
    """The python of a venv given as the venv or as its python."""
    path = os.path.abspath(path)  # not realpath: a venv's python is a link out of the venv
    return os.path.join(path, "bin", "python") if os.path.isdir(path) else path


def check(argv, what, env=None):
    result = subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if result.returncode != 0:
        sys.exit(f"{what} failed ({' '.join(argv)}):\n{result.stdout}")
    return result.stdout


def wheel_venv(target):
    """Builds the wheel as a user does and installs it in a fresh venv."""
    base = os.path.join(target, "bench-python")
    wheels, venv = os.path.join(base, "wheel"), os.path.join(base, "venv")
    shutil.rmtree(wheels, ignore_errors=True)
    shutil.rmtree(venv, ignore_errors=True)
    env = dict(os.environ, CARGO_TARGET_DIR=target)
    print(f"building the wheel (pip wheel . into {wheels}) ...", flush=True)
    check([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--disable-pip-version-check",
           "-w", wheels, ROOT], "pip wheel .", env)
    wheel = [f for f in os.listdir(wheels) if f.endswith(".whl")]
    if len(wheel) != 1:
        sys.exit(f"pip wheel made {wheel} in {wheels}, not one wheel")
    check([sys.executable, "-m", "venv", venv], "python -m venv")
    python = os.path.join(venv, "bin", "python")
    check([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
           os.path.join(wheels, wheel[0])], "pip install (the wheel)")
    return python


def peers_venv(target):
    """A venv with the pinned peers, reused while it holds those pins."""
    venv = os.path.join(target, "bench-python", "peers")
    python = os.path.join(venv, "bin", "python")
    pins = [p.replace("==", " ") for p in PEERS]
    if os.path.exists(python):
        frozen = subprocess.run([python, "-m", "pip", "freeze"], capture_output=True, text=True).stdout
        have = {line.replace("==", " ").lower() for line in frozen.splitlines()}
        if all(p.lower() in have for p in pins):
            return python
    shutil.rmtree(venv, ignore_errors=True)
    print(f"installing {' '.join(PEERS)} into {venv} ...", flush=True)
    check([sys.executable, "-m", "venv", venv], "python -m venv")
    check([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *PEERS],
          "pip install (the peers)")
    return python


def children_cpu_ms():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (usage.ru_utime + usage.ru_stime) * 1000


def measure_all(cases, runs, env, work):
    """One warm-up run of each case, then `runs` rounds over them all;
    {name: (median, p90, median CPU time (user + system), stdout of the
    last run)}. CPU time barely grows when other work shares the machine,
    where wall time does."""
    times = {name: [] for name, _ in cases}
    cpu = {name: [] for name, _ in cases}
    out = {}
    for round_ in range(runs + 1):
        for name, argv in cases:
            argv = [tempfile.mkdtemp(prefix="locks-", dir=work) if a == LOCKS else a for a in argv]
            before = children_cpu_ms()
            elapsed, out[name] = run_once(argv, env)
            if round_:
                times[name].append(elapsed)
                cpu[name].append(children_cpu_ms() - before)
    return {name: (*summary(t), statistics.median(cpu[name]), out[name]) for name, t in times.items()}


def verdict(met):
    return "met" if met else "MISSED"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    target = os.path.abspath(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")))
    p.add_argument("--runs", type=int, help="runs of every row (default 30; with --smoke 3)")
    p.add_argument("--wheel-venv", help="venv (or its python) with the gpusel wheel installed")
    p.add_argument("--peers-venv", help=f"venv (or its python) with {', '.join(PEERS)}")
    p.add_argument("--lib", default=os.path.join(target, "release", "libfake_nvml.so"))
    p.add_argument("--scenario", default=os.path.join(ROOT, "tests", "fixtures", "nvml", "lab-8xa100.json"))
    p.add_argument("--smoke", action="store_true", help="a few runs, gpusel rows only (CI)")
    args = p.parse_args()
    runs = args.runs or (3 if args.smoke else 30)
    for path in (args.lib, args.scenario):
        if not os.path.exists(path):
            sys.exit(f"{path} not found: build with `cargo build --release -p fake-nvml`, or pass the path")

    ours = venv_python(args.wheel_venv) if args.wheel_venv else wheel_venv(target)
    theirs = None
    if not args.smoke:
        theirs = venv_python(args.peers_venv) if args.peers_venv else peers_venv(target)

    work = tempfile.mkdtemp(prefix="gpusel-bench-")
    try:
        _, env = fake_nvml(work, args.lib, args.scenario)
        for name in [k for k in env if k.startswith("PYTHON")]:
            del env[name]  # PYTHONPATH would import python/gpusel from the source tree
        os.mkdir(os.path.join(work, "xdg"))
        env["XDG_CONFIG_HOME"] = os.path.join(work, "xdg")
        env["GPUSEL_SYSTEM_CONFIG"] = os.path.join(work, "no-config.toml")

        # The wheel, not the source tree, is what is timed.
        where = check([ours, "-c", "import gpusel; print(gpusel.__file__, gpusel.__version__)"],
                      "import gpusel", env).strip()
        if where.startswith(os.path.join(ROOT, "python") + os.sep):
            sys.exit(f"{ours} imports gpusel from the source tree ({where}), not an installed wheel")

        cases = [
            ("python -c pass", [ours, "-c", "pass"]),
            ("import gpusel", [ours, "-c", "import gpusel"]),
            ("import + select", [ours, "-c", SELECT, LOCKS]),
            ("select, filtered", [ours, "-c", SELECT_FILTERED, LOCKS]),
        ]
        if theirs:
            cases += [
                ("nvitop select_dev", [theirs, "-c", NVITOP]),
                ("gpustat new_query", [theirs, "-c", GPUSTAT]),
                ("pynvml by hand", [theirs, "-c", PYNVML]),
            ]
        print(f"gpusel {where}")
        if theirs:
            versions = check([theirs, "-c", "from importlib.metadata import version as v; "
                              "print(*(f'{p} {v(p)}' for p in ('nvitop', 'gpustat', 'nvidia-ml-py')), sep=', ')"],
                             "pip metadata of the peers", env).strip()
            print(f"peers {versions} ({theirs})")
        print(f"scenario {args.scenario}; library {args.lib}; {runs} runs each (+1 warm-up)")
        results = measure_all(cases, runs, env, work)
        print(f"  {'':<18} {'median':>9} {'p90':>9} {'CPU':>9}  {'peak RSS':>9}  picks")
        for name, argv in cases:
            median, p90, cpu, out = results[name]
            argv = [tempfile.mkdtemp(prefix="locks-", dir=work) if a == LOCKS else a for a in argv]
            rss = peak_rss_kib(argv, env)
            rss_text = f"{rss / 1024:5.1f} MiB" if rss is not None else "      n/a"
            print(f"  {name:<18} {median:6.1f} ms {p90:6.1f} ms {cpu:6.1f} ms  {rss_text}  {out.strip()[:30]!r}")

        cpu = {name: r[2] for name, r in results.items()}
        print(f"  CPU time, import + select above python -c pass: "
              f"{cpu['import + select'] - cpu['python -c pass']:.1f} ms"
              + (f"; nvitop / gpusel: {cpu['nvitop select_dev'] / cpu['select, filtered']:.1f}x" if theirs else ""))
        floor = results["python -c pass"][0]
        overhead = results["import + select"][0] - floor
        print(f"  import gpusel adds {results['import gpusel'][0] - floor:.1f} ms to python -c pass")
        print(f"  import + select adds {overhead:.1f} ms (target <= 10 ms): {verdict(overhead <= 10)}")
        if theirs:
            speedup = results["nvitop select_dev"][0] / results["select, filtered"][0]
            print(f"  nvitop select_devices / gpusel select: {speedup:.1f}x (target >= 10x): "
                  f"{verdict(speedup >= 10)}")
            for name in ("gpustat new_query", "pynvml by hand"):
                print(f"  {name} / gpusel select: {results[name][0] / results['select, filtered'][0]:.1f}x")
            print(f"  (ceiling for any Python process: nvitop / python -c pass = "
                  f"{results['nvitop select_dev'][0] / floor:.1f}x)")
            beyond = results["nvitop select_dev"][0] - floor, results["select, filtered"][0] - floor
            print(f"  above python -c pass: nvitop {beyond[0]:.1f} ms, gpusel {beyond[1]:.1f} ms "
                  f"({beyond[0] / beyond[1]:.1f}x)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
