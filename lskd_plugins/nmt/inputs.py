"""Checks on what ``lskd bleu`` / ``lskd seqkd`` read, before any decoding, each a one-line error.

Why a module of its own: a translation checkpoint meets a data-bin in two commands, and every way
that meeting can go silently wrong (dictionaries with the same symbols in another order), or end
in a traceback (a truncated ``.idx``/``.bin``, an image checkpoint, a file where the data-bin
folder should be), is caught here once and named: the file, what was found, what was expected.
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path
from typing import Any, Dict, List, Tuple

from lskd_plugins.errors import LskdError

TEST_SETS_FILE = "test_sets.tsv"  # fairseq_subset<TAB>name, written by lskd prepare-mt


# ----------------------------------------------------------------------------- data-bin
def check_data_bin(data: str | Path, option: str = "--data") -> Path:
    """The data-bin folder, or a one-line error saying what was found instead."""
    path = Path(data)
    if not path.exists():
        raise LskdError(f"{option} {path} does not exist; give a fairseq data-bin folder")
    if not path.is_dir():
        raise LskdError(f"{option} {path} is a file, not a folder; give the fairseq data-bin folder")
    if not list(path.glob("dict.*.txt")):
        raise LskdError(
            f"{option} {path} is not a fairseq data-bin (no dict.*.txt there); "
            "make one with data_prep/prepare_*.sh or fairseq-preprocess"
        )
    return path


def load_dictionary(path: Path):
    """fairseq's Dictionary, or a one-line error for a missing or corrupt dict file."""
    from fairseq.data import Dictionary

    if not path.is_file():
        raise LskdError(f"dictionary {path} not found (the data-bin needs it)")
    try:
        return Dictionary.load(str(path))
    except Exception as err:  # fairseq raises ValueError/RuntimeError for bad lines
        raise LskdError(
            f"dictionary {path} is corrupt ({type(err).__name__}: {str(err).splitlines()[0][:120]}); "
            "binarize the data again"
        ) from None


def resolve_subset(data: Path, subset: str) -> Tuple[str, str]:
    """(fairseq subset, display name): ``--subset`` may be fairseq's name (test1) or the test set's
    own name (test_2017_flickr) listed in DATA/test_sets.tsv."""
    names = read_test_sets(data)
    if subset in names:
        return subset, names[subset]
    by_name = {name: fs for fs, name in names.items()}
    if subset in by_name:
        return by_name[subset], subset
    return subset, subset


def read_test_sets(data: Path) -> Dict[str, str]:
    """{fairseq subset: test-set name} from DATA/test_sets.tsv ({} when absent)."""
    path = Path(data) / TEST_SETS_FILE
    if not path.is_file():
        return {}
    names: Dict[str, str] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 2 or not all(p.strip() for p in parts):
            raise LskdError(f"{path} line {n}: expected 'fairseq_subset<TAB>name', got {line!r}")
        names[parts[0].strip()] = parts[1].strip()
    return names


def subset_files(data: Path, subset: str, src: str, tgt: str) -> List[Path]:
    return [data / f"{subset}.{src}-{tgt}.{lang}" for lang in (src, tgt)]


def check_indexed_dataset(prefix: Path) -> None:
    """A fairseq mmap ``PREFIX.idx``/``PREFIX.bin`` pair whose sizes agree, or a one-line error.

    fairseq itself would fail deep inside numpy (or, for a short ``.bin``, later, mid-decoding)."""
    idx, bin_ = Path(f"{prefix}.idx"), Path(f"{prefix}.bin")
    if not idx.is_file() and not bin_.is_file():
        return  # an absent side (e.g. no target) is the caller's business
    fix = "binarize the data again (data_prep/prepare_*.sh, or fairseq-preprocess)"
    for f in (idx, bin_):
        if not f.is_file():
            raise LskdError(f"{f} is missing (its pair is there); {fix}")
    raw = idx.read_bytes()
    if not raw.startswith(b"MMIDIDX\x00\x00"):
        return  # another fairseq format: fairseq's own reader checks it
    header = 9 + 8 + 1 + 8  # magic, version, dtype code, count (fairseq 0.12's mmap index)
    if len(raw) < header:
        raise LskdError(f"{idx} is truncated ({len(raw)} bytes, shorter than its header); {fix}")
    code = raw[17]
    (count,) = struct.unpack("<Q", raw[18:26])
    expected = header + 4 * count + 8 * count
    if len(raw) != expected:
        raise LskdError(
            f"{idx} is truncated or corrupt ({len(raw)} bytes, its header implies {expected}); {fix}"
        )
    if count == 0:
        return
    itemsize = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 8, 7: 8, 8: 2, 9: 4, 10: 8}.get(code, 0)
    last_size = struct.unpack("<i", raw[header + 4 * (count - 1) : header + 4 * count])[0]
    ptr_at = header + 4 * count + 8 * (count - 1)
    last_ptr = struct.unpack("<q", raw[ptr_at : ptr_at + 8])[0]
    need = last_ptr + last_size * itemsize
    if bin_.stat().st_size < need:
        raise LskdError(f"{bin_} is truncated ({bin_.stat().st_size} bytes, its index needs {need}); {fix}")


# ----------------------------------------------------------------------------- checkpoints
def describe_foreign_checkpoint(path: str) -> str | None:
    """What a checkpoint that fairseq cannot use is, in words (None: it looks like fairseq's);
    ``lskd_plugins.checkpoints``'s one description of checkpoint kinds for every command."""
    from lskd_plugins.checkpoints import FAIRSEQ, describe_file

    kind = describe_file(path)
    return None if kind == FAIRSEQ else kind


def read_fairseq_state(path: str) -> Dict[str, Any]:
    """``checkpoint_utils.load_checkpoint_to_cpu``, with one-line errors that say what was found."""
    from lskd_plugins.fairseq_io import check_readable, register_plugins

    register_plugins()
    from fairseq import checkpoint_utils

    if Path(path).is_dir():
        raise LskdError(
            f"--path {path} is a folder; give a checkpoint file in it "
            f"(e.g. {Path(path) / 'checkpoint_best.pt'})"
        )
    check_readable([path], "checkpoint")
    expected = "expected a fairseq translation checkpoint (fairseq-train's checkpoint_*.pt)"
    try:
        state = checkpoint_utils.load_checkpoint_to_cpu(path)
    except Exception as err:
        found = describe_foreign_checkpoint(path) or f"{type(err).__name__}: {str(err)[:120]}"
        raise LskdError(f"--path {path} is {found}; {expected}") from None
    found = describe_foreign_checkpoint_state(state)
    if found:
        raise LskdError(f"--path {path} is {found}; {expected}")
    return state


def describe_foreign_checkpoint_state(state: Any) -> str | None:
    if not isinstance(state, dict) or state.get("cfg") is None or state.get("model") is None:
        return "not a fairseq checkpoint (no cfg/model)"
    return None


def dictionary_problems(
    trained_data: str, model_state: Dict[str, Any], data: Path, src: str, tgt: str
) -> Tuple[List[str], bool]:
    """Differences between the dictionaries the model was trained with and ``data``'s.

    Returns (problems, symbols_compared). The model's dictionaries are those of the data-bin its
    checkpoint names (``trained_data``); where that is gone, only the embedding sizes are compared."""
    from lskd_plugins.symbols import first_difference

    trained = str(trained_data or "").split(":")[0]
    problems: List[str] = []
    sides = (("source", src, "encoder.embed_tokens.weight"), ("target", tgt, "decoder.embed_tokens.weight"))
    here = {lang: load_dictionary(data / f"dict.{lang}.txt") for _, lang, _ in sides}
    theirs = [Path(trained) / f"dict.{lang}.txt" for _, lang, _ in sides]
    if trained and all(p.is_file() for p in theirs):
        for (side, lang, _), path in zip(sides, theirs):
            if path.resolve() == (data / f"dict.{lang}.txt").resolve():
                continue
            diff = first_difference(
                load_dictionary(path).symbols, here[lang].symbols, ("model", f"--data {data}")
            )
            if diff:
                problems.append(f"{side} dictionary ({path} vs {data / f'dict.{lang}.txt'}): {diff}")
        return problems, True
    for side, lang, key in sides:
        weight = model_state.get(key)
        rows = int(weight.shape[0]) if weight is not None and weight.dim() == 2 else None
        if rows is not None and rows != len(here[lang]):
            problems.append(
                f"{side} dictionary: the model has {rows} symbols ({key}), {data / f'dict.{lang}.txt'} "
                f"has {len(here[lang])} (the model's own data-bin {trained or '?'} is not available "
                "to name the first differing symbol)"
            )
    return problems, False


def check_model_dictionaries(
    path: str, trained_data: str, model_state: Dict[str, Any], data: Path, src: str, tgt: str
) -> None:
    """Stop with one line when the checkpoint was trained with other dictionaries than ``data``'s."""
    problems, compared = dictionary_problems(trained_data, model_state, data, src, tgt)
    if problems:
        raise LskdError(
            f"checkpoint {path} does not share the dictionaries of --data {data}: {'; '.join(problems)}. "
            "Fix: give the data-bin the model was trained on, or binarize with fairseq-preprocess "
            "--srcdict/--tgtdict set to the model's dictionaries"
        )
    if not compared:
        print(
            f"lskd: warning: checkpoint {path}: its training data-bin is not available; only the "
            "dictionary sizes could be compared with --data",
            file=sys.stderr,
        )
