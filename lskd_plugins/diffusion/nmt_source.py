"""The translation side of the diffusion analysis: fairseq checkpoints on a data-bin.

Classes are target tokens; features are the decoder's last hidden state at gold positions under
teacher forcing (``capture.capture_fairseq``). Before a model is loaded its checkpoint is read
without its weights to check what kind of file it is and that its dictionaries are the data-bin's
symbol by symbol (a data-bin with the same symbols in another order would give numbers for the
wrong tokens, silently).
"""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np
import torch

from lskd_plugins.diffusion.capture import Captured, capture_fairseq, fairseq_templates
from lskd_plugins.diffusion.core import positions
from lskd_plugins.diffusion.inputs import (
    NMT_EXPECTED,
    checkpoint_kind,
    first_line,
    is_fairseq,
    peek_checkpoint,
)
from lskd_plugins.diffusion.select import mean_probability_matrix
from lskd_plugins.errors import LskdError

LSKD_KD_ALPHA_DEFAULT = 0.9  # lskd_kd's default --kd-alpha, for checkpoints that do not store it


MIN_CANDIDATE_COUNT = 10  # positions per split a token needs to be chosen automatically


def cfg_get(node: Any, name: str, default=None):
    """A value from a fairseq config node (DictConfig, dict or Namespace); ``default`` when unset."""
    try:
        value = node.get(name, default) if hasattr(node, "get") else getattr(node, name, default)
    except Exception:  # omegaconf missing values
        value = default
    return default if value is None else value


def checkpoint_section(state: Any, section: str) -> Any:
    """``state['cfg'][section]`` of a fairseq checkpoint, or its old flat ``args`` Namespace."""
    cfg = state.get("cfg") if isinstance(state, dict) else None
    if cfg is not None:
        return cfg_get(cfg, section)
    return state.get("args") if isinstance(state, dict) else None


def teacher_smoothing(teacher_path: str) -> float | None:
    """The label smoothing a teacher checkpoint was trained with (None when it cannot be read)."""
    first = teacher_path.split(":")[0]
    try:
        state = peek_checkpoint(first)
    except LskdError:
        return None
    crit = checkpoint_section(state, "criterion")
    return None if crit is None else float(cfg_get(crit, "label_smoothing", 0.0))


def nmt_label(cfg, path: str, teacher_ls: float | None = None) -> str:
    """A readable role from a fairseq checkpoint's config, else the file name.

    - ``lskd_kd`` with kd_alpha > 0 and a teacher: "KD student T=3 kd_alpha=0.9 eps=0.1 from teacher
      alpha=0.1" (the teacher's smoothing ``teacher_ls``; its folder name where it is unknown);
    - ``lskd_kd`` with kd_alpha 0 or no teacher: "no-KD student eps=0.1";
    - any other criterion: "teacher alpha=<label_smoothing>".
    """
    crit = getattr(cfg, "criterion", None)
    if crit is None:
        return Path(path).stem
    name = str(cfg_get(crit, "_name", "") or "")
    ls = float(cfg_get(crit, "label_smoothing", 0.0))
    teacher = str(cfg_get(getattr(cfg, "task", None), "teacher_path", "") or "")
    if "kd" not in name:
        return f"teacher alpha={ls:g}"
    alpha = float(cfg_get(crit, "kd_alpha", LSKD_KD_ALPHA_DEFAULT))
    eps = f" eps={ls:g}" if ls else ""
    if alpha <= 0 or not teacher:
        return f"no-KD student{eps}"
    t = float(cfg_get(crit, "kd_temperature", 1.0))
    first = Path(teacher.split(":")[0])
    source = f"teacher alpha={teacher_ls:g}" if teacher_ls is not None else first.parent.name or first.stem
    return f"KD student T={t:g} kd_alpha={alpha:g}{eps} from {source}"


def is_word(symbol: str, sentencepiece: bool = False) -> bool:
    """A whole-word target symbol (letters only; not a special symbol, not a subword piece that
    continues a word: a BPE ``@@`` piece, or in a sentencepiece vocabulary one without the
    leading "\u2581", e.g. 'Shirt' of 'T-Shirt')."""
    s = symbol.lstrip("\u2581")
    return (
        bool(s)
        and s.isalpha()
        and not symbol.endswith("@@")
        and not (sentencepiece and not symbol.startswith("\u2581"))
        and not (symbol.startswith("<") and symbol.endswith(">"))
    )


def is_sentencepiece(symbols) -> bool:
    """A sentencepiece vocabulary: word-initial pieces carry "\u2581" (most of them, in practice)."""
    return any(str(sym).startswith("\u2581") for sym in symbols)


def nmt_batches(dataset, n_sentences: int, batch_size: int, seed: int | None = None) -> List[dict]:
    """The first ``n_sentences`` sentences of a fairseq LanguagePairDataset, collated in order; with
    ``seed``, a seeded random sample of ``n_sentences`` of them (in corpus order)."""
    n = min(n_sentences, len(dataset))
    order = list(range(n))
    if seed is not None:
        order = sorted(np.random.default_rng(seed).choice(len(dataset), size=n, replace=False).tolist())
    return [
        dataset.collater([dataset[j] for j in order[i : i + batch_size]]) for i in range(0, n, batch_size)
    ]


def cap_per_class(cap: Captured, per_class: int) -> Captured:
    """Keep the first ``per_class`` rows of each label (occurrence order)."""
    keep = np.zeros(len(cap.labels), dtype=bool)
    for lab in np.unique(cap.labels):
        idx = np.flatnonzero(cap.labels == lab)[:per_class]
        keep[idx] = True
    return Captured(cap.features[keep], cap.labels[keep], cap.probs[keep], cap.correct[keep], cap.prob_ids)


def data_bin_languages(data_bin: Path, state: Any) -> Tuple[str, str]:
    """(source, target) language of the checkpoint, or inferred from the data-bin's file names."""
    task = checkpoint_section(state, "task")
    src, tgt = cfg_get(task, "source_lang"), cfg_get(task, "target_lang")
    if src and tgt:
        return str(src), str(tgt)
    from fairseq.data.data_utils import infer_language_pair

    src, tgt = infer_language_pair(str(data_bin))
    if not src:
        raise LskdError(f"--data {data_bin}: cannot tell the language pair (no train.SRC-TGT.* files)")
    return src, tgt


def dictionary_check(path: str, state: Any, data_bin: Path, log, option: str) -> None:
    """The checkpoint's training dictionaries against the data-bin's, symbol by symbol (nmt/inputs.py);
    where its training data-bin is gone, the embedding sizes (and a warning says so)."""
    from lskd_plugins.nmt.inputs import dictionary_problems

    src, tgt = data_bin_languages(data_bin, state)
    for lang in (src, tgt):
        if not (data_bin / f"dict.{lang}.txt").is_file():
            raise LskdError(f"--data {data_bin} has no dict.{lang}.txt; give the fairseq data-bin folder")
    trained = str(cfg_get(checkpoint_section(state, "task"), "data", "") or "")
    problems, compared = dictionary_problems(trained, state.get("model") or {}, data_bin, src, tgt)
    if problems:
        raise LskdError(
            f"{option} {path} was not trained on the dictionaries of --data {data_bin}: "
            f"{'; '.join(problems)}; give the data-bin the model was trained on"
        )
    if not compared:
        print(
            f"lskd: warning: {path}: its training data-bin {trained} is gone; only the sizes were compared",
            file=sys.stderr,
        )


@dataclass
class NmtModel:
    model: torch.nn.Module
    label: str
    task: Any
    extra: dict = field(default_factory=dict)


class NmtSource:
    """Loads fairseq checkpoints and captures decoder states on the first sentences of two subsets."""

    modality, unit, units = "nmt", "target token", "tokens"

    def __init__(
        self,
        data_bin,
        max_sentences: int = 2000,
        per_token: int = 500,
        batch_size: int = 64,
        candidates: int = 50,
        train_subset: str = "train",
        valid_subset: str = "valid",
        device: torch.device | None = None,
        progress: bool = True,
        log=print,
        seed: int | None = None,
    ):
        self.data_bin = Path(data_bin)
        self.seed = seed  # None: the first --max-sentences sentences; else a seeded sample of them
        if not self.data_bin.is_dir():
            what = "is a file, not a folder" if self.data_bin.exists() else "not found"
            raise LskdError(
                f"--data {self.data_bin}: data-bin folder {what}; give fairseq-preprocess's output"
            )
        self.max_sentences, self.per_token, self.candidates = max_sentences, per_token, candidates
        self.subsets = {"train": train_subset, "valid": valid_subset}
        self.batch_size, self.progress, self.log = batch_size, progress, log
        self.device = device or torch.device("cpu")
        self.batches: Dict[str, List[dict]] = {}
        self.pad = 1

    def load(self, path: str, option: str = "--checkpoints") -> NmtModel:
        from lskd_plugins.fairseq_io import load_ensemble

        state = peek_checkpoint(path, option)
        if not is_fairseq(state):
            raise LskdError(f"{option} {path} is {checkpoint_kind(state)}; {NMT_EXPECTED}")
        dictionary_check(path, state, self.data_bin, self.log, option)
        teacher = str(cfg_get(checkpoint_section(state, "task"), "teacher_path", "") or "")
        teacher_ls = teacher_smoothing(teacher) if teacher else None
        del state
        try:
            models, cfg, task = load_ensemble([path], arg_overrides={"data": str(self.data_bin)})
        except LskdError as err:  # fairseq's own messages span lines (omegaconf's full_key ...)
            raise LskdError(err.message.strip().splitlines()[0]) from None
        if not self.batches:
            self.read_batches(task)
        return NmtModel(models[0].to(self.device).eval(), nmt_label(cfg, path, teacher_ls), task)

    def read_batches(self, task) -> None:
        """The first --max-sentences sentences of each subset, collated once for every model."""
        from lskd_plugins.nmt.inputs import check_indexed_dataset

        self.pad = task.target_dictionary.pad()
        src, tgt = task.cfg.source_lang, task.cfg.target_lang
        for split, subset in self.subsets.items():
            for lang in (src, tgt):
                check_indexed_dataset(self.data_bin / f"{subset}.{src}-{tgt}.{lang}")
            try:
                task.load_dataset(subset)
                self.batches[split] = nmt_batches(
                    task.dataset(subset), self.max_sentences, self.batch_size, self.seed
                )
            except Exception as err:
                raise LskdError(
                    f"cannot read the {subset!r} split of {self.data_bin} ({first_line(err)}); "
                    "check the subset name, or binarize the data again if its files are truncated"
                ) from None

    def class_index(self, m: NmtModel) -> Dict[str, int]:
        d = m.task.target_dictionary
        return {d[i]: i for i in range(d.nspecial, len(d))}

    def split_counts(self, split: str) -> Counter:
        counts = Counter()
        for b in self.batches[split]:
            counts.update(t for t in b["target"].flatten().tolist() if t != self.pad)
        return counts

    def candidate_tokens(self, m: NmtModel) -> List[int]:
        """The --candidates most frequent whole-word target tokens of the validation sentences that
        occur at least MIN_CANDIDATE_COUNT times in every split read (train and valid), so that
        the chosen tokens always have enough positions for the analysis."""
        d = m.task.target_dictionary
        counts = {split: self.split_counts(split) for split in self.batches}
        spm = is_sentencepiece(d.symbols[d.nspecial :])
        words = [t for t, _ in counts["valid"].most_common() if t >= d.nspecial and is_word(d[t], spm)]
        enough = [t for t in words if all(c[t] >= MIN_CANDIDATE_COUNT for c in counts.values())]
        cand = enough[: self.candidates]
        if len(cand) < 3:
            raise LskdError(
                f"fewer than three word tokens occur {MIN_CANDIDATE_COUNT}+ times in the first "
                f"{self.max_sentences} sentences of each split; give --tokens or raise --max-sentences"
            )
        return cand

    def confusion(self, m: NmtModel) -> Tuple[np.ndarray, List[str], List[int]]:
        """Mean soft predictions among the candidate tokens at their gold positions (automatic choice)."""
        cand = self.candidate_tokens(m)
        self.log(f"diffusion: choosing tokens among the {len(cand)} most frequent target words")
        cap = capture_fairseq(
            m.model, self.batches["valid"], cand, cand, self.pad, "choose tokens", self.progress, False
        )
        m_probs = mean_probability_matrix(cap.probs, positions(cap.labels, cand), len(cand))
        return m_probs, [m.task.target_dictionary[t] for t in cand], cand

    def capture(self, m: NmtModel, selection, split: str, desc: str) -> Captured:
        ids = selection.ids
        cap = capture_fairseq(m.model, self.batches[split], ids, ids, self.pad, desc, self.progress)
        return cap_per_class(cap, self.per_token)

    def too_few(self, name: str, n: int, split: str) -> str:
        return (
            f"target token {name!r} occurs {n} time(s) in the first {self.max_sentences} {split} sentences; "
            "raise --max-sentences or choose a more frequent token"
        )

    def templates(self, m: NmtModel, ids: Sequence[int]) -> np.ndarray:
        return fairseq_templates(m.model, ids)

    def record_extra(self, m: NmtModel) -> dict:
        return dict(m.extra)
