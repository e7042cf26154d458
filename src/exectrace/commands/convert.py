"""Convert a trace file for other tools.

  --to chrome-json   Chrome's Trace Event Format (JSON): chrome://tracing, the
                     Perfetto UI, speedscope. One complete event per call, the
                     same slices on the same threads; GC and the exectrace
                     window on pseudo threads of their own. An output name
                     ending in .gz is gzipped.
  --to pprof         a gzipped pprof profile (go tool pprof, pprof viewers):
                     sample types wall and blocked (self nanoseconds per call
                     stack; blocked counts C calls that sleep, wait for I/O,
                     a lock or a child process), labels "thread" and "tid".
                     --reason io|lock|sleep|subprocess|all: a blocking
                     profile of those waits only (one sample type each).

Times cover only what the records cover: when the recorder's ring
overflowed, the part of the window before the oldest kept record is left
out (pprof: a comment says how much; chrome-json: metadata
exectrace.covered_from_ns, and the calls open at that point carry
"began_before_coverage").

The output goes next to the input unless -o says where: FILE.out becomes
FILE.json or FILE.pb.gz (any other last suffix is replaced the same way).
"-o -" writes to stdout. An existing output is kept unless --force. A damaged
or truncated file is converted as far as it is readable, with a warning."""

from __future__ import annotations

import argparse
import os
import stat
import sys

from exectrace import export
from exectrace._files import is_tty, output_file
from exectrace.commands._format import human_size
from exectrace.errors import ExectraceError
from exectrace.reader import read

HELP = "convert a trace file to Chrome JSON or pprof"

#: --to value -> suffix of the default output name
FORMATS = {"chrome-json": ".json", "pprof": ".pb.gz"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="a trace file (executiontrace.*.out)")
    parser.add_argument("--to", required=True, choices=sorted(FORMATS), help="output format")
    parser.add_argument("-o", "--output", metavar="OUT",
                        help="output file, or - for stdout (default: FILE with the "
                             "format's suffix, .json or .pb.gz, next to it)")
    parser.add_argument("-f", "--force", action="store_true", help="overwrite an existing output")
    parser.add_argument("--reason", choices=("io", "lock", "sleep", "subprocess", "all"),
                        help="pprof: a blocking profile of waits for this reason (all: one sample type per reason)")


def default_output(path: str, to: str) -> str:
    """FILE.out -> FILE.json (chrome-json) or FILE.pb.gz (pprof)."""
    root, ext = os.path.splitext(path)
    if not ext or os.path.basename(root) == "":  # "trace" or ".hidden"
        root = path
    return root + FORMATS[to]


def run(args: argparse.Namespace) -> int:
    out = args.output if args.output is not None else default_output(args.file, args.to)
    to_stdout = out == "-"
    if not to_stdout and os.path.exists(args.file):  # (a missing input: read() says so)
        _check_output(args.file, out, args.force)
    if args.reason is not None and args.to != "pprof":
        raise ExectraceError(f"--reason selects the sample types of a pprof profile; use it with --to pprof, "
                             f"e.g. exectrace convert {args.file} --to pprof --reason {args.reason}")
    if to_stdout and args.to == "pprof" and is_tty(sys.stdout):
        raise ExectraceError("refusing to write a binary pprof profile to a terminal (use -o FILE)")

    trace = read(args.file, allow_damaged=True)
    if trace.damage:
        print(f"exectrace convert: warning: {args.file} is damaged ({trace.damage}); "
              "converting what is readable", file=sys.stderr)

    if to_stdout:
        if args.to == "pprof":
            export.to_pprof(trace, sys.stdout.buffer, reason=args.reason)
        else:
            export.to_chrome_json(trace, sys.stdout)
            sys.stdout.flush()
        return 0

    try:  # written beside the output (0600 until done), then moved into place
        with output_file(out, force=args.force, exists=f"{out} exists (use --force to overwrite it)") as (fd, tmp):
            os.close(fd)
            if args.to == "pprof":
                export.to_pprof(trace, tmp, reason=args.reason)
            else:
                export.to_chrome_json(trace, tmp, compress=out.endswith(".gz"))
            # as private as the trace it came from (exectrace writes 0600)
            os.chmod(tmp, stat.S_IMODE(os.stat(args.file).st_mode) & 0o666)
    except OSError as e:
        raise ExectraceError(f"cannot write {out}: {e.strerror or e}") from None
    size = os.path.getsize(out)
    print(f"wrote {out} ({trace.slice_count} slices, {human_size(size)})")
    return 0


def _check_output(source: str, out: str, force: bool) -> None:
    """Refuse early what would fail or clobber something after the conversion."""
    if os.path.isdir(out):
        raise ExectraceError(f"{out} is a directory (give a file name with -o)")
    if os.path.exists(source) and os.path.exists(out) and os.path.samefile(source, out):
        raise ExectraceError(f"{out} is the input file (choose another name with -o)")
    if os.path.lexists(out) and not force:
        raise ExectraceError(f"{out} exists (use --force to overwrite it)")
    directory = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(directory):
        raise ExectraceError(f"cannot write {out}: directory {directory} does not exist")
