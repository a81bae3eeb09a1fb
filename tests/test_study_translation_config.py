"""A translation section without a model architecture (issue 19): one line naming the key and the
fix, in a dry run and a real run alike, instead of fairseq's bare RuntimeError traceback."""

from __future__ import annotations

import yaml

from lskd_plugins.cli import main as lskd_main

SECTION = {
    "data": "synth",
    "kinds": ["word"],
    "common": {"encoder-layers": 1, "decoder-layers": 1, "optimizer": "adam", "lr": 0.005},
    "teacher": {"max-update": 4},
    "student": {"max-update": 4},
    "diffusion": False,
}


def study(tmp_path, **parts):
    doc = {"seeds": 1, "temperatures": [1, 2], "device": "cpu", "image": None}
    doc["translation"] = {**SECTION, **parts}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def test_no_arch_is_one_line_naming_the_key_and_the_fix(tmp_path, capsys):
    out = tmp_path / "out"
    config = study(tmp_path)
    for extra in (["--dry-run"], ["--no-progress"]):
        assert lskd_main(["study", config, "--output", str(out), *extra]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [
            f"lskd: error: {config}: translation: no 'arch' for the teachers (fairseq-train's --arch); "
            "add it to translation.common (or translation.teacher), e.g. arch: transformer "
            "(transformer_iwslt_de_en: the paper's IWSLT model)"
        ]
        assert not out.exists()
    # the teachers' own arch is not the students'
    config = study(tmp_path, teacher={"max-update": 4, "arch": "transformer"})
    assert lskd_main(["study", config, "--output", str(out), "--dry-run"]) == 2
    assert "no 'arch' for the students" in capsys.readouterr().err


def test_an_arch_in_common_serves_both_roles(tmp_path, capsys):
    config = study(tmp_path, common={**SECTION["common"], "arch": "transformer"})
    assert lskd_main(["study", config, "--output", str(tmp_path / "out"), "--dry-run"]) == 0
    said = capsys.readouterr().out
    assert said.count("--arch transformer") >= 3  # the teachers, the baseline, the students
