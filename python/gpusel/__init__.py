"""gpusel: pick idle NVIDIA GPUs for a job on a shared server, lease them,
and set ``CUDA_VISIBLE_DEVICES``, from Python or the ``gpusel`` command.

>>> import gpusel
>>> with gpusel.select(count=2, mem="20GiB", wait=True) as gpus:  # doctest: +SKIP
...     print(gpus.cuda_visible_devices)   # also in os.environ
1,3

The leases are the command's: a GPU leased here is never given to a
``gpusel -- CMD`` job, nor the other way round, and both show in
``gpusel list``. See ``docs/python.md``.
"""

from __future__ import annotations

from . import _native
from ._errors import (
    ConfigError,
    Error,
    LeaseError,
    NoGpuError,
    ProviderError,
    UsageError,
    Verdict,
    WaitTimeout,
)
from ._model import Device, Lease, Process, Snapshot
from ._select import CudaAlreadyInitializedWarning, Selection, select

TYPE_CHECKING = False  # not typing's: importing typing costs more than a selection
if TYPE_CHECKING:
    import os
    from typing import Any, Dict, List, Optional, Union

__version__: str = _native.__version__

__all__ = [
    "ConfigError",
    "CudaAlreadyInitializedWarning",
    "Device",
    "Error",
    "Lease",
    "LeaseError",
    "NoGpuError",
    "Process",
    "ProviderError",
    "Selection",
    "Snapshot",
    "UsageError",
    "Verdict",
    "WaitTimeout",
    "select",
    "snapshot",
    "status",
    "strategies",
]


def _warn(text: Optional[str]) -> None:
    if text is not None:
        import sys

        sys.stderr.write(f"gpusel: warning: {text}\n")


def snapshot(
    provider: Optional[str] = None,
    *,
    lock_dir: Optional[Union[str, os.PathLike[str]]] = None,
) -> Snapshot:
    """What the provider sees on every GPU now, leases included: the data of
    ``gpusel list --json`` (``snapshot().to_dict()`` is that JSON).
    ``provider`` and ``lock_dir`` default to the site's config, as the
    command's."""
    import os

    raw, warning, _remote, _visible, _problem = _native.snapshot(
        provider, lock_dir=None if lock_dir is None else os.fspath(lock_dir)
    )
    _warn(warning)
    return Snapshot(raw)


def status(all: bool = False, provider: Optional[str] = None) -> List[Dict[str, Any]]:
    """gpuselect's ``gpustatus()``: one dict per GPU with ``device``,
    ``name``, ``utilization``, ``mem_utilization``, ``processes`` (a count),
    ``performance_state``, ``power_usage`` (milliwatts) and ``temperature``,
    plus ``uuid``, ``pci_bus_id``, ``memory_total``, ``memory_used``,
    ``memory_free`` (bytes), ``power_limit`` (milliwatts), ``sm_clock``,
    ``mig_mode`` and ``leased_by`` (the holder's user, or None).

    Only the GPUs ``CUDA_VISIBLE_DEVICES`` leaves visible, unless ``all``
    (a GPU counts as visible when it or one of its MIG devices is)."""
    raw, warning, _remote, visible, problem = _native.snapshot(provider)
    _warn(warning)
    gpus = raw["gpus"]
    if not all and visible is not None:
        _warn(None if problem is None else f"CUDA_VISIBLE_DEVICES: {problem}")
        keep = set(visible)
        gpus = [
            g
            for g in gpus
            if g["uuid"] in keep or any(m["uuid"] in keep for m in g.get("mig_devices", []))
        ]
    return [_status(g) for g in gpus]


def _status(gpu: Dict[str, Any]) -> Dict[str, Any]:
    processes = gpu.get("processes")
    lease = gpu.get("lease")
    holder = (lease or {}).get("holder") or {}
    return {
        "device": gpu["index"],
        "name": gpu["name"],
        "utilization": gpu.get("utilization_gpu"),
        "mem_utilization": gpu.get("utilization_memory"),
        # Compute clients, as gpuselect counts (the X server does not).
        "processes": None if processes is None else sum(p.get("kind") != "graphics" for p in processes),
        "performance_state": gpu.get("performance_state"),
        "power_usage": gpu.get("power_draw"),
        "temperature": gpu.get("temperature"),
        "uuid": gpu["uuid"],
        "pci_bus_id": gpu.get("pci_bus_id"),
        "memory_total": gpu.get("memory_total"),
        "memory_used": gpu.get("memory_used"),
        "memory_free": gpu.get("memory_free"),
        "power_limit": gpu.get("power_limit"),
        "sm_clock": gpu.get("sm_clock"),
        "mig_mode": gpu.get("mig_mode"),
        "leased_by": holder.get("user") if lease is not None else None,
    }


def strategies() -> Dict[str, str]:
    """The strategies ``strategy=`` takes, each with what it does."""
    return dict(_native.strategies())
