"""``devices_per_run: 2`` for images (issue 19 item 3): ``lskd image-train`` under torchrun with two
gloo processes of batch b makes the updates of one process with batch 2b.

Why, exactly: both runs draw the same permutation of the training set (``DistributedSampler``
with the run's seed; the set's size is even, so nothing is padded); rank r takes positions r,
r + 2, ..., so step k of the two ranks covers positions 2kb .. 2(k+1)b - 1, the one process's
step k. Each rank's loss is the mean over its b images, and DDP averages the two gradients: the
mean over the 2b images. The model has no batch norm (timm's ``test_vit``: layer norm only), no
dropout, and ``aug: none`` draws nothing at random, so only the order of floating-point sums
differs (1e-5). A model with batch norm differs: each process normalises with its own batch's
statistics (docs/image.md).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lskd_plugins.image.checkpoint import read_checkpoint
from lskd_plugins.image.digits import write_digits

B = 8
COMMON = ["--model", "test_vit", "--img-size", "16", "--aug", "none", "--epochs", "2", "--lr", "0.05"]
COMMON += ["--opt", "momentum", "--momentum", "0.9", "--weight-decay", "0.0005", "--sched", "cosine"]
COMMON += ["--limit-train", "96", "--limit-val", "40", "--workers", "0", "--device", "cpu", "--seed", "3"]
COMMON += ["--smoothing", "0.1", "--no-progress"]


def image_train(argv, nproc: int, env) -> None:
    launch = [sys.executable, "-m", "lskd_plugins.cli", "image-train"]
    if nproc > 1:
        launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
        launch += ["-m", "lskd_plugins.cli", "image-train"]
    proc = subprocess.run(launch + argv, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_two_processes_of_batch_b_equal_one_of_batch_2b(tmp_path: Path, cli_env):
    data = tmp_path / "digits"
    write_digits(data)
    env = {**cli_env, "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1"}
    two, one, small = tmp_path / "two", tmp_path / "one", tmp_path / "small"
    image_train(["--data", str(data), "--output", str(two), "--batch-size", str(B), *COMMON], 2, env)
    image_train(["--data", str(data), "--output", str(one), "--batch-size", str(2 * B), *COMMON], 1, env)
    image_train(["--data", str(data), "--output", str(small), "--batch-size", str(B), *COMMON], 1, env)
    a, b, c = (read_checkpoint(d / "checkpoint_last.pth")["state_dict"] for d in (two, one, small))
    assert a.keys() == b.keys() and not any("running_mean" in k for k in a)
    for name, w in b.items():
        torch.testing.assert_close(a[name], w, atol=1e-5, rtol=0, msg=name)
    # the comparison can fail: one process with batch b (other updates) lands elsewhere
    assert max(float((c[k] - b[k]).abs().max()) for k in b) > 1e-3
    s2, s1 = (json.loads((d / "summary.json").read_text()) for d in (two, one))
    assert s2["world_size"] == 2 and s1["world_size"] == 1
    assert s2["top1"] == pytest.approx(s1["top1"]) and s2["nll"] == pytest.approx(s1["nll"], abs=1e-5)
