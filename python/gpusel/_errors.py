"""gpusel's exceptions: one base, :class:`Error`, and a class per way a
selection fails. The native module raises these by name."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List, Sequence


class Error(Exception):
    """Base of every error gpusel raises."""


class UsageError(Error, ValueError):
    """An argument gpusel cannot use (a bad size, duration, device list,
    strategy or provider name). A :class:`ValueError`."""


class ConfigError(Error):
    """The site's or the user's gpusel config file, or a ``GPUSEL_*``
    variable, cannot be read. The message names the file and the key."""


class ProviderError(Error):
    """The GPU provider (NVML, nvidia-smi, a snapshot file, another node's
    agent, a plugin) could not say what is on the GPUs."""


class LeaseError(Error):
    """The lock directory where leases live cannot be used."""


class Verdict:
    """Why one device was or was not chosen."""

    __slots__ = ("device", "uuid", "name", "selected", "reasons", "details")

    def __init__(self, raw: Dict[str, Any]) -> None:
        self.device: str = raw["device"]
        """The device's label: ``"3"``, or ``"3:1"`` for MIG device 1 of GPU 3."""
        self.uuid: str = raw["uuid"]
        self.name: str = raw["name"]
        self.selected: bool = raw["selected"]
        self.reasons: List[str] = list(raw["reasons"])
        """Why it cannot be used, as ``gpusel --explain`` says it; empty
        when it qualifies."""
        self.details: List[Dict[str, Any]] = list(raw.get("details", []))
        """The same reasons as data, as ``gpusel --json`` writes them
        (``{"reason": "not_enough_memory", "free": ..., "required": ...}``)."""

    def __repr__(self) -> str:
        return f"Verdict(device={self.device!r}, reasons={self.reasons!r})"


class NoGpuError(Error):
    """Fewer devices qualify than were asked for. The message is the one the
    ``gpusel`` command prints: a headline, then one line per device that
    does not qualify, with its reasons."""

    def __init__(
        self,
        message: str,
        verdicts: Sequence[Dict[str, Any]] = (),
        requested: int = 0,
        eligible: int = 0,
        visible: int = 0,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.verdicts: List[Verdict] = [Verdict(v) for v in verdicts]
        """The verdict on every device considered."""
        self.requested = requested
        """How many devices were asked for."""
        self.eligible = eligible
        """How many qualified."""
        self.visible = visible
        """How many ``CUDA_VISIBLE_DEVICES`` left visible."""

    @property
    def reasons(self) -> Dict[str, List[str]]:
        """Each device's label mapped to why it was not chosen (devices that
        qualified map to an empty list)."""
        return {v.device: v.reasons for v in self.verdicts}

    def __reduce__(self) -> Any:
        return (type(self), (self.message,))


class WaitTimeout(NoGpuError, TimeoutError):
    """``wait=True`` with a ``timeout`` ran out before enough devices
    qualified. A :class:`NoGpuError` and a :class:`TimeoutError`; the
    reasons are those of the last try."""

    def __init__(
        self,
        message: str,
        verdicts: Sequence[Dict[str, Any]] = (),
        requested: int = 0,
        eligible: int = 0,
        visible: int = 0,
        timeout: float = 0.0,
    ) -> None:
        super().__init__(message, verdicts, requested, eligible, visible)
        self.timeout = timeout
        """The limit that ran out, in seconds."""

    def __str__(self) -> str:
        return self.message
