"""lskd image-train / image-eval end to end on tiny timm models (CPU): digits always, CIFAR-10
subsets from ../shared/data where present; resume, torchrun (gloo) and the user-facing errors."""

import argparse
import json
import math
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from lskd_plugins.cli import main as lskd_main
from lskd_plugins.errors import LskdError
from lskd_plugins.image import train as train_module
from lskd_plugins.image.checkpoint import load_model, read_checkpoint
from lskd_plugins.image.digits import write_digits

REPO = Path(__file__).resolve().parents[1]


def tiny(model="test_resnet", aug="none", batch_size=64):
    """A tiny timm model at 16x16 on the 8x8 digits: about a second per epoch on one CPU core."""
    return [
        "--model",
        model,
        "--img-size",
        "16",
        "--aug",
        aug,
        "--batch-size",
        str(batch_size),
        "--lr",
        "0.05",
        "--sched",
        "cosine",
        "--workers",
        "0",
        "--quiet",
    ]


TINY = tiny()


def run_train(argv):
    parser = argparse.ArgumentParser()
    train_module.add_arguments(parser)
    return train_module.main(parser.parse_args(argv))


def summary(out: Path):
    return json.loads((out / "summary.json").read_text())


@pytest.fixture(scope="module", autouse=True)
def few_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # the test machine's cores are shared
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    root = tmp_path_factory.mktemp("digits")
    write_digits(root)
    return root


@pytest.fixture(scope="module")
def digits_teacher(digits, tmp_path_factory):
    """An LS teacher (alpha = 0.1) on the digits, 4 epochs."""
    out = tmp_path_factory.mktemp("runs") / "teacher_a0.1"
    run_train(["--data", str(digits), "--output", str(out), "--smoothing", "0.1", "--epochs", "4", *TINY])
    return out


# ----------------------------------------------------------------------------- teacher and student
def test_teacher_trains_above_chance_and_writes_self_describing_files(digits_teacher):
    s = summary(digits_teacher)
    assert s["label"] == "teacher alpha=0.1"
    assert s["top1"] > 80.0  # chance: 10 %
    assert 0 <= s["ece"] <= 1 and s["nll"] > 0 and s["top5"] >= s["top1"]
    assert s["args"]["smoothing"] == 0.1 and s["n_val"] == 360 and s["epochs"] == 4
    rows = (digits_teacher / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("epoch,lr,train_loss") and len(rows) == 5
    assert float(rows[-1].split(",")[6]) == pytest.approx(s["top1"])  # val_top1 of the last epoch
    ckpt = read_checkpoint(digits_teacher / "checkpoint_last.pth")
    assert ckpt["model_name"] == "test_resnet" and ckpt["num_classes"] == 10
    assert ckpt["class_names"] == [str(i) for i in range(10)]
    assert ckpt["data_config"]["input_size"] == (3, 16, 16) and ckpt["epoch"] == 4
    assert ckpt["label"] == "teacher alpha=0.1" and "optimizer" in ckpt
    best = read_checkpoint(digits_teacher / "checkpoint_best.pth")
    assert best["epoch"] == s["best_epoch"] and "optimizer" not in best


def test_student_distils_from_the_teacher(digits, digits_teacher, tmp_path):
    out = tmp_path / "student"
    run_train(
        [
            "--data",
            str(digits),
            "--output",
            str(out),
            "--epochs",
            "4",
            *tiny("test_efficientnet"),
            "--teacher-checkpoint",
            str(digits_teacher / "checkpoint_last.pth"),
            "--kd-temperature",
            "3",
        ]
    )
    s = summary(out)
    assert s["label"] == "student T=3 from LS teacher"
    assert s["top1"] > 60.0
    assert s["teacher"]["model"] == "test_resnet" and s["teacher"]["smoothing"] == 0.1
    rows = [r.split(",") for r in (out / "metrics.csv").read_text().splitlines()]
    assert all(float(r[rows[0].index("train_kd")]) > 0 for r in rows[1:])
    # The checkpoint holds the student alone and rebuilds from itself.
    model, ckpt = load_model(out / "checkpoint_last.pth")
    assert ckpt["model_name"] == "test_efficientnet" and ckpt["args"]["kd_temperature"] == 3.0
    fresh = __import__("timm").create_model("test_efficientnet", num_classes=10)
    assert set(ckpt["state_dict"]) == set(fresh.state_dict())


def test_image_eval_reproduces_the_summary(digits, digits_teacher, capsys):
    assert (
        lskd_main(
            [
                "image-eval",
                "--checkpoint",
                str(digits_teacher / "checkpoint_last.pth"),
                "--data",
                str(digits),
                "--workers",
                "0",
            ]
        )
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    s = summary(digits_teacher)
    assert report["top1"] == pytest.approx(s["top1"]) and report["top5"] == pytest.approx(s["top5"])
    assert report["nll"] == pytest.approx(s["nll"], rel=1e-5) and report["ece"] == pytest.approx(
        s["ece"], abs=1e-6
    )
    assert report["label"] == "teacher alpha=0.1" and report["n"] == 360


# ----------------------------------------------------------------------------- CIFAR-10 subset
@pytest.fixture(scope="module")
def cifar3(shared_data, tmp_path_factory):
    source = shared_data / "cifar10" / "cifar10-jpeg.zip"
    if not source.is_file():
        pytest.skip(f"{source} absent")
    import importlib.util

    spec = importlib.util.spec_from_file_location("prepare_cifar", REPO / "data_prep" / "prepare_cifar.py")
    prepare_cifar = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(prepare_cifar)
    root = tmp_path_factory.mktemp("cifar3")
    prepare_cifar.prepare(source, root, classes="cat,dog,airplane", per_class=200, val_per_class=100)
    return root


def test_cifar_subset_teacher_and_student(cifar3, tmp_path):
    common = [
        "--data",
        str(cifar3),
        "--model",
        "test_resnet",
        "--img-size",
        "32",
        "--aug",
        "cifar",
        "--epochs",
        "6",
        "--batch-size",
        "64",
        "--lr",
        "0.05",
        "--sched",
        "cosine",
        "--weight-decay",
        "5e-4",
        "--workers",
        "0",
        "--quiet",
    ]
    run_train([*common, "--output", str(tmp_path / "t"), "--smoothing", "0.1"])
    teacher = summary(tmp_path / "t")
    assert teacher["num_classes"] == 3 and teacher["n_train"] == 600 and teacher["n_val"] == 300
    assert teacher["top1"] > 50.0  # chance: 33.3 %
    run_train(
        [
            *common,
            "--output",
            str(tmp_path / "s"),
            "--kd-temperature",
            "1",
            "--teacher-checkpoint",
            str(tmp_path / "t" / "checkpoint_last.pth"),
        ]
    )
    student = summary(tmp_path / "s")
    assert student["label"] == "student T=1 from LS teacher"
    assert student["top1"] > 45.0
    print(f"\ncifar3 teacher top1 {teacher['top1']:.2f}, student T=1 top1 {student['top1']:.2f}")


# ----------------------------------------------------------------------------- resume
def test_resume_gives_the_same_weights_as_an_uninterrupted_run(digits, digits_teacher, tmp_path):
    # Random augmentation (pad-and-crop, flips) and a KD teacher: every random stream is exercised.
    args = [
        "--data",
        str(digits),
        "--epochs",
        "3",
        "--limit-train",
        "320",
        "--limit-val",
        "100",
        *tiny(aug="cifar"),
        "--sched",
        "step",
        "--warmup-epochs",
        "1",
        "--decay-epochs",
        "2",
        "--teacher-checkpoint",
        str(digits_teacher / "checkpoint_last.pth"),
        "--kd-temperature",
        "2",
    ]
    run_train([*args, "--output", str(tmp_path / "a")])
    run_train([*args, "--output", str(tmp_path / "b"), "--stop-after", "1"])
    assert read_checkpoint(tmp_path / "b" / "checkpoint_last.pth")["epoch"] == 1
    assert not (tmp_path / "b" / "summary.json").exists()
    run_train([*args, "--output", str(tmp_path / "b"), "--resume"])
    a = read_checkpoint(tmp_path / "a" / "checkpoint_last.pth")
    b = read_checkpoint(tmp_path / "b" / "checkpoint_last.pth")
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key in a["state_dict"]:
        assert torch.equal(a["state_dict"][key], b["state_dict"][key]), key
    for pa, pb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert torch.equal(pa["momentum_buffer"], pb["momentum_buffer"])
    strip = lambda rows: [{k: v for k, v in r.items() if k != "time_s"} for r in rows]  # noqa: E731
    assert strip(a["history"]) == strip(b["history"])
    assert summary(tmp_path / "a")["top1"] == summary(tmp_path / "b")["top1"]
    # A finished run resumed again changes nothing.
    run_train([*args, "--output", str(tmp_path / "b"), "--resume"])
    assert read_checkpoint(tmp_path / "b" / "checkpoint_last.pth")["epoch"] == 3


# ----------------------------------------------------------------------------- torchrun
def test_two_process_gloo_run(digits, tmp_path, cli_env):
    out = tmp_path / "ddp"
    torchrun = shutil.which("torchrun", path=cli_env["PATH"])
    proc = subprocess.run(
        [
            torchrun,
            "--standalone",
            "--nproc_per_node=2",
            "--no-python",
            "lskd",
            "image-train",
            "--data",
            str(digits),
            "--output",
            str(out),
            "--epochs",
            "2",
            "--device",
            "cpu",
            *tiny(batch_size=32),
        ],
        capture_output=True,
        text=True,
        env=cli_env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p for p in os.listdir(out) if not p.startswith(".")) == [
        "checkpoint_best.pth",
        "checkpoint_last.pth",
        "metrics.csv",
        "summary.json",
    ]
    assert proc.stdout.count("wrote ") == 1  # only rank 0 writes
    s = summary(out)
    assert s["world_size"] == 2 and s["n_val"] == 360
    ckpt = read_checkpoint(out / "checkpoint_last.pth")
    assert not any(k.startswith("module.") for k in ckpt["state_dict"])
    # Metrics summed over both ranks equal a single-process evaluation of the saved weights.
    model, _ = load_model(out / "checkpoint_last.pth")
    from lskd_plugins.image import data as image_data
    from lskd_plugins.image.evaluate import evaluate

    val = image_data.image_folder(
        digits / "val", image_data.build_transform(ckpt["data_config"], "none", False)
    )
    result = evaluate(model, torch.utils.data.DataLoader(val, batch_size=100), torch.device("cpu"))
    assert result["top1"] == pytest.approx(s["top1"]) and result["nll"] == pytest.approx(s["nll"], rel=1e-5)


# ----------------------------------------------------------------------------- errors
def test_data_without_train_folder(tmp_path):
    (tmp_path / "d" / "val" / "a").mkdir(parents=True)
    with pytest.raises(
        LskdError, match=r"--data .*/d has no train/ folder; expected .*/d/train/<class>/<image>"
    ):
        run_train(["--data", str(tmp_path / "d"), "--output", str(tmp_path / "o"), *TINY])


def test_teacher_with_another_class_count(digits, digits_teacher, tmp_path):
    three = tmp_path / "three"
    for split in ("train", "val"):
        for c in "012":
            shutil.copytree(digits / split / c, three / split / c)
    with pytest.raises(LskdError) as err:
        run_train(
            [
                "--data",
                str(three),
                "--output",
                str(tmp_path / "o"),
                *TINY,
                "--teacher-checkpoint",
                str(digits_teacher / "checkpoint_last.pth"),
            ]
        )
    assert "predicts 10 classes but" in str(err.value) and "has 3 class folders" in str(err.value)
    assert "use the data the model was trained on" in str(err.value)
    from lskd_plugins.image import evaluate as evaluate_module

    parser = argparse.ArgumentParser()
    evaluate_module.add_arguments(parser)
    eval_args = parser.parse_args(
        ["--checkpoint", str(digits_teacher / "checkpoint_last.pth"), "--data", str(three), "--workers", "0"]
    )
    with pytest.raises(LskdError, match=r"last.pth predicts 10 classes but .*three/val has 3 class"):
        evaluate_module.main(eval_args)


def test_run_folder_and_argument_errors(digits, digits_teacher, tmp_path):
    out = tmp_path / "o"
    base = [
        "--data",
        str(digits),
        "--output",
        str(out),
        "--epochs",
        "1",
        "--limit-train",
        "64",
        "--limit-val",
        "20",
        *TINY,
    ]
    run_train(base)
    with pytest.raises(LskdError, match="already holds checkpoint_last.pth; pass --resume"):
        run_train(base)
    with pytest.raises(LskdError, match=r"trained with other arguments \(--lr 0.05 -> 0.1\)"):
        run_train([*base, "--resume", "--lr", "0.1"])
    with pytest.raises(LskdError, match="--kd-temperature/--kd-alpha need --teacher-checkpoint"):
        run_train([*base, "--output", str(tmp_path / "x"), "--kd-temperature", "2"])
    with pytest.raises(LskdError, match="'resnet_nope' is not a timm model"):
        run_train([*base, "--output", str(tmp_path / "y"), "--model", "resnet_nope"])
    with pytest.raises(LskdError, match="checkpoint not found"):
        run_train(
            [*base, "--output", str(tmp_path / "z"), "--teacher-checkpoint", str(tmp_path / "none.pth")]
        )


def test_amp_on_cpu_trains_and_saves_float32_weights(digits, tmp_path):
    out = tmp_path / "amp"
    run_train(
        [
            "--data",
            str(digits),
            "--output",
            str(out),
            "--epochs",
            "1",
            "--limit-train",
            "128",
            "--limit-val",
            "50",
            "--amp",
            *TINY,
            # far from the edge of stability: bfloat16 keeps 8 bits of mantissa, and this test is about
            # the dtypes of what is saved, not about how fast a large step learns
            "--lr",
            "0.01",
        ]
    )
    s = summary(out)
    assert s["args"]["amp"] is True and 0 <= s["top1"] <= 100 and math.isfinite(s["nll"])
    state = read_checkpoint(out / "checkpoint_last.pth")["state_dict"]
    assert all(v.dtype == torch.float32 for v in state.values() if v.is_floating_point())


def test_cli_error_is_one_line(tmp_path, cli_env):
    proc = subprocess.run(
        ["lskd", "image-train", "--data", str(tmp_path / "absent"), "--output", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        env=cli_env,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"lskd: error: --data {tmp_path / 'absent'}: no such directory "
        "(expected an ImageFolder root with train/ and val/)"
    ]


def test_pretrained_checkpoint_reinitialises_another_classifier(digits_teacher):
    import timm

    model = timm.create_model("test_resnet", num_classes=3)
    head_before = model.fc.weight.clone()
    message = train_module.load_initial_weights(model, str(digits_teacher / "checkpoint_last.pth"))
    assert message.endswith("(classifier re-initialised)")
    teacher = read_checkpoint(digits_teacher / "checkpoint_last.pth")["state_dict"]
    body = [k for k in teacher if not k.startswith("fc.")]
    assert body and all(torch.equal(model.state_dict()[k], teacher[k]) for k in body)
    assert torch.equal(model.fc.weight, head_before)
    other = timm.create_model("test_efficientnet", num_classes=3)
    with pytest.raises(
        LskdError, match="--pretrained-checkpoint .* (does not fit the model|is for another architecture)"
    ):
        train_module.load_initial_weights(other, str(digits_teacher / "checkpoint_last.pth"))


# ----------------------------------------------------------------------------- recipes
def test_recipe_quick_run_and_skip(digits, tmp_path, cli_env):
    """recipes/image/cifar10.sh through the study engine: DATA replaces the recipe's CIFAR preparation,
    QUICK_ARGS win over the config, and a rerun trains nothing."""
    env = dict(
        cli_env,
        DATA=str(digits),
        OUT=str(tmp_path / "runs"),
        QUICK="1",
        GPUS="0",
        SEEDS="1",
        TEMPS="2",
        TEACHER_MODEL="test_resnet",
        STUDENT_MODEL="test_resnet",
        EXTRA="--no-progress",
        QUICK_ARGS="--epochs 1 --limit-train 128 --limit-val 60 --img-size 16 --batch-size 32 "
        "--workers 0 --lr 0.05 --aug none",
    )
    cmd = ["bash", str(REPO / "recipes" / "image" / "cifar10.sh")]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "runs"
    report = json.loads((out / "report.json").read_text())["modalities"]["image"]
    runs = {r["name"]: r for r in report["runs"]}
    want = {
        "image/teacher_eps0_s0",
        "image/teacher_eps0.1_s0",
        "image/logit_eps0_T2_s0",
        "image/logit_eps0.1_T2_s0",
    }
    assert want <= set(runs)
    labels = {}
    for name in want:
        s = summary(out / runs[name]["folder"] / "train")
        assert s["args"]["epochs"] == 1 and s["args"]["data"] == str(digits)  # QUICK_ARGS win; DATA used
        labels[name] = s["label"]
    assert labels["image/logit_eps0_T2_s0"] == "student T=2 from noLS teacher"
    assert labels["image/logit_eps0.1_T2_s0"] == "student T=2 from LS teacher"
    assert "T=2" in (out / "report.md").read_text()
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "0 to run" in again.stdout + again.stderr
