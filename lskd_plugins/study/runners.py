"""One run of the grid through the real tools, in-process (start-up would dominate small runs).

- image teachers, students, baseline: ``lskd image-train`` (``lskd_plugins.image.train``);
- translation teachers and the baseline: ``fairseq-train`` with fairseq's own
  ``label_smoothed_cross_entropy``; word-level students: ``--user-dir lskd_plugins --task
  lskd_translation --criterion lskd_kd``; sequence-level data: ``lskd seqkd``; scores: ``lskd bleu``'s
  ``evaluate_checkpoint`` on every test set of the data-bin;
- diffusion: ``lskd diffusion image`` / ``nmt`` through the library functions.

``command(run, ctx)`` is the equivalent command line (printed by ``--dry-run`` and kept in each run's
``run.json``); ``execute(run, ctx)`` does the work and returns the run's metrics. An interrupted run
resumes from its own checkpoints (``image-train --resume``, fairseq's ``checkpoint_last.pt``,
``seqkd``'s shards).
"""

from __future__ import annotations

import argparse
import json
import pickle
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, List

from lskd_plugins.errors import LskdError
from lskd_plugins.study.grid import TEACHER_CACHE_STORE, Run

PLUGINS = str(Path(__file__).resolve().parents[1])
IMAGE_METRICS = ("top1", "top5", "nll", "ece")
CACHE_DIR = f"cache-{TEACHER_CACHE_STORE}"  # per teacher run folder; a version-1 top-k cache lived in "cache"
DIFFUSION_KEYS = ("eta", "fisher_ab", "leakage_ab", "p_b_given_a", "p_c_given_a")


def options_argv(options: Dict[str, Any]) -> List[str]:
    """{"img-size": 16, "amp": true, "decay-milestones": [30, 60]} -> ["--img-size", "16", "--amp", ...]."""
    out: List[str] = []
    for key, value in options.items():
        flag = "--" + key.lstrip("-")
        if value is True:
            out.append(flag)
        elif value is False or value is None:
            continue
        elif isinstance(value, list):
            out += [flag, *[str(v) for v in value]]
        else:
            out += [flag, str(value)]
    return out


def folder(ctx: Dict[str, Any], name: str) -> Path:
    return Path(ctx["folders"][name])


# Each tool writes into its own subfolder of the run folder: the tools claim their --output
# (.lskd-owner.json) and refuse a folder holding the study's run.json and log.txt.
IMAGE_DIR, SEQKD_DIR, DIFFUSION_DIR = "train", "seqkd", "diffusion"


def image_checkpoint(ctx: Dict[str, Any], name: str) -> Path:
    return folder(ctx, name) / IMAGE_DIR / "checkpoint_last.pth"


# ----------------------------------------------------------------------------------------- images
def image_parser() -> argparse.ArgumentParser:
    from lskd_plugins.image import train

    parser = argparse.ArgumentParser(prog="lskd image-train")
    train.add_arguments(parser)
    return parser


def _flag(parser: argparse.ArgumentParser, new: str, old: str) -> str:
    """The new option name where image-train has it, the old one otherwise."""
    return new if new in parser._option_string_actions else old


def image_argv(run: Run, ctx: Dict[str, Any]) -> List[str]:
    sec, parser = ctx["cfg"]["image"], image_parser()
    argv = ["--data", ctx["data"]["image"], "--output", str(folder(ctx, run.name) / IMAGE_DIR), "--resume"]
    argv += ["--seed", str(run.seed), "--device", ctx["cfg"]["device"]]
    argv += [] if "workers" in run.spec["options"] else ["--workers", "0"]
    argv += [_flag(parser, "--no-progress", "--quiet")]
    argv += options_argv(run.spec["options"]) + ["--model", run.spec["model"]]
    argv += ["--smoothing", f"{run.spec['smoothing']:g}"]
    if run.spec.get("init"):
        argv += ["--pretrained-checkpoint", run.spec["init"]]
    if run.role == "student":
        teacher = image_checkpoint(ctx, run.deps[0])
        argv += ["--teacher-checkpoint", str(teacher), "--kd-temperature", f"{run.temperature:g}"]
        argv += [_flag(parser, "--kd-alpha", "--kd-beta"), f"{sec['kd_alpha']:g}"]
    return argv


def image_train(run: Run, ctx: Dict[str, Any]) -> Dict[str, Any]:
    from lskd_plugins.image import train

    train.main(image_parser().parse_args(image_argv(run, ctx)))
    summary = json.loads((folder(ctx, run.name) / IMAGE_DIR / "summary.json").read_text())
    return {"metrics": {k: summary[k] for k in IMAGE_METRICS}, "result_file": f"{IMAGE_DIR}/summary.json"}


# ------------------------------------------------------------------------------------ translation
def test_sets(data_bin: str | Path) -> List[List[str]]:
    """[[fairseq subset, name], ...] from DATA_BIN/test_sets.tsv, else [["test", "test"]]."""
    tsv = Path(data_bin) / "test_sets.tsv"
    if not tsv.is_file():
        return [["test", "test"]]
    rows = [line.split("\t") for line in tsv.read_text().splitlines() if line.strip()]
    return [[r[0], r[-1]] for r in rows] or [["test", "test"]]


def device_args(ctx: Dict[str, Any]) -> List[str]:
    import torch

    dev = ctx["cfg"]["device"]
    return ["--cpu"] if dev == "cpu" or (dev == "auto" and not torch.cuda.is_available()) else []


def fairseq_argv(run: Run, ctx: Dict[str, Any]) -> List[str]:
    sec = ctx["cfg"]["translation"]
    data = ctx["data"]["translation"]
    if run.kind in ("seq", "seqword"):
        data = str(folder(ctx, run.deps[-1]) / SEQKD_DIR / "data-bin")
    argv = [data, "--user-dir", PLUGINS, "--save-dir", str(folder(ctx, run.name)), "--seed", str(run.seed)]
    argv += ["--no-progress-bar", "--log-format", "simple", *device_args(ctx)]
    argv += options_argv(run.spec["options"])
    if run.role in ("teacher", "baseline") or run.kind == "seq":
        return argv + [
            "--task",
            "translation",
            "--criterion",
            "label_smoothed_cross_entropy",
            "--label-smoothing",
            f"{run.spec['smoothing']:g}",
        ]
    teacher = folder(ctx, run.deps[0])
    if sec["teacher_cache"]:
        argv += ["--teacher-cache", str(teacher / CACHE_DIR)]
    else:
        argv += ["--teacher-path", str(teacher / sec["checkpoint"])]
    return argv + [
        "--task",
        "lskd_translation",
        "--criterion",
        "lskd_kd",
        "--kd-alpha",
        f"{sec['kd_alpha']:g}",
        "--kd-temperature",
        f"{run.temperature:g}",
        "--label-smoothing",
        f"{sec['student_smoothing']:g}",
    ]


@contextmanager
def one_line_errors(what: str) -> Iterator[None]:
    """argparse errors of fairseq's own parser as one ``lskd: error:`` line (not its 200-line usage)."""

    def error(self, message):
        raise LskdError(f"{what}: {message}")

    saved = argparse.ArgumentParser.error
    argparse.ArgumentParser.error = error
    try:
        yield
    finally:
        argparse.ArgumentParser.error = saved


def fairseq_parse(argv: List[str], known: bool = False):
    """fairseq-train's parser on ``argv``, with lskd's task and criterion registered first (the
    ``--user-dir`` import is skipped by fairseq when lskd_plugins is already imported, as here)."""
    from fairseq import options

    from lskd_plugins import fairseq_io

    fairseq_io.register_plugins()
    with one_line_errors("translation options"):
        return options.parse_args_and_arch(options.get_training_parser(), input_args=argv, parse_known=known)


def fairseq_train(argv: List[str]) -> None:
    """fairseq-train in this process (what ``fairseq_cli.train.cli_main`` does with ``argv``)."""
    from fairseq import checkpoint_utils, distributed_utils
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf
    from fairseq_cli import train

    args = fairseq_parse(argv)
    # fairseq keeps the best validation loss on the function: a second training in the same
    # process would otherwise compare against the previous run's best and never save its own
    if hasattr(checkpoint_utils.save_checkpoint, "best"):
        del checkpoint_utils.save_checkpoint.best
    distributed_utils.call_main(convert_namespace_to_omegaconf(args), train.main)


def decode_options(ctx: Dict[str, Any]):
    from lskd_plugins.nmt.decode import DecodeOptions

    sec, dev = ctx["cfg"]["translation"], ctx["cfg"]["device"]
    return DecodeOptions(
        beam=sec["beam"], max_tokens=sec["decode_max_tokens"], max_len_b=sec["max_len_b"], device=dev
    )


def score(run: Run, ctx: Dict[str, Any]) -> Dict[str, Any]:
    """sacreBLEU / chrF / tokenized BLEU on every test set; the first one gives the table's numbers."""
    from lskd_plugins.nmt.bleu import evaluate_checkpoint

    ckpt = folder(ctx, run.name) / ctx["cfg"]["translation"]["checkpoint"]
    per_set = {}
    for subset, name in test_sets(ctx["data"]["translation"]):
        r = evaluate_checkpoint(
            str(ckpt),
            ctx["data"]["translation"],
            subset,
            decode_options(ctx),
            out=folder(ctx, run.name) / "eval",
            progress=False,
        )
        per_set[name] = {
            "bleu": r["sacrebleu"]["score"],
            "chrf": r["chrf"]["score"],
            "tokenized_bleu": r["tokenized_bleu"]["score"],
            "signature": r["sacrebleu"]["signature"],
            "file": f"eval/{subset}.bleu.json",
        }
    first = next(iter(per_set.values()))
    return {
        "metrics": {k: first[k] for k in ("bleu", "chrf", "tokenized_bleu")},
        "test_sets": per_set,
        "result_file": first["file"],
    }


def translation_train(run: Run, ctx: Dict[str, Any]) -> Dict[str, Any]:
    if (
        run.role == "student"
        and run.kind in ("word", "seqword")
        and ctx["cfg"]["translation"]["teacher_cache"]
    ):
        ensure_teacher_cache(run, ctx)
    fairseq_train(fairseq_argv(run, ctx))
    return score(run, ctx)


def ensure_teacher_cache(run: Run, ctx: Dict[str, Any]) -> None:
    """One cache per teacher, shared by its word-level students (``lskd cache-teacher``)."""
    import subprocess

    from lskd_plugins.nmt.teacher_cache import HEADER  # written last: the cache is complete

    teacher = folder(ctx, run.deps[0])
    with locked(teacher / ".cache.lock"):  # two students of one teacher may start together
        if not (teacher / CACHE_DIR / HEADER).is_file():
            subprocess.run(cache_command(teacher, ctx), check=True)


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` between processes of one machine (fcntl)."""
    import fcntl

    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def cache_command(teacher: Path, ctx: Dict[str, Any]) -> List[str]:
    """The exact cache (decoder features): every temperature of the grid from one cache."""
    import sys

    return [
        sys.executable,
        "-m",
        "lskd_plugins.cli",
        "cache-teacher",
        "--data",
        ctx["data"]["translation"],
        "--path",
        str(teacher / ctx["cfg"]["translation"]["checkpoint"]),
        "--output",
        str(teacher / CACHE_DIR),
        "--store",
        TEACHER_CACHE_STORE,
        "--no-progress",
    ]


def seqkd_command(run: Run, ctx: Dict[str, Any]) -> List[str]:
    sec = ctx["cfg"]["translation"]
    teacher = folder(ctx, run.deps[0]) / sec["checkpoint"]
    return [
        "lskd",
        "seqkd",
        "--data",
        ctx["data"]["translation"],
        "--path",
        str(teacher),
        "--output",
        str(folder(ctx, run.name) / SEQKD_DIR),
        "--subset",
        "train",
        "--beam",
        str(sec["beam"]),
        "--max-len-b",
        str(sec["max_len_b"]),
        "--max-tokens",
        str(sec["decode_max_tokens"]),
    ]


def seqkd(run: Run, ctx: Dict[str, Any]) -> Dict[str, Any]:
    from lskd_plugins.nmt.seqkd import run_seqkd

    sec = ctx["cfg"]["translation"]
    teacher = folder(ctx, run.deps[0]) / sec["checkpoint"]
    report = run_seqkd(
        ctx["data"]["translation"],
        str(teacher),
        folder(ctx, run.name) / SEQKD_DIR,
        "train",
        decode_options(ctx),
        progress=False,
        log=print,
    )
    return {
        "metrics": {},
        "seqkd": {k: v for k, v in report.items() if isinstance(v, (int, float, str))},
        "result_file": f"{SEQKD_DIR}/seqkd.json",
    }


# -------------------------------------------------------------------------------------- diffusion
def diffusion(run: Run, ctx: Dict[str, Any]) -> Dict[str, Any]:
    """The analysis of one seed's models; seeds > 0 take seed 0's classes."""
    from lskd_plugins.diffusion.analyse import analyse_image_checkpoints, analyse_nmt_checkpoints
    from lskd_plugins.diffusion.report import write_outputs

    settings, out = dict(run.spec["settings"]), folder(ctx, run.name)
    models = [d for d in run.deps if "/diffusion_s" not in d]
    first_run = [d for d in run.deps if "/diffusion_s" in d]
    if first_run:
        first = json.loads((folder(ctx, first_run[0]) / "result.json").read_text())
        settings[("classes" if run.modality == "image" else "tokens")] = ",".join(first["classes"])
    labels = [m.split("/", 1)[1] for m in models]
    dev = None if ctx["cfg"]["device"] == "auto" else ctx["cfg"]["device"]
    if run.modality == "image":
        paths = [str(image_checkpoint(ctx, m)) for m in models]
        records, projections = analyse_image_checkpoints(
            paths,
            ctx["data"]["image"],
            classes=settings.get("classes"),
            per_class=settings.get("per_class", 100),
            labels=labels,
            device=dev,
            progress=False,
            log=print,
        )
    else:
        ckpt = ctx["cfg"]["translation"]["checkpoint"]
        paths = [str(folder(ctx, m) / ckpt) for m in models]
        records, projections = analyse_nmt_checkpoints(
            paths,
            ctx["data"]["translation"],
            tokens=settings.get("tokens"),
            max_sentences=settings.get("max_sentences", 500),
            per_token=settings.get("per_token", 200),
            labels=labels,
            device=dev,
            progress=False,
            log=print,
        )
    write_outputs(records, projections, out / DIFFUSION_DIR)
    with open(out / "projections.pkl", "wb") as f:
        pickle.dump(projections, f)
    per_model = {m: {k: rec["valid"].get(k) for k in DIFFUSION_KEYS} for m, rec in zip(models, records)}
    classes = records[0].get("classes")
    names = [classes[k] for k in "abc"] if isinstance(classes, dict) else list(classes)
    return {
        "metrics": {},
        "per_model": per_model,
        "classes": names,
        "result_file": f"{DIFFUSION_DIR}/diffusion.json",
    }


def validate(runs: List[Run], ctx: Dict[str, Any]) -> None:
    """Parse the options of one run of each sort with the tool's own parser, before any training:
    a misspelt or unknown option in the configuration stops with one line naming it."""
    seen = set()
    for run in runs:
        sort = (run.modality, run.role, run.kind)
        if sort in seen or run.role in ("diffusion", "seqkd"):
            continue
        seen.add(sort)
        if run.modality == "image":
            with one_line_errors("image options"):
                _, extra = image_parser().parse_known_args(image_argv(run, ctx))
        else:
            _, extra = fairseq_parse(fairseq_argv(run, ctx), known=True)
        if extra:
            section = f"{run.modality}.{'teacher' if run.role == 'teacher' else 'student'}/common"
            raise LskdError(f"{section}: option {extra[0]!r} is not an option of the {run.modality} trainer")


def command(run: Run, ctx: Dict[str, Any]) -> List[str]:
    """The command line this run stands for (the work itself runs in-process)."""
    if run.modality == "image" and run.role != "diffusion":
        return ["lskd", "image-train", *image_argv(run, ctx)]
    if run.role == "seqkd":
        return seqkd_command(run, ctx)
    if run.role == "diffusion":
        return ["lskd", "diffusion", run.modality, "...", f"({len(run.deps)} models)"]
    return ["fairseq-train", *fairseq_argv(run, ctx), "&&", "lskd", "bleu", "..."]


def execute(run: Run, ctx: Dict[str, Any]) -> Dict[str, Any]:
    if run.role == "diffusion":
        return diffusion(run, ctx)
    if run.modality == "image":
        return image_train(run, ctx)
    if run.role == "seqkd":
        return seqkd(run, ctx)
    if run.modality == "translation":
        return translation_train(run, ctx)
    raise LskdError(f"no runner for {run.name}")
