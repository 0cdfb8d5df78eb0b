#!/usr/bin/env python3
"""How long a master over many agents takes to refresh them all.

Starts N real `gpusel serve` agents on loopback (default 100), each on its
own 8-GPU snapshot file (examples/lab-8xa100.json renamed node-000 ...
node-099, so every node has its own host and UUIDs), and one master
`gpusel serve --agents FILE --interval 1s` over them. Then, for many rounds,
it reads the master's own measure of each round from /api/v1/cluster
(`rounds.last_ms`: from the round's start until every node had answered or
timed out) and times GET /api/v1/cluster, GET / (every node on one page)
and GET /metrics from the client's side. Reported: median and p90 of each, against the 1 s
target for a full refresh.

Real agents rather than one fake server on 100 ports: the master then meets
the agents' own HTTP stack, keep-alive and JSON, which is what it meets in a
cluster. The cost is memory: the script reports the agents' total resident
memory too.

    cargo build --release -p gpusel-cli && python3 bench/master.py
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve import start_serve  # noqa: E402
from timing import summary  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SNAPSHOT = os.path.join(ROOT, "examples", "lab-8xa100.json")


def node_snapshot(lab, i, directory):
    """The lab snapshot as node i: its own host name and GPU UUIDs."""
    snap = json.loads(json.dumps(lab))
    snap["host"] = f"node-{i:03d}"
    for gpu in snap["gpus"]:
        gpu["uuid"] = gpu["uuid"][:-3] + f"{i:03d}"
    path = os.path.join(directory, f"node-{i:03d}.json")
    with open(path, "w") as f:
        json.dump(snap, f)
    return path


def get(url):
    """(ms, body) of one GET; exits on anything but 200."""
    start = time.perf_counter()
    with urllib.request.urlopen(url, timeout=30) as response:
        body = response.read()
        if response.status != 200:
            sys.exit(f"GET {url}: {response.status}")
    return (time.perf_counter() - start) * 1000, body


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "gpusel"))
    parser.add_argument("--agents", type=int, default=100, help="how many agents (default 100)")
    parser.add_argument("--rounds", type=int, default=30, help="rounds to measure (default 30)")
    parser.add_argument("--interval", default="1s", help="the master's --interval (default 1s)")
    args = parser.parse_args()
    if not os.access(args.binary, os.X_OK):
        sys.exit(f"{args.binary} not found: run `cargo build --release -p gpusel-cli` first, or pass --binary")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CUDA_", "GPUSEL_", "FAKE_", "RUST_LOG"))}
    scratch = tempfile.mkdtemp(prefix="gpusel-bench-master-")
    env["GPUSEL_LOCK_DIR"] = os.path.join(scratch, "locks")
    env["GPUSEL_SYSTEM_CONFIG"] = os.path.join(scratch, "no-config.toml")
    env["XDG_CONFIG_HOME"] = scratch
    with open(SNAPSHOT) as f:
        lab = json.load(f)

    procs = []
    try:
        urls = []
        for i in range(args.agents):
            path = node_snapshot(lab, i, scratch)
            proc, url = start_serve([args.binary, "--provider", f"file:{path}", "serve",
                               "--listen", "127.0.0.1:0", "--interval", "2s"], env)
            procs.append(proc)
            urls.append(url)
        agents_file = os.path.join(scratch, "agents.toml")
        with open(agents_file, "w") as f:
            f.write('timeout = "2s"\n')
            for i, url in enumerate(urls):
                f.write(f'[[agent]]\nurl = "{url}"\nname = "node-{i:03d}"\n')
        master, base = start_serve([args.binary, "serve", "--listen", "127.0.0.1:0", "--agents", agents_file,
                              "--interval", args.interval], env)
        procs.append(master)

        rounds, api_ms, page_ms, metrics_ms = [], [], [], []
        seen = None
        deadline = time.monotonic() + 60 + 5 * args.rounds
        while len(rounds) < args.rounds:
            if time.monotonic() > deadline:
                sys.exit(f"only {len(rounds)} rounds seen before the deadline")
            ms, body = get(base + "/api/v1/cluster")
            cluster = json.loads(body)
            count = cluster["rounds"]["count"]
            if seen is not None and count > seen:
                down = [n["name"] for n in cluster["nodes"] if n["status"] != "up"]
                if down:
                    sys.exit(f"round {count}: nodes not up: {down[:5]}")
                rounds.append(cluster["rounds"]["last_ms"])
                api_ms.append(ms)
                page_ms.append(get(base + "/")[0])
                metrics_ms.append(get(base + "/metrics")[0])
            seen = count
            time.sleep(0.1)

        gpus = sum(len(n["snapshot"]["gpus"]) for n in cluster["nodes"])
        agents_rss = sum(rss_kib(p.pid) for p in procs[:-1])
        print(f"master over {args.agents} gpusel serve agents on loopback ({gpus} GPUs), "
              f"--interval {args.interval}, {len(rounds)} rounds, {os.cpu_count()} cores")
        print(f"{'':<26} {'median ms':>10} {'p90 ms':>8}")
        for label, times in [("full refresh (all nodes)", rounds),
                             ("GET /api/v1/cluster", api_ms),
                             ("GET / (master page)", page_ms),
                             ("GET /metrics", metrics_ms)]:
            median, p90 = summary(times)
            print(f"{label:<26} {median:>10.1f} {p90:>8.1f}")
        median, p90 = summary(rounds)
        verdict = "meets" if p90 < 1000 else "MISSES"
        print(f"target: a full refresh under 1000 ms: {verdict} it (p90 {p90:.1f} ms)")
        print(f"resident memory: master {rss_kib(master.pid) / 1024:.1f} MiB, "
              f"agents {agents_rss / 1024:.0f} MiB in all ({agents_rss / 1024 / args.agents:.1f} MiB each)")
        if master.poll() is not None:
            sys.exit(f"the master exited with {master.returncode}")
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    main()
