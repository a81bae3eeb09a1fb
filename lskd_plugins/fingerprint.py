"""Does a student start from its teacher's initial weights? The guard of fairseq-train and image-train.

A teacher and a student of the same architecture trained with the same ``--seed`` start from the
same initial weights (fairseq's default ``--seed`` is 1 for every run); at a high temperature,
where KD approaches logit matching, such a student retraces its teacher's trajectory and its KD
results are biased. Before the first update, ``fairseq-train --criterion lskd_kd`` (the task
``lskd_translation``) and ``lskd image-train --teacher-checkpoint`` fingerprint the student's
parameters and compare them with the teacher's *initial* fingerprint:

1. stored in the teacher's checkpoint where lskd trained it (image-train's ``init_fingerprint``);
2. else recomputed by rebuilding the teacher's architecture under its saved seed inside
   ``isolated_rng`` (the run's own random streams are untouched, so a trained student is
   bit-identical with and without the check);
3. else (the architecture cannot be rebuilt) an equal saved seed with equal parameter names and
   shapes counts as a match.

On a match rank 0 prints ``warning_line`` to stderr and training goes on. ``LSKD_INIT_CHECK=0``
turns the check off.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import sys
from typing import Iterable, Iterator, List, Tuple

import numpy as np
import torch

ENV = "LSKD_INIT_CHECK"


def enabled() -> bool:
    return os.environ.get(ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def is_rank_zero() -> bool:
    import torch.distributed as dist

    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def _name(name: str) -> str:
    """A parameter's name without the ``module.`` prefixes of (fairseq's or torch's) DDP wrappers."""
    while name.startswith("module."):
        name = name[len("module.") :]
    return name


def shapes(named: Iterable[Tuple[str, torch.Tensor]]) -> List[Tuple[str, Tuple[int, ...]]]:
    """Sorted (name, shape) of named tensors."""
    return sorted((_name(n), tuple(t.shape)) for n, t in named)


def fingerprint(named: Iterable[Tuple[str, torch.Tensor]], through: torch.dtype | None = None) -> str:
    """sha256 of the parameters' names, shapes and float32 bytes, in name order.

    ``through``: cast to that dtype first (a rebuilt float32 teacher compared with a student whose
    weights were cast to fp16/bf16 before the first update)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(((_name(n), t) for n, t in named), key=lambda item: item[0]):
        t = tensor.detach()
        if through is not None and t.is_floating_point():
            t = t.to(through)
        digest.update(f"{name}:{tuple(t.shape)};".encode())
        digest.update(t.to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


def parameter_dtype(module: torch.nn.Module) -> torch.dtype | None:
    for p in module.parameters():
        if p.is_floating_point():
            return p.dtype
    return None


@contextlib.contextmanager
def isolated_rng(seed: int, python_random: bool = True) -> Iterator[None]:
    """Seed numpy, torch's CPU generator (and Python's ``random`` when ``python_random``) with
    ``seed``, as the tools do before building a model, and give every stream its state back after.

    CUDA generators are neither seeded nor touched: models are built on the CPU."""
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        with torch.random.fork_rng(devices=[]):
            if python_random:
                random.seed(seed)
            np.random.seed(seed)
            torch.default_generator.manual_seed(seed)
            yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)


def warning_line(teacher_path: str, seed: int) -> str:
    return (
        f"lskd: warning: the student starts from the same initial weights as teacher {teacher_path} "
        f"(--seed {seed}, same architecture): its KD results will be biased; give the student another --seed"
    )


def warn(teacher_path: str, seed: int) -> None:
    """The one warning line, on rank 0 only."""
    if is_rank_zero():
        print(warning_line(teacher_path, seed), file=sys.stderr, flush=True)
