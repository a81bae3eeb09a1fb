"""The CUB chain (issue 19 item 1): ``image.teacher_init`` naming a study folder. Each teacher starts
from that study's finished teacher of the same smoothing and seed index; the checkpoint's content
enters its key (and so its students' keys); a missing or unfinished teacher is one line."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from lskd_plugins.errors import LskdError
from lskd_plugins.study import chain, layout
from lskd_plugins.study import config as C
from lskd_plugins.study.grid import build_runs


def finished_teacher(study: Path, smoothing: float, seed: int, content: bytes, finished: bool = True) -> Path:
    """A teacher run folder as the engine leaves it (run.json, train/checkpoint_last.pth, result.json)."""
    key = hashlib.sha256(f"{smoothing}-{seed}".encode()).hexdigest()[:16]
    name = layout.run_name("image", "teacher", seed, None, smoothing)
    folder = study / layout.run_folder(name, key)
    (folder / layout.TRAIN_DIR).mkdir(parents=True)
    run = {"name": name, "role": "teacher", "teacher_smoothing": smoothing, "seed": seed, "key": key}
    (folder / layout.RUN_JSON).write_text(json.dumps(run))
    ckpt = folder / layout.TRAIN_DIR / "checkpoint_last.pth"
    ckpt.write_bytes(content)
    if finished:
        (folder / layout.RESULT_JSON).write_text(json.dumps({"key": key, "metrics": {}}))
    return ckpt


def cub_config(imagenet: Path, seeds: int = 2) -> dict:
    doc = {
        "output": "unused",
        "seeds": seeds,
        "temperatures": [1, 2],
        "image": {
            "data": "digits",
            "teacher_model": "resnet10t",
            "teacher_init": str(imagenet),
            "diffusion": False,
        },
    }
    doc["image"]["diffusion"] = False
    return C.load_config(doc, where="test")


def teachers(cfg, dry: bool = False) -> dict:
    hashes = {"image": chain.NOT_HASHED if dry else "data-hash"}
    return {r.name: r for r in build_runs(cfg, hashes) if r.role in ("teacher", "student")}


@pytest.fixture
def imagenet(tmp_path) -> Path:
    study = tmp_path / "paper_imagenet"
    for a in (0.0, 0.1):
        for s in (0, 1):
            finished_teacher(study, a, s, f"weights {a} {s}".encode())
    return study


def test_each_teacher_starts_from_the_same_smoothing_and_seed_index(imagenet):
    runs = teachers(cub_config(imagenet))
    for a in (0.0, 0.1):
        for s in (0, 1):
            run = runs[layout.run_name("image", "teacher", s, None, a)]
            want = hashlib.sha256(f"weights {a} {s}".encode()).hexdigest()
            assert run.spec["init_sha256"] == want
            assert (
                chain.teacher_start(cub_config(imagenet)["image"], a, s).read_bytes()
                == f"weights {a} {s}".encode()
            )


def test_keys_change_when_an_imagenet_teacher_changes(imagenet):
    before = {n: r.key for n, r in teachers(cub_config(imagenet)).items()}
    ckpt = chain.teacher_start(cub_config(imagenet)["image"], 0.1, 1)
    ckpt.write_bytes(b"retrained")
    after = {n: r.key for n, r in teachers(cub_config(imagenet)).items()}
    changed = sorted(n for n in before if before[n] != after[n])
    teacher = layout.run_name("image", "teacher", 1, None, 0.1)
    assert teacher in changed and layout.run_name("image", "teacher", 0, None, 0.1) not in changed
    # its students change with it (their key holds the teacher's), the others do not
    assert all(after[n] == before[n] for n in before if n not in changed)
    assert len(changed) == 1 + 2  # the teacher and its students at T = 1, 2
    # the same files under another folder give the same keys: the content is keyed, not the path
    moved = imagenet.parent / "elsewhere"
    imagenet.rename(moved)
    assert {n: r.key for n, r in teachers(cub_config(moved)).items()} == after


def test_a_missing_or_unfinished_teacher_is_one_line(tmp_path, imagenet, capsys):
    with pytest.raises(LskdError) as err:
        teachers(cub_config(tmp_path / "nothing"))
    assert err.value.message == (
        f"image.teacher_init: {tmp_path / 'nothing'} is not a study folder (no runs/); run that study "
        "first (e.g. lskd study recipes/study/paper_imagenet.yaml) or name its output folder"
    )
    half = tmp_path / "half"
    finished_teacher(half, 0.0, 0, b"w")
    finished_teacher(half, 0.1, 0, b"w", finished=False)
    with pytest.raises(
        LskdError, match=r"has no finished teacher of label smoothing 0.1 \(unfinished or missing\)"
    ):
        teachers(cub_config(half))
    with pytest.raises(LskdError, match="for seeds 0, 1 only; teacher seed index 2 needs one more"):
        teachers(cub_config(imagenet, seeds=3))
    runs = teachers(cub_config(half), dry=True)  # a dry run notes it and goes on
    assert "not checked" in capsys.readouterr().out
    assert runs[layout.run_name("image", "teacher", 0, None, 0.1)].spec["init_sha256"] == chain.NOT_HASHED


def test_one_imagenet_teacher_per_smoothing_serves_every_seed(tmp_path):
    fixed = tmp_path / "fixed"
    for a in (0.0, 0.1):
        finished_teacher(fixed, a, 0, f"only {a}".encode())
    runs = teachers(cub_config(fixed, seeds=3))
    hashes = {
        r.spec["init_sha256"] for r in runs.values() if r.role == "teacher" and r.teacher_smoothing == 0.1
    }
    assert hashes == {hashlib.sha256(b"only 0.1").hexdigest()}


def test_dry_run_with_missing_teacher_checkpoints_prints_the_plan(tmp_path, capsys):
    """A teacher_init checkpoint (mapping form) or study folder that does not exist yet: the dry run
    notes it and prints the plan (exit 0); the real run stops in one line before writing anything."""
    import yaml

    from lskd_plugins.cli import main as lskd_main

    missing = {0.0: str(tmp_path / "t0.pth"), 0.1: str(tmp_path / "t1.pth")}
    doc = yaml.safe_load(MAPPING_CONFIG)
    doc["image"]["teacher_init"] = missing
    config = tmp_path / "study.yaml"
    config.write_text(yaml.safe_dump(doc))
    out = tmp_path / "out"
    assert lskd_main(["study", str(config), "--output", str(out), "--dry-run"]) == 0
    said = capsys.readouterr().out
    for a, path in missing.items():
        assert f"note: image.teacher_init {a}: {path} not found" in said
        assert f"--pretrained-checkpoint {path}" in said  # the command it will run, as configured
    assert not out.exists()
    assert lskd_main(["study", str(config), "--output", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"lskd: error: image.teacher_init 0.0: {missing[0.0]} not found (give the teacher's checkpoint file)"
    ]
    assert not out.exists()
    # the study-folder form: a folder the ImageNet study has not written yet
    doc["image"]["teacher_init"] = str(tmp_path / "paper_imagenet")
    config.write_text(yaml.safe_dump(doc))
    assert lskd_main(["study", str(config), "--output", str(out), "--dry-run"]) == 0
    said = capsys.readouterr().out
    assert "is not a study folder (no runs/)" in said and "; not checked" in said
    assert f"--pretrained-checkpoint '{tmp_path / 'paper_imagenet'}/<teacher eps0, seed index 0>/" in said


MAPPING_CONFIG = """
seeds: 1
temperatures: [1, 2]
device: cpu
image:
  data: digits
  teacher_model: test_resnet
  common: {img-size: 16, aug: none, batch-size: 64}
  teacher: {epochs: 1}
  student: {epochs: 1}
  diffusion: false
translation: null
"""
