#!/usr/bin/env python
"""CUB-200-2011 into an ImageFolder with the official train/test split.

``--source`` is ``CUB_200_2011.tgz`` (as distributed by Caltech) or its extracted folder (the one
holding ``images.txt``, ``train_test_split.txt`` and ``images/``, or its parent). Images of
``is_training_image == 1`` go to ``OUT/train/<class>/``, the others to ``OUT/val/<class>/``
(5,994 / 5,794 images, 200 classes; class folders keep their names, e.g.
``001.Black_footed_Albatross``, so the class index is the official id - 1). Images are copied
unchanged (or symlinked with ``--link`` from a folder source); bounding boxes are not used, as in
the paper. ``--max-classes N`` keeps the first N classes (smoke runs). A stamp file makes a rerun
with the same settings a no-op. The folder is built as ``.OUT.partial-PID`` and renamed at the end: a
failed or killed run leaves no partial OUT, and the next run removes its leftovers.

    python data_prep/prepare_cub.py --source CUB_200_2011.tgz --output data/cub
"""

from __future__ import annotations

import argparse
import os
import shutil
import tarfile
from pathlib import Path, PurePosixPath
from typing import Dict, List, Tuple

from lskd_plugins.archives import READ_ERRORS, damaged, read_tar_member, tar_members
from lskd_plugins.errors import LskdError, OneLineParser, int_at_least, run_script
from lskd_plugins.files import refuse_overlap
from lskd_plugins.image.staging import prepare_staged

STAMP = ".lskd-prepared.json"
META_FILES = ("images.txt", "train_test_split.txt")


def parse_id_table(text: str, what: str) -> Dict[int, str]:
    """Lines '<id> <value>' -> {id: value}; an error naming the file and line when malformed."""
    table = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=1)
        if len(parts) != 2 or not parts[0].isdigit():
            raise LskdError(f"{what}, line {n}: expected '<id> <value>', got {line!r}")
        table[int(parts[0])] = parts[1].strip()
    if not table:
        raise LskdError(f"{what} is empty")
    return table


def split_plan(images_txt: str, split_txt: str, where: str, max_classes: int | None) -> Dict[str, str]:
    """{relative image path under images/: 'train' | 'val'} from the two official tables."""
    images = parse_id_table(images_txt, f"{where}/images.txt")
    is_train = parse_id_table(split_txt, f"{where}/train_test_split.txt")
    if set(images) != set(is_train):
        missing = sorted(set(images) ^ set(is_train))[:5]
        raise LskdError(
            f"{where}: images.txt and train_test_split.txt list different image ids (e.g. {missing})"
        )
    bad = [i for i, v in is_train.items() if v not in ("0", "1")]
    if bad:
        raise LskdError(f"{where}/train_test_split.txt: flag must be 0 or 1 (image ids {bad[:5]})")
    classes = sorted({PurePosixPath(p).parts[0] for p in images.values()})
    keep = set(classes[:max_classes]) if max_classes else set(classes)
    return {
        path: ("train" if is_train[i] == "1" else "val")
        for i, path in images.items()
        if PurePosixPath(path).parts[0] in keep
    }


def find_root(folder: Path) -> Path:
    for cand in (folder, folder / "CUB_200_2011"):
        if all((cand / f).is_file() for f in META_FILES):
            return cand
    missing = [
        f for f in META_FILES if not (folder / f).is_file() and not (folder / "CUB_200_2011" / f).is_file()
    ]
    raise LskdError(f"--source {folder}: not a CUB_200_2011 folder (missing {', '.join(missing)})")


def from_folder(folder: Path, out: Path, max_classes: int | None, link: bool) -> Dict[str, int]:
    root = find_root(folder)
    plan = split_plan(*(root.joinpath(f).read_text() for f in META_FILES), str(root), max_classes)
    absent = [p for p in plan if not (root / "images" / p).is_file()]
    if absent:
        raise LskdError(f"{root}/images: {len(absent)} listed images are missing (e.g. {absent[0]})")
    counts = {"train": 0, "val": 0}
    for rel, split in sorted(plan.items()):
        src, dst = root / "images" / rel, out / split / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if link:
            os.symlink(src.resolve(), dst)
        else:
            shutil.copyfile(src, dst)
        counts[split] += 1
    return counts


def _member_root(name: str) -> Tuple[str, str]:
    """('.../CUB_200_2011', 'images.txt') style split of a tar member name at the data root."""
    p = PurePosixPath(name)
    if "images" in p.parts:
        i = p.parts.index("images")
        return "/".join(p.parts[:i]), "/".join(p.parts[i:])
    return "/".join(p.parts[:-1]), p.name


def from_tarball(path: Path, out: Path, max_classes: int | None) -> Dict[str, int]:
    """Two streaming passes: the tables (wherever they lie in the archive), then the images."""
    meta: Dict[str, str] = {}
    root = None
    try:
        with tarfile.open(path, "r|*") as tar:
            for member in tar_members(tar, path):
                base, rest = _member_root(member.name)
                if member.isfile() and rest in META_FILES and (root is None or base == root):
                    root = base
                    meta[rest] = read_tar_member(tar, member, path).decode("utf-8")
        missing = [f for f in META_FILES if f not in meta]
        if missing:
            raise LskdError(f"--source {path}: no CUB_200_2011 {', '.join(missing)} inside")
        plan = split_plan(meta["images.txt"], meta["train_test_split.txt"], f"{path}:{root}", max_classes)
        counts = {"train": 0, "val": 0}
        seen = set()
        with tarfile.open(path, "r|*") as tar:
            for member in tar_members(tar, path):
                base, rest = _member_root(member.name)
                if not member.isfile() or base != root or not rest.startswith("images/"):
                    continue
                rel = rest[len("images/") :]
                split = plan.get(rel)
                if split is None:
                    continue
                dst = out / split / rel
                dst.parent.mkdir(parents=True, exist_ok=True)
                dst.write_bytes(read_tar_member(tar, member, path))
                counts[split] += 1
                seen.add(rel)
    except READ_ERRORS as err:  # opening it (is_tarfile said yes); members are named above
        raise damaged(path, None, err) from None
    absent = sorted(set(plan) - seen)
    if absent:
        raise LskdError(
            f"--source {path}: {len(absent)} images listed in images.txt are missing (e.g. {absent[0]})"
        )
    return counts


def prepare(
    source: Path, out: Path, max_classes: int | None = None, link: bool = False, overwrite: bool = False
) -> Dict[str, int]:
    """Write the ImageFolder; returns image counts per split. Same settings twice: a no-op."""
    if not source.exists():
        raise LskdError(f"--source {source}: no such file or directory")
    if max_classes is not None and max_classes < 2:
        raise LskdError(f"--max-classes must be >= 2, got {max_classes}")
    refuse_overlap(out, [source], "--output")
    if source.is_dir():
        build = lambda tmp: from_folder(source, tmp, max_classes, link)  # noqa: E731
    elif tarfile.is_tarfile(source):
        if link:
            raise LskdError("--link needs an extracted folder as --source, not a tarball")
        build = lambda tmp: from_tarball(source, tmp, max_classes)  # noqa: E731
    else:
        raise LskdError(f"--source {source}: neither a folder nor a tar archive (expected CUB_200_2011.tgz)")
    settings = {"source": str(source.resolve()), "max_classes": max_classes, "link": link}
    return prepare_staged(out, STAMP, settings, build, overwrite)


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="prepare_cub.py",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    p.add_argument("--source", type=Path, required=True, help="CUB_200_2011.tgz or the extracted folder")
    p.add_argument(
        "--output", type=Path, default=None, help="output ImageFolder root, required (gets train/ and val/)"
    )
    p.add_argument("--out", dest="output", type=Path, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a folder prepared with other settings (default: off)",
    )
    p.add_argument(
        "--max-classes",
        type=int_at_least(2),
        default=None,
        help="keep only the first N classes (default: all)",
    )
    p.add_argument(
        "--link", action="store_true", help="symlink instead of copying, folder source only (default: off)"
    )
    return p


def main(argv: List[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.output is None:
        parser.error("the following arguments are required: --output")
    counts = prepare(args.source, args.output, args.max_classes, args.link, args.overwrite)
    print(f"cub: {counts['train']} train / {counts['val']} val images in {args.output}")
    return 0


if __name__ == "__main__":
    run_script(main)
