"""The study engine with fake runners (keys, reuse, resume rules, statistics, configuration errors):
the tests about the engine, not the tools. tests/test_study.py runs the real tools end to end."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import yaml
from cli_helpers import assert_fails_one_line

from lskd_plugins.cli import main as lskd_main
from lskd_plugins.study import grid, keys, runners, stats
from lskd_plugins.study.config import load_config
from lskd_plugins.study.modalities import translation

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------- statistics
def _t975(n: int) -> float:
    from scipy.stats import t

    return float(t.ppf(0.975, n - 1))


def test_verdicts_on_constructed_numbers():
    a = {0: 10.0, 1: 11.0, 2: 12.0}
    better = stats.paired(a, {0: 9.0, 1: 9.9, 2: 11.1})  # diffs 1.0, 1.1, 0.9: all positive, small spread
    assert better["verdict"] == stats.BETTER
    diffs = [1.0, 1.1, 0.9]
    mean = sum(diffs) / 3
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / 2)
    assert better["mean"] == pytest.approx(mean)
    assert better["half"] == pytest.approx(_t975(3) * sd / math.sqrt(3))
    worse = stats.paired({0: 9.0, 1: 9.9, 2: 11.1}, a)
    assert worse["verdict"] == stats.WORSE
    mixed = stats.paired(a, {0: 9.0, 1: 12.0, 2: 11.5})  # diffs +1, -1, +0.5
    assert mixed["verdict"] == stats.UNRESOLVED
    one = stats.paired({0: 10.0}, {0: 5.0})
    assert one["verdict"] is None and one["mean"] == 5.0 and one["half"] is None
    assert stats.paired(a, {0: 9.0, 1: 9.9, 2: 11.1}, with_verdict=False)["verdict"] is None


def test_seeds_needed_is_the_smallest_n_that_resolves():
    for m, sd in ((0.5, 1.0), (2.0, 1.0), (0.1, 0.3)):
        n = stats.seeds_needed(m, sd)
        assert _t975(n) * sd / math.sqrt(n) < m
        assert n == 2 or _t975(n - 1) * sd / math.sqrt(n - 1) >= m
        assert abs(n - (2.1 * sd / m) ** 2) < 0.35 * n + 3  # near the rule of thumb
    assert stats.seeds_needed(0.0, 1.0) is None


def test_comparisons_are_the_fixed_set_paired_by_seed():
    cells = {
        ("logit", 0.0, 1.0): {0: 70.0, 1: 71.0},
        ("logit", 0.1, 1.0): {0: 72.0, 1: 73.5},
        ("logit", 0.0, 4.0): {0: 69.0, 1: 70.0},
        ("logit", 0.1, 4.0): {0: 68.0, 1: 68.5},
    }
    comps = stats.comparisons(cells, {0: 60.0, 1: 61.0}, [0.0, 0.1], [1.0, 4.0], ["logit"], True)
    by = {c["label"]: c for c in comps}
    inter = by["logit KD: (LS eps=0.1 - noLS at T=4) - (same at T=1)"]
    assert inter["diffs"] == [(68.0 - 69.0) - (72.0 - 70.0), (68.5 - 70.0) - (73.5 - 71.0)]
    assert by["logit KD: LS eps=0.1 - noLS teacher at T=1"]["diffs"] == [2.0, 2.5]
    assert by["logit KD: noLS teacher, T=4 - T=1"]["diffs"] == [-1.0, -1.0]
    assert by["logit KD: LS eps=0.1 teacher, T=1 - no-KD baseline"]["diffs"] == [12.0, 12.5]
    groups = {c["group"] for c in comps}
    assert groups == {"LS - noLS", "interaction", "T=k - T=1", "KD - no KD"}


# ------------------------------------------------------------------------------------------- keys
def _folder(root: Path, content: bytes) -> Path:
    (root / "train" / "c").mkdir(parents=True)
    (root / "train" / "c" / "x.bin").write_bytes(content)
    (root / ".lskd-prepared.json").write_text(str(root))  # stamps record paths: not part of the data
    return root


def test_data_key_is_content_not_path(tmp_path):
    a = _folder(tmp_path / "a", b"same")
    b = _folder(tmp_path / "elsewhere" / "b", b"same")
    c = _folder(tmp_path / "c", b"changed")
    assert keys.tree_hash(a) == keys.tree_hash(b) != keys.tree_hash(c)
    cache = tmp_path / "cache.json"
    assert keys.tree_hash(a, cache) == keys.tree_hash(a, cache) == keys.tree_hash(a)
    cfg = load_config({"image": {}, "seeds": 1, "temperatures": [1]})
    ka = {r.name: r.key for r in grid.build_runs(cfg, {"image": keys.tree_hash(a)})}
    kc = {r.name: r.key for r in grid.build_runs(cfg, {"image": keys.tree_hash(c)})}
    assert ka.keys() == kc.keys() and all(ka[n] != kc[n] for n in ka)


def test_grid_counts_and_dependencies():
    cfg = load_config(
        {
            "seeds": 2,
            "temperatures": [1, 2],
            "image": {},
            "translation": {"kinds": ["word", "seq", "seqword"]},
        }
    )
    runs = grid.build_runs(cfg, {"image": "x", "translation": "y"})
    by = {r.name: r for r in runs}
    image = [r for r in runs if r.modality == "image"]
    # 2 teachers x 2 seeds + 2 x 2 T x 2 seeds students + 2 baselines + 2 diffusion
    # + the choice of the diffusion's classes on the noLS teachers of both seed indices
    assert len(image) == 4 + 8 + 2 + 2 + 1
    trans = [r for r in runs if r.modality == "translation"]
    # teachers 4, seqkd 4, per seed: baseline 1 + seq 2 + word 4 + seqword 4 -> 11 x 2, diffusion 2
    assert len(trans) == 4 + 4 + 22 + 2 + 1
    assert by["translation/seqword_eps0.1_T2_s1"].deps == [
        "translation/teacher_eps0.1_s1",
        "translation/seqkd_eps0.1_s1",
    ]
    assert by["image/classes_s0"].deps == ["image/teacher_eps0_s0", "image/teacher_eps0_s1"]
    assert by["image/diffusion_s1"].classes_from == "image/classes_s0"
    assert by["image/diffusion_s1"].deps[-1] == "image/classes_s0"
    order = [r.name for r in runs]
    assert all(order.index(d) < order.index(r.name) for r in runs for d in r.deps)
    fixed = grid.build_runs(load_config({"seeds": 3, "fixed_teachers": True, "image": {}}), {"image": "x"})
    assert sorted(r.name for r in fixed if r.role == "teacher") == [
        "image/teacher_eps0.1_s0",
        "image/teacher_eps0_s0",
    ]


# ------------------------------------------------------------------------------- engine with fakes
def fake_execute(run, ctx):
    """Deterministic numbers from the run's settings; counts calls in CALLS."""
    CALLS.append(run.name)
    folder = Path(ctx["folders"][run.name])
    if run.role == "classes":
        return {"metrics": {}, "classes": ["1", "7", "0"], "reason": "fake"}
    if run.role == "diffusion":
        models = [d for d in run.deps if d != run.classes_from]
        per = {
            m: {"eta": 1.0 + 0.1 * i + 0.01 * run.seed, "fisher_ab": 2.0, "leakage_ab": 0.1}
            for i, m in enumerate(models)
        }
        return {"metrics": {}, "per_model": per, "classes": ["1", "7", "0"]}
    h = int(run.key[:6], 16)
    epochs = run.spec["options"].get("epochs", 1)
    metrics = {"top1": 50 + (h % 1000) / 100 + epochs, "top5": 90.0, "nll": 1.0 + (h % 7) / 10, "ece": 0.05}
    (folder / "summary.json").write_text(json.dumps(metrics))
    return {"metrics": metrics, "result_file": "summary.json"}


CALLS: list = []


@pytest.fixture
def fake(monkeypatch):
    CALLS.clear()
    monkeypatch.setattr(runners, "execute", fake_execute)
    monkeypatch.setattr("lskd_plugins.study.report.projection_grid", lambda *a, **k: None)
    return CALLS


def _config(tmp_path: Path, **changes) -> Path:
    doc = {
        "seeds": 2,
        "temperatures": [1, 4],
        "progress": False,
        "image": {"data": "digits", "teacher_model": "test_resnet", "student": {"epochs": 1}},
    }
    for k, v in changes.items():
        doc["image"][k] = v
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_rerun_trains_nothing_and_a_change_trains_exactly_the_affected_runs(tmp_path, fake):
    out = tmp_path / "out"
    assert lskd_main(["study", str(_config(tmp_path)), "--output", str(out)]) == 0
    first = list(fake)
    assert len(first) == 4 + 8 + 2 + 2 + 1
    fake.clear()
    assert lskd_main(["study", str(_config(tmp_path)), "--output", str(out)]) == 0
    assert fake == []  # every key matched: nothing trained
    # students' epochs change: students, baselines and the diffusion analyses, not the teachers
    assert lskd_main(["study", str(_config(tmp_path, student={"epochs": 2})), "--output", str(out)]) == 0
    assert sorted(fake) == sorted(n for n in first if "teacher" not in n and "classes" not in n)
    doc = json.loads((out / "report.json").read_text())
    for run in doc["modalities"]["image"]["runs"]:
        own = json.loads((out / run["folder"] / "run.json").read_text())
        assert run["command"] == own["command"] and run["key"] == own["key"]
        if "student" in run["name"] or "baseline" in run["name"]:
            assert own["spec"]["options"]["epochs"] == 2  # the report shows the new runs, never the old
    # the old runs are still on disk, but the report does not describe them
    assert len(list((out / "runs" / "image").glob("logit_eps0_T1_s0-*"))) == 2


def test_same_data_at_another_path_is_reused_changed_data_is_not(tmp_path, fake):
    from lskd_plugins.image.digits import write_digits

    data = tmp_path / "digits"
    write_digits(data)
    cfg = _config(tmp_path, data=str(data), diffusion=False)
    out = tmp_path / "out"
    assert lskd_main(["study", str(cfg), "--output", str(out)]) == 0
    n = len(fake)
    fake.clear()
    moved = tmp_path / "moved" / "digits"
    shutil.copytree(data, moved)
    assert lskd_main(["study", str(cfg), "--output", str(out), "--data", str(moved)]) == 0
    assert fake == []
    victim = next((moved / "train").glob("*/*.png"))
    victim.write_bytes(victim.read_bytes() + b"\0")
    assert lskd_main(["study", str(cfg), "--output", str(out), "--data", str(moved)]) == 0
    assert len(fake) == n


def test_one_seed_gives_numbers_and_no_verdicts(tmp_path, fake):
    out = tmp_path / "out"
    assert lskd_main(["study", str(_config(tmp_path)), "--output", str(out), "--seeds", "1"]) == 0
    doc = json.loads((out / "report.json").read_text())
    comps = doc["modalities"]["image"]["comparisons"]["top1"]
    assert comps and all(c["verdict"] is None for c in comps)
    assert "no verdicts" in doc["modalities"]["image"]["answer"]


# --------------------------------------------------------------------------------- configuration
@pytest.mark.parametrize(
    "doc, needle",
    [
        ({"image": {}, "temprature": [1]}, "unknown key 'temprature'"),
        ({"image": {"teacher_modle": "x"}}, "unknown key 'teacher_modle'"),
        ({"image": {}, "temperatures": [1, 0]}, "temperatures must be a list of numbers > 0"),
        ({"image": {}, "temperatures": [-2]}, "temperatures"),
        ({"image": {}, "teacher_smoothing": [1.0]}, "teacher_smoothing"),
        ({"image": {"data": "/nonexistent/imagefolder"}}, "image.data: /nonexistent/imagefolder"),
        ({"translation": {"data": "/nonexistent/data-bin"}}, "translation.data: /nonexistent/data-bin"),
        ({}, "nothing to study"),
    ],
)
def test_config_errors_stop_before_any_training(tmp_path, capsys, fake, doc, needle):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(doc))
    out = tmp_path / "out"
    assert_fails_one_line(["study", str(path), "--output", str(out)], capsys, must_contain=[needle])
    assert fake == [] and not out.exists()


def test_flags_are_checked_and_override(tmp_path, capsys, fake):
    assert_fails_one_line(["study", "--temps", "1,x"], capsys, must_contain=["--temps"])
    assert_fails_one_line(
        ["study", "--output", str(tmp_path / "o"), "--temps", "0"], capsys, must_contain=["temperatures"]
    )
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump({"translation": {}}))
    assert_fails_one_line(["study", str(path), "--model", "resnet18"], capsys, must_contain=["--model"])


@pytest.mark.parametrize(
    "name", ["paper_imagenet", "paper_cub", "paper_iwslt14", "paper_wmt14", "cpu_real", "quickstart"]
)
def test_dry_run_of_each_recipe_config(tmp_path, capsys, fake, name):
    out = tmp_path / "out"
    assert (
        lskd_main(
            ["study", str(REPO / "recipes" / "study" / f"{name}.yaml"), "--output", str(out), "--dry-run"]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert fake == [] and not out.exists()
    assert "T64_s" in text and ("image-train" in text or "fairseq-train" in text)


def test_docs_list_every_configuration_key():
    from lskd_plugins.study.config import schema_markdown

    assert schema_markdown() in (REPO / "docs" / "study.md").read_text()


def test_old_flags_keep_working(tmp_path, fake):
    """The flags of the old image-only `lskd study` (--out, --quiet, --seed, --temps, epochs) still work."""
    out = tmp_path / "old"
    argv = ["study", "--out", str(out), "--model", "test_resnet", "--teacher-epochs", "1"]
    argv += ["--student-epochs", "2", "--temps", "1,4", "--quiet", "--seed", "3", "--seeds", "1"]
    assert lskd_main(argv) == 0
    runs = json.loads((out / "report.json").read_text())["modalities"]["image"]["runs"]
    names = {r["name"] for r in runs}
    assert "image/logit_eps0.1_T4_s3" in names and "image/teacher_eps0_s3" in names
    for r in runs:
        cmd = " ".join(r["command"])
        if "teacher_eps" in r["name"]:  # --seed 3 is the first seed index: teacher(3) = 2^30 + 3 * 2^20
            assert (
                "--epochs 1" in cmd and "--model test_resnet" in cmd and f"--seed {2**30 + 3 * 2**20} " in cmd
            )
        elif "logit_eps" in r["name"]:
            assert f"--seed {3 * 2**20} " in cmd
            assert "--epochs 2" in cmd and "--kd-temperature" in cmd


def test_output_of_other_files_is_refused(tmp_path, capsys, fake):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("x")
    assert_fails_one_line(
        ["study", str(_config(tmp_path)), "--output", str(out)],
        capsys,
        unchanged=[out],
        must_contain=["--output"],
    )
    assert fake == []


def test_students_of_one_teacher_build_its_cache_once(tmp_path, monkeypatch):
    """Two word-level students of one teacher starting together: one cache-teacher run, under a
    lock, and the second student finds the finished cache (its header, written last)."""
    import subprocess
    import threading
    import time

    teacher = tmp_path / "teacher"
    teacher.mkdir()
    calls = []

    def fake_cache_teacher(cmd, check):
        calls.append(cmd)
        time.sleep(0.3)  # long enough for the other student to reach the lock
        out = Path(cmd[cmd.index("--output") + 1])
        out.mkdir()
        (out / "header.json").write_text("{}")

    monkeypatch.setattr(subprocess, "run", fake_cache_teacher)
    ctx = {
        "folders": {"translation/teacher_eps0_s0": str(teacher)},
        "cfg": {"temperatures": [1.0, 2.0], "translation": {"checkpoint": "checkpoint_best.pt"}},
        "data": {"translation": str(tmp_path / "data-bin")},
    }
    run = grid.Run("translation", "student", "word", 0.0, 1.0, 0, deps=["translation/teacher_eps0_s0"])
    assert run.name == "translation/word_eps0_T1_s0"
    students = [threading.Thread(target=translation.ensure_teacher_cache, args=(run, ctx)) for _ in range(2)]
    for s in students:
        s.start()
    for s in students:
        s.join()
    assert len(calls) == 1
    assert calls[0][calls[0].index("--store") + 1] == "features" and "--temperatures" not in calls[0]
    assert calls[0][calls[0].index("--path") + 1] == str(teacher / "checkpoint_best.pt")
    assert calls[0][calls[0].index("--output") + 1] == str(teacher / "cache-features")
