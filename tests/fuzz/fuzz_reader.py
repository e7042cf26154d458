"""Coverage-guided fuzzing of the trace reader with atheris (libFuzzer).

Not part of the pytest run. Run it standalone, seeded with tests/corpus:

    pip install atheris            # wheels for CPython <= 3.11 on Linux x86_64
    python tests/fuzz/fuzz_reader.py -max_total_time=300 -rss_limit_mb=4096 \\
        /tmp/fuzz-corpus tests/corpus

Each input goes through the native decoder (whole and metadata-only), the
reader's Trace, summarize + format_text + strict JSON (exectrace summary),
Chrome JSON and pprof (exectrace convert) and the typed events. Any exception
other than ExectraceError, any crash, and any input slower than -timeout
seconds is a finding: libFuzzer writes it as crash-<sha1>; minimize it, add it
to tests/corpus (with a line in its README) and fix the bug. The pure-Python
modules are instrumented for coverage; the Cython core is not (it would need
a build with -fsanitize=fuzzer), so its paths are reached through the
structure of the seeds.
"""

from __future__ import annotations

import io
import json
import sys

import atheris

with atheris.instrument_imports(include=["exectrace"]):
    from exectrace import _tracecore, export
    from exectrace.analysis import format_text, summarize
    from exectrace.errors import ExectraceError
    from exectrace.reader import Trace


def one_input(data: bytes) -> None:
    decoded = _tracecore.decode(data)
    if decoded.error is not None:
        assert isinstance(decoded.error, str) and decoded.error
    meta = _tracecore.decode(data, metadata_only=True)
    assert meta.window_begin is None or isinstance(meta.window_begin[1], dict)
    try:
        trace = Trace("fuzz.out", decoded)
        list(trace)
        summary = summarize(trace, top=5)
        json.dumps(summary, allow_nan=False)
        format_text(summary, top=5)
        text = io.StringIO()
        export.to_chrome_json(trace, text, progress=False)
        json.loads(text.getvalue())
        export.build_pprof(trace, progress=False)
    except ExectraceError:
        pass


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
