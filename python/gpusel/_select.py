"""``gpusel.select``: the selection, its leases and the environment it sets.
Every argument goes to the native module, which builds the same selector
over the same config as the ``gpusel`` command."""

from __future__ import annotations

import os
import sys

from . import _native
from ._model import Device

TYPE_CHECKING = False  # not typing's: importing typing costs more than a selection
if TYPE_CHECKING:
    from types import TracebackType
    from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Type, Union

    Size = Union[int, float, str]
    Duration = Union[int, float, str]
    Power = Union[int, float, str]
    Percent = Union[int, str]
    Devices = Union[int, str, Sequence[Union[int, str]]]
    PathLike = Union[str, "os.PathLike[str]"]
    Count = Union[int, str]

_CVD = "CUDA_VISIBLE_DEVICES"
_ORDER = "CUDA_DEVICE_ORDER"

# Selections still holding leases. A lease lasts until release(), the end of
# the `with` block, or the end of the process: never until the garbage
# collector happens by, so `gpusel.select()` whose result is dropped still
# holds its GPU for the script's whole run, as `gpusel -- CMD` would.
_held: List[Selection] = []


class CudaAlreadyInitializedWarning(RuntimeWarning):
    """CUDA was initialised in this process before the selection set
    ``CUDA_VISIBLE_DEVICES``, so this process's CUDA will not see the
    change (subprocesses started afterwards will)."""


def _cuda_initialized() -> Optional[str]:
    """Which library in this process has initialised CUDA already, if one has."""
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            if torch.cuda.is_initialized():
                return "torch"
        except Exception:  # a broken or partial torch import is not ours to judge
            pass
    return None


class Selection:
    """The devices ``gpusel.select`` chose, and their leases.

    The leases are held until :meth:`release`, the end of a ``with`` block,
    or the end of the process, however it ends: a killed process loses its
    locks at once. Other ``gpusel`` users, the command as well as Python,
    are never given these devices while they are held, and see them in
    ``gpusel list``.

    ``str(selection)`` is the ``CUDA_VISIBLE_DEVICES`` value; a selection
    is falsy when ``silent=True`` found nothing."""

    __slots__ = ("_native", "_raw", "_devices", "_set_env", "_saved", "__weakref__")

    def __init__(
        self,
        native: Optional[_native.NativeSelection],
        set_env: bool = False,
    ) -> None:
        self._native = native
        self._raw: Optional[Dict[str, Any]] = native.data() if native is not None else None
        self._devices: Optional[List[Device]] = None
        self._set_env = False
        self._saved: Dict[str, Optional[str]] = {}
        if native is not None and native.held:
            _held.append(self)
        if set_env and self._raw is not None:
            self._apply_env()

    def _apply_env(self) -> None:
        initialized = _cuda_initialized()
        for name, value in self.env.items():
            self._saved[name] = os.environ.get(name)
            os.environ[name] = value
        self._set_env = True
        if initialized is not None:
            import warnings

            warnings.warn(
                f"gpusel set CUDA_VISIBLE_DEVICES={self.cuda_visible_devices}, but {initialized} "
                "has already initialised CUDA in this process, which will keep seeing the "
                "devices it saw before; select before the first CUDA call (before "
                "torch.cuda.* or moving anything to 'cuda'), or start the job with "
                "`gpusel -- python script.py`",
                CudaAlreadyInitializedWarning,
                stacklevel=3,
            )

    @property
    def devices(self) -> List[Device]:
        """The chosen devices, in ``CUDA_VISIBLE_DEVICES`` order: inside the
        selection, ``cuda:0`` is ``devices[0]``."""
        if self._devices is None:
            raw = self._raw["devices"] if self._raw is not None else []
            self._devices = [Device(d["gpu"], d.get("mig")) for d in raw]
        return self._devices

    @property
    def cuda_visible_devices(self) -> str:
        """The value for ``CUDA_VISIBLE_DEVICES`` (``""`` when nothing was found)."""
        if self._raw is None:
            return ""
        return str(self._raw["selection"]["cuda_visible_devices"])

    @property
    def env(self) -> Dict[str, str]:
        """The variables to give a job: ``CUDA_VISIBLE_DEVICES``, and
        ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` when indices are written (so that
        CUDA numbers GPUs as NVML and ``nvidia-smi`` do)."""
        if self._raw is None:
            return {}
        selection = self._raw["selection"]
        env = {_CVD: str(selection["cuda_visible_devices"])}
        order = selection.get("cuda_device_order")
        if order is not None:
            env[_ORDER] = str(order)
        return env

    @property
    def host(self) -> Optional[str]:
        """The host the devices are in."""
        return None if self._raw is None else str(self._raw["host"])

    @property
    def strategy(self) -> Optional[str]:
        """The strategy that ranked the devices."""
        return None if self._raw is None else str(self._raw["selection"]["strategy"])

    @property
    def held(self) -> bool:
        """Whether this selection still holds its leases (False after
        :meth:`release`, and for ``lease=False``)."""
        return self._native is not None and self._native.held

    def release(self) -> None:
        """Gives the devices back: drops the leases and, if the selection set
        ``CUDA_VISIBLE_DEVICES``/``CUDA_DEVICE_ORDER``, puts back what was
        there before (unless something else has changed them since).
        Calling it again does nothing."""
        if self._native is not None:
            self._native.release()
        if self in _held:
            _held.remove(self)
        if self._set_env:
            self._set_env = False
            for name, value in self.env.items():
                if os.environ.get(name) != value:
                    continue
                old = self._saved.get(name)
                if old is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = old

    def __enter__(self) -> Selection:
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.release()

    def __str__(self) -> str:
        return self.cuda_visible_devices

    def __bool__(self) -> bool:
        return self._raw is not None

    def __len__(self) -> int:
        return len(self.devices)

    def __iter__(self) -> Iterator[Device]:
        return iter(self.devices)

    def __repr__(self) -> str:
        if self._raw is None:
            return "Selection(nothing found)"
        state = "held" if self.held else "released"
        return f"Selection({self.cuda_visible_devices!r}, {len(self.devices)} device(s), {state})"


def select(
    count: Count = 1,
    *,
    mem: Optional[Size] = None,
    max_util: Optional[Percent] = None,
    max_mem_util: Optional[Percent] = None,
    max_processes: Optional[int] = None,
    max_power: Optional[Power] = None,
    max_mem_used: Optional[Size] = None,
    name: Optional[str] = None,
    devices: Optional[Devices] = None,
    exclude: Optional[Devices] = None,
    where: Optional[Callable[[Device], bool]] = None,
    strategy: Optional[str] = None,
    provider: Optional[str] = None,
    wait: Optional[bool] = None,
    timeout: Optional[Duration] = None,
    interval: Optional[Duration] = None,
    uuid: bool = False,
    lease: bool = True,
    share: bool = False,
    set_env: bool = True,
    silent: bool = False,
    lock_dir: Optional[PathLike] = None,
    seed: Optional[int] = None,
    idle_window: Optional[Duration] = None,
    unaccounted_memory: Optional[Size] = None,
) -> Selection:
    """Chooses ``count`` GPUs (a number, ``"all"`` for every one that
    qualifies, or a range such as ``"2..4"``) that satisfy every filter, leases them for this
    process, and (with ``set_env``) sets ``CUDA_VISIBLE_DEVICES`` and
    ``CUDA_DEVICE_ORDER`` as ``gpusel -- CMD`` gives them to a job.

    Sizes are ``"20GiB"``/``"500MB"`` or bytes; durations ``"30s"``/``"1h30m"``
    or seconds; power ``"80W"`` or watts; ``max_util``/``max_mem_util`` are
    percentages; ``max_mem_used`` is a size or a percentage of each GPU's
    memory (``"20%"``). ``idle_window`` is how far back the driver's
    utilization samples must stay under the limit (``0``: the instant reading
    only); ``unaccounted_memory`` is how much memory no listed process holds
    an idle GPU may show (a size or ``"1%"``). ``devices``/``exclude`` take indices, UUIDs or MIG labels
    (``3``, ``"0,2"``, ``["GPU-5f2c", 4]``). ``where`` is a function of a
    :class:`Device` that returns whether it may be chosen. An argument left
    ``None`` takes the site's config (``/etc/gpusel/config.toml``,
    ``~/.config/gpusel/config.toml``, ``GPUSEL_*``), then gpusel's default,
    exactly as the command does.

    With ``wait=True`` it retries every ``interval`` until the request can be
    met, for at most ``timeout`` (``None``: the config's, else forever), and
    Ctrl-C stops the wait with :class:`KeyboardInterrupt`. ``wait=None``
    waits when the site's config says ``wait = true``; ``wait=False`` never
    does. A ``timeout`` implies ``wait=True``.

    With ``share=True`` (it needs ``mem``) the GPUs are shared with other
    sharers instead of leased whole: each reserves ``mem``, admitted only while
    that fits beside the other shares' outstanding reservations, as
    ``gpusel --share --mem`` does.

    Raises :class:`NoGpuError` (too few qualify; the message says why, per
    device), :class:`WaitTimeout`, :class:`ProviderError`, :class:`LeaseError`,
    :class:`ConfigError`, or :class:`UsageError` (a :class:`ValueError`)
    for a bad argument. With ``silent=True`` a request that cannot be met
    returns an empty, falsy :class:`Selection` instead of raising.

    >>> with gpusel.select(count=2, mem="20GiB", wait=True) as gpus:  # doctest: +SKIP
    ...     train(devices=gpus.devices)
    """
    native_where = None
    if where is not None:
        if not callable(where):
            raise TypeError(f"where= takes a function of a Device, not {type(where).__name__}")
        test = where

        def native_where(raw: Dict[str, Any]) -> bool:
            return bool(test(Device._from_raw(raw)))

    if isinstance(count, bool) or not isinstance(count, (int, str)):
        raise TypeError(
            f"count= takes a whole number, 'all' or a range such as '2..4', not {type(count).__name__}"
        )
    native = _native.select(
        count,
        mem=mem,
        max_util=max_util,
        max_mem_util=max_mem_util,
        max_processes=max_processes,
        max_power=max_power,
        max_mem_used=max_mem_used,
        name=name,
        devices=devices,
        exclude=exclude,
        filter=native_where,
        strategy=strategy,
        provider=provider,
        wait=wait,
        timeout=timeout,
        interval=interval,
        uuid=uuid,
        lease=lease,
        share=share,
        silent=silent,
        lock_dir=None if lock_dir is None else os.fspath(lock_dir),
        seed=seed,
        idle_window=idle_window,
        unaccounted_memory=unaccounted_memory,
    )
    return Selection(native, set_env=set_env)
