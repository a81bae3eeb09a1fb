"""The one home for reading and describing checkpoints, for every command that takes one.

A user names checkpoints in many places (fairseq-train's ``--teacher-path``, ``lskd bleu``,
``lskd cache-teacher``, ``lskd image-train``/``image-eval``, ``lskd diffusion``), and the commonest
mistakes are the same everywhere: a missing file, a folder, a truncated download, a translation
checkpoint where an image classifier is expected or the reverse. This module reads a file once,
with torch's weights-only default handled in one place, and describes what it holds in one
vocabulary, so that every error says what was found in the same words:

    an lskd image checkpoint (timm model resnet18)
    a fairseq checkpoint (a translation model)
    a timm/PyTorch training checkpoint (weights under 'state_dict')
    a bare state dict of 62 tensors
    a dict with keys a, b, c
    a pickled list, not a checkpoint dict
    not a readable PyTorch file (truncated or corrupt? UnpicklingError: ...)

fairseq 0.12 checkpoints pickle an ``argparse.Namespace`` (and lskd's image checkpoints their
arguments); torch >= 2.6 refuses them under its default ``weights_only=True``.
``trust_checkpoints()`` sets ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` (importing the plugins does
it), which unpickles arbitrary objects: only load checkpoints you trust (your own, or from a
source you would run code from).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lskd_plugins.errors import LskdError

FAIRSEQ = "a fairseq checkpoint (a translation model)"
LSKD_IMAGE = "an lskd image checkpoint"
IMAGE_FORMAT_PREFIX = "lskd-image"
IMAGE_REQUIRED = ("model_name", "num_classes", "class_names", "state_dict")
UNREADABLE = "not a readable PyTorch file"
WEIGHT_KEYS = ("state_dict", "state_dict_ema", "model_state", "model")


def trust_checkpoints() -> None:
    """Let torch >= 2.6 unpickle fairseq 0.12 and lskd checkpoints (see module docstring)."""
    if os.environ.get("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "0").lower() not in ("1", "true", "yes", "on"):
        os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")


def first_line(err: BaseException, limit: int = 160) -> str:
    """'TypeName: the first line of the message' (libraries' messages span lines; ours are one)."""
    text = str(getattr(err, "message", err)).strip()
    return f"{type(err).__name__}: {text.splitlines()[0][:limit] if text else ''}"


def check_file(
    path: os.PathLike | str, what: str = "checkpoint", example: str = "checkpoint_best.pt"
) -> Path:
    """``path`` as a Path when it is a readable file; else one line naming ``what`` and the path
    (a folder: the file to give inside it, ``example``)."""
    p = Path(path)
    if p.is_dir():
        raise LskdError(f"{what} {p} is a folder; give the checkpoint file in it (e.g. {p / example})")
    if not p.is_file():
        raise LskdError(f"{what} not found: {p}")
    if not os.access(p, os.R_OK):
        raise LskdError(f"{what} is not readable: {p}")
    return p


def unreadable(err: BaseException) -> str:
    """The description of a file torch.load refused."""
    return f"{UNREADABLE} (truncated or corrupt? {first_line(err)})"


def _torch_load(path: Path, map_location: Any, mmap: bool) -> Any:
    import torch

    trust_checkpoints()
    if mmap:  # only the zip format can be mapped; an old one (or a truncated file) is read again below
        try:
            return torch.load(path, map_location=map_location, weights_only=False, mmap=True)
        except Exception:  # noqa: BLE001
            pass
    return torch.load(path, map_location=map_location, weights_only=False)


def load(
    path: os.PathLike | str,
    what: str = "checkpoint",
    *,
    map_location: Any = "cpu",
    mmap: bool = False,
    example: str = "checkpoint_best.pt",
) -> Any:
    """torch.load of a checkpoint (``mmap``: without reading the weights where torch can map the
    file), with one line naming ``what`` and the path when it is missing, a folder, or unreadable."""
    p = check_file(path, what, example)
    try:
        return _torch_load(p, map_location, mmap)
    except Exception as err:
        raise LskdError(
            f"{what} {p} is {unreadable(err)}; give a complete checkpoint file "
            "(copy it again, or use the run's checkpoint_last)"
        ) from None


def is_fairseq(obj: Any) -> bool:
    return isinstance(obj, dict) and "model" in obj and ("cfg" in obj or "args" in obj)


def is_lskd_image(obj: Any) -> bool:
    """Written by ``lskd image-train`` (its format tag, or the keys every version has)."""
    return isinstance(obj, dict) and (
        str(obj.get("format", "")).startswith(IMAGE_FORMAT_PREFIX)
        or "class_names" in obj
        or all(k in obj for k in IMAGE_REQUIRED)
    )


def describe(obj: Any) -> str:
    """What kind of checkpoint a loaded object is, in a few words (for 'X is <this>; expected Y')."""
    import torch

    if not isinstance(obj, dict):
        return f"a pickled {type(obj).__name__}, not a checkpoint dict"
    if is_lskd_image(obj):
        name = obj.get("model_name")
        return f"{LSKD_IMAGE} (timm model {name})" if name else LSKD_IMAGE
    if is_fairseq(obj):
        return FAIRSEQ
    for key in WEIGHT_KEYS:
        if isinstance(obj.get(key), dict):
            return f"a timm/PyTorch training checkpoint (weights under {key!r})"
    if obj and all(torch.is_tensor(v) for v in obj.values()):
        return f"a bare state dict of {len(obj)} tensors"
    return f"a dict with keys {', '.join(sorted(map(str, obj))[:5]) or '(none)'}"


def describe_file(path: os.PathLike | str) -> str:
    """Read ``path`` and describe it; a file torch cannot read is described as such (never raises
    for an unreadable file: this is what error messages call)."""
    try:
        obj = _torch_load(Path(path), "cpu", mmap=True)
    except Exception as err:  # noqa: BLE001
        return unreadable(err)
    return describe(obj)


def wrong_kind(what: str, path: os.PathLike | str, found: str, expected: str) -> LskdError:
    """'--teacher-path x.pth is an lskd image checkpoint (...); expected ...' (``found``: describe's)."""
    return LskdError(f"{what} {path} is {found}; {expected}")
