"""recipes/nmt with QUICK=1 on a tiny sentencepiece data-bin, and the sweep table they end with."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from lskd_plugins.nmt import prepare as P
from lskd_plugins.nmt.sweep_table import Run, build_table, parse_run_name, render_markdown

REPO = Path(__file__).resolve().parents[1]
RECIPES = REPO / "recipes" / "nmt"


def test_parse_run_name():
    assert parse_run_name("teacher_a0.1") == ("teacher", "0.1", None)
    assert parse_run_name("word_a0.0_T64") == ("word", "0.0", 64.0)
    assert parse_run_name("seq_a0.1") == ("seq", "0.1", None)
    assert parse_run_name("seqword_a0.1_T2") == ("seqword", "0.1", 2.0)
    assert parse_run_name("word_a0.1") is None  # word-level runs carry a temperature
    assert parse_run_name("seqkd_a0.1") is None  # the decoded data, not a model
    assert parse_run_name("notes") is None


def _result(bleu: float) -> dict:
    return {
        "sacrebleu": {"score": bleu, "signature": "nrefs:1|tok:13a"},
        "chrf": {"score": 2 * bleu, "signature": "c"},
        "tokenized_bleu": {"score": bleu + 1, "tokenizer": "13a"},
    }


def test_table_layout_rows_t_columns_teachers():
    runs = [
        Run(n, *parse_run_name(n), Path(f"/s/{n}/checkpoint_best.pt"))
        for n in ("teacher_a0.0", "teacher_a0.1", "word_a0.0_T1", "word_a0.1_T1", "word_a0.1_T64", "seq_a0.1")
    ]
    results = {
        "teacher_a0.0": _result(26.5),
        "teacher_a0.1": _result(26.8),
        "word_a0.0_T1": _result(24.9),
        "word_a0.1_T1": _result(25.1),
        "word_a0.1_T64": _result(6.5),
        "seq_a0.1": _result(23.0),
    }
    table = build_table(runs, results, "test")
    assert [c["label"] for c in table["columns"]] == ["noLS teacher (α=0.0)", "LS teacher (α=0.1)"]
    assert [r["label"] for r in table["rows"]] == [
        "teacher",
        "word-level KD, T=1",
        "word-level KD, T=64",
        "sequence-level KD",
    ]
    assert table["rows"][2]["cells"]["0.0"] is None  # word_a0.0_T64 was not run
    assert table["rows"][1]["cells"]["0.1"]["sacrebleu"] == 25.1
    assert table["best_student"] == {"label": "word-level KD, T=1", "alpha": "0.1", "sacrebleu": 25.1}
    md = render_markdown(table)
    assert "| | noLS teacher (α=0.0) | LS teacher (α=0.1) |" in md
    assert "| word-level KD, T=1 | 24.90 | **25.10** |" in md
    assert "| word-level KD, T=64 | – | 6.50 |" in md
    assert "| teacher | 26.50 | 26.80 |" in md  # teachers are never bold
    assert "| word-level KD, T=1 | 49.80 | **50.20** |" in md  # chrF table


@pytest.fixture(scope="module")
def spm_data(tiny_mt_data, tmp_path_factory):
    """tiny_mt_data's text through data_prep's python core: a joint-sentencepiece data-bin."""
    out = tmp_path_factory.mktemp("recipes") / "prep"
    cfg = P.PrepareConfig(
        raw_dir=str(tiny_mt_data.text_dir),
        out=str(out),
        layout="plain",
        vocab_size=300,
        split_overrides={"train": ["train"], "valid": ["valid"], "test": ["test"]},
    )
    P.prepare(cfg, log=lambda msg: None)
    return out


def _run(script: str, env: dict, **extra) -> subprocess.CompletedProcess:
    env = {**env, **{k: str(v) for k, v in extra.items()}}
    proc = subprocess.run(
        ["bash", str(RECIPES / script)], capture_output=True, text=True, env=env, timeout=600
    )
    assert proc.returncode == 0, f"{script} failed:\n{(proc.stdout + proc.stderr)[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def quick_env(spm_data, cli_env, tmp_path_factory):
    save = tmp_path_factory.mktemp("recipes") / "sweep"
    return {
        **cli_env,
        "DATA": str(spm_data / "data-bin"),
        "SAVE": str(save),
        "QUICK": "1",
        "ALPHAS": "0.0 0.1",
        "TEMPS": "1",
        "MAX_UPDATE": "20",
        "LOG_INTERVAL": "10",
    }


@pytest.fixture(scope="module")
def word_sweep(quick_env):
    _run("train_teacher.sh", quick_env)
    _run("distill_word.sh", quick_env)
    return Path(quick_env["SAVE"])


def test_train_teacher_and_distill_word_quick(word_sweep, spm_data):
    save = word_sweep
    for alpha in ("0.0", "0.1"):
        teacher = save / f"teacher_a{alpha}"
        assert (teacher / "checkpoint_best.pt").is_file() and (teacher / ".done").is_file()
        cmd = (teacher / "command.txt").read_text()
        assert f"--label-smoothing {alpha}" in cmd and "--criterion label_smoothed_cross_entropy" in cmd
        assert "--share-all-embeddings" in cmd and "--cpu" in cmd and "--max-update 20" in cmd
        student = save / f"word_a{alpha}_T1"
        assert (student / "checkpoint_best.pt").is_file()
        cmd = (student / "command.txt").read_text()
        assert "--task lskd_translation" in cmd and f"--teacher-path {teacher}/checkpoint_best.pt" in cmd
        assert "--criterion lskd_kd --kd-alpha 0.9 --kd-temperature 1 --label-smoothing 0.1" in cmd
        assert "num_updates 20" in (student / "train.log").read_text()


def test_finished_runs_are_skipped(word_sweep, quick_env):
    proc = _run("train_teacher.sh", quick_env)
    assert f"skip {word_sweep}/teacher_a0.0 (done" in proc.stderr
    assert f"skip {word_sweep}/teacher_a0.1 (done" in proc.stderr


def test_evaluate_writes_the_table(word_sweep, quick_env, spm_data):
    proc = _run("evaluate.sh", quick_env)
    table = json.loads((word_sweep / "results.json").read_text())
    md = (word_sweep / "results.md").read_text()
    assert md == proc.stdout
    assert [c["alpha"] for c in table["columns"]] == ["0.0", "0.1"]
    assert [r["label"] for r in table["rows"]] == ["teacher", "word-level KD, T=1"]
    for row in table["rows"]:
        for cell in row["cells"].values():
            run = cell["run"]
            per_run = json.loads((word_sweep / run / "eval" / "test.bleu.json").read_text())
            assert cell["sacrebleu"] == per_run["sacrebleu"]["score"]
            assert per_run["remove_bpe"] == "sentencepiece"  # detected from the sentencepiece dictionary
            assert per_run["beam"] == 4 and per_run["max_len_b"] == 50
            # references are the detokenised, normalised text data_prep wrote
            refs = (word_sweep / run / "eval" / "test.ref").read_text().splitlines()
            assert refs == (spm_data / "text" / "test.de").read_text().splitlines()
            assert f"| {row['label']} |" in md
    # a second evaluation reuses every result
    again = _run("evaluate.sh", quick_env)
    assert again.stderr.count("reusing") == 4 and again.stdout == md


def test_recipes_need_data(cli_env, tmp_path):
    env = {k: v for k, v in cli_env.items() if k != "DATA"}
    for script in ("train_teacher.sh", "distill_word.sh", "distill_seq.sh", "evaluate.sh"):
        proc = subprocess.run(["bash", str(RECIPES / script)], capture_output=True, text=True, env=env)
        assert proc.returncode == 2 and "set DATA to a fairseq data-bin" in proc.stderr
        helped = subprocess.run(
            ["bash", str(RECIPES / script), "--help"], capture_output=True, text=True, env=env
        )
        assert helped.returncode == 0 and "DATA=" in helped.stdout
    proc = subprocess.run(
        ["bash", str(RECIPES / "distill_word.sh")],
        capture_output=True,
        text=True,
        env={**env, "DATA": str(tmp_path), "QUICK": "1"},
    )
    assert proc.returncode == 2 and "is not a fairseq data-bin" in proc.stderr


@pytest.mark.slow
def test_distill_seq_quick_then_full_table(word_sweep, quick_env):
    """Sequence-level KD (seqkd + CE student, and + word-level KD), then the table with every row."""
    env = {**quick_env, "SEQ_WORD_KD": "1"}
    _run("distill_seq.sh", env)
    save = word_sweep
    for alpha in ("0.0", "0.1"):
        manifest = json.loads((save / f"seqkd_a{alpha}" / "seqkd.json").read_text())
        assert manifest["complete"] and manifest["sentences"] == 600
        assert (save / f"seq_a{alpha}" / "checkpoint_best.pt").is_file()
        assert (save / f"seqword_a{alpha}_T1" / "checkpoint_best.pt").is_file()
        assert f"seqkd_a{alpha}/data-bin" in (save / f"seq_a{alpha}" / "command.txt").read_text()
    _run("evaluate.sh", quick_env)
    table = json.loads((save / "results.json").read_text())
    assert [r["label"] for r in table["rows"]] == [
        "teacher",
        "word-level KD, T=1",
        "sequence-level KD",
        "seq-level + word-level KD, T=1",
    ]
    assert all(cell is not None for row in table["rows"] for cell in row["cells"].values())
