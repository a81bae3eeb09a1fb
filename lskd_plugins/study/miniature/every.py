"""The miniature of every shipped study configuration (CI: ``.ci/run``).

    python -m lskd_plugins.study.miniature.every [FOLDER] [CONFIG ...]

runs ``lskd study CONFIG --miniature --output FOLDER/<name>-miniature`` for each
``recipes/study/*.yaml`` (or the CONFIGs given), the ImageNet study before the CUB study whose
teachers start from it, and prints each one's wall time (and CPU time) and the replacement lines it printed.
Exit status 1 when any of them fails: a shipped configuration that cannot run end to end fails CI.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import List

from lskd_plugins.study.miniature.study import RECIPES


def ordered(configs: List[Path]) -> List[Path]:
    """Name order, but a study whose output another one's teacher_init names comes first."""
    import yaml

    docs = {c: yaml.safe_load(c.read_text()) or {} for c in configs}
    wanted = {
        str((d.get("image") or {}).get("teacher_init")).rstrip("/")
        for d in docs.values()
        if isinstance((d.get("image") or {}).get("teacher_init"), str)
    }
    return sorted(configs, key=lambda c: (str(docs[c].get("output", "")).rstrip("/") not in wanted, c.name))


def run_one(config: Path, folder: Path) -> tuple:
    cmd = [sys.executable, "-m", "lskd_plugins.cli", "study", str(config), "--miniature", "--no-progress"]
    cmd += ["--output", str(folder / f"{config.stem}-miniature")]
    start, used = time.perf_counter(), cpu_seconds()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    wall, cpu = time.perf_counter() - start, cpu_seconds() - used
    said = proc.stdout.splitlines() + proc.stderr.splitlines()
    lines = [line for line in said if line.startswith("miniature:")]
    if proc.returncode != 0:
        errors = [line for line in proc.stderr.splitlines() if line.startswith("lskd: error")]
        lines += errors or proc.stderr.splitlines()[-5:]
    return proc.returncode, wall, cpu, lines


def cpu_seconds() -> float:
    """CPU time (user + system) of the finished child processes so far: a figure the machine's
    other load changes far less than the wall time."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main(argv: List[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    folder = Path(argv[0]) if argv else Path(tempfile.mkdtemp(prefix="lskd-miniatures-"))
    configs = [Path(a) for a in argv[1:]] or sorted(RECIPES.glob("*.yaml"))
    failed, total = [], 0.0
    for config in ordered(configs):
        code, wall, cpu, lines = run_one(config, folder)
        total += wall
        state = "ok" if code == 0 else f"FAILED (exit {code})"
        print(f"{config.name}: {state} in {wall:.0f} s ({cpu:.0f} s CPU)", flush=True)
        for line in lines:
            print(f"    {line}", flush=True)
        if code != 0:
            failed.append(config.name)
    done = len(configs) - len(failed)
    print(f"miniatures: {done}/{len(configs)} ran end to end in {total:.0f} s ({folder})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
