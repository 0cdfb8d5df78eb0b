"""Drop-ins for five GPU pickers, with their own signatures and return
types, built on gpusel: migrating is one changed import line.

- gpuselect: ``from gpuselect import gpuselect`` becomes
  ``from gpusel.compat import gpuselect`` (also ``gpustatus``, ``GpuInfo``);
- autocvd: ``from autocvd import autocvd`` becomes
  ``from gpusel.compat import autocvd``;
- GPU Scheduler: ``from gpu_scheduler import GPUScheduler`` becomes
  ``from gpusel.compat import GPUScheduler`` (also ``get_gpu_info``,
  ``find_free_gpus`` and the other ``get_gpu_*`` functions);
- GPU-utils: ``from gpu_utils.gpu_selector import GPUSelectorFactory`` and
  ``from gpu_utilities.obtainers.nvml import NvmlGPUInfoObtainer`` become
  ``from gpusel.compat import ...`` (also ``GPUSelectStrategy``, ``GPU``,
  the selectors and the two errors);
- nvgpu: ``import nvgpu`` becomes ``from gpusel.compat import nvgpu``
  (``nvgpu.available_gpus()``, ``nvgpu.gpu_info()``; also importable as
  names of their own).

What changes is underneath: every choice is gpusel's (the same filters,
strategies, site config, bans and provider as the ``gpusel`` command), and
the tools that hand GPUs to a job lease them, so two jobs never get the same
GPU and ``gpusel list`` shows who holds what. gpuselect's and autocvd's
leases last until the process ends (their calls return plain values, with
nothing to release); GPU Scheduler's until its ``with`` block ends. GPU-utils
and nvgpu only report, as before, and lease nothing; they do skip GPUs
others have leased.
"""

from __future__ import annotations

from . import nvgpu
from ._autocvd import autocvd
from ._gpu_scheduler import (
    GPUScheduler,
    find_free_gpus,
    get_gpu_info,
    get_gpu_memory_usage,
    get_gpu_names,
    get_gpu_power_usage,
    get_gpu_utilization,
    get_total_num_gpus,
)
from ._gpu_utils import (
    GPU,
    BestFitGPUSelector,
    EmptyGPUListError,
    GPUSelector,
    GPUSelectorFactory,
    GPUSelectStrategy,
    NoGPUAvailableError,
    NvmlGPUInfoObtainer,
    RandomGPUSelector,
    WorstFitGPUSelector,
)
from ._gpuselect import GpuInfo, gpuselect, gpustatus
from .nvgpu import available_gpus, gpu_info

__all__ = [
    "GPU",
    "BestFitGPUSelector",
    "EmptyGPUListError",
    "GPUScheduler",
    "GPUSelectStrategy",
    "GPUSelector",
    "GPUSelectorFactory",
    "GpuInfo",
    "NoGPUAvailableError",
    "NvmlGPUInfoObtainer",
    "RandomGPUSelector",
    "WorstFitGPUSelector",
    "autocvd",
    "available_gpus",
    "find_free_gpus",
    "get_gpu_info",
    "get_gpu_memory_usage",
    "get_gpu_names",
    "get_gpu_power_usage",
    "get_gpu_utilization",
    "get_total_num_gpus",
    "gpu_info",
    "gpuselect",
    "gpustatus",
    "nvgpu",
]
