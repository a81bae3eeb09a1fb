"""Image classifiers from files: lskd's self-describing checkpoints, timm's, and timm's pretrained weights.

Layout of lskd's ``checkpoint_last.pth`` / ``checkpoint_best.pth`` (a plain dict, torch.save):
    format        "lskd-image-v1"
    model_name    timm model name, e.g. "resnet18"
    model_kwargs  optional extra timm.create_model arguments (e.g. img_size for ViTs)
    num_classes   int
    class_names   list of str (ImageFolder order)
    data_config   timm data config of the model: input_size, mean, std, interpolation, crop_pct
    args          dict of the training arguments (smoothing, kd_temperature, teacher, ...)
    label         human-readable role, e.g. "teacher alpha=0.1" or "student T=3 from LS teacher"
    state_dict    the model's weights (never the teacher's)
    epoch         epochs completed
    init_fingerprint  sha256 of the run's initial weights (lskd_plugins/fingerprint.py; the guard
                  against a student that starts from its teacher's initial weights)
    + training state for resuming: optimizer, scheduler, scaler, best_top1, history
      (no RNG state: every epoch re-seeds from (seed, epoch, rank), which makes resuming exact)

``load_classifier`` is the one entry point for a classifier the user names (image-train's teacher,
image-eval, the diffusion analysis): besides lskd's files it takes what timm users already have --
a ``model_best.pth.tar`` of timm's ``train.py`` (``state_dict`` / ``state_dict_ema``), a
``torch.save(model.state_dict())``, a ``.safetensors`` file -- read with timm's own
``load_state_dict``, and timm's pretrained weights (``pretrained_cfg_overlay=dict(file=...)``).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Tuple

import torch

from lskd_plugins import checkpoints, symbols
from lskd_plugins.checkpoints import is_fairseq
from lskd_plugins.errors import LskdError

FORMAT = "lskd-image-v1"
REQUIRED = ("model_name", "num_classes", "class_names", "state_dict")
SOURCES = ("lskd", "timm-checkpoint", "timm-pretrained")


def _torch_load(path: Path, option: str, map_location="cpu") -> Any:
    """torch.load (checkpoints.load: one line naming the file when it is missing, a folder,
    truncated, corrupt or not a torch file); a ``.safetensors`` file through timm's reader."""
    if path.suffix != ".safetensors":
        return checkpoints.load(path, option, map_location=map_location, example="checkpoint_best.pth")
    checkpoints.check_file(path, option, example="checkpoint_best.pth")
    import timm  # safetensors comes with timm

    try:
        return timm.models.load_state_dict(str(path), use_ema=False, device=str(map_location))
    except Exception as err:
        raise LskdError(
            f"{option} {path}: cannot read this .safetensors file ({type(err).__name__})"
        ) from None


describe = checkpoints.describe  # what kind of file a loaded object looks like (one vocabulary)


def is_lskd(obj: Any) -> bool:
    return isinstance(obj, dict) and all(k in obj for k in REQUIRED)


def read_checkpoint(
    path: os.PathLike | str, map_location: str | torch.device = "cpu", option: str = "checkpoint"
) -> Dict[str, Any]:
    """Load an lskd checkpoint dict, with a one-line error naming the file when it is not usable."""
    path = Path(path)
    ckpt = _torch_load(path, option, map_location)
    if not is_lskd(ckpt):
        raise LskdError(
            f"{option} {path} is {describe(ckpt)}, not an lskd image checkpoint; "
            "give a file written by `lskd image-train`"
            + ("" if is_fairseq(ckpt) else " (or a timm classifier with --teacher-model NAME)")
        )
    return ckpt


def build_model(meta: Dict[str, Any]) -> torch.nn.Module:
    import timm

    kwargs = dict(meta.get("model_kwargs") or {})
    return timm.create_model(
        meta["model_name"], pretrained=False, num_classes=int(meta["num_classes"]), **kwargs
    )


def load_model(
    path: os.PathLike | str, map_location: str | torch.device = "cpu"
) -> Tuple[torch.nn.Module, Dict[str, Any]]:
    """Rebuild the model from an lskd checkpoint alone; returns (model in eval mode, checkpoint dict)."""
    ckpt = read_checkpoint(path, map_location)
    model = build_model(ckpt)
    model.load_state_dict(ckpt["state_dict"])
    model.eval()
    return model, ckpt


def read_state_dict(path: os.PathLike | str, option: str) -> Tuple[Dict[str, torch.Tensor], Any]:
    """(weights, the loaded object) of any classifier file: lskd's, timm's train.py, a bare state dict.

    timm's ``load_state_dict`` picks ``state_dict_ema`` when present, else ``state_dict``/``model``,
    and strips ``module.`` prefixes (a DDP-saved model)."""
    import timm

    path = Path(path)
    obj = _torch_load(path, option)
    if is_lskd(obj):
        return obj["state_dict"], obj
    if is_fairseq(obj):
        raise LskdError(
            f"{option} {path} is {describe(obj)}; expected an image classifier "
            "(an lskd image checkpoint, a timm checkpoint or a state dict)"
        )
    try:
        state = timm.models.load_state_dict(str(path), use_ema=True, weights_only=False)
    except Exception as err:
        raise LskdError(f"{option} {path}: no state dict in {describe(obj)} ({type(err).__name__})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise LskdError(f"{option} {path} is {describe(obj)}, which holds no model weights")
    return state, obj


# ----------------------------------------------------------------------------- any classifier
@dataclass
class LoadedClassifier:
    model: torch.nn.Module
    class_names: List[str] | None  # None: the file names none and no class file was given
    model_name: str
    source: str  # "lskd", "timm-checkpoint", "timm-pretrained"
    data_config: Dict[str, Any] | None = None  # lskd's stored config; None: resolve from the model
    meta: Dict[str, Any] = field(default_factory=dict)  # lskd: the checkpoint dict without weights


def read_class_file(path: str | None, option: str = "--teacher-class-file") -> List[str] | None:
    """One class name per line, in the classifier's output order (blank lines ignored)."""
    if path is None:
        return None
    p = Path(path)
    if not p.is_file():
        raise LskdError(f"{option} {path}: no such file (one class name per line, in output order)")
    try:
        names = [line.strip() for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as err:
        raise LskdError(f"{option} {path}: cannot read it as text ({err})") from None
    if len(set(names)) != len(names):
        raise LskdError(f"{option} {path} names a class twice; give each class once, in output order")
    return names


def first_difference(a: List[str], b: List[str], names=("found", "expected")) -> str:
    """Where two class lists first differ (``symbols.first_difference``, the one comparison of
    symbol lists), e.g. "first difference at index 3: model '3', class file 'x'"."""
    return symbols.first_difference(a, b, names) or "identical"


def check_classes(
    loaded: LoadedClassifier, num_outputs: int, data_names: List[str], what: str, folder
) -> List[str]:
    """Refuse a classifier whose class count or order differs from the data's (one line naming both)."""
    if num_outputs != len(data_names):
        raise LskdError(
            f"{what} predicts {num_outputs} classes but {folder} has {len(data_names)} class folders; "
            "use the data the model was trained on"
        )
    if loaded.class_names is not None and list(loaded.class_names) != list(data_names):
        raise LskdError(
            f"{what} names its classes differently from the folders of {folder} "
            f"({first_difference(list(loaded.class_names), list(data_names), ('model', 'data'))}); "
            "use the data it was trained on, or a class file in its output order"
        )
    return list(data_names)


def num_outputs(model: torch.nn.Module) -> int:
    n = getattr(model, "num_classes", None)
    return int(n) if n else int(model(torch.zeros(1, 3, 32, 32)).shape[-1])


def load_classifier(
    path: str | None,
    *,
    model_name: str | None = None,
    num_classes: int | None = None,
    class_file: str | None = None,
    pretrained: bool = False,
    option: str = "--teacher-checkpoint",
    map_location="cpu",
) -> LoadedClassifier:
    """A classifier in eval mode from an lskd checkpoint, a timm checkpoint / state dict, or timm's
    pretrained weights (``pretrained=True``; ``path`` then overrides the weights file)."""
    class_names = read_class_file(class_file, option.replace("checkpoint", "class-file"))
    if pretrained:
        loaded = _load_pretrained(path, model_name, num_classes, option)
    elif path is None:
        raise LskdError(f"{option}: give a checkpoint file (or timm's weights with --teacher-pretrained)")
    else:
        state, obj = read_state_dict(path, option)
        loaded = (
            _from_lskd(obj, model_name, option, path)
            if is_lskd(obj)
            else _from_timm_state(state, obj, model_name, num_classes, option, path)
        )
    if class_names is not None:
        if loaded.class_names is not None and loaded.class_names != class_names:
            raise LskdError(
                f"{option} {path} names its classes differently from the class file "
                f"({first_difference(loaded.class_names, class_names, ('checkpoint', 'class file'))})"
            )
        loaded.class_names = class_names
    loaded.model.to(map_location).eval()
    return loaded


def _from_lskd(ckpt: Dict[str, Any], model_name: str | None, option: str, path) -> LoadedClassifier:
    if model_name and model_name != ckpt["model_name"]:
        raise LskdError(
            f"{option} {path} holds a {ckpt['model_name']} model, not --teacher-model {model_name}; "
            "an lskd checkpoint names its model, so leave --teacher-model out"
        )
    model = build_model(ckpt)
    model.load_state_dict(ckpt["state_dict"])
    meta = {k: v for k, v in ckpt.items() if k not in ("state_dict", "optimizer", "scheduler", "scaler")}
    return LoadedClassifier(
        model, list(ckpt["class_names"]), ckpt["model_name"], "lskd", ckpt.get("data_config"), meta
    )


def _timm_args(obj: Any) -> Dict[str, Any]:
    """The argparse Namespace that timm's train.py pickles into its checkpoints, as a dict."""
    args = obj.get("args") if isinstance(obj, dict) else None
    return dict(vars(args)) if args is not None and hasattr(args, "__dict__") else {}


def _head_size(model: torch.nn.Module, state: Dict[str, torch.Tensor]) -> int | None:
    """Number of classes of the classifier weights in ``state`` (timm's pretrained_cfg names the head)."""
    heads = (getattr(model, "pretrained_cfg", None) or {}).get("classifier", "fc")
    for head in [heads] if isinstance(heads, str) else list(heads):
        weight = state.get(f"{head}.weight")
        if weight is not None:
            return int(weight.shape[0])
    return None


def _from_timm_state(
    state, obj, model_name: str | None, num_classes: int | None, option: str, path
) -> LoadedClassifier:
    import timm

    model_name = model_name or _timm_args(obj).get("model")
    model_option = "--teacher-model" if option.startswith("--teacher") else "--model"
    if not model_name:
        raise LskdError(
            f"{option} {path} is {describe(obj)} that does not name its model; "
            f"pass {model_option} NAME (the timm model it was trained as)"
        )
    if not timm.is_model(model_name):
        raise LskdError(f"{model_option} {model_name!r} is not a timm model")
    probe = timm.create_model(model_name, pretrained=False)
    stored = _head_size(probe, state)
    if num_classes is not None and stored is not None and stored != num_classes:
        raise LskdError(
            f"{option} {path} has a {stored}-class classifier but "
            f"{model_option.replace('model', 'num-classes')} is {num_classes}"
        )
    model = timm.create_model(model_name, pretrained=False, num_classes=num_classes or stored or 1000)
    own = model.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    shapes = [k for k in own if k in state and own[k].shape != state[k].shape]
    if missing or unexpected or shapes:
        raise LskdError(
            f"{option} {path} does not fit a {model_name} (missing {len(missing)} weights, e.g. "
            f"{(missing or ['-'])[0]}; unexpected {len(unexpected)}, e.g. {(unexpected or ['-'])[0]}; "
            f"other shape {len(shapes)}); pass the {model_option} it was trained as"
        )
    model.load_state_dict(state, strict=True)
    return LoadedClassifier(model, None, model_name, "timm-checkpoint")


def _load_pretrained(path: str | None, model_name: str | None, num_classes: int | None, option) -> Any:
    import timm

    if not model_name:
        raise LskdError(
            "--teacher-pretrained needs --teacher-model NAME (a timm model with pretrained weights)"
        )
    if not timm.is_model(model_name):
        raise LskdError(f"--teacher-model {model_name!r} is not a timm model")
    if path:
        return _pretrained_from_file(path, model_name, num_classes, option)
    try:
        with hub_offline():
            model = timm.create_model(model_name, pretrained=True)
    except Exception as err:
        raise LskdError(
            f"--teacher-pretrained: timm's weights for {model_name} are not available locally "
            f"({type(err).__name__}); download them where there is internet (timm.create_model("
            f"{model_name!r}, pretrained=True)) and copy the cache, or pass the file with {option} FILE"
        ) from None
    if num_classes is not None and num_classes != model.num_classes:
        raise LskdError(
            f"--teacher-pretrained: timm's {model_name} predicts {model.num_classes} classes but "
            f"--teacher-num-classes is {num_classes}"
        )
    return LoadedClassifier(model, _imagenet_names(model), model_name, "timm-pretrained")


@contextlib.contextmanager
def hub_offline():
    """Look up timm's pretrained weights in the local Hugging Face cache only: no network retries
    (minutes of them, and many lines of log, on a machine without internet)."""
    try:
        from huggingface_hub import constants
    except ImportError:  # no hub: timm's own cache only
        yield
        return
    before = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before


def _imagenet_names(model: torch.nn.Module) -> List[str] | None:
    """WordNet ids (ImageNet's folder names) of a timm ImageNet classifier, where timm knows them."""
    from timm.data import ImageNetInfo, infer_imagenet_subset

    subset = infer_imagenet_subset(model)
    return list(ImageNetInfo(subset).label_names()) if subset else None


def _pretrained_from_file(
    path: str, model_name: str, num_classes: int | None, option: str
) -> LoadedClassifier:
    """timm's pretrained loading (its filters and adaptations) from a local file of weights."""
    import timm

    state, _ = read_state_dict(path, option)
    probe = timm.create_model(model_name, pretrained=False)
    n = num_classes or _head_size(probe, state) or probe.num_classes
    overlay = {"file": str(path), "num_classes": n}
    try:
        model = timm.create_model(model_name, pretrained=True, num_classes=n, pretrained_cfg_overlay=overlay)
    except Exception as err:
        raise LskdError(
            f"{option} {path}: timm cannot load it as {model_name} weights "
            f"({type(err).__name__}: {str(err).splitlines()[0][:160]})"
        ) from None
    return LoadedClassifier(
        model, _imagenet_names(model) if n == 1000 else None, model_name, "timm-pretrained"
    )
