"""Teachers from timm's own files, TensorBoard logging, progress in a log, and the old option names."""

import argparse
import csv
import json
import subprocess

import pytest
import torch

from lskd_plugins.cli import main as lskd_main
from lskd_plugins.errors import LskdError
from lskd_plugins.image import train as train_module
from lskd_plugins.image.checkpoint import load_classifier, load_model
from tests import test_image_train as shared
from tests.cli_helpers import assert_fails_one_line

digits, few_threads, run_train = shared.digits, shared.few_threads, shared.run_train  # shared fixtures

FAST = ["--img-size", "16", "--aug", "none", "--batch-size", "64", "--lr", "0.05", "--workers", "0"]
FAST += ["--sched", "cosine", "--device", "cpu", "--limit-train", "256", "--limit-val", "100"]


@pytest.fixture(scope="module")
def lskd_teacher(digits, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "teacher"
    run_train(["--data", str(digits), "--output", str(out), "--model", "test_resnet", "--epochs", "2", *FAST])
    return out


@pytest.fixture(scope="module")
def timm_files(lskd_teacher, tmp_path_factory):
    """The lskd teacher's weights as timm's CheckpointSaver writes them, and as a bare state dict."""
    from timm.utils import CheckpointSaver

    folder = tmp_path_factory.mktemp("timm")
    model, _ = load_model(lskd_teacher / "checkpoint_last.pth")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    timm_args = argparse.Namespace(model="test_resnet", num_classes=10, smoothing=0.1)
    saver = CheckpointSaver(
        model, optimizer, args=timm_args, checkpoint_dir=str(folder), recovery_dir=str(folder)
    )
    saver.save_checkpoint(epoch=0, metric=1.0)
    torch.save(model.state_dict(), folder / "bare.pth")
    from safetensors.torch import save_file

    save_file(model.state_dict(), folder / "model.safetensors")
    files = {"saver": "model_best.pth.tar", "bare": "bare.pth", "safetensors": "model.safetensors"}
    return {**{k: folder / v for k, v in files.items()}, "model": model}


def test_timm_checkpoints_load_with_the_same_weights(timm_files):
    reference = timm_files["model"].state_dict()
    named = ((timm_files["saver"], None), (timm_files["bare"], "test_resnet"))
    for path, name in (*named, (timm_files["safetensors"], "test_resnet")):
        loaded = load_classifier(str(path), model_name=name)
        assert loaded.source == "timm-checkpoint" and loaded.model_name == "test_resnet"
        assert loaded.class_names is None and not loaded.model.training
        for key, value in loaded.model.state_dict().items():
            assert torch.equal(value, reference[key]), key


def test_timm_checkpoints_teach_and_evaluate(digits, timm_files, tmp_path, capsys):
    for kind, extra in (("saver", []), ("bare", ["--teacher-model", "test_resnet"])):
        out = tmp_path / kind
        run_train(
            ["--data", str(digits), "--output", str(out), "--model", "test_resnet", "--epochs", "1", *FAST]
            + ["--teacher-checkpoint", str(timm_files[kind]), "--kd-temperature", "2", *extra]
        )
        s = json.loads((out / "summary.json").read_text())
        assert (
            s["teacher"]["source"] == "timm-checkpoint" and s["label"] == "student T=2 from external teacher"
        )
    capsys.readouterr()
    argv = ["image-eval", "--checkpoint", str(timm_files["bare"]), "--data", str(digits), "--workers", "0"]
    assert lskd_main([*argv, "--model", "test_resnet", "--img-size", "16", "--crop-pct", "1"]) == 0
    bare = json.loads(capsys.readouterr().out)
    assert (
        lskd_main(["image-eval", "--checkpoint", str(timm_files["saver"]), *argv[3:], "--img-size", "16"])
        == 0
    )
    saver = json.loads(capsys.readouterr().out)
    assert bare["source"] == "timm-checkpoint" and bare["n"] == 360 and 0 <= bare["top1"] <= 100
    assert saver["top1"] == bare["top1"] and saver["nll"] == pytest.approx(bare["nll"])


def test_class_mismatch_is_one_line_naming_the_first_difference(digits, lskd_teacher, tmp_path, capsys):
    names = tmp_path / "classes.txt"
    names.write_text("\n".join(["0", "1", "2", "x", *map(str, range(4, 10))]) + "\n")
    line = assert_fails_one_line(
        ["image-eval", "--checkpoint", str(lskd_teacher / "checkpoint_last.pth"), "--data", str(digits)]
        + ["--class-file", str(names)],
        capsys,
        must_contain=["first difference at index 3: checkpoint '3', class file 'x'"],
    )
    assert "class" in line
    wrong_count = tmp_path / "nine.txt"
    wrong_count.write_text("\n".join(map(str, range(9))) + "\n")
    bare = lskd_teacher.parent / "bare.pth"
    torch.save(load_model(lskd_teacher / "checkpoint_last.pth")[0].state_dict(), bare)
    assert_fails_one_line(
        [
            "image-train",
            "--data",
            str(digits),
            "--output",
            str(tmp_path / "o"),
            "--teacher-checkpoint",
            str(bare),
        ]
        + ["--teacher-model", "test_resnet", "--teacher-class-file", str(names), *FAST],
        capsys,
        must_contain=["first difference at index 3: model 'x', data '3'"],
        unchanged=[bare],
    )


def test_fairseq_checkpoint_as_teacher_says_what_it_is(tmp_path):
    fake = tmp_path / "checkpoint_best.pt"
    torch.save({"model": {"w": torch.zeros(1)}, "cfg": {}, "optimizer_history": [], "extra_state": {}}, fake)
    with pytest.raises(LskdError, match="is a fairseq checkpoint .* expected an image classifier"):
        load_classifier(str(fake), model_name="test_resnet")


def test_pretrained_teacher_not_available_offline_is_one_line(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(LskdError, match="timm's weights for test_resnet are not available locally"):
        load_classifier(None, model_name="test_resnet", pretrained=True)


def test_pretrained_teacher_from_a_local_file(timm_files):
    loaded = load_classifier(str(timm_files["bare"]), model_name="test_resnet", pretrained=True)
    assert loaded.source == "timm-pretrained" and loaded.model.num_classes == 10
    assert torch.equal(loaded.model.fc.weight, timm_files["model"].fc.weight)


# ----------------------------------------------------------------------------- logging and progress
def test_tensorboard_events_hold_the_csv_scalars(digits, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out, tb = tmp_path / "run", tmp_path / "tb"
    run_train(
        ["--data", str(digits), "--output", str(out), "--model", "test_resnet", "--epochs", "2", *FAST]
        + ["--log-tensorboard", str(tb), "--no-progress"]
    )
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    events = EventAccumulator(str(tb))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert tags == set(rows[0]) - {"epoch"}
    for key in ("train_loss", "val_top1", "val_nll", "lr"):
        logged = [(e.step, e.value) for e in events.Scalars(key)]
        assert logged == [(int(r["epoch"]), pytest.approx(float(r[key]), rel=1e-6)) for r in rows]


def test_wandb_missing_is_one_line_before_any_work(digits, tmp_path, capsys):
    try:  # wandb is deliberately not installed in this stack
        import wandb  # noqa: F401

        pytest.skip("wandb is installed here")
    except ImportError:
        pass
    out = tmp_path / "w"
    assert_fails_one_line(
        ["image-train", "--data", str(digits), "--output", str(out), "--log-wandb", *FAST],
        capsys,
        must_contain=["--log-wandb: wandb is not installed"],
    )
    assert not out.exists() or not any(out.glob("*.pth"))


def test_no_carriage_return_bars_in_a_log(digits, tmp_path, cli_env):
    proc = subprocess.run(
        [
            "lskd",
            "image-train",
            "--data",
            str(digits),
            "--output",
            str(tmp_path / "r"),
            "--model",
            "test_resnet",
        ]
        + ["--epochs", "1", *FAST],
        capture_output=True,
        text=True,
        env=cli_env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "\r" not in proc.stdout + proc.stderr
    done = [line for line in proc.stderr.splitlines() if line.startswith("train: ")]
    assert done and "/4 batch (100%)" in done[-1]  # the whole job's progress, one line at the end
    checkpoint = tmp_path / "r" / "checkpoint_last.pth"
    ev = subprocess.run(
        ["lskd", "image-eval", "--checkpoint", str(checkpoint), "--data", str(digits), "--workers", "0"],
        capture_output=True,
        text=True,
        env=cli_env,
        timeout=300,
    )
    assert ev.returncode == 0 and "\r" not in ev.stderr and "eval: " in ev.stderr


# ----------------------------------------------------------------------------- one vocabulary
def test_old_option_names_still_work(digits, lskd_teacher, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    train_module.add_arguments(parser)
    base = ["--data", "d", "--output", "o"]
    new = parser.parse_args([*base, "--kd-alpha", "0.3", "--no-progress"])
    old = parser.parse_args([*base, "--kd-beta", "0.3", "--quiet"])
    assert (old.kd_alpha, old.no_progress) == (new.kd_alpha, new.no_progress) == (0.3, True)
    assert "--kd-beta" not in parser.format_help() and "--quiet" not in parser.format_help()
    report = tmp_path / "eval.json"
    ckpt = str(lskd_teacher / "checkpoint_last.pth")
    argv = ["image-eval", "--checkpoint", ckpt, "--data", str(digits), "--workers", "0", "--quiet"]
    assert lskd_main([*argv, "--output", str(report)]) == 0  # image-eval's old name for --output-file
    assert json.loads(report.read_text())["n"] == 360
    assert lskd_main(["digits", "--out", str(tmp_path / "dg")]) == 0
    assert (tmp_path / "dg" / "train" / "0").is_dir()


def test_every_image_option_states_its_default():
    for module in ("train", "evaluate", "digits"):
        parser = argparse.ArgumentParser()
        __import__(f"lskd_plugins.image.{module}", fromlist=["x"]).add_arguments(parser)
        for action in parser._actions:
            if action.help in (None, argparse.SUPPRESS) or action.dest == "help":
                continue
            assert "default" in action.help or "required" in action.help or action.required, (
                module,
                action.option_strings,
            )
