"""What the diffusion analysis reads, checked before any work, each problem one line.

Both modalities take checkpoints a user names; reading and describing them is
``lskd_plugins.checkpoints``'s (one vocabulary for every command), this module adds what the
diffusion commands expect. The error says what was found and what was expected.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lskd_plugins.checkpoints import FAIRSEQ, LSKD_IMAGE, check_file, first_line, is_fairseq, load  # noqa: F401
from lskd_plugins.checkpoints import describe as checkpoint_kind  # noqa: F401  (the diffusion code's name)

IMAGE_EXPECTED = (
    "`lskd diffusion image` expects an image classifier checkpoint (lskd image-train's, or a timm "
    "checkpoint with --model NAME); use `lskd diffusion nmt` for translation models"
)
NMT_EXPECTED = (
    "`lskd diffusion nmt` expects a fairseq translation checkpoint (fairseq-train's checkpoint_*.pt); "
    "use `lskd diffusion image` for image classifiers"
)


def check_checkpoint_path(path: str, option: str = "--checkpoints") -> Path:
    return check_file(path, option)


def peek_checkpoint(path: str, option: str = "--checkpoints") -> Any:
    """torch.load without reading the weights where torch can map the file (zip format)."""
    return load(path, option, mmap=True)
