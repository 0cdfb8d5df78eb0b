#!/usr/bin/env python3
"""Time per snapshot of `--provider smi`, whole process, on the fake nvidia-smi.

Compares, over many runs (median and p90 of wall time):
  fake alone   the two nvidia-smi queries a snapshot makes, run one after the
               other by hand (what the fake itself costs)
  file         `gpusel --provider file:examples/lab-8xa100.json list --json`
  smi          `gpusel --provider smi list --json` on the equivalent scenario
smi - file is what reading through nvidia-smi adds; with the fake, most of it
is the fake (a shell script and awk), not gpusel. A real nvidia-smi takes
tens of milliseconds per call on a real GPU.

    cargo build --release && python3 bench/smi_snapshot.py
"""

import argparse
import os
import sys

from timing import run_once, summary

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAKE_DIR = os.path.join(ROOT, "tests", "fixtures", "smi")
SNAPSHOT = os.path.join(ROOT, "examples", "lab-8xa100.json")


def run_all(argvs, env):
    """Runs the commands one after the other; their total wall time in ms."""
    return sum(run_once(argv, env)[0] for argv in argvs)


def measure(argvs, runs, env):
    return summary([run_all(argvs, env) for _ in range(runs)])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "gpusel"))
    args = parser.parse_args()
    if not os.access(args.binary, os.X_OK):
        sys.exit(f"{args.binary} not found: run `cargo build --release` first, or pass --binary")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CUDA_", "GPUSEL_", "RUST_LOG", "FAKE_SMI"))}
    env["PATH"] = FAKE_DIR + os.pathsep + env.get("PATH", "")
    env["FAKE_SMI_SCENARIO"] = "lab-8xa100"
    fake = os.path.join(FAKE_DIR, "nvidia-smi")
    fmt = "--format=csv,noheader,nounits"
    gpu_fields = "index,uuid,name,pci.bus_id,memory.total,memory.used,memory.free,utilization.gpu,utilization.memory,temperature.gpu,power.draw,power.limit,pstate,clocks.sm,mig.mode.current,driver_version"
    cases = [
        ("fake alone (2 queries)", [[fake, f"--query-gpu={gpu_fields}", fmt],
                                    [fake, "--query-compute-apps=pid,process_name,used_memory,gpu_uuid", fmt]]),
        ("file list --json", [[args.binary, "--provider", f"file:{SNAPSHOT}", "list", "--json"]]),
        ("smi list --json", [[args.binary, "--provider", "smi", "list", "--json"]]),
    ]
    print(f"{args.runs} runs each, binary {args.binary}")
    results = {}
    for name, argvs in cases:
        median, p90 = measure(argvs, args.runs, env)
        results[name] = median
        print(f"  {name:<24} median {median:7.2f} ms   p90 {p90:7.2f} ms")
    print(f"  smi - file: {results['smi list --json'] - results['file list --json']:.2f} ms per snapshot")


if __name__ == "__main__":
    main()
