"""Steps that every rank of a multi-process fairseq run passes together, or fails together.

fairseq 0.12 starts its ranks independently (torchrun, SLURM, or one command per rank with
``--distributed-init-method``). When a step fails on one rank, the other ranks go on and wait in
their next collective operation until the process group's timeout (torch 2.14: 30 minutes for
gloo, 10 for NCCL), printing nothing.
``on_every_rank`` runs a step on every rank and exchanges the outcomes, so that a failure on any
rank stops every rank at once, each with one line that names the rank which failed.

``same_on_every_rank`` stops a run whose ranks loaded different models from the same option
(``--teacher-path`` naming other files on other nodes), which would otherwise distil each shard
of the data from another teacher without a word. ``check_joined_launcher`` catches the opposite
mistake: torchrun started N processes, but fairseq did not join them into one run, so N
independent trainings write the same ``--save-dir``.
"""

from __future__ import annotations

import hashlib
import os
from typing import Callable, Iterable, Mapping, TypeVar

import torch
import torch.distributed as dist

from lskd_plugins.errors import LskdError

T = TypeVar("T")


def world_size() -> int:
    """The number of ranks of the initialised default process group; 1 without one."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def describe(err: BaseException) -> str:
    """One line for ``err``: an LskdError's own message, else the type and first line."""
    if isinstance(err, LskdError):
        return err.message
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0] if lines else ''}"


def failure_message(what: str, outcomes: list) -> str | None:
    """None when every rank succeeded (outcome None), else one line naming the first failed rank."""
    failed = [(rank, msg) for rank, msg in enumerate(outcomes) if msg is not None]
    if not failed:
        return None
    rank, msg = failed[0]
    others = f" (and {len(failed) - 1} other rank(s))" if len(failed) > 1 else ""
    return f"{what} failed on rank {rank} of {len(outcomes)}{others}: {msg}"


def on_every_rank(step: Callable[[], T], what: str) -> T:
    """``step()`` on this rank; when it fails on any rank, every rank stops with one line.

    A collective operation: every rank of the default group must call it, in the same order
    (fairseq builds task, model and criterion on every rank). The failing rank re-raises its own
    error; the others raise an LskdError naming it.
    """
    if world_size() == 1:
        return step()
    result, error = None, None
    try:
        result = step()
    except (Exception, SystemExit) as err:
        error = err
    outcomes: list = [None] * world_size()
    dist.all_gather_object(outcomes, None if error is None else describe(error))
    if error is not None:
        raise error
    message = failure_message(what, outcomes)
    if message is not None:
        raise LskdError(message)
    return result


def fingerprint(modules: Iterable[torch.nn.Module]) -> str:
    """SHA-256 of the modules' state (names, dtypes, shapes and bytes), in order: equal on every
    machine for the same checkpoint (no floating-point arithmetic involved)."""
    digest = hashlib.sha256()
    for module in modules:
        for name, tensor in module.state_dict().items():
            flat = tensor.detach().cpu().contiguous().reshape(-1)
            digest.update(f"{name}|{flat.dtype}|{tuple(tensor.shape)};".encode())
            digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def difference_message(what: str, values: list) -> str | None:
    """None when every rank holds the same value, else one line naming the first rank that differs."""
    for rank, value in enumerate(values):
        if value != values[0]:
            return f"{what} differs between ranks: rank 0 has {values[0]}, rank {rank} has {value}"
    return None


def same_on_every_rank(value: Callable[[], str], what: str, fix: str) -> None:
    """Stop every rank with one line when ``value()`` is not the same on all of them (collective;
    ``value`` is not computed in a single process)."""
    if world_size() == 1:
        return
    values: list = [None] * world_size()
    dist.all_gather_object(values, value())
    message = difference_message(what, values)
    if message is not None:
        raise LskdError(f"{message}. Fix: {fix}")


def launched_world_size(environ: Mapping[str, str]) -> int:
    """How many processes torchrun (or torch.distributed.launch) started: its WORLD_SIZE, else 1."""
    try:
        return max(1, int(environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


def check_joined_launcher(environ: Mapping[str, str] = os.environ) -> None:
    """Stop with one line when this process is one of torchrun's N but fairseq did not join them.

    fairseq 0.12 reads torchrun's environment only when --distributed-world-size is above 1, and
    that option defaults to the number of visible GPUs: without GPUs (or with one GPU per node)
    each of torchrun's processes silently trains alone, all writing the same checkpoints.
    """
    launched = launched_world_size(environ)
    joined = world_size()
    if launched == 1 or joined == launched:
        return
    state = "trains alone" if joined == 1 else f"joined a run of {joined} ranks"
    raise LskdError(
        f"torchrun started {launched} processes (WORLD_SIZE={launched}) but this fairseq-train "
        f"{state}. Fix: on GPUs pass --distributed-world-size {launched}; on CPU (fairseq's torchrun "
        "path needs GPUs) run torchrun --no-python with --distributed-world-size $WORLD_SIZE "
        "--distributed-rank $RANK --distributed-init-method env:// --distributed-no-spawn "
        "(docs/multi_process.md)"
    )
