"""--kd-method {kd,logit_std,dkd} in the image task and lskd image-train (issue 18): the loss equals
the float64 formulas, tiny runs store the method in the checkpoint and summary, one-line errors."""

import argparse
import subprocess

import pytest
import torch
from kd_reference import reference_kd
from test_image_task import IMAGENET_MEAN, IMAGENET_STD, PooledLinear, batch

from lskd_plugins.errors import LskdError
from lskd_plugins.image import train as train_module
from lskd_plugins.image.checkpoint import read_checkpoint
from lskd_plugins.image.digits import write_digits
from lskd_plugins.image.task import LabelSmoothingKDTask, make_teacher

METHODS = [dict(method="kd"), dict(method="logit_std"), dict(method="dkd", dkd_alpha=0.5, dkd_beta=2.0)]
TINY = ["--model", "test_resnet", "--img-size", "16", "--aug", "none", "--batch-size", "32", "--lr", "0.05"]
TINY += ["--workers", "0", "--quiet", "--limit-train", "96", "--limit-val", "30", "--epochs", "1"]


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m["method"])
def test_task_loss_is_the_method_formula(method):
    """Batch mean of (1 - a) CE_eps (uniform) + a T^2 D, D of the method, against the reference."""
    x, y = batch(n=6, seed=4)
    x = x.double()
    teacher_model = PooledLinear(2).double()
    teacher = make_teacher(teacher_model, IMAGENET_MEAN, IMAGENET_STD, torch.device("cpu"))
    task = LabelSmoothingKDTask(
        PooledLinear(1),
        teacher,
        smoothing=0.1,
        kd_alpha=0.7,
        temperature=2.0,
        student_mean=IMAGENET_MEAN,
        student_std=IMAGENET_STD,
        **method,
    ).double()
    out = task(x, y)
    ref = reference_kd(
        out["output"].detach(), teacher_model(x), y, alpha=0.7, T=2.0, eps=0.1, convention="uniform", **method
    )
    assert out["loss"].item() == pytest.approx(ref["loss"].item() / len(y), rel=1e-10)
    assert out["kd_loss"].item() == pytest.approx(ref["kl"].item() / len(y), rel=1e-10)


def run_train(argv):
    parser = argparse.ArgumentParser()
    train_module.add_arguments(parser)
    return train_module.main(parser.parse_args([str(a) for a in argv]))


@pytest.fixture(scope="module")
def digits_and_teacher(tmp_path_factory):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("digits")
    write_digits(root)
    teacher = tmp_path_factory.mktemp("runs") / "teacher"
    run_train(["--data", root, "--output", teacher, "--smoothing", "0.1", *TINY])
    yield root, teacher / "checkpoint_last.pth"
    torch.set_num_threads(before)


@pytest.mark.parametrize(
    "flags,stored",
    [
        ([], ("kd", None, None)),
        (["--kd-method", "logit_std"], ("logit_std", None, None)),
        (["--kd-method", "dkd", "--dkd-beta", "2"], ("dkd", 1.0, 2.0)),
    ],
)
def test_image_train_with_each_method(digits_and_teacher, tmp_path, capsys, flags, stored):
    digits, teacher = digits_and_teacher
    out = tmp_path / "student"
    run_train(
        [
            "--data",
            digits,
            "--output",
            out,
            "--teacher-checkpoint",
            teacher,
            "--kd-temperature",
            2,
            *TINY,
            *flags,
        ]
    )
    ckpt = read_checkpoint(out / "checkpoint_last.pth")
    args = ckpt["args"]
    assert (args["kd_method"], args["dkd_alpha"], args["dkd_beta"]) == stored
    summary = __import__("json").loads((out / "summary.json").read_text())
    assert summary["args"]["kd_method"] == stored[0]
    rows = [r.split(",") for r in (out / "metrics.csv").read_text().splitlines()]
    kd = float(rows[1][rows[0].index("train_kd")])
    assert kd > 0 and kd == kd
    described = f"method {stored[0]}" + (" (dkd_alpha 1.0, dkd_beta 2.0)" if stored[0] == "dkd" else "")
    assert f"KD {described}, kd_alpha 1.0, T 2.0" in capsys.readouterr().out


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--dkd-beta", "2"], r"--dkd-beta applies to --kd-method dkd only \(got --kd-method kd\)"),
        (
            ["--kd-method", "dkd", "--dkd-alpha", "0", "--dkd-beta", "0"],
            "--dkd-alpha and --dkd-beta are both 0",
        ),
    ],
)
def test_method_option_errors(digits_and_teacher, tmp_path, flags, message):
    digits, teacher = digits_and_teacher
    with pytest.raises(LskdError, match=message):
        run_train(
            ["--data", digits, "--output", tmp_path / "x", "--teacher-checkpoint", teacher, *TINY, *flags]
        )
    with pytest.raises(LskdError, match="--kd-method/--dkd-alpha/--dkd-beta need --teacher-checkpoint"):
        run_train(["--data", digits, "--output", tmp_path / "y", *TINY, "--kd-method", "dkd"])


@pytest.mark.parametrize(
    "flags,message",
    [
        (
            ["--kd-method", "crd"],
            "argument --kd-method: invalid choice: 'crd' (choose from ",
        ),
        (
            ["--kd-method", "dkd", "--dkd-alpha", "-1"],
            "argument --dkd-alpha: expected a finite number >= 0, got '-1'",
        ),
        (
            ["--kd-method", "dkd", "--dkd-beta", "inf"],
            "argument --dkd-beta: expected a finite number >= 0, got 'inf'",
        ),
    ],
)
def test_cli_method_errors_are_one_line(tmp_path, cli_env, flags, message):
    proc = subprocess.run(
        ["lskd", "image-train", "--data", str(tmp_path), "--output", str(tmp_path / "o"), *flags],
        capture_output=True,
        text=True,
        env=cli_env,
    )
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()  # one line (argparse's quoting of choices varies)
    assert line.startswith(f"lskd: error: image-train: {message}")
    assert line.endswith(" (see lskd image-train --help)")
