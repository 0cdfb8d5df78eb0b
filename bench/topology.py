#!/usr/bin/env python3
"""What topology costs a whole `gpusel -n 2` on 8 GPUs through NVML (fake
library): 8 idle A100s read with topology (`nvlink-pairs-8xa100`: affinity,
NVLink and common-ancestor calls, then the set choice), an NVSwitch board
(`nvswitch-8xh100`: P2P status calls too), and 8 idle A100s without
(`idle-8xa100`, whose driver answers NOT_SUPPORTED to every topology call).
The fake answers in microseconds: a real driver's calls cost more (see
docs/providers.md), which `gpusel -vv` reports as "topology ... read in".
Interleaved runs; median and p90 of each, and the difference to no topology.

    cargo build --release -p gpusel-cli -p fake-nvml
    python3 bench/topology.py [--runs 200]

The set choice alone, on 8 and 16 GPUs:
    cargo run --release -p gpusel-core --example set_choice
"""

import argparse
import os
import tempfile

from timing import run_once, summary

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    release = os.path.join(ROOT, "target", "release")
    gpusel = os.path.join(release, "gpusel")
    lib = os.path.join(release, "libfake_nvml.so")
    scenarios = {
        "NVLink pairs": "nvlink-pairs-8xa100",
        "NVSwitch": "nvswitch-8xh100",
        "no topology": "idle-8xa100",
    }
    times = {name: [] for name in scenarios}
    with tempfile.TemporaryDirectory() as locks:
        envs = {
            name: {
                "PATH": os.environ.get("PATH", ""),
                "GPUSEL_NVML_LIB": lib,
                "GPUSEL_LOCK_DIR": locks,
                "FAKE_NVML_SCENARIO": os.path.join(ROOT, "tests", "fixtures", "nvml", f"{s}.json"),
            }
            for name, s in scenarios.items()
        }
        for _ in range(args.runs):
            for name, env in envs.items():
                elapsed, _ = run_once([gpusel, "-n", "2", "--provider", "nvml"], env)
                times[name].append(elapsed)
    base = summary(times["no topology"])[0]
    for name, t in times.items():
        median, p90 = summary(t)
        print(f"{name:<12} median {median:6.2f} ms  p90 {p90:6.2f} ms  ({median - base:+5.2f} ms)")


if __name__ == "__main__":
    main()
