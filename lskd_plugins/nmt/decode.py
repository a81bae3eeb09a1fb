"""The one decoding path of ``lskd seqkd`` and ``lskd bleu``: fairseq's SequenceGenerator, in process.

``Decoder`` loads a checkpoint (or a ``:``-separated ensemble) through ``fairseq_io.load_ensemble``
with the task's data directory replaced by ``--data``, loads one subset of that data-bin, and
translates any list of sentence ids. Results are keyed by the dataset's sentence id, so callers
put them back in the corpus order whatever order fairseq's length batching used.

Batching: sentences sorted by source length (stable), cut by ``max_tokens`` / ``batch_size``; a
sentence longer than ``max_tokens`` is decoded alone instead of failing. A source longer than the
models' maximum positions is not decoded (``Decoded.tokens is None`` with the reason). A batch that
raises (e.g. out of memory) is retried one sentence at a time, so one bad sentence fails alone.
The same ids and options give the same batches, hence the same output bytes on the same device.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

from lskd_plugins.checkpoints import first_line
from lskd_plugins.errors import (
    MAX_BEAM,
    LskdError,
    finite_float,
    int_between,
    nonneg_float,
    nonneg_int,
    positive_int,
)
from lskd_plugins.fairseq_io import split_paths
from lskd_plugins.nmt import inputs
from lskd_plugins.progress import Progress

POST_PROCESS_CHOICES = ("auto", "sentencepiece", "subword_nmt", "none")


@dataclass
class DecodeOptions:
    beam: int = 4
    max_tokens: int | None = 4096
    batch_size: int | None = None
    max_len_a: float = 0.0  # fairseq's defaults: hypotheses up to a * source length + b tokens
    max_len_b: int = 200
    lenpen: float = 1.0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    fp16: bool = False

    def check(self) -> None:
        if self.beam < 1:
            raise LskdError(f"--beam must be >= 1, got {self.beam}")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise LskdError(f"--max-tokens must be >= 1, got {self.max_tokens}")
        if self.batch_size is not None and self.batch_size < 1:
            raise LskdError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.max_tokens is None and self.batch_size is None:
            raise LskdError("give --max-tokens or --batch-size")
        if self.max_len_a < 0 or self.max_len_b < 0 or self.max_len_a + self.max_len_b <= 0:
            raise LskdError(
                f"--max-len-a {self.max_len_a} --max-len-b {self.max_len_b}: both must be >= 0 and "
                "one > 0 (hypotheses may have up to a * source length + b tokens)"
            )


@dataclass
class Decoded:
    tokens: List[int] | None  # hypothesis token ids without EOS; None: not decoded
    reason: str = ""  # why it was not decoded


def add_decode_arguments(parser, default_subset: str, with_path: bool = True) -> None:
    """The options ``seqkd`` and ``bleu`` share (one decoding path, one set of flags)."""
    parser.add_argument(
        "--data", required=True, help="fairseq data-bin; its dictionaries must be the model's (required)"
    )
    if with_path:
        parser.add_argument(
            "--path",
            required=True,
            help="fairseq checkpoint, or an ensemble as A.pt:B.pt (required; only load checkpoints "
            "you trust: fairseq checkpoints are pickles)",
        )
    parser.add_argument(
        "--subset",
        default=default_subset,
        help="split to decode: fairseq's name (test, test1, ...) or a test set's name listed in "
        "DATA/test_sets.tsv (e.g. test_2017_mscoco) (default %(default)s)",
    )
    parser.add_argument(
        "--beam",
        type=int_between(1, MAX_BEAM),
        default=4,
        help="beam size (default %(default)s, as Tan et al.)",
    )
    parser.add_argument(
        "--max-tokens", type=positive_int, default=4096, help="source tokens per batch (default %(default)s)"
    )
    parser.add_argument(
        "--batch-size", type=positive_int, default=None, help="sentences per batch (default: no limit)"
    )
    parser.add_argument(
        "--lenpen", type=finite_float, default=1.0, help="length penalty (default %(default)s)"
    )
    parser.add_argument(
        "--max-len-a",
        type=nonneg_float,
        default=0.0,
        help="max hypothesis length = a * source length + b (default a=%(default)s; fairseq takes the "
        "padded source length of the batch, so a > 0 makes hypotheses depend on batching)",
    )
    parser.add_argument(
        "--max-len-b", type=nonneg_int, default=200, help="b of --max-len-a (default %(default)s)"
    )
    parser.add_argument(
        "--device",
        default="auto",
        help="auto (cuda when available), cpu, cuda or cuda:N (default %(default)s)",
    )
    parser.add_argument("--fp16", action="store_true", help="half precision on GPU (default: off)")


def options_from_args(args) -> DecodeOptions:
    options = DecodeOptions(
        beam=args.beam,
        max_tokens=args.max_tokens,
        batch_size=args.batch_size,
        max_len_a=args.max_len_a,
        max_len_b=args.max_len_b,
        lenpen=args.lenpen,
        device=args.device,
        fp16=args.fp16,
    )
    options.check()
    return options


def resolve_device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise LskdError(f"--device {name!r} is not a device (auto, cpu, cuda, cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise LskdError(f"--device {name}: CUDA is not available on this machine; use --device cpu")
    return device


def detect_post_process(dictionary) -> str:
    """'sentencepiece' when the symbols carry U+2581 word marks, 'subword_nmt' for @@, else 'none'."""
    symbols = [s for i, s in enumerate(dictionary.symbols) if i >= dictionary.nspecial]
    if not symbols:
        return "none"
    if sum("\u2581" in s for s in symbols) >= 0.1 * len(symbols):
        return "sentencepiece"
    if any(s.endswith("@@") for s in symbols):
        return "subword_nmt"
    return "none"


def model_languages(state: dict, data: Path) -> Tuple[str | None, str | None]:
    """(source, target) language of a checkpoint: its task's, else inferred from ``data`` as fairseq does."""
    task_cfg = state["cfg"]["task"]
    src, tgt = task_cfg.get("source_lang"), task_cfg.get("target_lang")
    if src and tgt:
        return src, tgt
    from fairseq.data import data_utils

    return data_utils.infer_language_pair(str(data))


def load_models(paths: Sequence[str], data: Path):
    """(models, cfg, task) of a checkpoint or ensemble, with the task's data replaced by ``data``.

    Each checkpoint is read once; one-line errors say what a file is when it is not a fairseq
    translation checkpoint, and the model's dictionaries are compared with ``data``'s."""
    from fairseq import checkpoint_utils
    from fairseq.dataclass.utils import overwrite_args_by_name

    models, cfg, task = [], None, None
    for path in paths:
        state = inputs.read_fairseq_state(path)
        trained_data = state["cfg"]["task"].get("data")
        # Dictionaries first (the first differing symbol, as fairseq-train's teacher check says it):
        # loading a model of other dictionaries would fail with torch's many-line size mismatch.
        src, tgt = model_languages(state, data)
        if src and tgt:
            inputs.check_model_dictionaries(path, trained_data, state["model"], data, src, tgt)
        overwrite_args_by_name(state["cfg"], {"data": str(data)})
        try:
            loaded, cfg, task = checkpoint_utils.load_model_ensemble_and_task([path], task=task, state=state)
        except LskdError:
            raise
        except Exception as err:
            raise LskdError(f"cannot load checkpoint {path}: {first_line(err)}") from None
        if not (src and tgt):
            src, tgt = task.cfg.source_lang, task.cfg.target_lang
            inputs.check_model_dictionaries(path, trained_data, state["model"], data, src, tgt)
        models.extend(loaded)
    return models, cfg, task


def subset_hint(data: Path, known: Sequence[str]) -> str:
    """What the data-bin has, and where a test set's name could come from."""
    hint = f"it has {', '.join(known) or 'none'}"
    if inputs.read_test_sets(data):
        return f"{hint}; test-set names in {data / inputs.TEST_SETS_FILE}"
    if (data.parent / "prepare.json").is_file():
        return (
            f"{hint} and no {inputs.TEST_SETS_FILE} naming its test sets (prepared before lskd wrote one "
            "for every layout, or the file was removed); prepare it again with the same command plus "
            "--overwrite to get every test set and their names"
        )
    return hint


class Decoder:
    """A loaded model (or ensemble) and one subset of a data-bin, ready to translate ids."""

    def __init__(self, paths: str | Sequence[str], data: str | Path, subset: str, options: DecodeOptions):
        import torch

        options.check()
        self.options = options
        self.paths = split_paths(paths)
        data = inputs.check_data_bin(data)
        for dict_file in sorted(data.glob("dict.*.txt")):
            inputs.load_dictionary(dict_file)
        subset, self.subset_name = inputs.resolve_subset(data, subset)
        self.device = resolve_device(options.device)
        models, cfg, task = load_models(self.paths, data)
        self.task, self.cfg = task, cfg
        self.src, self.tgt = getattr(task.cfg, "source_lang", None), getattr(task.cfg, "target_lang", None)
        self.dataset = self._load_subset(data, subset)
        self.subset, self.data = subset, data
        use_fp16 = options.fp16 and self.device.type == "cuda"
        if options.fp16 and not use_fp16:
            print(f"lskd: note: --fp16 is for GPUs; decoding in float32 on {self.device}", file=sys.stderr)
        for m in models:
            m.eval()
            if use_fp16:
                m.half()
            m.to(self.device)
        self.models = models
        self.generator = self._build_generator()
        self.src_dict, self.tgt_dict = task.source_dictionary, task.target_dictionary
        self._torch = torch

    def _load_subset(self, data: Path, subset: str):
        for prefix in inputs.subset_files(data, subset, self.src, self.tgt):
            inputs.check_indexed_dataset(prefix)
        try:
            self.task.load_dataset(subset, combine=False, epoch=1)
        except (FileNotFoundError, KeyError) as err:
            known = sorted(
                {p.name.split(".")[0] for p in data.glob(f"*.{self.src}-{self.tgt}.{self.src}.idx")}
            )
            raise LskdError(
                f"subset {subset!r} not found in {data} ({err}); {subset_hint(data, known)}"
            ) from None
        except Exception as err:
            raise LskdError(
                f"cannot read subset {subset!r} of {data} ({type(err).__name__}: {str(err)[:120]}); "
                "binarize the data again"
            ) from None
        return self.task.dataset(subset)

    def _build_generator(self):
        from fairseq import utils
        from fairseq.dataclass.configs import GenerationConfig

        options = self.options
        self.max_positions = utils.resolve_max_positions(
            self.task.max_positions(), *[m.max_positions() for m in self.models]
        )
        return self.task.build_generator(
            self.models,
            GenerationConfig(
                beam=options.beam,
                max_len_a=options.max_len_a,
                max_len_b=options.max_len_b,
                lenpen=options.lenpen,
            ),
        )

    def __len__(self) -> int:
        return len(self.dataset)

    # -- text of the data-bin ------------------------------------------------------------------
    def source_text(self, i: int, post_process: str | None = None) -> str:
        return self.src_dict.string(self.dataset.src[i], post_process)

    def target_text(self, i: int, post_process: str | None = None, escape_unk: bool = False) -> str:
        if self.dataset.tgt is None:
            raise LskdError(f"subset {self.subset} of the data-bin has no target side")
        return self.tgt_dict.string(self.dataset.tgt[i], post_process, escape_unk=escape_unk)

    def hypothesis_text(self, tokens: Sequence[int], post_process: str | None = None) -> str:
        return self.tgt_dict.string(self._torch.tensor(tokens, dtype=self._torch.long), post_process)

    # -- decoding --------------------------------------------------------------------------------
    def _batches(self, ids: Sequence[int]) -> List[List[int]]:
        import numpy as np
        from fairseq.data import data_utils

        if not ids:
            return []
        ids_arr = np.asarray(ids, dtype=np.int64)
        sizes = self.dataset.src_sizes[ids_arr].astype(np.int64)
        order = ids_arr[np.argsort(sizes, kind="stable")]
        max_tokens = self.options.max_tokens
        if max_tokens is not None:
            max_tokens = max(max_tokens, int(sizes.max()))  # a long sentence goes alone, never fails
        batches = data_utils.batch_by_size(
            order,
            num_tokens_fn=lambda i: int(self.dataset.src_sizes[i]),
            num_tokens_vec=self.dataset.src_sizes[order].astype(np.int64),
            max_tokens=max_tokens,
            max_sentences=self.options.batch_size,
        )
        return [[int(i) for i in b] for b in batches]

    def _generate(self, batch: Sequence[int]) -> Dict[int, Decoded]:
        from fairseq import utils

        sample = self.dataset.collater([self.dataset[i] for i in batch])
        sample = utils.apply_to_sample(lambda t: t.to(self.device), sample)
        hypos = self.task.inference_step(self.generator, self.models, sample)
        eos = self.tgt_dict.eos()
        out: Dict[int, Decoded] = {}
        for j, sid in enumerate(sample["id"].tolist()):
            tokens = hypos[j][0]["tokens"].tolist()
            if tokens and tokens[-1] == eos:
                tokens = tokens[:-1]
            out[int(sid)] = Decoded(tokens)
        return out

    def translate(
        self,
        ids: Sequence[int],
        progress: bool = True,
        desc: str = "decode",
        bar: Progress | None = None,
    ) -> Dict[int, Decoded]:
        """Best beam hypothesis for every id (``Decoded.tokens is None`` where it could not be decoded).

        ``bar``: a caller's whole-job Progress to advance (seqkd's over all shards); without it,
        one over these ids."""
        results: Dict[int, Decoded] = {}
        max_src = self.max_positions[0] if isinstance(self.max_positions, tuple) else self.max_positions
        todo = []
        for i in ids:
            size = int(self.dataset.src_sizes[i])
            if max_src is not None and size > max_src:
                results[int(i)] = Decoded(
                    None, f"source has {size} tokens, the model takes at most {max_src}"
                )
            else:
                todo.append(int(i))
        own = bar is None
        if own:
            bar = Progress(total=len(ids), desc=desc, unit="sent", enabled=progress)
        bar.update(len(results))
        for batch in self._batches(todo):
            results.update(self._generate_or_retry(batch))
            bar.update(len(batch))
        if own:
            bar.close()
        return results

    def _generate_or_retry(self, batch: Sequence[int]) -> Dict[int, Decoded]:
        """A batch, or, when it raises (e.g. out of memory), each sentence alone: one bad sentence
        fails by itself."""
        try:
            return self._generate(batch)
        except Exception as err:
            if "out of memory" in str(err) and self.device.type == "cuda":
                self._torch.cuda.empty_cache()
        results: Dict[int, Decoded] = {}
        for i in batch:
            try:
                results.update(self._generate([i]))
            except Exception as single_err:
                results[i] = Decoded(None, f"{type(single_err).__name__}: {single_err}"[:200])
        return results
