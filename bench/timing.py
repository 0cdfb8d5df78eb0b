"""Whole-process timing shared by the scripts in bench/: run a command, fail
loudly if it fails, and summarise many runs as median and p90."""

import math
import statistics
import subprocess
import sys
import time


def run_once(argv, env):
    """Wall time of one run in ms, and its stdout; exits if the run fails."""
    start = time.perf_counter()
    result = subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    elapsed = (time.perf_counter() - start) * 1000
    if result.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed with {result.returncode}:\n"
                 f"{result.stdout.decode(errors='replace')}{result.stderr.decode(errors='replace')}")
    return elapsed, result.stdout.decode(errors="replace")


def summary(times):
    """(median, p90) of a list of times; p90 by nearest rank."""
    times = sorted(times)
    return statistics.median(times), times[max(math.ceil(len(times) * 0.9) - 1, 0)]
