"""Miniature raw data sets in the native layouts the paper configurations' preparations read.

Images are scikit-learn's 8x8 digits (``lskd_plugins.image.digits``), upscaled to ``size`` pixels,
class k drawing the digit k % 10; sentences are ``lskd synth-mt`` pairs
(``lskd_plugins.nmt.synth_mt.generate_pairs``). Every writer is deterministic and returns the path
the configuration's preparation reads (``prepare.inputs``).

- ``write_imagenet``: an ImageFolder root as data_prep/IMAGENET.md lays ILSVRC-2012 out,
  ``train/<wnid>/<wnid>_<n>.JPEG`` and ``val/<wnid>/ILSVRC2012_val_<8 digits>.JPEG``;
- ``write_cub``: ``CUB_200_2011.tgz`` as Caltech distributes it (``CUB_200_2011/images/<class>/...``,
  ``images.txt``, ``train_test_split.txt``, ``image_class_labels.txt``, ``classes.txt``,
  ``bounding_boxes.txt``), read by data_prep/prepare_cub.py;
- ``write_iwslt14``: the ``de-en/`` folder of fairseq's ``de-en.tgz`` (``train.tags.de-en.{de,en}``
  with the TED tag lines, ``IWSLT14.TED*.{dev,tst}*.de-en.{de,en}.xml``), read by
  ``lskd prepare-mt --layout iwslt14`` (data_prep/prepare_iwslt14.sh);
- ``write_wmt14``: the unpacked statmt.org archives (``training/europarl-v7.de-en.*``,
  ``commoncrawl.de-en.*``, ``training/news-commentary-v9.de-en.*``, ``dev/newstest2013.*``,
  ``test-full/newstest2014-deen-{src,ref}.*.sgm``), read by ``--layout wmt14``
  (data_prep/prepare_wmt14_en_de.sh).
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np

from lskd_plugins.files import write_lines_atomic as _write_lines_atomic

# ImageNet WordNet ids: the paper_imagenet diffusion triple (miniature poodle, standard poodle,
# submarine) first, then tench and goldfish
IMAGENET_WNIDS = ("n02113712", "n02113799", "n04347754", "n01440764", "n01443537")
# the first classes of CUB-200-2011's classes.txt
CUB_CLASSES = (
    "001.Black_footed_Albatross",
    "002.Laysan_Albatross",
    "003.Sooty_Albatross",
    "004.Groove_billed_Ani",
    "005.Crested_Auklet",
)


def write_lines_atomic(path: Path, lines: Sequence[str]) -> Path:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return _write_lines_atomic(path, lines)


IWSLT_TEST = ("TED.dev2010", "TEDX.dev2012", "TED.tst2010", "TED.tst2011", "TED.tst2012")


def digit_images(n_classes: int, per_class: int, size: int, seed: int = 0) -> List[List[np.ndarray]]:
    """``per_class`` RGB uint8 (size, size, 3) images for each class k: the digits k % 10."""
    from PIL import Image
    from sklearn.datasets import load_digits

    bunch = load_digits()
    pixels = np.clip(np.round(bunch.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n_classes):
        idx = np.flatnonzero(bunch.target == k % 10)
        pick = rng.choice(idx, size=per_class, replace=len(idx) < per_class)
        out.append([np.asarray(Image.fromarray(pixels[i]).convert("RGB").resize((size, size))) for i in pick])
    return out


def _jpeg(array: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def write_imagenet(
    root: Path, wnids: Sequence[str] = IMAGENET_WNIDS, train: int = 6, val: int = 3, size: int = 32
) -> Path:
    """ImageNet's ImageFolder layout (train/<wnid>/, val/<wnid>/ with the validation file names)."""
    root = Path(root)
    images = digit_images(len(wnids), train + val, size)
    n_val = 0
    for wnid, imgs in zip(wnids, images):
        for split in ("train", "val"):
            (root / split / wnid).mkdir(parents=True, exist_ok=True)
        for i, img in enumerate(imgs[:train]):
            (root / "train" / wnid / f"{wnid}_{i + 1}.JPEG").write_bytes(_jpeg(img))
        for img in imgs[train:]:
            n_val += 1
            (root / "val" / wnid / f"ILSVRC2012_val_{n_val:08d}.JPEG").write_bytes(_jpeg(img))
    return root


def cub_members(classes: Sequence[str], train: int, test: int, size: int) -> Dict[str, bytes]:
    """{path inside CUB_200_2011/: content}: the images and the four tables prepare_cub.py reads."""
    files: Dict[str, bytes] = {}
    rows: Dict[str, List[str]] = {"images": [], "split": [], "labels": [], "boxes": []}
    images = digit_images(len(classes), train + test, size, seed=1)
    n = 0
    for c, (name, imgs) in enumerate(zip(classes, images), 1):
        bird = name.split(".", 1)[1].title()
        for i, img in enumerate(imgs):
            n += 1
            rel = f"{name}/{bird}_{i + 1:04d}_{790000 + n}.jpg"
            files[f"images/{rel}"] = _jpeg(img)
            rows["images"].append(f"{n} {rel}")
            rows["split"].append(f"{n} {1 if i < train else 0}")
            rows["labels"].append(f"{n} {c}")
            rows["boxes"].append(f"{n} 0.0 0.0 {size}.0 {size}.0")
    tables = {
        "images.txt": rows["images"],
        "train_test_split.txt": rows["split"],
        "image_class_labels.txt": rows["labels"],
        "bounding_boxes.txt": rows["boxes"],
        "classes.txt": [f"{c} {name}" for c, name in enumerate(classes, 1)],
    }
    files.update({name: ("\n".join(lines) + "\n").encode() for name, lines in tables.items()})
    return files


def write_cub(
    folder: Path, classes: Sequence[str] = CUB_CLASSES, train: int = 6, test: int = 3, size: int = 32
) -> Path:
    """``folder/CUB_200_2011.tgz`` with the layout of Caltech's archive; returns the tarball."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "CUB_200_2011.tgz"
    tmp = folder / "CUB_200_2011.tgz.partial"
    with tarfile.open(tmp, "w:gz") as tar:
        for rel, data in sorted(cub_members(classes, train, test, size).items()):
            info = tarfile.TarInfo(f"CUB_200_2011/{rel}")
            info.size, info.mtime = len(data), 0
            tar.addfile(info, io.BytesIO(data))
    tmp.replace(path)
    return path


def sentence_pairs(n: int, split: str, seed: int = 1) -> List[Tuple[str, str]]:
    """(English, German-like) sentence pairs of ``lskd synth-mt``."""
    from lskd_plugins.nmt.synth_mt import generate_pairs

    return [(" ".join(s), " ".join(t)) for s, t in generate_pairs(n, seed, split)]


def _tags(lines: Sequence[str], lang: str, talks: int = 2) -> List[str]:
    """IWSLT's train.tags.* : per talk the tag lines (dropped or stripped by the reader), then text."""
    out: List[str] = []
    per_talk = max(1, len(lines) // talks)
    for t in range(0, len(lines), per_talk):
        talk = t // per_talk + 1
        out += [
            f"<url>http://www.ted.com/talks/talk_{talk}.html</url>",
            f"<keywords>talks, {lang}</keywords>",
            f"<speaker>Speaker {talk}</speaker>",
            f"<talkid>{talk}</talkid>",
        ]
        out += lines[t : t + per_talk]
    return out


def _xml(lines: Sequence[str], lang: str, setid: str, root: str = "refset") -> List[str]:
    """An IWSLT / WMT test file: one ``<seg id="N">`` a line inside ``<doc>``."""
    head = f'<{root} setid="{setid}" srclang="any" trglang="{lang}">'
    segs = [f'<seg id="{i}"> {line} </seg>' for i, line in enumerate(lines, 1)]
    xml_head = ['<?xml version="1.0" encoding="UTF-8"?>', head, '<doc docid="1" genre="lectures">']
    return xml_head + segs + ["</doc>", f"</{root}>"]


IWSLT_HOLDOUT = 23  # prepare-iwslt14.sh holds every 23rd training pair out as valid


def iwslt_train_pairs(n: int) -> List[Tuple[str, str]]:
    """``n`` training pairs, every 23rd (the valid set's) three sentences long: a few hundred lines
    then give the valid set words that occur 10+ times (the diffusion's automatic choice of tokens
    needs them), while seqkd decodes only the short training lines."""
    pairs = sentence_pairs(3 * n, "train")
    out = pairs[:n]
    for i in range(IWSLT_HOLDOUT - 1, n, IWSLT_HOLDOUT):
        joined = (out[i], pairs[n + 2 * i], pairs[n + 2 * i + 1])
        out[i] = (" ".join(p[0] for p in joined), " ".join(p[1] for p in joined))
    return out


def write_iwslt14(raw: Path, train: int = 300, test: int = 2) -> Path:
    """The de-en/ folder of de-en.tgz under ``raw``; returns ``raw`` (the --raw-dir)."""
    folder = Path(raw) / "de-en"
    pairs = iwslt_train_pairs(train)
    for lang, side in (("en", 0), ("de", 1)):
        write_lines_atomic(folder / f"train.tags.de-en.{lang}", _tags([p[side] for p in pairs], lang))
    for k, name in enumerate(IWSLT_TEST):
        tests = sentence_pairs(test, f"test{k}")
        for lang, side in (("en", 0), ("de", 1)):
            lines = _xml([p[side] for p in tests], lang, f"IWSLT14.{name}")
            write_lines_atomic(folder / f"IWSLT14.{name}.de-en.{lang}.xml", lines)
    return Path(raw)


WMT14_TRAIN = ("training/europarl-v7.de-en", "commoncrawl.de-en", "training/news-commentary-v9.de-en")


def write_wmt14(raw: Path, train: int = 40, dev: int = 30, test: int = 10) -> Path:
    """The unpacked statmt.org archives under ``raw``; returns ``raw`` (the --raw-dir)."""
    raw = Path(raw)
    for k, prefix in enumerate(WMT14_TRAIN):
        pairs = sentence_pairs(train, f"train{k}")
        for lang, side in (("en", 0), ("de", 1)):
            write_lines_atomic(raw / f"{prefix}.{lang}", [p[side] for p in pairs])
    pairs = sentence_pairs(dev, "valid")
    for lang, side in (("en", 0), ("de", 1)):
        write_lines_atomic(raw / f"dev/newstest2013.{lang}", [p[side] for p in pairs])
    pairs = sentence_pairs(test, "test")
    for lang, role, side in (("en", "src", 0), ("de", "ref", 1)):
        lines = _xml([p[side] for p in pairs], lang, "newstest2014", root=f"{role}set")
        write_lines_atomic(raw / f"test-full/newstest2014-deen-{role}.{lang}.sgm", lines)
    return raw


CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)


def write_cifar_zip(folder: Path, train: int = 6, test: int = 3, size: int = 32) -> Path:
    """``folder/cifar10-jpeg.zip`` laid out ``cifar10/{train,test}/<class>/NNNN.jpg`` (the zip
    data_prep/prepare_cifar.py reads, as ../shared/data/cifar10/cifar10-jpeg.zip)."""
    import zipfile

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path, tmp = folder / "cifar10-jpeg.zip", folder / "cifar10-jpeg.zip.partial"
    images = digit_images(len(CIFAR10_CLASSES), train + test, size, seed=2)
    with zipfile.ZipFile(tmp, "w") as z:
        for name, imgs in zip(CIFAR10_CLASSES, images):
            for i, img in enumerate(imgs):
                split, n = ("train", i) if i < train else ("test", i - train)
                z.writestr(zipfile.ZipInfo(f"cifar10/{split}/{name}/{n:04d}.jpg"), _jpeg(img))
    tmp.replace(path)
    return path


MULTI30K_SPLITS = ("train", "val", "test_2016_flickr", "test_2017_flickr", "test_2017_mscoco")
MULTI30K_SPLITS += ("test_2018_flickr",)


def write_multi30k(raw: Path, train: int = 120, valid: int = 30, test: int = 8) -> Path:
    """Multi30k task 1's ``raw/`` folder: ``{train,val,test_*}.{en,de}.gz``; returns ``raw``."""
    import gzip

    raw = Path(raw)
    raw.mkdir(parents=True, exist_ok=True)
    for split in MULTI30K_SPLITS:
        pairs = sentence_pairs({"train": train, "val": valid}.get(split, test), split)
        for lang, side in (("en", 0), ("de", 1)):
            with gzip.open(raw / f"{split}.{lang}.gz", "wt", encoding="utf-8") as f:
                f.write("".join(p[side] + "\n" for p in pairs))
    return raw
