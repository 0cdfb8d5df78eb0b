"""gpuselect's ``gpuselect()``, ``gpustatus()`` and ``GpuInfo`` over gpusel."""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, NamedTuple

import gpusel

from . import _common

if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Optional, Union

# As gpuselect's: INFO and up to stderr, so that raising the level to DEBUG
# (its README's "Debug logging") shows each step.
logger = logging.getLogger("gpuselect")
if not logger.handlers:
    logger.setLevel(logging.INFO)
    logger.addHandler(logging.StreamHandler(sys.stderr))


class GpuInfo(NamedTuple):
    """One GPU as gpuselect's custom ``selector`` sees it, with gpuselect's
    fields in gpuselect's order (its ``effective_power_limt`` spelling too).

    ``device`` is the NVML index (as ``nvidia-smi`` numbers GPUs), ``util``
    and ``mem_util`` percentages, ``processes`` a count; ``mem_*`` are bytes,
    ``power_usage`` and ``effective_power_limt`` milliwatts. A value the
    driver does not report is -1, and so are ``fan_speed`` and
    ``is_throttling``, which gpusel does not read."""

    device: int
    name: str
    util: int
    mem_util: int
    mem_free: int
    mem_used: int
    mem_total: int
    processes: int
    fan_speed: int
    effective_power_limt: int
    performance_state: int
    power_usage: int
    temperature: int
    is_throttling: int

    @property
    def effective_power_limit(self) -> int:
        """``effective_power_limt``, spelt as gpuselect's docs spell it."""
        return self.effective_power_limt

    @classmethod
    def _from_device(cls, d: gpusel.Device) -> GpuInfo:
        def known(value: Optional[float], scale: float = 1) -> int:
            return -1 if value is None else int(round(value * scale))

        procs = d.processes
        return cls(
            device=d.index,
            name=d.name,
            util=known(d.utilization),
            mem_util=known(d.memory_utilization),
            mem_free=known(d.memory_free),
            mem_used=known(d.memory_used),
            mem_total=known(d.memory_total),
            processes=-1 if procs is None else len(procs),
            fan_speed=-1,
            effective_power_limt=known(d.power_limit, 1000),
            performance_state=known(d.performance_state),
            power_usage=known(d.power, 1000),
            temperature=known(d.temperature),
            is_throttling=-1,
        )


def gpuselect(
    count: int = 1,
    devices: Union[int, List[int], None] = None,
    name: Optional[str] = None,
    util: int = 0,
    mem_util: int = 0,
    processes: int = 0,
    selector: Optional[Callable[[GpuInfo], bool]] = None,
    silent: bool = False,
    set_cvd: bool = True,
) -> str:
    """gpuselect's ``gpuselect()``: chooses ``count`` idle GPUs at random,
    sets ``CUDA_VISIBLE_DEVICES`` and returns its value (``"1"``, ``"3,5"``).

    The filters are gpusel's: ``util``/``mem_util`` are ``max_util``/
    ``max_mem_util``, ``processes`` is ``max_processes``, ``name`` a
    substring of the name, ``devices`` the NVML indices to choose among.
    ``selector`` (a function of a :class:`GpuInfo`) replaces every filter
    but ``count``, as in gpuselect; it becomes gpusel's ``where=``.

    What gpusel adds: the GPUs are *leased* until the process ends, so no
    other gpusel user (Python, ``gpusel -- CMD``) is given them meanwhile,
    and a GPU leased by someone else is never chosen; the choice is made
    among the GPUs an existing ``CUDA_VISIBLE_DEVICES`` leaves visible (a
    Slurm allocation, say); ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` is set too, so
    CUDA numbers GPUs as ``nvidia-smi`` does. A second call with ``set_cvd``
    replaces the first call's choice (gives its GPUs back, puts the variable
    back, then chooses), as the seed's second call overwrote the variable;
    if that second choice fails, the process holds none. ``name`` matches
    case-insensitively (gpuselect's match was case-sensitive).

    Raises a :class:`gpusel.NoGpuError` (an ``Exception`` whose message
    says why each GPU was refused) when too few qualify, unless ``silent``:
    then it returns ``""``. The gpusel way: ``gpusel.select(count=2,
    max_util=10)``, which returns the devices and their leases."""
    logger.debug(
        f"count={count},devices={devices},name={name},util={util},"
        f"mem_util={mem_util},processes={processes},silent={silent}"
    )
    if isinstance(count, int) and not isinstance(count, bool) and count < 1:
        raise gpusel.UsageError("GPU count must be >= 1")
    wanted: List[int] = []
    if devices is not None:
        wanted = [devices] if isinstance(devices, int) else list(devices)
    if wanted and name is not None:
        raise gpusel.UsageError("Use only one of 'devices' and 'name' parameters")
    if util < 0 or mem_util < 0 or processes < 0:
        raise gpusel.UsageError("Utilization/process count thresholds must be >= 0")
    if len(wanted) > count:
        logger.warning(
            f"count={count} but {len(wanted)} device IDs were specified, "
            f"setting count={len(wanted)}"
        )
        count = len(wanted)

    options: Dict[str, Any] = {"silent": silent, "set_env": set_cvd}
    if selector is not None:
        if not callable(selector):
            kind = type(selector).__name__
            raise TypeError(f"selector= takes a function of a GpuInfo, not {kind}")
        test = selector

        def where(device: gpusel.Device) -> bool:
            return bool(test(GpuInfo._from_device(device)))

        options.update(strategy="random", where=where)
    else:
        options.update(
            strategy="idle-random",
            max_util=util,
            max_mem_util=mem_util,
            max_processes=processes,
            name=name,
            devices=wanted or None,
        )

    def choose() -> gpusel.Selection:
        return gpusel.select(count, **options)

    selection = _common.replace("gpuselect", choose) if set_cvd else choose()
    if not selection:
        logger.debug(f"Requested {count} GPUs, but fewer matched filters")
        return ""
    logger.debug(f"CUDA_VISIBLE_DEVICES={selection.cuda_visible_devices}")
    return selection.cuda_visible_devices


def gpustatus(only_cvd: bool = True) -> List[Dict[str, Any]]:
    """gpuselect's ``gpustatus()``: one dict per GPU (``device``, ``name``,
    ``utilization``, ``mem_utilization``, ``processes``,
    ``performance_state``, ``power_usage`` in milliwatts, ``temperature``,
    and gpusel's extra keys), only those ``CUDA_VISIBLE_DEVICES`` leaves
    visible unless ``only_cvd=False``. It is :func:`gpusel.status`."""
    return gpusel.status(all=not only_cvd)
