"""``lskd seqkd``: sequence-level KD data (Kim & Rush 2016), a teacher's translations as a data-bin.

Decodes ``--subset`` of ``--data`` with the teacher (one checkpoint or an ensemble ``A.pt:B.pt``)
by beam search (``nmt.decode``, fairseq's SequenceGenerator in process) and writes, in the
ORIGINAL sentence order (fairseq batches by length; results are put back by sentence id):

- ``OUT/<subset>.<src>``: the source sentences as the data-bin holds them (pieces, one a line);
- ``OUT/<subset>.<tgt>``: the teacher's best hypothesis for each, one a line;
- ``OUT/data-bin``: both binarized with the teacher's dictionaries (fairseq's own indexed-dataset
  builder and ``Dictionary.encode_line``, as ``fairseq-preprocess --srcdict --tgtdict`` does),
  the other splits (valid, test, ...) copied from ``--data``: ready for ``fairseq-train``;
- ``OUT/seqkd.json``: the settings and the report (counts, ids of replaced sentences).

Resuming: the corpus is decoded in shards of ``--shard-size`` sentences, each written atomically
to ``OUT/shards/NNNNN.json``; a rerun of the same command skips finished shards, so a killed run
continues where it stopped and gives byte-identical files. ``--max-shards N`` stops after N new
shards on purpose (time-limited jobs); rerun to continue. Several GPUs or machines: start
``--num-workers N --worker-id I`` for I = 0..N-1 (each decodes shards I, I+N, ... into the same
``OUT``, e.g. with ``--device cuda:I``), then run the command once more without them: it finds
every shard done and writes the texts and the data-bin (workers never write those, so they
cannot race).

Empty or failed hypotheses are never dropped (that would misalign the corpus): with the default
``--on-empty reference`` the gold target of that sentence takes its place, so the pair stays a
useful training example; ``--on-empty keep`` keeps the empty line (an EOS-only target). Both kinds
are counted, reported on stderr, and listed by sentence id in ``seqkd.json``. Failed sentences
(not decoded at all) make the command exit 1 unless ``--allow-failures``: the data would rest on
them.

Outputs: ``--output`` may not be, contain or lie inside ``--data`` or a checkpoint, and a folder
holding anything but this run's own files (``.lskd-owner.json`` with the same settings) is refused
unless ``--overwrite``. Progress covers the whole job (all shards), not one shard.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

from lskd_plugins.errors import LskdError, nonneg_int, positive_int
from lskd_plugins.files import OWNER_FILE, claim_output, refuse_overlap, write_text_atomic
from lskd_plugins.nmt.decode import DecodeOptions, Decoder, add_decode_arguments, options_from_args
from lskd_plugins.nmt.options import (
    add_allow_failures_option,
    add_output_option,
    add_overwrite_option,
    add_progress_option,
    report_failures,
    require_output,
)
from lskd_plugins.progress import Progress

# Settings that change the hypotheses: a resumed run must use the same ones.
_OUTPUT_SETTINGS = (
    "data",
    "path",
    "subset",
    "beam",
    "lenpen",
    "max_len_a",
    "max_len_b",
    "shard_size",
    "on_empty",
    "sentences",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_decode_arguments(parser, default_subset="train")
    add_output_option(parser, "texts, shards/, data-bin/, seqkd.json; never inside --data")
    parser.add_argument(
        "--shard-size",
        type=positive_int,
        default=10000,
        help="sentences per resumable shard (default %(default)s)",
    )
    parser.add_argument(
        "--max-shards",
        type=nonneg_int,
        default=0,
        help="stop after decoding N new shards (default %(default)s: all); rerun to continue",
    )
    parser.add_argument(
        "--on-empty",
        choices=("reference", "keep"),
        default="reference",
        help="an empty or failed hypothesis is replaced by the gold target (reference) or kept as "
        "an empty line (keep); counted either way (default %(default)s)",
    )
    parser.add_argument(
        "--num-workers",
        type=positive_int,
        default=1,
        help="split the shards over N processes (default %(default)s); see --worker-id",
    )
    parser.add_argument(
        "--worker-id",
        type=nonneg_int,
        default=0,
        help="this process decodes shards k with k %% N == ID (default %(default)s); afterwards run "
        "once without --num-workers to write the texts and the data-bin",
    )
    add_overwrite_option(parser)
    add_allow_failures_option(parser, "sentences")
    add_progress_option(parser)


def atomic_write_text(path: Path, text: str) -> None:
    """Shards and manifests are fsync'ed: a resumed run trusts every file it finds."""
    write_text_atomic(path, text, fsync=True)


def shard_ranges(n: int, shard_size: int) -> List[range]:
    return [range(start, min(n, start + shard_size)) for start in range(0, n, shard_size)]


def decode_shard(decoder: Decoder, ids: range, on_empty: str, bar: Progress) -> dict:
    """One shard's record: hypotheses (piece text) in id order, and the ids that were replaced."""
    results = decoder.translate(list(ids), bar=bar)
    hyps: List[str] = []
    empty: List[int] = []
    failed: Dict[str, str] = {}
    for i in ids:
        r = results[i]
        text = "" if r.tokens is None else decoder.hypothesis_text(r.tokens)
        if r.tokens is None:
            failed[str(i)] = r.reason
        elif not text.strip():
            empty.append(i)
        if (r.tokens is None or not text.strip()) and on_empty == "reference":
            text = decoder.target_text(i)
        hyps.append(text)
    return {"start": ids.start, "end": ids.stop, "hyps": hyps, "empty": empty, "failed": failed}


def load_shard(path: Path, ids: range) -> dict | None:
    """A finished shard, or None when absent or not the expected range (then it is redone)."""
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if (
        record.get("start") != ids.start
        or record.get("end") != ids.stop
        or len(record.get("hyps", [])) != len(ids)
    ):
        return None
    return record


def binarize_lines(lines: Sequence[str], dictionary, prefix: Path) -> None:
    """Lines -> PREFIX.bin/.idx with the given dictionary (what fairseq-preprocess --srcdict does)."""
    from fairseq.data import indexed_dataset

    builder = indexed_dataset.make_builder(
        indexed_dataset.data_file_path(str(prefix)), impl="mmap", vocab_size=len(dictionary)
    )
    for line in lines:
        builder.add_item(dictionary.encode_line(line, add_if_not_exist=False, append_eos=True).long())
    builder.finalize(indexed_dataset.index_file_path(str(prefix)))


def build_data_bin(
    out: Path, data: Path, decoder: Decoder, subset: str, src_lines: Sequence[str], tgt_lines: Sequence[str]
) -> Path:
    """OUT/data-bin: the new <subset> pair plus every other split and file of --data (copied)."""
    for lang in (decoder.src, decoder.tgt):
        if not (data / f"dict.{lang}.txt").is_file():
            raise LskdError(f"{data} has no dict.{lang}.txt to binarize the {lang} side with")
    src, tgt = decoder.src, decoder.tgt
    tmp = out / "data-bin.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for f in sorted(data.iterdir()):
        name = f.name
        if (
            not f.is_file()
            or name.startswith(f"{subset}.{src}-{tgt}.")
            or name.startswith(f"{subset}.{tgt}-{src}.")
        ):
            continue
        shutil.copy2(f, tmp / name)  # dict.*.txt included: the dictionaries the teacher was loaded with
    binarize_lines(src_lines, decoder.src_dict, tmp / f"{subset}.{src}-{tgt}.{src}")
    binarize_lines(tgt_lines, decoder.tgt_dict, tmp / f"{subset}.{src}-{tgt}.{tgt}")
    dest = out / "data-bin"
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(tmp, dest)
    return dest


def output_settings(
    data: Path, decoder: Decoder, options: DecodeOptions, shard_size: int, on_empty: str
) -> dict:
    """What makes the hypotheses (a resumed run must use the same; the output folder's owner)."""
    return {
        "data": str(data),
        "path": [str(Path(p).resolve()) for p in decoder.paths],
        "subset": decoder.subset,
        "beam": options.beam,
        "lenpen": options.lenpen,
        "max_len_a": options.max_len_a,
        "max_len_b": options.max_len_b,
        "shard_size": shard_size,
        "on_empty": on_empty,
        "sentences": len(decoder),
    }


def check_arguments(shard_size: int, max_shards: int, num_workers: int, worker_id: int) -> None:
    if shard_size < 1:
        raise LskdError(f"--shard-size must be >= 1, got {shard_size}")
    if max_shards < 0:
        raise LskdError(f"--max-shards must be >= 0, got {max_shards}")
    if num_workers < 1 or not 0 <= worker_id < num_workers:
        raise LskdError(f"--worker-id must lie in [0, --num-workers), got {worker_id} of {num_workers}")


def adopt_earlier_version(out: Path, settings: dict) -> None:
    """A folder written by the version before ownership markers: its seqkd.json with the same
    settings makes it this run's own (so a resumed study keeps its shards)."""
    manifest = out / "seqkd.json"
    if (out / OWNER_FILE).exists() or not manifest.is_file():
        return
    try:
        old = json.loads(manifest.read_text(encoding="utf-8")).get("settings", {})
    except (OSError, ValueError):
        return
    if all(old.get(k) == settings[k] for k in _OUTPUT_SETTINGS):
        atomic_write_text(
            out / OWNER_FILE, json.dumps({"command": "seqkd", **settings}, indent=1, sort_keys=True) + "\n"
        )


def claim(out: Path, data: Path, decoder: Decoder, settings: dict, overwrite: bool) -> Path:
    """OUTPUT is no input, is writable, and holds nothing but this run's own files (or --overwrite)."""
    refuse_overlap(out, [data, *decoder.paths], "--output")
    if out.is_dir():
        adopt_earlier_version(out, settings)
    return claim_output(out, {"command": "seqkd", **settings}, overwrite, "--output")


def decode_missing_shards(
    decoder: Decoder,
    shard_dir: Path,
    ranges: List[range],
    on_empty: str,
    progress: bool,
    max_shards: int,
    num_workers: int,
    worker_id: int,
) -> Tuple[List[dict], List[int], int, bool]:
    """(records, shards of other workers still missing, shards decoded now, stopped by --max-shards)."""
    records: List[dict] = []
    found = {k: load_shard(shard_dir / f"{k:05d}.json", ids) for k, ids in enumerate(ranges)}
    done = sum(len(ranges[k]) for k, r in found.items() if r is not None)
    mine = [k for k, r in found.items() if r is None and k % num_workers == worker_id]
    total = done + sum(len(ranges[k]) for k in mine)
    missing: List[int] = []
    new = 0
    with Progress(total, "seqkd", unit="sent", enabled=progress, initial=done) as bar:
        for k, ids in enumerate(ranges):
            record = found[k]
            if record is None and k not in mine:
                missing.append(k)  # another worker's
                continue
            if record is None:
                if max_shards and new >= max_shards:
                    return records, missing, new, True
                record = decode_shard(decoder, ids, on_empty, bar)
                atomic_write_text(shard_dir / f"{k:05d}.json", json.dumps(record, ensure_ascii=False) + "\n")
                new += 1
            records.append(record)
    return records, missing, new, False


def run_seqkd(
    data: str | Path,
    paths: str,
    out: str | Path,
    subset: str,
    options: DecodeOptions,
    shard_size: int = 10000,
    max_shards: int = 0,
    on_empty: str = "reference",
    progress: bool = True,
    log=None,
    num_workers: int = 1,
    worker_id: int = 0,
    overwrite: bool = False,
    allow_failures: bool = False,
) -> dict:
    """Decode (resuming from finished shards), then write the texts and the data-bin. Returns the report.

    Raises LskdFailure (exit 1) after writing everything when sentences failed to decode, unless
    ``allow_failures``."""
    log = log or (lambda msg: print(msg, file=sys.stderr))
    check_arguments(shard_size, max_shards, num_workers, worker_id)
    data, out = Path(data).resolve(), Path(out)
    decoder = Decoder(paths, data, subset, options)
    subset = decoder.subset
    if decoder.dataset.tgt is None and on_empty == "reference":
        raise LskdError(f"subset {subset} has no target side to fall back on; use --on-empty keep")
    n = len(decoder)
    settings = output_settings(data, decoder, options, shard_size, on_empty)
    claim(out, data, decoder, settings, overwrite)
    manifest_path = out / "seqkd.json"
    if num_workers == 1 or not manifest_path.is_file():
        atomic_write_text(
            manifest_path, json.dumps({"settings": settings, "complete": False}, indent=2) + "\n"
        )
    shard_dir = out / "shards"
    shard_dir.mkdir(exist_ok=True)
    ranges = shard_ranges(n, shard_size)
    records, missing, new, stopped = decode_missing_shards(
        decoder, shard_dir, ranges, on_empty, progress, max_shards, num_workers, worker_id
    )
    if stopped or num_workers > 1 or missing:
        return unfinished(shard_dir, len(ranges), new, missing, stopped, num_workers, worker_id, log)
    return assemble(out, data, decoder, settings, records, new, allow_failures, log)


def unfinished(
    shard_dir: Path,
    shards: int,
    new: int,
    missing: List[int],
    stopped: bool,
    num_workers: int,
    worker_id: int,
    log,
) -> dict:
    """The report (and the line saying what to do next) of a run that leaves shards to decode."""
    if stopped:
        done = sum(1 for j in range(shards) if (shard_dir / f"{j:05d}.json").is_file())
        log(
            f"seqkd: stopped after {new} new shard(s) (--max-shards); {done}/{shards} shards "
            f"done in {shard_dir}; rerun the same command to continue"
        )
        return {"complete": False, "shards_done": done, "shards": shards}
    log(
        f"seqkd: worker {worker_id}/{num_workers}: its shards are done ({new} decoded now); "
        f"{len(missing)} shard(s) of other workers missing. When every worker has finished, run "
        "the command without --num-workers to write the texts and the data-bin"
    )
    return {"complete": False, "shards_done": shards - len(missing), "shards": shards}


def assemble(
    out: Path,
    data: Path,
    decoder: Decoder,
    settings: dict,
    records: List[dict],
    new: int,
    allow_failures: bool,
    log,
) -> dict:
    """The texts, the data-bin and the final seqkd.json from every shard; the failure verdict."""
    subset, n, on_empty = settings["subset"], settings["sentences"], settings["on_empty"]
    src_lines = [decoder.source_text(i) for i in range(n)]
    tgt_lines = [h for r in records for h in r["hyps"]]
    assert len(tgt_lines) == n, (len(tgt_lines), n)
    src, tgt = decoder.src, decoder.tgt
    atomic_write_text(out / f"{subset}.{src}", "".join(line + "\n" for line in src_lines))
    atomic_write_text(out / f"{subset}.{tgt}", "".join(line + "\n" for line in tgt_lines))
    data_bin = build_data_bin(out, data, decoder, subset, src_lines, tgt_lines)
    empty = sorted(i for r in records for i in r["empty"])
    failed = {k: v for r in records for k, v in r["failed"].items()}
    report = {
        "complete": not failed or allow_failures,
        "sentences": n,
        "shards": len(records),
        "shards_decoded_now": new,
        "empty_hypotheses": len(empty),
        "failed": len(failed),
        "replaced_by_reference": (len(empty) + len(failed)) if on_empty == "reference" else 0,
        "empty_ids": empty,
        "failed_ids": failed,
        "files": {
            "source": str(out / f"{subset}.{src}"),
            "target": str(out / f"{subset}.{tgt}"),
            "data_bin": str(data_bin),
        },
    }
    atomic_write_text(out / "seqkd.json", json.dumps({"settings": settings, **report}, indent=2) + "\n")
    what = "replaced by the reference" if on_empty == "reference" else "kept empty"
    log(
        f"seqkd: {n} sentences; {len(empty)} empty and {len(failed)} failed hypotheses ({what}); "
        f"wrote {out / f'{subset}.{src}'}, {out / f'{subset}.{tgt}'} and {data_bin}"
    )
    for i, reason in list(failed.items())[:5]:
        log(f"seqkd: sentence {i} not decoded: {reason}")
    report_failures(len(failed), n, "sentences", allow_failures, what)
    return report


def main(args: argparse.Namespace) -> int:
    options = options_from_args(args)
    report = run_seqkd(
        args.data,
        args.path,
        require_output(args),
        args.subset,
        options,
        shard_size=args.shard_size,
        max_shards=args.max_shards,
        on_empty=args.on_empty,
        progress=not args.no_progress,
        num_workers=args.num_workers,
        worker_id=args.worker_id,
        overwrite=args.overwrite,
        allow_failures=args.allow_failures,
    )
    return 0 if report["complete"] else 3
