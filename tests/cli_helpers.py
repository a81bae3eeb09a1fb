"""Shared checks for "this command must fail with one line and leave these files unchanged"."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path
from typing import Dict, Iterable, List, Sequence


def snapshot(paths: Iterable[Path]) -> Dict[str, str]:
    """{file: sha256} of every file under ``paths`` (files or folders); absent paths map to ''."""
    out: Dict[str, str] = {}
    for root in map(Path, paths):
        if not root.exists():
            out[str(root)] = ""
            continue
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for f in files:
            out[str(f)] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


def check_one_line(err: str, code: int, expected_code: int, must_contain: Sequence[str]) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert code == expected_code, f"exit {code}, expected {expected_code}; stderr:\n{err}"
    assert "Traceback" not in err, err
    assert len(lines) >= 1 and lines[-1].startswith("lskd: error:"), err
    error_lines = [line for line in lines if line.startswith("lskd: error:")]
    assert len(error_lines) == 1, err
    for text in must_contain:
        assert text in error_lines[0], f"{text!r} not in {error_lines[0]!r}"
    return error_lines[0]


def assert_fails_one_line(
    argv: List[str], capsys, unchanged: Iterable[Path] = (), code: int = 2, must_contain: Sequence[str] = ()
) -> str:
    """Run ``lskd ARGV`` in-process; it must exit ``code`` with one ``lskd: error:`` line on stderr
    and leave every file under ``unchanged`` as it was. Returns the error line."""
    from lskd_plugins.cli import main

    unchanged = list(unchanged)
    before = snapshot(unchanged)
    capsys.readouterr()
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse exits itself
        rc = exc.code
    err = capsys.readouterr().err
    line = check_one_line(err, rc, code, must_contain)
    assert snapshot(unchanged) == before, "files changed by a command that failed"
    return line


def assert_cmd_fails_one_line(
    cmd: List[str],
    env,
    unchanged: Iterable[Path] = (),
    code: int = 2,
    must_contain: Sequence[str] = (),
    timeout: int = 300,
) -> str:
    """The same for a subprocess (a script, fairseq-train with the plugins, the console script)."""
    unchanged = list(unchanged)
    before = snapshot(unchanged)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    line = check_one_line(proc.stderr, proc.returncode, code, must_contain)
    assert snapshot(unchanged) == before, "files changed by a command that failed"
    return line
