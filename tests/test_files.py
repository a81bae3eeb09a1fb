"""Atomic writes: the target holds the whole new content, and no temporary file is left."""

import pickle

import pytest
import torch

from lskd_plugins.files import torch_save_atomic, write_lines_atomic, write_text_atomic


def test_text_and_lines_replace_whole_files(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("old content that is longer\n")
    write_text_atomic(path, "ünïcode\n", fsync=True)
    assert path.read_bytes() == "ünïcode\n".encode()
    write_lines_atomic(path, ["x", "", "y"])
    assert path.read_text(encoding="utf-8") == "x\n\ny\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "ckpt.pth"
    torch_save_atomic({"w": torch.ones(2)}, path)
    with pytest.raises((pickle.PicklingError, AttributeError)):  # "Can't pickle local object"
        torch_save_atomic({"w": lambda: None}, path)  # unpicklable: torch.save fails midway
    assert torch.equal(torch.load(path)["w"], torch.ones(2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pth"]
