#!/usr/bin/env python
"""CIFAR-10 / CIFAR-100 into an ImageFolder (``OUT/train/<class>/*``, ``OUT/val/<class>/*``).

Sources (``--source``):
- the original python tarballs ``cifar-10-python.tar.gz`` / ``cifar-100-python.tar.gz`` (or their
  extracted folder): images are written as PNG, the test batch becomes ``val/``;
- a zip of JPEG class folders laid out ``<prefix>/{train,test}/<class>/<file>.jpg``, e.g.
  ``../shared/data/cifar10/cifar10-jpeg.zip``: the files are copied unchanged, test -> ``val/``.
``--download cifar10|cifar100`` fetches the tarball first (needs internet; md5-checked).

Subsets: ``--classes cat,dog,airplane`` keeps those classes, ``--per-class N`` the first N training
images of each class (file order), ``--val-per-class M`` the first M val images. A stamp file makes a
rerun with the same settings a no-op. The folder is built as ``.OUT.partial-PID`` and renamed at the
end: a failed or killed run leaves no partial OUT, and the next run removes its leftovers.

    python data_prep/prepare_cifar.py --source ../shared/data/cifar10/cifar10-jpeg.zip --output data/cifar10
"""

from __future__ import annotations

import argparse
import hashlib
import pickle
import re
import sys
import tarfile
import urllib.request
import zipfile
import zlib
from collections import defaultdict
from pathlib import Path
from typing import Dict, Iterator, List, Sequence, Tuple

import numpy as np

from lskd_plugins.archives import damaged, looks_like_zip, read_tar_member, read_zip_member, tar_members
from lskd_plugins.errors import LskdError, OneLineParser, positive_int, run_script
from lskd_plugins.files import refuse_overlap
from lskd_plugins.image.staging import prepare_staged

STAMP = ".lskd-prepared.json"
DOWNLOADS = {
    "cifar10": (
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "c58f30108f718f92721af3b95e74349a",
    ),
    "cifar100": (
        "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        "eb9058c3a382ffc7106e4002c42a8d85",
    ),
}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
SPLIT_NAMES = {"train": "train", "test": "val", "val": "val"}
# One record: (split, class name, output file name, payload) where payload is encoded bytes or an
# (32, 32, 3) uint8 array to be written as PNG.
Record = Tuple[str, str, str, object]


# ----------------------------------------------------------------------------- zip of class folders
ZIP_ENTRY = re.compile(r"(?:^|.*/)(train|test|val)/([^/]+)/([^/]+)$")


def zip_records(path: Path) -> Tuple[List[str], Iterator[Record]]:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as err:
        if looks_like_zip(path):  # starts as a zip: cut off or corrupt, not the wrong file
            raise damaged(path, None, err) from None
        raise LskdError(f"--source {path}: not a readable zip file ({err})") from None
    entries = []
    for info in archive.infolist():
        m = ZIP_ENTRY.match(info.filename)
        if m and not info.is_dir() and info.filename.lower().endswith(IMAGE_SUFFIXES):
            entries.append((SPLIT_NAMES[m.group(1)], m.group(2), m.group(3), info.filename))
    splits = {e[0] for e in entries}
    if "train" not in splits or "val" not in splits:
        raise LskdError(
            f"--source {path}: expected entries <prefix>/train/<class>/<image> and "
            "<prefix>/test/<class>/<image> "
            f"(found {len(entries)} image entries in splits {sorted(splits) or 'none'})"
        )
    entries.sort(key=lambda e: (e[0], e[1], e[2]))
    classes = sorted({e[1] for e in entries if e[0] == "train"})

    def gen() -> Iterator[Record]:
        # The payload is read lazily: only records that pass the class/per-class filters are read.
        with archive:
            for split, cls, name, member in entries:
                yield split, cls, name, (lambda m=member: read_zip_member(archive, m, path))

    return classes, gen()


# ----------------------------------------------------------------------------- python pickles
def _unpickle(data: bytes, what: str) -> Dict[bytes, object]:
    try:
        obj = pickle.loads(data, encoding="bytes")
    except Exception as err:
        raise LskdError(f"{what}: not a CIFAR python batch ({type(err).__name__}: {err})") from None
    if not isinstance(obj, dict):
        raise LskdError(f"{what}: not a CIFAR python batch (a {type(obj).__name__}, expected a dict)")
    return obj


def _decode(names: Sequence) -> List[str]:
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names]


def pickle_records(
    files: Dict[str, bytes], where: str, label_type: str
) -> Tuple[List[str], Iterator[Record]]:
    """``files`` maps the base names of a cifar-10-batches-py / cifar-100-python folder to bytes."""
    if "batches.meta" in files:  # CIFAR-10
        meta = _unpickle(files["batches.meta"], f"{where}/batches.meta")
        classes = _decode(meta[b"label_names"])
        train = sorted(n for n in files if n.startswith("data_batch_"))
        test = ["test_batch"] if "test_batch" in files else []
        label_key = b"labels"
    elif "meta" in files:  # CIFAR-100
        meta = _unpickle(files["meta"], f"{where}/meta")
        classes = _decode(meta[f"{label_type}_label_names".encode()])
        train = ["train"] if "train" in files else []
        test = ["test"] if "test" in files else []
        label_key = f"{label_type}_labels".encode()
    else:
        raise LskdError(f"{where}: no batches.meta (CIFAR-10) or meta (CIFAR-100); is it the python version?")
    if not train or not test:
        raise LskdError(f"{where}: training or test batches missing (found {sorted(files)})")

    def gen() -> Iterator[Record]:
        for split, names in (("train", train), ("val", test)):
            counter = 0
            for name in names:
                batch = _unpickle(files[name], f"{where}/{name}")
                try:
                    data = (
                        np.asarray(batch[b"data"], dtype=np.uint8)
                        .reshape(-1, 3, 32, 32)
                        .transpose(0, 2, 3, 1)
                    )
                    labels = list(batch[label_key])
                except (KeyError, ValueError) as err:
                    raise LskdError(
                        f"{where}/{name}: malformed CIFAR batch ({type(err).__name__}: {err})"
                    ) from None
                for img, label in zip(data, labels):
                    yield split, classes[int(label)], f"{counter:05d}.png", img
                    counter += 1

    return classes, gen()


def tar_files(path: Path) -> Tuple[Dict[str, bytes], str]:
    try:
        with tarfile.open(path, "r:*") as tar:
            files = {}
            for member in tar_members(tar, path):
                if member.isfile() and (
                    "cifar-10-batches-py/" in member.name or "cifar-100-python/" in member.name
                ):
                    files[Path(member.name).name] = read_tar_member(tar, member, path)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as err:  # opening it (is_tarfile said yes)
        raise damaged(path, None, err) from None
    if not files:
        raise LskdError(f"--source {path}: no cifar-10-batches-py/ or cifar-100-python/ folder inside")
    return files, str(path)


# ----------------------------------------------------------------------------- writing
def open_source(source: Path, label_type: str) -> Tuple[List[str], Iterator[Record]]:
    if not source.exists():
        raise LskdError(f"--source {source}: no such file or directory")
    if source.is_dir():
        inner = [
            d for d in (source, source / "cifar-10-batches-py", source / "cifar-100-python") if d.is_dir()
        ]
        for d in inner:
            if (d / "batches.meta").is_file() or (d / "meta").is_file():
                files = {p.name: p.read_bytes() for p in d.iterdir() if p.is_file()}
                return pickle_records(files, str(d), label_type)
        raise LskdError(f"--source {source}: a folder without CIFAR python batches (batches.meta or meta)")
    if zipfile.is_zipfile(source) or looks_like_zip(source):
        return zip_records(source)
    if tarfile.is_tarfile(source):
        files, where = tar_files(source)
        return pickle_records(files, where, label_type)
    raise LskdError(f"--source {source}: neither a zip of class folders nor a CIFAR python tarball")


def parse_classes(text: str | None, available: List[str]) -> List[str]:
    if not text:
        return list(available)
    wanted = [c.strip() for c in text.split(",") if c.strip()]
    unknown = [c for c in wanted if c not in available]
    if unknown:
        raise LskdError(f"--classes: unknown {', '.join(unknown)}; available: {', '.join(available)}")
    if len(set(wanted)) < 2:
        raise LskdError("--classes: give at least two distinct classes")
    return sorted(set(wanted))


def prepare(
    source: Path,
    out: Path,
    classes: str | None = None,
    per_class: int | None = None,
    val_per_class: int | None = None,
    label_type: str = "fine",
    overwrite: bool = False,
) -> Dict[str, int]:
    """Write the ImageFolder; returns image counts per split. Same settings twice: a no-op."""
    for name, value in (("--per-class", per_class), ("--val-per-class", val_per_class)):
        if value is not None and value < 1:
            raise LskdError(f"{name} must be >= 1, got {value}")
    if source.exists():
        refuse_overlap(out, [source], "--output")
    settings = {
        "source": str(source.resolve()),
        "classes": classes,
        "per_class": per_class,
        "val_per_class": val_per_class,
        "label_type": label_type,
    }

    def build(tmp: Path) -> Dict[str, int]:
        return write_records(source, tmp, classes, {"train": per_class, "val": val_per_class}, label_type)

    return prepare_staged(out, STAMP, settings, build, overwrite)


def write_records(source: Path, out: Path, classes, limits: Dict, label_type: str) -> Dict[str, int]:
    from PIL import Image

    available, records = open_source(source, label_type)
    keep = set(parse_classes(classes, available))
    taken: Dict[Tuple[str, str], int] = defaultdict(int)
    for split, cls, name, payload in records:
        if cls not in keep or (limits[split] is not None and taken[split, cls] >= limits[split]):
            continue
        target = out / split / cls / name
        if taken[split, cls] == 0:
            target.parent.mkdir(parents=True, exist_ok=True)
        if callable(payload):
            payload = payload()
        if isinstance(payload, bytes):
            target.write_bytes(payload)
        else:
            Image.fromarray(payload).save(target)
        taken[split, cls] += 1
    missing = [f"{s}/{c}" for s in ("train", "val") for c in sorted(keep) if taken[s, c] == 0]
    if missing:
        raise LskdError(f"--source {source}: no images for {', '.join(missing[:6])}")
    return {s: sum(n for (sp, _), n in taken.items() if sp == s) for s in ("train", "val")}


def download(name: str, folder: Path) -> Path:
    """Fetch the python tarball (needs internet) and check its md5."""
    url, md5 = DOWNLOADS[name]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / url.rsplit("/", 1)[-1]
    if not path.is_file():
        print(f"downloading {url}", file=sys.stderr)
        try:
            with urllib.request.urlopen(url) as resp, open(path.with_suffix(".part"), "wb") as f:
                while chunk := resp.read(1 << 20):
                    f.write(chunk)
        except OSError as err:
            raise LskdError(f"cannot download {url} ({err}); fetch it by hand and pass --source") from None
        path.with_suffix(".part").rename(path)
    digest = hashlib.md5(path.read_bytes()).hexdigest()
    if digest != md5:
        raise LskdError(f"{path}: md5 {digest} != {md5}; delete it and download again")
    return path


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="prepare_cifar.py",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--source", type=Path, help="python tarball / its folder, or a zip of JPEG class folders"
    )
    src.add_argument(
        "--download", choices=sorted(DOWNLOADS), help="fetch the python tarball first (internet)"
    )
    add = p.add_argument
    add(
        "--download-dir",
        type=Path,
        default=Path("downloads"),
        help="where --download stores it (default: %(default)s)",
    )
    add("--output", type=Path, default=None, help="output ImageFolder root, required (gets train/ and val/)")
    add("--out", dest="output", type=Path, default=argparse.SUPPRESS, help=argparse.SUPPRESS)  # the old name
    add(
        "--overwrite",
        action="store_true",
        help="replace a folder prepared with other settings (default: off)",
    )
    add("--classes", default=None, help="comma-separated class names to keep (default: all)")
    add(
        "--per-class",
        type=positive_int,
        default=None,
        help="keep the first N training images per class (default: all)",
    )
    add(
        "--val-per-class",
        type=positive_int,
        default=None,
        help="keep the first M val images per class (default: all)",
    )
    add(
        "--label-type",
        choices=("fine", "coarse"),
        default="fine",
        help="CIFAR-100 labels (default: %(default)s)",
    )
    return p


def main(argv: List[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.output is None:
        parser.error("the following arguments are required: --output")
    source = args.source if args.source is not None else download(args.download, args.download_dir)
    counts = prepare(
        source, args.output, args.classes, args.per_class, args.val_per_class, args.label_type, args.overwrite
    )
    print(f"cifar: {counts['train']} train / {counts['val']} val images in {args.output}")
    return 0


if __name__ == "__main__":
    run_script(main)
