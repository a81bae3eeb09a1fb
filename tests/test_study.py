"""``lskd study`` end to end at toy size: every file written, numbers consistent with the runs."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lskd_plugins import study
from lskd_plugins.cli import main as lskd_main
from lskd_plugins.errors import LskdError


def test_answer_and_table_from_summaries():
    teachers = {0.0: {"top1": 70.0}, 0.1: {"top1": 71.0}}
    students = {
        (0.0, 1.0): {"top1": 60.0},
        (0.0, 4.0): {"top1": 58.0},
        (0.1, 1.0): {"top1": 62.5},
        (0.1, 4.0): {"top1": 55.0},
    }
    table = study.paper_table(teachers, students, [1.0, 4.0], [0.0, 0.1])
    assert table[0] == {"row": "teacher", "alpha=0": 70.0, "alpha=0.1": 71.0}
    assert table[2] == {"row": "T=4", "alpha=0": 58.0, "alpha=0.1": 55.0}
    ans = study.answer(teachers, students, [1.0, 4.0], [0.0, 0.1])
    assert ans["best_student"] == {"alpha": 0.1, "temperature": 1.0, "top1": 62.5}
    assert ans["ls_minus_nols_at_lowest_T"] == pytest.approx(2.5)
    assert ans["ls_teacher_drop_lowest_to_highest_T"] == pytest.approx(7.5)
    assert "LS teacher (alpha=0.1) distilled at T=1" in ans["sentence"]


@pytest.fixture(scope="module")
def toy_study(tmp_path_factory):
    out = tmp_path_factory.mktemp("study")
    argv = [
        "study",
        "--out",
        str(out),
        "--model",
        "test_resnet",
        "--img-size",
        "16",
        "--teacher-epochs",
        "1",
        "--student-epochs",
        "1",
        "--temps",
        "1,4",
        "--per-class",
        "12",
        "--batch-size",
        "128",
        "--quiet",
        "--device",
        "cpu",
    ]
    assert lskd_main(argv) == 0
    return out, argv


def test_study_writes_a_consistent_report(toy_study):
    out, _ = toy_study
    doc = json.loads((out / "report.json").read_text())
    assert doc["temperatures"] == [1.0, 4.0] and doc["alphas"] == [0.0, 0.1]
    names = sorted(p.parent.name for p in (out / "runs").glob("*/summary.json"))
    assert names == sorted(
        [
            "teacher_alpha0",
            "teacher_alpha0.1",
            "student_T1_from_alpha0",
            "student_T4_from_alpha0",
            "student_T1_from_alpha0.1",
            "student_T4_from_alpha0.1",
        ]
    )
    # The table's cells are the runs' own summary.json numbers.
    s = json.loads((out / "runs" / "student_T4_from_alpha0.1" / "summary.json").read_text())
    row = next(r for r in doc["table_top1"] if r["row"] == "T=4")
    assert row["alpha=0.1"] == s["top1"]
    assert s["label"] == "student T=4 from LS teacher"
    best = doc["answer"]["best_student"]
    assert best["top1"] == max(r[c] for r in doc["table_top1"][1:] for c in ("alpha=0", "alpha=0.1"))
    # Diffusion numbers for every student, finite.
    for a in ("0", "0.1"):
        for t in ("1", "4"):
            assert np.isfinite(doc["diffusion_by_temperature"][a][t]["eta"])
    md = (out / "report.md").read_text()
    assert "## Answer of this run" in md and f"{s['top1']:.2f}" in md
    for png in ("accuracy_vs_temperature.png", "diffusion_vs_temperature.png", "diffusion/projection.png"):
        img = np.asarray(Image.open(out / png).convert("RGB"), dtype=float)
        assert img.shape[0] > 200 and img.std() > 5, png  # decodes, not blank
    assert (out / "diffusion" / "diffusion.json").is_file()


def test_study_resumes_without_retraining(toy_study, capsys):
    out, argv = toy_study
    before = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/checkpoint_last.pth")}
    assert lskd_main(argv) == 0
    after = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/checkpoint_last.pth")}
    assert before == after
    assert "done earlier" in capsys.readouterr().out


def test_study_bad_input(tmp_path, capsys):
    with pytest.raises(LskdError, match="--temps"):
        study.parse_floats("1,x", "temps")
    (tmp_path / "flat").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "flat" / "a.png")
    assert lskd_main(["study", "--out", str(tmp_path / "o"), "--data", str(tmp_path / "flat")]) == 2
    assert "needs train/ and val/" in capsys.readouterr().err
    assert lskd_main(["study", "--out", str(tmp_path / "o"), "--temps", "0,1"]) == 2
    assert not Path(tmp_path / "o" / "runs").exists()
