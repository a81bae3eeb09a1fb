"""``lskd bleu``: decode a subset with a checkpoint and print ONE JSON object of scores.

Decoding is ``nmt.decode`` (the same path as ``lskd seqkd``). Hypotheses and references are
post-processed with fairseq's ``post_process`` (``--remove-bpe``, by default detected from the
dictionary: ``sentencepiece`` for the data-bins ``data_prep/`` makes), which for sentencepiece
data gives back the detokenised, normalised text, so no detokeniser is involved.

Scores (all from sacreBLEU):
- ``sacrebleu``: corpus BLEU on the detokenised text with sacreBLEU's defaults (13a tokenisation,
  mixed case, exp smoothing), its signature, n-gram precisions, brevity penalty and lengths.
  Equal to ``sacrebleu REF -i HYP -m bleu`` on the files ``--output`` writes.
- ``chrf``: chrF2 (sacreBLEU's defaults) and its signature.
- ``tokenized_bleu``: what Tan et al.'s fairseq code printed: BLEU over whitespace tokens of
  Moses-tokenised text (fairseq-generate / multi-bleu.perl on Moses-tokenised, BPE-removed
  output). Here: sacremoses' Moses tokenizer (``escape=False``) on hypotheses and references,
  then sacreBLEU with ``tokenize='none'``. Without sacremoses installed it falls back to
  sacreBLEU's 13a tokenizer (mteval-v13a, close to but not the same as Moses), which makes it
  equal to ``sacrebleu.score``; the ``tokenizer`` field says which one was used.
References: the subset's target side of the data-bin (unknown pieces escaped as ``<<unk>>``, as
fairseq-generate does, and counted) or ``--ref FILE`` (one line per sentence, e.g.
``OUT/text/test.de`` from ``lskd prepare-mt``).

A sentence that fails to decode scores as an empty hypothesis: the count is printed on stderr,
and the command exits 1 unless ``--allow-failures`` (the scores would rest on failed items).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

from lskd_plugins.errors import LskdError
from lskd_plugins.files import check_writable, refuse_overlap, write_lines_atomic, write_text_atomic
from lskd_plugins.nmt.decode import (
    POST_PROCESS_CHOICES,
    DecodeOptions,
    Decoder,
    add_decode_arguments,
    detect_post_process,
    options_from_args,
)
from lskd_plugins.nmt.options import (
    add_allow_failures_option,
    add_output_option,
    add_overwrite_option,
    add_progress_option,
    report_failures,
)

OUTPUT_SUFFIXES = ("hyp", "ref", "src", "bleu.json")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_decode_arguments(parser, default_subset="test")
    parser.add_argument(
        "--remove-bpe",
        choices=POST_PROCESS_CHOICES,
        default="auto",
        help="subword post-processing of hypotheses and references (default auto: "
        "detected from the dictionary)",
    )
    parser.add_argument(
        "--ref",
        default=None,
        help="reference text file, one line per sentence (default: the data-bin's target side)",
    )
    add_output_option(
        parser, "OUTPUT/<subset>.hyp, .ref, .src and .bleu.json (the result is printed first)", required=False
    )
    add_overwrite_option(parser)
    add_allow_failures_option(parser, "sentences")
    add_progress_option(parser)


def moses_tokenizer(lang: str):
    """(name, callable) of the tokenizer behind ``tokenized_bleu`` (sacremoses, else 13a)."""
    try:
        from sacremoses import MosesTokenizer
    except ImportError:
        from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

        return "13a (sacremoses not installed)", Tokenizer13a()
    tok = MosesTokenizer(lang=lang or "en")
    return "moses (sacremoses)", lambda s: tok.tokenize(s, escape=False, return_str=True)


def score_texts(hyps: Sequence[str], refs: Sequence[str], tgt_lang: str | None = None) -> dict:
    """sacreBLEU, chrF and the tokenized BLEU of detokenised hypotheses against one reference each."""
    from sacrebleu.metrics import BLEU, CHRF

    if len(hyps) != len(refs):
        raise LskdError(f"{len(hyps)} hypotheses but {len(refs)} references")
    bleu = BLEU(trg_lang=tgt_lang or "")
    b = bleu.corpus_score(list(hyps), [list(refs)])
    chrf = CHRF()
    c = chrf.corpus_score(list(hyps), [list(refs)])
    tok_name, tok = moses_tokenizer(tgt_lang or "")
    tb = BLEU(tokenize="none", force=True).corpus_score([tok(h) for h in hyps], [[tok(r) for r in refs]])
    return {
        "sacrebleu": {
            "score": b.score,
            "signature": str(bleu.get_signature()),
            "precisions": list(b.precisions),
            "bp": b.bp,
            "sys_len": b.sys_len,
            "ref_len": b.ref_len,
            "counts": list(b.counts),
            "totals": list(b.totals),
        },
        "chrf": {"score": c.score, "signature": str(chrf.get_signature())},
        "tokenized_bleu": {
            "score": tb.score,
            "tokenizer": tok_name,
            "definition": "BLEU over whitespace tokens of tokenised, BPE-removed text (tokenize=none), "
            "as fairseq-generate printed for Tan et al.'s Moses-tokenised data",
        },
    }


def read_reference(path: str | Path, n: int) -> List[str]:
    path = Path(path)
    if path.is_dir():
        raise LskdError(f"--ref {path} is a folder; give the reference text file")
    if not path.is_file():
        raise LskdError(f"reference file not found: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            refs = [line.rstrip("\n") for line in f]
    except (OSError, UnicodeDecodeError) as err:
        raise LskdError(f"cannot read reference file {path} as UTF-8 text ({err})") from None
    if len(refs) != n:
        raise LskdError(f"reference file {path} has {len(refs)} lines, the subset has {n} sentences")
    return refs


def check_output(
    out: str | Path,
    subset: str,
    identity: Dict,
    inputs: Sequence,
    overwrite: bool,
    reference=None,
    checkpoints: Sequence = (),
) -> Path:
    """Before decoding: OUTPUT is a writable folder, neither is, holds nor lies inside the data-bin,
    writes no file over the reference, and its <subset>.* files (if any) are this checkpoint's own
    results on this data, unless ``overwrite``. (A checkpoint's folder is fine: only <subset>.*
    files are written there.)"""
    refuse_overlap(out, inputs, "--output")
    out = check_writable(out, "--output")
    written = {(out / f"{subset}.{kind}").resolve() for kind in OUTPUT_SUFFIXES}
    for option, path in (("--ref", reference), *(("--path", p) for p in checkpoints)):
        if path and Path(path).resolve() in written:
            raise LskdError(f"--output {out} would write over {option} {path}; choose another folder")
    old = out / f"{subset}.bleu.json"
    if overwrite:
        return out
    if not old.is_file():
        foreign = sorted(p.name for p in written if p.exists())
        if foreign:
            raise LskdError(
                f"--output {out} holds {', '.join(foreign)}, which no lskd bleu run of this checkpoint "
                "wrote; choose another folder or pass --overwrite to replace them"
            )
        return out
    try:
        previous = json.loads(old.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        previous = {}
    if {k: previous.get(k) for k in identity} != identity:
        raise LskdError(
            f"--output {out} holds {old.name} of another checkpoint or data-bin; choose another "
            "folder or pass --overwrite to replace it"
        )
    return out


def decode_and_score(
    decoder: Decoder, options: DecodeOptions, remove_bpe: str, ref, progress: bool
) -> Tuple[Dict, Dict[str, List[str]]]:
    """(result, texts): the scores ``lskd bleu`` prints, and the hyp/ref/src lines behind them."""
    subset, n = decoder.subset, len(decoder)
    post = detect_post_process(decoder.tgt_dict) if remove_bpe == "auto" else remove_bpe
    refs = read_reference(ref, n) if ref is not None else None  # checked before decoding
    if refs is None and decoder.dataset.tgt is None:
        raise LskdError(
            f"subset {subset} of {decoder.data} has no target side; give the references with --ref"
        )
    results = decoder.translate(list(range(n)), progress=progress, desc=f"bleu {decoder.subset_name}")
    hyps = [
        "" if results[i].tokens is None else decoder.hypothesis_text(results[i].tokens, post)
        for i in range(n)
    ]
    unk = decoder.tgt_dict.unk_string(True)
    if refs is None:
        refs = [decoder.target_text(i, post, escape_unk=True) for i in range(n)]
    failed = [i for i in range(n) if results[i].tokens is None]
    result = {
        "checkpoint": [str(p) for p in decoder.paths],
        "data": str(decoder.data),
        "subset": subset,
        "test_set": decoder.subset_name,
        "src": decoder.src,
        "tgt": decoder.tgt,
        "beam": options.beam,
        "lenpen": options.lenpen,
        "max_len_a": options.max_len_a,
        "max_len_b": options.max_len_b,
        "remove_bpe": post,
        "reference": str(ref) if ref is not None else "data-bin",
        **score_texts(hyps, refs, decoder.tgt),
        "counts": {
            "sentences": n,
            "empty_hypotheses": sum(
                1 for i in range(n) if results[i].tokens is not None and not hyps[i].strip()
            ),
            "failed": len(failed),
            "references_with_unk": 0 if ref is not None else sum(unk in r for r in refs),
        },
        "failed_examples": {str(i): results[i].reason for i in failed[:5]},
    }
    texts = {"hyp": hyps, "ref": refs, "src": [decoder.source_text(i, post) for i in range(n)]}
    return result, texts


def output_files(out: Path, subset: str) -> Dict[str, str]:
    return {kind: str(out / f"{subset}.{kind}") for kind in ("hyp", "ref", "src")}


def write_outputs(out: Path, result: Dict, texts: Dict[str, List[str]]) -> Dict:
    """OUTPUT/<subset>.{hyp,ref,src} and .bleu.json (atomic); returns the result with its file list."""
    result = {**result, "files": output_files(out, result["subset"])}
    for kind, path in result["files"].items():
        write_lines_atomic(path, texts[kind])
    write_text_atomic(
        out / f"{result['subset']}.bleu.json", json.dumps(result, indent=2, ensure_ascii=False) + "\n"
    )
    return result


def evaluate_checkpoint(
    paths: str,
    data: str | Path,
    subset: str = "test",
    options: DecodeOptions | None = None,
    remove_bpe: str = "auto",
    ref: str | Path | None = None,
    out: str | Path | None = None,
    progress: bool = True,
) -> Dict:
    """Decode ``subset`` and score it: the dict ``lskd bleu`` prints (and writes to
    OUT/<subset>.bleu.json). Failed sentences are counted in ``result["counts"]["failed"]``."""
    options = options or DecodeOptions()
    decoder = Decoder(paths, data, subset, options)
    if out is not None:
        out = check_writable(out, "--output")
    result, texts = decode_and_score(decoder, options, remove_bpe, ref, progress)
    return write_outputs(out, result, texts) if out is not None else result


def main(args: argparse.Namespace) -> int:
    options = options_from_args(args)
    decoder = Decoder(args.path, args.data, args.subset, options)
    out = None
    if args.output is not None:
        identity = {"checkpoint": [str(p) for p in decoder.paths], "data": str(decoder.data)}
        out = check_output(
            args.output, decoder.subset, identity, [args.data], args.overwrite, args.ref, decoder.paths
        )
    result, texts = decode_and_score(decoder, options, args.remove_bpe, args.ref, not args.no_progress)
    if out is not None:
        result["files"] = output_files(out, decoder.subset)
    sys.stdout.write(json.dumps(result, ensure_ascii=False) + "\n")
    sys.stdout.flush()
    if out is not None:
        try:
            write_outputs(out, result, texts)
        except OSError as err:
            raise LskdError(
                f"could not write --output {out} ({err.strerror or err}); the result is printed above"
            ) from None
    n = result["counts"]["sentences"]
    report_failures(
        result["counts"]["failed"], n, "sentences", args.allow_failures, "scored as empty hypotheses"
    )
    return 0
