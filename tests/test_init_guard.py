"""The guard of issue 17 item 3: a student that starts from its teacher's initial weights is named in
one warning line (fairseq-train --criterion lskd_kd, lskd image-train --teacher-checkpoint), not
another seed or another architecture, and the check changes nothing in the training."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch
from fairseq_fixtures import TINY_ARCH, TINY_TRAIN, USER_DIR, run_cli

from lskd_plugins import fingerprint as fp
from lskd_plugins.fingerprint import warning_line

TEACHER_SEED = TINY_TRAIN[TINY_TRAIN.index("--seed") + 1]  # the tiny teacher's --seed ("1")
STUDENT = ["--user-dir", USER_DIR, "--task", "lskd_translation", "--criterion", "lskd_kd"]
STUDENT += ["--kd-alpha", "0.9", "--kd-temperature", "2", "--label-smoothing", "0.1", "--max-update", "3"]


def warnings_in(stderr: str):
    return [line for line in stderr.splitlines() if "starts from the same initial weights" in line]


def weights(checkpoint: Path):
    return torch.load(checkpoint, map_location="cpu", weights_only=False)["model"]


# ----------------------------------------------------------------------------- the fingerprint
def test_fingerprint_is_names_shapes_and_float32_bytes():
    a = {"w": torch.arange(6.0).view(2, 3), "b": torch.zeros(3)}
    same = fp.fingerprint(a.items())
    assert same == fp.fingerprint(reversed(list(a.items())))  # name order, not module order
    assert same == fp.fingerprint({f"module.{k}": v for k, v in a.items()}.items())  # DDP's prefix
    assert same != fp.fingerprint({"w": a["w"].view(3, 2), "b": a["b"]}.items())  # shape
    assert same != fp.fingerprint({"v": a["w"], "b": a["b"]}.items())  # name
    bumped = {"w": a["w"].clone(), "b": a["b"]}
    bumped["w"][0, 0] = 1e-7
    assert same != fp.fingerprint(bumped.items())  # bytes
    half = {k: v.half() for k, v in a.items()}
    assert fp.fingerprint(half.items()) == fp.fingerprint(a.items(), through=torch.float16)


def test_isolated_rng_seeds_like_the_tools_and_gives_every_stream_back():
    import random

    import numpy as np

    torch.manual_seed(123)
    np.random.seed(5)
    random.seed(7)
    before = (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate())
    with fp.isolated_rng(42):
        inside = torch.rand(3)
    torch.manual_seed(42)
    assert torch.equal(inside, torch.rand(3))
    torch.set_rng_state(before[0])
    with fp.isolated_rng(42):
        torch.rand(100), np.random.rand(100), random.random()
    assert torch.equal(torch.get_rng_state(), before[0])
    assert (np.random.get_state()[1] == before[1]).all() and random.getstate() == before[2]


# ----------------------------------------------------------------------------- fairseq-train
@pytest.fixture(scope="module")
def fairseq_students(tmp_path_factory, tiny_mt_data, tiny_teacher, cli_env):
    """Students of 3 updates: the teacher's seed and architecture (check on / off), another seed,
    another architecture (a wider FFN)."""
    root = tmp_path_factory.mktemp("guard")
    runs = {}
    variants = {
        "same": ([], {}),
        "same_unchecked": ([], {fp.ENV: "0"}),
        "other_seed": (["--seed", "2"], {}),
        "other_arch": (["--encoder-ffn-embed-dim", "48"], {}),
    }
    for name, (extra, env_extra) in variants.items():
        save = root / name
        proc = run_cli(
            [
                "fairseq-train",
                tiny_mt_data.data_bin,
                *TINY_ARCH,
                *TINY_TRAIN,
                *STUDENT,
                *extra,
                "--teacher-path",
                tiny_teacher,
                "--save-dir",
                save,
            ],
            {**cli_env, **env_extra},
        )
        runs[name] = (proc.stderr, save / "checkpoint_last.pt")
    return runs


def test_fairseq_student_with_the_teachers_seed_is_warned_once(fairseq_students, tiny_teacher):
    stderr, _ = fairseq_students["same"]
    assert warnings_in(stderr) == [warning_line(str(tiny_teacher), int(TEACHER_SEED))]


@pytest.mark.parametrize("variant", ["other_seed", "other_arch", "same_unchecked"])
def test_fairseq_no_warning_for_another_seed_or_architecture(fairseq_students, variant):
    assert warnings_in(fairseq_students[variant][0]) == []


def test_fairseq_the_check_changes_nothing_in_the_training(fairseq_students):
    checked, unchecked = weights(fairseq_students["same"][1]), weights(fairseq_students["same_unchecked"][1])
    assert checked.keys() == unchecked.keys()
    assert all(torch.equal(checked[k], unchecked[k]) for k in checked)
    other = weights(fairseq_students["other_seed"][1])
    assert not all(torch.equal(checked[k], other[k]) for k in checked)  # the comparison can fail


def test_fairseq_teacher_that_cannot_be_rebuilt_falls_back_to_seed_names_and_shapes(
    tiny_mt_data, tiny_teacher, monkeypatch
):
    from fairseq.data import Dictionary

    from lskd_plugins.fairseq_io import register_plugins

    register_plugins()
    from lskd_plugins.nmt import teacher as nmt_teacher

    d = Dictionary.load(str(tiny_mt_data.data_bin / "dict.en.txt"))
    teacher = nmt_teacher.load_teacher(str(tiny_teacher), d, d, "en", "de")
    origin = teacher.lskd_origin
    assert origin.seed == int(TEACHER_SEED) and origin.path == str(tiny_teacher)
    with fp.isolated_rng(origin.seed, python_random=False):
        same_init = nmt_teacher.TranslationTask(nmt_teacher.TranslationConfig(), d, d).build_model(
            origin.model_cfg
        )
    assert nmt_teacher.starts_from_teacher(same_init, teacher, d, d, origin.seed)
    assert not nmt_teacher.starts_from_teacher(teacher, teacher, d, d, origin.seed)  # trained weights
    monkeypatch.setattr(nmt_teacher, "initial_fingerprint", lambda *a, **k: None)  # cannot rebuild
    assert nmt_teacher.starts_from_teacher(teacher, teacher, d, d, origin.seed)
    assert not nmt_teacher.starts_from_teacher(teacher, teacher, d, d, origin.seed + 1)


# ----------------------------------------------------------------------------- image-train
def image_train(argv):
    from lskd_plugins.image import train as train_module

    parser = argparse.ArgumentParser()
    train_module.add_arguments(parser)
    return train_module.main(parser.parse_args(argv))


TINY_IMAGE = ["--img-size", "16", "--aug", "none", "--batch-size", "64", "--lr", "0.05"]
TINY_IMAGE += ["--workers", "0", "--quiet", "--epochs", "1"]


@pytest.fixture(scope="module")
def digits_runs(tmp_path_factory):
    """A test_resnet teacher (seed 0, 1 epoch) and students of 1 epoch (stderr, checkpoint)."""
    import contextlib
    import io

    from lskd_plugins.image.digits import write_digits

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("digits_guard")
    write_digits(root / "data")
    base = ["--data", str(root / "data"), *TINY_IMAGE]
    image_train([*base, "--model", "test_resnet", "--output", str(root / "teacher"), "--seed", "0"])
    teacher = root / "teacher" / "checkpoint_last.pth"
    runs = {"teacher": teacher}
    variants = {
        "same": ["--model", "test_resnet", "--seed", "0"],
        "other_seed": ["--model", "test_resnet", "--seed", "1"],
        "other_arch": ["--model", "test_efficientnet", "--seed", "0"],
    }
    for name, extra in variants.items():
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            image_train([*base, *extra, "--teacher-checkpoint", str(teacher), "--output", str(root / name)])
        runs[name] = (err.getvalue(), root / name / "checkpoint_last.pth")
    return runs


def test_image_student_with_the_teachers_seed_is_warned_once(digits_runs):
    assert warnings_in(digits_runs["same"][0]) == [warning_line(str(digits_runs["teacher"]), 0)]


@pytest.mark.parametrize("variant", ["other_seed", "other_arch"])
def test_image_no_warning_for_another_seed_or_architecture(digits_runs, variant):
    assert warnings_in(digits_runs[variant][0]) == []


def test_image_checkpoints_store_the_initial_fingerprint_of_their_run(digits_runs):
    """The student's stored fingerprint is its teacher's (same seed, same model), not another seed's."""
    read = lambda p: torch.load(p, map_location="cpu", weights_only=False)["init_fingerprint"]  # noqa: E731
    teacher = read(digits_runs["teacher"])
    assert len(teacher) == 64 and read(digits_runs["same"][1]) == teacher
    assert read(digits_runs["other_seed"][1]) != teacher


def test_image_teacher_without_a_stored_fingerprint_is_rebuilt(digits_runs, tmp_path, capsys, monkeypatch):
    """An lskd teacher written before init_fingerprint existed: rebuilt under its saved seed; the
    student trains bit-identically with the check and with LSKD_INIT_CHECK=0."""
    old = torch.load(digits_runs["teacher"], map_location="cpu", weights_only=False)
    del old["init_fingerprint"]
    old_path = tmp_path / "old_teacher.pth"
    torch.save(old, old_path)
    data = Path(digits_runs["teacher"]).parents[1] / "data"
    base = ["--data", str(data), *TINY_IMAGE, "--model", "test_resnet", "--seed", "0"]
    base += ["--teacher-checkpoint", str(old_path)]
    image_train([*base, "--output", str(tmp_path / "checked")])
    assert warnings_in(capsys.readouterr().err) == [warning_line(str(old_path), 0)]
    monkeypatch.setenv(fp.ENV, "0")
    image_train([*base, "--output", str(tmp_path / "unchecked")])
    assert warnings_in(capsys.readouterr().err) == []
    read = lambda p: torch.load(p / "checkpoint_last.pth", weights_only=False)["state_dict"]  # noqa: E731
    checked, unchecked = read(tmp_path / "checked"), read(tmp_path / "unchecked")
    assert all(torch.equal(checked[k], unchecked[k]) for k in checked)
