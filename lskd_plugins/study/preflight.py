"""Checks of the study's inputs that must come before any training (docs/study.md: one line, exit 2).

- ``study_inputs``: every path the study and its runs read (external data, ``prepare`` inputs and
  raw folders, ``teacher_init`` checkpoints, checkpoints and caches named in tool options), and what
  the study recreates itself inside its output (its embedded data, its ``prepare`` outputs);
  ``refuse_inputs_in_output`` refuses an ``--output`` that is, holds or lies inside one of them
  (``files.refuse_overlap``), before ``--overwrite`` empties anything.
- ``check_model_name``: a timm model name that ``timm.is_model`` knows (tags included), or an
  ``hf-hub:`` / ``local-dir:`` name.
- ``check_image_classes``: train/ and val/ hold the same class folders (one definition of a class
  folder: ``lskd_plugins.image.folders``).
- ``check_data_bin_splits``: a data-bin holds train, valid, test and every test set its
  ``test_sets.tsv`` names, both languages, ``.bin`` and ``.idx``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Iterable, List, Tuple

from lskd_plugins.errors import LskdError

# tool options (without dashes) whose value is a file or folder the run reads
INPUT_OPTIONS = frozenset(
    {
        "teacher-checkpoint",
        "teacher-class-file",
        "pretrained-checkpoint",
        "initial-checkpoint",
        "class-file",
        "teacher-path",
        "teacher-cache",
        "restore-file",
        "finetune-from-model",
    }
)
# flags of a prepare command whose value is what it writes, and those whose value it reads
PREPARE_OUTPUT_FLAGS = ("--output", "--out", "--destdir")
PREPARE_INPUT_FLAGS = ("--raw-dir", "--source", "--trainpref", "--validpref", "--testpref")


def _after(command: List[str], flags: Iterable[str]) -> List[str]:
    """The values that follow any of ``flags`` in ``command`` (``--flag VALUE`` or ``--flag=VALUE``)."""
    found = []
    for i, item in enumerate(command):
        for flag in flags:
            if item == flag and i + 1 < len(command):
                found.append(command[i + 1])
            elif item.startswith(flag + "="):
                found.append(item.split("=", 1)[1])
    return found


def _option_paths(options: Dict[str, Any]) -> List[str]:
    """The values of ``INPUT_OPTIONS`` in a tool-options mapping (A.pt:B.pt: both)."""
    paths = []
    for key, value in (options or {}).items():
        if str(key).lstrip("-").replace("_", "-") in INPUT_OPTIONS and isinstance(value, (str, list)):
            values = value if isinstance(value, list) else [value]
            paths += [p for v in values if isinstance(v, str) for p in v.split(":") if p]
    return paths


def study_inputs(cfg: Dict[str, Any], sections: Dict[str, str]) -> Tuple[List[str], List[str]]:
    """(inputs, own) of a loaded configuration; ``sections``: {section name: its embedded data's
    name} for each modality present (their data then live in OUTPUT/data/<embedded>)."""
    from lskd_plugins.study.config import substitute

    out = Path(cfg["output"])
    inputs: List[str] = []
    own: List[str] = []
    for name, embedded in sections.items():
        sec = cfg.get(name)
        if sec is None:
            continue
        if sec["data"] == embedded:
            own.append(str(out / "data" / embedded))
        else:
            data = substitute(sec["data"], cfg)
            prepare = sec.get("prepare")
            if prepare:
                command = [substitute(str(c), cfg, data) for c in prepare["command"]]
                own += [data, *_after(command, PREPARE_OUTPUT_FLAGS)]
                inputs += [substitute(str(p), cfg, data) for p in prepare.get("inputs", [])]
                inputs += _after(command, PREPARE_INPUT_FLAGS)
            else:
                inputs.append(data)
        init = sec.get("teacher_init") or {}
        inputs += [substitute(str(p), cfg) for p in (init.values() if isinstance(init, dict) else [init])]
        for part in ("common", "teacher", "student"):
            inputs += [substitute(p, cfg) for p in _option_paths(sec.get(part) or {})]
    return inputs, own


def refuse_inputs_in_output(cfg: Dict[str, Any], sections: Dict[str, str]) -> None:
    """One line (exit 2) when ``--output`` is, holds or lies inside an input of the study or its runs."""
    from lskd_plugins.files import refuse_overlap

    inputs, own = study_inputs(cfg, sections)
    refuse_overlap(cfg["output"], inputs, "--output", own=own)


def refuse_while_running(output: str | Path) -> None:
    """One line when another ``lskd study`` holds a lock in ``output`` (a run it trains, or its
    data being prepared): ``--overwrite`` would delete its work under it."""
    from lskd_plugins.locks import DATA_LOCK_NAME, LOCK_NAME, try_lock

    out = Path(output)
    if not out.is_dir():
        return
    for path in [out / DATA_LOCK_NAME, *sorted(out.glob(f"runs/*/*/{LOCK_NAME}"))]:
        if not path.is_file():
            continue
        lock = try_lock(path)
        if lock is None:
            raise LskdError(
                f"--output {output}: another lskd study is running there ({path.parent.name} is locked); "
                "--overwrite would delete its work: wait for it to end, or choose another --output"
            )
        lock.release()


# --------------------------------------------------------------------------------- model names
def check_model_name(name: str, key: str) -> None:
    """``key``'s timm model name exists (tags included), or is an hf-hub: / local-dir: name."""
    if name.startswith(("hf-hub:", "local-dir:")):
        return
    import timm

    if timm.is_model(name):
        return
    from lskd_plugins.study.messages import closest

    near = closest(name.split(".")[0], timm.list_models())
    hint = f"; the closest is {near!r}" if near else ""
    raise LskdError(
        f"{key}: {name!r} is not a timm model{hint} (timm.list_models() lists them; hf-hub:NAME and "
        "local-dir:PATH name weights elsewhere)"
    )


# ------------------------------------------------------------------------------------ image data
def check_image_classes(data: str | Path, key: str = "image.data") -> None:
    """train/ and val/ hold the same class folders (hidden folders are no classes)."""
    from lskd_plugins.image.folders import class_folders

    train, val = class_folders(Path(data) / "train"), class_folders(Path(data) / "val")
    if not train:
        raise LskdError(f"{key}: {Path(data) / 'train'} holds no class folders")
    if train != val:
        only_train = sorted(set(train) - set(val))
        only_val = sorted(set(val) - set(train))
        parts = [f"only in train/: {', '.join(only_train[:5])}" if only_train else ""]
        parts.append(f"only in val/: {', '.join(only_val[:5])}" if only_val else "")
        raise LskdError(
            f"{key}: {data} has other class folders in train/ and val/ ({'; '.join(p for p in parts if p)}); "
            "every class needs a folder in both"
        )


# ------------------------------------------------------------------------------- translation data
def data_bin_pair(data: Path) -> Tuple[str, str] | None:
    """(src, tgt) of a data-bin's train split, from its file names (None when there is none)."""
    for f in sorted(data.glob("train.*-*.*.idx")):
        pair, lang = f.name.split(".")[1], f.name.split(".")[2]
        src, _, tgt = pair.partition("-")
        if lang in (src, tgt):
            return src, tgt
    return None


def check_data_bin_splits(data: str | Path, key: str = "translation.data") -> List[str]:
    """The subsets the study reads (train, valid, test and test_sets.tsv's), each present for both
    languages (.bin and .idx); returns them."""
    from lskd_plugins.nmt.inputs import read_test_sets

    data = Path(data)
    pair = data_bin_pair(data)
    fix = "prepare the data-bin again (lskd prepare-mt) or point to a complete one"
    if pair is None:
        raise LskdError(f"{key}: {data} has no train split (no train.SRC-TGT.*.idx); {fix}")
    src, tgt = pair
    subsets = ["train", "valid", *dict.fromkeys(["test", *read_test_sets(data)])]
    for subset in subsets:
        missing = [
            f"{subset}.{src}-{tgt}.{lang}.{ext}"
            for lang in (src, tgt)
            for ext in ("bin", "idx")
            if not (data / f"{subset}.{src}-{tgt}.{lang}.{ext}").is_file()
        ]
        if missing:
            raise LskdError(
                f"{key}: {data} lacks the {subset} split the study needs ({', '.join(missing[:2])} "
                f"missing); {fix}"
            )
    return subsets
