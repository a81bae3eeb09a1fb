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

from lskd_plugins.study import kinds, layout, seeds
from lskd_plugins.study.keys import run_key


@dataclass
class Run:
    modality: str  # a name in lskd_plugins.study.modalities
    role: str  # teacher | student | baseline | seqkd | diffusion
    kind: str | None  # a name in lskd_plugins.study.kinds (students), None otherwise
    teacher_smoothing: float | None  # the teacher's label smoothing
    temperature: float | None
    seed: int  # the seed index: runs of one index are paired (the actual --seed: ``tool_seed``)
    deps: List[str] = field(default_factory=list)
    spec: Dict[str, Any] = field(default_factory=dict)
    key: str = ""
    classes_from: str | None = None  # a diffusion analysis: the run that chose its classes
    method: str | None = None  # the KD method (kinds.METHODS) of a student that takes a distribution
    name: str = field(init=False)  # e.g. "image/logit_eps0.1_T2_s1", from the fields above

    def __post_init__(self) -> None:
        prefix = None
        if self.kind:
            kind = kinds.kind(self.kind)
            prefix = kind.run_prefix
            if kind.distribution and self.method is None:
                self.method = kinds.DEFAULT_METHOD
        self.name = layout.run_name(
            self.modality, self.role, self.seed, prefix, self.teacher_smoothing, self.temperature, self.method
        )

    @property
    def tool_seed(self) -> int:
        """The ``--seed`` the tool gets: this run's role's stream at its index (``seeds.py``)."""
        return seeds.seed(self.role, self.seed)

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
            "method": self.method,
            "seed_index": self.seed,
            "seed": self.tool_seed,
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
            "kd_method": run.method,
            "teacher_smoothing": run.teacher_smoothing,
            "temperature": run.temperature,
            "seed_index": run.seed,
            "seed": run.tool_seed,
            "data": self.data_hashes.get(run.modality),
            **spec,
            "deps": {d: self.runs[d].key for d in run.deps},
        }
        run.key = run_key(run.spec)
        self.runs[run.name] = run
        return run


def seed_range(cfg: Dict[str, Any]) -> range:
    """The seed indices of the study (``seeds.py`` maps an index and a role to the actual seed)."""
    return range(cfg["first_seed"], cfg["first_seed"] + cfg["seeds"])


def teacher_seed(cfg: Dict[str, Any], seed: int, modality: str) -> int:
    """The index of the teachers a student of index ``seed`` distils from (the first when fixed)."""
    return cfg["first_seed"] if cfg[modality]["fixed_teachers"] else seed


def teacher_seeds(cfg: Dict[str, Any], modality: str) -> List[int]:
    """The indices teachers are trained at (one when the teachers are fixed)."""
    return sorted({teacher_seed(cfg, s, modality) for s in seed_range(cfg)})


def no_ls(cfg: Dict[str, Any]) -> float:
    """The noLS teachers' smoothing: eps 0, the one rule (``stats.no_ls_smoothing``); the
    configuration refuses a ``teacher_smoothing`` without it."""
    assert 0.0 in cfg["teacher_smoothing"], "load_config requires eps 0"
    return 0.0


def teacher_name(
    cfg: Dict[str, Any], modality: str, smoothing: float, seed: int, role: str = "teacher"
) -> str:
    """The teacher (or its sequence-level data: ``role="seqkd"``) a student of ``seed`` reads."""
    return layout.run_name(modality, role, teacher_seed(cfg, seed, modality), None, smoothing)


def reads(cfg: Dict[str, Any], modality: str, kind: str, smoothing: float, seed: int) -> List[str]:
    """The runs a student of ``kind`` reads, in the kind's order (``kinds.Kind.reads``)."""
    return [teacher_name(cfg, modality, smoothing, seed, what) for what in kinds.kind(kind).reads]


def methods(sec: Dict[str, Any], kind: str) -> List[tuple]:
    """[(method, its settings for the key)] of a student of ``kind``: every configured KD method for
    the kinds that take a teacher's distribution, [(None, {})] for the others. Only a method's own
    settings enter its students' keys (dkd: dkd_alpha, dkd_beta), so kd students keep their keys."""
    if not kinds.kind(kind).distribution:
        return [(None, {})]
    names = sec.get("kd_methods") or [kinds.DEFAULT_METHOD]
    return [(m, {k: sec[k] for k in kinds.method(m).settings}) for m in names]


def diffusion_runs(cfg: Dict[str, Any], g: GridBuilder, modality: str, settings: Any, choice: str) -> None:
    """One analysis per seed index of that index's teachers and the students of the kinds diffusion
    measures (``kinds.Kind.diffusion``), on index i's own sample (``seeds.sampling(i)``). The three
    classes (``settings[choice]``: classes or tokens) are the user's, or chosen once by a
    ``classes`` run on the noLS teachers of every index, so that every index describes the same
    three classes and no index is measured on a choice made by its own models alone."""
    if settings is False:
        return
    classes_from = None
    if not settings.get(choice):
        no = no_ls(cfg)
        teachers = [
            r.name
            for r in g.runs.values()
            if r.modality == modality and r.role == "teacher" and r.teacher_smoothing == no
        ]
        chooser = Run(modality, "classes", None, None, None, cfg["first_seed"], deps=teachers)
        classes_from = g.add(chooser, settings=settings).name
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
        deps = models + ([classes_from] if classes_from else [])
        run = Run(modality, "diffusion", None, None, None, s, deps=deps, classes_from=classes_from)
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
