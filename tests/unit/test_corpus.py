"""Every file of tests/corpus (see its README) through the reader, what the
commands do with a trace, and `python -m exectrace summary`: a result or one
clear error line, never a crash, hang or traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from hostile import exercise

CORPUS = Path(__file__).resolve().parent.parent / "corpus"
FILES = sorted(p for p in CORPUS.iterdir() if p.suffix == ".out")


def test_the_corpus_is_there():
    assert len(FILES) >= 20
    listed = (CORPUS / "README.md").read_text()
    assert all(p.name in listed for p in FILES), "describe every corpus file in tests/corpus/README.md"


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_corpus_file_through_the_reader(path, tmp_path):
    exercise(path.read_bytes(), tmp_path / path.name)


def test_corpus_through_the_summary_command():
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXECTRACE_")}

    def summary(path):
        return subprocess.run([sys.executable, "-m", "exectrace", "summary", str(path)], capture_output=True,
                              text=True, timeout=120, env=env)

    with ThreadPoolExecutor(4) as pool:
        results = dict(zip(FILES, pool.map(summary, FILES)))
    for path, result in results.items():
        assert result.returncode in (0, 1), (path.name, result.returncode, result.stderr)
        assert "Traceback" not in result.stderr, (path.name, result.stderr)
        if result.returncode:
            assert len(result.stderr.strip().splitlines()) == 1, (path.name, result.stderr)
        else:
            assert "window" in result.stdout
    assert results[CORPUS / "valid-compressed.out"].returncode == 0
    assert results[CORPUS / "crash-summary-duration-is-a-string.out"].returncode == 0
