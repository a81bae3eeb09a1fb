"""A study configuration rewritten into its miniature (``lskd study CONFIG --miniature``).

``miniature_doc(doc, out)`` takes the YAML mapping (the command line's flags applied) and returns
``(doc, lines)``: the same study, every step kept, at a size two CPU cores run in about a minute,
and the lines to print (``miniature: ...``), one per replacement of what a CPU cannot do:

- the data: a miniature raw data set in the configuration's own native layout is written under
  ``OUT/raw/`` (``raw``) and the configuration's ``prepare.inputs``, the same paths inside
  ``prepare.command`` (the value of ``--source`` / ``--raw-dir``), and ``image.data`` where a section
  has no ``prepare`` (an ImageFolder root: ImageNet's class folders) point at it; the preparation
  itself then runs unchanged;
- the same models (``teacher_model``, ``student_model``, the transformer's options) at tiny inputs
  (32-pixel images in batches of 8, a few hundred sentences in batches of 256 tokens, hypotheses
  of at most 10 tokens, the diffusion analysis on a few points per class), one epoch / two
  updates, one seed, the first two temperatures, both teacher smoothings, every KD kind;
- ``pretrained: true``: the models' timm weights written to a local Hugging Face cache
  (``OUT/hf-cache``, ``weights``) that the runs read offline;
- replaced, one line each: ``device: cuda`` -> cpu, ``amp`` / ``fp16`` -> off, ``launcher: slurm``
  -> submitit's local executor (the ``slurm:`` parameters still validated, ``check_slurm``).
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

from lskd_plugins.errors import LskdError
from lskd_plugins.study.miniature import raw, weights

NOTE = "a miniature of the configured study: its numbers mean nothing (lskd study --miniature)"
IMAGE_SIZES = {"img-size": 32, "batch-size": 8, "workers": 0}
TRANSLATION_SIZES = {"max-update": 2, "num-workers": 0, "no-save-optimizer-state": True}
MAX_TOKENS = 256  # tokens per training batch: a few sentences (the miniature's are < 60 tokens)
SYNTH = {"size": 200, "valid": 30, "test": 30, "seed": 1}  # fairseq needs >= 8 valid sentences
ROLES = ("common", "teacher", "student")

DONE = ".lskd-miniature-written"  # a finished miniature raw data set: written once, then reused

# a marker in prepare.command, the option whose value is the raw input, the miniature's folder
# under OUT/raw, the path inside it that replaces the input, and its writer
SOURCES: List[Tuple[str, str, str, str, Callable[[Path], Path]]] = [
    ("prepare_cub.py", "--source", "cub", "CUB_200_2011.tgz", raw.write_cub),
    ("prepare_cifar.py", "--source", "cifar10", "cifar10-jpeg.zip", raw.write_cifar_zip),
    ("iwslt14", "--raw-dir", "iwslt14", "", raw.write_iwslt14),
    ("wmt14", "--raw-dir", "wmt14", "", raw.write_wmt14),
    ("multi30k", "--raw-dir", "multi30k", "", raw.write_multi30k),
]


def written(folder: Path, write: Callable[[Path], Any], dry_run: bool) -> None:
    """``write(folder)`` once (a folder without the stamp is written again from scratch)."""
    import shutil

    if dry_run or (folder / DONE).is_file():
        return
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    write(folder)
    (folder / DONE).write_text("lskd study --miniature\n")


def miniature_output(output: str) -> str:
    """The miniature's own study folder beside the configured one (never mixed with real runs)."""
    return str(output).rstrip("/") + "-miniature"


def option_value(command: List[str], option: str) -> str | None:
    for i, arg in enumerate(command[:-1]):
        if arg == option:
            return str(command[i + 1])
    return None


def remap(path: str, old: str, new: Path) -> str:
    """``path`` under ``old`` moved under ``new`` (``old`` itself -> ``new``); others unchanged."""
    p, o = os.path.normpath(path), os.path.normpath(old)
    if p == o:
        return str(new)
    if p.startswith(o + os.sep):
        return str(new / os.path.relpath(p, o))
    return path


def miniature_prepare(
    prepare: Dict[str, Any], section: str, raw_root: Path, dry_run: bool = False
) -> Dict[str, Any]:
    """``prepare`` with its raw input replaced by a miniature written under ``raw_root``."""
    command = [str(c) for c in prepare.get("command", [])]
    text = " ".join(command)
    for marker, option, sub, rel, write in SOURCES:
        old = option_value(command, option)
        if marker not in text or old is None:
            continue
        new = raw_root / sub / rel if rel else raw_root / sub
        written(raw_root / sub, write, dry_run)
        inputs = [remap(str(i), old, new) for i in prepare.get("inputs", [])]
        absent = [i for i in inputs if not dry_run and not Path(i).exists()]
        if absent:
            raise LskdError(
                f"{section}.prepare.inputs: the miniature of {old} has no {absent[0]} "
                f"(the miniature writes {new})"
            )
        return {"inputs": inputs, "command": [remap(c, old, new) for c in command]}
    raise LskdError(
        f"{section}.prepare: --miniature knows no miniature data for this command ({text}); "
        f"it knows {', '.join(m for m, *_ in SOURCES)}"
    )


def own_data(sec: Dict[str, Any], section: str, lines: List[str]) -> None:
    """Prepared data outside the study folder (e.g. data/cub) move into the miniature's folder, so
    that the miniature never writes where the real study's data belong."""
    if "{output}" not in str(sec["data"]):
        new = "{output}/data/" + Path(str(sec["data"]).rstrip("/")).name
        lines.append(f"{section}.data: {sec['data']} -> {new} (the miniature's own prepared data)")
        sec["data"] = new


def shrink_options(sec: Dict[str, Any], sizes: Dict[str, Any], steps: Tuple[str, Any]) -> None:
    """``common`` gets ``sizes``; the length option ``steps`` is set wherever a role names it."""
    for role in ROLES:
        sec[role] = dict(sec.get(role) or {})
    sec["common"].update(sizes)
    key, value = steps
    sec["common"][key] = value
    for role in ("teacher", "student"):
        if key in sec[role]:
            sec[role][key] = value


def off_switches(sec: Dict[str, Any], section: str, flags: Tuple[str, ...], lines: List[str]) -> None:
    """``amp`` / ``fp16`` (CUDA only) switched off, one line each where the configuration set it."""
    for role in ROLES:
        for flag in flags:
            if sec[role].get(flag):
                sec[role][flag] = False
                lines.append(f"{section}.{role}.{flag}: true -> off (CUDA only; the miniature runs on CPU)")


def pretrained_models(sec: Dict[str, Any]) -> List[str]:
    """The timm models started from timm's pretrained weights (``pretrained: true``)."""
    teacher = sec.get("teacher_model") or "resnet10t"
    student = sec.get("student_model") or teacher
    models = []
    for model, role in ((teacher, "teacher"), (student, "student")):
        if {**sec["common"], **sec[role]}.get("pretrained") and model not in models:
            models.append(model)
    return models


def miniature_image(sec: Dict[str, Any], out: Path, lines: List[str], dry_run: bool) -> Dict[str, Any]:
    """The image section at 32 pixels, batches of 8, one epoch, a few images per class."""
    sec = copy.deepcopy(sec)
    raw_root = out / "raw"
    if sec.get("prepare"):
        sec["prepare"] = miniature_prepare(sec["prepare"], "image", raw_root, dry_run)
        own_data(sec, "image", lines)
    elif sec.get("data", "digits") != "digits":  # an ImageFolder root: ImageNet's class folders
        diffusion = sec.get("diffusion")
        named = diffusion.get("classes") if isinstance(diffusion, dict) else None
        classes = [c.strip() for c in named.split(",")] if isinstance(named, str) else list(named or [])
        classes += [w for w in raw.IMAGENET_WNIDS if w not in classes][: max(0, 5 - len(classes))]
        written(raw_root / "imagenet", lambda d: raw.write_imagenet(d, classes), dry_run)
        sec["data"] = str(raw_root / "imagenet")
    shrink_options(sec, {**IMAGE_SIZES, "limit-train": 64, "limit-val": 32}, ("epochs", 1))
    size = sec["common"]
    for key, most in (("img-size", 32), ("batch-size", 8)):
        given = [sec[r][key] for r in ROLES if isinstance(sec[r].get(key), int)]
        size[key] = min([most, *given])
    off_switches(sec, "image", ("amp",), lines)
    if isinstance(sec.get("diffusion", {}), dict):  # absent: the defaults, at the miniature's size
        sec["diffusion"] = {**sec.get("diffusion", {}), "per_class": 3}
    cache = out / "hf-cache"
    for model in pretrained_models(sec):
        path = weights.cache_path(cache, model) if dry_run else weights.write_cached_weights(cache, model)
        lines.append(
            f"pretrained: {model}'s timm weights: random ones made for the miniature, read "
            f"offline from {path}"
        )
    if not dry_run and pretrained_models(sec):
        weights.use_offline_cache(cache)
    return sec


def miniature_translation(sec: Dict[str, Any], out: Path, lines: List[str], dry_run: bool) -> Dict[str, Any]:
    """The translation section: a few dozen sentences, two updates, hypotheses of <= 10 tokens."""
    sec = copy.deepcopy(sec)
    if sec.get("prepare"):
        sec["prepare"] = miniature_prepare(sec["prepare"], "translation", out / "raw", dry_run)
        own_data(sec, "translation", lines)
    elif sec.get("data", "synth") == "synth":
        sec["synth"] = dict(SYNTH)
    else:
        lines.append(f"translation.data: {sec['data']} (no prepare to feed a miniature) -> synth")
        sec["data"], sec["synth"] = "synth", dict(SYNTH)
    shrink_options(sec, TRANSLATION_SIZES, ("max-update", 2))
    for role in ROLES:
        sec[role].pop("max-epoch", None)
        if role == "common" or "max-tokens" in sec[role]:
            sec[role]["max-tokens"] = min(int(sec[role].get("max-tokens") or MAX_TOKENS), MAX_TOKENS)
    off_switches(sec, "translation", ("fp16", "bf16", "amp", "memory-efficient-fp16"), lines)
    sec["max_len_b"] = min(int(sec.get("max_len_b", 200)), 10)
    if isinstance(sec.get("diffusion", {}), dict):  # absent: the defaults, at the miniature's size
        sec["diffusion"] = {**sec.get("diffusion", {}), "max_sentences": 40, "per_token": 4}
    return sec


def top_level(doc: Dict[str, Any], lines: List[str]) -> None:
    doc["seeds"] = 1
    doc["temperatures"] = list(doc.get("temperatures") or [1, 2])[:2]
    doc["jobs"] = min(int(doc.get("jobs") or 1), os.cpu_count() or 1)
    if doc.get("device") == "cuda":
        doc["device"] = "cpu"
        lines.append("device: cuda -> cpu (no GPU in a miniature)")
    n = int(doc.get("devices_per_run") or 1)
    if doc.get("slurm"):  # checked as submitit would take them (with N GPUs per job for SLURM)
        from lskd_plugins.study.devices import slurm_parameters

        slurm = doc.get("launcher") == "slurm"
        check_slurm(slurm_parameters(doc["slurm"], n) if slurm else doc["slurm"])
    if n > 2:
        doc["devices_per_run"] = 2
        lines.append(f"devices_per_run: {n} -> 2 (gloo processes on the CPU: the same distributed path)")
    if doc.get("launcher") == "slurm":
        doc["launcher"] = "submitit-local"
        lines.append(
            "launcher: slurm -> submitit-local (submitit's local executor; the slurm: parameters "
            "were checked by submitit's SLURM executor)"
        )


def miniature_doc(
    doc: Dict[str, Any], explicit_output: bool = False, dry_run: bool = False, out: Path | None = None
) -> Tuple[Dict[str, Any], List[str]]:
    """(the miniature configuration, the lines to print: the note, then one per replacement); the
    raw data and the weights go to ``out/raw`` and ``out/hf-cache`` (default: the new output)."""
    doc = copy.deepcopy(doc)
    output = doc.get("output") or "study_out"
    doc["output"] = output if explicit_output else miniature_output(output)
    out = Path(out or doc["output"])
    lines: List[str] = [NOTE, f"output: {output} -> {doc['output']}" if not explicit_output else ""]
    lines = [line for line in lines if line]
    top_level(doc, lines)
    if doc.get("image") is not None:
        doc["image"] = miniature_image(doc["image"], out, lines, dry_run)
    if doc.get("translation") is not None:
        doc["translation"] = miniature_translation(doc["translation"], out, lines, dry_run)
    return doc, lines


def check_slurm(params: Dict[str, Any]) -> str:
    """The ``slurm:`` mapping as submitit's SLURM executor takes it; returns the sbatch script it
    would submit (one line naming the parameter submitit refuses)."""
    import tempfile

    from submitit.auto.auto import AutoExecutor
    from submitit.slurm import slurm

    generic = {
        "timeout_min": "time",
        "mem_gb": "mem",
        "tasks_per_node": "ntasks_per_node",
        "cpus_per_task": "cpus_per_task",
        "gpus_per_node": "gpus_per_node",
        "nodes": "nodes",
        "name": "job_name",
    }
    known = set(slurm.SlurmExecutor._valid_parameters()) | set(AutoExecutor._valid_parameters())
    converted: Dict[str, Any] = {}
    for key, value in params.items():
        name = key[len("slurm_") :] if key.startswith("slurm_") else generic.get(key, key)
        if key not in known and name not in known:
            raise LskdError(
                f"slurm: {key!r} is not a parameter of submitit's SLURM executor "
                f"(e.g. slurm_partition, gpus_per_node, cpus_per_task, timeout_min)"
            )
        converted[name] = f"{value}GB" if key == "mem_gb" else value
    with tempfile.TemporaryDirectory() as tmp:
        try:
            return slurm._make_sbatch_string(command="true", folder=tmp, **converted)
        except (TypeError, ValueError) as err:
            raise LskdError(f"slurm: {err}") from None
