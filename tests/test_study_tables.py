"""The study engine is built from tables: a toy modality and a toy KD kind are added through the
registry and the kinds table alone (no engine file edited) and go through configuration, grid,
dry run, execution, statistics and report; an unknown modality is one line; no engine file outside
the modality modules and the tables compares a modality's or a kind's name."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from cli_helpers import assert_fails_one_line

from lskd_plugins.cli import main as lskd_main
from lskd_plugins.errors import LskdError
from lskd_plugins.study import config, grid, kinds, modalities, stats
from lskd_plugins.study.grid import Run, reads, seed_range, teacher_seeds
from lskd_plugins.study.modalities import Metric, Modality

REPO = Path(__file__).resolve().parents[1]
TOY_KIND = kinds.Kind("toykind", "toy KD", True, (kinds.TEACHER,), False, True, "toystudent")


def toy_score(run: Run) -> float:
    """The toy trainer's deterministic 'accuracy': depends on every field, so pairing is testable."""
    return 50.0 + 10.0 * (run.teacher_smoothing or 0.0) + 0.1 * (run.temperature or 0.0) + 0.7 * run.seed


class Toy(Modality):
    name = "toy"
    doc = "the toy study (or null)"
    section = {
        "data": ("embedded", lambda v: isinstance(v, str), "a path or 'embedded'", "the toy data"),
        "prepare": (None, lambda v: v is None, "null", "no preparation"),
        "fixed_teachers": config.SECTION_FIXED_TEACHERS,
        "diffusion": (False, lambda v: v is False, "false", "no diffusion analysis"),
        "width": (4, lambda v: isinstance(v, int) and v > 0, "an integer > 0", "the toy model's width"),
    }
    embedded = "embedded"
    primary = "score"
    metrics = {"score": Metric("toy score (%)"), "loss": Metric("toy loss", 4, "calibration")}
    trainer = "toy trainer"

    def kinds(self, sec):
        return [TOY_KIND.name]

    def prepare_embedded(self, cfg, out):
        data = out / "data" / "toy"
        data.mkdir(parents=True, exist_ok=True)
        (data / "toy.txt").write_text("toy data\n")
        return str(data)

    def build(self, cfg, g):
        width = cfg[self.name]["width"]
        for a in cfg["teacher_smoothing"]:
            for ts in teacher_seeds(cfg, self.name):
                g.add(Run(self.name, "teacher", None, a, None, ts), width=width)
        for s in seed_range(cfg):
            g.add(Run(self.name, "baseline", None, None, None, s), width=width)
            for a in cfg["teacher_smoothing"]:
                for t in cfg["temperatures"]:
                    deps = reads(cfg, self.name, TOY_KIND.name, a, s)
                    g.add(Run(self.name, "student", TOY_KIND.name, a, t, s, deps=deps), width=width)

    def command(self, run, ctx):
        argv = ["toy-train", "--seed", str(run.tool_seed), "--width", str(run.spec["width"])]
        if run.deps:
            argv += ["--teacher", ctx["folders"][run.deps[0]], "--T", f"{run.temperature:g}"]
        return argv

    def execute(self, run, ctx):
        return {"metrics": {"score": toy_score(run), "loss": 1.0 / (1 + run.seed)}}


@pytest.fixture
def toy(monkeypatch):
    monkeypatch.setitem(kinds.KINDS, TOY_KIND.name, TOY_KIND)
    monkeypatch.setitem(modalities.MODALITIES, "toy", Toy())
    return modalities.MODALITIES["toy"]


def _toy_config(tmp_path: Path, **top) -> Path:
    path = tmp_path / "toy.yaml"
    doc = {"seeds": 3, "temperatures": [1, 2], "progress": False, "toy": {"width": 8}, **top}
    path.write_text(yaml.safe_dump(doc))
    return path


def test_a_toy_modality_is_configured_gridded_and_dry_run_through_the_registry(toy, tmp_path, capsys):
    cfg = config.load_config({"toy": {}, "seeds": 2, "temperatures": [1, 2]})
    assert cfg["toy"] == {
        "data": "embedded",
        "prepare": None,
        "fixed_teachers": False,
        "diffusion": False,
        "width": 4,
    }
    runs = {r.name: r for r in grid.build_runs(cfg, {"toy": "h"})}
    # 2 teachers x 2 seed indices + per index: 1 baseline + 2 teachers x 2 T students
    assert len(runs) == 4 + 2 * (1 + 4)
    student = runs["toy/toystudent_eps0.1_T2_s1"]
    assert student.deps == ["toy/teacher_eps0.1_s1"] and student.kind == "toykind"
    assert student.spec["width"] == 4 and student.spec["data"] == "h"
    assert "### toy:" in config.schema_markdown() and "the toy model's width" in config.schema_markdown()
    with pytest.raises(LskdError, match="toy.width must be an integer > 0"):
        config.load_config({"toy": {"width": 0}})
    out = tmp_path / "out"
    assert lskd_main(["study", str(_toy_config(tmp_path)), "--output", str(out), "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert not out.exists()
    lines = text.splitlines()
    i = next(i for i, line in enumerate(lines) if line.startswith("toy/toystudent_eps0_T2_s2 "))
    assert lines[i].endswith("after: toy/teacher_eps0_s2")
    # index 2's student stream: 2 * 2^20
    assert lines[i + 1].strip().startswith("toy-train --seed 2097152 --width 8 --teacher ")
    assert f"{out}/runs/toy/teacher_eps0_s2-" in lines[i + 1] and lines[i + 1].endswith("--T 2")


def test_a_toy_modality_runs_and_is_reported_from_its_own_numbers(toy, tmp_path):
    out = tmp_path / "out"
    assert lskd_main(["study", str(_toy_config(tmp_path)), "--output", str(out)]) == 0
    doc = json.loads((out / "report.json").read_text())
    assert list(doc["modalities"]) == ["toy"]
    sec = doc["modalities"]["toy"]
    assert sec["primary_metric"] == "score"
    runs = {r["name"]: r for r in sec["runs"]}
    row = next(r for r in sec["tables"]["score"]["rows"] if r["label"] == "toy KD, T=2")
    for a in (0.0, 0.1):
        own = []
        for s in (0, 1, 2):
            folder = out / runs[f"toy/toystudent_eps{a:g}_T2_s{s}"]["folder"]
            result = json.loads((folder / "result.json").read_text())
            own.append(result["metrics"]["score"])
        expected = [50 + 10 * a + 0.2 + 0.7 * s for s in (0, 1, 2)]
        assert own == pytest.approx(expected)
        cell = row["cells"][f"{a:g}"]
        assert cell["n"] == 3 and cell["mean"] == pytest.approx(stats.summary(own)["mean"])
    by = {c["label"]: c for c in sec["comparisons"]["score"]}
    ls = by["toy KD: LS eps=0.1 - noLS teacher at T=2"]
    assert ls["diffs"] == pytest.approx([1.0, 1.0, 1.0]) and ls["verdict"] == stats.BETTER
    md = (out / "report.md").read_text()
    assert "## Toy" in md and "### toy score (%) (primary metric)" in md
    assert "### toy loss (calibration; intervals, no verdicts)" in md


def test_an_unknown_modality_is_one_line(tmp_path, capsys):
    with pytest.raises(LskdError) as err:
        modalities.get("audio")
    assert err.value.message == "unknown study modality 'audio'; known modalities: image, translation"
    path = tmp_path / "audio.yaml"
    path.write_text(yaml.safe_dump({"audio": {"data": "x"}}))
    assert_fails_one_line(
        ["study", str(path), "--output", str(tmp_path / "o")], capsys, must_contain=["unknown key 'audio'"]
    )
    with pytest.raises(LskdError, match="unknown KD kind 'phrase'"):
        kinds.kind("phrase")
    with pytest.raises(LskdError, match="unknown KD method 'crd'"):
        kinds.method("crd")


def test_teacher_smoothing_flag_and_its_old_name(tmp_path, capsys):
    texts = []
    for flag in ("--teacher-smoothing", "--alphas"):
        out = tmp_path / "out"
        argv = ["study", "--output", str(out), "--model", "test_resnet", "--seeds", "1", "--temps", "2"]
        assert lskd_main([*argv, flag, "0,0.2", "--dry-run"]) == 0
        texts.append(capsys.readouterr().out)
    assert texts[0] == texts[1] and "image/logit_eps0.2_T2_s0 " in texts[0]


# the engine's files (the study's standalone helpers by other modules are not listed here)
ENGINE_FILES = ("__init__", "config", "execute", "grid", "keys", "layout", "report", "runners", "stats")
ENGINE = [REPO / "lskd_plugins" / "study" / f"{name}.py" for name in ENGINE_FILES]
NAMES = "|".join(["image", "translation", *kinds.KINDS])
COMPARISON = re.compile(  # x == "word", "seq" in kinds, kind in ("word", "seqword"), kind in {..., "seq"}
    rf"""(==|!=)\s*["']({NAMES})["']|["']({NAMES})["']\s*(==|!=|\bin\b)"""
    rf"""|\bin\s*[\(\[{{][^)\]}}]*["']({NAMES})["']"""
)


@pytest.mark.parametrize("path", ENGINE, ids=lambda p: p.name)
def test_no_engine_file_compares_a_modality_or_kind_name(path):
    """The engine reads the tables (kinds.py) and the modality modules; it never tests names."""
    hits = [line.strip() for line in path.read_text().splitlines() if COMPARISON.search(line)]
    assert hits == []


def test_kd_methods_add_students_without_changing_the_kd_students_keys():
    doc = {"seeds": 2, "temperatures": [1, 2], "image": {}, "translation": {"kinds": ["word", "seq"]}}
    plain = {
        r.name: r.key for r in grid.build_runs(config.load_config(doc), {"image": "x", "translation": "y"})
    }
    cfg = config.load_config({**doc, "kd_methods": ["kd", "logit_std", "dkd"], "dkd_beta": 2.0})
    runs = {r.name: r for r in grid.build_runs(cfg, {"image": "x", "translation": "y"})}
    assert all(runs[n].key == k for n, k in plain.items() if "diffusion" not in n)
    new = sorted(set(runs) - set(plain))
    # per modality: 2 indices x 2 teachers x 2 T x 2 new methods (seq takes no method)
    assert len(new) == 2 * 16 and "translation/word-dkd_eps0.1_T2_s1" in new
    assert not any("seq-" in n for n in new)
    dkd = runs["image/logit-dkd_eps0.1_T2_s1"]
    assert dkd.method == "dkd" and dkd.spec["dkd_alpha"] == 1.0 and dkd.spec["dkd_beta"] == 2.0
    assert "dkd_alpha" not in runs["image/logit-logit_std_eps0.1_T2_s1"].spec
    assert kinds.method_flags("dkd", dkd.spec) == [
        "--kd-method",
        "dkd",
        "--dkd-alpha",
        "1",
        "--dkd-beta",
        "2",
    ]
    assert kinds.method_flags("kd", dkd.spec) == []
    with pytest.raises(LskdError, match="kd_methods must be"):
        config.load_config({**doc, "kd_methods": ["kd", "crd"]})
    with pytest.raises(LskdError, match="both 0"):
        config.load_config({**doc, "kd_methods": ["dkd"], "dkd_alpha": 0, "dkd_beta": 0})
    own = config.load_config({**doc, "image": {"kd_methods": ["kd", "dkd"]}, "kd_methods": ["kd"]})
    assert own["image"]["kd_methods"] == ["kd", "dkd"] and own["translation"]["kd_methods"] == ["kd"]


def test_a_toy_method_through_the_table(monkeypatch):
    monkeypatch.setitem(kinds.METHODS, "toy", kinds.Method("toy", "toy KD", ("toy_weight",)))
    assert kinds.method_flags("toy", {"toy_weight": 0.5}) == ["--kd-method", "toy", "--toy-weight", "0.5"]
    sec = {"kd_methods": ["kd", "toy"], "toy_weight": 0.5}
    assert grid.methods(sec, "word") == [("kd", {}), ("toy", {"toy_weight": 0.5})]
    assert grid.methods(sec, "seq") == [(None, {})]
    run = grid.Run("translation", "student", "word", 0.1, 2.0, 1, method="toy")
    assert run.name == "translation/word-toy_eps0.1_T2_s1"
