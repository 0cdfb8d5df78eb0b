# The native module (python/src/lib.rs). Not an API: use gpusel's.
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

__version__: str
DEFAULT_LOCK_DIR: str

class NativeSelection:
    @property
    def held(self) -> bool: ...
    def data(self) -> Dict[str, Any]: ...
    def release(self) -> bool: ...

def select(
    count: Optional[Union[int, str]] = None,
    *,
    mem: Any = None,
    max_util: Any = None,
    max_mem_util: Any = None,
    max_processes: Any = None,
    max_power: Any = None,
    max_mem_used: Any = None,
    name: Any = None,
    devices: Any = None,
    exclude: Any = None,
    filter: Optional[Callable[[Dict[str, Any]], bool]] = None,
    strategy: Any = None,
    provider: Any = None,
    wait: Optional[bool] = None,
    timeout: Any = None,
    interval: Any = None,
    uuid: bool = False,
    lease: bool = True,
    share: bool = False,
    silent: bool = False,
    lock_dir: Optional[str] = None,
    seed: Optional[int] = None,
    command: Optional[Sequence[str]] = None,
    idle_window: Any = None,
    unaccounted_memory: Any = None,
) -> Optional[NativeSelection]: ...
def snapshot(
    provider: Any = None, lock_dir: Optional[str] = None
) -> Tuple[Dict[str, Any], Optional[str], bool, Optional[List[str]], Optional[str]]: ...
def parse_size(value: Union[int, float, str]) -> int: ...
def parse_duration(value: Union[int, float, str]) -> float: ...
def strategies() -> List[Tuple[str, str]]: ...
