"""``devices_per_run: N`` in the study (issue 19 item 3): each run one distributed job. The
equalities of the tools themselves: tests/test_image_distributed_equal.py (2 x batch b = 1 x batch
2b) and tests/test_fairseq_multiprocess.py (2 ranks = --update-freq 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from lskd_plugins.cli import main as lskd_main
from lskd_plugins.errors import LskdError
from lskd_plugins.study import config as C
from lskd_plugins.study import devices
from lskd_plugins.study.grid import build_runs


def test_gpu_groups_and_slurm_parameters():
    assert devices.gpu_groups(2, 8, 4) == ["0,1,2,3", "4,5,6,7"]
    assert devices.gpu_groups(1, 0, 2) == ["0,1"]  # the CPU: no GPU to share out
    with pytest.raises(LskdError, match="jobs 3 x devices_per_run 4 needs 12 GPUs; 8 are visible"):
        devices.gpu_groups(3, 8, 4)
    with pytest.raises(LskdError, match="devices_per_run: 4 needs 4 GPUs per run; 2 are visible"):
        devices.gpu_groups(1, 2, 4)
    assert devices.slurm_parameters({"slurm_partition": "gpu"}, 8)["gpus_per_node"] == 8
    assert devices.slurm_parameters({"gpus_per_node": 1}, 1) == {"gpus_per_node": 1}
    with pytest.raises(LskdError, match="gpus_per_node 1 is fewer than devices_per_run 8"):
        devices.slurm_parameters({"gpus_per_node": 1}, 8)


def small_doc(n: int) -> dict:
    return {
        "seeds": 1,
        "temperatures": [2],
        "teacher_smoothing": [0.0, 0.1],
        "jobs": 1,
        "device": "cpu",
        "devices_per_run": n,
        "progress": False,
        "image": {
            "teacher_model": "test_vit",
            "common": {"img-size": 16, "aug": "none", "batch-size": 16, "limit-train": 64, "limit-val": 32},
            "teacher": {"epochs": 1},
            "student": {"epochs": 1},
            "diffusion": False,
        },
        "translation": {
            "synth": {"size": 120, "valid": 16, "test": 16, "seed": 1},
            "kinds": ["word"],
            "common": {
                "arch": "transformer", "encoder-layers": 1, "decoder-layers": 1, "encoder-embed-dim": 16,
                "decoder-embed-dim": 16, "encoder-ffn-embed-dim": 32, "decoder-ffn-embed-dim": 32,
                "encoder-attention-heads": 2, "decoder-attention-heads": 2, "share-all-embeddings": True,
                "optimizer": "adam", "lr": 0.001, "max-tokens": 400, "max-update": 2, "dropout": 0.0,
                "num-workers": 0, "no-epoch-checkpoints": True,
            },
            "checkpoint": "checkpoint_last.pt",
            "beam": 1,
            "max_len_b": 8,
            "diffusion": False,
        },
    }  # fmt: skip


def test_n_enters_every_key_and_the_commands():
    one = {r.name: r.key for r in build_runs(C.load_config(small_doc(1), where="t"), {})}
    two_runs = build_runs(C.load_config(small_doc(2), where="t"), {})
    two = {r.name: r.key for r in two_runs}
    assert one.keys() == two.keys() and all(one[n] != two[n] for n in one)
    student = next(r for r in two_runs if r.role == "student" and r.modality == "translation")
    assert student.spec["deps"] == {d: two[d] for d in student.deps}  # chained to the new keys


@pytest.mark.slow  # about 2.5 minutes on 2 cores: 8 runs, each a 2-process job (opt in: --run-slow)
@pytest.mark.fairseq
def test_a_study_with_two_devices_per_run_on_the_cpu(tmp_path, capsys, monkeypatch):
    """Every run of both modalities as one 2-process job (torchrun / fairseq's gloo ranks)."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    path = tmp_path / "two.yaml"
    path.write_text(yaml.safe_dump(small_doc(2)))
    out = tmp_path / "out"
    assert lskd_main(["study", str(path), "--output", str(out), "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "torchrun --standalone --nproc_per_node=2 --no-python lskd image-train" in text
    assert "--distributed-world-size 2" in text
    assert lskd_main(["study", str(path), "--output", str(out)]) == 0
    summaries = sorted((out / "runs" / "image").glob("*/train/summary.json"))
    assert len(summaries) == 5  # 2 teachers, the baseline, 2 students
    assert all(json.loads(p.read_text())["world_size"] == 2 for p in summaries)
    logs = [p.read_text() for p in (out / "runs" / "translation").glob("teacher*/log.txt")]
    assert len(logs) == 2 and all("distributed init (rank 1)" in log for log in logs)
    result = json.loads(next((out / "runs" / "translation").glob("word*/result.json")).read_text())
    assert result["key"] and "bleu" in json.dumps(result)
    assert Path(out / "report.md").is_file()
