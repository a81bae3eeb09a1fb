"""What a study costs (issue 19 item 4): ``cost:`` times the grid's runs, printed by --dry-run."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lskd_plugins.cli import main as lskd_main

REPO = Path(__file__).resolve().parents[1]


def dry_run_last_line(config: Path, out: Path, capsys) -> str:
    assert lskd_main(["study", str(config), "--output", str(out), "--dry-run"]) == 0
    return capsys.readouterr().out.strip().splitlines()[-1]


def test_paper_imagenet_dry_run_prints_runs_and_gpu_hours(tmp_path, capsys):
    line = dry_run_last_line(REPO / "recipes" / "study" / "paper_imagenet.yaml", tmp_path / "o", capsys)
    # 2 smoothings x 3 seeds teachers, 3 baselines, 2 x 4 temperatures x 3 seeds students, 3 analyses
    assert line == (
        "study (dry run): 36 runs; GPU-hours: image baseline 3 x 14 = 42; image diffusion 3 x 0.1 = 0.3; "
        "image logit 24 x 24 = 576; image teacher 6 x 14 = 84; total 702 GPU-hours "
        "(estimates: cost: in the configuration)"
    )


@pytest.mark.parametrize("name", ["paper_cub", "paper_iwslt14", "paper_wmt14"])
def test_every_paper_config_prices_every_run(tmp_path, capsys, name):
    config = REPO / "recipes" / "study" / f"{name}.yaml"
    line = dry_run_last_line(config, tmp_path / "o", capsys)
    assert "GPU-hours" in line and "not estimated" not in line
    header = config.read_text().split("\noutput:")[0]
    runs = int(line.split(": ")[1].split()[0])
    assert f"{runs} runs" in header.replace("\n# ", " ")  # the header states the same count


def test_without_cost_and_a_bad_cost(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"seeds": 1, "temperatures": [1], "image": {"diffusion": False}}))
    line = dry_run_last_line(path, tmp_path / "o", capsys)
    assert line == "study (dry run): 5 runs; GPU-hours: not estimated (no cost: in the configuration)"
    path.write_text(yaml.safe_dump({"cost": {"image": {"teachers": 1}}, "image": {}}))
    assert lskd_main(["study", str(path), "--output", str(tmp_path / "o"), "--dry-run"]) == 2
    said = capsys.readouterr().err.strip()
    assert said.startswith("lskd: error: ") and "cost" in said and "\n" not in said
