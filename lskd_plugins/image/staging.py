"""Prepare a data folder in a temporary sibling and rename it into place at the end.

``lskd digits``, ``data_prep/prepare_cifar.py`` and ``data_prep/prepare_cub.py`` go through
``prepare_staged``: a run killed or failed half-way leaves no partial ``OUT`` (so the retry is never
refused for a folder it does not recognise), only ``.OUT.partial-PID``, which the next run removes
when that process is gone. The stamp (settings and counts of a finished folder) is the project's
one mechanism, ``lskd_plugins.prepared``: the same settings again are a no-op, other settings are
refused unless ``--overwrite`` is given.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Callable, Dict, Iterable

from lskd_plugins.errors import LskdError
from lskd_plugins.files import check_writable, refuse_overlap
from lskd_plugins.prepared import reuse_prepared, write_stamp


def _alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (a killed one that is not yet reaped, a zombie, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


def clean_stale(out: Path) -> int:
    """Remove ``.OUT.partial-PID`` folders whose process no longer runs; returns how many."""
    removed = 0
    for tmp in out.parent.glob(f".{out.name}.partial-*"):
        pid = tmp.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)
            removed += 1
    return removed


def prepare_staged(
    out: os.PathLike | str,
    stamp: str,
    settings: Dict[str, Any],
    build: Callable[[Path], Dict[str, Any]],
    overwrite: bool = False,
    option: str = "--output",
    inputs: Iterable[os.PathLike | str] = (),
    **extra: Any,
) -> Dict[str, Any]:
    """Run ``build(tmp_folder) -> counts`` unless already done; move the result to ``out`` atomically.

    ``inputs`` (the source archive or folder, ...) may be neither ``out``, inside it, nor above it:
    ``--overwrite`` replaces ``out`` whole, so that is refused before any file is touched."""
    out = Path(out)
    refuse_overlap(out, inputs, option)
    if out.exists() and not out.is_dir():
        raise LskdError(f"{option} {out} is a file, not a folder; give a folder path")
    clean_stale(out)
    done = reuse_prepared(out, stamp, settings, force=overwrite, option=option)
    if done is not None:
        return done
    check_writable(out.parent if str(out.parent) else Path("."), option)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        counts = build(tmp)
        write_stamp(tmp, stamp, settings, counts, **extra)
        if out.exists():
            shutil.rmtree(out)  # an empty folder, or --overwrite
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return counts
