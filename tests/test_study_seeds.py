"""Seed streams (issue 17): a student never starts from its teacher's seed, the students of one
index share theirs (the pairing), and in a real mini study a student's initial weights differ from
its teacher's and the image baseline is not a copy of the noLS teacher."""

from __future__ import annotations

import itertools
import json
import shlex
from pathlib import Path

import pytest
import torch
import yaml

from lskd_plugins.cli import main as lskd_main
from lskd_plugins.errors import LskdError
from lskd_plugins.study import grid, seeds
from lskd_plugins.study.config import load_config

SPACING = 2**20
COMBOS = [
    (first, n, fixed)
    for first, n, fixed in itertools.product((0, 1, 5, 100, 1000), (1, 2, 3, 7), (False, True))
    if first + n - 1 <= seeds.MAX_INDEX
] + [(seeds.MAX_INDEX - 2, 3, False), (seeds.MAX_INDEX, 1, True)]


def _runs(first: int, n: int, fixed: bool):
    doc = {
        "first_seed": first,
        "seeds": n,
        "fixed_teachers": fixed,
        "temperatures": [1, 4],
        "image": {},
        "translation": {"kinds": ["word", "seq", "seqword"]},
    }
    return grid.build_runs(load_config(doc), {"image": "x", "translation": "y"})


@pytest.mark.parametrize("first, n, fixed", COMBOS)
def test_no_student_seed_within_2_20_of_a_teacher_or_another_index(first, n, fixed):
    runs = _runs(first, n, fixed)
    students = [r for r in runs if r.role in ("student", "baseline")]
    teachers = [r for r in runs if r.role == "teacher"]
    assert students and teachers
    for s in students:
        # every counter a tool adds (updates, epochs: < 2^20) stays off every other run's seed
        assert all(abs(s.tool_seed - t.tool_seed) >= SPACING for t in teachers), s.name
        others = [o for o in students if o.seed != s.seed]
        assert all(abs(s.tool_seed - o.tool_seed) >= SPACING for o in others), s.name
        assert s.tool_seed == s.seed * SPACING and s.spec["seed"] == s.tool_seed
        assert s.spec["seed_index"] == s.seed
    for r in runs:  # what every tool accepts: int32 for training, numpy's < 2^32 for sampling
        limit = 2**31 if r.role in ("student", "baseline", "teacher", "seqkd") else 2**32
        assert 0 <= r.tool_seed and r.tool_seed + SPACING - 1 < limit, r.name


@pytest.mark.parametrize("first, n, fixed", COMBOS[::3])
def test_students_of_one_index_share_their_seed_and_teachers_theirs(first, n, fixed):
    runs = _runs(first, n, fixed)
    for index in range(first, first + n):
        of_index = [r for r in runs if r.seed == index]
        assert {r.tool_seed for r in of_index if r.role in ("student", "baseline")} == {seeds.student(index)}
        kinds = {r.kind for r in of_index if r.role == "student"}
        assert kinds == {"logit", "word", "seq", "seqword"}  # every KD student and the baseline share it
        teacher_index = first if fixed else index
        ts = {r.tool_seed for r in runs if r.role == "teacher" and r.seed == teacher_index}
        assert ts == {seeds.teacher(teacher_index)}  # LS and noLS teachers of an index share theirs
        diffusion = [r for r in of_index if r.role == "diffusion"]
        assert [r.tool_seed for r in diffusion] == [seeds.sampling(index)] * 2
    teacher_indices = {r.seed for r in runs if r.role == "teacher"}
    assert teacher_indices == ({first} if fixed else set(range(first, first + n)))
    choosers = [r for r in runs if r.role == "classes"]
    assert len(choosers) == 2 and all(r.tool_seed == seeds.seed("classes", first) for r in choosers)
    sampled = {r.tool_seed for r in runs if r.role == "diffusion"}
    assert not sampled & {r.tool_seed for r in choosers}  # classes chosen on another sample


def test_image_train_epoch_seeds_of_two_runs_never_meet():
    """image-train re-seeds each epoch from (seed, epoch, rank): no epoch seed of a student may be
    an epoch seed of a teacher or of another index's student (first 200 epochs, 2 ranks)."""
    from lskd_plugins.image.train import epoch_seed

    def stream(seed):
        return {epoch_seed(seed, e, r) for e in range(200) for r in range(2)}

    runs = [seeds.student(i) for i in range(4)] + [seeds.teacher(i) for i in range(4)]
    streams = [stream(s) for s in runs]
    for a, b in itertools.combinations(range(len(runs)), 2):
        assert not streams[a] & streams[b], (runs[a], runs[b])


def test_an_index_past_the_largest_is_one_line(tmp_path, capsys):
    from cli_helpers import assert_fails_one_line

    assert seeds.MAX_INDEX == 1023 and seeds.teacher(1023) + SPACING - 1 == 2**31 - 1
    with pytest.raises(LskdError, match="seed index 1024 is outside 0..1023"):
        seeds.student(1024)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"image": {}, "first_seed": 1022, "seeds": 3}))
    assert_fails_one_line(
        ["study", str(path), "--output", str(tmp_path / "o"), "--dry-run"],
        capsys,
        must_contain=["reach seed index 1024", "the largest index is 1023"],
    )


# --------------------------------------------------------------------------------- a mini study
@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    """Images on the digits: 1 seed index, T=4, a tiny model, 2 epochs, no diffusion."""
    root = tmp_path_factory.mktemp("seeds")
    cfg = root / "mini.yaml"
    image = {
        "data": "digits",
        "teacher_model": "test_resnet",
        "common": {"img-size": 16, "batch-size": 64, "lr": 0.05, "aug": "none", "limit-train": 256},
        "teacher": {"epochs": 2},
        "student": {"epochs": 2},
        "diffusion": False,
    }
    doc = {"seeds": 1, "temperatures": [4], "device": "cpu", "progress": False, "threads_per_job": 1}
    cfg.write_text(yaml.safe_dump({**doc, "image": image}))
    out = root / "out"
    assert lskd_main(["study", str(cfg), "--output", str(out)]) == 0
    runs = json.loads((out / "report.json").read_text())["modalities"]["image"]["runs"]
    return out, {r["name"]: r for r in runs}


def _initial_weights(command):
    """The student image-train builds for a run's own command, before any update."""
    from lskd_plugins.image import train
    from lskd_plugins.study.modalities.image import image_parser

    args = image_parser().parse_args(command[2:])  # lskd image-train ARGS
    model, _, _ = train.build_student(args, 10, fresh=True, log=lambda m: None)
    return model.state_dict()


def _trained(out: Path, run: dict):
    ckpt = torch.load(out / run["folder"] / "train" / "checkpoint_last.pth", map_location="cpu")
    return ckpt["state_dict"]


def test_a_student_does_not_start_from_its_teacher(mini):
    out, runs = mini
    teacher, student = runs["image/teacher_eps0_s0"], runs["image/logit_eps0_T4_s0"]
    own = json.loads((out / student["folder"] / "run.json").read_text())
    assert own["seed_index"] == 0 and own["seed"] == seeds.student(0)
    assert "--seed" in teacher["command"]
    t_seed = int(teacher["command"][teacher["command"].index("--seed") + 1])
    s_seed = int(student["command"][student["command"].index("--seed") + 1])
    assert (t_seed, s_seed) == (seeds.teacher(0), seeds.student(0))
    t0, s0 = _initial_weights(teacher["command"]), _initial_weights(student["command"])
    assert t0.keys() == s0.keys()  # the same architecture...
    floats = [k for k in t0 if t0[k].is_floating_point() and t0[k].numel() > 1 and t0[k].std() > 0]
    assert floats and all(not torch.equal(t0[k], s0[k]) for k in floats)  # ...other initial weights


def test_the_baseline_is_not_a_copy_of_the_noLS_teacher(mini):
    out, runs = mini
    teacher, baseline = runs["image/teacher_eps0_s0"], runs["image/baseline_s0"]
    assert shlex.join(teacher["command"]) != shlex.join(baseline["command"])
    tw, bw = _trained(out, teacher), _trained(out, baseline)
    assert tw.keys() == bw.keys()
    assert any(not torch.equal(tw[k], bw[k]) for k in tw if tw[k].is_floating_point())
    assert teacher["metrics"]["nll"] != baseline["metrics"]["nll"]
    # the student of index 0 and its baseline are paired: the same start
    student = runs["image/logit_eps0_T4_s0"]
    s0, b0 = _initial_weights(student["command"]), _initial_weights(baseline["command"])
    assert all(torch.equal(s0[k], b0[k]) for k in s0)
