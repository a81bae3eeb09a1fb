"""Process-group helpers for ``torchrun`` runs (nccl on GPUs, gloo on the CPU).

A single process (no ``WORLD_SIZE`` in the environment) gets a ``DistContext`` with
``world_size == 1`` and every helper degrades to a no-op, so the trainer has one code path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
import torch.distributed as dist

from lskd_plugins.errors import LskdError


@dataclass
class DistContext:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """'auto' -> cuda:LOCAL_RANK when a GPU is visible, else cpu; explicit names are checked."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise LskdError(f"--device {name}: no CUDA GPU is visible; use --device cpu")
        if name == "cuda":
            name = f"cuda:{local_rank}"
    try:
        return torch.device(name)
    except RuntimeError as err:
        raise LskdError(f"--device {name!r} is not a torch device ({err}); use auto, cpu or cuda") from None


def setup(device_name: str = "auto") -> DistContext:
    """Read torchrun's environment, pick the device and start the process group if needed."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def cleanup(ctx: DistContext) -> None:
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()


def all_reduce_sum(ctx: DistContext, values: torch.Tensor) -> torch.Tensor:
    """Sum a float64 tensor over all ranks (returned on the CPU); identity in one process."""
    if not ctx.distributed:
        return values
    backend_device = ctx.device if ctx.device.type == "cuda" else torch.device("cpu")
    buf = values.to(backend_device, dtype=torch.float64).clone()
    dist.all_reduce(buf, op=dist.ReduceOp.SUM)
    return buf.cpu()


def broadcast_flag(ctx: DistContext, flag: bool) -> bool:
    """Rank 0's boolean on every rank (used so all ranks take the same branch)."""
    if not ctx.distributed:
        return flag
    backend_device = ctx.device if ctx.device.type == "cuda" else torch.device("cpu")
    buf = torch.tensor([1 if flag else 0], device=backend_device)
    dist.broadcast(buf, src=0)
    return bool(buf.item())


def broadcast_buffers(ctx: DistContext, module: torch.nn.Module) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every rank.

    DDP broadcasts buffers at the start of each training forward, so after the last step every
    rank holds the statistics of its own last batch; evaluation must use rank 0's (the saved ones).
    """
    if ctx.distributed:
        for buf in module.buffers():
            dist.broadcast(buf, src=0)


class ShardSampler(torch.utils.data.Sampler):
    """Indices rank, rank + world, ... in order: every example evaluated exactly once overall.

    (``DistributedSampler`` pads the last shard with repeats, which would bias the metrics.)
    """

    def __init__(self, length: int, rank: int = 0, world_size: int = 1):
        self.indices: Sequence[int] = range(rank, length, world_size)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)
