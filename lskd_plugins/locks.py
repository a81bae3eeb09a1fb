"""Locks between processes of one machine: ``fcntl.flock`` on a lock file.

The operating system drops a flock when its holder exits, however it exits (``kill -9``
included), so a killed holder never leaves a stale lock behind: the lock file itself stays, and
the next taker simply gets it. Two ``lskd study`` processes on one output use these per run folder
(``RUN/.lskd-run.lock``): one trains the run, the other waits for it or moves on to other runs,
and then reuses its result.

(flock is per open file: two locks on one path in one process exclude each other too. On network
file systems flock may be local to each machine; the study's SLURM launcher takes its locks on
the submitting machine.)
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

LOCK_NAME = ".lskd-run.lock"  # in each run folder of a study
DATA_LOCK_NAME = ".lskd-data.lock"  # in a study's output: its data are prepared and hashed under it


class FileLock:
    """An exclusive flock on ``path`` (created, with its folder, when missing)."""

    def __init__(self, path: os.PathLike | str):
        self.path = Path(path)
        self._file = None

    @property
    def held(self) -> bool:
        return self._file is not None

    def acquire(self, block: bool = True) -> bool:
        """Take the lock; with ``block=False`` return False at once when another holder has it."""
        import fcntl

        if self._file is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        f = open(self.path, "a")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | (0 if block else fcntl.LOCK_NB))
        except BlockingIOError:
            f.close()
            return False
        except BaseException:
            f.close()
            raise
        self._file = f
        return True

    def release(self) -> None:
        import fcntl

        if self._file is not None:
            try:
                fcntl.flock(self._file, fcntl.LOCK_UN)
            finally:
                self._file.close()
                self._file = None

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def try_lock(path: os.PathLike | str) -> FileLock | None:
    """The lock on ``path`` when it is free now, else None (never waits)."""
    lock = FileLock(path)
    return lock if lock.acquire(block=False) else None


@contextmanager
def locked(path: os.PathLike | str) -> Iterator[FileLock]:
    """Hold the lock on ``path`` for the ``with`` block, waiting for another holder first."""
    with FileLock(path) as lock:
        yield lock


def run_lock_path(folder: os.PathLike | str) -> Path:
    """The lock file of a run folder."""
    return Path(folder) / LOCK_NAME
