"""Types of the reader's decoder (src/exectrace/_decode.pyx): the same
columns as exectrace._tracecore.decode, decoded with a per-event path in C."""

from typing import Any, Optional, Union

class Decoder:
    strings: list[str]
    #: per slice: its track as an index into slot_uuids, its (name, category,
    #: file, line) as an index into key_quads
    s_slot: Any
    s_key: Any
    @property
    def slot_uuids(self) -> list[int]: ...
    @property
    def key_quads(self) -> list[tuple[int, int, int, int]]: ...
    tracks: dict[int, dict[str, Any]]
    @property
    def s_track(self) -> Any: ...
    s_ts: Any
    s_dur: Any
    s_depth: Any
    @property
    def s_name(self) -> Any: ...
    @property
    def s_cat(self) -> Any: ...
    @property
    def s_file(self) -> Any: ...
    @property
    def s_line(self) -> Any: ...
    s_args: Any
    args: list[dict[str, Any]]
    instants: list[tuple[int, int, int, int, Optional[dict[str, Any]], Optional[str]]]
    counters: list[tuple[int, int, float]]
    samples: list[tuple[int, int, int, int]]
    stacks: list[tuple[tuple[int, int, int], ...]]
    clock_snapshots: list[Any]
    primary_clock: Optional[int]
    error: Optional[str]
    packets: int
    unfinished: int
    problems: list[str]
    metadata_only: bool
    window_begin: Optional[tuple[int, dict[str, Any]]]
    @property
    def last_timestamp(self) -> Optional[int]: ...

def decode(data: Union[bytes, bytearray, memoryview], metadata_only: bool = ...) -> Decoder: ...
