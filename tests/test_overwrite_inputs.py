"""`--overwrite` never deletes an input (issue 20, class 1): every command that has the flag refuses,
in one line and with exit 2 before touching a file, an output that is an input, holds one, or lies
inside one -- symlinks resolved. One shared check: ``lskd_plugins.files.refuse_overlap``.

Each command is tried with the classes SAME (output = the input), ABOVE (the input lies inside the
output), INSIDE (the output lies inside the input) and LINK (the output is a symlink to the input),
always with ``--overwrite``; the inputs' checksums must not change.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
from cli_helpers import assert_fails_one_line
from test_image_defects import FAST, tiny_folder

from lskd_plugins import files

CLASSES = ("same", "above", "inside", "link")


def target(kind: str, inp: Path, root: Path) -> Path:
    """The output of class ``kind`` for input folder ``inp`` (which lies in ``root``)."""
    if kind == "same":
        return inp
    if kind == "above":
        return root
    if kind == "inside":
        return next((p for p in sorted(inp.rglob("*")) if p.is_dir()), inp) / "out"
    link = root.parent / f"{root.name}-link"
    link.symlink_to(inp, target_is_directory=True)
    return link


def refused(argv, capsys, unchanged, what="would write over"):
    return assert_fails_one_line(argv, capsys, unchanged=unchanged, must_contain=["--output", what])


# ------------------------------------------------------------------------------ the shared check
def test_refuse_overlap_classes_and_own_paths(tmp_path):
    from lskd_plugins.errors import LskdError

    data = tmp_path / "X" / "data"
    (data / "train").mkdir(parents=True)
    whys = ("the same path", "the input lies inside", "lies inside the input", "same")
    for kind, why in zip(CLASSES, whys):
        with pytest.raises(LskdError, match=why):
            files.refuse_overlap(target(kind, data, tmp_path / "X"), [data])
    own = tmp_path / "X" / "data"  # what the command recreates itself inside its output may go
    files.refuse_overlap(tmp_path / "X", [data / "train"], own=[own])
    with pytest.raises(LskdError, match="lies inside"):  # an input beside its own data may not
        files.refuse_overlap(tmp_path / "X", [data / "train", tmp_path / "X" / "raw"], own=[own])
    # lskd's own code and environment are inputs of every command (checked without deleting anything)
    assert Path(files.__file__).resolve().parent in files.installation()
    assert Path(sys.prefix).resolve() in files.installation()
    for out in (Path(files.__file__).parent, Path(files.__file__).parent.parent):
        with pytest.raises(LskdError, match="lskd's own installation"):
            files.refuse_overlap(out, [])


# ------------------------------------------------------------------------------ image commands
@pytest.mark.parametrize("kind", CLASSES)
def test_image_train(kind, tmp_path, capsys):
    data = tiny_folder(tmp_path / "X" / "data")
    out = target(kind, data, tmp_path / "X")
    argv = ["image-train", "--data", str(data), "--output", str(out), *FAST, "--overwrite"]
    refused(argv, capsys, [tmp_path / "X"])


def test_image_train_teacher_checkpoint_folder(tmp_path, capsys):
    data = tiny_folder(tmp_path / "data")
    teacher = tmp_path / "teacher"
    teacher.mkdir()
    (teacher / "checkpoint_best.pth").write_bytes(b"weights")
    argv = ["image-train", "--data", str(data), "--output", str(teacher), *FAST, "--overwrite"]
    argv += ["--teacher-checkpoint", str(teacher / "checkpoint_best.pth")]
    refused(argv, capsys, [teacher, data])


@pytest.mark.parametrize("kind", ("same", "inside", "link"))
def test_image_eval_output_file(kind, tmp_path, capsys):
    data = tiny_folder(tmp_path / "data")
    ckpt = tmp_path / "ckpt" / "model.pth"
    ckpt.parent.mkdir()
    ckpt.write_bytes(b"weights")
    out = {"same": ckpt, "inside": data / "val" / "a" / "r.json", "link": tmp_path / "r.json"}[kind]
    if kind == "link":
        out.symlink_to(ckpt)
    argv = ["image-eval", "--checkpoint", str(ckpt), "--data", str(data), "--output-file", str(out)]
    assert_fails_one_line(
        [*argv, "--overwrite"],
        capsys,
        unchanged=[data, ckpt],
        must_contain=["--output-file", "would write over the input"],
    )


@pytest.mark.parametrize("kind", CLASSES)
def test_diffusion_image(kind, tmp_path, capsys):
    data = tiny_folder(tmp_path / "X" / "data")
    ckpt = tmp_path / "X" / "data" / "val" / "t.pth"
    ckpt.write_bytes(b"weights")
    out = target(kind, data, tmp_path / "X")
    argv = ["diffusion", "image", "--checkpoints", str(ckpt), "--data", str(data), "--output", str(out)]
    refused([*argv, "--classes", "a,b,a", "--device", "cpu", "--overwrite"], capsys, [tmp_path / "X"])


@pytest.mark.parametrize("kind", ("same", "above", "inside"))
def test_digits_never_replaces_scikit_learns_data(kind, tmp_path, capsys, monkeypatch):
    from lskd_plugins.image import digits

    source = tmp_path / "X" / "sklearn_data"  # stands in for sklearn/datasets/data (never the real one)
    (source / "sub").mkdir(parents=True)
    (source / "digits.csv.gz").write_bytes(b"pixels")
    monkeypatch.setattr(digits, "digits_source", lambda: source)
    out = target(kind, source, tmp_path / "X")
    refused(["digits", "--output", str(out), "--overwrite"], capsys, [source])


def test_digits_source_is_scikit_learns_data_folder():
    from lskd_plugins.image.digits import digits_source

    assert (digits_source() / "digits.csv.gz").is_file()


@pytest.mark.parametrize("kind", ("same", "above"))
def test_synth_mt_never_empties_the_installation(kind, tmp_path, capsys, monkeypatch):
    fake = tmp_path / "X" / "site-packages"  # stands in for the real installation
    fake.mkdir(parents=True)
    (fake / "lskd.py").write_text("code\n")
    monkeypatch.setattr(files, "installation", lambda: [fake])
    out = fake if kind == "same" else tmp_path / "X"
    argv = ["synth-mt", "--output", str(out), "--size", "20", "--valid", "5", "--test", "5", "--overwrite"]
    refused(argv, capsys, [fake], "lskd's own installation")


# ------------------------------------------------------------------------------ translation commands
def _copy_bin(tiny_mt_data, root: Path) -> Path:
    return Path(shutil.copytree(tiny_mt_data.data_bin, root / "data-bin"))


@pytest.mark.parametrize("kind", CLASSES)
def test_seqkd(kind, tiny_mt_data, tiny_teacher, tmp_path, capsys):
    data = _copy_bin(tiny_mt_data, tmp_path / "X")
    out = target(kind, data, tmp_path / "X")
    argv = ["seqkd", "--data", str(data), "--path", str(tiny_teacher), "--output", str(out)]
    refused([*argv, "--device", "cpu", "--overwrite"], capsys, [tmp_path / "X"])


@pytest.mark.parametrize("kind", CLASSES)
def test_cache_teacher(kind, tiny_mt_data, tiny_teacher, tmp_path, capsys):
    data = _copy_bin(tiny_mt_data, tmp_path / "X")
    out = target(kind, data, tmp_path / "X")
    argv = ["cache-teacher", "--data", str(data), "--path", str(tiny_teacher), "--output", str(out)]
    refused([*argv, "--no-progress", "--overwrite"], capsys, [tmp_path / "X"])


def test_cache_teacher_folder_holding_the_teacher(tiny_mt_data, tiny_teacher, tmp_path, capsys):
    teacher = tmp_path / "teacher" / "checkpoint_best.pt"
    teacher.parent.mkdir()
    shutil.copy(tiny_teacher, teacher)
    argv = ["cache-teacher", "--data", str(tiny_mt_data.data_bin), "--path", str(teacher)]
    refused([*argv, "--output", str(teacher.parent), "--overwrite"], capsys, [teacher.parent])


@pytest.mark.parametrize("kind", CLASSES)
def test_bleu(kind, tiny_mt_data, tiny_teacher, tmp_path, capsys):
    data = _copy_bin(tiny_mt_data, tmp_path / "X")
    out = target(kind, data, tmp_path / "X")
    argv = ["bleu", "--data", str(data), "--path", str(tiny_teacher), "--output", str(out)]
    refused([*argv, "--device", "cpu", "--no-progress", "--overwrite"], capsys, [tmp_path / "X"])


def test_bleu_never_writes_over_its_checkpoint(tiny_mt_data, tiny_teacher, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    ckpt = shutil.copy(tiny_teacher, out / "test.hyp")  # a checkpoint named like an output file
    argv = ["bleu", "--data", str(tiny_mt_data.data_bin), "--path", str(ckpt), "--output", str(out)]
    refused([*argv, "--device", "cpu", "--no-progress", "--overwrite"], capsys, [out], "--path")


def _prepare(raw: Path, out: Path, *splits: str):
    argv = ["prepare-mt", "--layout", "plain", "--raw-dir", str(raw), "--output", str(out)]
    for split in splits or ("train=train", "valid=valid", "test=test"):
        argv += ["--split", split]
    return [*argv, "--vocab-size", "60", "--no-progress", "--overwrite"]


@pytest.mark.parametrize("kind", CLASSES)
def test_prepare_mt(kind, tiny_mt_data, tmp_path, capsys):
    root = tmp_path / "X"
    raw = Path(shutil.copytree(tiny_mt_data.text_dir, root / "text"))  # text/ is what prepare replaces
    out = target(kind, raw, root)
    what = "would write over" if kind == "above" else "lies inside --raw-dir"
    refused(_prepare(raw, out), capsys, [root], what)


def test_prepare_mt_split_files_outside_the_raw_dir(tiny_mt_data, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(tiny_mt_data.text_dir, out / "spm")  # raw files where prepare writes spm/
    raw = tmp_path / "raw"
    raw.mkdir()
    splits = [f"{s}=../out/spm/{s}" for s in ("train", "valid", "test")]
    refused(_prepare(raw, out, *splits), capsys, [out])
