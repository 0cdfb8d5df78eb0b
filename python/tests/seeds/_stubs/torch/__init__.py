"""A stand-in for PyTorch in the seed examples (PyTorch is not installed
here): only what the examples call, each printing what it was given."""

from typing import Any


class device:
    def __init__(self, spec: Any) -> None:
        self.spec = spec
        print(f"torch stand-in: device({spec!r})", flush=True)

    def __repr__(self) -> str:
        return f"device({self.spec!r})"

    def __str__(self) -> str:
        return str(self.spec)


class _Cuda:
    def is_available(self) -> bool:
        return True

    def is_initialized(self) -> bool:
        return False

    def set_device(self, index: Any) -> None:
        print(f"torch stand-in: cuda.set_device({index!r})", flush=True)

    def device(self, spec: Any) -> Any:
        print(f"torch stand-in: cuda.device({spec!r})", flush=True)
        return spec


cuda = _Cuda()
