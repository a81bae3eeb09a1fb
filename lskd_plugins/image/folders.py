"""What an image data folder is: the one rule of every image reader and of the study's data hash.

A split folder (``DATA/train``) holds one folder per class; a class's index is the position of its
name in the sorted list of class names. Its images are the files under the class folder (at any
depth) with one of torchvision's image extensions (case-insensitive), listed in torchvision's order
(folders sorted by path, files sorted by name in each).

Hidden names (starting with a dot) are invisible: a hidden folder is not a class
(``.ipynb_checkpoints``, ``.extra``), and hidden files and folders inside a class are not read
(``._x.png``). Folders are followed through symbolic links, as torchvision does; a link that leads
back to a folder above it (a loop) is refused with one line naming it, instead of walking forever.

``lskd image-train``, ``image-eval``, the diffusion analysis and the study's data hash
(``study/keys.py``, which hashes every visible file with this walk) all use these functions, so a
run's key changes whenever what the run reads changes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

from lskd_plugins.errors import LskdError

# torchvision.datasets.folder.IMG_EXTENSIONS (kept here so that hashing needs no torchvision)
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def is_hidden(name: str) -> bool:
    return name.startswith(".")


def is_image_name(name: str) -> bool:
    return name.lower().endswith(IMG_EXTENSIONS)


def _entries(folder: str) -> List[os.DirEntry]:
    try:
        with os.scandir(folder) as it:
            return sorted((e for e in it if not is_hidden(e.name)), key=lambda e: e.name)
    except OSError as err:
        raise LskdError(f"cannot list {folder} ({err.strerror or err})") from None


def class_folders(split: os.PathLike | str) -> List[str]:
    """Sorted names of the visible folders (or links to folders) in ``split``."""
    return [e.name for e in _entries(os.fspath(split)) if e.is_dir()]


def visible_tree(folder: os.PathLike | str) -> Iterator[Tuple[str, List[str]]]:
    """(folder path, sorted visible file names) for ``folder`` and every visible folder below it,
    sorted by path (torchvision's order); linked folders followed, a loop refused in one line."""
    found: List[Tuple[str, List[str]]] = []
    stack = [(os.fspath(folder), (os.path.realpath(folder),))]
    while stack:
        path, ancestors = stack.pop()
        files = []
        for e in _entries(path):
            if not e.is_dir():  # files, and links to files or to nothing
                files.append(e.name)
                continue
            real = os.path.realpath(e.path)
            if real in ancestors or Path(ancestors[-1]).is_relative_to(real):  # leads back up
                raise LskdError(
                    f"{e.path} is a symbolic link loop (it leads back to {real}, a folder that contains it); "
                    "remove the link or point it outside the data"
                )
            stack.append((e.path, (*ancestors, real)))
        found.append((path, files))
    return iter(sorted(found))


def visible_files(folder: os.PathLike | str) -> Iterator[Path]:
    """Every visible file under ``folder``, in torchvision's order."""
    for path, files in visible_tree(folder):
        for name in files:
            yield Path(path) / name


def class_images(split: os.PathLike | str, name: str) -> List[str]:
    """The image files of class ``name`` in ``split``; one line if there is none."""
    folder = Path(split) / name
    files = [os.fspath(p) for p in visible_files(folder) if is_image_name(p.name)]
    if not files:
        raise LskdError(
            f"class folder {folder} holds no image (extensions: {', '.join(IMG_EXTENSIONS)}); "
            "add images or remove the folder"
        )
    return files


def image_samples(split: os.PathLike | str, class_to_idx: Dict[str, int]) -> List[Tuple[str, int]]:
    """(path, class index) of every image of ``split``, class by class (ImageFolder's samples)."""
    return [(p, class_to_idx[c]) for c in sorted(class_to_idx) for p in class_images(split, c)]
