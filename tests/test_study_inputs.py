"""`lskd study` checks its inputs before any training (issue 20): --overwrite never deletes an
input (class 1), values it would misreport are refused (class 3), model names, class folders and
data-bin splits are checked up front and in --dry-run (class 4). One line, exit 2, nothing changed.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from cli_helpers import assert_fails_one_line
from test_image_defects import tiny_folder

from lskd_plugins.cli import main as lskd_main

QUICK = ["--model", "test_resnet", "--seeds", "1", "--temps", "1", "--no-progress"]


@pytest.fixture
def no_training(monkeypatch):
    """Any attempt to train fails the test (every case here must stop before)."""

    def refuse(*args, **kwargs):
        raise AssertionError("the study started training")

    monkeypatch.setattr("lskd_plugins.study.execute.schedule", refuse)


def study(*argv: str) -> list:
    return ["study", *QUICK, *argv]


def write_yaml(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# ------------------------------------------------------------------ class 1: --overwrite and inputs
@pytest.mark.parametrize("kind", ["same", "above", "inside", "link"])
def test_overwrite_never_deletes_the_image_data(kind, tmp_path, capsys, no_training):
    data = tiny_folder(tmp_path / "X" / "data")
    out = {"same": data, "above": tmp_path / "X", "inside": data / "train" / "a"}.get(kind)
    if kind == "link":
        out = tmp_path / "link"
        out.symlink_to(data, target_is_directory=True)
    argv = study("--data", str(data), "--output", str(out), "--overwrite")
    assert_fails_one_line(
        argv, capsys, unchanged=[tmp_path / "X"], must_contain=["would write over the input"]
    )
    assert_fails_one_line([*argv, "--dry-run"], capsys, must_contain=["would write over the input"])


def test_overwrite_never_deletes_teacher_init_checkpoints_or_prepare_inputs(tmp_path, capsys, no_training):
    old = tmp_path / "imagenet_study"
    (old / "runs").mkdir(parents=True)
    (old / "runs" / "t.pth").write_bytes(b"teacher")
    argv = study("--output", str(old), "--overwrite", "--alphas", "0")
    assert_fails_one_line(
        [*argv, "--set", f"image.teacher_init={{0: {old / 'runs' / 't.pth'}}}"],
        capsys,
        unchanged=[old],
        must_contain=["would write over the input", "t.pth"],
    )
    raw = tmp_path / "out" / "raw.zip"
    raw.parent.mkdir()
    raw.write_bytes(b"archive")
    prepare = f"{{inputs: [{raw}], command: [python, prep.py, --source, {raw}, --output, '{{data}}']}}"
    argv = study("--output", str(raw.parent), "--overwrite", "--set", "image.data='{output}/data/x'")
    assert_fails_one_line(
        [*argv, "--set", f"image.prepare={prepare}"],
        capsys,
        unchanged=[raw],
        must_contain=["would write over the input", "raw.zip"],
    )


def test_overwrite_may_replace_what_the_study_recreates(tmp_path, capsys):
    out = tmp_path / "out"
    (out / "data" / "digits").mkdir(parents=True)
    (out / "notes.txt").write_text("old\n")
    assert lskd_main(study("--output", str(out), "--overwrite", "--dry-run")) == 0
    assert (out / "notes.txt").read_text() == "old\n"  # a dry run writes nothing


# ------------------------------------------------------------------ class 3: values the study misreports
@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--set", "teacher_smoothing=[0.0, 0.1, 0.1]"], "teacher_smoothing gives 0.1 twice"),
        (["--alphas", "0,0"], "--teacher-smoothing '0,0' gives 0.0 twice"),
        (["--alphas", "0.1,0.2"], "0 is the teacher every comparison is made against"),
        (["--set", "seeds=true"], "seeds must be an integer >= 1, got True"),
        (["--set", "first_seed=false"], "first_seed must be an integer >= 0, got False"),
        (["--set", "jobs=true"], "jobs must be an integer >= 1, got True"),
        (["--set", "threads_per_job=true"], "threads_per_job must be an integer >= 0, got True"),
        (["--temps", "1,,2"], "--temps '1,,2' has an empty item"),
        (["--set", "temperatures=[1, null]"], "temperatures: item 2 of [1, None] is empty"),
        # found beyond the examples
        (["--set", "temperatures=[1, true]"], "temperatures must be a list of numbers > 0"),
        (["--set", "image.diffusion.per_class=true"], "image.diffusion.per_class must be an integer >= 1"),
        (["--set", "image.diffusion.per_clas=5"], "image.diffusion: unknown key 'per_clas'"),
        (["--set", "image.teacher_init={'0': a.pth, '0.0': b.pth}"], "names the teacher smoothing 0 twice"),
        (["--set", "image.teacher_init={0: a.pth, 0.0: b.pth}"], "key 0.0 is given twice in one mapping"),
    ],
)
def test_values_the_report_would_misreport_are_refused(argv, needle, tmp_path, capsys, no_training):
    out = tmp_path / "out"
    assert_fails_one_line(study("--output", str(out), *argv), capsys, must_contain=[needle])
    assert not out.exists()


def test_translation_values_beyond_the_examples(tmp_path, capsys, no_training):
    cfg = write_yaml(tmp_path / "t.yaml", "translation:\n  kinds: [word, word]\n")
    assert_fails_one_line(["study", str(cfg)], capsys, must_contain=["translation.kinds gives 'word' twice"])
    cfg = write_yaml(tmp_path / "t.yaml", "translation:\n  beam: true\n")
    assert_fails_one_line(["study", str(cfg)], capsys, must_contain=["translation.beam must be an integer"])


def test_a_key_given_twice_names_both_lines(tmp_path, capsys, no_training):
    cfg = write_yaml(tmp_path / "c.yaml", "seeds: 2\nimage:\n  data: digits\n  common: {lr: 0.1, lr: 0.2}\n")
    assert_fails_one_line(
        ["study", str(cfg)],
        capsys,
        must_contain=["c.yaml: key 'lr' is given twice in one mapping (lines 4 and 4)"],
    )
    cfg = write_yaml(tmp_path / "c.yaml", "seeds: 2\nimage: {}\nseeds: 3\n")
    assert_fails_one_line(["study", str(cfg)], capsys, must_contain=["key 'seeds'", "lines 1 and 3"])


# ------------------------------------------------------------------ class 4: checks that came too late
def test_unknown_model_names_stop_before_training_and_in_dry_run(tmp_path, capsys, no_training):
    for flag in ("--model", "--student-model"):
        argv = ["study", "--output", str(tmp_path / "o"), *QUICK, flag, "resnet181"]
        for extra in ([], ["--dry-run"]):
            assert_fails_one_line(
                [*argv, *extra], capsys, must_contain=["'resnet181' is not a timm model", "'resnet18'"]
            )
    assert not (tmp_path / "o").exists()


def test_class_folders_that_differ_between_train_and_val(tmp_path, capsys, no_training):
    data = tiny_folder(tmp_path / "data")
    shutil.move(data / "val" / "b", data / "val" / "c")
    for extra in ([], ["--dry-run"]):
        assert_fails_one_line(
            study("--data", str(data), "--output", str(tmp_path / "o"), *extra),
            capsys,
            unchanged=[data],
            must_contain=["only in train/: b; only in val/: c"],
        )
    assert not (tmp_path / "o").exists()


def test_a_data_bin_without_a_split_the_study_needs(tiny_mt_data, tmp_path, capsys, no_training):
    data = Path(shutil.copytree(tiny_mt_data.data_bin, tmp_path / "bin"))
    for f in data.glob("valid.*"):
        f.unlink()
    cfg = write_yaml(tmp_path / "t.yaml", yaml.safe_dump({"translation": {"data": str(data)}}))
    for extra in ([], ["--dry-run"]):
        assert_fails_one_line(
            ["study", str(cfg), "--output", str(tmp_path / "o"), *extra],
            capsys,
            must_contain=["lacks the valid split the study needs"],
        )
    assert not (tmp_path / "o").exists()


def test_dry_run_notes_data_not_yet_prepared(tmp_path, capsys):
    out = tmp_path / "o"
    prepare = "{inputs: [/nowhere/raw.zip], command: [python, prep.py, --output, '{data}']}"
    argv = ["study", "--output", str(out), *QUICK, "--set", "image.data='{output}/data/x'"]
    assert lskd_main([*argv, "--set", f"image.prepare={prepare}", "--dry-run"]) == 0
    captured = capsys.readouterr()
    assert "not checked" in captured.out + captured.err
    assert not out.exists()


def test_a_missing_teacher_init_checkpoint_stops_before_training(tmp_path, capsys, no_training):
    argv = study("--output", str(tmp_path / "o"), "--set", "image.teacher_init={0: /nowhere/t.pth}")
    assert_fails_one_line(argv, capsys, must_contain=["image.teacher_init 0: /nowhere/t.pth not found"])
    assert not (tmp_path / "o").exists()


def test_data_a_prepare_step_makes_are_checked_before_training(tmp_path, capsys, no_training):
    script = "import sys, pathlib; [pathlib.Path(sys.argv[1], p).mkdir(parents=True) for p in "
    script += "('train/a', 'train/b', 'val/a')]"
    prepare = yaml.safe_dump({"inputs": [], "command": ["python", "-c", script, "{data}"]}, width=1000)
    argv = study("--output", str(tmp_path / "o"), "--set", "image.data='{output}/data/made'")
    assert_fails_one_line(
        [*argv, "--set", f"image.prepare={prepare.strip()}"], capsys, must_contain=["only in train/: b"]
    )
