"""Run keys: a hash of everything that changes a run's result, so a finished run is reused only
when nothing it depends on has changed.

The data enter through their content (``tree_hash``: every file's relative path, size and
SHA-256), never through the path string: the same data at another path gives the same key, changed
data a new one. The walk is the image readers' (``image/folders.py``): names that start with a dot
are left out (stamps and ownership markers record where and when the data were made, not what they
are; hidden folders are not image classes and are never read), folders reached through symbolic
links are followed as the readers follow them, and a link loop is refused in one line. So every file
an image run reads is in the hash, and adding a hidden folder changes neither what is read nor the key.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Dict

from lskd_plugins.files import write_text_atomic

KEY_LENGTH = 16


def canonical(obj: Any) -> str:
    """One text per value: sorted keys, no spaces, floats as Python prints them."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def run_key(spec: Dict[str, Any]) -> str:
    return hashlib.sha256(canonical(spec).encode()).hexdigest()[:KEY_LENGTH]


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _files(folder: Path):
    from lskd_plugins.image.folders import visible_files

    return visible_files(folder)


def tree_hash(folder: str | os.PathLike, cache_file: str | os.PathLike | None = None) -> str:
    """SHA-256 of the manifest (relative path, size, content hash) of every file under ``folder``.

    ``cache_file`` remembers each file's content hash by (path, size, mtime) so that a large data
    set is read once, not at every start of the study.
    """
    folder = Path(folder)
    cache: Dict[str, list] = {}
    if cache_file is not None and Path(cache_file).is_file():
        try:
            cache = json.loads(Path(cache_file).read_text())
        except ValueError:
            cache = {}
    manifest, fresh = [], {}
    for path in _files(folder):
        rel = path.relative_to(folder).as_posix()
        if not path.exists():  # a link to nothing: the readers skip it as an unreadable image
            manifest.append([rel, -1, f"link to {os.readlink(path)}"])
            continue
        st = path.stat()
        stamp = [st.st_size, st.st_mtime_ns]
        hit = cache.get(str(path.resolve()))
        digest = hit[2] if hit and hit[:2] == stamp else file_sha256(path)
        fresh[str(path.resolve())] = [*stamp, digest]
        manifest.append([rel, st.st_size, digest])
    if cache_file is not None:
        Path(cache_file).parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(cache_file, json.dumps({**cache, **fresh}))
    return hashlib.sha256(canonical(manifest).encode()).hexdigest()
