"""Where image-train's per-epoch numbers go: ``metrics.csv`` always, TensorBoard and wandb on request.

Every sink receives the same row (the columns of metrics.csv), so a TensorBoard or wandb user sees
exactly the numbers of the CSV, under the same names, with the epoch as the step.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any, Dict, List

from lskd_plugins.errors import LskdError
from lskd_plugins.files import check_writable, write_text_atomic

WANDB_MISSING = "--log-wandb: wandb is not installed (pip install wandb), or leave --log-wandb out"


def csv_text(history: List[Dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(history[0].keys()), lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    return buf.getvalue()


def check_log_targets(tensorboard_dir: str | None, wandb: bool) -> None:
    """Before any work: the TensorBoard folder is writable, wandb is importable."""
    if tensorboard_dir:
        check_writable(tensorboard_dir, "--log-tensorboard")
    if wandb:
        try:
            import wandb as _  # noqa: F401
        except ImportError:
            raise LskdError(WANDB_MISSING) from None


class MetricsLog:
    """Writes one row per epoch to every sink; ``close`` flushes them."""

    def __init__(
        self,
        csv_path: Path,
        tensorboard_dir: str | None = None,
        wandb_run: Dict[str, Any] | None = None,
    ):
        self.csv_path = csv_path
        self.tb = None
        self.wandb = None
        if tensorboard_dir:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(log_dir=tensorboard_dir)
        if wandb_run is not None:
            self.wandb = start_wandb(**wandb_run)

    def write(self, history: List[Dict[str, Any]]) -> None:
        """Rewrite metrics.csv (atomically) and send the newest row to TensorBoard / wandb."""
        if not history:
            return
        write_text_atomic(self.csv_path, csv_text(history))
        row = history[-1]
        scalars = {k: float(v) for k, v in row.items() if k != "epoch"}
        if self.tb is not None:
            for key, value in scalars.items():
                self.tb.add_scalar(key, value, global_step=int(row["epoch"]))
            self.tb.flush()
        if self.wandb is not None:
            self.wandb.log(scalars, step=int(row["epoch"]))

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
        if self.wandb is not None:
            self.wandb.finish()


def start_wandb(project: str, name: str, config: Dict[str, Any], folder: Path):
    """A wandb run, offline unless WANDB_MODE says otherwise (no account or network needed)."""
    try:
        import wandb
    except ImportError:
        raise LskdError(WANDB_MISSING) from None
    mode = os.environ.get("WANDB_MODE", "offline")
    return wandb.init(project=project, name=name, config=config, dir=str(folder), mode=mode)
