#!/usr/bin/env python3
"""Cost of shares and the queue, as whole commands (median and p90 of wall time).

Cases, on an 8-GPU snapshot of idle 80 GiB GPUs, each in a fresh lock
directory unless it says "crowded": a directory where 100 live shares
(`--share --mem 100MiB -d 0 -- sleep`) and 100 waiters (`--wait` for a
request nothing meets, each holding a queue ticket) are held for the whole
run.

  before: -- true         `gpusel -- true` of --before (a build without shares/queue)
  after: -- true          the same with --binary
  after: -- true, crowded the same among 100 shares and 100 waiters
  share                   `gpusel --share --mem 100MiB -d 0 -- true` (admission)
  share, crowded          the same among 100 shares and 100 waiters

    cargo build --release && python3 bench/share.py --before OLD/gpusel
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from timing import run_once, summary

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def snapshot(path):
    gpus = []
    for i in range(8):
        gpus.append({
            "index": i,
            "uuid": f"GPU-{i:08x}-0000-4000-8000-{i:012x}",
            "name": "NVIDIA A100-SXM4-80GB",
            "memory_total": 85899345920,
            "memory_used": 4194304,
            "memory_free": 85895151616,
            "utilization_gpu": 0,
            "utilization_memory": 0,
            "power_draw": 60000,
            "power_limit": 400000,
            "processes": [],
        })
    with open(path, "w") as f:
        json.dump({"schema_version": 1, "host": "bench", "time": "2026-12-01T00:00:00Z",
                   "provider": "bench", "gpus": gpus}, f)


def environment(base, locks):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CUDA_", "GPUSEL_", "RUST_LOG"))}
    env["GPUSEL_LOCK_DIR"] = locks
    env["GPUSEL_SYSTEM_CONFIG"] = os.path.join(base, "no-config.toml")
    env["XDG_CONFIG_HOME"] = base
    return env


def crowd(binary, provider, env, shares, waiters):
    """Starts the shares and the waiters; returns them once all are in place."""
    procs = []
    for _ in range(shares):
        procs.append(subprocess.Popen(
            [binary, "--provider", provider, "--share", "--mem", "100MiB", "-d", "0", "--", "sleep", "3600"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    for _ in range(waiters):
        procs.append(subprocess.Popen(
            [binary, "--provider", provider, "--mem", "1000GiB", "--wait", "--interval", "1h", "--", "true"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        names = os.listdir(env["GPUSEL_LOCK_DIR"])
        have = (sum(n.endswith(".share") for n in names), sum(n.endswith(".ticket") for n in names))
        if have == (shares, waiters):
            return procs
        time.sleep(0.1)
    for p in procs:
        p.kill()
    sys.exit(f"the crowd did not gather: {have} of {(shares, waiters)}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "gpusel"))
    parser.add_argument("--before", help="a gpusel built without shares and the queue")
    parser.add_argument("--shares", type=int, default=100)
    parser.add_argument("--waiters", type=int, default=100)
    args = parser.parse_args()
    for b in [args.binary] + ([args.before] if args.before else []):
        if not os.access(b, os.X_OK):
            sys.exit(f"{b} not found: run `cargo build --release` first, or pass --binary/--before")
    base = tempfile.mkdtemp(prefix="gpusel-bench-share-")
    snap = os.path.join(base, "8-idle.json")
    snapshot(snap)
    provider = f"file:{snap}"
    true = "/bin/true" if os.path.exists("/bin/true") else "true"
    empty = environment(base, os.path.join(base, "empty"))
    crowded = environment(base, os.path.join(base, "crowded"))
    os.makedirs(crowded["GPUSEL_LOCK_DIR"], mode=0o1777)
    os.chmod(crowded["GPUSEL_LOCK_DIR"], 0o1777)
    procs = crowd(args.binary, provider, crowded, args.shares, args.waiters)
    try:
        exclusive = [args.binary, "--provider", provider, "-x", "0", "--", true]
        share = [args.binary, "--provider", provider, "--share", "--mem", "100MiB", "-d", "0", "--", true]
        cases = [("after: -- true", exclusive, empty)]
        if args.before:
            cases.insert(0, ("before: -- true", [args.before] + exclusive[1:], empty))
        cases += [
            ("after: -- true, crowded", exclusive, crowded),
            ("share", share, empty),
            ("share, crowded", share, crowded),
        ]
        times = {name: [] for name, _, _ in cases}
        # Round-robin, so that load from elsewhere falls on every case alike.
        for _ in range(args.runs):
            for name, argv, env in cases:
                times[name].append(run_once(argv, env)[0])
        print(f"{args.runs} runs each; crowded: {args.shares} live shares and {args.waiters} waiters")
        results = {}
        for name, t in times.items():
            median, p90 = summary(t)
            results[name] = median
            print(f"  {name:<24} median {median:7.2f} ms   p90 {p90:7.2f} ms")
        if args.before:
            grew = results["after: -- true"] - results["before: -- true"]
            print(f"  `gpusel -- true` grew by {grew:.2f} ms (median after - median before)")
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()


if __name__ == "__main__":
    main()
