"""Runs that span several devices (``devices_per_run: N``): each run is one distributed job.

- images: ``torchrun --standalone --nproc_per_node N -m lskd_plugins.cli image-train ...``
  (``--batch-size`` is per process: the batch of one update is N x batch-size; nccl on GPUs, gloo
  on the CPU);
- translation: fairseq-train with ``--distributed-world-size N``; on GPUs fairseq starts the N
  processes itself (one per visible GPU), on the CPU this module starts them, one process per rank
  with ``--distributed-rank``, a ``tcp://127.0.0.1`` rendezvous, gloo and ``legacy_ddp`` (the
  commands of docs/multi_process.md). One update then holds about max-tokens x N x update-freq
  tokens.

``jobs`` counts runs at once, each on its own N GPUs (``gpu_groups``); the SLURM launcher asks for
N GPUs per job (``slurm_parameters``). N enters every run's key (N > 1 only: one device keeps the
keys it always had). Models with batch norm normalise with each process's own batch statistics, so
N processes of batch b are not one process of batch N x b (docs/image.md).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from typing import Any, Dict, List

from lskd_plugins.errors import LskdError, LskdFailure

TIMEOUT_S = 7 * 24 * 3600  # a distributed run is bounded; its ranks are stopped together


def per_run(cfg: Dict[str, Any]) -> int:
    return int(cfg.get("devices_per_run") or 1)


def on_cpu(cfg: Dict[str, Any]) -> bool:
    import torch

    return cfg["device"] == "cpu" or (cfg["device"] == "auto" and not torch.cuda.is_available())


def rekey(runs: List[Any], cfg: Dict[str, Any]) -> None:
    """N > 1 enters every run's spec and key, in dependency order (a student's key holds its
    teacher's new key)."""
    from lskd_plugins.study.keys import run_key

    n = per_run(cfg)
    if n == 1:
        return
    keys: Dict[str, str] = {}
    for run in runs:
        run.spec["devices_per_run"] = n
        run.spec["deps"] = {d: keys[d] for d in run.deps}
        run.key = keys[run.name] = run_key(run.spec)


def gpu_groups(jobs: int, gpus: int, n: int) -> List[str]:
    """CUDA_VISIBLE_DEVICES of each worker: N GPUs each (one line when there are too few)."""
    if gpus and gpus < n:
        raise LskdError(f"devices_per_run: {n} needs {n} GPUs per run; {gpus} are visible")
    if gpus and jobs * n > gpus:
        raise LskdError(
            f"jobs {jobs} x devices_per_run {n} needs {jobs * n} GPUs; {gpus} are visible "
            f"(set jobs to {max(1, gpus // n)})"
        )
    return [",".join(str(i * n + k) for k in range(n)) for i in range(jobs)]


def slurm_parameters(params: Dict[str, Any], n: int) -> Dict[str, Any]:
    """The submitit parameters of one job: N GPUs (``gpus_per_node``) unless more are asked for."""
    if n == 1:
        return dict(params)
    given = params.get("gpus_per_node", params.get("slurm_gpus_per_node"))
    if given is not None and int(given) < n:
        raise LskdError(f"slurm: gpus_per_node {given} is fewer than devices_per_run {n}; give {n}")
    return {**params, "gpus_per_node": int(given or n)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> Dict[str, str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if "GLOO_SOCKET_IFNAME" not in env and os.path.exists("/sys/class/net/lo"):
        env["GLOO_SOCKET_IFNAME"] = "lo"  # the ranks meet on the loopback interface
    return env


def wait_all(procs: List[subprocess.Popen], what: str) -> None:
    """Every rank ends; when one fails the others are stopped (no rank waits for a dead one)."""
    import time

    start = time.monotonic()
    while any(p.poll() is None for p in procs):
        failed = [p for p in procs if p.poll() not in (None, 0)]
        if failed or time.monotonic() - start > TIMEOUT_S:
            for p in procs:
                if p.poll() is None:
                    os.killpg(p.pid, signal.SIGTERM)
            for p in procs:
                p.wait()
            break
        time.sleep(0.2)
    codes = [p.returncode for p in procs]
    if any(codes):
        raise LskdFailure(f"{what} failed (exit codes of the ranks: {codes}; the lines above say why)")


def image_train(argv: List[str], n: int) -> None:
    """lskd image-train under torchrun with N processes (its output goes to this run's log)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}"]
    cmd += ["-m", "lskd_plugins.cli", "image-train", *argv]
    sys.stdout.flush()
    sys.stderr.flush()
    proc = subprocess.Popen(cmd, env=_env(), start_new_session=True)
    wait_all([proc], f"lskd image-train on {n} processes (torchrun)")


def fairseq_cpu(argv: List[str], n: int) -> None:
    """fairseq-train as N gloo ranks on the CPU, one process each (docs/multi_process.md)."""
    port = free_port()
    procs = []
    for rank in range(n):
        cmd = [sys.executable, "-m", "fairseq_cli.train", *argv, "--distributed-rank", str(rank)]
        cmd += ["--distributed-init-method", f"tcp://127.0.0.1:{port}", "--distributed-no-spawn"]
        cmd += ["--distributed-backend", "gloo", "--ddp-backend", "legacy_ddp"]
        procs.append(subprocess.Popen(cmd, env=_env(), start_new_session=True))
    wait_all(procs, f"fairseq-train on {n} gloo ranks")


def fairseq_argv(argv: List[str], cfg: Dict[str, Any]) -> List[str]:
    n = per_run(cfg)
    return argv if n == 1 else [*argv, "--distributed-world-size", str(n)]


def image_command(command: List[str], cfg: Dict[str, Any]) -> List[str]:
    n = per_run(cfg)
    return (
        command if n == 1 else ["torchrun", "--standalone", f"--nproc_per_node={n}", "--no-python", *command]
    )
