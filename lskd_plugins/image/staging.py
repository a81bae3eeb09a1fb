"""Prepare a data folder in a temporary sibling and rename it into place at the end.

``lskd digits``, ``data_prep/prepare_cifar.py`` and ``data_prep/prepare_cub.py`` go through
``prepare_staged``: a run killed or failed half-way leaves no partial ``OUT`` (so the retry is never
refused for a folder it does not recognise), only ``.OUT.partial-PID``, which the next run removes
when that process is gone. A finished folder holds a stamp with its settings and counts; the same
settings again are a no-op, other settings are refused unless ``--overwrite`` is given.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable, Dict

from lskd_plugins.errors import LskdError
from lskd_plugins.files import check_writable, write_text_atomic


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale(out: Path) -> int:
    """Remove ``.OUT.partial-PID`` folders whose process no longer runs; returns how many."""
    removed = 0
    for tmp in out.parent.glob(f".{out.name}.partial-*"):
        pid = tmp.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)
            removed += 1
    return removed


def finished(out: Path, stamp: str, settings: Dict[str, Any], overwrite: bool, option: str):
    """The counts of an earlier run with these settings, or None when ``out`` may be (re)made."""
    if out.exists() and not out.is_dir():
        raise LskdError(f"{option} {out} is a file, not a folder; give a folder path")
    marker = out / stamp
    if marker.is_file():
        try:
            done = json.loads(marker.read_text())
        except (OSError, ValueError):
            done = {}
        if done.get("settings") == settings:
            return done["counts"]
        if not overwrite:
            old = done.get("settings") or {}
            changed = sorted(k for k in set(settings) | set(old) if settings.get(k) != old.get(k))
            which = ", ".join(changed) or "unreadable stamp"
            raise LskdError(
                f"{option} {out} was prepared with other settings ({which}); "
                "choose another folder or pass --overwrite to replace it"
            )
    elif out.is_dir() and any(out.iterdir()) and not overwrite:
        raise LskdError(
            f"{option} {out} exists and is not empty (not prepared by lskd); "
            "choose another folder or pass --overwrite to replace it"
        )
    return None


def prepare_staged(
    out: os.PathLike | str,
    stamp: str,
    settings: Dict[str, Any],
    build: Callable[[Path], Dict[str, Any]],
    overwrite: bool = False,
    option: str = "--output",
    **extra: Any,
) -> Dict[str, Any]:
    """Run ``build(tmp_folder) -> counts`` unless already done; move the result to ``out`` atomically."""
    out = Path(out)
    done = finished(out, stamp, settings, overwrite, option)
    if done is not None:
        return done
    check_writable(out.parent if str(out.parent) else Path("."), option)
    clean_stale(out)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        counts = build(tmp)
        doc = {"settings": settings, "counts": counts, **extra}
        write_text_atomic(tmp / stamp, json.dumps(doc, indent=2) + "\n")
        if out.exists():
            shutil.rmtree(out)  # an empty folder, or --overwrite
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return counts
