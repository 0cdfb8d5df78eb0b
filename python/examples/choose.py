"""Choosing with a custom test, handling a failure, and reading the state."""

from typing import List

import gpusel


def big_and_quiet(device: gpusel.Device) -> bool:
    free = device.memory_free or 0
    return "A100" in device.name and free >= 40 * 2**30 and (device.utilization or 0) <= 5


def pick() -> str:
    try:
        selection = gpusel.select(where=big_and_quiet, strategy="best-fit", mem="1GiB")
    except gpusel.NoGpuError as e:
        for label, reasons in e.reasons.items():
            print(label, "; ".join(reasons))
        raise
    return selection.cuda_visible_devices


def idle_indices() -> List[int]:
    return [g["device"] for g in gpusel.status(all=True) if g["processes"] == 0]


if __name__ == "__main__":
    print(pick(), idle_indices(), gpusel.snapshot().host)
