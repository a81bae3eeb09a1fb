"""``lskd bleu``: decode a subset with a checkpoint and print ONE JSON object of scores.

Decoding is ``nmt.decode`` (the same path as ``lskd seqkd``). Hypotheses and references are
post-processed with fairseq's ``post_process`` (``--remove-bpe``, by default detected from the
dictionary: ``sentencepiece`` for the data-bins ``data_prep/`` makes), which for sentencepiece
data gives back the detokenised, normalised text, so no detokeniser is involved.

Scores (all from sacreBLEU):
- ``sacrebleu``: corpus BLEU on the detokenised text with sacreBLEU's defaults (13a tokenisation,
  mixed case, exp smoothing), its signature, n-gram precisions, brevity penalty and lengths.
  Equal to ``sacrebleu REF -i HYP -m bleu`` on the files ``--out`` writes.
- ``chrf``: chrF2 (sacreBLEU's defaults) and its signature.
- ``tokenized_bleu``: what Tan et al.'s fairseq code printed: BLEU over whitespace tokens of
  Moses-tokenised text (fairseq-generate / multi-bleu.perl on Moses-tokenised, BPE-removed
  output). Here: sacremoses' Moses tokenizer (``escape=False``) on hypotheses and references,
  then sacreBLEU with ``tokenize='none'``. Without sacremoses installed it falls back to
  sacreBLEU's 13a tokenizer (mteval-v13a, close to but not the same as Moses), which makes it
  equal to ``sacrebleu.score``; the ``tokenizer`` field says which one was used.
References: the subset's target side of the data-bin (unknown pieces escaped as ``<<unk>>``, as
fairseq-generate does, and counted) or ``--ref FILE`` (one line per sentence, e.g.
``OUT/text/test.de`` from ``data_prep``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Dict, List, Sequence

from lskd_plugins.errors import LskdError
from lskd_plugins.files import write_lines_atomic, write_text_atomic
from lskd_plugins.nmt.decode import (
    POST_PROCESS_CHOICES,
    DecodeOptions,
    Decoder,
    add_decode_arguments,
    detect_post_process,
    options_from_args,
)


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
    parser.add_argument(
        "--out",
        default=None,
        help="also write OUT/<subset>.hyp, OUT/<subset>.ref, OUT/<subset>.src and OUT/<subset>.bleu.json",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


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
    if not path.is_file():
        raise LskdError(f"reference file not found: {path}")
    with open(path, encoding="utf-8") as f:
        refs = [line.rstrip("\n") for line in f]
    if len(refs) != n:
        raise LskdError(f"reference file {path} has {len(refs)} lines, the subset has {n} sentences")
    return refs


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
    OUT/<subset>.bleu.json)."""
    options = options or DecodeOptions()
    decoder = Decoder(paths, data, subset, options)
    post = detect_post_process(decoder.tgt_dict) if remove_bpe == "auto" else remove_bpe
    n = len(decoder)
    results = decoder.translate(list(range(n)), progress=progress, desc=f"bleu {subset}")
    hyps = [
        "" if results[i].tokens is None else decoder.hypothesis_text(results[i].tokens, post)
        for i in range(n)
    ]
    unk = decoder.tgt_dict.unk_string(True)
    if ref is not None:
        refs = read_reference(ref, n)
        refs_with_unk = 0
    else:
        refs = [decoder.target_text(i, post, escape_unk=True) for i in range(n)]
        refs_with_unk = sum(unk in r for r in refs)
    scores = score_texts(hyps, refs, decoder.tgt)
    result = {
        "checkpoint": [str(p) for p in decoder.paths],
        "data": str(data),
        "subset": subset,
        "src": decoder.src,
        "tgt": decoder.tgt,
        "beam": options.beam,
        "lenpen": options.lenpen,
        "max_len_a": options.max_len_a,
        "max_len_b": options.max_len_b,
        "remove_bpe": post,
        "reference": str(ref) if ref is not None else "data-bin",
        **scores,
        "counts": {
            "sentences": n,
            "empty_hypotheses": sum(
                1 for i in range(n) if results[i].tokens is not None and not hyps[i].strip()
            ),
            "failed": sum(1 for i in range(n) if results[i].tokens is None),
            "references_with_unk": refs_with_unk,
        },
    }
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        files = {"hyp": out / f"{subset}.hyp", "ref": out / f"{subset}.ref", "src": out / f"{subset}.src"}
        write_lines_atomic(files["hyp"], hyps)
        write_lines_atomic(files["ref"], refs)
        write_lines_atomic(files["src"], [decoder.source_text(i, post) for i in range(n)])
        result["files"] = {k: str(v) for k, v in files.items()}
        write_text_atomic(
            out / f"{subset}.bleu.json", json.dumps(result, indent=2, ensure_ascii=False) + "\n"
        )
    return result


def main(args: argparse.Namespace) -> int:
    options = options_from_args(args)
    result = evaluate_checkpoint(
        args.path,
        args.data,
        args.subset,
        options,
        remove_bpe=args.remove_bpe,
        ref=args.ref,
        out=args.out,
        progress=not args.no_progress,
    )
    sys.stdout.write(json.dumps(result, ensure_ascii=False) + "\n")
    return 0
