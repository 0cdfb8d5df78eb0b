"""What the drop-ins share: all of it over the public gpusel API."""

from __future__ import annotations

from typing import TYPE_CHECKING

import gpusel

if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional

# Any count above the number of devices a host can have: asking for that many
# makes gpusel judge every device and report each verdict (see qualifying).
_EVERY = 1 << 20

# The selection that set CUDA_VISIBLE_DEVICES for each tool that sets it
# (gpuselect, autocvd): the process's current choice, held until the process
# ends or the tool's next call replaces it.
_current: Dict[str, gpusel.Selection] = {}


def qualifying(**filters: Any) -> List[int]:
    """The NVML indices of every whole GPU that passes ``filters`` (the
    arguments of :func:`gpusel.select`) and is not leased: gpusel's own
    verdicts, from one read of the provider. Holds nothing, sets nothing.

    gpusel has no "every device that qualifies" call, so this asks for more
    devices than exist and reads the verdicts the :class:`gpusel.NoGpuError`
    carries (``reasons`` empty: it qualifies). It asks with ``lease=True``
    because only a leasing selection judges leases (``lease=False`` ignores
    them); the request cannot be met, so nothing is leased."""
    try:
        selection = gpusel.select(_EVERY, set_env=False, **filters)
    except gpusel.WaitTimeout:
        raise
    except gpusel.NoGpuError as e:
        return sorted(int(v.device) for v in e.verdicts if not v.reasons and ":" not in v.device)
    selection.release()
    return sorted(d.index for d in selection.devices if d.mig_index is None)


def replace(tool: str, select: Any) -> Optional[gpusel.Selection]:
    """Runs ``select()`` (a call of :func:`gpusel.select` that sets the
    environment) as ``tool``'s new choice for the process: the previous
    choice's leases are given back and its ``CUDA_VISIBLE_DEVICES`` put back
    first, as each call of the seed overwrote the variable. Returns the new
    selection (falsy for ``silent=True`` that found nothing)."""
    previous = _current.pop(tool, None)
    if previous is not None:
        previous.release()
    selection: gpusel.Selection = select()
    if selection:
        _current[tool] = selection
    return selection


def megabytes(size: Optional[int]) -> int:
    """Bytes as nvidia-smi's "MiB" (what the seeds call MB), 0 when unknown."""
    return 0 if size is None else size // (1024 * 1024)


def whole_percent(value: float) -> Optional[int]:
    """A percentage limit as gpusel takes it (whole percent: utilization is
    reported in whole percent, so ``<= 1.5`` is ``<= 1``); None at 100 or
    more, where no GPU is ever rejected for utilization."""
    import math

    if value >= 100:
        return None
    if value < 0:
        return int(math.ceil(value))  # gpusel refuses it with its UsageError
    return int(math.floor(value))
