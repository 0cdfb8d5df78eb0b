"""autocvd's ``autocvd()`` over gpusel."""

from __future__ import annotations

from typing import TYPE_CHECKING

import gpusel

from . import _common

if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional

# gpusel's shortest poll interval; autocvd's interval=0 (poll without pause).
_MIN_INTERVAL = 0.01


def autocvd(
    num_gpus: int = 1,
    least_used: bool = False,
    timeout: Optional[int] = None,
    interval: int = 30,
    set_env: bool = True,
    verbose: bool = True,
) -> List[int]:
    """autocvd's ``autocvd()``: waits until ``num_gpus`` GPUs are free
    (gpusel's ``idle-random``: no processes, 0% utilization), polling every
    ``interval`` seconds for at most ``timeout`` (None: forever), or with
    ``least_used`` takes the least-used ones at once (gpusel's
    ``least-used``); sets ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` and
    ``CUDA_VISIBLE_DEVICES`` unless ``set_env=False``, and returns the
    GPUs' NVML indices.

    What gpusel adds: the GPUs are *leased* until the process ends, so two
    jobs started together never get the same GPU and a GPU another gpusel
    user holds is never chosen; an existing ``CUDA_VISIBLE_DEVICES`` limits
    the choice. A second call with ``set_env`` replaces the first call's
    choice.

    Raises ``ValueError`` (:class:`gpusel.UsageError`) for a bad argument
    and ``TimeoutError`` (:class:`gpusel.WaitTimeout`, whose message says
    why each GPU was refused) when the wait runs out. With ``verbose`` it
    prints what it does, as autocvd; without, it prints nothing at all.
    The gpusel way: ``gpusel.select(num_gpus, wait=True, timeout=...)``."""
    if isinstance(num_gpus, int) and not isinstance(num_gpus, bool) and num_gpus < 1:
        raise gpusel.UsageError("Parameter 'num_gpus' must be greater than 0.")
    if timeout is not None and timeout < 0:
        raise gpusel.UsageError("Parameter 'timeout' must be a positive integer.")
    if interval < 0:
        raise gpusel.UsageError("Parameter 'interval' must be a positive integer.")
    installed = len(gpusel.snapshot().gpus)
    if num_gpus > installed:
        raise gpusel.UsageError(
            f"You requested {num_gpus} GPUs, but only {installed} are installed."
        )
    if verbose:
        print(f"Selecting {num_gpus} {'least-used' if least_used else 'free'} GPU(s)")

    options: Dict[str, Any] = {"set_env": set_env}
    if least_used:
        options["strategy"] = "least-used"
    else:
        # silent=True is what keeps gpusel's "waiting for..." line off stderr;
        # it also turns the timeout into an empty selection, raised below.
        options.update(
            silent=not verbose,
            strategy="idle-random",
            wait=True,
            timeout=None if not timeout else timeout,
            interval=max(interval, _MIN_INTERVAL),
        )

    def choose() -> gpusel.Selection:
        return gpusel.select(num_gpus, **options)

    selection = _common.replace("autocvd", choose) if set_env else choose()
    if not selection:
        # Only a quiet wait (silent=True) that ran out.
        raise gpusel.WaitTimeout(f"Could not acquire {num_gpus} GPU(s) before timeout.")
    selected = [d.index for d in selection.devices]
    if verbose:
        print(f"Selected GPU(s): {selected}.")
    return selected
