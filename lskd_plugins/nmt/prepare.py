"""``lskd prepare-mt``: raw parallel text -> a fairseq data-bin (normalise, joint sentencepiece,
fairseq-preprocess).

``lskd prepare-mt --layout multi30k --raw-dir RAW --output OUT`` writes

- ``OUT/text/{train,valid,test,test1,...}.{src,tgt}``: normalised, untokenised text (the BLEU
  references);
- ``OUT/spm/spm.model`` (+ ``.vocab``): ONE sentencepiece model trained on both sides of train;
- ``OUT/spm/{split}.{lang}``: the pieces, space separated;
- ``OUT/data-bin``: ``fairseq-preprocess --joined-dictionary`` of the pieces (plus ``spm.model``),
  every test set of the layout (fairseq's test, test1, ...) and ``test_sets.tsv`` naming them;
- ``OUT/prepare.json``: the stamp (``lskd_plugins.prepared``): settings, raw files, line counts.
  A second run with the same settings and raw files does nothing; other settings, a folder
  holding other files, or one prepared by an earlier lskd stop with an error unless
  ``--overwrite``. The work happens in ``OUT/.partial`` and is moved into place at the end; a
  killed run's leftovers are removed by the next run, which starts clean.
  (``python -m lskd_plugins.nmt.prepare ARGS`` still works: it runs ``lskd prepare-mt ARGS``.)

Layouts say where each split's lines live in a raw directory (``LAYOUTS``): ``multi30k``
(github.com/multi30k/dataset task1 ``raw/``), ``iwslt14`` (the ``de-en.tgz`` fairseq's
``prepare-iwslt14.sh`` uses: TED ``train.tags`` with every 23rd pair held out as valid, the
concatenated dev/tst xml files as test), ``wmt14`` (Europarl v7 + Common Crawl + News Commentary
v9, newstest2013 valid, newstest2014 test), and ``plain`` (``--split train=PREFIX`` etc.).
The shell wrappers in ``data_prep/`` download the raw files and call ``lskd prepare-mt``.

Normalisation is Unicode NFKC, control characters removed, whitespace collapsed (optionally
lowercased); no Moses tokenisation: sentencepiece works on raw text and its pieces decode back
to exactly the normalised text, so detokenised sacreBLEU needs no detokeniser.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import unicodedata
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Sequence, Tuple

from lskd_plugins.errors import LskdError, nonneg_float, nonneg_int, positive_int
from lskd_plugins.files import OWNER_FILE, check_writable, refuse_overlap, write_lines_atomic
from lskd_plugins.nmt.inputs import TEST_SETS_FILE
from lskd_plugins.nmt.options import (
    add_output_option,
    add_overwrite_option,
    add_progress_option,
    require_output,
)
from lskd_plugins.prepared import read_stamp, reuse_prepared, write_stamp
from lskd_plugins.progress import Progress

SPLITS = ("train", "valid", "test")  # what fairseq-preprocess names trainpref/validpref/testpref
MANIFEST = "prepare.json"  # the stamp of a finished preparation (lskd_plugins.prepared)
PARTIAL = ".partial"  # a run works in OUT/.partial and moves its results into OUT at the end
RESULTS = ("text", "spm", "data-bin")
FORMAT = 2  # 2: every test set of the layout binarized, DATA_BIN/test_sets.tsv names them


@dataclass(frozen=True)
class RawSource:
    """One raw file per language; ``pattern`` holds ``{lang}`` (and ``{role}`` = src|ref)."""

    pattern: str
    kind: str = (
        "text"  # text: a sentence a line (.gz read in place); tags: IWSLT train.tags; xml: <seg> lines
    )


@dataclass(frozen=True)
class SplitSpec:
    sources: Tuple[RawSource, ...]
    clean: bool = False  # apply the training-pair filter (empty / too long / length ratio)
    holdout_every: int = (
        0  # with holdout: keep (1-based) pairs whose index % every == 0 ("keep") or != 0 ("drop")
    )
    holdout: str = ""


@dataclass(frozen=True)
class Layout:
    name: str
    src: str
    tgt: str
    splits: Dict[str, SplitSpec]
    subdirs: Tuple[str, ...] = ("",)  # where inside --raw-dir the files may sit (first match wins)
    train_max_words: int = 0
    train_max_ratio: float = 0.0
    vocab_size: int = 8000
    # (fairseq subset, official name) of the test sets; subsets after "test" are optional: those
    # whose raw files exist are binarized as test1, test2, ... (fairseq-preprocess --testpref A,B)
    test_sets: Tuple[Tuple[str, str], ...] = ()


def _plain(*prefixes: str, clean: bool = False) -> SplitSpec:
    return SplitSpec(tuple(RawSource(f"{p}.{{lang}}") for p in prefixes), clean=clean)


_IWSLT_TAGS = RawSource("train.tags.de-en.{lang}", "tags")
_IWSLT_TEST = tuple(
    RawSource(f"IWSLT14.{name}.de-en.{{lang}}.xml", "xml")
    for name in ("TED.dev2010", "TEDX.dev2012", "TED.tst2010", "TED.tst2011", "TED.tst2012")
)

MULTI30K_TEST_SETS = (
    ("test", "test_2016_flickr"),
    ("test1", "test_2017_flickr"),
    ("test2", "test_2017_mscoco"),
    ("test3", "test_2018_flickr"),
)

LAYOUTS: Dict[str, Layout] = {
    "multi30k": Layout(
        "multi30k",
        "en",
        "de",
        {
            "train": _plain("train", clean=True),
            "valid": _plain("val"),
            **{subset: _plain(name) for subset, name in MULTI30K_TEST_SETS},
        },
        subdirs=("", "raw", "data/task1/raw"),
        vocab_size=8000,
        test_sets=MULTI30K_TEST_SETS,
    ),
    "iwslt14": Layout(
        "iwslt14",
        "de",
        "en",
        {
            "train": SplitSpec((_IWSLT_TAGS,), clean=True, holdout_every=23, holdout="drop"),
            "valid": SplitSpec((_IWSLT_TAGS,), clean=True, holdout_every=23, holdout="keep"),
            "test": SplitSpec(_IWSLT_TEST),
        },
        subdirs=("de-en", ""),
        train_max_words=175,
        train_max_ratio=1.5,
        vocab_size=10000,
    ),
    "wmt14": Layout(
        "wmt14",
        "en",
        "de",
        {
            "train": _plain(
                "training/europarl-v7.de-en",
                "commoncrawl.de-en",
                "training/news-commentary-v9.de-en",
                clean=True,
            ),
            "valid": _plain("dev/newstest2013"),
            "test": SplitSpec((RawSource("test-full/newstest2014-deen-{role}.{lang}.sgm", "xml"),)),
        },
        train_max_words=250,
        train_max_ratio=1.5,
        vocab_size=32000,
        test_sets=(("test", "newstest2014"),),
    ),
    "plain": Layout("plain", "en", "de", {}),
}


@dataclass
class PrepareConfig:
    raw_dir: str
    out: str
    layout: str = "multi30k"
    src: str = ""
    tgt: str = ""
    vocab_size: int = 0  # 0: the layout's default
    max_lines: int = 0  # per split, 0 = all (for smoke runs)
    lowercase: bool = False
    train_max_words: int = -1  # -1: the layout's default; 0: no limit
    train_max_ratio: float = -1.0
    spm_sentences: int = 2_000_000  # sentencepiece trains on at most this many sentences (sampled)
    character_coverage: float = 1.0
    workers: int = 1
    split_overrides: Dict[str, List[str]] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# Reading raw files
# ---------------------------------------------------------------------------------------------

_SEG = re.compile(r"<seg[^>]*>(.*)</seg>", re.IGNORECASE)
_DROP_TAG_LINES = ("<url>", "<talkid>", "<keywords>", "<speaker>", "<reviewer", "<translator")
_STRIP_TAGS = re.compile(r"</?(title|description)>")


def open_text(path: Path):
    """Text reader for plain or gzip files (read in place, never unpacked to disk)."""
    if str(path).endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8", newline="\n")
    return open(path, encoding="utf-8", newline="\n")


def read_lines(path: Path, kind: str) -> Iterator[str]:
    """Sentences of one raw file, without the line break; tags/xml reduced to their text.

    A truncated or corrupt file (a cut download, a bad .gz) stops with one line naming it; text that
    is not UTF-8 with one line naming the file, line and byte."""
    try:
        yield from _read_lines(path, kind)
    except UnicodeDecodeError:
        raise LskdError(invalid_utf8(path)) from None
    except (EOFError, OSError, zlib.error) as err:
        raise LskdError(
            f"raw file {path} is truncated or corrupt ({type(err).__name__}: {err}); "
            "download it again (delete it, then rerun the data_prep script)"
        ) from None


def invalid_utf8(path: Path) -> str:
    """Where a raw file stops being UTF-8: the file, line and byte (the file itself is whole)."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        for n, line in enumerate(f, 1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as err:
                return (
                    f"raw file {path}, line {n}: byte 0x{line[err.start]:02x} at byte {err.start + 1} of the "
                    "line is not valid UTF-8; convert the file to UTF-8 or fix that line"
                )
    return f"raw file {path} is not valid UTF-8; convert it to UTF-8"


def _read_lines(path: Path, kind: str) -> Iterator[str]:
    with open_text(path) as f:
        if kind == "text":
            for line in f:
                yield line.rstrip("\n").rstrip("\r")
        elif kind == "tags":  # what fairseq's prepare-iwslt14.sh keeps of train.tags.*
            for line in f:
                stripped = line.strip()
                if stripped.startswith(_DROP_TAG_LINES):
                    continue
                yield _STRIP_TAGS.sub("", line.rstrip("\n").rstrip("\r"))
        elif kind == "xml":
            for line in f:
                m = _SEG.search(line)
                if m:
                    yield m.group(1).replace("\u2019", "'")
        else:  # pragma: no cover - layouts are defined above
            raise ValueError(kind)


def count_lines(path: Path, kind: str) -> int:
    return sum(1 for _ in read_lines(path, kind))


_CONTROL = {"Cc", "Cf", "Co", "Cs"}
_KEEP_FORMAT = {"\u200c", "\u200d"}  # zero-width (non-)joiners spell words in Persian, Indic scripts


def normalize_line(line: str, lowercase: bool = False) -> str:
    """NFKC, control/format characters dropped (but ZWNJ/ZWJ), whitespace runs -> one space, stripped."""
    line = unicodedata.normalize("NFKC", line)
    line = "".join(
        " " if ch.isspace() else ch
        for ch in line
        if ch.isspace() or ch in _KEEP_FORMAT or unicodedata.category(ch) not in _CONTROL
    )
    line = " ".join(line.split())
    return line.lower() if lowercase else line


def keep_pair(src: str, tgt: str, max_words: int = 0, max_ratio: float = 0.0) -> bool:
    """The training-pair filter (as Moses' clean-corpus-n): both sides non-empty, not too long,
    word-count ratio at most ``max_ratio`` (0 = no limit)."""
    ns, nt = len(src.split()), len(tgt.split())
    if ns == 0 or nt == 0:
        return False
    if max_words and (ns > max_words or nt > max_words):
        return False
    if max_ratio and max(ns, nt) > max_ratio * min(ns, nt):
        return False
    return True


def resolve_layout(cfg: PrepareConfig) -> Layout:
    if cfg.layout not in LAYOUTS:
        raise LskdError(f"unknown --layout {cfg.layout!r}; choose one of {', '.join(LAYOUTS)}")
    base = LAYOUTS[cfg.layout]
    splits = dict(base.splits)
    for name, prefixes in cfg.split_overrides.items():
        if name not in SPLITS:
            raise LskdError(f"--split {name}=...: split names are {', '.join(SPLITS)}")
        splits[name] = _plain(*prefixes, clean=(name == "train"))
    missing = [s for s in SPLITS if s not in splits]
    if missing:
        raise LskdError(
            f"layout {cfg.layout} needs --split for {', '.join(missing)} "
            "(e.g. --split train=train --split valid=val --split test=test)"
        )
    src, tgt = cfg.src or base.src, cfg.tgt or base.tgt
    if src == tgt:
        raise LskdError(f"--src and --tgt must differ (both {src})")
    return Layout(
        base.name,
        src,
        tgt,
        splits,
        base.subdirs,
        base.train_max_words if cfg.train_max_words < 0 else cfg.train_max_words,
        base.train_max_ratio if cfg.train_max_ratio < 0 else cfg.train_max_ratio,
        cfg.vocab_size or base.vocab_size,
        tuple((k, v) for k, v in base.test_sets if k not in cfg.split_overrides)
        + tuple((k, Path(v[0]).name) for k, v in cfg.split_overrides.items() if k.startswith("test")),
    )


def _candidates(root: Path, pattern: str, lang: str, role: str) -> List[Path]:
    rel = pattern.format(lang=lang, role=role)
    return [root / rel] + ([root / f"{rel}.gz"] if not rel.endswith(".gz") else [])


def split_names(layout: Layout) -> List[str]:
    """train, valid, test, then the layout's optional test sets (test1, test2, ...) in order."""
    return [*SPLITS, *(name for name in layout.splits if name not in SPLITS)]


def _find(roots: List[Path], source: RawSource, lang: str, role: str) -> Path | None:
    for root in roots:
        found = next((p for p in _candidates(root, source.pattern, lang, role) if p.is_file()), None)
        if found:
            return found
    return None


def resolve_files(raw_dir: Path, layout: Layout) -> Dict[str, List[Tuple[RawSource, Path, Path]]]:
    """split -> [(source, src file, tgt file)]; one error naming every missing file.

    The optional test sets (after ``test``) are left out where their raw files are absent."""
    if raw_dir.exists() and not raw_dir.is_dir():
        raise LskdError(f"--raw-dir {raw_dir} is a file, not a folder; give the folder of raw files")
    if not raw_dir.is_dir():
        raise LskdError(f"raw directory not found: {raw_dir}")
    roots = [raw_dir / d if d else raw_dir for d in layout.subdirs]
    roots = [r for r in roots if r.is_dir()] or [raw_dir]
    resolved: Dict[str, List[Tuple[RawSource, Path, Path]]] = {}
    missing: List[str] = []
    for split in split_names(layout):
        entries, absent = [], []
        for source in layout.splits[split].sources:
            pair = [
                _find(roots, source, lang, role) for lang, role in ((layout.src, "src"), (layout.tgt, "ref"))
            ]
            for lang, role, found in zip((layout.src, layout.tgt), ("src", "ref"), pair):
                if found is None:
                    rel = source.pattern.format(lang=lang, role=role)
                    absent.append(rel if source.kind != "text" else f"{rel}[.gz]")
            entries.append((source, pair[0], pair[1]))
        if absent and split not in SPLITS:
            continue  # an optional test set that this raw folder does not have
        missing.extend(name for name in absent if name not in missing)
        resolved[split] = entries
    if missing:
        raise LskdError(
            f"raw directory {raw_dir} lacks the files layout {layout.name} expects "
            f"({layout.src}->{layout.tgt}): {', '.join(missing)}"
        )
    return resolved


def check_line_counts(resolved: Dict[str, List[Tuple[RawSource, Path, Path]]]) -> Dict[str, int]:
    """Source and target must be line-aligned; the error names both files and their counts."""
    counts: Dict[str, int] = {}
    seen = set()
    for entries in resolved.values():
        for source, src_path, tgt_path in entries:
            if (src_path, tgt_path) in seen:
                continue
            seen.add((src_path, tgt_path))
            n_src, n_tgt = count_lines(src_path, source.kind), count_lines(tgt_path, source.kind)
            if n_src != n_tgt:
                raise LskdError(
                    f"line counts differ: {src_path} has {n_src} lines, {tgt_path} has {n_tgt}; "
                    "source and target files must be line-aligned"
                )
            counts[str(src_path)] = n_src
    return counts


def iter_split_pairs(
    split: str,
    spec: SplitSpec,
    files: List[Tuple[RawSource, Path, Path]],
    layout: Layout,
    lowercase: bool,
    stats: Dict[str, int],
) -> Iterator[Tuple[str, str]]:
    """Normalised (src, tgt) pairs of one split, after cleaning and holdout."""
    index = 0
    for source, src_path, tgt_path in files:
        for s, t in zip(read_lines(src_path, source.kind), read_lines(tgt_path, source.kind)):
            s, t = normalize_line(s, lowercase), normalize_line(t, lowercase)
            if spec.clean and not keep_pair(s, t, layout.train_max_words, layout.train_max_ratio):
                stats["dropped"] = stats.get("dropped", 0) + 1
                continue
            index += 1
            if spec.holdout_every:
                held = index % spec.holdout_every == 0
                if held != (spec.holdout == "keep"):
                    continue
            yield s, t


# ---------------------------------------------------------------------------------------------
# Steps
# ---------------------------------------------------------------------------------------------


def write_text(
    out: Path, layout: Layout, resolved, cfg: PrepareConfig, bar: Progress | None = None
) -> Dict[str, Dict[str, int]]:
    """OUT/text/<split>.<lang>: normalised, filtered pairs; returns the line counts per split."""
    bar = bar or Progress(None, "normalise", enabled=False)
    text_dir = out / "text"
    text_dir.mkdir(parents=True, exist_ok=True)
    report: Dict[str, Dict[str, int]] = {}
    for split in resolved:
        stats: Dict[str, int] = {}
        src_lines: List[str] = []
        tgt_lines: List[str] = []
        for s, t in iter_split_pairs(
            split, layout.splits[split], resolved[split], layout, cfg.lowercase, stats
        ):
            if cfg.max_lines and len(src_lines) >= cfg.max_lines:
                break
            bar.update(1)
            src_lines.append(s)
            tgt_lines.append(t)
        if not src_lines:
            raise LskdError(
                f"split {split} has no sentence pairs left (files: "
                f"{', '.join(str(p) for _, p, _ in resolved[split])})"
            )
        write_lines_atomic(text_dir / f"{split}.{layout.src}", src_lines)
        write_lines_atomic(text_dir / f"{split}.{layout.tgt}", tgt_lines)
        report[split] = {"lines": len(src_lines), "dropped_by_filter": stats.get("dropped", 0)}
    return report


def _has_fileno(stream) -> bool:
    try:
        stream.fileno()
    except (AttributeError, OSError, ValueError):
        return False
    return True


def train_sentencepiece(out: Path, layout: Layout, cfg: PrepareConfig) -> Path:
    """One joint model on both sides of train; a soft vocabulary limit so tiny corpora work."""
    import sentencepiece as spm

    spm_dir = out / "spm"
    spm_dir.mkdir(parents=True, exist_ok=True)
    prefix = spm_dir / "spm.tmp"
    try:
        _train_spm(spm, out, layout, cfg, prefix)
    except (RuntimeError, OSError) as err:
        raise LskdError(
            f"sentencepiece could not train on {out / 'text'} ({str(err).strip().splitlines()[-1][:300]}); "
            "try another --vocab-size"
        ) from None
    for ext in ("model", "vocab"):
        os.replace(f"{prefix}.{ext}", spm_dir / f"spm.{ext}")
    return spm_dir / "spm.model"


def _train_spm(spm, out: Path, layout: Layout, cfg: PrepareConfig, prefix: Path) -> None:
    with open(os.devnull, "w") as devnull:
        quiet = {"logstream": devnull} if _has_fileno(sys.stderr) else {}  # (not under pytest capsys)
        spm.SentencePieceTrainer.train(
            input=[str(out / "text" / f"train.{lang}") for lang in (layout.src, layout.tgt)],
            model_prefix=str(prefix),
            vocab_size=layout.vocab_size,
            model_type="unigram",
            character_coverage=cfg.character_coverage,
            normalization_rule_name="identity",  # we normalised already; pieces decode to our text
            hard_vocab_limit=False,
            input_sentence_size=cfg.spm_sentences,
            shuffle_input_sentence=True,
            num_threads=max(1, cfg.workers),
            seed_sentencepiece_size=min(1_000_000, max(1000, cfg.spm_sentences)),
            **quiet,
        )


def encode_splits(out: Path, layout: Layout, model_path: Path, splits: Sequence[str], bar: Progress) -> None:
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(model_path))
    for split in splits:
        for lang in (layout.src, layout.tgt):
            with open(out / "text" / f"{split}.{lang}", encoding="utf-8") as f:
                lines = [line.rstrip("\n") for line in f]
            pieces = sp.encode(lines, out_type=str)
            write_lines_atomic(out / "spm" / f"{split}.{lang}", [" ".join(p) for p in pieces])
            if lang == layout.tgt:
                bar.update(len(lines))


def binarize(out: Path, layout: Layout, splits: Sequence[str], workers: int) -> Path:
    """fairseq-preprocess --joined-dictionary (its own CLI, from this interpreter's fairseq).

    Every test set goes through one ``--testpref A,B,...``: fairseq names them test, test1, ..."""
    dest = out / "data-bin"
    tmp = out / "data-bin.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    pref = out / "spm"
    tests = [name for name in splits if name.startswith("test")]
    cmd = [sys.executable, "-m", "fairseq_cli.preprocess", "--source-lang", layout.src]
    cmd += [
        "--target-lang",
        layout.tgt,
        "--trainpref",
        str(pref / "train"),
        "--validpref",
        str(pref / "valid"),
    ]
    cmd += ["--testpref", ",".join(str(pref / name) for name in tests), "--destdir", str(tmp)]
    cmd += ["--joined-dictionary", "--workers", str(max(1, workers))]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-5:]
        raise LskdError(f"fairseq-preprocess failed ({proc.returncode}): {' | '.join(tail)}")
    shutil.copy2(out / "spm" / "spm.model", tmp / "spm.model")
    names = dict(layout.test_sets)  # a test split without a name of its own is named by its subset
    write_lines_atomic(tmp / TEST_SETS_FILE, [f"{subset}\t{names.get(subset, subset)}" for subset in tests])
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(tmp, dest)
    return dest


def fingerprint(cfg: PrepareConfig, layout: Layout, resolved) -> dict:
    """What decides the output (the stamp's settings): the options, the format, and the raw
    files' names and sizes."""
    files = sorted(
        {
            (str(p.name), p.stat().st_size)
            for entries in resolved.values()
            for _, a, b in entries
            for p in (a, b)
        }
    )
    settings = {k: v for k, v in asdict(cfg).items() if k not in ("raw_dir", "out", "workers")}
    settings.update(
        format=FORMAT,
        src=layout.src,
        tgt=layout.tgt,
        vocab_size=layout.vocab_size,
        train_max_words=layout.train_max_words,
        train_max_ratio=layout.train_max_ratio,
        splits=list(resolved),
    )
    settings["raw_files"] = hashlib.sha256(json.dumps(files).encode()).hexdigest()[:16]
    return settings


def refuse_earlier_version(out: Path, force: bool, command: str) -> None:
    """A folder prepared before the test sets were named (no ``settings`` in its prepare.json)."""
    old = read_stamp(out, MANIFEST)
    if old is None or "settings" in old or force:
        return
    raise LskdError(
        f"{out} was prepared by an earlier lskd (only the test set test_2016_flickr, no "
        f"data-bin/{TEST_SETS_FILE}); upgrade it by preparing again: {command} --overwrite "
        "(the raw files are kept)"
    )


def run_steps(
    work: Path, layout: Layout, resolved, cfg: PrepareConfig, raw_pairs: int, log, progress: bool
) -> dict:
    """Normalise, sentencepiece, encode, binarize into ``work``; returns the line counts.

    Whole-job progress in pairs: each raw pair is counted once when normalised and once when
    encoded (pairs dropped by the filter or --max-lines count as done)."""
    with Progress(2 * raw_pairs, "prepare", unit="pairs", enabled=progress) as bar:
        log("prepare: normalising text")
        lines = write_text(work, layout, resolved, cfg, bar)
        bar.update(max(0, raw_pairs - bar.done))
        log(f"prepare: joint sentencepiece ({layout.vocab_size} pieces max) on both sides of train")
        model = train_sentencepiece(work, layout, cfg)
        encode_splits(work, layout, model, list(resolved), bar)
        bar.update(max(0, 2 * raw_pairs - bar.done))
    log("prepare: fairseq-preprocess --joined-dictionary")
    binarize(work, layout, list(resolved), cfg.workers)
    return lines


def move_results(work: Path, out: Path) -> None:
    """text/, spm/, data-bin/ from the work folder into OUT (the stamp comes after, last)."""
    for name in RESULTS:
        shutil.rmtree(out / name, ignore_errors=True)
        os.replace(work / name, out / name)
    shutil.rmtree(work, ignore_errors=True)


def stamp_facts(out: Path, cfg: PrepareConfig, layout: Layout, resolved, lines: dict) -> dict:
    """What prepare.json records beside the settings and counts (paths, test sets, dictionary size)."""
    data_bin = out / "data-bin"
    return {
        "layout": layout.name,
        "src": layout.src,
        "tgt": layout.tgt,
        "raw_dir": str(Path(cfg.raw_dir).resolve()),
        "data_bin": str(data_bin.resolve()),
        "spm_model": str((out / "spm" / "spm.model").resolve()),
        "lines": lines,  # = counts; the name the earlier version used
        "test_sets": {
            subset: dict(layout.test_sets).get(subset, subset)
            for subset in resolved
            if subset.startswith("test")
        },
        "dictionary_size": len(
            (data_bin / f"dict.{layout.src}.txt").read_text(encoding="utf-8").splitlines()
        ),
    }


def prepare(cfg: PrepareConfig, force: bool = False, log=print, progress: bool = False) -> dict:
    """Run every step (or nothing, when OUT already holds the same preparation).

    The work happens in OUT/.partial, moved into OUT at the end, the stamp written last: a killed
    run leaves no result that looks finished, and its leftovers are removed by the next run."""
    layout = resolve_layout(cfg)
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise LskdError(f"--output {out} is a file, not a folder; give a folder path")
    resolved = resolve_files(Path(cfg.raw_dir), layout)
    if out.resolve().is_relative_to(Path(cfg.raw_dir).resolve()):
        raise LskdError(
            f"--output {out} lies inside --raw-dir {cfg.raw_dir}; keep the raw corpus apart: choose "
            "another --output"
        )
    raw_files = [path for entries in resolved.values() for _, src, tgt in entries for path in (src, tgt)]
    for name in (*RESULTS, PARTIAL):  # the folders a run replaces hold no raw file (symlinks resolved)
        refuse_overlap(out / name, [cfg.raw_dir, *raw_files], "--output")
    settings = fingerprint(cfg, layout, resolved)
    refuse_earlier_version(out, force, "lskd prepare-mt (or the data_prep script) with the same options")
    own = (*RESULTS, PARTIAL, "data-bin.tmp", MANIFEST, "raw", OWNER_FILE)
    if reuse_prepared(out, MANIFEST, settings, force=force, own=own, option="--output") is not None:
        if all((out / name).is_dir() for name in RESULTS):
            log(f"prepare: {out} already holds this preparation; nothing to do")
            return read_stamp(out, MANIFEST)
        log(
            f"prepare: {out} has the stamp of this preparation but lacks some of its results; preparing again"
        )
    check_writable(out, "--output")
    skipped = [name for subset, name in layout.test_sets if subset not in resolved]
    if skipped:
        log(f"prepare: test sets without raw files, left out: {', '.join(skipped)}")
    log(f"prepare: checking line counts of {sum(len(v) for v in resolved.values())} file pairs")
    counts = check_line_counts(resolved)
    raw_pairs = sum(counts[str(src)] for entries in resolved.values() for _, src, _ in entries)
    work = out / PARTIAL
    shutil.rmtree(work, ignore_errors=True)  # a killed run's leftovers: start clean
    lines = run_steps(work, layout, resolved, cfg, raw_pairs, log, progress)
    move_results(work, out)
    manifest = stamp_facts(out, cfg, layout, resolved, lines)
    data_bin = out / "data-bin"
    write_stamp(out, MANIFEST, settings, lines, **manifest)
    counts = ", ".join(f"{s} {v['lines']}" for s, v in lines.items())
    log(f"prepare: wrote {data_bin} ({counts} pairs; dictionary {manifest['dictionary_size']} entries)")
    return read_stamp(out, MANIFEST)


def _split_override(value: str) -> Tuple[str, List[str]]:
    if "=" not in value:
        raise argparse.ArgumentTypeError(f"expected NAME=PREFIX[+PREFIX...], got {value!r}")
    name, prefixes = value.split("=", 1)
    return name.strip(), [p for p in prefixes.split("+") if p]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--raw-dir", required=True, help="folder holding the raw files of the layout (required)")
    add_output_option(p, "text/, spm/, data-bin/ (with test_sets.tsv), prepare.json")
    p.add_argument(
        "--layout",
        default="multi30k",
        choices=sorted(LAYOUTS),
        help="where the splits live in --raw-dir (default %(default)s)",
    )
    p.add_argument("--src", default="", help="source language suffix (default: the layout's)")
    p.add_argument("--tgt", default="", help="target language suffix (default: the layout's)")
    p.add_argument(
        "--split",
        action="append",
        type=_split_override,
        default=[],
        metavar="NAME=PREFIX[+PREFIX]",
        help="plain-text files PREFIX.{src,tgt}[.gz] (relative to --raw-dir) for split NAME "
        "(train, valid or test); overrides the layout; repeatable (default: the layout's files)",
    )
    add_size_arguments(p)
    add_overwrite_option(p)
    p.add_argument("--force", dest="overwrite", action="store_true", help=argparse.SUPPRESS)
    add_progress_option(p)


def add_size_arguments(p: argparse.ArgumentParser) -> None:
    """Vocabulary, slicing, filtering and parallelism of ``lskd prepare-mt``."""
    p.add_argument(
        "--vocab-size",
        type=nonneg_int,
        default=0,
        help="joint sentencepiece vocabulary size (default 0: the layout's, multi30k 8000, iwslt14 10000, "
        "wmt14 32000)",
    )
    p.add_argument(
        "--max-lines",
        type=nonneg_int,
        default=0,
        help="keep only the first N pairs of each split (default 0: all)",
    )
    p.add_argument("--lowercase", action="store_true", help="lowercase all text (default: keep case)")
    p.add_argument(
        "--train-max-words",
        type=nonneg_int,
        default=None,
        help="drop training pairs with a side longer than N words; 0: no limit "
        "(default: iwslt14 175, wmt14 250, else none)",
    )
    p.add_argument(
        "--train-max-ratio",
        type=nonneg_float,
        default=None,
        help="drop training pairs whose word-count ratio exceeds R; 0: no limit "
        "(default: iwslt14/wmt14 1.5, else none)",
    )
    p.add_argument(
        "--spm-sentences",
        type=positive_int,
        default=2_000_000,
        help="sentencepiece samples at most this many training sentences (default %(default)s)",
    )
    p.add_argument(
        "--workers",
        type=positive_int,
        default=1,
        help="processes for sentencepiece and fairseq-preprocess (default %(default)s)",
    )


def main(args: argparse.Namespace) -> int:
    cfg = PrepareConfig(
        raw_dir=args.raw_dir,
        out=require_output(args),
        layout=args.layout,
        src=args.src,
        tgt=args.tgt,
        vocab_size=args.vocab_size,
        max_lines=args.max_lines,
        lowercase=args.lowercase,
        train_max_words=-1 if args.train_max_words is None else args.train_max_words,
        train_max_ratio=-1.0 if args.train_max_ratio is None else args.train_max_ratio,
        spm_sentences=args.spm_sentences,
        workers=args.workers,
        split_overrides=dict(args.split),
    )
    prepare(cfg, force=args.overwrite, progress=not args.no_progress)
    return 0


if __name__ == "__main__":  # the old entry point, kept: the same as `lskd prepare-mt ARGS`
    from lskd_plugins.cli import main as lskd_main

    sys.exit(lskd_main(["prepare-mt", *sys.argv[1:]]))
