"""image-train's side of the guard in ``lskd_plugins/fingerprint.py``: a student that starts from its
teacher's initial weights (same timm model, same ``--seed``) is named in one warning line.

The teacher's initial fingerprint, in order of preference:
1. ``init_fingerprint`` in its checkpoint (image-train stores its run's own since this guard exists);
2. rebuilt as image-train built it (``create_student`` after seeding every generator with the
   saved ``--seed``), inside ``fingerprint.isolated_rng``: an lskd teacher that started from random
   weights (not ``--pretrained`` / ``--pretrained-checkpoint``);
3. otherwise (a timm ``train.py`` checkpoint, whose ``args`` hold its ``seed``, or an lskd teacher
   that started from pretrained weights) an equal saved seed with equal names and shapes.
A file that names no seed (a bare state dict, ``.safetensors``, timm's pretrained weights) is not
checked.
"""

from __future__ import annotations

from typing import Any, Dict

import torch

from lskd_plugins import checkpoints
from lskd_plugins import fingerprint as fp
from lskd_plugins.errors import LskdError


def initial_fingerprint(student: torch.nn.Module, resume_ckpt: Dict[str, Any] | None) -> str | None:
    """This run's initial fingerprint: the fresh student's (built and loaded), or the one its resumed
    checkpoint stored (None for a checkpoint written before the guard)."""
    if resume_ckpt is not None:
        return resume_ckpt.get("init_fingerprint")
    return fp.fingerprint(student.named_parameters())


def _saved(obj: Any) -> Dict[str, Any]:
    """The teacher file's training arguments as a dict (lskd's dict; timm train.py's Namespace)."""
    args = obj.get("args") if isinstance(obj, dict) else None
    if args is not None and hasattr(args, "__dict__") and not isinstance(args, dict):
        args = vars(args)
    return dict(args) if isinstance(args, dict) else {}


def _rebuilt(obj: Dict[str, Any], seed: int) -> str | None:
    """The fingerprint of an lskd teacher's initial weights, rebuilt under its seed (None: cannot)."""
    from lskd_plugins.image.train import create_student

    args = _saved(obj)
    if not checkpoints.is_lskd_image(obj) or args.get("pretrained") or args.get("pretrained_checkpoint"):
        return None
    try:
        with fp.isolated_rng(seed):
            model, _ = create_student(obj["model_name"], int(obj["num_classes"]), False, args.get("img_size"))
    except Exception:  # noqa: BLE001  (a model this timm cannot build: the fallback)
        return None
    return fp.fingerprint(model.named_parameters())


def _state(obj: Dict[str, Any]) -> Dict[str, torch.Tensor]:
    for key in ("state_dict", "state_dict_ema", "model"):
        if isinstance(obj.get(key), dict):
            return obj[key]
    return {}


def starts_from_teacher(student: torch.nn.Module, init_fingerprint: str, seed: int, path: str) -> bool:
    """Whether the student's initial weights (``init_fingerprint``, --seed ``seed``) are the initial
    weights of the teacher at ``path``."""
    if path.endswith(".safetensors"):  # weights only: no seed to compare
        return False
    try:
        obj = checkpoints.load(path, "--teacher-checkpoint", mmap=True, example="checkpoint_best.pth")
    except LskdError:  # a file the teacher loader read another way (timm's): nothing to compare
        return False
    if not isinstance(obj, dict):
        return False
    stored = obj.get("init_fingerprint")
    if stored:
        return stored == init_fingerprint
    teacher_seed = _saved(obj).get("seed")
    if teacher_seed is None:
        return False
    rebuilt = _rebuilt(obj, int(teacher_seed))
    if rebuilt is not None:
        return rebuilt == init_fingerprint
    return int(teacher_seed) == seed and fp.shapes(student.state_dict().items()) == fp.shapes(
        _state(obj).items()
    )


def check(student: torch.nn.Module, init_fingerprint: str | None, args, is_main: bool) -> None:
    """Before the first epoch of a fresh run: the warning line on rank 0 on a match."""
    path = getattr(args, "teacher_checkpoint", None)
    if not (path and init_fingerprint and is_main and fp.enabled()):
        return
    if starts_from_teacher(student, init_fingerprint, int(args.seed), str(path)):
        fp.warn(str(path), int(args.seed))
