"""The study's grid: modality x teacher smoothing x KD kind x temperature x seed, plus the no-KD
baseline per seed, the sequence-level data of each teacher and one diffusion analysis per seed.

The engine's part is here (``Run``, ``GridBuilder``, seeds, the diffusion analyses); each modality
adds its own runs (``lskd_plugins/study/modalities/``). Each ``Run`` carries the ``spec`` its key is
computed from (``keys.run_key``): the data's content hash, the options of the tool, the seed, the
loss settings and the keys of the runs it reads (a student's teacher, a diffusion analysis' models).
Runs are listed so that every run comes after the runs it depends on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List

from lskd_plugins.study import kinds, layout
from lskd_plugins.study.keys import run_key


@dataclass
class Run:
    modality: str  # a name in lskd_plugins.study.modalities
    role: str  # teacher | student | baseline | seqkd | diffusion
    kind: str | None  # a name in lskd_plugins.study.kinds (students), None otherwise
    teacher_smoothing: float | None  # the teacher's label smoothing
    temperature: float | None
    seed: int
    deps: List[str] = field(default_factory=list)
    spec: Dict[str, Any] = field(default_factory=dict)
    key: str = ""
    classes_from: str | None = None  # a diffusion analysis: the run whose classes it reuses
    name: str = field(init=False)  # e.g. "image/student_a0.1_T2_s1", from the fields above

    def __post_init__(self) -> None:
        prefix = kinds.kind(self.kind).run_prefix if self.kind else None
        self.name = layout.run_name(
            self.modality, self.role, self.seed, prefix, self.teacher_smoothing, self.temperature
        )

    @property
    def folder(self) -> str:
        return layout.run_folder(self.name, self.key)

    def as_dict(self) -> Dict[str, Any]:
        return {
            "name": self.name,
            "modality": self.modality,
            "role": self.role,
            "kind": self.kind,
            "teacher_smoothing": self.teacher_smoothing,
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
            # keyed as "alpha" (the key of existing runs); step 2 of issue 18/17 renames it together
            # with the seed streams, so that keys change once
            "alpha": run.teacher_smoothing,
            "temperature": run.temperature,
            "seed": run.seed,
            "data": self.data_hashes.get(run.modality),
            **spec,
            "deps": {d: self.runs[d].key for d in run.deps},
        }
        run.key = run_key(run.spec)
        self.runs[run.name] = run
        return run


def seed_range(cfg: Dict[str, Any]) -> range:
    return range(cfg["first_seed"], cfg["first_seed"] + cfg["seeds"])


def teacher_seed(cfg: Dict[str, Any], seed: int, modality: str) -> int:
    """The seed of the teacher a student of ``seed`` distils from (the first seed when fixed)."""
    return cfg["first_seed"] if cfg[modality]["fixed_teachers"] else seed


def teacher_seeds(cfg: Dict[str, Any], modality: str) -> List[int]:
    """The seeds teachers are trained with (one when the teachers are fixed)."""
    return sorted({teacher_seed(cfg, s, modality) for s in seed_range(cfg)})


def teacher_name(
    cfg: Dict[str, Any], modality: str, smoothing: float, seed: int, role: str = "teacher"
) -> str:
    """The teacher (or its sequence-level data: ``role="seqkd"``) a student of ``seed`` reads."""
    return layout.run_name(modality, role, teacher_seed(cfg, seed, modality), None, smoothing)


def reads(cfg: Dict[str, Any], modality: str, kind: str, smoothing: float, seed: int) -> List[str]:
    """The runs a student of ``kind`` reads, in the kind's order (``kinds.Kind.reads``)."""
    return [teacher_name(cfg, modality, smoothing, seed, what) for what in kinds.kind(kind).reads]


def diffusion_runs(cfg: Dict[str, Any], g: GridBuilder, modality: str, settings: Any) -> None:
    """One analysis per seed of that seed's teachers and the students of the kinds diffusion
    measures (``kinds.Kind.diffusion``). Seeds > 0 reuse seed 0's classes so that their numbers
    describe the same three classes."""
    if settings is False:
        return
    first = cfg["first_seed"]
    first_name = layout.run_name(modality, "diffusion", first)
    for s in seed_range(cfg):
        models = [
            r.name
            for r in g.runs.values()
            if r.modality == modality
            and (
                (r.role == "teacher" and r.seed == teacher_seed(cfg, s, modality))
                or (r.role == "student" and kinds.kind(r.kind).diffusion and r.seed == s)
            )
        ]
        classes_from = first_name if s > first else None
        run = Run(
            modality, "diffusion", None, None, None, s, deps=models + ([classes_from] if classes_from else [])
        )
        run.classes_from = classes_from
        g.add(run, settings=settings)


def build_runs(cfg: Dict[str, Any], data_hashes: Dict[str, str]) -> List[Run]:
    from lskd_plugins.study import modalities
    from lskd_plugins.study.devices import rekey

    g = GridBuilder(data_hashes)
    for modality in modalities.present(cfg):
        modality.build(cfg, g)
    runs = list(g.runs.values())
    rekey(runs, cfg)  # devices_per_run > 1 enters every key
    return runs
