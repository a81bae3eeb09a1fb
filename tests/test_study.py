"""``lskd study`` end to end through the real tools at toy size (image-train, fairseq-train with the
plugins, seqkd, bleu, diffusion): every table number is a run's own number; jobs, submitit and a
killed study give the same results. tests/test_study_engine.py covers the engine with fakes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from lskd_plugins.cli import main as lskd_main
from lskd_plugins.study import stats

# On a loaded shared machine the module takes several minutes (an idle 2-core one: about two).
pytestmark = pytest.mark.timeout(1800)

TINY_FAIRSEQ = {
    "arch": "transformer",
    "encoder-layers": 1,
    "decoder-layers": 1,
    "encoder-embed-dim": 32,
    "decoder-embed-dim": 32,
    "encoder-ffn-embed-dim": 64,
    "decoder-ffn-embed-dim": 64,
    "encoder-attention-heads": 2,
    "decoder-attention-heads": 2,
    "share-all-embeddings": True,
    "optimizer": "adam",
    "lr": 0.005,
    "lr-scheduler": "inverse_sqrt",
    "warmup-updates": 5,
    "max-tokens": 2000,
    "max-update": 8,
    "num-workers": 0,
    "no-epoch-checkpoints": True,
}
TINY_IMAGE = {
    "data": "digits",
    "teacher_model": "test_resnet",
    "common": {
        "img-size": 16,
        "batch-size": 128,
        "lr": 0.05,
        "aug": "none",
        "limit-train": 256,
        "limit-val": 90,
    },
    "teacher": {"epochs": 1},
    "student": {"epochs": 1},
}


def write_config(path: Path, **top) -> Path:
    path.write_text(yaml.safe_dump({"threads_per_job": 1, "device": "cpu", "progress": False, **top}))
    return path


@pytest.fixture(scope="module")
def mini_study(tmp_path_factory):
    """Both modalities, T in {1, 4}, two seeds, tiny models, one epoch / a few updates."""
    root = tmp_path_factory.mktemp("study")
    cfg = write_config(
        root / "mini.yaml",
        seeds=2,
        temperatures=[1, 4],
        jobs=2,
        image={**TINY_IMAGE, "diffusion": {"per_class": 10}},
        translation={
            "data": "synth",
            "synth": {"size": 600, "valid": 40, "test": 40},
            "kinds": ["word"],  # sequence-level KD end to end: tests/test_nmt_recipes.py
            "common": TINY_FAIRSEQ,
            "beam": 2,
            "max_len_b": 20,
            "diffusion": {"tokens": "mann,herr,apfel", "max_sentences": 600, "per_token": 10},
        },
    )
    out = root / "out"
    assert lskd_main(["study", str(cfg), "--output", str(out)]) == 0
    return cfg, out


def _own(out: Path, run: dict) -> dict:
    return json.loads((out / run["folder"] / "result.json").read_text())


def test_every_table_number_is_the_runs_own(mini_study):
    _, out = mini_study
    doc = json.loads((out / "report.json").read_text())
    assert set(doc["modalities"]) == {"image", "translation"}
    for modality, own_file, metric in (
        ("image", "train/summary.json", "top1"),
        ("translation", None, "bleu"),
    ):
        sec = doc["modalities"][modality]
        runs = {r["name"]: r for r in sec["runs"]}
        kind = "logit" if modality == "image" else "word"
        for a in (0.0, 0.1):
            for t in (1.0, 4.0):
                values = []
                for s in (0, 1):
                    run = runs[
                        f"{modality}/{'logit' if modality == 'image' else 'word'}_eps{a:g}_T{t:g}_s{s}"
                    ]
                    folder = out / run["folder"]
                    if own_file:  # the trainer's own summary.json
                        values.append(json.loads((folder / own_file).read_text())[metric])
                    else:  # lskd bleu's own file
                        values.append(
                            json.loads((folder / "eval" / "test.bleu.json").read_text())["sacrebleu"]["score"]
                        )
                label = ("logit KD" if modality == "image" else "word-level KD") + f", T={t:g}"
                row = next(r for r in sec["tables"][metric]["rows"] if r["label"] == label)
                cell = row["cells"][f"{a:g}"]
                expected = stats.summary(values)
                assert cell["n"] == 2 and cell["mean"] == pytest.approx(expected["mean"], abs=1e-9)
                assert cell["half"] == pytest.approx(expected["half"], abs=1e-9)
        assert kind in json.dumps(sec["comparisons"])
        for fig in sec["figures"].values():
            assert fig is None or (out / fig).is_file()
    md = (out / "report.md").read_text()
    assert "## Image" in md and "## Translation" in md and "(n=2)" in md and "verdict" in md


def test_rerun_trains_nothing(mini_study, capsys):
    cfg, out = mini_study
    before = {p: p.stat().st_mtime_ns for p in out.glob("runs/*/*/result.json")}
    capsys.readouterr()
    assert lskd_main(["study", str(cfg), "--output", str(out)]) == 0
    err = capsys.readouterr().err
    assert f"{len(before)} finished earlier" in err and " 0 to run" in err
    assert {p: p.stat().st_mtime_ns for p in out.glob("runs/*/*/result.json")} == before


def _image_only(root: Path, name: str, **extra) -> Path:
    image = {**TINY_IMAGE, "diffusion": False}
    return write_config(root / f"{name}.yaml", seeds=1, temperatures=[1], image=image, **extra)


def _top1(out: Path) -> dict:
    doc = json.loads((out / "report.json").read_text())
    return {r["name"]: r["metrics"] for r in doc["modalities"]["image"]["runs"]}


@pytest.fixture(scope="module")
def image_reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("ref")
    cfg = _image_only(root, "ref", jobs=1)
    assert lskd_main(["study", str(cfg), "--output", str(root / "out")]) == 0
    return root, _top1(root / "out")


def test_jobs_2_equals_jobs_1(image_reference, tmp_path):
    _, ref = image_reference
    cfg = _image_only(tmp_path, "j2", jobs=2)
    assert lskd_main(["study", str(cfg), "--output", str(tmp_path / "out")]) == 0
    assert _top1(tmp_path / "out") == ref


def test_submitit_local_executor_path(image_reference, tmp_path):
    _, ref = image_reference
    cfg = _image_only(tmp_path, "sub", jobs=2, launcher="submitit-local")
    assert lskd_main(["study", str(cfg), "--output", str(tmp_path / "out")]) == 0
    assert _top1(tmp_path / "out") == ref
    assert list((tmp_path / "out" / "submitit").glob("*/*_result.pkl"))


def test_killed_study_resumes_to_the_same_results(image_reference, tmp_path, cli_env):
    _, ref = image_reference
    cfg = _image_only(tmp_path, "kill", jobs=1)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "lskd_plugins.cli", "study", str(cfg), "--output", str(out)]
    env = {**cli_env, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.time() + 300
    while time.time() < deadline and not list(out.glob("runs/image/*/result.json")):
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = list(out.glob("runs/image/*/result.json"))
    assert 1 <= len(done) < len(ref)  # killed in the middle
    assert lskd_main(["study", str(cfg), "--output", str(out)]) == 0
    assert _top1(out) == ref
