"""Messages that mislead (issue 20, class 6): a full disk, an unknown flag, warnings on stderr."""

import errno
import hashlib
from pathlib import Path

import pytest
import torch

from lskd_plugins import files
from lskd_plugins.cli import main as lskd_main
from lskd_plugins.errors import LskdFailure
from tests.cli_helpers import assert_fails_one_line
from tests.test_image_defects import FAST, tiny_folder

TORCH_FULL_DISK = "[enforce fail at inline_container.cc:672] . unexpected pos 4416 vs 4312"
FULL = (
    "the disk is full (no space left on device); free some space or choose an output on another disk, "
    "then rerun the same command"
)


def checksums(root: Path):
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_torch_save_on_a_full_disk_names_the_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    target = tmp_path / "checkpoint.pth"
    torch.save({"old": 1}, target)
    before = checksums(tmp_path)

    def full(obj, f, *a, **k):
        Path(f).write_bytes(b"partial")
        raise RuntimeError(TORCH_FULL_DISK)

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(LskdFailure) as err:
        files.torch_save_atomic({"new": 2}, target)
    assert str(err.value) == f"lskd: error: cannot write {target}: {FULL}" and err.value.exit_code == 1
    assert checksums(tmp_path) == before  # the old checkpoint whole, no temporary file left


def test_text_write_on_a_full_disk(tmp_path, monkeypatch):
    target = tmp_path / "summary.json"
    real_open = open

    def full_open(path, mode="r", *a, **k):
        if "w" in mode:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real_open(path, mode, *a, **k)

    monkeypatch.setattr("builtins.open", full_open)
    with pytest.raises(LskdFailure, match=f"cannot write {target}: the disk is full"):
        files.write_text_atomic(target, "{}")
    assert list(tmp_path.iterdir()) == []


def test_other_write_errors_are_not_called_a_full_disk(tmp_path, monkeypatch):
    monkeypatch.setattr(torch, "save", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("other")))
    with pytest.raises(RuntimeError, match="^other$"):
        files.torch_save_atomic({}, tmp_path / "x.pth")


def test_image_train_on_a_full_disk_is_one_line_exit_1(tmp_path, capsys, monkeypatch):
    data = tiny_folder(tmp_path / "data")
    monkeypatch.setattr(torch, "save", lambda *a, **k: (_ for _ in ()).throw(RuntimeError(TORCH_FULL_DISK)))
    out = tmp_path / "run"
    line = assert_fails_one_line(
        ["image-train", "--data", str(data), "--output", str(out), *FAST], capsys, unchanged=[data], code=1
    )
    assert line == f"lskd: error: cannot write {out / 'checkpoint_best.pth'}: {FULL}"


def test_a_full_disk_outside_the_atomic_writers(tmp_path, capsys, monkeypatch):
    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "d" / "train" / "0" / "1.png"))

    monkeypatch.setattr("lskd_plugins.image.digits.write_digits", full)
    assert lskd_main(["digits", "--output", str(tmp_path / "d")]) == 1
    assert capsys.readouterr().err == f"lskd: error: cannot write {tmp_path / 'd/train/0/1.png'}: {FULL}\n"


@pytest.mark.parametrize(
    "argv, where",
    [
        (["study", "x.yaml", "--bogus-flag=3"], "lskd study"),
        (["image-train", "--data", "d", "--output", "o", "--bogus-flag=3"], "lskd image-train"),
        (["--bogus-flag=3"], "lskd"),
    ],
)
def test_unknown_flag_names_the_prefix_once(argv, where, capsys):
    assert lskd_main(argv) == 2
    assert (
        capsys.readouterr().err
        == f"lskd: error: unrecognized arguments: --bogus-flag=3 (see {where} --help)\n"
    )
