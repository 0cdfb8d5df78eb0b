"""What gpusel reports, as typed Python objects over the JSON the native
module returns (the JSON of ``gpusel list --json``). Plain data: nothing
here selects, leases or reads the config."""

from __future__ import annotations

# Not `from typing import TYPE_CHECKING`: importing typing would cost more
# than a selection. Type checkers read this name as True.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from datetime import datetime
    from typing import Any, Dict, List, Optional


def _time(text: Optional[str]) -> Optional[datetime]:
    """An RFC 3339 time as gpusel writes it (``2026-11-20T09:14:02Z``)."""
    if text is None:
        return None
    from datetime import datetime

    if text.endswith("Z"):  # fromisoformat takes "Z" only from Python 3.11
        text = text[:-1] + "+00:00"
    return datetime.fromisoformat(text)


def _watts(milliwatts: Optional[int]) -> Optional[float]:
    return None if milliwatts is None else milliwatts / 1000


class Process:
    """A process with a context on a GPU, as the driver and ``/proc`` show it."""

    __slots__ = ("_raw",)

    def __init__(self, raw: Dict[str, Any]) -> None:
        self._raw = raw

    @property
    def pid(self) -> int:
        """Process id (the host's PID namespace)."""
        return int(self._raw["pid"])

    @property
    def used_memory(self) -> Optional[int]:
        """GPU memory it uses, in bytes, when the driver says."""
        return self._raw.get("used_memory")

    @property
    def name(self) -> Optional[str]:
        """Executable name."""
        return self._raw.get("name")

    @property
    def command_line(self) -> Optional[List[str]]:
        """Full command line, when ``/proc`` shows it."""
        return self._raw.get("command_line")

    @property
    def user(self) -> Optional[str]:
        """Owner's user name, when ``/proc`` shows it."""
        return self._raw.get("user")

    @property
    def start_time(self) -> Optional[datetime]:
        """When it started (timezone-aware), when ``/proc`` shows it."""
        return _time(self._raw.get("start_time"))

    @property
    def kind(self) -> Optional[str]:
        """``"compute"``, ``"graphics"`` or ``"compute_graphics"``, when known."""
        return self._raw.get("kind")

    @property
    def visible(self) -> Optional[bool]:
        """False when the driver reports it but ``/proc`` hides it (another
        container, ``hidepid``): its user and command are then unknown."""
        return self._raw.get("visible")

    def to_dict(self) -> Dict[str, Any]:
        """The process as ``gpusel list --json`` writes it."""
        copied: Dict[str, Any] = _copy(self._raw)
        return copied

    def __repr__(self) -> str:
        return f"Process(pid={self.pid}, name={self.name!r}, user={self.user!r}, used_memory={self.used_memory})"


class Lease:
    """Who holds a device's gpusel lease (a ``gpusel -- CMD`` job or a
    Python process in a ``gpusel.select``)."""

    __slots__ = ("_raw",)

    def __init__(self, raw: Dict[str, Any]) -> None:
        self._raw = raw

    @property
    def _holder(self) -> Dict[str, Any]:
        return self._raw.get("holder") or {}

    @property
    def pid(self) -> Optional[int]:
        """The holder's process id; None when it left no record to trust."""
        return self._holder.get("pid")

    @property
    def user(self) -> Optional[str]:
        """The holder's user name."""
        return self._holder.get("user")

    @property
    def command(self) -> Optional[List[str]]:
        """The holder's command."""
        return self._holder.get("command")

    @property
    def host(self) -> Optional[str]:
        """The host the holder runs on."""
        return self._holder.get("host")

    @property
    def since(self) -> Optional[datetime]:
        """When the lease was taken."""
        return _time(self._holder.get("since"))

    @property
    def blocked(self) -> Optional[str]:
        """Why no job can lease the device although nobody leases it (an
        unreadable lock file, a shared lock held on it); None normally."""
        return self._raw.get("blocked")

    def to_dict(self) -> Dict[str, Any]:
        """The lease as ``gpusel list --json`` writes it."""
        copied: Dict[str, Any] = _copy(self._raw)
        return copied

    def __repr__(self) -> str:
        return f"Lease(pid={self.pid}, user={self.user!r}, command={self.command!r})"


class Device:
    """One GPU, or one MIG instance of a MIG-enabled GPU, with its state when
    it was read. Values the driver does not report are None, never 0.

    Sizes are in bytes, power in watts, utilization in percent."""

    __slots__ = ("_gpu", "_mig")

    def __init__(self, gpu: Dict[str, Any], mig: Optional[Dict[str, Any]] = None) -> None:
        self._gpu = gpu
        self._mig = mig

    @classmethod
    def _from_raw(cls, raw: Dict[str, Any]) -> Device:
        return cls(raw["gpu"], raw.get("mig"))

    @property
    def index(self) -> int:
        """NVML index, as ``nvidia-smi`` numbers GPUs (the parent GPU's, for a
        MIG device)."""
        return int(self._gpu["index"])

    @property
    def mig_index(self) -> Optional[int]:
        """The MIG device's index within its GPU; None for a whole GPU."""
        return None if self._mig is None else int(self._mig["index"])

    @property
    def label(self) -> str:
        """``"3"`` for GPU 3, ``"3:1"`` for MIG device 1 of GPU 3."""
        if self._mig is None:
            return str(self.index)
        return f"{self.index}:{self.mig_index}"

    @property
    def uuid(self) -> str:
        """``GPU-...`` (``MIG-...`` for a MIG device): what CUDA_VISIBLE_DEVICES
        can name whatever the numbering."""
        return str((self._mig or self._gpu)["uuid"])

    @property
    def name(self) -> str:
        """Product name, e.g. ``NVIDIA A100-SXM4-80GB``."""
        return str(self._gpu["name"])

    @property
    def pci_bus_id(self) -> Optional[str]:
        """PCI bus id, e.g. ``00000000:07:00.0``."""
        return self._gpu.get("pci_bus_id")

    @property
    def mig_profile(self) -> Optional[str]:
        """The MIG profile (``1g.10gb``), for a MIG device."""
        return None if self._mig is None else self._mig.get("profile")

    @property
    def memory_total(self) -> Optional[int]:
        """Memory, in bytes."""
        return (self._mig or self._gpu).get("memory_total")

    @property
    def memory_used(self) -> Optional[int]:
        """Memory in use, in bytes."""
        return (self._mig or self._gpu).get("memory_used")

    @property
    def memory_free(self) -> Optional[int]:
        """Free memory, in bytes."""
        return (self._mig or self._gpu).get("memory_free")

    @property
    def utilization(self) -> Optional[int]:
        """GPU (SM) utilization, percent; the parent GPU's for a MIG device."""
        return self._gpu.get("utilization_gpu")

    @property
    def memory_utilization(self) -> Optional[int]:
        """Memory-bandwidth utilization, percent."""
        return self._gpu.get("utilization_memory")

    @property
    def temperature(self) -> Optional[int]:
        """Degrees Celsius."""
        return self._gpu.get("temperature")

    @property
    def power(self) -> Optional[float]:
        """Power draw, in watts."""
        return _watts(self._gpu.get("power_draw"))

    @property
    def power_limit(self) -> Optional[float]:
        """Power limit, in watts."""
        return _watts(self._gpu.get("power_limit"))

    @property
    def performance_state(self) -> Optional[int]:
        """Performance state, 0 (most) to 15 (least)."""
        return self._gpu.get("performance_state")

    @property
    def sm_clock(self) -> Optional[int]:
        """SM clock, MHz."""
        return self._gpu.get("sm_clock")

    @property
    def compute_mode(self) -> Optional[str]:
        """Who may create CUDA contexts on it: ``"default"``,
        ``"exclusive_process"``, ``"prohibited"`` or ``"exclusive_thread"``;
        None when the driver does not say."""
        return self._gpu.get("compute_mode")

    @property
    def utilization_peak(self) -> Optional[int]:
        """The highest GPU utilization, percent, in the driver's samples over
        the idle window; None where the driver keeps no samples (MIG,
        nvidia-smi, old drivers)."""
        peak = (self._gpu.get("utilization_window") or {}).get("gpu")
        return None if peak is None else peak.get("percent")

    @property
    def processes(self) -> Optional[List[Process]]:
        """The processes on it; None when the driver does not say."""
        raw = (self._mig or self._gpu).get("processes")
        return None if raw is None else [Process(p) for p in raw]

    @property
    def lease(self) -> Optional[Lease]:
        """Its gpusel lease, when leased (in a snapshot; a selection's own
        devices are leased by the selection)."""
        raw = (self._mig or self._gpu).get("lease")
        return None if raw is None else Lease(raw)

    @property
    def mig_devices(self) -> List[Device]:
        """A MIG-enabled GPU's MIG devices (what CUDA sees instead of it)."""
        if self._mig is not None:
            return []
        return [Device(self._gpu, m) for m in self._gpu.get("mig_devices", [])]

    def to_dict(self) -> Dict[str, Any]:
        """The device as ``gpusel list --json`` writes it (a MIG device's own
        entry, for a MIG device)."""
        copied: Dict[str, Any] = _copy(self._mig if self._mig is not None else self._gpu)
        return copied

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Device) and other.uuid == self.uuid

    def __hash__(self) -> int:
        return hash(self.uuid)

    def __repr__(self) -> str:
        free = self.memory_free
        free_text = "?" if free is None else f"{free / 2**30:.1f} GiB"
        return (
            f"Device({self.label}, {self.name!r}, uuid={self.uuid!r}, free={free_text}, "
            f"utilization={self.utilization})"
        )


class Snapshot:
    """Everything a provider saw on one host at one moment: what ``gpusel
    list --json`` prints (:meth:`to_dict` is exactly that)."""

    __slots__ = ("_raw",)

    def __init__(self, raw: Dict[str, Any]) -> None:
        self._raw = raw

    @property
    def host(self) -> str:
        """Host name of the machine the GPUs are in."""
        return str(self._raw["host"])

    @property
    def time(self) -> datetime:
        """When it was taken (timezone-aware)."""
        taken = _time(self._raw["time"])
        assert taken is not None
        return taken

    @property
    def provider(self) -> str:
        """The provider that read it (``nvml``, ``smi``, ``file:PATH``...)."""
        return str(self._raw["provider"])

    @property
    def driver_version(self) -> Optional[str]:
        """NVIDIA driver version."""
        return self._raw.get("driver_version")

    @property
    def cuda_driver_version(self) -> Optional[str]:
        """Highest CUDA version the driver supports."""
        return self._raw.get("cuda_driver_version")

    @property
    def gpus(self) -> List[Device]:
        """The GPUs, in NVML index order."""
        return [Device(g) for g in self._raw["gpus"]]

    def to_dict(self) -> Dict[str, Any]:
        """The snapshot as ``gpusel list --json`` prints it (a copy)."""
        copied: Dict[str, Any] = _copy(self._raw)
        return copied


def _copy(value: Any) -> Any:
    """A deep copy of JSON data."""
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value

    def __repr__(self) -> str:
        return f"Snapshot(host={self.host!r}, provider={self.provider!r}, gpus={len(self._raw['gpus'])})"
