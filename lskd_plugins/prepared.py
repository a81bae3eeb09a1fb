"""Idempotent data preparation: a stamp file records the settings and counts of a finished run.

Rerunning with the same settings returns the recorded counts without redoing the work; other
settings, or a non-empty folder without a stamp, stop with a one-line error (never overwrite).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict

from lskd_plugins.errors import LskdError


def reuse_prepared(out: Path, stamp_name: str, settings: Dict[str, Any]) -> Dict[str, Any] | None:
    """The counts of an earlier run into ``out`` with these settings, or None when ``out`` is free."""
    stamp = Path(out) / stamp_name
    if stamp.is_file():
        done = json.loads(stamp.read_text())
        if done.get("settings") == settings:
            return done["counts"]
        raise LskdError(
            f"{out} was prepared with other settings ({done.get('settings')}); choose another --out"
        )
    if Path(out).exists() and any(Path(out).iterdir()):
        raise LskdError(f"{out} exists and is not empty; choose another --out")
    return None


def write_stamp(
    out: Path, stamp_name: str, settings: Dict[str, Any], counts: Dict[str, Any], **extra: Any
) -> None:
    """Record a finished run (written last, so an interrupted run leaves no stamp)."""
    doc = {"settings": settings, "counts": counts, **extra}
    (Path(out) / stamp_name).write_text(json.dumps(doc, indent=2) + "\n")
