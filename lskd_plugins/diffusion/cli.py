"""``lskd diffusion image|nmt``: numbers and the projection grid for a set of checkpoints.

A thin layer over ``analyse_image_checkpoints`` / ``analyse_nmt_checkpoints`` and
``write_outputs`` (see docs/diffusion.md).
"""

from __future__ import annotations

import argparse
import sys


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--checkpoints",
        nargs="+",
        required=True,
        metavar="CKPT",
        help="checkpoints to compare (one plot column each)",
    )
    p.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="output folder: diffusion.json, diffusion.md, projection.png",
    )
    p.add_argument(
        "--labels",
        nargs="+",
        metavar="LABEL",
        help="column labels, one per checkpoint (default: from the checkpoint)",
    )
    p.add_argument(
        "--reference",
        metavar="CKPT",
        help="model whose mean soft predictions choose the classes (default: the first checkpoint)",
    )
    p.add_argument(
        "--batch-size", type=int, default=64, help="batch size (images, or sentences for nmt); default 64"
    )
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="modality", metavar="{image,nmt}")
    sub.required = True
    img = sub.add_parser(
        "image",
        help="lskd image checkpoints on an ImageFolder with train/ and val/",
        description="Penultimate-feature diffusion of image classifiers (lskd image checkpoints) "
        "for three classes.",
    )
    _common(img)
    img.add_argument(
        "--data", required=True, metavar="DIR", help="ImageFolder root with train/ and val/ (or test/)"
    )
    img.add_argument(
        "--classes", metavar="A,B,C", help="a,b similar, c dissimilar (default: chosen automatically)"
    )
    img.add_argument(
        "--per-class", type=int, default=100, metavar="N", help="images per class and split (default 100)"
    )
    img.add_argument(
        "--select-per-class",
        type=int,
        default=None,
        metavar="N",
        help="validation images per class for the automatic choice (default min(per-class, 50))",
    )
    img.add_argument("--workers", type=int, default=0, help="data-loader workers (default 0)")

    nmt = sub.add_parser(
        "nmt",
        help="fairseq translation checkpoints on a data-bin; classes are target tokens",
        description="Decoder-state diffusion of translation models for three target tokens "
        "under teacher forcing.",
    )
    _common(nmt)
    nmt.add_argument(
        "--data",
        required=True,
        metavar="DATA_BIN",
        help="fairseq-preprocess output the models were trained on",
    )
    nmt.add_argument(
        "--tokens",
        metavar="A,B,C",
        help="target words a,b similar, c dissimilar (default: chosen automatically)",
    )
    nmt.add_argument(
        "--max-sentences", type=int, default=2000, metavar="N", help="sentences read per split (default 2000)"
    )
    nmt.add_argument(
        "--per-token",
        type=int,
        default=500,
        metavar="N",
        help="at most N occurrences per token and split (default 500)",
    )
    nmt.add_argument(
        "--candidates",
        type=int,
        default=50,
        metavar="N",
        help="automatic choice among the N most frequent target words (default 50)",
    )
    nmt.add_argument(
        "--train-subset", default="train", help="fairseq subset used as training data (default train)"
    )
    nmt.add_argument(
        "--valid-subset", default="valid", help="fairseq subset used as validation data (default valid)"
    )


def main(args: argparse.Namespace) -> int:
    from lskd_plugins.diffusion.analyse import analyse_image_checkpoints, analyse_nmt_checkpoints
    from lskd_plugins.diffusion.report import write_outputs
    from lskd_plugins.errors import LskdError

    if args.batch_size < 1:
        raise LskdError("--batch-size must be at least 1")
    common = dict(
        labels=args.labels,
        batch_size=args.batch_size,
        device=args.device,
        reference=args.reference,
        progress=not args.no_progress,
    )
    if args.modality == "image":
        records, projections = analyse_image_checkpoints(
            args.checkpoints,
            args.data,
            classes=args.classes,
            per_class=args.per_class,
            select_per_class=args.select_per_class,
            workers=args.workers,
            **common,
        )
    else:
        if args.max_sentences < 1 or args.per_token < 2:
            raise LskdError("--max-sentences must be >= 1 and --per-token >= 2")
        records, projections = analyse_nmt_checkpoints(
            args.checkpoints,
            args.data,
            tokens=args.tokens,
            max_sentences=args.max_sentences,
            per_token=args.per_token,
            candidates=args.candidates,
            train_subset=args.train_subset,
            valid_subset=args.valid_subset,
            **common,
        )
    paths = write_outputs(records, projections, args.out)
    for p in paths.values():
        print(p)
    print(f"diffusion: wrote {len(records)} records to {args.out}", file=sys.stderr)
    return 0
