"""``lskd diffusion image|nmt``: numbers and the projection grid for a set of checkpoints.

A thin layer over ``analyse_image_checkpoints`` / ``analyse_nmt_checkpoints`` and
``write_outputs`` (see docs/diffusion.md). Every number is range-checked by argparse, and the
output folder is claimed (``files.claim_output``) before any model is loaded: a folder holding
other results is refused unless ``--overwrite``, and one inside an input is always refused.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lskd_plugins.errors import int_at_least, nonneg_int, positive_int

# options that do not change the numbers: a rerun that differs only in them reuses the folder
NOT_IN_OWNER = ("batch_size", "device", "no_progress", "workers", "output", "overwrite", "_module", "command")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--checkpoints",
        nargs="+",
        required=True,
        metavar="CKPT",
        help="checkpoints to compare (one plot column each)",
    )
    p.add_argument(
        "--output",
        metavar="DIR",
        help="output folder (required): diffusion.json, diffusion.md, projection.png, projection_plane.png, "
        "numbers.png",
    )
    p.add_argument("--out", dest="output", help=argparse.SUPPRESS)  # the old name, kept as an alias
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an output folder that holds other results (default: refuse them)",
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
        "--batch-size",
        type=positive_int,
        default=64,
        metavar="N",
        help="batch size: images, or sentences for nmt (default: %(default)s)",
    )
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--no-progress", action="store_true", help="no progress display (default: shown)")
    p.add_argument("--quiet", dest="no_progress", action="store_true", help=argparse.SUPPRESS)


def _image_options(img: argparse.ArgumentParser) -> None:
    img.add_argument("--data", required=True, metavar="DIR", help="ImageFolder root with train/ and val/")
    img.add_argument(
        "--classes", metavar="A,B,C", help="a,b similar, c dissimilar (default: chosen automatically)"
    )
    img.add_argument(
        "--per-class",
        type=int_at_least(2),
        default=100,
        metavar="N",
        help="images per class and split, at least 2 (default: %(default)s)",
    )
    img.add_argument(
        "--select-per-class",
        type=positive_int,
        default=None,
        metavar="N",
        help="validation images per class for the automatic choice (default: min(per-class, 50))",
    )
    img.add_argument(
        "--seed", type=nonneg_int, default=0, help="seed of the image sample (default: %(default)s)"
    )
    img.add_argument(
        "--workers", type=nonneg_int, default=0, help="data-loader workers (default: %(default)s)"
    )
    img.add_argument(
        "--model",
        metavar="NAME",
        help="timm model name of timm checkpoints that do not name it (default: from the checkpoint)",
    )
    img.add_argument(
        "--num-classes",
        type=positive_int,
        metavar="N",
        help="classes of timm checkpoints (default: from the classifier's weights)",
    )
    img.add_argument(
        "--class-file",
        metavar="FILE",
        help="class names, one a line in output order, for checkpoints without them (default: the "
        "class folders' sorted order)",
    )


def _nmt_options(nmt: argparse.ArgumentParser) -> None:
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
        "--max-sentences",
        type=positive_int,
        default=2000,
        metavar="N",
        help="sentences read per split (default: %(default)s)",
    )
    nmt.add_argument(
        "--per-token",
        type=int_at_least(2),
        default=500,
        metavar="N",
        help="at most N occurrences per token and split, at least 2 (default: %(default)s)",
    )
    nmt.add_argument(
        "--candidates",
        type=int_at_least(3),
        default=50,
        metavar="N",
        help="automatic choice among the N most frequent target words, at least 3 (default: %(default)s)",
    )
    nmt.add_argument(
        "--train-subset", default="train", help="fairseq subset used as training data (default: %(default)s)"
    )
    nmt.add_argument(
        "--valid-subset",
        default="valid",
        help="fairseq subset used as validation data (default: %(default)s)",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="modality", metavar="{image,nmt}")
    sub.required = True
    img = sub.add_parser(
        "image",
        help="image classifiers (lskd or timm checkpoints) on an ImageFolder with train/ and val/",
        description="Penultimate-feature diffusion of image classifiers for three classes.",
    )
    _common(img)
    _image_options(img)
    nmt = sub.add_parser(
        "nmt",
        help="fairseq translation checkpoints on a data-bin; classes are target tokens",
        description="Decoder-state diffusion of translation models for three target tokens "
        "under teacher forcing.",
    )
    _common(nmt)
    _nmt_options(nmt)


def owner(args: argparse.Namespace) -> dict:
    """What makes this folder's results: the command and every option that changes the numbers."""
    settings = {k: v for k, v in vars(args).items() if k not in NOT_IN_OWNER}
    settings["checkpoints"] = [str(Path(p).resolve()) for p in args.checkpoints]
    settings["data"] = str(Path(args.data).resolve())
    return {"command": f"lskd diffusion {args.modality}", **settings}


def claim(args: argparse.Namespace) -> Path:
    """Refuse an output inside an input, or holding others' results; prove it writable. Before any work."""
    from lskd_plugins.errors import LskdError
    from lskd_plugins.files import claim_output, refuse_overlap

    if not args.output:
        raise LskdError(f"lskd diffusion {args.modality}: --output DIR is required")
    refuse_overlap(args.output, [args.data, *args.checkpoints, args.reference], "--output")
    return claim_output(args.output, owner(args), args.overwrite, "--output")


def analyse(args: argparse.Namespace):
    from lskd_plugins.diffusion.analyse import analyse_image_checkpoints, analyse_nmt_checkpoints

    common = dict(
        labels=args.labels,
        batch_size=args.batch_size,
        device=args.device,
        reference=args.reference,
        progress=not args.no_progress,
    )
    if args.modality == "image":
        return analyse_image_checkpoints(
            args.checkpoints,
            args.data,
            classes=args.classes,
            per_class=args.per_class,
            select_per_class=args.select_per_class,
            workers=args.workers,
            seed=args.seed,
            model_name=args.model,
            num_classes=args.num_classes,
            class_file=args.class_file,
            **common,
        )
    return analyse_nmt_checkpoints(
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


def release(out: Path, existed: bool) -> None:
    """After a failed run: drop the ownership marker where it is all the folder holds (and the folder
    where this run made it), so that the corrected command may claim it."""
    from lskd_plugins.files import OWNER_FILE

    if [p.name for p in out.iterdir()] == [OWNER_FILE]:
        (out / OWNER_FILE).unlink()
        if not existed:
            out.rmdir()


def main(args: argparse.Namespace) -> int:
    from lskd_plugins.diffusion.report import write_outputs

    existed = bool(args.output) and Path(args.output).exists()
    out = claim(args)
    try:
        records, projections = analyse(args)
    except BaseException:
        release(out, existed)
        raise
    paths = write_outputs(records, projections, out)
    for p in paths.values():
        print(p)
    print(f"diffusion: wrote {len(records)} records to {out}", file=sys.stderr)
    return 0
