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


def test_figure_written_whole_and_no_temp_left(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lskd_plugins.files import save_figure_atomic

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    path = save_figure_atomic(fig, tmp_path / "sub" / "f.png", dpi=50)
    plt.close(fig)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in path.parent.iterdir()) == ["f.png"]


def test_claim_output_reuses_own_refuses_others(tmp_path):
    from lskd_plugins.errors import LskdError
    from lskd_plugins.files import OWNER_FILE, claim_output

    out = tmp_path / "run"
    claim_output(out, {"command": "x", "seed": 1})
    (out / "result.txt").write_text("mine")
    claim_output(out, {"command": "x", "seed": 1})  # same owner: resume, keep files
    assert (out / "result.txt").read_text() == "mine"
    with pytest.raises(LskdError, match=r"other settings \(seed\).*--overwrite"):
        claim_output(out, {"command": "x", "seed": 2})
    assert (out / "result.txt").read_text() == "mine"
    claim_output(out, {"command": "x", "seed": 2}, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == [OWNER_FILE]
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("user's")
    with pytest.raises(LskdError, match="lskd did not write"):
        claim_output(foreign, {"command": "x"})
    assert (foreign / "notes.txt").read_text() == "user's"
    (out / OWNER_FILE).write_text('{"command": "x", "se')  # cut short
    with pytest.raises(LskdError, match="unreadable or cut short"):
        claim_output(out, {"command": "x", "seed": 2})
    claim_output(out, {"command": "x", "seed": 2}, overwrite=True)


def test_writable_and_overlap_checks(tmp_path):
    from lskd_plugins.errors import LskdError
    from lskd_plugins.files import check_file_writable, check_writable, refuse_overlap

    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(LskdError, match="is a file, not a folder"):
        check_writable(afile)
    with pytest.raises(LskdError, match="not writable"):
        check_writable(afile / "sub", "--output")
    with pytest.raises(LskdError, match="is a folder"):
        check_file_writable(tmp_path, "--output-file")
    with pytest.raises(LskdError, match=r"afile is a file, so no folder can be made there"):
        check_file_writable(afile / "x.json", "--output-file")
    assert check_writable(tmp_path / "new" / "deep").is_dir()
    data = tmp_path / "data"
    (data / "bin").mkdir(parents=True)
    for out in (data, data / "bin" / "out", tmp_path):
        with pytest.raises(LskdError, match="would write over the input"):
            refuse_overlap(out, [data])
    refuse_overlap(tmp_path / "elsewhere", [data, None])
