"""Atomic file writes: write a temporary file beside the target, then rename over it.

A killed run never leaves a half-written output that a rerun would mistake for a finished one
(every lskd command resumes by looking at what is on disk). The temporary name carries the
process id, so several processes writing into one folder (seqkd workers) never collide.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Iterable


def _replace(path: Path, write: Callable[[Path], None]) -> Path:
    """Run ``write(tmp)``, then rename tmp over ``path``; on failure remove tmp, keep ``path``."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(path: os.PathLike | str, text: str, fsync: bool = False) -> Path:
    """UTF-8 text with '\\n' line ends; ``fsync`` also flushes it to disk before the rename."""
    def write(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
            if fsync:
                f.flush()
                os.fsync(f.fileno())

    return _replace(Path(path), write)


def write_lines_atomic(path: os.PathLike | str, lines: Iterable[str]) -> Path:
    """One line per item, each ended by '\\n'."""
    return write_text_atomic(path, "".join(line + "\n" for line in lines))


def torch_save_atomic(obj: Any, path: os.PathLike | str) -> Path:
    """torch.save, so that a kill never leaves a truncated checkpoint."""
    import torch

    return _replace(Path(path), lambda tmp: torch.save(obj, tmp))
