"""lskd bleu: one JSON object, equal to sacrebleu's own CLI on the files it writes."""

from __future__ import annotations

import json
import subprocess

import pytest
import torch

from lskd_plugins.errors import LskdError
from lskd_plugins.nmt.bleu import evaluate_checkpoint, score_texts
from lskd_plugins.nmt.decode import DecodeOptions, detect_post_process


@pytest.fixture(scope="module")
def bleu_run(tiny_mt_data, tiny_teacher_150, tmp_path_factory, cli_env):
    out = tmp_path_factory.mktemp("bleu")
    proc = subprocess.run(
        [
            "lskd",
            "bleu",
            "--data",
            str(tiny_mt_data.data_bin),
            "--path",
            str(tiny_teacher_150),
            "--subset",
            "test",
            "--beam",
            "4",
            "--max-len-b",
            "30",
            "--device",
            "cpu",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        env=cli_env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out, proc


def _lines_with_unknown_words(text_file, dict_file) -> int:
    vocab = {line.split()[0] for line in dict_file.read_text(encoding="utf-8").splitlines()}
    return sum(any(w not in vocab for w in line.split()) for line in text_file.read_text().splitlines())


def test_prints_one_json_object_with_the_scores(bleu_run, tiny_mt_data):
    out, proc = bleu_run
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1  # logs and progress go to stderr
    result = json.loads(lines[0])
    assert set(result) >= {"sacrebleu", "chrf", "tokenized_bleu", "counts", "checkpoint", "subset", "beam"}
    assert result["sacrebleu"]["signature"].startswith(
        "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:"
    )
    assert result["chrf"]["signature"].startswith("nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:")
    # references from the data-bin: words outside the training dictionary come back as <<unk>>
    with_unk = _lines_with_unknown_words(
        tiny_mt_data.text_dir / "test.de", tiny_mt_data.data_bin / "dict.de.txt"
    )
    assert result["counts"] == {
        "sentences": 40,
        "empty_hypotheses": 0,
        "failed": 0,
        "references_with_unk": with_unk,
    }
    assert sum("<<unk>>" in line for line in (out / "test.ref").read_text().splitlines()) == with_unk
    assert result["remove_bpe"] == "none"  # word-level toy data: nothing to remove
    assert result["tokenized_bleu"]["tokenizer"] == "moses (sacremoses)"  # pinned in requirements.txt
    assert json.loads((out / "test.bleu.json").read_text()) == result


def test_sacrebleu_equals_the_sacrebleu_cli_on_the_written_files(bleu_run, tiny_mt_data, cli_env):
    out, proc = bleu_run
    result = json.loads(proc.stdout)
    hyp, ref = out / "test.hyp", out / "test.ref"
    text_ref = (tiny_mt_data.text_dir / "test.de").read_text().splitlines()
    assert [r for r in ref.read_text().splitlines() if "<<unk>>" not in r] == [
        r for r, d in zip(text_ref, ref.read_text().splitlines()) if "<<unk>>" not in d
    ]
    assert len(hyp.read_text().splitlines()) == 40
    cli = subprocess.run(
        ["sacrebleu", str(ref), "-i", str(hyp), "-m", "bleu", "chrf", "-w", "4", "-l", "en-de"],
        capture_output=True,
        text=True,
        env=cli_env,
        timeout=120,
    )
    assert cli.returncode == 0, cli.stderr
    bleu, chrf = json.loads(cli.stdout)
    assert round(result["sacrebleu"]["score"], 4) == bleu["score"]
    assert result["sacrebleu"]["signature"] == bleu["signature"]
    assert round(result["chrf"]["score"], 4) == chrf["score"]
    assert result["chrf"]["signature"] == chrf["signature"]
    assert 0 < result["sacrebleu"]["score"] < 100


def test_score_texts_known_values():
    perfect = score_texts(["Ein Hund läuft.", "Zwei Katzen."], ["Ein Hund läuft.", "Zwei Katzen."], "de")
    assert perfect["sacrebleu"]["score"] == pytest.approx(100.0)
    assert perfect["chrf"]["score"] == pytest.approx(100.0)
    # tokenised BLEU tokenises first: punctuation glued or not makes no difference
    glued = score_texts(["Hallo, Welt! Wie geht es dir?"], ["Hallo , Welt ! Wie geht es dir ?"], "de")
    assert glued["tokenized_bleu"]["score"] == pytest.approx(100.0)
    partial = score_texts(["a b c d e f"], ["a b c d e g"], "de")
    # 13a BLEU by hand: precisions 5/6, 4/5, 3/4, 2/3, brevity penalty 1
    expected = 100 * (5 / 6 * 4 / 5 * 3 / 4 * 2 / 3) ** 0.25
    assert partial["sacrebleu"]["score"] == pytest.approx(expected)
    if partial["tokenized_bleu"]["tokenizer"].startswith("13a"):  # without sacremoses it is the same BLEU
        assert partial["tokenized_bleu"]["score"] == pytest.approx(partial["sacrebleu"]["score"])
    with pytest.raises(LskdError, match="2 hypotheses but 1 references"):
        score_texts(["a", "b"], ["a"])


def test_detect_post_process():
    from fairseq.data import Dictionary

    def make(symbols):
        d = Dictionary()
        for s in symbols:
            d.add_symbol(s)
        return d

    assert detect_post_process(make(["\u2581Ein", "\u2581Hund", "e", "s"])) == "sentencepiece"
    assert detect_post_process(make(["Hun@@", "d", "ein"])) == "subword_nmt"
    assert detect_post_process(make(["ein", "hund"])) == "none"


def test_reference_file_with_wrong_line_count_is_named(tiny_mt_data, tiny_teacher, tmp_path):
    ref = tmp_path / "ref.de"
    ref.write_text("nur eine zeile\n")
    with pytest.raises(LskdError, match=f"reference file {ref} has 1 lines, the subset has 40 sentences"):
        evaluate_checkpoint(
            str(tiny_teacher),
            tiny_mt_data.data_bin,
            "test",
            DecodeOptions(max_len_b=30, device="cpu"),
            ref=ref,
            progress=False,
        )


def test_unknown_subset_and_checkpoint_are_one_line_errors(tiny_mt_data, tiny_teacher, tmp_path):
    with pytest.raises(LskdError, match="subset 'nosuch' not found in"):
        evaluate_checkpoint(
            str(tiny_teacher), tiny_mt_data.data_bin, "nosuch", DecodeOptions(device="cpu"), progress=False
        )
    with pytest.raises(LskdError, match=f"checkpoint not found: {tmp_path / 'x.pt'}"):
        evaluate_checkpoint(
            str(tmp_path / "x.pt"), tiny_mt_data.data_bin, "test", DecodeOptions(device="cpu")
        )


def test_checkpoint_of_another_dictionary_names_the_first_difference(
    tiny_mt_data, tiny_teacher, tmp_path, capsys
):
    """Not torch's many-line 'size mismatch': one line with the first differing symbol, as fairseq-train's
    teacher check says it; and the same where the model's own data-bin is gone (sizes only)."""
    import shutil

    from cli_helpers import assert_fails_one_line

    other = tmp_path / "other-bin"
    shutil.copytree(tiny_mt_data.data_bin, other)
    for lang in ("en", "de"):  # the joined dictionary without its 3rd symbol
        lines = (other / f"dict.{lang}.txt").read_text(encoding="utf-8").splitlines(keepends=True)
        (other / f"dict.{lang}.txt").write_text("".join(lines[:2] + lines[3:]), encoding="utf-8")
    argv = ["bleu", "--data", str(other), "--path", str(tiny_teacher), "--subset", "test", "--device", "cpu"]
    line = assert_fails_one_line(
        argv, capsys, unchanged=[other], must_contain=["first difference at index 6"]
    )
    assert line.startswith(
        f"lskd: error: checkpoint {tiny_teacher} does not share the dictionaries of --data"
    )
    assert "size mismatch" not in line
    # the model's data-bin moved away: the sizes are compared, still before loading
    state = torch.load(tiny_teacher, weights_only=False)
    state["cfg"]["task"]["data"] = str(tmp_path / "gone")
    moved = tmp_path / "moved.pt"
    torch.save(state, moved)
    argv[argv.index(str(tiny_teacher))] = str(moved)
    line = assert_fails_one_line(argv, capsys, unchanged=[other], must_contain=["the model has"])
    assert "size mismatch" not in line
