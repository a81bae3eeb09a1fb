"""Two `lskd study` processes on one output (issue 20, class 7): each run is trained once (the other
study waits for it or moves on to other runs, then reuses it), and both write the same report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from lskd_plugins.errors import LskdError

REPO = Path(__file__).resolve().parents[1]


def test_two_studies_on_one_output_train_each_run_once(tmp_path):
    cfg = tmp_path / "tiny.yaml"
    image = {
        "data": "digits",
        "teacher_model": "test_resnet",
        "common": {"img-size": 16, "batch-size": 64, "aug": "none", "limit-train": 256, "limit-val": 60},
        "teacher": {"epochs": 3},
        "student": {"epochs": 1},
        "diffusion": False,
    }
    doc = {"seeds": 1, "temperatures": [1, 2], "teacher_smoothing": [0.0, 0.1], "progress": False}
    cfg.write_text(yaml.safe_dump({**doc, "threads_per_job": 1, "device": "cpu", "image": image}))
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    argv = [sys.executable, "-m", "lskd_plugins.cli", "study", str(cfg), "--output", str(out)]
    procs = [subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)]
    while not list(out.glob("runs/*/*/run.json")):  # the second study starts while the first trains
        assert procs[0].poll() is None, procs[0].communicate()
        time.sleep(0.1)
    procs.append(subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = [p.communicate(timeout=900) for p in procs]
    for p, (stdout, stderr) in zip(procs, outputs):
        assert p.returncode == 0, stderr
        assert "report written" in stdout
    runs = json.loads((out / "report.json").read_text())["modalities"]["image"]["runs"]
    assert len(runs) == 7  # 2 teachers, the baseline, 2 x 2 students
    for run in runs:
        log = (out / run["folder"] / "log.txt").read_text()
        starts = [line for line in log.splitlines() if line.startswith(f"study: {run['name']} key ")]
        assert len(starts) == 1, f"{run['name']} was trained {len(starts)} times"


@pytest.mark.parametrize(
    "error, hint",
    [
        (RuntimeError("worker killed"), "; rerun to resume (finished runs are reused)"),
        (LskdError("--pretrained-checkpoint x.pth not found"), "; fix that, then run the same command again"),
    ],
)
def test_rerun_to_resume_only_for_failures_a_rerun_can_fix(error, hint, tmp_path, capsys, monkeypatch):
    from cli_helpers import check_one_line

    from lskd_plugins.cli import main
    from lskd_plugins.study import runners

    def execute(run, ctx):
        raise error

    monkeypatch.setattr(runners, "execute", execute)
    argv = ["study", "--output", str(tmp_path / "o"), "--model", "test_resnet", "--seeds", "1"]
    argv += ["--temps", "1"]
    rc = main([*argv, "--no-progress", "--set", "image.diffusion=false"])
    line = check_one_line(capsys.readouterr().err, rc, 1, ["run(s) failed, first: image/"])
    assert line.endswith(hint) or hint in line
    if isinstance(error, LskdError):
        assert "rerun to resume" not in line


HOLDER = """
import sys, time
from pathlib import Path
from lskd_plugins.locks import FileLock
lock = FileLock(sys.argv[1])
lock.acquire()
Path(sys.argv[2]).write_text("held")
while not Path(sys.argv[3]).exists():
    time.sleep(0.05)
result = Path(sys.argv[4])
result.write_text(Path(sys.argv[5]).read_text())  # the other study finishes the run
lock.release()
"""


def test_a_run_locked_by_another_study_is_waited_for_and_reused(tmp_path, capsys, monkeypatch):
    """Another study (a process holding one teacher's lock) trains that teacher: this study trains
    every other ready run first, waits, and then reuses the teacher without training it."""
    import json
    import threading

    from test_study_engine import CALLS, fake_execute

    from lskd_plugins.cli import main
    from lskd_plugins.locks import run_lock_path
    from lskd_plugins.study import runners

    CALLS.clear()
    monkeypatch.setattr(runners, "execute", fake_execute)
    out = tmp_path / "out"
    argv = ["study", "--output", str(out), "--model", "test_resnet", "--seeds", "1", "--temps", "1,2"]
    argv += ["--no-progress", "--set", "image.diffusion=false"]
    assert main(argv) == 0
    runs = json.loads((out / "report.json").read_text())["modalities"]["image"]["runs"]
    folders = {r["name"]: out / r["folder"] for r in runs}
    locked_name = next(n for n in folders if n.startswith("image/teacher") and "0.1" not in n)
    teacher = folders[locked_name]
    saved = tmp_path / "teacher_result.json"
    saved.write_text((teacher / "result.json").read_text())
    for folder in folders.values():
        (folder / "result.json").unlink()
    flag, go = tmp_path / "held", tmp_path / "go"
    holder = [sys.executable, "-c", HOLDER, str(run_lock_path(teacher)), str(flag), str(go)]
    holder += [str(teacher / "result.json"), str(saved)]
    proc = subprocess.Popen(holder, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        while not flag.exists():
            assert proc.poll() is None
            time.sleep(0.05)
        CALLS.clear()
        codes = []
        study = threading.Thread(target=lambda: codes.append(main(argv)))
        study.start()
        free = {n for n in folders if "0.1" in n or "baseline" in n}
        while not free <= set(CALLS):  # every run that does not read the locked teacher
            assert study.is_alive()
            time.sleep(0.05)
        assert sorted(CALLS) == sorted(free)  # nothing of the locked teacher yet
    finally:
        go.write_text("")
    study.join(timeout=300)
    proc.wait(timeout=60)
    assert codes == [0]
    assert locked_name not in CALLS  # reused: the other study trained it
    assert sorted(CALLS) == sorted(set(folders) - {locked_name})
    assert "in progress in another lskd study" in capsys.readouterr().err


def test_overwrite_refuses_a_folder_another_study_is_running_in(tmp_path, capsys):
    from cli_helpers import assert_fails_one_line

    from lskd_plugins.locks import run_lock_path

    out = tmp_path / "out"
    run = out / "runs" / "image" / "teacher_s0-abc"
    run.mkdir(parents=True)
    (run / "log.txt").write_text("training\n")
    (out / "notes.txt").write_text("not lskd's\n")
    flag, go = tmp_path / "held", tmp_path / "go"
    script = HOLDER.replace("result = Path(sys.argv[4])\n", "").replace(
        "result.write_text(Path(sys.argv[5]).read_text())  # the other study finishes the run\n", ""
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(run_lock_path(run)), str(flag), str(go)],
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        while not flag.exists():
            assert proc.poll() is None
            time.sleep(0.05)
        argv = ["study", "--output", str(out), "--model", "test_resnet", "--seeds", "1", "--overwrite"]
        assert_fails_one_line(
            argv, capsys, unchanged=[out], must_contain=["another lskd study is running there", "--overwrite"]
        )
    finally:
        go.write_text("")
        proc.wait(timeout=60)
