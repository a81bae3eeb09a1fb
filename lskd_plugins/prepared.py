"""Idempotent data preparation: ONE stamp mechanism for every preparation (images and translation).

A stamp file (JSON: ``settings``, ``counts`` and any extra facts) is written last, atomically, by
a finished run. Rerunning with the same settings returns the recorded counts without redoing the
work; other settings, or a non-empty folder without a stamp, stop with a one-line error naming
what changed (never overwrite) unless ``force``. ``own`` names the entries a preparation itself
writes (its results, its temporary folder, a download folder it fills): a half-done run's
leftovers among them do not block the retry, which starts clean.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Iterable

from lskd_plugins.errors import LskdError
from lskd_plugins.files import write_text_atomic


def read_stamp(out: Path, stamp_name: str) -> Dict[str, Any] | None:
    """The stamp of a finished run into ``out`` (None when there is none); a corrupt one is an error."""
    stamp = Path(out) / stamp_name
    if not stamp.is_file():
        return None
    try:
        done = json.loads(stamp.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise LskdError(f"{stamp} is corrupt ({err}); delete it to prepare {out} again") from None
    if not isinstance(done, dict):
        raise LskdError(f"{stamp} is not a preparation stamp; delete it to prepare {out} again")
    return done


def changed_settings(old: Dict[str, Any], new: Dict[str, Any]) -> list:
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))


def reuse_prepared(
    out: Path,
    stamp_name: str,
    settings: Dict[str, Any],
    force: bool = False,
    own: Iterable[str] = (),
    option: str = "--out",
) -> Dict[str, Any] | None:
    """The counts of an earlier run into ``out`` with these settings, or None when ``out`` may be
    (re)written: it is free, holds only this preparation's own entries, or ``force`` is set."""
    done = read_stamp(out, stamp_name)
    if done is not None and "settings" in done:
        if done.get("settings") == settings:
            return done["counts"]
        if not force:
            changed = changed_settings(done.get("settings") or {}, settings)
            raise LskdError(
                f"{out} was prepared with other settings ({', '.join(changed[:6])} differ); choose another "
                f"{option} or pass --overwrite to prepare it again"
            )
        return None
    foreign = [p.name for p in Path(out).iterdir() if p.name not in set(own)] if Path(out).is_dir() else []
    if foreign and not force:
        raise LskdError(
            f"{out} exists and is not empty: it holds files this preparation did not write "
            f"({', '.join(sorted(foreign)[:4])}); choose another {option}"
        )
    return None


def write_stamp(
    out: Path, stamp_name: str, settings: Dict[str, Any], counts: Dict[str, Any], **extra: Any
) -> None:
    """Record a finished run (written last and atomically, so an interrupted run leaves no stamp)."""
    doc = {"settings": settings, "counts": counts, **extra}
    write_text_atomic(Path(out) / stamp_name, json.dumps(doc, indent=2) + "\n")
