#!/usr/bin/env python3
"""Whole-process GPU selection through NVML, on the fake library, against the
tools gpusel replaces and against a C floor.

Every contender reads the same fake `libnvidia-ml.so.1` and 8-GPU scenario:

  floor    bench/nvml_floor.c: init, count, and per GPU name, UUID, memory,
           utilization, processes, temperature, power; prints the first idle
           GPU (compiled here with cc -O2)
  gpusel   `gpusel --provider nvml` (select and print, as in $(gpusel))
  nvisel   nvitop's selector (`nvisel`), Python + nvidia-ml-py
  gpustat  `gpustat --json`, Python + nvidia-ml-py

It prints the median and p90 wall time of each, the peak resident memory
(GNU time's %M: measured through /usr/bin/time, because a child forked from
this Python process would report Python's own pages), and the ratios to the
floor and to gpusel.

    cargo build --release -p gpusel-cli -p fake-nvml
    python3 -m venv target/bench-venv && target/bench-venv/bin/pip install nvitop gpustat
    python3 bench/nvml.py --venv target/bench-venv
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

from timing import run_once, summary

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


GNU_TIME = "/usr/bin/time"


def peak_rss_kib(argv, env):
    """Peak resident set of one run in KiB, or None without GNU time."""
    if not os.access(GNU_TIME, os.X_OK):
        return None
    result = subprocess.run([GNU_TIME, "-f", "%M", *argv], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    lines = result.stderr.strip().splitlines()
    return int(lines[-1]) if result.returncode == 0 and lines and lines[-1].isdigit() else None


def measure(argv, runs, env):
    runs = [run_once(argv, env) for _ in range(runs)]
    median, p90 = summary([elapsed for elapsed, _ in runs])
    return median, p90, peak_rss_kib(argv, env), runs[0][1]


def fake_nvml(work, library, scenario, scenario_var="FAKE_NVML_SCENARIO"):
    """The fake NVML `library` under its real name in `work` (pynvml, nvitop
    and the floor load it by that name), and an environment where every tool
    finds it serving `scenario`, free of the caller's CUDA_/GPUSEL_ settings:
    (library path, environment)."""
    libdir = os.path.join(work, "lib")
    os.mkdir(libdir)
    lib = os.path.join(libdir, "libnvidia-ml.so.1")
    os.symlink(os.path.abspath(library), lib)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CUDA_", "GPUSEL_", "RUST_LOG"))}
    env[scenario_var] = os.path.abspath(scenario)
    env["GPUSEL_NVML_LIB"] = lib
    env["LD_LIBRARY_PATH"] = libdir
    return lib, env


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    p.add_argument("--runs", type=int, default=300, help="runs of gpusel and the floor")
    p.add_argument("--python-runs", type=int, default=30, help="runs of nvisel and gpustat")
    p.add_argument("--binary", default=os.path.join(target, "release", "gpusel"))
    p.add_argument("--lib", default=os.path.join(target, "release", "libfake_nvml.so"))
    p.add_argument("--scenario", default=os.path.join(ROOT, "tests", "fixtures", "nvml", "idle-8xa100.json"))
    p.add_argument("--scenario-var", default="FAKE_NVML_SCENARIO", help="variable the fake library reads")
    p.add_argument("--venv", help="venv with nvitop and gpustat installed; without it only gpusel and the floor run")
    args = p.parse_args()
    for path in (args.binary, args.lib, args.scenario):
        if not os.path.exists(path):
            sys.exit(f"{path} not found: build with `cargo build --release -p gpusel-cli -p fake-nvml`, or pass the path")

    work = tempfile.mkdtemp(prefix="gpusel-bench-")
    try:
        lib, env = fake_nvml(work, args.lib, args.scenario, args.scenario_var)
        floor = os.path.join(work, "nvml_floor")
        subprocess.run(["cc", "-O2", "-o", floor, os.path.join(ROOT, "bench", "nvml_floor.c"), "-ldl"], check=True)

        # No lease: the floor and the Python tools take none either.
        cases = [
            ("floor (C)", [floor, lib], args.runs),
            ("gpusel", [args.binary, "--provider", "nvml"], args.runs),
        ]
        if "--no-lease" in subprocess.run([args.binary, "--help"], capture_output=True, text=True).stdout:
            cases[1] = ("gpusel", [args.binary, "--provider", "nvml", "--no-lease"], args.runs)
        if args.venv:
            bindir = os.path.join(args.venv, "bin")
            cases.append(("nvisel", [os.path.join(bindir, "nvisel")], args.python_runs))
            cases.append(("gpustat --json", [os.path.join(bindir, "gpustat"), "--json"], args.python_runs))

        print(f"scenario {args.scenario}; library {args.lib}")
        results = {}
        for name, argv, runs in cases:
            median, p90, rss, out = measure(argv, runs, env)
            results[name] = median
            shown = out.strip().splitlines()[0][:40] if out.strip() else ""
            rss_text = f"{rss / 1024:5.1f} MiB" if rss is not None else "  (no GNU time)"
            print(f"  {name:<15} {runs:4d} runs  median {median:8.2f} ms  p90 {p90:8.2f} ms  "
                  f"peak RSS {rss_text}  prints {shown!r}")
        base, ours = results["floor (C)"], results["gpusel"]
        print(f"  gpusel / floor: {ours / base:.2f}x")
        for name in ("nvisel", "gpustat --json"):
            if name in results:
                print(f"  {name} / gpusel: {results[name] / ours:.1f}x")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
