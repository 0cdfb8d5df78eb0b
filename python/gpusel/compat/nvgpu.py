"""nvgpu's ``available_gpus()`` and ``gpu_info()`` over gpusel."""

from __future__ import annotations

from typing import TYPE_CHECKING

import gpusel

from . import _common

if TYPE_CHECKING:
    from typing import Any, Dict, List


def _used_percent(d: gpusel.Device) -> float:
    total, used = d.memory_total, d.memory_used
    if not total or used is None:
        return 100.0
    return 100.0 * used / total


def gpu_info() -> List[Dict[str, Any]]:
    """nvgpu's ``gpu_info()``: per GPU ``index`` (a str), ``type`` (the
    name), ``uuid``, ``mem_used``/``mem_total`` (MiB, ints) and
    ``mem_used_percent`` (a float)."""
    return [
        {
            "index": str(d.index),
            "type": d.name,
            "uuid": d.uuid,
            "mem_used": _common.megabytes(d.memory_used),
            "mem_total": _common.megabytes(d.memory_total),
            "mem_used_percent": _used_percent(d),
        }
        for d in gpusel.snapshot().gpus
    ]


def available_gpus(max_used_percent: float = 20.0) -> List[str]:
    """nvgpu's ``available_gpus()``: the indices (strs, ``['1', '3']``) of
    the GPUs with at most ``max_used_percent`` of their memory in use,
    less those another gpusel user has leased. Leases nothing: to hold
    them, ``gpusel.select(...)``."""
    if max_used_percent < 0 or max_used_percent > 100:
        raise gpusel.UsageError("max_used_percent must be in [0, 100]")
    if float(max_used_percent).is_integer():
        # gpusel's own rule for nvgpu's: memory in use <= that share of the total.
        rule: Dict[str, Any] = {"max_mem_used": f"{int(max_used_percent)}%"}
    else:  # gpusel takes whole percent; a fraction is nvgpu's test as where=

        def fits(d: gpusel.Device) -> bool:
            return _used_percent(d) <= max_used_percent

        rule = {"where": fits}
    return [str(i) for i in _common.qualifying(strategy="random", **rule)]
