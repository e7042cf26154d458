"""Types of the analysis commands' native aggregation (src/exectrace/_summarize.pyx).

Arrays are array.array: "i" int32, "q" int64, "b" int8, "Q" uint64."""

from array import array

def tracks(track: array[int], /) -> tuple[array[int], list[int], array[int]]:
    """(track index of each slice, uuid of each index, slices per index)."""

def keys(name: array[int], cat: array[int], file: array[int], line: array[int], /
         ) -> tuple[array[int], list[tuple[int, int, int, int]]]:
    """(key of each slice, (name, cat, file, line) of each key)."""

def select(ids: array[int], wanted: array[int], /) -> array[int]:
    """Indices of the slices whose id is wanted (wanted[id] != 0)."""

def end_span(ids: array[int], wanted: array[int], ts: array[int], dur: array[int], /
             ) -> tuple[int, int] | None:
    """(earliest end, latest end) of the wanted slices, or None."""

def count(ids: array[int], n: int, /) -> array[int]:
    """How many times each id in range(n) occurs."""

def walk(slot: array[int], thread_of_slot: array[int], ts: array[int], dur: array[int], depth: array[int], key: array[int],
         kind: array[int], n_threads: int, lo: int, hi: int, /
         ) -> tuple[array[int], array[int], array[int], array[int], array[int], array[int], array[int],
                    array[int], array[int], array[int]]:
    """Every thread's calls clipped to [lo, hi): per key calls, inclusive and
    self ns; per thread (calls, python, C, blocked per reason) ns; each
    blocking call's caller key, callee key, thread, duration, covered ns, start."""

def distribution(group: array[int], value: array[int], /) -> dict[int, tuple[int, int, int, int, int, int]]:
    """{group: (count, total, max, p50, p90, p99)} (nearest-rank percentiles)."""

def call_tree(slot: array[int], thread_of_slot: array[int], ts: array[int], dur: array[int], depth: array[int],
              key: array[int], loc_of_key: array[int], reason_of_key: array[int], n_threads: int,
              covered_from: int, /) -> tuple[array[int], array[int], array[int], array[int], array[int]]:
    """The merged call tree of every thread: per node (parent, location, wall
    ns, blocked ns, reason); nodes 0 .. n_threads - 1 are the threads' roots."""

def time_order(ts: array[int], depth: array[int], /) -> array[int]:
    """Slice indices (int32) by (start, depth, index)."""

def nonnegative(values: array[int], /) -> array[int]:
    """Indices of the values >= 0."""

def chrome_x(order: array[int], start: int, stop: int, slot: array[int], key: array[int], ts: array[int],
             dur: array[int], prefixes: list[bytes], tails: list[bytes], overrides: dict[int, bytes], /) -> str:
    """Chrome "X" events of the slices order[start:stop], joined by ",\\n"."""

def below(values: array[int], limit: int, /) -> array[int]:
    """Indices of the values < limit."""
