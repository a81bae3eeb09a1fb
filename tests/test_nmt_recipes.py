"""recipes/nmt with QUICK=1 on a tiny sentencepiece data-bin: the scripts call the study engine
(no grid loops of their own) and their environment variables keep working."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from lskd_plugins.nmt import prepare as P

REPO = Path(__file__).resolve().parents[1]
RECIPES = REPO / "recipes" / "nmt"


def test_recipes_contain_no_grid_loops():
    for script in RECIPES.glob("*.sh"):
        text = script.read_text()
        assert (
            "for a in" not in text and "for t in" not in text and "fairseq-train" not in text.split("\n#")[0]
        )
        if script.name != "common.sh":
            assert "run_study" in text


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
        "STUDY_ARGS": "--no-progress",
        "LOG_INTERVAL": "10",
    }


@pytest.fixture(scope="module")
def word_sweep(quick_env):
    _run("train_teacher.sh", quick_env)
    _run("distill_word.sh", quick_env)
    return Path(quick_env["SAVE"])


def _runs(save: Path, pattern: str) -> list:
    return sorted(save.glob(f"runs/translation/{pattern}-*"))


def test_train_teacher_and_distill_word_quick(word_sweep):
    save = word_sweep
    for alpha in ("0", "0.1"):
        (teacher,) = _runs(save, f"teacher_eps{alpha}_s0")
        cmd = " ".join(json.loads((teacher / "run.json").read_text())["command"])
        assert f"--label-smoothing {alpha}" in cmd and "--criterion label_smoothed_cross_entropy" in cmd
        assert "--share-all-embeddings" in cmd and "--cpu" in cmd and "--max-update 20" in cmd
        (student,) = _runs(save, f"word_eps{alpha}_T1_s0")
        assert (student / "checkpoint_best.pt").is_file()
        cmd = " ".join(json.loads((student / "run.json").read_text())["command"])
        assert "--task lskd_translation" in cmd and f"--teacher-path {teacher}/checkpoint_best.pt" in cmd
        assert "--criterion lskd_kd --kd-alpha 0.9 --kd-temperature 1 --label-smoothing 0.1" in cmd
        assert "num_updates 20" in (student / "log.txt").read_text()


def test_finished_runs_are_reused(word_sweep, quick_env):
    proc = _run("train_teacher.sh", quick_env)
    assert " 0 to run" in proc.stderr


def test_evaluate_writes_the_table(word_sweep, quick_env, spm_data):
    proc = _run("evaluate.sh", {**quick_env, "KINDS": "word"})
    doc = json.loads((word_sweep / "report.json").read_text())["modalities"]["translation"]
    assert "# lskd study" in proc.stdout and " 0 to run" in proc.stderr
    row = next(r for r in doc["tables"]["bleu"]["rows"] if r["label"] == "word-level KD, T=1")
    for alpha in ("0", "0.1"):
        (student,) = _runs(word_sweep, f"word_eps{alpha}_T1_s0")
        per_run = json.loads((student / "eval" / "test.bleu.json").read_text())
        assert row["cells"][alpha]["mean"] == per_run["sacrebleu"]["score"] and row["cells"][alpha]["n"] == 1
        assert per_run["remove_bpe"] == "sentencepiece"  # detected from the sentencepiece dictionary
        assert per_run["beam"] == 4 and per_run["max_len_b"] == 50
        refs = (student / "eval" / "test.ref").read_text().splitlines()
        assert refs == (spm_data / "text" / "test.de").read_text().splitlines()


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
def test_distill_seq_quick(word_sweep, quick_env):
    """Sequence-level KD (seqkd + CE student, and + word-level KD) through the engine."""
    _run("distill_seq.sh", {**quick_env, "SEQ_WORD_KD": "1"})
    for alpha in ("0", "0.1"):
        (seqkd,) = _runs(word_sweep, f"seqkd_eps{alpha}_s0")
        assert json.loads((seqkd / "seqkd" / "seqkd.json").read_text())["complete"]
        (seq,) = _runs(word_sweep, f"seq_eps{alpha}_s0")
        assert f"{seqkd}/seqkd/data-bin" in " ".join(json.loads((seq / "run.json").read_text())["command"])
        assert _runs(word_sweep, f"seqword_eps{alpha}_T1_s0")
