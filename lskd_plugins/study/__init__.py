"""``lskd study``: LS teacher or not, and at which temperature -- with seeds, intervals and verdicts.

    lskd study recipes/study/quickstart.yaml            # both modalities on the embedded data
    lskd study CONFIG.yaml --seeds 5 --jobs 2            # flags override the configuration
    lskd study CONFIG.yaml --dry-run                     # the grid and its commands, nothing run
    lskd study --output study_out                        # no config: the image study on the digits

Modules: ``config`` (every key, validated before any training), ``modalities`` (one module per
modality: its configuration section, data, runs, commands, metrics), ``kinds`` (the tables of KD
kinds and KD methods), ``layout`` (run folders, run names and file names), ``grid`` (the runs),
``keys`` (run keys from the data's content and every setting), ``runners`` (the tools, in-process),
``execute`` (jobs, SLURM through submitit, progress, resume), ``stats`` (paired comparisons,
method.md section 7), ``report`` (report.md / report.json / figures). docs/study.md has the rest.
"""

from __future__ import annotations

import argparse
import copy
import sys
from typing import Any, Dict

from lskd_plugins.errors import LskdError

# `lskd study` without a configuration: the image study on the embedded 8x8 digits (the old default)
DEFAULT_IMAGE = {
    "data": "digits",
    "teacher_model": "resnet10t",
    "common": {
        "img-size": 16,
        "aug": "none",
        "batch-size": 64,
        "lr": 0.05,
        "weight-decay": 5e-4,
        "opt": "momentum",
        "momentum": 0.9,
        "sched": "cosine",
    },
    "teacher": {"epochs": 8},
    "student": {"epochs": 8},
}

# flag -> (section, path inside the section) for the image overrides kept from the old `lskd study`
IMAGE_FLAGS = {
    "data": ("data",),
    "model": ("teacher_model",),
    "student_model": ("student_model",),
    "img_size": ("common", "img-size"),
    "aug": ("common", "aug"),
    "batch_size": ("common", "batch-size"),
    "lr": ("common", "lr"),
    "weight_decay": ("common", "weight-decay"),
    "workers": ("common", "workers"),
    "teacher_epochs": ("teacher", "epochs"),
    "student_epochs": ("student", "epochs"),
    "classes": ("diffusion", "classes"),
    "per_class": ("diffusion", "per_class"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from lskd_plugins.errors import nonneg_int, positive_int

    parser.add_argument(
        "config",
        nargs="?",
        default=None,
        help="YAML configuration (recipes/study/*.yaml; keys: docs/study.md); default: "
        "the image study on the embedded digits",
    )
    g = parser.add_argument_group("the study (override the configuration)")
    g.add_argument(
        "--output", default=None, help="study folder (default: the config's output, else study_out)"
    )
    g.add_argument("--out", dest="output", help=argparse.SUPPRESS)
    g.add_argument("--seeds", type=positive_int, default=None, help="number of seeds (default: config, 3)")
    g.add_argument("--first-seed", type=nonneg_int, default=None, help="seeds start here (default 0)")
    g.add_argument("--seed", dest="first_seed", type=nonneg_int, help=argparse.SUPPRESS)
    g.add_argument(
        "--fixed-teachers",
        action="store_true",
        default=None,
        help="train each teacher once and vary only the students' seeds",
    )
    g.add_argument("--jobs", type=positive_int, default=None, help="runs at once (default: config, 1)")
    g.add_argument(
        "--launcher",
        choices=("local", "slurm", "submitit-local"),
        default=None,
        help="local processes, or one SLURM job per run via submitit (default: config, local)",
    )
    g.add_argument("--temps", default=None, help="KD temperatures, e.g. 1,2,3,64 (default: config)")
    g.add_argument("--teacher-smoothing", default=None, help="teachers' label smoothing, e.g. 0,0.1")
    g.add_argument("--alphas", dest="teacher_smoothing", help=argparse.SUPPRESS)  # the old name
    g.add_argument("--device", choices=("auto", "cpu", "cuda"), default=None, help="(default: config, auto)")
    g.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set any configuration key, dotted, the value in YAML, e.g. --set "
        "translation.student.max-update=300 or --set image.common.amp=true (repeatable)",
    )
    g.add_argument(
        "--dry-run",
        action="store_true",
        help="check the configuration, print the grid and its commands; read and write nothing",
    )
    miniature_argument(g)
    g.add_argument("--no-progress", action="store_true", help="no overall progress line")
    g.add_argument(
        "--overwrite",
        action="store_true",
        help="empty an --output folder that holds files lskd study did not write (default: refuse)",
    )
    g.add_argument("--quiet", dest="no_progress", action="store_true", help=argparse.SUPPRESS)
    image_arguments(parser.add_argument_group("image study (override the config's image section)"))


def miniature_argument(g) -> None:
    g.add_argument(
        "--miniature",
        action="store_true",
        help="run every step of the configuration for real at a size 2 CPU cores run in about a minute "
        "(miniature data in its native layout; numbers mean nothing; docs/study.md)",
    )


def image_arguments(g) -> None:
    """The old image-only flags of `lskd study`, now overrides of the image section."""
    from lskd_plugins.errors import nonneg_int, positive_float, positive_int

    g.add_argument("--data", default=None, help="ImageFolder root with train/ and val/, or 'digits'")
    g.add_argument("--model", default=None, help="timm model of the teachers")
    g.add_argument("--student-model", default=None, help="timm model of the students (default: --model)")
    g.add_argument("--img-size", type=positive_int, default=None, help="input size")
    g.add_argument("--aug", default=None, help="augmentation preset of lskd image-train")
    g.add_argument("--teacher-epochs", type=positive_int, default=None, help="teachers' epochs")
    g.add_argument("--student-epochs", type=positive_int, default=None, help="students' epochs")
    g.add_argument("--batch-size", type=positive_int, default=None, help="images per step")
    g.add_argument("--lr", type=positive_float, default=None, help="learning rate")
    g.add_argument("--weight-decay", type=float, default=None, help="weight decay")
    g.add_argument(
        "--classes", default=None, help="diffusion classes a,b,c (a,b similar); default: automatic"
    )
    g.add_argument("--per-class", type=positive_int, default=None, help="images per class for the diffusion")
    g.add_argument("--workers", type=nonneg_int, default=None, help="data-loader processes per run")


def _floats(spec: str, flag: str) -> list:
    """Comma-separated numbers; an empty item (1,,2) or a value given twice is refused."""
    from lskd_plugins.strict_yaml import split_list

    return split_list(spec, flag, float, "1,2,3,64")


def apply_overrides(doc: Dict[str, Any], args: argparse.Namespace) -> Dict[str, Any]:
    """The configuration with the command line's flags on top (flags win)."""
    doc = copy.deepcopy(doc)
    for flag, key in (
        ("output", "output"),
        ("seeds", "seeds"),
        ("first_seed", "first_seed"),
        ("fixed_teachers", "fixed_teachers"),
        ("jobs", "jobs"),
        ("launcher", "launcher"),
        ("device", "device"),
    ):
        if getattr(args, flag, None) is not None:
            doc[key] = getattr(args, flag)
    if args.temps is not None:
        doc["temperatures"] = _floats(args.temps, "--temps")
    if args.teacher_smoothing is not None:
        doc["teacher_smoothing"] = _floats(args.teacher_smoothing, "--teacher-smoothing")
    if args.no_progress:
        doc["progress"] = False
    given = {f: getattr(args, f) for f in IMAGE_FLAGS if getattr(args, f, None) is not None}
    if given and doc.get("image") is None:
        raise LskdError(
            f"--{next(iter(given)).replace('_', '-')} sets the image study, which this configuration "
            "does not have (add an image: section)"
        )
    for flag, value in given.items():
        node = doc["image"]
        *path, last = IMAGE_FLAGS[flag]
        for p in path:
            if not isinstance(node.get(p), dict):
                node[p] = {}
            node = node[p]
        node[last] = value
    for item in args.sets:
        set_dotted(doc, item)
    doc.setdefault("output", "study_out")
    if doc["output"] is None:
        doc["output"] = "study_out"
    return doc


def set_dotted(doc: Dict[str, Any], item: str) -> None:
    """``a.b.c=VALUE``: doc[a][b][c] = yaml(VALUE), creating the mappings on the way."""
    import yaml

    key, sep, text = item.partition("=")
    if not sep or not key:
        raise LskdError(f"--set takes KEY=VALUE (e.g. translation.student.max-update=300), got {item!r}")
    from lskd_plugins.strict_yaml import load_yaml

    try:
        value = load_yaml(text, f"--set {key}")  # a key given twice in a {...} value is refused
    except yaml.YAMLError:
        raise LskdError(f"--set {key}: {text!r} is not a YAML value") from None
    node, *path = doc, *key.split(".")
    for part in path[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[path[-1]] = value


def main(args: argparse.Namespace) -> int:
    from lskd_plugins.study import config as C
    from lskd_plugins.study import execute as E
    from lskd_plugins.study import runners
    from lskd_plugins.study.grid import build_runs
    from lskd_plugins.study.report import write_report

    doc = C.read_yaml(args.config) if args.config else {"image": copy.deepcopy(DEFAULT_IMAGE)}
    doc = apply_overrides(doc, args)
    if args.miniature:  # the configuration's miniature: its data, sizes and the CPU's replacements
        from lskd_plugins.study.miniature.study import make_miniature

        doc = make_miniature(doc, args.output is not None, args.dry_run, args.overwrite)
    cfg = C.load_config(doc, where=args.config or "lskd study")
    from lskd_plugins.study import modalities
    from lskd_plugins.study.preflight import refuse_inputs_in_output

    # --output never is, holds or lies inside an input (checked before --overwrite empties it)
    refuse_inputs_in_output(cfg, {m.name: m.embedded for m in modalities.present(cfg)})
    notes = C.check_data(cfg, args.dry_run)
    C.check_runnable(cfg, args.config or "lskd study")
    if args.dry_run:
        for note in notes:
            print(f"study (dry run): note: {note}", file=sys.stderr)
    if not args.dry_run:  # the study folder is the study's: refuse a folder of other files
        from lskd_plugins.files import claim_output
        from lskd_plugins.study.preflight import refuse_while_running

        if args.overwrite:  # never empty a folder another lskd study is running in
            refuse_while_running(cfg["output"])
        claim_output(cfg["output"], {"command": "lskd study"}, args.overwrite)
    out, data, hashes = E.plan(cfg, args.dry_run)
    runs = build_runs(cfg, hashes)
    ctx = E.context(cfg, out, data, runs)
    runners.validate(runs, ctx)
    if args.dry_run:
        print(E.dry_run_text(runs, ctx))
        from lskd_plugins.study.cost import cost_text

        print(cost_text(cfg, runs))
        return 0
    E.schedule(runs, ctx, log=lambda m: print(m, file=sys.stderr, flush=True))
    report = write_report(cfg, runs, ctx["folders"], out)
    if args.miniature:
        from lskd_plugins.study.miniature.study import mark_report

        mark_report(out)
    for modality, sec in report["modalities"].items():
        print(f"{modality}: {sec['answer']}")
    print(f"study: report written to {out / 'report.md'}")
    return 0
