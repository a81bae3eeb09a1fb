"""The study's grid: modality x teacher smoothing x KD kind x temperature x seed, plus the no-KD
baseline per seed, the sequence-level data of each teacher and one diffusion analysis per seed.

Each ``Run`` carries the ``spec`` its key is computed from (``keys.run_key``): the data's content
hash, the options of the tool, the seed, the loss settings and the keys of the runs it reads
(a student's teacher, a diffusion analysis' models). Runs are listed so that every run comes
after the runs it depends on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List

from lskd_plugins.study.keys import run_key

IMAGE_KIND = "logit"
TEACHER_CACHE_STORE = "features"  # lskd cache-teacher's exact store; its name is in the students' keys


@dataclass
class Run:
    name: str  # e.g. "image/student_a0.1_T2_s1"
    modality: str  # image | translation
    role: str  # teacher | student | baseline | seqkd | diffusion
    kind: str | None  # logit | word | seq | seqword (students), None otherwise
    alpha: float | None  # the teacher's label smoothing
    temperature: float | None
    seed: int
    deps: List[str] = field(default_factory=list)
    spec: Dict[str, Any] = field(default_factory=dict)
    key: str = ""

    @property
    def folder(self) -> str:
        """Relative to the study folder; the key is part of it, so a changed setting never meets the
        files of the old one."""
        return f"runs/{self.name}-{self.key[:10]}"

    def as_dict(self) -> Dict[str, Any]:
        return {
            "name": self.name,
            "modality": self.modality,
            "role": self.role,
            "kind": self.kind,
            "alpha": self.alpha,
            "temperature": self.temperature,
            "seed": self.seed,
            "deps": self.deps,
            "key": self.key,
            "folder": self.folder,
        }


def merged(sec: Dict[str, Any], role: str) -> Dict[str, Any]:
    """The tool options of a role: ``common`` then the role's own (teacher or student) on top."""
    part = "teacher" if role == "teacher" else "student"
    return {**sec["common"], **sec[part]}


class GridBuilder:
    """Adds runs in dependency order and keys each from its spec plus the keys of its deps."""

    def __init__(self, data_hashes: Dict[str, str]):
        self.runs: Dict[str, Run] = {}
        self.data_hashes = data_hashes

    def add(self, run: Run, **spec: Any) -> Run:
        run.spec = {
            "modality": run.modality,
            "role": run.role,
            "kind": run.kind,
            "alpha": run.alpha,
            "temperature": run.temperature,
            "seed": run.seed,
            "data": self.data_hashes.get(run.modality),
            **spec,
            "deps": {d: self.runs[d].key for d in run.deps},
        }
        run.key = run_key(run.spec)
        self.runs[run.name] = run
        return run


def _t(x: float) -> str:
    return f"{x:g}"


def seed_range(cfg: Dict[str, Any]) -> range:
    return range(cfg["first_seed"], cfg["first_seed"] + cfg["seeds"])


def teacher_seed(cfg: Dict[str, Any], seed: int, modality: str) -> int:
    """The seed of the teacher a student of ``seed`` distils from (the first seed when fixed)."""
    return cfg["first_seed"] if cfg[modality]["fixed_teachers"] else seed


def teacher_init(sec: Dict[str, Any], alpha: float) -> str | None:
    """The checkpoint a teacher starts from (``image.teacher_init``), by its smoothing."""
    for key, path in sec["teacher_init"].items():
        if float(key) == alpha:
            return str(path)
    return None


def image_runs(cfg: Dict[str, Any], g: GridBuilder) -> None:
    sec = cfg["image"]
    teacher_model = sec["teacher_model"]
    student_model = sec["student_model"] or teacher_model
    t_opts, s_opts = merged(sec, "teacher"), merged(sec, "student")
    seeds = seed_range(cfg)
    for a in cfg["teacher_smoothing"]:
        for ts in sorted({teacher_seed(cfg, s, "image") for s in seeds}):
            g.add(
                Run(f"image/teacher_a{_t(a)}_s{ts}", "image", "teacher", None, a, None, ts),
                model=teacher_model,
                options=t_opts,
                smoothing=a,
            )
    for s in seeds:
        g.add(
            Run(f"image/baseline_s{s}", "image", "baseline", None, None, None, s),
            model=student_model,
            options=s_opts,
            smoothing=sec["student_smoothing"],
        )
        for a in cfg["teacher_smoothing"]:
            teacher = f"image/teacher_a{_t(a)}_s{teacher_seed(cfg, s, 'image')}"
            for t in cfg["temperatures"]:
                g.add(
                    Run(
                        f"image/student_a{_t(a)}_T{_t(t)}_s{s}",
                        "image",
                        "student",
                        IMAGE_KIND,
                        a,
                        t,
                        s,
                        deps=[teacher],
                    ),
                    model=student_model,
                    options=s_opts,
                    smoothing=sec["student_smoothing"],
                    kd_alpha=sec["kd_alpha"],
                )
    diffusion_runs(cfg, g, "image", sec["diffusion"])


def translation_teachers(cfg: Dict[str, Any], g: GridBuilder, decode: Dict[str, Any]) -> None:
    """Teachers (and their sequence-level data when a sequence-level kind is asked for)."""
    sec = cfg["translation"]
    seq = bool({"seq", "seqword"} & set(sec["kinds"]))
    for a in cfg["teacher_smoothing"]:
        for ts in sorted({teacher_seed(cfg, s, "translation") for s in seed_range(cfg)}):
            name = f"translation/teacher_a{_t(a)}_s{ts}"
            g.add(
                Run(name, "translation", "teacher", None, a, None, ts),
                options=merged(sec, "teacher"),
                smoothing=a,
                decode=decode,
            )
            if seq:
                g.add(
                    Run(
                        f"translation/seqkd_a{_t(a)}_s{ts}",
                        "translation",
                        "seqkd",
                        None,
                        a,
                        None,
                        ts,
                        deps=[name],
                    ),
                    decode=decode,
                )


def translation_runs(cfg: Dict[str, Any], g: GridBuilder) -> None:
    sec = cfg["translation"]
    s_opts = merged(sec, "student")
    decode = {"beam": sec["beam"], "max_len_b": sec["max_len_b"], "checkpoint": sec["checkpoint"]}
    translation_teachers(cfg, g, decode)
    kd = {
        "kd_alpha": sec["kd_alpha"],
        "smoothing": sec["student_smoothing"],
        "decode": decode,
        # the store's name, not True: students of an earlier top-k cache (keyed True) are not reused
        "teacher_cache": TEACHER_CACHE_STORE if sec["teacher_cache"] else False,
    }
    for s in seed_range(cfg):
        g.add(
            Run(f"translation/baseline_s{s}", "translation", "baseline", None, None, None, s),
            options=s_opts,
            smoothing=sec["student_smoothing"],
            decode=decode,
        )
        for a in cfg["teacher_smoothing"]:
            ts = teacher_seed(cfg, s, "translation")
            teacher, seqkd = f"translation/teacher_a{_t(a)}_s{ts}", f"translation/seqkd_a{_t(a)}_s{ts}"
            if "seq" in sec["kinds"]:
                g.add(
                    Run(
                        f"translation/seq_a{_t(a)}_s{s}",
                        "translation",
                        "student",
                        "seq",
                        a,
                        None,
                        s,
                        deps=[seqkd],
                    ),
                    options=s_opts,
                    smoothing=sec["seq_smoothing"],
                    decode=decode,
                )
            for kind, deps in (("word", [teacher]), ("seqword", [teacher, seqkd])):
                for t in cfg["temperatures"] if kind in sec["kinds"] else []:
                    g.add(
                        Run(
                            f"translation/{kind}_a{_t(a)}_T{_t(t)}_s{s}",
                            "translation",
                            "student",
                            kind,
                            a,
                            t,
                            s,
                            deps=list(deps),
                        ),
                        options=s_opts,
                        **kd,
                    )
    diffusion_runs(cfg, g, "translation", sec["diffusion"])


def diffusion_runs(cfg: Dict[str, Any], g: GridBuilder, modality: str, settings: Any) -> None:
    """One analysis per seed of that seed's teachers and (logit / word-level) students. Seeds > 0
    reuse seed 0's classes so that their numbers describe the same three classes."""
    if settings is False:
        return
    first = cfg["first_seed"]
    for s in seed_range(cfg):
        models = [
            r.name
            for r in g.runs.values()
            if r.modality == modality
            and (
                (r.role == "teacher" and r.seed == teacher_seed(cfg, s, modality))
                or (r.role == "student" and r.kind in (IMAGE_KIND, "word") and r.seed == s)
            )
        ]
        deps = models + ([f"{modality}/diffusion_s{first}"] if s > first else [])
        g.add(
            Run(f"{modality}/diffusion_s{s}", modality, "diffusion", None, None, None, s, deps=deps),
            settings=settings,
        )


def build_runs(cfg: Dict[str, Any], data_hashes: Dict[str, str]) -> List[Run]:
    g = GridBuilder(data_hashes)
    if cfg["image"] is not None:
        image_runs(cfg, g)
    if cfg["translation"] is not None:
        translation_runs(cfg, g)
    return list(g.runs.values())
