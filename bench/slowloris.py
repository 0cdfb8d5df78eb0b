#!/usr/bin/env python3
"""Whether `gpusel serve` keeps answering under a slowloris attack.

Starts `gpusel serve` on examples/lab-8xa100.json, opens CONNECTIONS
(default 2000) loopback connections that each send a request's headers one
byte at a time (a byte every DRIBBLE seconds, reconnecting whenever the
server closes them), and meanwhile probes `GET /healthz` from a fresh
connection every PERIOD seconds for DURATION seconds. Reports the probes'
median and p90 latency, how many were answered within 1 s, and how many
got no answer within the probe's limit (TIMEOUT).

    cargo build --release -p gpusel-cli && python3 bench/slowloris.py
    python3 bench/slowloris.py --binary /path/to/other/gpusel   # to compare

The attackers, the probes and the server share the machine's cores, so the
figures are what one box does against itself.
"""

import argparse
import asyncio
import os
import resource
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve import SNAPSHOT, start_serve  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\nUser-Agent: slowloris\r\n" + b"X-a: b\r\n" * 10_000


async def attacker(host, port, dribble, stop):
    """One slow client: a byte every `dribble` s, again whenever closed."""
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            await asyncio.sleep(0.1)
            continue
        try:
            for i in range(len(REQUEST)):
                if stop.is_set() or reader.at_eof():
                    break
                writer.write(REQUEST[i : i + 1])
                await writer.drain()
                await asyncio.sleep(dribble)
        except OSError:
            pass
        finally:
            writer.close()


async def probe(host, port, timeout):
    """(seconds, None) for one `GET /healthz` on a fresh connection answered
    200, else (None, why): "timeout", "connect" (refused or reset) or
    "closed" (closed without the answer)."""
    start = time.monotonic()
    connected = False

    async def exchange():
        nonlocal connected
        reader, writer = await asyncio.open_connection(host, port)
        connected = True
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        await writer.drain()
        data = await reader.read()
        writer.close()
        return data

    try:
        data = await asyncio.wait_for(exchange(), timeout)
    except asyncio.TimeoutError:
        return None, "timeout" if connected else "timeout connecting"
    except OSError:
        return None, "closed" if connected else "connect"
    if not data.startswith(b"HTTP/1.1 200"):
        return None, "closed"
    return time.monotonic() - start, None


async def attack(url, connections, dribble, duration, period, timeout):
    host, port = url.removeprefix("http://").rsplit(":", 1)
    stop = asyncio.Event()
    slow = [asyncio.create_task(attacker(host, int(port), dribble, stop)) for _ in range(connections)]
    await asyncio.sleep(min(5.0, duration / 4))  # let them pile up
    probes = []
    end = time.monotonic() + duration
    while time.monotonic() < end:
        probes.append(asyncio.create_task(probe(host, int(port), timeout)))
        await asyncio.sleep(period)
    results = await asyncio.gather(*probes)
    stop.set()
    for task in slow:
        task.cancel()
    await asyncio.gather(*slow, return_exceptions=True)
    return results


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "gpusel"))
    ap.add_argument("--connections", type=int, default=2000)
    ap.add_argument("--dribble", type=float, default=0.5, help="seconds between two bytes of one attacker")
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of probing")
    ap.add_argument("--period", type=float, default=0.5, help="seconds between probes")
    ap.add_argument("--timeout", type=float, default=30.0, help="the longest a probe waits")
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = args.connections + 200
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    proc, url = start_serve([args.binary, "--provider", f"file:{SNAPSHOT}", "serve", "--listen", "127.0.0.1:0"], os.environ)
    try:
        results = asyncio.run(attack(url, args.connections, args.dribble, args.duration, args.period, args.timeout))
    finally:
        proc.kill()
        proc.wait()
    answered = sorted(r for r, _ in results if r is not None)
    failures = {}
    for _, why in results:
        if why:
            failures[why] = failures.get(why, 0) + 1
    # A probe without an answer counts as the longest wait.
    waits = sorted(r if r is not None else args.timeout for r, _ in results)
    q = statistics.quantiles(waits, n=10) if len(waits) > 1 else waits * 9
    print(f"{args.binary}: {args.connections} dribbling connections, {len(results)} /healthz probes")
    print(f"  median {statistics.median(waits) * 1000:.0f} ms, p90 {q[8] * 1000:.0f} ms")
    print(f"  answered within 1 s: {sum(1 for r in answered if r <= 1.0)}/{len(results)}")
    print(f"  not answered within {args.timeout:g} s: {len(results) - len(answered)} {failures or ''}")


if __name__ == "__main__":
    main()
