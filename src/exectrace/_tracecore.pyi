"""Types of the native core (src/_tracecore.pyx)."""

from collections.abc import Callable, Sequence
from typing import Any, Optional, Union

HAS_TICKS: bool
HAS_SYS_MONITORING: bool

def start(
    *,
    buffer_size: int,
    c_calls: bool = ...,
    min_duration_ns: int = ...,
    max_depth: int = ...,
    include_prefixes: Sequence[bytes] = ...,
    exclude_prefixes: Sequence[bytes] = ...,
    use_ticks: bool = ...,
    tool_id: int = ...,
    seed_stacks: bool = ...,
) -> None: ...
def stop() -> Optional[Capture]: ...
def is_active() -> bool: ...
def stats() -> dict[str, int]: ...
def after_fork_child() -> None: ...
def ignore_thread(ident: int, ignored: bool = ...) -> None: ...
def floor_start(c_calls: bool = ..., tool_id: int = ...) -> None: ...
def floor_stop() -> None: ...

FunctionEntry = Union[tuple[str, Any], tuple[str, str, Any, Any]]

class Capture:
    @property
    def stats(self) -> dict[str, int]: ...
    @property
    def records_lost(self) -> int: ...
    @property
    def start_monotonic_ns(self) -> int: ...
    @property
    def stop_monotonic_ns(self) -> int: ...
    @property
    def start_realtime_ns(self) -> int: ...
    @property
    def stop_realtime_ns(self) -> int: ...
    @property
    def used_ticks(self) -> bool: ...
    def release(self) -> None: ...
    def threads(self) -> list[tuple[int, int, int, Any]]: ...
    def functions(self) -> list[tuple[Any, ...]]: ...
    def encode(
        self,
        *,
        names: list[tuple[str, str, int]],
        thread_names: list[str],
        pid: int,
        process_name: str,
        metadata: list[tuple[str, Any]],
        compress_level: int = ...,
        compressor: Optional[Callable[[Any], bytes]] = ...,
    ) -> bytes: ...

class _Decoder:
    strings: list[str]
    tracks: dict[int, dict[str, Any]]
    s_track: Any
    s_ts: Any
    s_dur: Any
    s_depth: Any
    s_name: Any
    s_cat: Any
    s_file: Any
    s_line: Any
    s_args: Any
    args: list[dict[str, Any]]
    instants: list[tuple[int, int, int, int, Optional[dict[str, Any]], Optional[str]]]
    counters: list[tuple[int, int, float]]
    clock_snapshots: list[Any]
    primary_clock: Optional[int]
    error: Optional[str]
    packets: int
    unfinished: int
    last_timestamp: Optional[int]
    problems: list[str]
    metadata_only: bool
    window_begin: Optional[tuple[int, dict[str, Any]]]

def decode(data: Union[bytes, bytearray, memoryview], metadata_only: bool = ...) -> _Decoder: ...
