"""One rule for what an image data folder holds (lskd_plugins/image/folders.py), used by every
image reader and by the study's data hash: hidden folders are not classes, linked folders are
read and hashed, a link loop is one line instead of a hang."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from torchvision.datasets.folder import IMG_EXTENSIONS as TORCHVISION_EXTENSIONS

from lskd_plugins.diffusion.image_source import sample_files
from lskd_plugins.errors import LskdError
from lskd_plugins.image import data as image_data
from lskd_plugins.image import folders
from lskd_plugins.study.keys import tree_hash


def png(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((4, 4, 3), value, dtype=np.uint8)).save(path)


@pytest.fixture
def root(tmp_path):
    for split in ("train", "val"):
        for k, cls in enumerate(("a", "b")):
            for i in range(3):
                png(tmp_path / "data" / split / cls / f"{i}.png", 40 * k + i)
    return tmp_path / "data"


def read(split: Path):
    ds = image_data.image_folder(split, None)
    return ds.classes, [(Path(p).relative_to(split).as_posix(), c) for p, c in ds.samples]


def test_extensions_are_torchvisions():
    assert folders.IMG_EXTENSIONS == TORCHVISION_EXTENSIONS


def test_hidden_folders_are_not_classes_and_do_not_change_the_key(root):
    before_key, before = tree_hash(root), read(root / "train")
    png(root / "train" / ".ipynb_checkpoints" / "0.png", 7)  # a hidden folder with an image in it
    png(root / "train" / "a" / ".extra" / "9.png", 8)  # a hidden folder inside a class
    png(root / "train" / "b" / "._3.png", 9)  # a hidden file (macOS resource fork)
    assert (
        read(root / "train")
        == before
        == (["a", "b"], [(f"{c}/{i}.png", k) for k, c in enumerate("ab") for i in range(3)])
    )
    assert image_data.class_names(root / "train") == ["a", "b"]
    assert tree_hash(root) == before_key
    # the diffusion analysis samples by the same rule
    assert sorted(Path(p).name for p, _ in sample_files(root / "train", ["a"], [0], 10, 0)) == [
        "0.png",
        "1.png",
        "2.png",
    ]
    # a visible class folder is read and changes the key
    png(root / "train" / "c" / "0.png", 11)
    assert read(root / "train")[0] == ["a", "b", "c"] and tree_hash(root) != before_key


def test_linked_class_folders_are_read_and_hashed(root, tmp_path):
    outside = tmp_path / "elsewhere" / "c"
    png(outside / "0.png", 50)
    os.symlink(outside, root / "train" / "c")
    key = tree_hash(root)
    classes, samples = read(root / "train")
    assert classes == ["a", "b", "c"] and ("c/0.png", 2) in samples
    png(outside / "0.png", 51)  # a change behind the link changes the key (os.walk did not follow it)
    assert tree_hash(root) != key


def test_link_loop_is_one_line_for_every_reader(root):
    os.symlink("..", root / "train" / "a" / "loop")
    message = f"{root / 'train' / 'a' / 'loop'} is a symbolic link loop"
    for call in (
        lambda: read(root / "train"),
        lambda: tree_hash(root),
        lambda: sample_files(root / "train", ["a"], [0], 10, 0),
    ):
        with pytest.raises(LskdError, match="is a symbolic link loop") as err:
            call()
        assert err.value.message.startswith(message)


def test_image_train_on_a_link_loop_stops_at_once_with_one_line(root, tmp_path, cli_env):
    os.symlink("../..", root / "train" / "b" / "up")
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    argv = ["image-train", "--data", str(root), "--output", str(tmp_path / "run"), "--model", "test_resnet"]
    argv += ["--img-size", "16", "--epochs", "1", "--workers", "0", "--device", "cpu", "--no-progress"]
    proc = subprocess.run(
        [sys.executable, "-m", "lskd_plugins.cli", *argv],
        capture_output=True,
        text=True,
        env=cli_env,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"lskd: error: {root / 'train' / 'b' / 'up'} is a symbolic link loop (it leads back to "
        f"{root.resolve()}, a folder that contains it); remove the link or point it outside the data"
    ]
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before  # no run folder claimed


def test_loop_through_two_links_is_found(root, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    os.symlink(other, root / "train" / "a" / "x")
    os.symlink(root / "train" / "a", other / "y")  # a/x/y is a again
    with pytest.raises(LskdError, match=r"/a/x/y is a symbolic link loop"):
        read(root / "train")
