"""Every CLI command that takes a file, on hostile files: damaged traces (bit
flips, truncation at many offsets, spliced bytes), hostile wire values (10- and
11-byte varints, values past 2**64, lengths past the end, 10**5 nested
fields, a compressed_packets zip bomb), and what is not a regular file (a
0-byte file, a directory, a FIFO, symlinks to /dev/zero and /dev/urandom).

The outcome must be a summary of what is readable (exit 0) or one clear error
line on stderr (exit 1; 2 for usage) -- never a crash, a hang or a Python
traceback. Every command runs as `python -m exectrace ...` in a subprocess
with a timeout. To keep this quick, the cross product of files and commands
(summary, summary --json, --since/--until and of two files, diff, convert
--to chrome-json, --to pprof and --to pprof --reason all) runs in a
few subprocesses that call the CLI's main() once per file, each call under a
watchdog (faulthandler) and with its own stdout and stderr; `summary` and
`view` also run as one `python -m exectrace` per file. ls, ls --verify,
summary DIR, diff DIR DIR and debug-zip run on a dump dir holding all of them
under trace-file names.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from exectrace import dumpstore
from hostile import byte_files, events_files, make_trace, special_files, write_all

BASE_NS = 1_795_000_000_000_000_000
#: Seconds any one command may take on a hostile file (a generous bound on
#: a busy 2-core machine: the slowest, the zip bomb, takes well under 2 s).
TIMEOUT = 60


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXECTRACE_")}
    env["PYTHONFAULTHANDLER"] = "1"
    return env


def cli(*args: object, timeout: float = TIMEOUT, cwd: object = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "exectrace", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=clean_env(), cwd=cwd)


def assert_clean_outcome(what: str, code: object, out: str, err: str) -> None:
    """Exit 0, or 1/2 with exactly one line on stderr; no traceback, no signal."""
    assert isinstance(code, int) and code in (0, 1, 2), f"{what}: exit {code}\n{err[-3000:]}"
    assert "Traceback" not in err and "Traceback" not in out, f"{what}:\n{err[-3000:]}"
    if code != 0:
        lines = err.strip().splitlines()
        assert len(lines) == 1, f"{what}: exit {code} with stderr:\n{err[-3000:]}"
        assert lines[0].startswith("exectrace ") or lines[0].startswith("usage:"), lines[0]


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """{name: path} of every hostile file and special entry."""
    root = tmp_path_factory.mktemp("hostile")
    plain = make_trace(root / "plain.bin", compress=False)
    packed = make_trace(root / "packed.bin")
    events = make_trace(root / "events.bin", compress=False, mode="events")
    files_dir = root / "files"
    files_dir.mkdir()
    paths = write_all(files_dir, {**byte_files(plain, packed), **events_files(events)})
    paths.update(special_files(files_dir))
    paths["real-plain"] = root / "plain.bin"
    paths["real-packed"] = root / "packed.bin"
    return paths


# Runs the CLI's main() once per argv list, each call with its own output
# and a watchdog; prints one JSON result per call. A crash kills the whole
# driver: the test then sees a negative exit code and no results.
DRIVER = textwrap.dedent(
    """
    import contextlib, faulthandler, io, json, sys, traceback
    from exectrace.__main__ import main
    from exectrace.commands.view import check_file
    from exectrace.errors import ExectraceError

    def view_check(path):
        # what `exectrace view` does before it serves (serving cannot run here)
        try:
            damage = check_file(path)
        except ExectraceError as e:
            print(f"exectrace view: {e}", file=sys.stderr)
            return 1
        print(f"would serve {path}" + (f" (damaged: {damage})" if damage else ""))
        return 0

    calls = json.loads(sys.stdin.read())
    for argv in calls:
        out, err = io.StringIO(), io.StringIO()
        faulthandler.dump_traceback_later(TIMEOUT, exit=True)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = view_check(argv[1]) if argv[0] == "view-check" else main(argv)
            except SystemExit as e:
                code = e.code
            except BaseException:
                traceback.print_exc()
                code = "exception"
        faulthandler.cancel_dump_traceback_later()
        print(json.dumps({"argv": argv, "code": code, "out": out.getvalue()[-200000:],
                          "err": err.getvalue()[-4000:]}), flush=True)
    """
).replace("TIMEOUT", str(TIMEOUT))


def run_driver(calls: list[list[str]]) -> list[dict]:
    proc = subprocess.run([sys.executable, "-c", DRIVER], input=json.dumps(calls), capture_output=True,
                          text=True, timeout=TIMEOUT * 4 + len(calls) * 5, env=clean_env())
    results = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert proc.returncode == 0 and len(results) == len(calls), (
        f"driver exited {proc.returncode} after {len(results)} of {len(calls)} calls "
        f"(next: {calls[len(results)] if len(results) < len(calls) else None})\n{proc.stderr[-5000:]}")
    return results


COMMANDS = {
    "summary": lambda p, o: ["summary", str(p)],
    "view (its checks)": lambda p, o: ["view-check", str(p)],
    "summary --json": lambda p, o: ["summary", str(p), "--json"],
    "convert chrome-json": lambda p, o: ["convert", str(p), "--to", "chrome-json", "-o", str(o / "c.json"),
                                         "--force"],
    "convert pprof": lambda p, o: ["convert", str(p), "--to", "pprof", "-o", str(o / "p.pb.gz"), "--force"],
    "convert pprof --reason all": lambda p, o: ["convert", str(p), "--to", "pprof", "--reason", "all",
                                                "-o", str(o / "r.pb.gz"), "--force"],
    "summary --since --until": lambda p, o: ["summary", str(p), "--since", "1ms", "--until", "2s"],
    "summary of two files": lambda p, o: ["summary", str(p), str(p), "-j", "1", "--json"],
    "diff": lambda p, o: ["diff", str(p), str(p), "--json"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_commands_on_every_hostile_file(hostile, tmp_path, command):
    names = sorted(hostile)
    calls = [COMMANDS[command](hostile[n], tmp_path) for n in names]
    outcomes: dict[int, list[str]] = {}
    for name, result in zip(names, run_driver(calls)):
        assert_clean_outcome(f"{command} {name}", result["code"], result["out"], result["err"])
        outcomes.setdefault(result["code"], []).append(name)
        if result["code"] == 0 and command == "summary --json":
            assert set(json.loads(result["out"])) >= {"window", "threads", "functions", "blocking", "gc"}
    # the intact traces are readable; what is not a trace is refused
    assert {"real-plain", "real-packed"} <= set(outcomes.get(0, []))
    refused_by_all = ["zero-byte", "directory", "fifo", "symlink-to-/dev/zero", "symlink-to-/dev/urandom",
                      "text", "varint-length-2**64-1", "dangling-symlink", "symlink-loop"]
    if command != "view (its checks)":  # view checks the framing only: any Perfetto trace is served
        refused_by_all += ["random-bytes", "zip-bomb", "foreign-perfetto"]
    for refused in refused_by_all:
        if refused in hostile:
            assert refused in outcomes.get(1, []), (refused, outcomes)
    # damaged exectrace traces are summarized, converted or served as far as readable
    assert {"zip-bomb-after-trace", "length-past-end", "nested-1e5-annotations"} <= set(outcomes[0])


#: One of each kind, for the commands run as a process per file.
KINDS = ("real-packed", "bitflip-plain-0", "bitflip-packed-0", "splice-packed-0", "truncated-packed-at-33",
         "truncated-plain-at-7", "varint-length-overlong-11-bytes", "varint-timestamp-past-2**64",
         "length-past-end", "nested-1e5-fields", "nested-1e5-annotations", "zip-bomb", "zip-bomb-after-trace",
         "random-bytes", "zero-byte", "directory", "fifo", "symlink-to-/dev/zero", "symlink-to-/dev/urandom",
         "symlink-loop")


def test_summary_as_a_command_on_hostile_files(hostile):
    """`python -m exectrace summary FILE`, one process per kind of file (in parallel)."""
    def one(name):
        return name, cli("summary", hostile[name])

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(one, [k for k in KINDS if k in hostile]))
    for name, result in results:
        assert_clean_outcome(f"summary {name}", result.returncode, result.stdout, result.stderr)
        if result.returncode == 0:
            assert "window" in result.stdout and "threads" in result.stdout, result.stdout
    assert dict(results)["real-packed"].returncode == 0
    assert dict(results)["zero-byte"].returncode == 1


def test_damaged_summary_says_so(hostile):
    result = cli("summary", hostile["zip-bomb-after-trace"])
    assert result.returncode == 0, result.stderr
    assert "damaged" in result.stdout and "inflates past" in result.stdout


def view_outcome(path: Path) -> tuple[int, str, str]:
    """Runs `exectrace view PATH --no-open --port 0` until it either exits or
    says it is serving (then it is stopped with SIGINT, as Ctrl-C would)."""
    proc = subprocess.Popen([sys.executable, "-m", "exectrace", "view", str(path), "--no-open", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env())
    lines = []
    try:
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("Perfetto UI: "):
                proc.send_signal(signal.SIGINT)
                break
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, "".join(lines) + out, err


def test_view_on_hostile_files(hostile):
    """`python -m exectrace view FILE`, one process per kind of file, up to
    the point it serves (the checks before it run on every file above)."""
    kinds = [k for k in KINDS if k in hostile]
    with ThreadPoolExecutor(4) as pool:
        results = dict(zip(kinds, pool.map(view_outcome, [hostile[n] for n in kinds])))
    served = set()
    for name, (code, out, err) in results.items():
        assert_clean_outcome(f"view {name}", code, out, err)
        if "Perfetto UI: " in out:
            served.add(name)
    assert {"real-packed", "zip-bomb-after-trace"} <= served
    for refused in ("zero-byte", "directory", "fifo", "symlink-to-/dev/zero", "symlink-to-/dev/urandom",
                    "varint-length-overlong-11-bytes", "symlink-loop"):
        if refused in hostile:
            assert refused not in served and results[refused][0] == 1, (refused, results[refused])


@pytest.fixture(scope="module")
def hostile_dump(hostile, tmp_path_factory):
    """A dump dir holding every hostile file under an owned trace-file name
    (as links: regular files hard-linked, the others symlinked or made anew)."""
    d = tmp_path_factory.mktemp("hostile-dump") / "executiontrace_dump"
    d.mkdir()
    for i, name in enumerate(sorted(hostile)):
        src = hostile[name]
        dst = d / dumpstore.file_name(BASE_NS + i * 10**9, 1000 + i)
        if src.is_symlink() or not src.exists():
            os.symlink(os.readlink(src), dst)
        elif src.is_dir():
            dst.mkdir()
        elif src.is_fifo():
            os.mkfifo(dst)
        else:
            os.link(src, dst)
    return d


@pytest.mark.parametrize("options", [[], ["--verify"], ["--json"], ["--json", "--verify"]])
def test_ls_on_a_dir_of_hostile_files(hostile_dump, options):
    result = cli("ls", hostile_dump, *options)
    assert_clean_outcome(f"ls {options}", result.returncode, result.stdout, result.stderr)
    assert result.returncode == 0
    regular = [e for e in os.scandir(hostile_dump) if e.is_file(follow_symlinks=False)]
    if "--json" in options:
        rows = json.loads(result.stdout)
        assert len(rows) == len(regular)  # directories, FIFOs and symlinks are not listed
        assert any(r["error"] for r in rows) and any(r["error"] is None for r in rows)
    else:
        assert "unreadable" in result.stdout
        assert f"{len(regular)} files" in result.stdout


@pytest.mark.parametrize("command", [["summary"], ["summary", "--json"], ["diff"]])
def test_many_windows_of_a_dir_of_hostile_files(hostile_dump, command):
    """summary DIR and diff DIR DIR: every readable window, the others counted."""
    args = [*command, hostile_dump] + ([hostile_dump] if command[0] == "diff" else [])
    result = cli(*args, "-j", "2") if command[0] == "summary" else cli(*args)
    assert_clean_outcome(" ".join(command), result.returncode, result.stdout, result.stderr)
    assert result.returncode == 0
    if command == ["summary", "--json"]:
        report = json.loads(result.stdout)
        assert report["window"]["files"] >= 2 and report["window"]["unreadable"] >= 10
        assert report["window"]["damaged"]
    elif command == ["summary"]:
        assert "unreadable" in result.stdout


def test_debug_zip_of_a_dir_of_hostile_files(hostile_dump, tmp_path):
    out = tmp_path / "debug.zip"
    result = cli("debug-zip", out, "--dump-dir", hostile_dump, "--node", "n")
    assert_clean_outcome("debug-zip", result.returncode, result.stdout, result.stderr)
    assert result.returncode == 0
    regular = sorted(e.name for e in os.scandir(hostile_dump) if e.is_file(follow_symlinks=False))
    with zipfile.ZipFile(out) as zf:
        names = zf.namelist()
        assert sorted(n.rsplit("/", 1)[1] for n in names if n.endswith(".out")) == regular
        for name in regular:  # copied byte for byte, whatever they hold
            assert zf.read(f"nodes/n/executiontrace/{name}") == (hostile_dump / name).read_bytes()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs")
def test_a_fifo_with_a_writer_waiting_does_not_block(tmp_path):
    """A FIFO someone holds open for writing: commands must still not read it."""
    fifo = tmp_path / "pipe.out"
    os.mkfifo(fifo)
    fd = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)  # a writer (and reader) keeps it open
    try:
        os.write(fd, b"\x0a\x02ab")
        for args in (["summary", fifo], ["convert", fifo, "--to", "pprof", "-o", tmp_path / "x.pb.gz"],
                     ["view", fifo, "--no-open", "--port", "0"]):
            result = cli(*args)
            assert_clean_outcome(str(args[0]), result.returncode, result.stdout, result.stderr)
            assert result.returncode == 1 and "not a regular file" in result.stderr
    finally:
        os.close(fd)
