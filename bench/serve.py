#!/usr/bin/env python3
"""Throughput, p99 latency and memory of `gpusel serve` under wrk on loopback.

Starts `gpusel serve` on an 8-GPU snapshot (examples/lab-8xa100.json, or
fake NVML with --lib), then for each endpoint runs
    wrk --latency -t THREADS -c CONNECTIONS -d DURATION URL
and reports requests per second, p50 and p99 latency, and the server's
resident memory (VmRSS now, VmHWM its peak) after all the load. Every
request is answered from the pre-rendered snapshot, so the driver is not
what is measured: the provider does not matter.

wrk and the server share the machine's cores; the figures are what one box
does against itself, a lower bound for a server scraped from elsewhere.

    cargo build --release -p gpusel-cli && python3 bench/serve.py
    apt-get install wrk   # Debian; or build it from github.com/wg/wrk
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SNAPSHOT = os.path.join(ROOT, "examples", "lab-8xa100.json")
NVML_SCENARIO = os.path.join(ROOT, "tests", "fixtures", "nvml", "lab-8xa100.json")
ENDPOINTS = ["/metrics", "/api/v1/snapshot", "/"]


def start_server(binary, lib, env):
    """`gpusel serve` on a free loopback port: (process, base URL)."""
    argv = [binary, "serve", "--listen", "127.0.0.1:0"]
    if lib:
        env = dict(env, GPUSEL_NVML_LIB=lib, FAKE_NVML_SCENARIO=NVML_SCENARIO)
        argv[1:1] = ["--provider", "nvml"]
    else:
        argv[1:1] = ["--provider", f"file:{SNAPSHOT}"]
    return start_serve(argv, env)


def start_serve(argv, env):
    """Starts `argv` (a `gpusel ... serve` on a free port) and waits for the
    line saying where it serves: (process, base URL)."""
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    line = proc.stderr.readline()
    match = re.search(r"serving (http://[^/ ]+)/", line)
    if not match:
        proc.kill()
        sys.exit(f"{' '.join(argv)} did not start: {line}{proc.stderr.read()}")
    return proc, match.group(1)


def memory_kib(pid):
    """(VmRSS, VmHWM) of `pid` in KiB."""
    fields = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                fields[name] = int(value.split()[0])
    return fields["VmRSS"], fields["VmHWM"]


def to_ms(text):
    """wrk's latency ("812.00us", "1.20ms", "2.01s") in ms."""
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def run_wrk(url, threads, connections, duration):
    """(requests/s, p50 ms, p99 ms, requests) of one wrk run; exits on errors."""
    argv = ["wrk", "--latency", "-t", str(threads), "-c", str(connections), "-d", duration, url]
    out = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    text = out.stdout
    if out.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed:\n{text}")
    if "Non-2xx" in text or "Socket errors" in text:
        sys.exit(f"{url}: errors under load:\n{text}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    p50 = to_ms(re.search(r"^\s+50%\s+(\S+)", text, re.M).group(1))
    p99 = to_ms(re.search(r"^\s+99%\s+(\S+)", text, re.M).group(1))
    total = int(re.search(r"(\d+) requests in", text).group(1))
    return rps, p50, p99, total


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "gpusel"))
    parser.add_argument("--lib", help="serve fake NVML from this libfake_nvml.so instead of the snapshot file")
    parser.add_argument("--duration", default="10s", help="wrk's -d per endpoint (default 10s)")
    parser.add_argument("--threads", type=int, default=2, help="wrk's -t (default 2)")
    parser.add_argument("--connections", type=int, default=32, help="wrk's -c (default 32)")
    args = parser.parse_args()
    if not os.access(args.binary, os.X_OK):
        sys.exit(f"{args.binary} not found: run `cargo build --release -p gpusel-cli` first, or pass --binary")
    if not shutil.which("wrk"):
        sys.exit("wrk not found: apt-get install wrk")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CUDA_", "GPUSEL_", "FAKE_", "RUST_LOG"))}
    scratch = tempfile.mkdtemp(prefix="gpusel-bench-")
    env["GPUSEL_LOCK_DIR"] = os.path.join(scratch, "locks")
    env["GPUSEL_SYSTEM_CONFIG"] = os.path.join(scratch, "no-config.toml")
    env["XDG_CONFIG_HOME"] = scratch

    proc, base = start_server(args.binary, args.lib, env)
    try:
        time.sleep(0.3)
        idle_rss, _ = memory_kib(proc.pid)
        print(f"gpusel serve at {base} ({'fake NVML' if args.lib else 'snapshot file'}, 8 GPUs), "
              f"wrk -t{args.threads} -c{args.connections} -d{args.duration}, {os.cpu_count()} cores")
        print(f"{'endpoint':<18} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'requests':>10}")
        for path in ENDPOINTS:
            rps, p50, p99, total = run_wrk(base + path, args.threads, args.connections, args.duration)
            print(f"{path:<18} {rps:>10.0f} {p50:>8.2f} {p99:>8.2f} {total:>10}")
        rss, peak = memory_kib(proc.pid)
        print(f"resident memory: {idle_rss / 1024:.1f} MiB idle, {rss / 1024:.1f} MiB after the load, "
              f"{peak / 1024:.1f} MiB peak")
        if proc.poll() is not None:
            sys.exit(f"gpusel serve exited with {proc.returncode}: {proc.stderr.read()}")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            sys.exit("gpusel serve did not stop within 10 s of SIGTERM")
    if proc.returncode != 0:
        sys.exit(f"gpusel serve exited with {proc.returncode} on SIGTERM")


if __name__ == "__main__":
    main()
