"""Tiny fairseq artefacts for tests, built through the real CLIs (session fixtures in conftest.py).

- ``write_parallel_text``: a small corpus from ``lskd synth-mt`` (train/valid/test.{en,de}).
- ``preprocess``: ``fairseq-preprocess --joined-dictionary`` into a data-bin.
- ``train_teacher``: a 1+1-layer transformer trained for a few dozen updates on CPU with fairseq's
  own ``label_smoothed_cross_entropy`` (what the docs tell users to do for teachers).

Every run goes through ``run_cli``, which fails the test with the command and the tail of its
output instead of a bare CalledProcessError.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Sequence

REPO = Path(__file__).resolve().parents[1]
USER_DIR = str(REPO / "lskd_plugins")

# The tiny transformer used for teachers and students in tests (about 20k parameters).
TINY_ARCH = [
    "--arch",
    "transformer",
    "--encoder-layers",
    "1",
    "--decoder-layers",
    "1",
    "--encoder-embed-dim",
    "32",
    "--decoder-embed-dim",
    "32",
    "--encoder-ffn-embed-dim",
    "64",
    "--decoder-ffn-embed-dim",
    "64",
    "--encoder-attention-heads",
    "2",
    "--decoder-attention-heads",
    "2",
    "--share-all-embeddings",
]
# CPU, single process, quiet, no per-epoch checkpoint files.
TINY_TRAIN = [
    "--cpu",
    "--num-workers",
    "0",
    "--seed",
    "1",
    "--optimizer",
    "adam",
    "--adam-betas",
    "(0.9, 0.98)",
    "--lr",
    "5e-3",
    "--lr-scheduler",
    "inverse_sqrt",
    "--warmup-updates",
    "10",
    "--dropout",
    "0.1",
    "--max-tokens",
    "2000",
    "--log-format",
    "simple",
    "--log-interval",
    "5",
    "--no-progress-bar",
    "--no-epoch-checkpoints",
]


@dataclass(frozen=True)
class TinyMT:
    text_dir: Path  # train/valid/test.{src,tgt}
    data_bin: Path  # fairseq-preprocess output (joined dictionary)
    src: str
    tgt: str


def run_cli(
    cmd: Sequence[str],
    env: Dict[str, str],
    timeout: float = 300,
    check: bool = True,
    cwd: str | Path | None = None,
) -> subprocess.CompletedProcess:
    """Run a CLI; on failure (when ``check``) raise AssertionError with the output's tail."""
    proc = subprocess.run(
        [str(c) for c in cmd], env=env, capture_output=True, text=True, timeout=timeout, cwd=cwd
    )
    if check and proc.returncode != 0:
        tail = (proc.stdout + proc.stderr)[-4000:]
        raise AssertionError(f"command failed ({proc.returncode}): {' '.join(map(str, cmd))}\n{tail}")
    return proc


def write_parallel_text(
    out_dir: Path,
    n_train: int = 600,
    n_valid: int = 40,
    n_test: int = 40,
    seed: int = 1,
    src: str = "en",
    tgt: str = "de",
) -> Path:
    """train/valid/test.{src,tgt} of the embedded synthetic corpus (``lskd synth-mt``)."""
    from lskd_plugins.nmt.synth_mt import generate_corpus

    generate_corpus(out_dir, n_train, seed, valid_size=n_valid, test_size=n_test, src=src, tgt=tgt)
    return Path(out_dir)


def preprocess(
    text_dir: Path,
    dest_dir: Path,
    env: Dict[str, str],
    src: str = "en",
    tgt: str = "de",
    extra: Sequence[str] = (),
) -> Path:
    """``fairseq-preprocess --joined-dictionary`` on train/valid/test of ``text_dir``."""
    text_dir = Path(text_dir)
    run_cli(
        [
            "fairseq-preprocess",
            "--source-lang",
            src,
            "--target-lang",
            tgt,
            "--trainpref",
            text_dir / "train",
            "--validpref",
            text_dir / "valid",
            "--testpref",
            text_dir / "test",
            "--destdir",
            dest_dir,
            "--joined-dictionary",
            "--workers",
            "1",
            *extra,
        ],
        env,
    )
    return Path(dest_dir)


def train_teacher(
    data_bin: Path,
    save_dir: Path,
    env: Dict[str, str],
    label_smoothing: float = 0.1,
    max_update: int = 40,
    extra: Sequence[str] = (),
) -> Path:
    """A tiny transformer trained with fairseq's own label_smoothed_cross_entropy; its last checkpoint."""
    run_cli(
        [
            "fairseq-train",
            data_bin,
            *TINY_ARCH,
            *TINY_TRAIN,
            "--criterion",
            "label_smoothed_cross_entropy",
            "--label-smoothing",
            str(label_smoothing),
            "--max-update",
            str(max_update),
            "--save-dir",
            save_dir,
            *extra,
        ],
        env,
    )
    ckpt = Path(save_dir) / "checkpoint_last.pt"
    assert ckpt.is_file(), f"fairseq-train wrote no {ckpt}"
    return ckpt
