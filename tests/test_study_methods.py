"""The study's KD-method axis through a toy modality (no training): the grid has one student per
method at each teacher and T, and the report's method tables and method - KD comparisons equal the
runs' own result files, paired by seed index; the per-method figure draws one line per method."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from lskd_plugins.cli import main as lskd_main
from lskd_plugins.study import config, figures, grid, kinds, modalities, stats
from lskd_plugins.study.grid import Run, reads, seed_range, teacher_seeds
from lskd_plugins.study.modalities import Metric, Modality

KIND = kinds.Kind("toydist", "toy KD", True, (kinds.TEACHER,), False, True, "toy")
# per method an offset and a per-seed wobble, so that paired differences have a spread
OFFSET = {"kd": 0.0, "logit_std": 1.5, "dkd": -0.2}
WOBBLE = {"kd": (0.0, 0.3, -0.1), "logit_std": (0.2, -0.1, 0.4), "dkd": (0.1, 0.1, -0.3)}


def toy_score(run: Run) -> float:
    score = 60.0 + 0.7 * run.seed + 5.0 * (run.teacher_smoothing or 0.0) - 0.01 * (run.temperature or 0.0)
    if run.role == "student":
        score += OFFSET[run.method] + WOBBLE[run.method][run.seed] * (1 + (run.temperature or 0) / 10)
        score += 2.0 * (run.teacher_smoothing or 0.0) * (run.method == "logit_std") * run.seed
    return score


class ToyMethods(Modality):
    name = "toy"
    doc = "the toy study with KD methods (or null)"
    section = {
        "data": ("embedded", lambda v: isinstance(v, str), "a path or 'embedded'", "the toy data"),
        "prepare": (None, lambda v: v is None, "null", "no preparation"),
        "fixed_teachers": config.SECTION_FIXED_TEACHERS,
        "diffusion": (False, lambda v: v is False, "false", "no diffusion analysis"),
        **config.section_methods(),
    }
    embedded = "embedded"
    primary = "score"
    metrics = {"score": Metric("toy score (%)"), "loss": Metric("toy loss", 4, "calibration")}
    trainer = "toy trainer"

    def kinds(self, sec):
        return [KIND.name]

    def prepare_embedded(self, cfg, out):
        data = out / "data" / "toy"
        data.mkdir(parents=True, exist_ok=True)
        (data / "toy.txt").write_text("toy data\n")
        return str(data)

    def build(self, cfg, g):
        sec = cfg[self.name]
        for a in cfg["teacher_smoothing"]:
            for ts in teacher_seeds(cfg, self.name):
                g.add(Run(self.name, "teacher", None, a, None, ts))
        for s in seed_range(cfg):
            g.add(Run(self.name, "baseline", None, None, None, s))
            for a in cfg["teacher_smoothing"]:
                for t in cfg["temperatures"]:
                    for method, settings in grid.methods(sec, KIND.name):
                        deps = reads(cfg, self.name, KIND.name, a, s)
                        g.add(
                            Run(self.name, "student", KIND.name, a, t, s, deps=deps, method=method),
                            **settings,
                        )

    def command(self, run, ctx):
        return ["toy-train", "--seed", str(run.tool_seed), *kinds.method_flags(run.method or "kd", run.spec)]

    def execute(self, run, ctx):
        return {"metrics": {"score": toy_score(run), "loss": 1.0 / (2 + run.seed)}}


@pytest.fixture
def toy(monkeypatch):
    monkeypatch.setitem(kinds.KINDS, KIND.name, KIND)
    monkeypatch.setitem(modalities.MODALITIES, "toy", ToyMethods())
    return modalities.MODALITIES["toy"]


def _run_study(tmp_path: Path, methods) -> Path:
    path, out = tmp_path / "toy.yaml", tmp_path / "out"
    doc = {"seeds": 3, "temperatures": [1, 4], "progress": False, "kd_methods": methods, "toy": {}}
    path.write_text(yaml.safe_dump(doc))
    assert lskd_main(["study", str(path), "--output", str(out)]) == 0
    return out


def _own(out: Path, runs: dict, name: str) -> float:
    """A run's primary metric from its own result.json."""
    return json.loads((out / runs[name]["folder"] / "result.json").read_text())["metrics"]["score"]


def test_the_grid_has_one_student_per_method_sharing_the_student_seed(toy):
    cfg = config.load_config({"toy": {}, "seeds": 2, "temperatures": [1, 4], "kd_methods": ["kd", "dkd"]})
    runs = {r.name: r for r in grid.build_runs(cfg, {"toy": "h"})}
    kd, dkd = runs["toy/toy_eps0.1_T4_s1"], runs["toy/toy-dkd_eps0.1_T4_s1"]
    assert kd.tool_seed == dkd.tool_seed and kd.deps == dkd.deps == ["toy/teacher_eps0.1_s1"]
    assert kd.key != dkd.key and dkd.spec["dkd_beta"] == 8.0 and "dkd_beta" not in kd.spec
    assert sum(r.role == "student" for r in runs.values()) == 2 * 2 * 2 * 2  # seeds x eps x T x methods


def test_method_tables_and_comparisons_equal_the_runs_files(toy, tmp_path):
    out = _run_study(tmp_path, ["kd", "logit_std", "dkd"])
    doc = json.loads((out / "report.json").read_text())
    sec = doc["modalities"]["toy"]
    runs = {r["name"]: r for r in sec["runs"]}
    meth = sec["methods"]
    assert meth["methods"] == ["kd", "logit_std", "dkd"] and meth["settings"] == {
        "dkd_alpha": 1.0,
        "dkd_beta": 8.0,
    }
    # the table: every method, teacher and T from the runs' own result.json
    rows = {(r.get("method"), r.get("temperature")): r for r in meth["tables"]["score"]["rows"]}
    for m in ("kd", "logit_std", "dkd"):
        prefix = "toy" if m == "kd" else f"toy-{m}"
        for t in (1, 4):
            for a in ("0", "0.1"):
                own = [_own(out, runs, f"toy/{prefix}_eps{a}_T{t}_s{s}") for s in (0, 1, 2)]
                cell = rows[(m, t)]["cells"][a]
                assert cell["n"] == 3 and cell["mean"] == pytest.approx(sum(own) / 3)
                assert cell["half"] == pytest.approx(stats.summary(own)["half"])
    # kd's rows equal the main (kd) table's, which never mixes in another method
    main = {r["label"]: r for r in sec["tables"]["score"]["rows"]}
    assert rows[("kd", 4)]["cells"] == main["toy KD, T=4"]["cells"]
    # method - KD, paired by seed index, recomputed from the files
    by = {c["label"]: c for c in meth["comparisons"]["score"]}
    c = by["toy KD: logit-standardised KD - KD, LS eps=0.1 teacher, T=4"]
    diffs = [
        _own(out, runs, f"toy/toy-logit_std_eps0.1_T4_s{s}") - _own(out, runs, f"toy/toy_eps0.1_T4_s{s}")
        for s in (0, 1, 2)
    ]
    assert c["diffs"] == pytest.approx(diffs) and c["seeds"] == [0, 1, 2]
    s = stats.summary(diffs)
    assert (c["mean"], c["lo"], c["hi"]) == pytest.approx(
        (s["mean"], s["mean"] - s["half"], s["mean"] + s["half"])
    )
    assert c["verdict"] == stats.verdict(s["mean"], s["half"], 3) and c["group"] == "method - KD"
    # method x LS: (LS - noLS under the method) - (LS - noLS under KD), per seed index
    x = by["toy KD: (LS eps=0.1 - noLS under logit-standardised KD) - (same under KD) at T=1"]
    gap = []
    for s in (0, 1, 2):
        ls, no = (_own(out, runs, f"toy/toy-logit_std_eps{a}_T1_s{s}") for a in ("0.1", "0"))
        kd_ls, kd_no = (_own(out, runs, f"toy/toy_eps{a}_T1_s{s}") for a in ("0.1", "0"))
        gap.append((ls - no) - (kd_ls - kd_no))
    assert x["diffs"] == pytest.approx(gap) and x["mean"] == pytest.approx(sum(gap) / 3)
    # each method's own interaction; every comparison of the family is Holm-adjusted
    inter = by["decoupled KD, toy KD: (LS eps=0.1 - noLS at T=4) - (same at T=1)"]
    assert inter["method"] == "dkd" and inter["group"] == "interaction"
    assert meth["family_size"] == len(meth["comparisons"]["score"]) == 2 * (2 * 2 + 2 + 2 + 1)
    assert all(c["verdict_adjusted"] is not None and c["reading"] for c in meth["comparisons"]["score"])
    # the main family is KD's alone
    assert not any("logit-standardised" in c["label"] for c in sec["comparisons"]["score"])
    md = (out / "report.md").read_text()
    assert "### KD methods side by side: KD, logit-standardised KD, decoupled KD" in md
    assert "| toy KD, T=4, decoupled KD |" in md and "toy_score_methods_vs_T.png" in md
    assert (out / meth["figure"]).is_file()


def test_a_kd_only_study_has_no_method_section(toy, tmp_path):
    out = _run_study(tmp_path, ["kd"])
    doc = json.loads((out / "report.json").read_text())
    assert doc["modalities"]["toy"]["methods"] is None
    assert "KD methods side by side" not in (out / "report.md").read_text()


def test_method_comparisons_against_direct_computation():
    cells = {
        ("word", 0.0, 1.0): {0: 10.0, 1: 11.0, 2: 12.5},
        ("word", 0.1, 1.0): {0: 10.5, 1: 11.0, 2: 13.5},
        ("word", 0.0, 1.0, "dkd"): {0: 9.0, 1: 10.5, 2: 12.0},
        ("word", 0.1, 1.0, "dkd"): {0: 10.0, 1: 11.5, 2: 12.5},
    }
    comps = stats.method_comparisons(cells, [0.0, 0.1], [1.0], ["word"], ["kd", "dkd"], True)
    by = {(c["group"], c["smoothing"]): c for c in comps}
    assert by[("method - KD", 0.0)]["diffs"] == pytest.approx([-1.0, -0.5, -0.5])
    assert by[("method - KD", 0.1)]["diffs"] == pytest.approx([-0.5, 0.5, -1.0])
    # (dkd LS - dkd noLS) - (kd LS - kd noLS): (1 - 0.5), (1 - 0), (0.5 - 1)
    assert by[("method x LS", 0.1)]["diffs"] == pytest.approx([0.5, 1.0, -0.5])
    assert (
        by[("LS - noLS", 0.1)]["diffs"] == pytest.approx([1.0, 1.0, 0.5])
        and by[("LS - noLS", 0.1)]["method"] == "dkd"
    )
    assert [c["group"] for c in comps] == ["method - KD", "method - KD", "method x LS", "LS - noLS"]
    assert stats.method_cells(cells, "kd") == {k: v for k, v in cells.items() if len(k) == 3}


def test_the_methods_figure_has_one_bar_set_per_method(tmp_path):
    cells = {}
    for m in ("kd", "logit_std", "dkd"):
        for a in (0.0, 0.1):
            for t in (1.0, 2.0, 64.0):
                cell = ("logit", a, t) + (() if m == "kd" else (m,))
                cells[cell] = {s: 80.0 + s + 3 * a + (m == "dkd") for s in range(3)}
    data = {
        "cells": cells,
        "teachers": {0.0: {0: 90.0, 1: 91.0}, 0.1: {0: 92.0, 1: 91.5}},
        "baseline": {0: 85.0, 1: 86.0},
    }
    drawn = []
    path = figures.plot_methods(
        data,
        [0.0, 0.1],
        [1.0, 2.0, 64.0],
        ["logit"],
        ["kd", "logit_std", "dkd"],
        "top1",
        tmp_path / "m.png",
        read_back=drawn,
    )
    assert path.is_file() and len(drawn) == 2  # one panel per teacher
    # 3 methods x 3 T error bars per panel, each the mean +- the 95% half-width of its seeds
    half = stats.summary([80.0, 81.0, 82.0])["half"]
    assert len(drawn[0]["bars"]) == 9
    assert drawn[0]["bars"][0] == pytest.approx((81.0 - half, 81.0 + half))
    assert drawn[1]["bars"][-1] == pytest.approx((82.3 - half, 82.3 + half))  # dkd, LS teacher, T=64
    assert drawn[0]["ylim"] == drawn[1]["ylim"]  # one y scale: the teachers' panels compare
    assert "noLS teacher" in drawn[0]["title"] and "LS teacher (eps=0.1)" in drawn[1]["title"]


def test_a_band_is_named_by_the_line_it_belongs_to(tmp_path):
    """A fixed teacher (one seed) is a line without a band, and its legend entry claims none; the
    baseline's band is the one drawn, and its entry says so (the band was once labelled the teacher's)."""
    cells = {("word", a, t): {s: 40.0 + s for s in range(3)} for a in (0.0, 0.1) for t in (1.0, 64.0)}
    data = {
        "cells": cells,
        "teachers": {0.0: {0: 54.6}, 0.1: {0: 56.5}},
        "baseline": {0: 46.0, 1: 50.0, 2: 45.0},
    }
    drawn = []
    figures.plot_methods(
        data, [0.0, 0.1], [1.0, 64.0], ["word"], ["kd"], "bleu", tmp_path / "b.png", read_back=drawn
    )
    half = stats.summary([46.0, 50.0, 45.0])["half"]
    for panel in drawn:
        assert panel["bands"] == [pytest.approx((47.0 - half, 47.0 + half))]  # the baseline's only
    legend = drawn[0]["legend"]
    teachers = [x for x in legend if x.startswith("teacher")]
    assert teachers == ["teacher noLS: 54.60", "teacher LS eps=0.1: 56.50"]
    (base,) = [x for x in legend if "band" in x]
    assert "baseline" in base and base.endswith(f"(band: 95% CI): 47.00 ± {half:.2f}")
