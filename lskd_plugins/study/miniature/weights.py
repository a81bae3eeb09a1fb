"""timm's pretrained weights from a local Hugging Face cache made for the occasion.

``timm.create_model(name, pretrained=True)`` looks the model's pretrained tag up
(``pretrained_cfg.hf_hub_id``, e.g. ``timm/resnet18.tv_in1k``) and asks ``huggingface_hub`` for
``model.safetensors`` (then ``pytorch_model.bin``) at revision ``main``. With ``HF_HUB_OFFLINE=1``
that is a lookup in the cache, ``HF_HUB_CACHE/models--timm--resnet18.tv_in1k/refs/main`` naming
a snapshot, ``.../snapshots/<revision>/model.safetensors`` the file. ``write_cached_weights`` writes
a randomly initialised state dict of the model there, so that a miniature study takes the same
loading path as a user whose timm weights were downloaded before.
"""

from __future__ import annotations

import os
from pathlib import Path

from lskd_plugins.errors import LskdError

REVISION = "0" * 40  # the snapshot the cache's refs/main names (any commit-like name)
WEIGHTS = "model.safetensors"


def hub_id(model_name: str) -> str:
    """The Hugging Face repository timm loads ``model_name``'s pretrained weights from."""
    import timm
    from timm.models import get_pretrained_cfg

    if not timm.is_model(model_name):
        raise LskdError(f"{model_name!r} is not a timm model")
    base, _, tag = model_name.partition(".")
    cfg = get_pretrained_cfg(model_name) or get_pretrained_cfg(base)
    if cfg is None and not tag:
        from timm.models import get_arch_pretrained_cfgs

        cfg = next(iter(get_arch_pretrained_cfgs(base).values()), None)
    if cfg is None or not getattr(cfg, "hf_hub_id", None):
        raise LskdError(f"timm has no pretrained weights on the Hugging Face hub for {model_name!r}")
    return cfg.hf_hub_id


def cache_path(cache: Path, model_name: str) -> Path:
    """Where timm's loading finds ``model_name``'s weights in the cache ``cache`` (HF_HUB_CACHE)."""
    repo = hub_id(model_name)
    return Path(cache) / f"models--{repo.replace('/', '--')}" / "snapshots" / REVISION / WEIGHTS


def write_cached_weights(cache: Path, model_name: str) -> Path:
    """A randomly initialised state dict of ``model_name`` (1000 classes) as its cached weights."""
    import safetensors.torch
    import timm

    path = cache_path(cache, model_name)
    if path.is_file():
        return path
    model = timm.create_model(model_name, pretrained=False)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    safetensors.torch.save_file(state, str(tmp))
    tmp.replace(path)
    refs = path.parents[2] / "refs"
    refs.mkdir(exist_ok=True)
    (refs / "main").write_text(REVISION)
    return path


def use_offline_cache(cache: Path) -> None:
    """Point this process and its children at ``cache``, offline (also when huggingface_hub is
    already imported: it reads the environment once)."""
    os.environ["HF_HUB_CACHE"] = str(Path(cache).resolve())
    os.environ["HF_HUB_OFFLINE"] = "1"
    import sys

    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:
        constants.HF_HUB_CACHE = os.environ["HF_HUB_CACHE"]
        constants.HF_HUB_OFFLINE = True


def check_cached(cache: Path, model_name: str) -> Path:
    """The cached weights' path; one line saying where timm's cache would have them when absent."""
    path = cache_path(cache, model_name)
    if not path.is_file():
        raise LskdError(
            f"pretrained: true: no weights for {model_name} in the local cache; timm's loading "
            f"would read {path} (HF_HUB_CACHE={cache}, HF_HUB_OFFLINE=1)"
        )
    return path
