"""lskd_plugins.locks: one holder at a time across processes; a killed holder leaves no stale lock."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from lskd_plugins.locks import FileLock, locked, run_lock_path, try_lock

HOLDER = """
import sys, time
from pathlib import Path
from lskd_plugins.locks import FileLock
lock = FileLock(sys.argv[1])
lock.acquire()
Path(sys.argv[2]).write_text("held")
mode = sys.argv[3]
if mode == "forever":
    time.sleep(600)
else:  # release when told to
    while not Path(sys.argv[4]).exists():
        time.sleep(0.05)
    Path(sys.argv[2]).write_text("released")
    lock.release()
"""


def _start_holder(tmp_path: Path, lock: Path, mode: str, go: Path | None = None):
    flag = tmp_path / f"held-{mode}"
    argv = [sys.executable, "-c", HOLDER, str(lock), str(flag), mode, str(go or tmp_path / "never")]
    proc = subprocess.Popen(argv, env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    while not flag.exists():  # wait until the other process holds the lock
        assert proc.poll() is None, "the holder process ended early"
        time.sleep(0.05)
    return proc, flag


def test_a_second_process_cannot_take_a_held_lock_and_a_killed_holder_leaves_none(tmp_path):
    lock = run_lock_path(tmp_path / "runs" / "a")
    proc, _ = _start_holder(tmp_path, lock, "forever")
    try:
        assert try_lock(lock) is None
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    taken = try_lock(lock)  # kill -9 released it: no stale lock
    assert taken is not None and taken.held
    assert try_lock(lock) is None  # one holder at a time, even in one process
    taken.release()
    assert not taken.held and try_lock(lock) is not None


def test_a_waiting_process_gets_the_lock_when_the_holder_releases_it(tmp_path):
    lock, go = tmp_path / "x.lock", tmp_path / "go"
    proc, flag = _start_holder(tmp_path, lock, "release", go)
    try:
        assert not FileLock(lock).acquire(block=False)
        go.write_text("")
        with locked(lock) as held:  # blocks until the holder let go
            assert held.held
            assert flag.read_text() == "released"
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == 0
