"""`exectrace run` and `exectrace record`: programs traced without code changes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

import exectrace
from perfetto_check import check_trace

PROGRAM = textwrap.dedent("""
    import sys, time
    def work(n):
        return sum(range(n))
    def main():
        for _ in range(200):
            work(1000)
        time.sleep(0.25)
        print("args", sys.argv[1:], flush=True)
    main()
    sys.exit(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
""")


def cli(*args, cwd=None, env=None, timeout=120):
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("EXECTRACE_")}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "exectrace", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def one_line_error(result, code=1):
    assert result.returncode == code, result
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr
    if code == 1:
        assert len(lines) == 1, result.stderr
    return lines[-1]


@pytest.fixture
def program(tmp_path):
    path = tmp_path / "prog.py"
    path.write_text(PROGRAM)
    return path


def test_record_a_script(program, tmp_path):
    out = tmp_path / "run.out"
    result = cli("record", "-o", str(out), str(program), "7", "x")
    assert result.returncode == 7  # the program's own exit status
    assert "args ['7', 'x']" in result.stdout
    check_trace(str(out))
    trace = exectrace.read(out)
    names = [s.name for s in trace.slices()]
    assert names.count("work") == 200
    assert "main" in names and "time.sleep" in names
    assert trace.metadata.settings["c_calls"] == "true"


def test_record_a_module_with_options(tmp_path):
    pkg = tmp_path / "mypkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "tool.py").write_text(PROGRAM)
    out = tmp_path / "mod.out"
    result = cli("record", "-o", str(out), "--c-calls", "false", "-m", "mypkg.tool", "0",
                 cwd=tmp_path, env={"PYTHONPATH": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    trace = exectrace.read(out)
    assert not [s for s in trace.slices() if s.is_c_function]
    assert [s.name for s in trace.slices()].count("work") == 200


def test_run_a_script_on_a_schedule(program, tmp_path):
    dump = tmp_path / "dump"
    result = cli("run", "--interval", "100ms", "--duration", "50ms", "--dump-dir", str(dump),
                 str(program), "0")
    assert result.returncode == 0, result.stderr
    files = sorted(f for f in dump.iterdir() if f.name.endswith(".out"))
    assert len(files) >= 2
    for f in files:
        check_trace(str(f))
        assert exectrace.read(f).metadata.settings["interval"] == "100ms"


def test_run_a_command_with_the_environment_set(program, tmp_path):
    """`run -- CMD` hands the settings to CMD's Python processes (autostart)."""
    dump = tmp_path / "dump"
    probe = "import os; print(os.environ.get('EXECTRACE_INTERVAL'), os.environ.get('EXECTRACE_DIR'))"
    result = cli("run", "--interval", "200ms", "--dump-dir", str(dump), "--", sys.executable, "-S", "-c", probe)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["200ms", str(dump)]


def test_bad_input_is_one_line(program, tmp_path):
    assert "c_calls" in one_line_error(cli("record", "-o", str(tmp_path / "a.out"), "--c-calls", "maybe",
                                           str(program)))
    assert "no such script" in one_line_error(cli("record", "-o", str(tmp_path / "b.out"),
                                                  str(tmp_path / "missing.py")))
    existing = tmp_path / "exists.out"
    existing.write_bytes(b"x")
    assert "--force" in one_line_error(cli("record", "-o", str(existing), str(program)))
    assert "no program" in one_line_error(cli("run", "--interval", "1s"))
    assert "interval" in one_line_error(cli("run", "--interval", "soon", str(program)))
    assert "not found" in one_line_error(cli("run", "--", "no-such-command-exectrace"))
    assert "no module named" in one_line_error(cli("record", "-o", str(tmp_path / "m.out"), "-m", "no_such_mod_x"))
    usage = cli("record", str(program))  # -o is required
    assert usage.returncode == 2 and "Traceback" not in usage.stderr


def test_record_takes_window_settings_from_the_environment(program, tmp_path):
    out = tmp_path / "run.out"
    result = cli("record", "-o", str(out), "--c-calls", "false", str(program), "0",
                 env={"EXECTRACE_TRACE_LOCKS": "false", "EXECTRACE_C_CALLS": "true",
                      "EXECTRACE_SLOW_STEP": "250ms", "EXECTRACE_INTERVAL": "banana"})
    assert result.returncode == 0, result.stderr  # schedule variables are not read
    settings = exectrace.read(out).metadata.settings
    assert settings["trace_locks"] == "false"  # from the environment
    assert settings["slow_step"] == "250ms"
    assert settings["c_calls"] == "false"  # an option wins over the environment


def test_record_names_a_bad_environment_variable(program, tmp_path):
    result = cli("record", "-o", str(tmp_path / "run.out"), str(program), "0",
                 env={"EXECTRACE_MAX_DEPTH": "deep"})
    assert "EXECTRACE_MAX_DEPTH" in one_line_error(result)
    assert not (tmp_path / "run.out").exists()
