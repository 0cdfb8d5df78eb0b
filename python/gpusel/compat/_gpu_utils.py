"""GPU-utils' ``NvmlGPUInfoObtainer``, ``GPU``, ``GPUSelectorFactory``,
``GPUSelectStrategy`` and selectors, over gpusel."""

from __future__ import annotations

from abc import ABC, abstractmethod
from enum import Enum
from typing import TYPE_CHECKING

import gpusel

if TYPE_CHECKING:
    from typing import List


class EmptyGPUListError(gpusel.UsageError):
    """``select`` was given no GPUs to choose from."""


class NoGPUAvailableError(gpusel.NoGpuError):
    """No GPU given to ``select`` can take the memory asked for (the message
    says why each was refused, and ``verdicts`` has gpusel's verdicts)."""


class GPU:
    """A GPU as GPU-utils describes it: ``cuda_id`` (the NVML index),
    ``name``, its total and used memory in bytes."""

    def __init__(
        self,
        cuda_id: int,
        name: str,
        max_available_memory_bytes: int,
        current_memory_utlization_bytes: int,
    ) -> None:
        self.cuda_id = cuda_id
        self.name = name
        self.max_available_memory_bytes = max_available_memory_bytes
        self.current_memory_utlization_bytes = current_memory_utlization_bytes

    def __repr__(self) -> str:
        return str(self.__dict__)

    def to_torch_device(self) -> str:
        """``"cuda:N"``. As in GPU-utils, N is the NVML index: the right
        CUDA device only with ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` and no
        ``CUDA_VISIBLE_DEVICES`` remapping. gpusel's way is
        ``gpusel.select(strategy="best-fit", mem=...)``, which sets
        ``CUDA_VISIBLE_DEVICES`` so that the GPU is ``cuda:0``."""
        return f"cuda:{self.cuda_id}"

    def free_memory_bytes(self) -> int:
        return self.max_available_memory_bytes - self.current_memory_utlization_bytes


class NvmlGPUInfoObtainer:
    """GPU information from gpusel's provider (NVML, then nvidia-smi, or
    whatever the site's config names)."""

    def gpus_available(self) -> bool:
        """Whether the provider can say what is on the GPUs, and sees one."""
        try:
            return len(gpusel.snapshot().gpus) > 0
        except gpusel.Error:
            return False

    def gpus(self) -> List[GPU]:
        """Every GPU, in NVML index order."""
        return [
            GPU(d.index, d.name, d.memory_total or 0, d.memory_used or 0)
            for d in gpusel.snapshot().gpus
        ]


class GPUSelectStrategy(Enum):
    """GPU-utils' strategies, each a gpusel strategy (``value``)."""

    BEST_FIT = "best-fit"
    """The GPU with the least free memory that still fits (packs jobs)."""
    WORST_FIT = "worst-fit"
    """The GPU with the most free memory."""
    RANDOM = "random"
    """Any GPU that fits, uniformly."""


class GPUSelector(ABC):
    """Chooses one of ``gpus`` that can allocate
    ``expected_memory_consumption_bytes`` more."""

    @abstractmethod
    def select(self, gpus: List[GPU], expected_memory_consumption_bytes: int) -> GPU: ...


class _GpuselSelector(GPUSelector):
    strategy: GPUSelectStrategy

    def select(self, gpus: List[GPU], expected_memory_consumption_bytes: int) -> GPU:
        """The chosen GPU (one of ``gpus``), by gpusel's ``strategy``
        among the ``gpus`` that have more than that much memory free now
        and are not leased by a gpusel user. It holds nothing, as GPU-utils
        reserved nothing (a service choosing per request must not pile up
        leases): like the ``gpusel`` command's print mode, it leases the
        choice and gives it back at once. To hold the GPU, use
        ``gpusel.select``.

        Raises :class:`EmptyGPUListError` for an empty ``gpus`` and
        :class:`NoGPUAvailableError` when none fits."""
        if len(gpus) == 0:
            raise EmptyGPUListError("Empty list of gpus provided")
        try:
            selection = gpusel.select(
                1,
                mem=expected_memory_consumption_bytes + 1,  # GPU-utils: more than
                devices=[g.cuda_id for g in gpus],
                strategy=self.strategy.value,
                set_env=False,
            )
            selection.release()
        except gpusel.NoGpuError as e:
            error = NoGPUAvailableError(e.message)
            error.verdicts = e.verdicts
            error.requested, error.eligible, error.visible = e.requested, e.eligible, e.visible
            raise error from e
        chosen = selection.devices[0].index
        return next(g for g in gpus if g.cuda_id == chosen)


class BestFitGPUSelector(_GpuselSelector):
    strategy = GPUSelectStrategy.BEST_FIT


class WorstFitGPUSelector(_GpuselSelector):
    strategy = GPUSelectStrategy.WORST_FIT


class RandomGPUSelector(_GpuselSelector):
    strategy = GPUSelectStrategy.RANDOM


class GPUSelectorFactory:
    def selector(self, strategy: GPUSelectStrategy) -> GPUSelector:
        """The selector for ``strategy``."""
        if strategy == GPUSelectStrategy.BEST_FIT:
            return BestFitGPUSelector()
        if strategy == GPUSelectStrategy.WORST_FIT:
            return WorstFitGPUSelector()
        if strategy == GPUSelectStrategy.RANDOM:
            return RandomGPUSelector()
        raise gpusel.UsageError(f"cannot initialize selector for strategy {strategy}")
