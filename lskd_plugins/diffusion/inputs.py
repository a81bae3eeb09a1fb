"""What the diffusion analysis reads, checked before any work, each problem one line.

Why a module of its own: both modalities take checkpoints a user names, and the commonest
mistakes are the same for both (a missing, truncated or folder path; a translation checkpoint
given to ``lskd diffusion image`` or the reverse; a model whose classes or dictionary are not
those of the data). The error says what was found and what was expected.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lskd_plugins.errors import LskdError

FAIRSEQ = "a fairseq translation checkpoint"
LSKD_IMAGE = "an lskd image checkpoint"
IMAGE_EXPECTED = (
    "`lskd diffusion image` expects an image classifier checkpoint (lskd image-train's, or a timm "
    "checkpoint with --model NAME); use `lskd diffusion nmt` for translation models"
)
NMT_EXPECTED = (
    "`lskd diffusion nmt` expects a fairseq translation checkpoint (fairseq-train's checkpoint_*.pt); "
    "use `lskd diffusion image` for image classifiers"
)


def first_line(err: BaseException, limit: int = 160) -> str:
    """'TypeName: the first line of the message' (libraries' messages span lines; ours are one)."""
    text = str(getattr(err, "message", err)).strip()
    return f"{type(err).__name__}: {text.splitlines()[0][:limit] if text else ''}"


def check_checkpoint_path(path: str, option: str = "--checkpoints") -> Path:
    p = Path(path)
    if p.is_dir():
        raise LskdError(f"{option} {p} is a folder; give the checkpoint file (e.g. checkpoint_best.pt)")
    if not p.is_file():
        raise LskdError(f"{option} {p}: checkpoint not found")
    return p


def peek_checkpoint(path: str, option: str = "--checkpoints") -> Any:
    """torch.load without reading the weights where torch can map the file (zip format)."""
    import torch

    p = check_checkpoint_path(path, option)
    try:
        return torch.load(p, map_location="cpu", weights_only=False, mmap=True)
    except Exception:  # an old (non-zip) format cannot be mapped; a truncated file fails again below
        pass
    try:
        return torch.load(p, map_location="cpu", weights_only=False)
    except Exception as err:
        raise LskdError(
            f"{option} {p} cannot be read: truncated or not a PyTorch file ({first_line(err, 120)}); "
            "give a complete checkpoint (copy it again, or use the run's checkpoint_last)"
        ) from None


def is_fairseq(obj: Any) -> bool:
    return isinstance(obj, dict) and "model" in obj and ("cfg" in obj or "args" in obj)


def checkpoint_kind(obj: Any) -> str:
    """What a loaded checkpoint object is, in words, for error messages."""
    import torch

    if not isinstance(obj, dict):
        return f"a pickled {type(obj).__name__}, not a checkpoint dict"
    if str(obj.get("format", "")).startswith("lskd-image") or "class_names" in obj:
        return LSKD_IMAGE
    if is_fairseq(obj):
        return FAIRSEQ
    if "state_dict" in obj or "state_dict_ema" in obj:
        return "a timm/PyTorch image checkpoint (state_dict)"
    if obj and all(torch.is_tensor(v) for v in obj.values()):
        return "a bare PyTorch state dict"
    return f"a dict with keys {', '.join(sorted(map(str, obj))[:6])}"
