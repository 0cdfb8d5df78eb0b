#!/usr/bin/env python3
"""Whole-process `gpusel list` against the tables it replaces, on the fake
NVML library and its busiest scenario (tests/fixtures/nvml/busy-mixed.json:
5 GPUs, 8 processes, one seen as compute and graphics).

  gpusel    `gpusel list` (release build; NVML through fake-nvml)
  gpustat   `gpustat` (Python + nvidia-ml-py), its default table
  nvitop    `nvitop -1` (Python + nvidia-ml-py), print once and exit

Each is run the same way (stdout a pipe, the same environment), and the
script prints median and p90 wall time, peak resident memory (GNU time) and
the ratios to gpusel.

    cargo build --release -p gpusel-cli -p fake-nvml
    python3 -m venv /tmp/bench-venv && /tmp/bench-venv/bin/pip install nvitop gpustat
    python3 bench/list.py --venv /tmp/bench-venv

Without --venv only gpusel runs (the smoke run in CI).
"""

import argparse
import os
import shutil
import sys
import tempfile

from nvml import fake_nvml, measure

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    p.add_argument("--runs", type=int, default=300, help="runs of gpusel")
    p.add_argument("--python-runs", type=int, default=30, help="runs of gpustat and nvitop")
    p.add_argument("--binary", default=os.path.join(target, "release", "gpusel"))
    p.add_argument("--lib", default=os.path.join(target, "release", "libfake_nvml.so"))
    p.add_argument("--scenario", default=os.path.join(ROOT, "tests", "fixtures", "nvml", "busy-mixed.json"))
    p.add_argument("--venv", help="venv with nvitop and gpustat installed")
    args = p.parse_args()
    for path in (args.binary, args.lib, args.scenario):
        if not os.path.exists(path):
            sys.exit(f"{path} not found: build with `cargo build --release -p gpusel-cli -p fake-nvml`, or pass the path")

    work = tempfile.mkdtemp(prefix="gpusel-bench-")
    try:
        _, env = fake_nvml(work, args.lib, args.scenario)
        env["GPUSEL_LOCK_DIR"] = os.path.join(work, "locks")
        env.setdefault("TERM", "xterm-256color")
        cases = [("gpusel list", [args.binary, "--provider", "nvml", "list"], args.runs)]
        if args.venv:
            bindir = os.path.join(args.venv, "bin")
            cases.append(("gpustat", [os.path.join(bindir, "gpustat")], args.python_runs))
            cases.append(("nvitop -1", [os.path.join(bindir, "nvitop"), "-1"], args.python_runs))

        print(f"scenario {args.scenario}; library {args.lib}")
        results = {}
        for name, argv, runs in cases:
            median, p90, rss, out = measure(argv, runs, env)
            results[name] = median
            lines = len(out.strip().splitlines())
            rss_text = f"{rss / 1024:5.1f} MiB" if rss is not None else "  (no GNU time)"
            print(f"  {name:<12} {runs:4d} runs  median {median:8.2f} ms  p90 {p90:8.2f} ms  "
                  f"peak RSS {rss_text}  {lines} lines")
        ours = results["gpusel list"]
        for name in ("gpustat", "nvitop -1"):
            if name in results:
                print(f"  {name} / gpusel list: {results[name] / ours:.1f}x")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
