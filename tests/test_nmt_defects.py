"""Issue 11's defect classes on the translation tools (lskd bleu, seqkd, synth-mt, prepare-mt):
one test per class, each on the smallest input that shows it, in-process through ``lskd``."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from cli_helpers import assert_fails_one_line, snapshot

from lskd_plugins.cli import main as lskd


def _bleu(data, path, *extra):
    return ["bleu", "--data", str(data), "--path", str(path), "--device", "cpu", "--no-progress", *extra]


def _seqkd(data, path, out, *extra):
    return [
        "seqkd",
        "--data",
        str(data),
        "--path",
        str(path),
        "--output",
        str(out),
        "--device",
        "cpu",
        *extra,
    ]


def _copy_data_bin(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest)
    return dest


def _binarize_test(data_bin: Path, src_lines, tgt_lines) -> None:
    """Replace the test subset of ``data_bin`` by these lines, with its own dictionaries."""
    from fairseq.data import Dictionary

    from lskd_plugins.nmt.seqkd import binarize_lines

    for lang, lines in (("en", src_lines), ("de", tgt_lines)):
        binarize_lines(
            lines, Dictionary.load(str(data_bin / f"dict.{lang}.txt")), data_bin / f"test.en-de.{lang}"
        )


# ----------------------------------------------------------------------------- 1. outputs over inputs
def test_outputs_never_replace_inputs(tiny_mt_data, tiny_teacher, tmp_path, capsys):
    root = tmp_path / "X"
    data = _copy_data_bin(tiny_mt_data.data_bin, root / "data-bin")
    assert_fails_one_line(
        _seqkd(data, tiny_teacher, root),
        capsys,
        unchanged=[root],
        must_contain=["would write over the input"],
    )
    assert_fails_one_line(
        _bleu(data, tiny_teacher, "--output", str(data)),
        capsys,
        unchanged=[root],
        must_contain=["--output", "would write over the input"],
    )
    foreign = tmp_path / "results"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine\n")
    assert_fails_one_line(
        _seqkd(data, tiny_teacher, foreign, "--subset", "test"),
        capsys,
        unchanged=[foreign],
        must_contain=["holds files that lskd did not write", "--overwrite"],
    )
    (foreign / "test.hyp").write_text("a hypothesis file of another tool\n")
    assert_fails_one_line(
        _bleu(data, tiny_teacher, "--output", str(foreign)),
        capsys,
        unchanged=[foreign],
        must_contain=["holds test.hyp", "--overwrite"],
    )


# ----------------------------------------------------------------------------- 2. silently wrong results
def test_same_symbols_in_another_order_are_refused(tiny_mt_data, tiny_teacher, tmp_path, capsys):
    data = _copy_data_bin(tiny_mt_data.data_bin, tmp_path / "shuffled")
    for lang in ("en", "de"):
        lines = (data / f"dict.{lang}.txt").read_text().splitlines()
        lines[0], lines[1] = lines[1], lines[0]
        (data / f"dict.{lang}.txt").write_text("".join(line + "\n" for line in lines))
    first = (tiny_mt_data.data_bin / "dict.en.txt").read_text().split()[0]
    for argv in (_bleu(data, tiny_teacher), _seqkd(data, tiny_teacher, tmp_path / "kd", "--subset", "test")):
        line = assert_fails_one_line(
            argv, capsys, must_contain=["does not share the dictionaries", "index 4"]
        )
        assert repr(first) in line  # the model's symbol at the first difference is named


def test_failed_sentences_make_the_result_fail_unless_allowed(tiny_mt_data, tiny_teacher, tmp_path, capsys):
    data = _copy_data_bin(tiny_mt_data.data_bin, tmp_path / "long")
    src = (tiny_mt_data.text_dir / "test.en").read_text().splitlines()[:3]
    tgt = (tiny_mt_data.text_dir / "test.de").read_text().splitlines()[:3]
    word = src[0].split()[0]
    _binarize_test(data, [*src, " ".join([word] * 1100)], [*tgt, tgt[0]])  # beyond 1024 positions
    assert_fails_one_line(
        _bleu(data, tiny_teacher, "--max-len-b", "5"),
        capsys,
        code=1,
        must_contain=["1 of 4 sentences failed", "--allow-failures"],
    )
    assert lskd(_bleu(data, tiny_teacher, "--max-len-b", "5", "--allow-failures")) == 0
    captured = capsys.readouterr()
    assert "1 of 4 sentences failed" in captured.err and '"failed": 1' in captured.out
    out = tmp_path / "kd"
    assert_fails_one_line(
        _seqkd(data, tiny_teacher, out, "--subset", "test", "--max-len-b", "5", "--no-progress"),
        capsys,
        code=1,
        must_contain=["1 of 4 sentences failed"],
    )
    assert '"complete": false' in (out / "seqkd.json").read_text()  # recipes do not skip it


@pytest.mark.parametrize(
    "argv, text",
    [
        (["--beam", "0"], "--beam: expected an integer from 1 to 1000"),
        (["--max-tokens", "-5"], "--max-tokens: expected an integer > 0"),
        (["--batch-size", "0"], "--batch-size: expected an integer > 0"),
        (["--lenpen", "nan"], "--lenpen: expected a finite number"),
        (["--max-len-a", "-1"], "--max-len-a: expected a finite number >= 0"),
        (["--max-len-b", "-1"], "--max-len-b: expected an integer >= 0"),
        (["--max-len-b", "0"], "both must be >= 0 and one > 0"),
    ],
)
def test_numbers_are_range_checked_before_any_work(argv, text, tmp_path, capsys):
    for command in (
        _bleu(tmp_path / "nope", tmp_path / "nope.pt"),
        _seqkd(tmp_path, tmp_path / "x.pt", tmp_path / "o"),
    ):
        assert_fails_one_line([*command, *argv], capsys, must_contain=[text])
    for argv2, text2 in ((["--shard-size", "0"], "--shard-size"), (["--worker-id", "-1"], "--worker-id")):
        assert_fails_one_line(
            _seqkd(tmp_path, tmp_path / "x.pt", tmp_path / "o", *argv2), capsys, must_contain=[text2]
        )


# ----------------------------------------------------------------------------- 3. tracebacks / 6. unclear
def test_truncated_and_misplaced_inputs_are_one_line(tiny_mt_data, tiny_teacher, tmp_path, capsys):
    cases = []
    for name, cut in (("test.en-de.en.idx", 7), ("test.en-de.de.bin", 10), ("dict.de.txt", None)):
        data = _copy_data_bin(tiny_mt_data.data_bin, tmp_path / name)
        f = data / name
        f.write_bytes(f.read_bytes()[:-cut] if cut else b"\xff\xfe not a dictionary line\n")
        cases.append((data, name))
    for data, name in cases:
        assert_fails_one_line(_bleu(data, tiny_teacher), capsys, must_contain=[name])
    a_file = tmp_path / "data.txt"
    a_file.write_text("x")
    assert_fails_one_line(_bleu(a_file, tiny_teacher), capsys, must_contain=["is a file, not a folder"])
    truncated = tmp_path / "cut.pt"
    truncated.write_bytes(tiny_teacher.read_bytes()[:5000])
    assert_fails_one_line(
        _bleu(tiny_mt_data.data_bin, truncated), capsys, must_contain=["cut.pt", "truncated or corrupt"]
    )


def test_image_checkpoint_where_fairseq_is_expected(tiny_mt_data, tmp_path, capsys):
    image = tmp_path / "image.pt"
    torch.save({"format": "lskd-image-v1", "model": {"w": torch.zeros(2)}, "meta": {}}, image)
    timm = tmp_path / "model_best.pth.tar"
    torch.save({"state_dict": {"fc.weight": torch.zeros(2, 2)}, "epoch": 3}, timm)
    for path, found in ((image, "an lskd image checkpoint"), (timm, "a timm/PyTorch training checkpoint")):
        assert_fails_one_line(
            _bleu(tiny_mt_data.data_bin, path),
            capsys,
            must_contain=[str(path), found, "expected a fairseq translation checkpoint"],
        )


# ----------------------------------------------------------------------------- 4. outputs checked first
def test_unwritable_output_fails_before_decoding(tiny_mt_data, tiny_teacher, tmp_path, capsys, monkeypatch):
    from lskd_plugins.nmt import decode

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded although the output cannot be written")

    monkeypatch.setattr(decode.Decoder, "translate", no_decoding)
    blocked = tmp_path / "a_file"
    blocked.write_text("keep")
    assert_fails_one_line(
        _bleu(tiny_mt_data.data_bin, tiny_teacher, "--output", str(blocked)),
        capsys,
        unchanged=[blocked],
        must_contain=["--output", "is a file, not a folder"],
    )
    assert_fails_one_line(
        _seqkd(tiny_mt_data.data_bin, tiny_teacher, blocked, "--subset", "test"),
        capsys,
        unchanged=[blocked],
        must_contain=["is a file, not a folder"],
    )
    assert_fails_one_line(
        _bleu(tiny_mt_data.data_bin, tiny_teacher, "--ref", str(tmp_path)),
        capsys,
        must_contain=["--ref", "is a folder"],
    )


# ----------------------------------------------------------------------------- 5. half-done preparation
def test_half_done_preparation_starts_clean(tiny_mt_data, tmp_path, capsys):
    out = tmp_path / "prep"
    (out / ".partial" / "spm").mkdir(parents=True)  # what a killed run leaves behind
    (out / ".partial" / "spm" / "spm.tmp.model").write_bytes(b"half")
    (out / "text").mkdir()
    (out / "text" / "train.en").write_text("half a file")
    argv = ["prepare-mt", "--layout", "plain", "--raw-dir", str(tiny_mt_data.text_dir), "--output", str(out)]
    argv += [
        "--split",
        "train=train",
        "--split",
        "valid=valid",
        "--split",
        "test=test",
        "--vocab-size",
        "300",
    ]
    assert lskd([*argv, "--no-progress"]) == 0
    assert not (out / ".partial").exists()
    assert (out / "text" / "train.en").read_text() == (tiny_mt_data.text_dir / "train.en").read_text()
    before = snapshot([out])
    assert lskd([*argv, "--no-progress"]) == 0
    assert snapshot([out]) == before and "nothing to do" in capsys.readouterr().out
    assert_fails_one_line(
        [*argv, "--vocab-size", "200"], capsys, unchanged=[out], must_contain=["vocab_size", "--overwrite"]
    )
    shutil.rmtree(out / "data-bin")  # a stamp whose results are gone is no reason to do nothing
    assert lskd([*argv, "--no-progress"]) == 0
    assert (out / "data-bin" / "train.en-de.en.bin").is_file()


def test_truncated_raw_files_are_named(tiny_mt_data, tmp_path, capsys):
    """A cut download (.gz) or a file that is not UTF-8 in --raw-dir: one line naming it, no output."""
    import gzip

    raw = tmp_path / "raw"
    shutil.copytree(tiny_mt_data.text_dir, raw)
    data = gzip.compress((raw / "valid.de").read_bytes())
    (raw / "valid.de").unlink()
    (raw / "valid.de.gz").write_bytes(data[: len(data) // 2])
    argv = ["prepare-mt", "--layout", "plain", "--raw-dir", str(raw), "--output", str(tmp_path / "out")]
    argv += ["--split", "train=train", "--split", "valid=valid", "--split", "test=test", "--no-progress"]
    assert_fails_one_line(
        argv, capsys, must_contain=["valid.de.gz is truncated or corrupt", "download it again"]
    )
    (raw / "valid.de.gz").unlink()
    (raw / "valid.de").write_bytes(b"\xff\xfe\xfa latin-1 bytes\n" * 40)
    assert_fails_one_line(
        argv,
        capsys,
        must_contain=["valid.de, line 1: byte 0xff at byte 1", "is not valid UTF-8", "convert the file"],
    )
    assert not (tmp_path / "out" / "data-bin").exists()


def test_preparation_output_inside_the_raw_corpus_is_refused(tiny_mt_data, tmp_path, capsys):
    raw = tmp_path / "raw"
    shutil.copytree(tiny_mt_data.text_dir, raw)
    argv = ["prepare-mt", "--layout", "plain", "--raw-dir", str(raw), "--output", str(raw / "prepared")]
    argv += ["--split", "train=train", "--split", "valid=valid", "--split", "test=test", "--no-progress"]
    assert_fails_one_line(argv, capsys, unchanged=[raw], must_contain=["lies inside --raw-dir"])
    assert not (raw / "prepared").exists()


@pytest.mark.parametrize("script", ["prepare_multi30k.sh", "prepare_iwslt14.sh", "prepare_wmt14_en_de.sh"])
def test_preparation_scripts_fail_in_one_line(script, tmp_path, cli_env):
    from cli_helpers import assert_cmd_fails_one_line

    path = Path(__file__).resolve().parents[1] / "data_prep" / script
    a_file = tmp_path / "a_file"
    a_file.write_text("keep")
    for args, text in (
        (["--raw-dir"], "--raw-dir needs a value"),
        (["--output", a_file, "--raw-dir", tmp_path], "is a file, not a folder"),
        (["--output", tmp_path / "o", "--vocab-size", "-3"], "--vocab-size"),
        (["--output", tmp_path / "o", "--raw-dir", tmp_path / "nope"], "raw directory not found"),
    ):
        assert_cmd_fails_one_line(["bash", path, *args], cli_env, unchanged=[a_file], must_contain=[text])


def test_bleu_prints_the_result_before_writing_it(tiny_mt_data, tiny_teacher, tmp_path, capsys, monkeypatch):
    """Class 4: when the files cannot be written after all (disk full), the scores are not lost."""
    import json

    from lskd_plugins.nmt import bleu

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(bleu, "write_text_atomic", disk_full)
    monkeypatch.setattr(bleu, "write_lines_atomic", disk_full)
    argv = _bleu(tiny_mt_data.data_bin, tiny_teacher, "--max-len-b", "5", "--output", str(tmp_path / "o"))
    capsys.readouterr()
    assert lskd(argv) == 2
    captured = capsys.readouterr()
    assert json.loads(captured.out)["counts"]["sentences"] == 40
    assert "No space left on device); the result is printed above" in captured.err
