"""The study report written from constructed run folders (run.json, result.json and the tools' own
files, as the runs write them): adequacy warnings, Holm-adjusted verdicts, readings, labels and
figures, without training anything."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lskd_plugins.study import grid, readings, report
from lskd_plugins.study.config import load_config


def _cfg(tmp_path: Path, seeds: int = 2) -> dict:
    return load_config(
        {
            "seeds": seeds,
            "temperatures": [1, 4],
            "output": str(tmp_path / "out"),
            "image": {"diffusion": False},
            "translation": {"kinds": ["word"], "diffusion": False},
        }
    )


def _write(out: Path, run, metrics: dict, own_name: str, own: dict, hyp: list | None = None) -> None:
    folder = out / run.folder
    (folder / Path(own_name).parent).mkdir(parents=True, exist_ok=True)
    settings = {**run.as_dict(), "spec": run.spec, "command": ["lskd", "x"]}
    (folder / "run.json").write_text(json.dumps(settings, default=str))
    (folder / own_name).write_text(json.dumps(own))
    if hyp is not None:
        (folder / own_name.replace(".bleu.json", ".hyp")).write_text("\n".join(hyp) + "\n")
    result = {"key": run.key, "name": run.name, "metrics": metrics, "result_file": own_name, "seconds": 1.0}
    (folder / "result.json").write_text(json.dumps(result))


def _image_top1(run) -> float:
    """Healthy 3-class numbers: teachers ~90, students ~80 + a consistent LS effect, baseline 78."""
    if run.role == "teacher":
        return 90.0 + run.seed
    if run.role == "baseline":
        return 78.0 + run.seed
    return 80.0 + run.seed + (2.0 if run.teacher_smoothing else 0.0) - 0.5 * (run.temperature or 1)


def fake_study(tmp_path: Path, undertrained: bool, seeds: int = 2):
    cfg = _cfg(tmp_path, seeds)
    runs = grid.build_runs(cfg, {"image": "img", "translation": "mt"})
    out = Path(cfg["output"])
    for r in runs:
        if r.modality == "image":
            top1 = _image_top1(r)
            m = {"top1": top1, "top5": 100.0, "nll": 0.5, "ece": 0.05}
            _write(out, r, m, "train/summary.json", {**m, "num_classes": 3})
            continue
        if undertrained:  # the issue's study: 3.4-3.9 BLEU teachers, students looping 3.5x too long
            bleu = (3.4 + 0.5 * r.seed) if r.role == "teacher" else 0.7 + 0.1 * r.seed
            lens, hyp = (12965, 3741), ["white white white white dog"] * 7 + ["a dog runs"] * 3
        else:
            bleu = 30.0 + r.seed if r.role == "teacher" else 25.0 + r.seed + (r.temperature or 0) / 10
            lens, hyp = (3600, 3741), ["a dog runs on the grass"] * 10
        own = {"sacrebleu": {"score": bleu, "sys_len": lens[0], "ref_len": lens[1]}, "chrf": {"score": 20.0}}
        m = {"bleu": bleu, "chrf": 20.0 + bleu, "tokenized_bleu": bleu + 1}
        _write(out, r, m, "eval/test.bleu.json", own, hyp)
    folders = {r.name: str(out / r.folder) for r in runs}
    out.mkdir(parents=True, exist_ok=True)
    return cfg, runs, folders, out


def test_an_undertrained_translation_study_warns_and_recommends_nothing(tmp_path):
    cfg, runs, folders, out = fake_study(tmp_path, undertrained=True)
    doc = report.write_report(cfg, runs, folders, out)
    saved = json.loads((out / "report.json").read_text())
    tr = saved["modalities"]["translation"]
    assert tr["warnings"] == doc["modalities"]["translation"]["warnings"]
    text = " ".join(tr["warnings"])
    assert "Teachers' BLEU near 0: noLS 3.6 BLEU, LS eps=0.1 3.6 BLEU" in text
    assert "12965 / 3741 tokens = 3.47" in text
    assert "repeat a token 4+ times in a row" in text and "70%" in text
    assert tr["answer"].startswith("The budget is too small for an answer: Teachers' BLEU near 0")
    assert "No recommendation" in tr["answer"]
    assert all(c.get("inadequate_models") for c in tr["comparisons"]["bleu"])
    md = (out / "report.md").read_text()
    section = md.split("## Translation", 1)[1]
    assert section.lstrip().startswith("**Warning: the models are not adequate for an answer.**")
    assert "(inadequate models)" in section
    # the image section of the same study is healthy: no warnings, an answer
    im = saved["modalities"]["image"]
    assert im["warnings"] == [] and not im["answer"].startswith("The budget is too small")


def test_report_has_adjusted_verdicts_readings_and_honest_labels(tmp_path):
    cfg, runs, folders, out = fake_study(tmp_path, undertrained=False)
    report.write_report(cfg, runs, folders, out)
    saved = json.loads((out / "report.json").read_text())
    im = saved["modalities"]["image"]
    comps = im["comparisons"]["top1"]
    assert im["family_size"] == len(comps) == 9  # 2 LS-noLS, 1 interaction, 2 T, 4 KD-no-KD
    for c in comps:
        assert c["verdict_adjusted"] in ("better", "worse", "not resolved") and c["reading"]
        assert c["p_adjusted"] >= c["p"]
    ls = next(c for c in comps if c["group"] == "LS - noLS" and c["temperature"] == 1.0)
    assert ls["diffs"] == [2.0, 2.0] and ls["verdict"] == "better"  # sd 0: resolved, also adjusted
    assert ls["reading"] == "the LS eps=0.1 teacher gives the better student (logit KD, T=1)"
    assert im["answer"] == readings.answer([dict(c) for c in comps], "top-1 (%)", "top-1 points", 2, 9, [])
    md = (out / "report.md").read_text()
    assert "verdict, Holm-adjusted" in md and "one family of 9" in md
    assert "each interval rests on one degree of freedom" in md
    assert "a=" not in md and "α" not in md and readings.LEGEND in md
    # the baseline's label is its real loss, from the runs' own settings
    assert "no-KD baseline (same student, plain CE)" in md.split("## Translation")[0]
    assert "no-KD baseline (same student, label-smoothed CE, eps=0.1)" in md.split("## Translation")[1]
    # top-5 cannot differ with 3 classes: left out, one line says why
    assert "top5" not in im["tables"] and "top-5 is left out: with 3 classes" in md
    assert "### top-5" not in md
    assert (out / "image_top1_vs_T.png").is_file() and (out / "translation_bleu_vs_T.png").is_file()


@pytest.mark.parametrize("seeds", [1, 3])
def test_one_degree_of_freedom_is_said_only_for_two_seeds(tmp_path, seeds):
    cfg, runs, folders, out = fake_study(tmp_path, undertrained=False, seeds=seeds)
    report.write_report(cfg, runs, folders, out)
    md = (out / "report.md").read_text()
    assert "one degree of freedom" not in md
    assert ("one family of" in md) == (seeds > 1)  # one seed: no comparisons, no "family of 0"
    assert "family of 0" not in md


def test_the_study_progress_weighs_runs_by_their_sort(tmp_path):
    from lskd_plugins.study import execute

    cfg = _cfg(tmp_path)
    runs = grid.build_runs(cfg, {"image": "img", "translation": "mt"})
    eta = execute.Eta(jobs=1)
    image_teacher = next(r for r in runs if r.modality == "image" and r.role == "teacher")
    mt_student = next(r for r in runs if r.modality == "translation" and r.role == "student")
    execute.finished_run(eta, runs, image_teacher.name, {"seconds": 2.0}, None)
    execute.finished_run(eta, runs, mt_student.name, {"seconds": 40.0}, None)
    execute.finished_run(eta, runs, mt_student.name, None, 1.0)  # a failed run teaches nothing
    pending = {r.name: r for r in runs if r.role in ("teacher", "student")}
    expected = sum(2.0 if r.modality == "image" else 40.0 for r in pending.values())
    assert execute.time_left(eta, pending, {}, {}, runs) == pytest.approx(expected)
    bar = execute.study_progress({**cfg, "progress": False}, runs, 0, eta, pending, {mt_student.name: 0}, {})
    assert bar.line().endswith(f"running {mt_student.name} (0s)")


# ------------------------------------------------------------------------ messages (issue 21 item 6)
def _yaml(tmp_path: Path, doc: dict) -> Path:
    import yaml

    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_an_unknown_key_has_one_separator_and_a_suggestion(tmp_path, capsys):
    from cli_helpers import assert_fails_one_line

    path = _yaml(tmp_path, {"image": {}, "temperature": [1]})
    line = assert_fails_one_line(["study", str(path), "--output", str(tmp_path / "o")], capsys)
    assert f"{path}: unknown key 'temperature' (did you mean 'temperatures'?); known keys:" in line
    assert ": :" not in line
    path = _yaml(tmp_path, {"image": {"teacher_modle": "x"}})
    line = assert_fails_one_line(["study", str(path), "--output", str(tmp_path / "o")], capsys)
    assert f"{path}: image: unknown key 'teacher_modle' (did you mean 'teacher_model'?)" in line


def test_an_unknown_tool_option_names_its_section_and_the_closest_option(tmp_path, capsys):
    from cli_helpers import assert_fails_one_line

    doc = {"image": {"common": {"img-sise": 16}}}
    argv = ["study", str(_yaml(tmp_path, doc)), "--output", str(tmp_path / "o"), "--dry-run"]
    line = assert_fails_one_line(argv, capsys)
    assert line.endswith(
        "image.common: option 'img-sise' is not an option of the image trainer; the closest is 'img-size'"
    )
    doc = {"translation": {"common": {"arch": "transformer"}, "teacher": {"encoder-layer": 1}}}
    argv = ["study", str(_yaml(tmp_path, doc)), "--output", str(tmp_path / "o"), "--dry-run"]
    line = assert_fails_one_line(argv, capsys)
    assert line.endswith(
        "translation.teacher: option 'encoder-layer' is not an option of the translation trainer; "
        "the closest is 'encoder-layers'"
    )
    assert "has already been imported" not in capsys.readouterr().err


def test_a_relative_data_path_error_names_the_absolute_path_tried(tmp_path, capsys, monkeypatch):
    from cli_helpers import assert_fails_one_line

    monkeypatch.chdir(tmp_path)
    path = _yaml(tmp_path, {"image": {"data": "img3"}})
    line = assert_fails_one_line(["study", str(path), "--output", str(tmp_path / "o")], capsys)
    assert f"image.data: img3 (looked for at {tmp_path.resolve() / 'img3'}) not found" in line


# ----------------------------------------------------------------------------- dry run (item 5)
def _parse_line(line: str) -> None:
    """One printed line through the real parser of its command (fails on an unknown option)."""
    import shlex

    from lskd_plugins.cli import build_parser

    argv = shlex.split(line)
    if argv[0] == "lskd":
        build_parser(argv[1]).parse_args(argv[1:])
    elif argv[0] == "fairseq-train":
        from lskd_plugins.study.modalities.translation import fairseq_parse

        fairseq_parse(argv[1:])
    elif argv[0] == "fairseq-preprocess":
        from fairseq import options

        options.get_preprocessing_parser().parse_args(argv[1:])
    else:
        raise AssertionError(f"not a known command: {line}")


def test_dry_run_prints_commands_that_parse_as_real_commands(tmp_path, capsys):
    from lskd_plugins.cli import main as lskd_main

    recipe = Path(__file__).resolve().parents[1] / "recipes" / "study" / "quickstart.yaml"
    out = tmp_path / "out"
    assert lskd_main(["study", str(recipe), "--output", str(out), "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert not out.exists()
    lines = [line.strip() for line in text.splitlines() if line.startswith("    ")]
    assert lines[0].startswith("lskd digits --output ")  # the preparation comes first
    assert any(line.startswith("lskd synth-mt ") for line in lines[:3])
    assert any(line.startswith("fairseq-preprocess ") for line in lines[:3])
    assert "lskd diffusion translation" not in text and "..." not in text
    assert any(line.startswith("lskd diffusion nmt ") for line in lines)
    assert any(line.startswith("lskd bleu ") for line in lines)
    data_bin = f"{out}/data/synth/data-bin"
    assert any(line.startswith(f"fairseq-train {data_bin} ") for line in lines)
    parsed = 0
    for line in lines:
        if not line.startswith("#"):
            _parse_line(line)
            parsed += 1
    assert parsed > 20
