"""One test per defect class of issue 11, on the smallest input that shows it, for the image commands."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests import test_image_train as shared
from tests.cli_helpers import assert_cmd_fails_one_line, assert_fails_one_line, snapshot

few_threads = shared.few_threads  # the shared fixture

REPO = Path(__file__).resolve().parents[1]
FAST = ["--model", "test_resnet", "--img-size", "16", "--aug", "none", "--batch-size", "8", "--workers", "0"]
FAST += ["--epochs", "1", "--lr", "0.05", "--device", "cpu", "--no-progress"]


def tiny_folder(root: Path, per_class: int = 6) -> Path:
    """Two classes of random 8x8 PNGs in train/ and val/."""
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for cls in ("a", "b"):
            (root / split / cls).mkdir(parents=True)
            for i in range(per_class):
                pixels = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / cls / f"{i}.png")
    return root


@pytest.fixture
def data(tmp_path):
    return tiny_folder(tmp_path / "data")


def train(data: Path, out: Path, *extra: str):
    from lskd_plugins.cli import main

    return main(["image-train", "--data", str(data), "--output", str(out), *FAST, *extra])


# 1. outputs that destroy inputs or earlier work
def test_output_holding_other_results_is_refused(data, tmp_path, capsys):
    out = tmp_path / "run"
    assert train(data, out, "--smoothing", "0.1") == 0
    assert_fails_one_line(
        ["image-train", "--data", str(data), "--output", str(out), *FAST, "--lr", "0.01"],
        capsys,
        unchanged=[out],
        must_contain=["holds results made with other settings (lr, smoothing)", "--overwrite"],
    )
    assert_fails_one_line(
        ["image-train", "--data", str(data), "--output", str(data / "train"), *FAST],
        capsys,
        unchanged=[data],
        must_contain=["would write over the input"],
    )
    assert train(data, out, "--smoothing", "0.1", "--resume") == 0  # the same run still resumes
    assert train(data, out, "--lr", "0.01", "--overwrite") == 0  # replacing it is explicit
    assert json.loads((out / "summary.json").read_text())["args"]["lr"] == 0.01


def test_eval_output_file_never_replaces_results_it_did_not_make(data, tmp_path, capsys):
    assert train(data, tmp_path / "t") == 0
    ckpt = str(tmp_path / "t" / "checkpoint_last.pth")
    base = ["image-eval", "--checkpoint", ckpt, "--data", str(data), "--workers", "0", "--no-progress"]
    assert_fails_one_line(  # the training run's own summary.json
        [*base, "--output-file", str(tmp_path / "t" / "summary.json")],
        capsys,
        unchanged=[tmp_path / "t"],
        must_contain=["--output-file", "not an earlier result", "--overwrite"],
    )
    from lskd_plugins.cli import main

    out = tmp_path / "eval.json"
    assert main([*base, "--output-file", str(out)]) == 0
    assert main([*base, "--output-file", str(out)]) == 0  # its own earlier result: replaced
    assert json.loads(out.read_text())["owner"]["checkpoint"] == ckpt
    assert_fails_one_line(  # the same file for another split
        [*base, "--split", "train", "--output-file", str(out)], capsys, unchanged=[out]
    )
    assert main([*base, "--split", "train", "--output-file", str(out), "--overwrite"]) == 0
    assert json.loads(out.read_text())["split"] == "train"


# 2. silently wrong results: numbers that cannot be meant
@pytest.mark.parametrize(
    "option,value",
    [
        ("--limit-train", "-5"),
        ("--lr", "nan"),
        ("--epochs", "0"),
        ("--kd-temperature", "inf"),
        ("--smoothing", "1"),
    ],
)
def test_impossible_numbers_are_refused_before_any_work(data, tmp_path, capsys, option, value):
    out = tmp_path / "o"
    assert_fails_one_line(
        ["image-train", "--data", str(data), "--output", str(out), *FAST, option, value],
        capsys,
        must_contain=[option],
    )
    assert not out.exists()


# 3. tracebacks for the user's mistakes
def test_corrupt_image_is_skipped_and_counted_or_refused(data, tmp_path, capsys):
    (data / "train" / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    assert train(data, tmp_path / "skip", "--batch-size", "16") == 0  # one batch: every image is read
    summary = json.loads((tmp_path / "skip" / "summary.json").read_text())
    assert summary["bad_images"] == {"train": 1, "val": 0} and summary["n_train"] == 13
    captured = capsys.readouterr()
    assert "skipped 1 unreadable image(s) in train" in captured.err and "unreadable" not in captured.out
    assert_fails_one_line(
        [
            "image-train",
            "--data",
            str(data),
            "--output",
            str(tmp_path / "err"),
            *FAST,
            "--bad-images",
            "error",
            "--batch-size",
            "16",
        ],
        capsys,
        must_contain=["cannot read image", "broken.png"],
    )


def test_truncated_checkpoint_and_file_for_folder(data, tmp_path, capsys):
    assert train(data, tmp_path / "t") == 0
    whole = (tmp_path / "t" / "checkpoint_last.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(whole[: len(whole) // 2])
    for argv, text in (
        (
            ["--teacher-checkpoint", str(tmp_path / "cut.pth")],
            "is not a readable PyTorch file (truncated or corrupt?",
        ),
        (
            ["--pretrained-checkpoint", str(tmp_path / "cut.pth")],
            "is not a readable PyTorch file (truncated or corrupt?",
        ),
    ):
        assert_fails_one_line(
            ["image-train", "--data", str(data), "--output", str(tmp_path / "s"), *FAST, *argv],
            capsys,
            must_contain=[text],
        )
    (tmp_path / "afile").write_text("x")
    assert_fails_one_line(
        ["image-train", "--data", str(data), "--output", str(tmp_path / "afile"), *FAST],
        capsys,
        unchanged=[tmp_path / "afile"],
        must_contain=["--output", "is a file"],
    )


# 4. work lost at the end: outputs are checked before the work
def test_unwritable_eval_output_fails_before_evaluating(data, tmp_path, capsys):
    assert train(data, tmp_path / "t") == 0
    (tmp_path / "blocker").write_text("a file where a folder must be")
    capsys.readouterr()
    assert_fails_one_line(
        ["image-eval", "--checkpoint", str(tmp_path / "t" / "checkpoint_last.pth"), "--data", str(data)]
        + ["--workers", "0", "--output-file", str(tmp_path / "blocker" / "eval.json")],
        capsys,
        must_contain=["--output-file"],
    )


# 5. half-done preparation that blocks the retry
def test_killed_preparation_leaves_nothing_that_blocks_the_retry(tmp_path, cli_env):
    from lskd_plugins.image.digits import write_digits

    stale = tmp_path / ".d.partial-999999999"  # a killed run's folder (no such process)
    (stale / "train" / "0").mkdir(parents=True)
    assert write_digits(tmp_path / "d") == {"train": 1437, "val": 360}
    assert not stale.exists() and (tmp_path / "d" / ".lskd-digits.json").is_file()
    (tmp_path / "bad.zip").write_bytes(b"PK\x03\x04 not a zip")
    assert_cmd_fails_one_line(
        [sys.executable, str(REPO / "data_prep" / "prepare_cifar.py"), "--source", str(tmp_path / "bad.zip")]
        + ["--output", str(tmp_path / "c")],
        cli_env,
        code=1,  # starts as a zip, then is not one: a damaged archive (a failure, not a usage error)
        must_contain=["bad.zip is damaged"],
    )
    assert not (tmp_path / "c").exists() and not list(tmp_path.glob(".c.partial-*"))


# 6. unclear messages
def test_fairseq_checkpoint_as_image_teacher_says_what_it_is(data, tmp_path, capsys):
    fake = tmp_path / "checkpoint_best.pt"
    torch.save({"model": {"w": torch.zeros(1)}, "cfg": {}, "optimizer_history": [], "extra_state": {}}, fake)
    before = snapshot([fake])
    assert_fails_one_line(
        ["image-train", "--data", str(data), "--output", str(tmp_path / "o"), *FAST]
        + ["--teacher-checkpoint", str(fake)],
        capsys,
        must_contain=["is a fairseq checkpoint (a translation model); expected an image classifier"],
    )
    assert snapshot([fake]) == before


@pytest.mark.parametrize("extra", [("--batch-size", "1"), ("--batch-size", "8", "--limit-train", "1")])
def test_batch_of_one_with_batch_norm_is_one_line(data, tmp_path, capsys, extra):
    argv = ["image-train", "--data", str(data), "--output", str(tmp_path / "bn"), *FAST, *extra]
    assert_fails_one_line(
        argv,
        capsys,
        unchanged=[data, tmp_path],
        must_contain=["test_resnet has batch norm, which needs at least 2 images", "give --batch-size 2"],
    )
    assert not (tmp_path / "bn" / "checkpoint_last.pth").exists()


def test_batch_of_one_without_batch_norm_trains(data, tmp_path):
    fast = [x if x != "test_resnet" else "test_vit" for x in FAST]
    out = tmp_path / "vit"
    from lskd_plugins.cli import main

    assert main(["image-train", "--data", str(data), "--output", str(out), *fast, "--batch-size", "1"]) == 0
    assert (out / "checkpoint_last.pth").is_file()


def test_a_batch_left_with_one_readable_image_is_one_line(tmp_path, capsys):
    """Batch norm, --bad-images skip, and a batch of 2 whose other image is unreadable."""
    data = tiny_folder(tmp_path / "data", per_class=1)  # 2 training images: one batch of 2
    (data / "train" / "b" / "0.png").write_bytes(b"\x89PNG\r\n\x1a\n cut")
    argv = ["image-train", "--data", str(data), "--output", str(tmp_path / "run"), *FAST, "--batch-size", "2"]
    line = assert_fails_one_line(argv, capsys, code=1, must_contain=["kept 1 readable image", "b/0.png"])
    assert "Expected more than 1 value" not in line
