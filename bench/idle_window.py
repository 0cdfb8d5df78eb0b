#!/usr/bin/env python3
"""What reading the driver's utilization sample buffer (`--idle-window`)
costs per selection, on 8 GPUs through NVML (the fake library).

Every GPU of `tests/fixtures/nvml/idle-8xa100.json` gets a full sample
buffer: 120 GPU and 120 memory utilization samples over the last 20 s (a
driver samples about every 1/6 s). Round-robin over many runs, median and
p90 of the whole process's wall time:

  window 0    `gpusel -p nvml --idle-window 0 -- true`  (instant readings only)
  window 10s  `gpusel -p nvml -- true`                  (the default: 2 more calls
              per GPU, each asked twice, for the count and the samples)
  print       the same two without `-- true` (select and print)

The difference is what the window costs; the goal is at most 1 ms. The fake
answers from memory, so this measures gpusel's side (the calls, the peak);
a real driver's call cost adds to it and is for scripts/device-check to see.

    cargo build --release -p gpusel-cli -p fake-nvml
    python3 bench/idle_window.py
"""

import argparse
import json
import os
import sys
import tempfile

from timing import run_once, summary

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def scenario(path):
    with open(os.path.join(ROOT, "tests", "fixtures", "nvml", "idle-8xa100.json")) as f:
        s = json.load(f)
    for d in s["devices"]:
        series = [{"age_ms": 20_000 - i * 166, "value": 0} for i in range(120)]
        d["samples"] = {"gpu": series, "memory": series}
    with open(path, "w") as f:
        json.dump(s, f)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "gpusel"))
    ap.add_argument("--library", default=None, help="libfake_nvml.so (default: next to the binary)")
    args = ap.parse_args()
    if not os.access(args.binary, os.X_OK):
        sys.exit(f"{args.binary} not found: cargo build --release -p gpusel-cli -p fake-nvml")
    library = args.library or os.path.join(os.path.dirname(args.binary), "libfake_nvml.so")
    if not os.path.exists(library):
        sys.exit(f"{library} not found: cargo build --release -p fake-nvml, or pass --library")
    work = tempfile.mkdtemp(prefix="gpusel-bench-")
    path = os.path.join(work, "scenario.json")
    scenario(path)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CUDA_", "GPUSEL_", "RUST_LOG", "FAKE_"))}
    env.update({
        "GPUSEL_NVML_LIB": library,
        "FAKE_NVML_SCENARIO": path,
        "GPUSEL_LOCK_DIR": os.path.join(work, "locks"),
        "GPUSEL_SYSTEM_CONFIG": os.path.join(work, "no-config.toml"),
        "XDG_CONFIG_HOME": work,
    })
    true = "/bin/true" if os.path.exists("/bin/true") else "true"
    base = [args.binary, "-p", "nvml"]
    cases = [
        ("exec, window 0", base + ["--idle-window", "0", "--", true]),
        ("exec, window 10s", base + ["--", true]),
        ("print, window 0", base + ["--idle-window", "0"]),
        ("print, window 10s", base),
    ]
    for _, argv in cases:  # every case must work before it is timed (run_once exits if not)
        run_once(argv, env)
    times = {name: [] for name, _ in cases}
    for _ in range(args.runs):
        for name, argv in cases:
            times[name].append(run_once(argv, env)[0])
    stats = {name: summary(t) for name, t in times.items()}
    print(f"{args.runs} runs each, 8 GPUs, 120+120 samples per GPU")
    for name, (median, p90) in stats.items():
        print(f"  {name:18} median {median:7.3f} ms   p90 {p90:7.3f} ms")
    for what in ("exec", "print"):
        cost = stats[f"{what}, window 10s"][0] - stats[f"{what}, window 0"][0]
        verdict = "within" if cost <= 1.0 else "OVER"
        print(f"  the window costs {cost:+.3f} ms per selection ({what}): {verdict} the 1 ms goal")


if __name__ == "__main__":
    main()
