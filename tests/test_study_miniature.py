"""``lskd study --miniature`` (issue 19): the miniature raw data sets in each paper configuration's
native layout, read by the real preparation step; timm's pretrained weights from a local cache;
the configuration's rewrite and its printed replacements."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from lskd_plugins.study.miniature import raw

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------- layouts
def test_imagenet_layout_is_an_imagefolder_with_the_wnid_classes(tmp_path):
    from lskd_plugins.image import data as image_data

    root = raw.write_imagenet(tmp_path / "imagenet", train=3, val=2, size=24)
    for split, n in (("train", 3), ("val", 2)):
        ds = image_data.image_folder(root / split, None)
        assert ds.classes == sorted(raw.IMAGENET_WNIDS)
        assert len(ds) == n * len(raw.IMAGENET_WNIDS)
    assert (root / "train" / "n02113712" / "n02113712_1.JPEG").is_file()
    val_names = sorted(p.name for p in (root / "val").rglob("*.JPEG"))
    assert val_names[0] == "ILSVRC2012_val_00000001.JPEG" and len(val_names) == 10
    from PIL import Image

    with Image.open(root / "train" / "n01440764" / "n01440764_2.JPEG") as im:
        assert im.format == "JPEG" and im.size == (24, 24) and im.mode == "RGB"


def prepare_cub(source: Path, out: Path, cli_env) -> str:
    """data_prep/prepare_cub.py as the paper_cub configuration runs it."""
    cmd = ["python", str(REPO / "data_prep" / "prepare_cub.py"), "--source", str(source)]
    cmd += ["--output", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=cli_env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.strip()


def test_cub_tarball_and_its_folder_are_read_by_prepare_cub(tmp_path, cli_env):
    import tarfile

    tgz = raw.write_cub(tmp_path / "src", classes=raw.CUB_CLASSES[:3], train=4, test=2, size=16)
    assert tgz.name == "CUB_200_2011.tgz"
    said = prepare_cub(tgz, tmp_path / "cub", cli_env)
    assert said == f"cub: 12 train / 6 val images in {tmp_path / 'cub'}"
    assert sorted(p.name for p in (tmp_path / "cub" / "train").iterdir()) == list(raw.CUB_CLASSES[:3])
    assert len(list((tmp_path / "cub" / "val" / raw.CUB_CLASSES[2]).iterdir())) == 2
    with tarfile.open(tgz) as tar:
        names = tar.getnames()
        tar.extractall(tmp_path / "extracted", filter="data")
    for table in ("images.txt", "train_test_split.txt", "image_class_labels.txt", "classes.txt"):
        assert f"CUB_200_2011/{table}" in names
    assert prepare_cub(tmp_path / "extracted", tmp_path / "cub2", cli_env).startswith("cub: 12 train / 6 val")
    labels = (tmp_path / "extracted" / "CUB_200_2011" / "image_class_labels.txt").read_text().split()
    assert labels[:2] == ["1", "1"] and labels[-2:] == ["18", "3"]


def run_script(script: str, raw_dir: Path, out: Path, cli_env) -> dict:
    proc = subprocess.run(
        ["bash", str(REPO / "data_prep" / script), "--raw-dir", str(raw_dir), "--output", str(out)]
        + ["--no-progress"],
        capture_output=True,
        text=True,
        env=cli_env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads((out / "prepare.json").read_text())


@pytest.mark.fairseq
def test_iwslt14_raw_folder_is_read_by_prepare_iwslt14(tmp_path, cli_env):
    rawdir = raw.write_iwslt14(tmp_path / "raw", train=46, test=3)
    assert (rawdir / "de-en" / "train.tags.de-en.de").is_file()
    stamp = run_script("prepare_iwslt14.sh", rawdir, tmp_path / "out", cli_env)
    # every 23rd training pair is held out as valid; the five dev/tst files make the test set
    assert {k: v["lines"] for k, v in stamp["lines"].items()} == {"train": 44, "valid": 2, "test": 15}
    text = tmp_path / "out" / "text"
    pairs = raw.iwslt_train_pairs(46)
    assert (text / "valid.de").read_text().splitlines() == [pairs[22][1], pairs[45][1]]
    assert len(pairs[22][1].split()) > 2 * len(raw.sentence_pairs(46, "train")[22][1].split())
    assert (text / "train.en").read_text().splitlines()[0] == pairs[0][0]
    first_test = raw.sentence_pairs(3, "test0")
    assert (text / "test.de").read_text().splitlines()[:3] == [p[1] for p in first_test]
    assert not any("<" in line for line in (text / "train.de").read_text().splitlines())


@pytest.mark.fairseq
def test_wmt14_raw_folder_is_read_by_prepare_wmt14(tmp_path, cli_env):
    rawdir = raw.write_wmt14(tmp_path / "raw", train=6, dev=3, test=2)
    stamp = run_script("prepare_wmt14_en_de.sh", rawdir, tmp_path / "out", cli_env)
    lines = {k: v["lines"] for k, v in stamp["lines"].items()}
    assert lines["valid"] == 3 and lines["test"] == 2 and 1 <= lines["train"] <= 18
    text = tmp_path / "out" / "text"
    assert (text / "test.en").read_text().splitlines() == [p[0] for p in raw.sentence_pairs(2, "test")]
    assert (text / "valid.de").read_text().splitlines() == [p[1] for p in raw.sentence_pairs(3, "valid")]
    assert (tmp_path / "out" / "data-bin" / "test_sets.tsv").read_text() == "test\tnewstest2014\n"


# ------------------------------------------------------------------------------------- weights
def test_pretrained_weights_come_from_the_local_cache_through_timm(tmp_path, monkeypatch):
    import huggingface_hub.constants as hf
    import safetensors.torch
    import timm
    import torch

    from lskd_plugins.errors import LskdError
    from lskd_plugins.study.miniature import weights

    cache = tmp_path / "hf"
    want = cache / "models--timm--resnet18.tv_in1k" / "snapshots" / weights.REVISION / "model.safetensors"
    with pytest.raises(LskdError) as err:
        weights.check_cached(cache, "resnet18.tv_in1k")
    assert str(want) in str(err.value) and "\n" not in str(err.value)
    assert weights.write_cached_weights(cache, "resnet18.tv_in1k") == want
    assert (want.parents[2] / "refs" / "main").read_text() == weights.REVISION
    for name in ("HF_HUB_CACHE", "HF_HUB_OFFLINE"):
        monkeypatch.setenv(name, "")
        monkeypatch.setattr(hf, name, getattr(hf, name))
    weights.use_offline_cache(cache)
    model = timm.create_model("resnet18.tv_in1k", pretrained=True, num_classes=7)
    saved = safetensors.torch.load_file(str(want))
    assert torch.equal(model.conv1.weight, saved["conv1.weight"]) and model.fc.out_features == 7
    with pytest.raises(Exception, match="cannot find the requested files in the local cache"):
        timm.create_model("resnet34", pretrained=True)  # offline: nothing is downloaded


# ------------------------------------------------------------------------------------- rewrite
def paper(name: str) -> dict:
    import yaml

    return yaml.safe_load((REPO / "recipes" / "study" / f"{name}.yaml").read_text())


def test_iwslt14_miniature_keeps_the_model_and_replaces_the_raw_input(tmp_path):
    from lskd_plugins.study.miniature.rewrite import NOTE, miniature_doc

    doc = {**paper("paper_iwslt14"), "output": str(tmp_path / "runs" / "paper_iwslt14")}
    mini, lines = miniature_doc(doc, dry_run=True)
    out = tmp_path / "runs" / "paper_iwslt14-miniature"
    assert mini["output"] == str(out)
    assert lines == [
        NOTE,
        f"output: {doc['output']} -> {out}",
        "device: cuda -> cpu (no GPU in a miniature)",
        "translation.common.fp16: true -> off (CUDA only; the miniature runs on CPU)",
    ]
    sec, rawdir = mini["translation"], str(out / "raw" / "iwslt14")
    assert sec["prepare"]["inputs"] == [rawdir]
    assert sec["prepare"]["command"][sec["prepare"]["command"].index("--raw-dir") + 1] == rawdir
    assert sec["prepare"]["command"][-1] == "{output}/data/iwslt14"  # the rest runs unchanged
    assert sec["common"]["max-update"] == 2 and sec["common"]["fp16"] is False
    assert sec["common"]["max-tokens"] == 256  # batches of a few sentences, not the paper's 4096 tokens
    # no diffusion key: the section's default analysis, at the miniature's size (not 500 sentences)
    assert "diffusion" not in doc["translation"] and sec["diffusion"] == {"max_sentences": 40, "per_token": 4}
    assert sec["common"]["arch"] == "transformer_iwslt_de_en" and sec["common"]["encoder-embed-dim"] == 256
    assert sec["kinds"] == ["word", "seq", "seqword"] and sec["max_len_b"] == 10
    assert mini["seeds"] == 1 and mini["temperatures"] == [1, 2] and mini["teacher_smoothing"] == [0.0, 0.1]
    assert not out.exists()  # a dry run writes nothing


def test_cub_miniature_writes_the_tarball_and_pretrained_weights(tmp_path, monkeypatch):
    import huggingface_hub.constants as hf

    from lskd_plugins.study.miniature import weights
    from lskd_plugins.study.miniature.rewrite import miniature_doc

    for name in ("HF_HUB_CACHE", "HF_HUB_OFFLINE"):
        monkeypatch.setenv(name, "")
        monkeypatch.setattr(hf, name, getattr(hf, name))
    doc = {**paper("paper_cub"), "output": str(tmp_path / "cub")}
    doc["launcher"] = "slurm"
    mini, lines = miniature_doc(doc, explicit_output=True)
    cache = tmp_path / "cub" / "hf-cache"
    assert lines[1:] == [
        "device: cuda -> cpu (no GPU in a miniature)",
        "launcher: slurm -> submitit-local (submitit's local executor; the slurm: parameters were checked "
        "by submitit's SLURM executor)",
        "image.data: data/cub -> {output}/data/cub (the miniature's own prepared data)",
        "image.common.amp: true -> off (CUDA only; the miniature runs on CPU)",
        f"pretrained: resnet18.tv_in1k's timm weights: random ones made for the miniature, read offline "
        f"from {weights.cache_path(cache, 'resnet18.tv_in1k')}",
    ]
    sec = mini["image"]
    tgz = tmp_path / "cub" / "raw" / "cub" / "CUB_200_2011.tgz"
    assert sec["prepare"]["inputs"] == [str(tgz)] and tgz.is_file()
    assert sec["teacher_model"] == "resnet50" and sec["student_model"] == "resnet18.tv_in1k"
    assert sec["common"]["img-size"] == 32 and sec["teacher"]["epochs"] == sec["student"]["epochs"] == 1
    assert mini["launcher"] == "submitit-local" and mini["slurm"] == doc["slurm"]
    assert weights.check_cached(cache, "resnet18.tv_in1k").is_file()
    import os

    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["HF_HUB_CACHE"] == str(cache.resolve())


def test_slurm_parameters_are_checked_by_submitit(tmp_path):
    from lskd_plugins.errors import LskdError
    from lskd_plugins.study.miniature.rewrite import check_slurm, miniature_doc

    script = check_slurm({"slurm_partition": "gpu", "gpus_per_node": 8, "timeout_min": 60})
    assert "#SBATCH --gpus-per-node=8" in script and "#SBATCH --partition=gpu" in script
    doc = {**paper("paper_wmt14"), "output": str(tmp_path / "w"), "slurm": {"gpu_per_node": 1}}
    with pytest.raises(LskdError, match="slurm: 'gpu_per_node' is not a parameter of submitit's SLURM"):
        miniature_doc(doc, dry_run=True)


def test_devices_per_run_becomes_two_gloo_processes(tmp_path):
    from lskd_plugins.errors import LskdError
    from lskd_plugins.study.miniature.rewrite import miniature_doc

    doc = {**paper("paper_imagenet"), "output": str(tmp_path / "i"), "devices_per_run": 8}
    mini, lines = miniature_doc(doc, dry_run=True)  # the local launcher: slurm: as it is
    assert mini["devices_per_run"] == 2 and mini.get("launcher", "local") == "local"
    assert "devices_per_run: 8 -> 2 (gloo processes on the CPU: the same distributed path)" in lines
    doc["launcher"] = "slurm"  # one SLURM job per run asks for the run's 8 GPUs
    with pytest.raises(LskdError, match="slurm: gpus_per_node 1 is fewer than devices_per_run 8; give 8"):
        miniature_doc(doc, dry_run=True)
    doc["slurm"] = {**doc["slurm"], "gpus_per_node": 8}
    assert miniature_doc(doc, dry_run=True)[0]["launcher"] == "submitit-local"


@pytest.mark.parametrize("config", sorted(p.name for p in (REPO / "recipes" / "study").glob("*.yaml")))
def test_every_shipped_config_has_a_miniature(tmp_path, capsys, config):
    """The dry run of each miniature (CI runs them for real: lskd_plugins.study.miniature.every)."""
    from lskd_plugins.cli import main as lskd_main
    from lskd_plugins.study.miniature.rewrite import NOTE

    out = tmp_path / "m"
    argv = ["study", str(REPO / "recipes" / "study" / config), "--miniature", "--dry-run"]
    argv += ["--output", str(out)]
    assert lskd_main(argv) == 0
    said = capsys.readouterr().out
    assert f"miniature: {NOTE}" in said and not out.exists()
    assert "--device cuda" not in said and " --amp" not in said and "--fp16" not in said
    assert "_s1" not in said  # one seed
