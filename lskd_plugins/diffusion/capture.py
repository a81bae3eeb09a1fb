"""Capture penultimate features without editing models.

- ``ForwardHookManager``: a small, torchdistill-style manager of forward hooks on any
  ``nn.Module`` addressed by its module name (``model.named_modules()``); it records the
  inputs and/or outputs of each call.
- timm: the input of the classifier (``model.get_classifier()``) is the penultimate feature, the
  same as ``model.forward_head(x, pre_logits=True)``; templates are the classifier's weight rows
  with their bias appended.
- fairseq: the decoder's last hidden state before the output projection under teacher forcing
  (``model.decoder(prev_output_tokens, encoder_out=..., features_only=True)``), kept only at
  positions whose gold token is one of the chosen ones; templates are the output projection's
  rows (bias 0: fairseq's projection has none).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Sequence

import numpy as np
import torch
from torch import nn

from lskd_plugins.diffusion.projection import augment_templates
from lskd_plugins.errors import LskdError
from lskd_plugins.progress import progress_iter


class ForwardHookManager:
    """Forward hooks by module name; ``pop_io_dict()`` returns {name: {'input': [...], 'output': [...]}}.

    Each call of a hooked module appends its (detached) first positional input and/or output.
    Use as a context manager so hooks are always removed.
    """

    def __init__(self, model: nn.Module):
        self.model = model
        self.modules = dict(model.named_modules())
        self.handles: List[torch.utils.hooks.RemovableHandle] = []
        self.io_dict: Dict[str, Dict[str, list]] = defaultdict(lambda: defaultdict(list))

    def add_hook(self, module_name: str, requires_input: bool = True, requires_output: bool = False) -> None:
        if module_name not in self.modules:
            raise LskdError(f"no module named {module_name!r} in {type(self.model).__name__}")

        def hook(_module, inputs, output):
            if requires_input:
                self.io_dict[module_name]["input"].append(inputs[0].detach())
            if requires_output:
                self.io_dict[module_name]["output"].append(output.detach())

        self.handles.append(self.modules[module_name].register_forward_hook(hook))

    def pop_io_dict(self) -> Dict[str, Dict[str, list]]:
        out = {name: dict(v) for name, v in self.io_dict.items()}
        self.io_dict.clear()
        return out

    def clear(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles.clear()
        self.io_dict.clear()

    def __enter__(self) -> ForwardHookManager:
        return self

    def __exit__(self, *exc) -> None:
        self.clear()


@dataclass
class Captured:
    """Features of one model on one split.

    features [N, D]; labels [N] (class ids, or gold token ids for NMT); probs [N, len(prob_ids)]
    full-softmax probabilities (T=1) of the classes/tokens ``prob_ids``; correct [N] whether the
    model's top-1 over all classes/tokens equals the gold one.
    """

    features: np.ndarray
    labels: np.ndarray
    probs: np.ndarray
    correct: np.ndarray
    prob_ids: List[int] = field(default_factory=list)

    @classmethod
    def from_batches(cls, feats, labels, probs, correct, prob_ids, keep_features: bool = True) -> Captured:
        """Concatenate per-batch CPU tensors (features left empty when not kept)."""
        n = sum(len(x) for x in labels)
        return cls(
            features=torch.cat(feats).numpy() if keep_features else np.zeros((n, 0)),
            labels=torch.cat(labels).numpy(),
            probs=torch.cat(probs).double().numpy(),
            correct=torch.cat(correct).numpy(),
            prob_ids=prob_ids,
        )


def batch_count(batches: Iterable, total: int | None) -> int | None:
    """The number of batches for the progress line: ``total`` when given, else ``len(batches)``."""
    if total is not None:
        return total
    return len(batches) if hasattr(batches, "__len__") else None


def model_device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


# ----------------------------------------------------------------------------------------- timm


def classifier_name(model: nn.Module) -> str:
    """Module name of ``model.get_classifier()`` (the final linear layer)."""
    if not hasattr(model, "get_classifier"):
        raise LskdError(f"{type(model).__name__} has no get_classifier(); expected a timm classifier")
    clf = model.get_classifier()
    if isinstance(clf, (tuple, list)):
        clf = clf[0]
    if not isinstance(clf, (nn.Linear, nn.Conv2d)) or getattr(clf, "weight", None) is None:
        raise LskdError(
            f"the classifier of {type(model).__name__} is {type(clf).__name__}, not a linear layer; "
            "the diffusion analysis needs a model with a final linear classifier"
        )
    for name, module in model.named_modules():
        if module is clf:
            return name
    raise LskdError(f"cannot locate the classifier module of {type(model).__name__}")


def timm_templates(model: nn.Module, class_ids: Sequence[int]) -> np.ndarray:
    """Classifier weight rows of ``class_ids`` with their bias appended: [len, D+1]."""
    clf = dict(model.named_modules())[classifier_name(model)]
    w = clf.weight.detach().float().reshape(clf.weight.shape[0], -1).cpu().numpy()
    b = None if clf.bias is None else clf.bias.detach().float().cpu().numpy()
    ids = list(class_ids)
    return augment_templates(w[ids], None if b is None else b[ids])


def _flatten_features(x: torch.Tensor) -> torch.Tensor:
    if x.dim() == 4:  # a 1x1 conv classifier after pooling
        if x.shape[2] * x.shape[3] != 1:
            raise LskdError(
                "the classifier is a convolution over a spatial map; cannot take one feature per image"
            )
        return x.flatten(1)
    return x.flatten(1)


@torch.no_grad()
def capture_timm(
    model: nn.Module,
    batches: Iterable,
    prob_ids: Sequence[int],
    desc: str = "features",
    progress: bool = True,
    keep_features: bool = True,
    total: int | None = None,
) -> Captured:
    """Run ``model`` over (images, labels) batches; hook the classifier input.

    Returns features (classifier input), labels, probabilities of ``prob_ids`` and correctness.
    """
    model.eval()
    device = model_device(model)
    name = classifier_name(model)
    prob_ids = list(prob_ids)
    feats, labels, probs, correct = [], [], [], []
    with ForwardHookManager(model) as hooks:
        hooks.add_hook(name, requires_input=True)
        for images, target in progress_iter(batches, batch_count(batches, total), desc, "batch", progress):
            logits = model(images.to(device))
            io = hooks.pop_io_dict()[name]["input"]
            if keep_features:
                feats.append(_flatten_features(io[-1]).float().cpu())
            p = torch.softmax(logits.float(), dim=-1)
            target = target.to(p.device)
            probs.append(p[:, prob_ids].cpu())
            correct.append((p.argmax(-1) == target).cpu())
            labels.append(target.cpu())
    if not labels:
        raise LskdError(f"no images to analyse ({desc})")
    return Captured.from_batches(feats, labels, probs, correct, prob_ids, keep_features)


# -------------------------------------------------------------------------------------- fairseq


def output_projection(model: nn.Module) -> nn.Module:
    decoder = getattr(model, "decoder", None)
    proj = getattr(decoder, "output_projection", None)
    if proj is None or getattr(proj, "weight", None) is None:
        raise LskdError(
            f"{type(model).__name__} has no decoder.output_projection (adaptive softmax or a "
            "non-transformer model); the NMT diffusion analysis needs a plain output projection"
        )
    return proj


def fairseq_templates(model: nn.Module, token_ids: Sequence[int]) -> np.ndarray:
    """Output-projection rows of ``token_ids`` with their bias appended (0 when absent)."""
    proj = output_projection(model)
    w = proj.weight.detach().float().cpu().numpy()
    b = getattr(proj, "bias", None)
    ids = list(token_ids)
    return augment_templates(w[ids], None if b is None else b.detach().float().cpu().numpy()[ids])


@torch.no_grad()
def capture_fairseq(
    model: nn.Module,
    batches: Iterable[dict],
    token_ids: Sequence[int],
    prob_ids: Sequence[int] | None = None,
    pad: int = 1,
    desc: str = "features",
    progress: bool = True,
    keep_features: bool = True,
) -> Captured:
    """Teacher-forced decoder features at target positions whose gold token is in ``token_ids``.

    ``batches`` are fairseq samples (``net_input`` with src_tokens, src_lengths,
    prev_output_tokens; ``target``). Returns one row per gold occurrence, in batch order
    (sentence by sentence, left to right), with the gold token id as label.
    """
    model.eval()
    device = model_device(model)
    proj = output_projection(model)
    keep = torch.as_tensor(sorted(set(int(t) for t in token_ids)), dtype=torch.long)
    prob_ids = list(token_ids if prob_ids is None else prob_ids)
    prob_idx = torch.as_tensor(prob_ids, dtype=torch.long, device=device)
    feats, labels, probs, correct = [], [], [], []
    for sample in progress_iter(batches, batch_count(batches, None), desc, "batch", progress):
        net = sample["net_input"]
        target = sample["target"].to(device)
        mask = torch.isin(target, keep.to(device)) & (target != pad)
        if not mask.any():
            continue
        src_tokens = net["src_tokens"].to(device)
        encoder_out = model.encoder(src_tokens, src_lengths=net["src_lengths"].to(device))
        x, _ = model.decoder(
            net["prev_output_tokens"].to(device), encoder_out=encoder_out, features_only=True
        )
        h = x[mask]  # [n, C], row-major = sentence by sentence, left to right
        logits = proj(h).float()
        p = torch.softmax(logits, dim=-1)
        gold = target[mask]
        if keep_features:
            feats.append(h.float().cpu())
        probs.append(p[:, prob_idx].cpu())
        correct.append((p.argmax(-1) == gold).cpu())
        labels.append(gold.cpu())
    if not labels:
        return Captured(
            features=np.zeros((0, proj.weight.shape[1])),
            labels=np.zeros(0, dtype=np.int64),
            probs=np.zeros((0, len(prob_ids))),
            correct=np.zeros(0, dtype=bool),
            prob_ids=prob_ids,
        )
    return Captured.from_batches(feats, labels, probs, correct, prob_ids, keep_features)
