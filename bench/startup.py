#!/usr/bin/env python3
"""Whole-process start-to-exec time of `gpusel -- true` on an 8-GPU snapshot.

Compares, over many runs (median and p90 of wall time):
  baseline   `true` started directly
  print      `gpusel --provider file:examples/lab-8xa100.json`      (select, print)
  exec       `gpusel --provider file:examples/lab-8xa100.json -- true` (select, lease, exec)
  no lease   the same with --no-lease
  list       `gpusel --provider file:examples/lab-8xa100.json list`
The difference exec - baseline is what gpusel adds before the job starts;
exec - no lease is what taking the lease costs. Leases go to a fresh
temporary lock directory, never the machine's.

    cargo build --release && python3 bench/startup.py
"""

import argparse
import os
import sys
import tempfile

from timing import run_once, summary

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SNAPSHOT = os.path.join(ROOT, "examples", "lab-8xa100.json")


def measure_all(cases, runs, env):
    """Round-robin over the cases, so that load from elsewhere on the machine
    falls on all of them alike; returns {name: (median, p90)}."""
    times = {name: [] for name, _ in cases}
    for _ in range(runs):
        for name, argv in cases:
            times[name].append(run_once(argv, env)[0])
    return {name: summary(t) for name, t in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "gpusel"))
    args = parser.parse_args()
    if not os.access(args.binary, os.X_OK):
        sys.exit(f"{args.binary} not found: run `cargo build --release` first, or pass --binary")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CUDA_", "GPUSEL_", "RUST_LOG"))}
    locks = tempfile.mkdtemp(prefix="gpusel-bench-")
    env["GPUSEL_LOCK_DIR"] = os.path.join(locks, "locks")
    env["GPUSEL_SYSTEM_CONFIG"] = os.path.join(locks, "no-config.toml")
    env["XDG_CONFIG_HOME"] = locks
    true = "/bin/true" if os.path.exists("/bin/true") else "true"
    provider = f"file:{SNAPSHOT}"
    cases = [
        ("baseline: true", [true]),
        ("gpusel (print)", [args.binary, "--provider", provider]),
        ("gpusel -- true", [args.binary, "--provider", provider, "--", true]),
        ("--no-lease -- true", [args.binary, "--provider", provider, "--no-lease", "--", true]),
        ("gpusel list", [args.binary, "--provider", provider, "list"]),
    ]
    print(f"{args.runs} runs each, binary {args.binary}")
    results = {}
    for name, (median, p90) in measure_all(cases, args.runs, env).items():
        results[name] = median
        print(f"  {name:<18} median {median:7.2f} ms   p90 {p90:7.2f} ms")
    overhead = results["gpusel -- true"] - results["baseline: true"]
    print(f"  gpusel adds {overhead:.2f} ms before the job starts (median exec - median baseline)")
    lease = results["gpusel -- true"] - results["--no-lease -- true"]
    print(f"  the lease costs {lease:.2f} ms (median exec - median exec --no-lease)")


if __name__ == "__main__":
    main()
