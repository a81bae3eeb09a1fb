"""The image modality of the study: ``lskd image-train`` teachers, logit-KD students and the no-KD
baseline on an ImageFolder (or scikit-learn's 8x8 digits, embedded), scored by top-1 / top-5 /
NLL / ECE; the diffusion analysis through ``lskd diffusion image``."""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path
from typing import Any, Dict, List

from lskd_plugins.errors import LskdError
from lskd_plugins.strict_yaml import is_int
from lskd_plugins.study import kinds, layout
from lskd_plugins.study.chain import NOT_HASHED, start_spec, teacher_start
from lskd_plugins.study.config import SECTION_FIXED_TEACHERS, _dict, _is_prepare, _num, _str, section_methods
from lskd_plugins.study.grid import Run, diffusion_runs, merged, methods, reads, seed_range, teacher_seeds
from lskd_plugins.study.modalities.base import Metric, Modality, one_line_errors, options_argv

KIND = "logit"  # the image students' one kind (lskd_plugins.study.kinds)

SECTION = {
    "data": (
        "digits",
        lambda v: isinstance(v, str),
        "a path or 'digits'",
        "ImageFolder root with train/ and val/; 'digits': scikit-learn's 8x8 digits (embedded)",
    ),
    "prepare": (
        None,
        lambda v: v is None or _is_prepare(v),
        "{inputs: [...], command: [...]}",
        "a command that writes `data` when it is missing (e.g. data_prep/prepare_cifar.py); "
        "`inputs` must exist; {data} and {output} are replaced",
    ),
    "teacher_model": ("resnet10t", _str, "a timm model name", "timm model of the teachers"),
    "student_model": (
        None,
        lambda v: v is None or isinstance(v, str),
        "a timm model name",
        "timm model of the students and the no-KD baseline (default: teacher_model)",
    ),
    "fixed_teachers": SECTION_FIXED_TEACHERS,
    **section_methods(),
    "teacher_init": (
        {},
        lambda v: isinstance(v, (dict, str)),
        "a study folder, or a mapping smoothing -> checkpoint",
        "teachers start from other teachers: a study folder (each from its teacher of the same smoothing "
        "and seed index; CUB: the ImageNet study's output), or one checkpoint per teacher smoothing; "
        "the checkpoint's content enters the keys (lskd_plugins/study/chain.py)",
    ),
    "common": ({}, _dict, "a mapping", "lskd image-train options of every run, e.g. {img-size: 16}"),
    "teacher": ({}, _dict, "a mapping", "lskd image-train options of the teachers only"),
    "student": ({}, _dict, "a mapping", "lskd image-train options of the students and the baseline"),
    "kd_alpha": (
        1.0,
        lambda v: _num(v) and 0 < v <= 1,
        "a number in (0, 1]",
        "weight of the KD term (the paper's image recipe: 1, pure KD)",
    ),
    "student_smoothing": (
        0.0,
        lambda v: _num(v) and 0 <= v < 1,
        "a number in [0, 1)",
        "label smoothing of the students' CE term and of the no-KD baseline",
    ),
    "diffusion": (
        {"classes": None, "per_class": 100},
        lambda v: v is False or isinstance(v, dict),
        "false or {classes, per_class}",
        "diffusion analysis of every seed's models",
    ),
}


def teacher_init(sec: Dict[str, Any], smoothing: float) -> str | None:
    """The checkpoint a teacher starts from (``image.teacher_init``), by its smoothing."""
    for key, path in sec["teacher_init"].items():
        if float(key) == smoothing:
            return str(path)
    return None


def start_path(cfg: Dict[str, Any], run: Run, name: str) -> str:
    """The checkpoint a teacher starts from (``image.teacher_init``; a dry run names what it looks for)."""
    index = teacher_seeds(cfg, name).index(run.seed)
    if run.spec["init_sha256"] == NOT_HASHED:  # a dry run: the file may not exist yet (noted)
        init = cfg[name]["teacher_init"]
        if isinstance(init, str):
            what = f"teacher eps{run.teacher_smoothing:g}, seed index {index}"
            return f"{init}/<{what}>/train/checkpoint_last.pth"
        return str(teacher_init(cfg[name], run.teacher_smoothing))
    return str(teacher_start(cfg[name], run.teacher_smoothing, index))


def image_parser() -> argparse.ArgumentParser:
    from lskd_plugins.image import train

    parser = argparse.ArgumentParser(prog="lskd image-train")
    train.add_arguments(parser)
    return parser


def _flag(parser: argparse.ArgumentParser, new: str, old: str) -> str:
    """The new option name where image-train has it, the old one otherwise."""
    return new if new in parser._option_string_actions else old


def checkpoint(ctx: Dict[str, Any], name: str) -> Path:
    return Path(ctx["folders"][name]) / layout.TRAIN_DIR / "checkpoint_last.pth"


class Image(Modality):
    name = "image"
    doc = "the image study (or null)"
    section = SECTION
    embedded = "digits"
    primary = "top1"
    metrics = {
        "top1": Metric("top-1 (%)"),
        "top5": Metric("top-5 (%)"),
        "nll": Metric("NLL", 4, "calibration"),
        "ece": Metric("ECE", 4, "calibration"),
    }
    diffusion_choice = "classes"
    trainer = "image trainer"
    subsections = {
        "diffusion": {
            "classes": (lambda v: v is None or _str(v), "null or class names a,b,c"),
            "per_class": (lambda v: is_int(v) and v >= 1, "an integer >= 1"),
        }
    }

    def validate(self, sec: Dict[str, Any], where: str) -> None:
        """Model names (timm knows them) and one teacher_init checkpoint per teacher smoothing."""
        from lskd_plugins.study.preflight import check_model_name

        super().validate(sec, where)
        for key in ("teacher_model", "student_model"):
            if sec[key] is not None:
                check_model_name(sec[key], f"{where}{key}")
        seen: Dict[float, Any] = {}
        for key in sec["teacher_init"] if isinstance(sec["teacher_init"], dict) else ():
            try:
                smoothing = float(key)
            except (TypeError, ValueError):
                raise LskdError(
                    f"{where}teacher_init: {key!r} is not a teacher smoothing (a number such as 0 or 0.1)"
                ) from None
            if smoothing in seen:
                raise LskdError(
                    f"{where}teacher_init names the teacher smoothing {smoothing:g} twice "
                    f"({seen[smoothing]!r} and {key!r}); give each once"
                )
            seen[smoothing] = key

    def kinds(self, sec: Dict[str, Any]) -> List[str]:
        return [KIND]

    def check_data(self, data: str) -> None:
        from lskd_plugins.study.preflight import check_image_classes

        if not ((Path(data) / "train").is_dir() and (Path(data) / "val").is_dir()):
            raise LskdError(f"image.data: {data} needs train/ and val/ class folders (an ImageFolder root)")
        check_image_classes(data, "image.data")

    def prepare_embedded(self, cfg: Dict[str, Any], out: Path) -> str:
        from lskd_plugins.image.digits import write_digits

        data = out / "data" / self.embedded
        write_digits(data)
        return str(data)

    def build(self, cfg: Dict[str, Any], g) -> None:
        sec = cfg[self.name]
        teacher_model = sec["teacher_model"]
        student_model = sec["student_model"] or teacher_model
        t_opts, s_opts = merged(sec, "teacher"), merged(sec, "student")
        for a in cfg["teacher_smoothing"]:
            for index, ts in enumerate(teacher_seeds(cfg, self.name)):
                g.add(
                    Run(self.name, "teacher", None, a, None, ts),
                    model=teacher_model,
                    options=t_opts,
                    smoothing=a,
                    **start_spec(sec, a, index, g.data_hashes.get(self.name) == NOT_HASHED),
                )
        for s in seed_range(cfg):
            g.add(
                Run(self.name, "baseline", None, None, None, s),
                model=student_model,
                options=s_opts,
                smoothing=sec["student_smoothing"],
            )
            for a in cfg["teacher_smoothing"]:
                for t, (method, settings) in itertools.product(cfg["temperatures"], methods(sec, KIND)):
                    g.add(
                        Run(
                            self.name,
                            "student",
                            KIND,
                            a,
                            t,
                            s,
                            reads(cfg, self.name, KIND, a, s),
                            method=method,
                        ),
                        model=student_model,
                        options=s_opts,
                        smoothing=sec["student_smoothing"],
                        kd_alpha=sec["kd_alpha"],
                        **settings,
                    )
        diffusion_runs(cfg, g, self.name, sec["diffusion"], self.diffusion_choice)

    def argv(self, run: Run, ctx: Dict[str, Any]) -> List[str]:
        sec, parser = ctx["cfg"][self.name], image_parser()
        out = Path(ctx["folders"][run.name]) / layout.TRAIN_DIR
        argv = ["--data", ctx["data"][self.name], "--output", str(out), "--resume"]
        argv += ["--seed", str(run.tool_seed), "--device", ctx["cfg"]["device"]]
        argv += [] if "workers" in run.spec["options"] else ["--workers", "0"]
        argv += [_flag(parser, "--no-progress", "--quiet")]
        argv += options_argv(run.spec["options"]) + ["--model", run.spec["model"]]
        argv += ["--smoothing", f"{run.spec['smoothing']:g}"]
        if run.spec.get("init"):
            argv += ["--pretrained-checkpoint", run.spec["init"]]
        if run.spec.get("init_sha256"):  # image.teacher_init: the teacher it starts from
            argv += ["--pretrained-checkpoint", start_path(ctx["cfg"], run, self.name)]
        if run.role == "student":
            teacher = checkpoint(ctx, run.deps[0])
            argv += ["--teacher-checkpoint", str(teacher), "--kd-temperature", f"{run.temperature:g}"]
            argv += [_flag(parser, "--kd-alpha", "--kd-beta"), f"{sec['kd_alpha']:g}"]
            argv += kinds.method_flags(run.method, run.spec)
        return argv

    def command(self, run: Run, ctx: Dict[str, Any]) -> List[str]:
        from lskd_plugins.study.devices import image_command

        return image_command(["lskd", "image-train", *self.argv(run, ctx)], ctx["cfg"])

    def execute(self, run: Run, ctx: Dict[str, Any]) -> Dict[str, Any]:
        from lskd_plugins.image import train
        from lskd_plugins.study import devices

        if devices.per_run(ctx["cfg"]) > 1:  # one distributed job: torchrun, N processes
            devices.image_train(self.argv(run, ctx), devices.per_run(ctx["cfg"]))
        else:
            train.main(image_parser().parse_args(self.argv(run, ctx)))
        summary_file = Path(ctx["folders"][run.name]) / layout.TRAIN_DIR / "summary.json"
        summary = json.loads(summary_file.read_text())
        return {
            "metrics": {k: summary[k] for k in self.metrics},
            "result_file": f"{layout.TRAIN_DIR}/summary.json",
        }

    def unknown_options(self, run: Run, ctx: Dict[str, Any]) -> List[str]:
        with one_line_errors("image options"):
            _, extra = image_parser().parse_known_args(self.argv(run, ctx))
        return extra

    def checkpoint(self, ctx: Dict[str, Any], name: str) -> Path:
        return checkpoint(ctx, name)

    def diffusion_source(self, ctx, settings, seed, device):
        from lskd_plugins.diffusion.analyse import default_device
        from lskd_plugins.diffusion.image_source import ImageSource

        if settings.get("per_class", 100) < 2:
            raise LskdError("image.diffusion.per_class must be at least 2")
        return ImageSource(
            ctx["data"][self.name],
            per_class=settings.get("per_class", 100),
            seed=seed,
            device=default_device(device),
            progress=False,
            log=print,
        )


MODALITY = Image()
