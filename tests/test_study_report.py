"""The study report's judgement on constructed numbers: adequacy checks, Holm's adjustment, the
readings and answers in the paper's terms, and the time-left estimate (no training here)."""

from __future__ import annotations

import math

import pytest

from lskd_plugins.study import adequacy, multiple, readings
from lskd_plugins.study.eta import Eta, running_text


# --------------------------------------------------------------------------------------- adequacy
def _healthy_translation():
    teachers = {0.0: [30.1, 31.0], 0.1: [31.5, 30.7]}
    kd = {"word-level KD, T=1 (noLS)": [25.0, 26.0], "word-level KD, T=4 (LS eps=0.1)": [27.0, 26.0]}
    decoding = [
        adequacy.decoding_stats(f"r{i}", {"sacrebleu": {"sys_len": 950, "ref_len": 1000}}, ["a b c d"] * 10)
        for i in range(4)
    ]
    return teachers, kd, [24.0, 25.0], decoding


def test_healthy_runs_give_no_warnings():
    teachers, kd, base, decoding = _healthy_translation()
    assert adequacy.warnings("bleu", teachers, kd, base, decoding=decoding) == []
    image = adequacy.warnings(
        "top1", {0.0: [80.0, 82.0], 0.1: [81.0, 80.0]}, {"logit KD, T=4": [75.0, 77.0]}, [74.0, 76.0], 3
    )
    assert image == []


def test_degenerate_lengths_and_loops_are_named_with_their_numbers():
    teachers, kd, base, decoding = _healthy_translation()
    decoding[1] = adequacy.decoding_stats(
        "translation/word_T4_s1",
        {"sacrebleu": {"sys_len": 12965, "ref_len": 3741}},
        ["white white white white house"] * 6 + ["a man is walking"] * 4,
    )
    ws = adequacy.warnings("bleu", teachers, kd, base, decoding=decoding)
    assert len(ws) == 2
    assert ws[0] == (
        "Degenerate decoding: in 1 of 4 translation runs the hypotheses' length is outside [0.5, 2] x the "
        "references' (worst: translation/word_T4_s1, 12965 / 3741 tokens = 3.47)."
    )
    assert "more than 20% of the hypotheses repeat a token 4+ times in a row" in ws[1]
    assert "(worst: translation/word_T4_s1, 60%)" in ws[1]


def test_loops_needs_four_in_a_row():
    assert adequacy.loops("x y y y y z")
    assert not adequacy.loops("y y y x y")
    assert not adequacy.loops("")


def test_chance_level_teachers_and_students():
    ws = adequacy.warnings(
        "top1", {0.0: [35.0, 36.0], 0.1: [60.0, 62.0]}, {"logit KD, T=4": [33.0, 34.0]}, [50.0, 52.0], 3
    )
    assert ws[0] == (
        "Teachers not clearly above chance: noLS 35.5% (means over 2 seed(s)), below 43.3% "
        "(chance with 3 classes, 33.3%, + 10 points)."
    )
    assert ws[1] == (
        "Students not beating chance: 1 of 2 student cells below 35.3% (chance with 3 classes, 33.3%, "
        "+ 2 points) (means over seeds: logit KD, T=4: 33.5%)."
    )
    assert "Every KD student is below the no-KD baseline by more than 10 (top1)" in ws[2]
    bleu = adequacy.warnings("bleu", {0.0: [3.4, 3.9], 0.1: [3.5, 3.6]}, {"w": [0.7, 1.1]}, [0.9, 0.8])
    assert bleu[0].startswith("Teachers' BLEU near 0: noLS 3.6 BLEU, LS eps=0.1 3.5 BLEU")
    assert "Students not beating chance: 2 of 2" in bleu[1]


# ------------------------------------------------------------------------------------------- Holm
def _t_p(mean, sd, n):
    from scipy.stats import t

    return 2 * t.sf(abs(mean) / (sd / math.sqrt(n)), n - 1)


def test_holm_against_a_direct_computation():
    ps = [0.01, 0.04, None, 0.03, 0.005]
    got = multiple.holm(ps)
    # sorted: 0.005 (x4), 0.01 (x3), 0.03 (x2), 0.04 (x1), running maximum
    assert got[4] == pytest.approx(0.02)
    assert got[0] == pytest.approx(0.03)
    assert got[3] == pytest.approx(0.06)
    assert got[1] == pytest.approx(0.06)  # 0.04 * 1 = 0.04, raised to the running maximum 0.06
    assert got[2] is None
    assert multiple.holm([0.5, 0.6]) == [pytest.approx(1.0), pytest.approx(1.0)]


def test_adjust_gives_p_values_of_the_paired_t_test_and_adjusted_verdicts():
    comps = [
        {"mean": 1.0, "sd": 0.1, "n": 3, "verdict": "better"},
        {"mean": -0.5, "sd": 0.3, "n": 3, "verdict": "worse"},
        {"mean": 0.1, "sd": 1.0, "n": 3, "verdict": "not resolved"},
        {"mean": 2.0, "sd": None, "n": 1, "verdict": None},
    ]
    assert multiple.adjust(comps) == 3
    raw = [_t_p(1.0, 0.1, 3), _t_p(-0.5, 0.3, 3), _t_p(0.1, 1.0, 3)]
    for c, p in zip(comps, raw):
        assert c["p"] == pytest.approx(p)
    order = sorted(range(3), key=lambda i: raw[i])
    expected, running = {}, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (3 - rank) * raw[i]))
        expected[i] = running
    for i in range(3):
        assert comps[i]["p_adjusted"] == pytest.approx(expected[i])
        want = "not resolved" if expected[i] >= 0.05 else ("better" if comps[i]["mean"] > 0 else "worse")
        assert comps[i]["verdict_adjusted"] == want
    assert comps[3]["verdict_adjusted"] is None and comps[3]["p"] is None


def test_p_below_5_percent_exactly_when_the_interval_excludes_0():
    from lskd_plugins.study import stats

    for diffs in ([1.0, 1.1, 0.9], [1.0, -1.0, 0.5], [-0.2, -0.3], [0.3, -0.1, 0.2, 0.25]):
        c = stats.paired({i: d for i, d in enumerate(diffs)}, {i: 0.0 for i in range(len(diffs))})
        p = multiple.p_value(c["mean"], c["sd"], c["n"])
        assert (p < 0.05) == (c["verdict"] != stats.UNRESOLVED)


def test_seeds_to_resolve_adjusted_is_the_smallest_n():
    from scipy.stats import t

    for mean, sd, m in ((0.5, 1.0, 9), (2.0, 1.0, 1), (0.3, 0.4, 4)):
        n = multiple.seeds_to_resolve_adjusted(mean, sd, m)
        q = 1 - 0.025 / m
        assert t.ppf(q, n - 1) * sd / math.sqrt(n) < mean
        assert n == 2 or t.ppf(q, n - 2) * sd / math.sqrt(n - 1) >= mean
    assert multiple.seeds_to_resolve_adjusted(0.0, 1.0, 3) is None


# --------------------------------------------------------------------------------------- readings
def _c(group, mean, verdict, adjusted=None, **kw):
    base = {"kind": "word", "smoothing": 0.1, "temperature": 4.0, "t_ref": 1.0, "label": f"{group} x"}
    c = {**base, **kw, "group": group, "mean": mean, "lo": mean - 0.1, "hi": mean + 0.1, "sd": 0.2}
    c.update({"verdict": verdict, "verdict_adjusted": adjusted or verdict, "p_adjusted": 0.01, "n": 3})
    return c


def test_readings_in_the_papers_terms():
    assert readings.reading(_c("LS - noLS", 1.0, "better")) == (
        "the LS eps=0.1 teacher gives the better student (word-level KD, T=4)"
    )
    assert readings.reading(_c("LS - noLS", -1.0, "worse")).startswith("the noLS teacher gives the better")
    assert readings.reading(_c("T=k - T=1", -1.0, "worse", smoothing=0.0)) == (
        "with the noLS teacher, T=1 is better than T=4 (word-level KD)"
    )
    gain = readings.reading(_c("interaction", 0.37, "better"))
    assert gain.startswith(
        "the LS eps=0.1 teacher's students gain 0.37 more at T=4 than at T=1, relative to the noLS teacher's"
    )
    assert "this contradicts the paper's prediction" in gain
    lose = readings.reading(_c("interaction", -0.5, "worse"))
    assert "students lose 0.50 more at T=4" in lose and "this agrees with the paper's prediction" in lose
    open_ = readings.reading(_c("interaction", -0.5, "not resolved"))
    assert "neither confirms nor contradicts" in open_
    assert readings.reading(_c("KD - no KD", -2.0, "worse")) == (
        "the no-KD baseline beats KD from the LS eps=0.1 teacher (word-level KD, T=4)"
    )
    assert "a=" not in gain + lose


def test_answer_uses_adjusted_verdicts_and_starts_with_an_action():
    comps = [
        _c("LS - noLS", -1.2, "worse", "worse"),
        _c("KD - no KD", 3.0, "better", "not resolved"),  # resolved only before the adjustment
    ]
    text = readings.answer(comps, "sacreBLEU", "BLEU", 3, 2)
    assert text.startswith(
        "For word-level KD at T=4, distil from the noLS teacher: its student scores 1.20 BLEU higher."
    )
    assert "1 of the family of 2 sacreBLEU comparisons, Holm-adjusted" in text
    assert "KD from" not in text  # the comparison resolved only before the adjustment is not evidence


def test_nothing_resolved_gives_the_fixed_sentence_and_seeds_needed():
    comps = [_c("LS - noLS", 0.4, "better", "not resolved"), _c("T=k - T=1", 0.1, "not resolved")]
    comps[0]["sd"], comps[1]["sd"] = 0.3, 0.5
    text = readings.answer(comps, "top-1 (%)", "points", 2, 9)
    need = multiple.seeds_to_resolve_adjusted(0.4, 0.3, 9)
    assert text.startswith(
        "Nothing is resolved at this budget (2 seeds; the family of 9 top-1 (%) comparisons, Holm-adjusted): "
        f"no recommendation. About {need} seeds would be needed to resolve the clearest difference"
    )
    assert "1 comparison(s) are resolved before the adjustment" in text


def test_failed_checks_withhold_the_answer():
    comps = [_c("LS - noLS", -1.2, "worse", "worse")]
    text = readings.answer(comps, "sacreBLEU", "BLEU", 3, 1, ["Teachers' BLEU near 0: noLS 3.6 BLEU."])
    assert text.startswith("The budget is too small for an answer: Teachers' BLEU near 0: noLS 3.6 BLEU.")
    assert "No recommendation" in text and "distil" not in text


# -------------------------------------------------------------------------------------------- ETA
def test_eta_weighs_runs_by_modality_and_role():
    eta = Eta(jobs=1, default=60.0)
    assert eta.left([("image", "teacher")] * 2) == pytest.approx(120.0)  # the default before any finishes
    for s in (2.0, 4.0):
        eta.finished(("image", "student"), s)
    eta.finished(("translation", "teacher"), 50.0)
    assert eta.expected(("image", "student")) == pytest.approx(3.0)
    assert eta.expected(("image", "teacher")) == pytest.approx(3.0)  # same modality's mean
    assert eta.expected(("translation", "student")) == pytest.approx(50.0)
    pending = [("image", "student")] * 10 + [("translation", "student")] * 4
    assert eta.left(pending) == pytest.approx(10 * 3.0 + 4 * 50.0)
    # a translation student 20 s in: 30 s left for it
    assert eta.left(pending, [(("translation", "student"), 20.0)]) == pytest.approx(230.0 + 30.0)
    two = Eta(jobs=2)
    two.durations = eta.durations
    assert two.left(pending) == pytest.approx(115.0)
    assert two.left([], [(("translation", "teacher"), 5.0)]) == pytest.approx(45.0)  # longest remainder


def test_running_text_names_the_runs():
    assert running_text({}) == ""
    assert running_text({"a/x": 65.0, "b/y": 3.0, "c/z": 1.0, "d": 0.0}) == (
        "running a/x (1m05s), b/y (3s) and 2 more"
    )


# ---------------------------------------------------------------------------------------- figures
def test_figure_bars_and_bands_are_clipped_to_the_metrics_range(tmp_path):
    from lskd_plugins.study import figures, stats

    cells = {
        ("logit", 0.0, 1.0): {0: 99.0, 1: 40.0},  # t interval from 2 seeds: far past 0 and 100
        ("logit", 0.1, 1.0): {0: 60.0, 1: 62.0},
        ("logit", 0.0, 4.0): {0: 5.0, 1: 1.0},
        ("logit", 0.1, 4.0): {0: 50.0, 1: 52.0},
    }
    data = {
        "cells": cells,
        "teachers": {0.0: {0: 95.0, 1: 60.0}, 0.1: {0: 70.0, 1: 72.0}},
        "baseline": {0: 65.0},
    }
    drawn: list = []
    path = figures.plot_metric(
        data, [0.0, 0.1], [1.0, 4.0], ["logit"], "top1", "image", tmp_path / "f.png", "plain CE", drawn
    )
    assert path.is_file() and path.stat().st_size > 10000
    (panel,) = drawn
    assert len(panel["bars"]) == 4 and len(panel["bands"]) == 2  # two teachers' bands (one-seed baseline)
    for lo, hi in panel["bars"] + panel["bands"]:
        assert 0.0 <= lo <= hi <= 100.0
    s = stats.summary([99.0, 40.0])
    assert s["mean"] - s["half"] < 0 and s["mean"] + s["half"] > 100  # the raw interval runs past both ends
    assert (0.0, 100.0) in [tuple(round(v, 6) for v in b) for b in panel["bars"]]
    assert panel["ylim"][0] > -10 and panel["ylim"][1] < 110
    lo, hi, clipped = figures.clip(69.5, 221.0, "top1")
    assert (lo, hi, clipped) == (0.0, 100.0, True)
    assert figures.clip(50.0, 1.0, "top1") == (49.0, 51.0, False)
    assert figures.clip(0.2, 0.5, "nll") == (0.0, 0.7, True)


# --------------------------------------------------------------------------------------- messages
def test_unknown_option_names_its_section_and_the_closest_option():
    from lskd_plugins.study import messages

    sec = {"common": {"lr": 0.1}, "teacher": {"encoder-layer": 1}, "student": {}}
    valid = ["encoder-layers", "decoder-layers", "lr"]
    assert messages.unknown_option("translation", sec, "teacher", "--encoder-layer", valid) == (
        "translation.teacher: option 'encoder-layer' is not an option of the translation trainer; "
        "the closest is 'encoder-layers'"
    )
    sec = {"common": {"img_sise": 16}, "teacher": {}, "student": {}}
    text = messages.unknown_option("image", sec, "student", "--img-sise", ["img-size", "epochs"])
    assert text.startswith("image.common: option 'img-sise'") and text.endswith("the closest is 'img-size'")
    assert messages.unknown_option("image", sec, "student", "--zzz", ["epochs"]).endswith("image trainer")


def test_fairseqs_user_dir_line_is_dropped(caplog):
    import logging

    from lskd_plugins.study import messages

    messages.quiet_fairseq_user_dir()
    messages.quiet_fairseq_user_dir()  # once only
    logger = logging.getLogger("fairseq.utils")
    assert sum(isinstance(f, messages.DropUserDirRepeat) for f in logger.filters) == 1
    with caplog.at_level(logging.INFO, logger="fairseq.utils"):
        logger.info("--user-dir=/x/lskd_plugins has already been imported.")
        logger.info("another line")
    assert [r.getMessage() for r in caplog.records] == ["another line"]


def test_a_path_names_the_absolute_path_tried(tmp_path, monkeypatch):
    from lskd_plugins.study import messages

    monkeypatch.chdir(tmp_path)
    assert messages.tried("img3") == f"img3 (looked for at {tmp_path.resolve() / 'img3'})"
    assert messages.tried(tmp_path.resolve()) == str(tmp_path.resolve())


def test_progress_line_takes_the_estimate_and_names_the_runs():
    import io

    from lskd_plugins.progress import Progress

    eta = Eta(jobs=1)
    eta.finished(("translation", "teacher"), 50.0)
    running = {"translation/word_a0.1_T4_s1": 12.0}
    stream = io.StringIO()
    bar = Progress(
        4,
        "study",
        unit="run",
        interval=0,
        stream=stream,
        left=lambda: eta.left([("translation", "student")], [(("translation", "student"), 12.0)]),
        note=lambda: running_text(running),
    )
    bar.update(1)
    line = stream.getvalue().strip()
    assert line.startswith("study: 1/4 run (25%), ")
    assert line.endswith(", left 1m28s, running translation/word_a0.1_T4_s1 (12s)")  # 50 + (50 - 12)
    plain = Progress(4, "x", interval=0, stream=io.StringIO())
    plain.update(4)
    assert "left" not in plain.line()  # nothing left at the end
