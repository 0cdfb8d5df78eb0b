#!/usr/bin/env python3
"""Leases under stress: many `gpusel --wait -- JOB` racing for K GPUs.

Runs --jobs jobs, --concurrency of them at a time, each
`gpusel --wait --provider nvml -- sh -c 'record start; sleep; record end'`
on a fake machine of --gpus idle A100s (fake-nvml, a scenario made from
tests/fixtures/nvml/idle-8xa100.json), and SIGKILLs --kill-fraction of the
jobs (their whole process group, chosen at random, --seed) while they hold
their GPU. Each job records the GPU it was given and when it ran; then:

  double allocations  two jobs that ran on one GPU at overlapping times
                      (must be 0: the lease of one is held all the while)
  lost jobs           jobs that never ran, or failed, and were not killed
  leases left         devices `gpusel list --json` shows leased after all ended
  wall time           against the ideal, total work / K

and exits non-zero unless all three counts are 0. Leases go to a fresh
temporary lock directory, never the machine's.

    cargo build --release -p fake-nvml -p gpusel-cli && python3 bench/stress.py --jobs 1000
    python3 bench/stress.py --smoke     # 20 jobs, as CI runs it
"""

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEMPLATE = os.path.join(ROOT, "tests", "fixtures", "nvml", "idle-8xa100.json")

# The job: its GPU (the ordinal gpusel wrote) and its start, then its end,
# in ns; written by the job itself, so they lie inside the time it held the lease.
JOB = 'printf "%s %s\\n" "$CUDA_VISIBLE_DEVICES" "$(date +%s%N)" > "$1"; sleep "$2"; date +%s%N >> "$1"'


def scenario(gpus, path):
    """A fake-nvml scenario of `gpus` idle GPUs, copies of the template's first."""
    with open(TEMPLATE) as f:
        base = json.load(f)
    device = base["devices"][0]
    devices = []
    for i in range(gpus):
        d = json.loads(json.dumps(device))
        d["uuid"] = f"GPU-57e55000-a100-4000-8000-{i:012x}"
        d["pci_bus_id"] = f"00000000:{(i // 32) + 1:02X}:{i % 32:02X}.0"
        devices.append(d)
    base["devices"] = devices
    base["comment"] = f"bench/stress.py: {gpus} idle A100s"
    with open(path, "w") as f:
        json.dump(base, f)


def started(record):
    """Whether the job wrote its start line (in one write: whole once seen)."""
    try:
        with open(record) as f:
            return f.read().endswith("\n")
    except FileNotFoundError:
        return False


def overlaps(runs):
    """Pairs of runs on one GPU that overlap in time; runs: [(gpu, start, end, job)]."""
    by_gpu = {}
    for gpu, start, end, job in runs:
        by_gpu.setdefault(gpu, []).append((start, end, job))
    pairs = []
    for gpu, spans in by_gpu.items():
        spans.sort()
        latest_end, latest_job = None, None
        for start, end, job in spans:
            if latest_end is not None and start < latest_end:
                pairs.append((gpu, latest_job, job))
            if latest_end is None or end > latest_end:
                latest_end, latest_job = end, job
    return pairs


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--gpus", type=int, default=8)
    parser.add_argument("--kill-fraction", type=float, default=0.1)
    parser.add_argument("--job-ms", type=int, default=100, help="how long each job holds its GPU")
    parser.add_argument("--concurrency", type=int, default=0,
                        help="jobs alive at once, racing for the GPUs (default 4 per GPU)")
    parser.add_argument("--interval-ms", type=int, default=20, help="--interval of the waiting jobs")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--smoke", action="store_true", help="20 jobs on 4 GPUs, as CI runs it")
    parser.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "gpusel"))
    parser.add_argument("--lib", default=None, help="libfake_nvml.so (default: beside --binary)")
    args = parser.parse_args()
    if args.smoke:
        args.jobs, args.gpus = 20, 4
    if args.jobs < 1 or args.gpus < 1 or not 0 <= args.kill_fraction <= 1 or args.job_ms < 1:
        sys.exit("--jobs, --gpus and --job-ms must be at least 1, --kill-fraction 0 to 1")
    concurrency = args.concurrency or 4 * args.gpus
    lib = args.lib or os.path.join(os.path.dirname(args.binary), "libfake_nvml.so")
    for path, what in [(args.binary, "gpusel"), (lib, "libfake_nvml.so")]:
        if not os.path.exists(path):
            sys.exit(f"{path} not found: run `cargo build --release -p fake-nvml -p gpusel-cli` first, "
                     f"or pass --binary/--lib ({what})")

    work = tempfile.mkdtemp(prefix="gpusel-stress-")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CUDA_", "GPUSEL_", "FAKE_NVML", "RUST_LOG"))}
    env["GPUSEL_LOCK_DIR"] = os.path.join(work, "locks")
    env["GPUSEL_SYSTEM_CONFIG"] = os.path.join(work, "no-config.toml")
    env["XDG_CONFIG_HOME"] = work
    env["GPUSEL_NVML_LIB"] = lib
    env["FAKE_NVML_SCENARIO"] = os.path.join(work, "scenario.json")
    scenario(args.gpus, env["FAKE_NVML_SCENARIO"])
    gpusel = [args.binary, "--provider", "nvml", "--wait", "--interval", f"{args.interval_ms}ms"]

    rng = random.Random(args.seed)
    doomed = set(rng.sample(range(args.jobs), round(args.jobs * args.kill_fraction)))
    seconds = f"{args.job_ms / 1000:.3f}"
    records = [os.path.join(work, f"job-{j}") for j in range(args.jobs)]
    running = {}  # job -> Popen
    killed = {}  # job -> kill time, ns
    failed = {}  # job -> (exit status, stderr)
    next_job = 0
    print(f"{args.jobs} jobs of {args.job_ms} ms on {args.gpus} GPUs, {concurrency} at a time, "
          f"{len(doomed)} SIGKILLed while holding their GPU; binary {args.binary}")
    start = time.monotonic()
    while next_job < args.jobs or running:
        while next_job < args.jobs and len(running) < concurrency:
            argv = gpusel + ["--", "sh", "-c", JOB, "job", records[next_job], seconds]
            # stderr to a file: a waiting gpusel logs as it waits, and a pipe
            # nobody reads until the end would fill and block it.
            with open(records[next_job] + ".err", "w") as err:
                running[next_job] = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL,
                                                     stderr=err, start_new_session=True)
            next_job += 1
        for job, proc in list(running.items()):
            if job in doomed and job not in killed and started(records[job]):
                # It started: it holds its GPU. Kill the job and its sleep.
                killed[job] = time.time_ns()
                os.killpg(proc.pid, signal.SIGKILL)
            status = proc.poll()
            if status is None:
                continue
            del running[job]
            if status != 0 and job not in killed:
                with open(records[job] + ".err") as err:
                    failed[job] = (status, err.read().strip().splitlines()[-1:] or [""])
        time.sleep(0.002)
    wall = time.monotonic() - start

    runs, lost = [], []
    for job, path in enumerate(records):
        try:
            with open(path) as f:
                lines = f.read().split()
        except FileNotFoundError:
            lines = []
        if job in killed and len(lines) >= 2:
            # Killed, unless it had just ended on its own.
            end = min(killed[job], int(lines[2])) if len(lines) == 3 else killed[job]
            runs.append((lines[0], int(lines[1]), end, job))
        elif len(lines) == 3 and job not in failed:
            runs.append((lines[0], int(lines[1]), int(lines[2]), job))
        else:
            lost.append(job)
    double = overlaps(runs)
    listing = subprocess.run([args.binary, "--provider", "nvml", "list", "--json"], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if listing.returncode != 0:
        sys.exit(f"gpusel list --json failed: {listing.stderr.strip()}")
    left = [g["uuid"] for g in json.loads(listing.stdout)["gpus"] if g.get("lease")]
    used = {gpu for gpu, *_ in runs}
    ideal = args.jobs * args.job_ms / 1000 / args.gpus

    print(f"  ran                 {len(runs)} ({len(killed)} killed while running) on {len(used)} GPUs")
    print(f"  double allocations  {len(double)}")
    print(f"  lost jobs           {len(lost)}")
    print(f"  leases left         {len(left)}")
    print(f"  wall time           {wall:.2f} s, ideal {ideal:.2f} s (total work / {args.gpus} GPUs): "
          f"{wall / ideal:.2f}x, {(wall - ideal) * args.gpus / args.jobs * 1000:.1f} ms per job beyond its work")
    for gpu, a, b in double[:5]:
        print(f"  GPU {gpu}: jobs {a} and {b} overlapped", file=sys.stderr)
    for job in lost[:5]:
        status, line = failed.get(job, (None, [""]))
        print(f"  job {job} lost (exit status {status}): {line[0]}", file=sys.stderr)
    for uuid in left[:5]:
        print(f"  {uuid} is still leased after every job ended", file=sys.stderr)
    if double or lost or left:
        sys.exit("stress: leases failed (see above); the lock directory is kept in " + work)
    subprocess.run(["rm", "-rf", work], check=True)


if __name__ == "__main__":
    main()
