"""GPU Scheduler's ``GPUScheduler``, ``get_gpu_info()``, ``find_free_gpus()``
and its other utility functions, over gpusel."""

from __future__ import annotations

import math
import sys
from typing import TYPE_CHECKING

import gpusel

from . import _common

if TYPE_CHECKING:
    from types import TracebackType
    from typing import Any, Dict, List, Optional, Sequence, Type

_GIB = 1024**3


def _filters(
    memory_free_threshold_gb: float,
    power_threshold_w: Optional[float],
    utilization_threshold_percent: float,
) -> Dict[str, Any]:
    """GPU Scheduler's health checks as gpusel's filters, with no others
    (gpusel's ``random`` strategy adds none). Its "GB" are nvidia-smi's
    MiB / 1024: GiB."""
    filters: Dict[str, Any] = {"strategy": "random"}
    if memory_free_threshold_gb > 0:
        filters["mem"] = int(math.ceil(memory_free_threshold_gb * _GIB))
    if power_threshold_w is not None:
        filters["max_power"] = power_threshold_w
    filters["max_util"] = _common.whole_percent(utilization_threshold_percent)
    return filters


class GPUScheduler:
    """GPU Scheduler's context manager: waits (``poll_interval`` seconds
    between tries, for at most ``max_wait_time``) for ``num_gpus`` GPUs with
    at least ``memory_free_threshold_gb`` GiB free, a power draw of at most
    ``power_threshold_w`` W (None: any) and at most
    ``utilization_threshold_percent`` % utilization, among ``specific_gpus``
    (NVML indices) if given, leases them and yields their ids, a list of
    ints::

        with GPUScheduler() as gpu_ids:
            device = f"cuda:{gpu_ids[0]}"

    ``debug_mode=True`` drops the health checks (the GPUs are still leased:
    a GPU someone else holds is never given out). ``timeout`` was the wait
    for GPU Scheduler's own lock file; gpusel's leases never wait on a lock
    (a leased GPU is skipped), so it is accepted and has nothing to limit.
    The leases are gpusel's: ``gpusel list`` shows them, and neither
    ``gpusel -- CMD`` jobs nor other gpusel users in Python get these GPUs
    until the block ends.

    As GPU Scheduler, it leaves ``CUDA_VISIBLE_DEVICES`` alone and the ids
    are the GPUs' NVML indices (``nvidia-smi``'s numbers); if ``torch`` is
    imported and has CUDA, ``torch.cuda.set_device(gpu_ids[0])`` is called.
    **The trap:** ``cuda:{id}`` is that GPU only while CUDA numbers GPUs as
    NVML does: with ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` and no
    ``CUDA_VISIBLE_DEVICES``. Under ``CUDA_VISIBLE_DEVICES=4,5`` (Slurm,
    say) GPU 5 is ``cuda:1``, and ``cuda:5`` is an error or another job's
    GPU. The gpusel way makes the numbering right by construction::

        with gpusel.select(count=1, mem="20GiB", max_power=80, max_util=1,
                           wait=True, interval=10) as gpus:
            device = "cuda:0"   # CUDA_VISIBLE_DEVICES is now the leased GPU

    An existing ``CUDA_VISIBLE_DEVICES`` limits the choice, as for every
    gpusel selection: ``specific_gpus`` it hides are waited for in vain.

    Raises :class:`gpusel.WaitTimeout` (a ``TimeoutError``) when
    ``max_wait_time`` runs out, with why each GPU was refused."""

    def __init__(
        self,
        memory_free_threshold_gb: float = 20,
        power_threshold_w: Optional[float] = 80,
        utilization_threshold_percent: float = 1,
        max_wait_time: float = float("inf"),
        poll_interval: float = 10,
        specific_gpus: Optional[Sequence[int]] = None,
        timeout: float = 10,
        num_gpus: int = 1,
        debug_mode: bool = False,
    ) -> None:
        self.memory_free_threshold_gb = memory_free_threshold_gb
        self.power_threshold_w = power_threshold_w
        self.utilization_threshold_percent = utilization_threshold_percent
        self.max_wait_time = max_wait_time
        self.poll_interval = poll_interval
        self.specific_gpus = None if specific_gpus is None else list(specific_gpus)
        self.timeout = timeout
        self.num_gpus = num_gpus
        self.debug_mode = debug_mode
        self.gpu_ids: List[int] = []
        self._selection: Optional[gpusel.Selection] = None

    def __enter__(self) -> List[int]:
        if self.debug_mode:
            filters: Dict[str, Any] = {"strategy": "random"}
        else:
            filters = _filters(
                self.memory_free_threshold_gb,
                self.power_threshold_w,
                self.utilization_threshold_percent,
            )
        if self.specific_gpus is not None:
            filters["devices"] = self.specific_gpus
        limit = None if math.isinf(self.max_wait_time) else self.max_wait_time
        self._selection = gpusel.select(
            self.num_gpus,
            wait=True,
            timeout=limit,
            interval=self.poll_interval,
            set_env=False,
            **filters,
        )
        self.gpu_ids = [d.index for d in self._selection.devices]
        torch: Any = sys.modules.get("torch")
        if torch is not None and self.gpu_ids:
            try:
                if torch.cuda.is_available():
                    torch.cuda.set_device(self.gpu_ids[0])
            except AttributeError:  # not PyTorch's torch
                pass
        return list(self.gpu_ids)

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        if self._selection is not None:
            self._selection.release()
            self._selection = None
        self.gpu_ids = []


def _gpus() -> List[gpusel.Device]:
    return gpusel.snapshot().gpus


def get_gpu_memory_usage() -> List[Dict[str, Any]]:
    """Per GPU: ``gpu_id``, ``memory_used``, ``memory_total``,
    ``memory_free`` (MB, as nvidia-smi's MiB)."""
    return [
        {
            "gpu_id": d.index,
            "memory_used": _common.megabytes(d.memory_used),
            "memory_total": _common.megabytes(d.memory_total),
            "memory_free": _common.megabytes(d.memory_free),
        }
        for d in _gpus()
    ]


def get_gpu_names() -> List[Dict[str, Any]]:
    """Per GPU: ``gpu_id``, ``name``."""
    return [{"gpu_id": d.index, "name": d.name} for d in _gpus()]


def get_gpu_power_usage() -> List[Dict[str, Any]]:
    """Per GPU: ``gpu_id``, ``power_draw``, ``power_limit`` (W; 0.0 unknown)."""
    return [
        {"gpu_id": d.index, "power_draw": d.power or 0.0, "power_limit": d.power_limit or 0.0}
        for d in _gpus()
    ]


def get_gpu_utilization() -> List[Dict[str, Any]]:
    """Per GPU: ``gpu_id``, ``utilization`` (%; 0 unknown)."""
    return [{"gpu_id": d.index, "utilization": d.utilization or 0} for d in _gpus()]


def _info(d: gpusel.Device) -> Dict[str, Any]:
    return {
        "gpu_id": d.index,
        "memory_used": _common.megabytes(d.memory_used),
        "memory_total": _common.megabytes(d.memory_total),
        "memory_free": _common.megabytes(d.memory_free),
        "power_draw": d.power or 0.0,
        "power_limit": d.power_limit or 0.0,
        "utilization": d.utilization or 0,
        "name": d.name,
    }


def get_gpu_info() -> List[Dict[str, Any]]:
    """Per GPU, from one read: ``gpu_id`` (NVML index), ``name``,
    ``memory_used``/``memory_total``/``memory_free`` (MB, nvidia-smi's
    MiB), ``power_draw``/``power_limit`` (W) and ``utilization`` (%)."""
    return [_info(d) for d in _gpus()]


def get_total_num_gpus() -> int:
    """How many GPUs the provider sees."""
    return len(_gpus())


def find_free_gpus(
    memory_free_threshold_gb: float = 1,
    power_threshold_w: Optional[float] = None,
    utilization_threshold_percent: float = 1,
) -> List[Dict[str, Any]]:
    """The :func:`get_gpu_info` dicts of the GPUs that pass GPU Scheduler's
    health checks now and are not leased (gpusel's verdicts). Leases
    nothing: use :class:`GPUScheduler` (or ``gpusel.select``) to hold one."""
    free = set(
        _common.qualifying(
            **_filters(memory_free_threshold_gb, power_threshold_w, utilization_threshold_percent)
        )
    )
    return [_info(d) for d in _gpus() if d.index in free]
