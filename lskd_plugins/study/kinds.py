"""The study's tables of KD kinds and KD methods: what the engine, the report and the statistics read
instead of comparing names.

A **kind** is what a student distils from (its teacher's token distribution, its teacher's
translations, both); a **method** is the loss that matches a teacher's distribution (plain KD, the
logit-standardised KD of Sun et al. 2024, the decoupled KD of Zhao et al. 2022). Methods apply to
the kinds that take a teacher's distribution. Adding a kind or a method is one entry here (and, for
a kind, the modality that trains it: ``lskd_plugins/study/modalities/``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Tuple

from lskd_plugins.errors import LskdError

TEACHER, SEQKD = "teacher", "seqkd"  # what a student reads: its teacher's checkpoint, its sequence-level data


@dataclass(frozen=True)
class Kind:
    name: str
    label: str  # in the report's tables and figures
    takes_temperature: bool  # one student per T (else one per teacher)
    reads: Tuple[str, ...]  # TEACHER and/or SEQKD, in the order of the run's dependencies
    diffusion: bool  # the diffusion analysis measures its students
    distribution: bool  # it matches a teacher's distribution, so the KD methods apply
    run_prefix: str  # the first word of its students' run names

    @property
    def reads_seqkd(self) -> bool:
        return SEQKD in self.reads


@dataclass(frozen=True)
class Method:
    name: str
    label: str
    settings: Tuple[str, ...] = ()  # its own configuration keys (and tool flags, with dashes)


KINDS: Dict[str, Kind] = {
    k.name: k
    for k in (
        Kind("logit", "logit KD", True, (TEACHER,), True, True, "logit"),
        Kind("word", "word-level KD", True, (TEACHER,), True, True, "word"),
        Kind("seq", "sequence-level KD", False, (SEQKD,), False, False, "seq"),
        Kind("seqword", "sequence + word-level KD", True, (TEACHER, SEQKD), False, True, "seqword"),
    )
}

METHODS: Dict[str, Method] = {
    m.name: m
    for m in (
        Method("kd", "KD"),
        Method("logit_std", "logit-standardised KD"),
        Method("dkd", "decoupled KD", ("dkd_alpha", "dkd_beta")),
    )
}
DEFAULT_METHOD = "kd"
DKD_DEFAULTS = {"dkd_alpha": 1.0, "dkd_beta": 8.0}  # the tools' (and Zhao et al.'s CIFAR) values


def method_flags(name: str, settings: Dict[str, float]) -> list:
    """The tools' options for a method (``--kd-method dkd --dkd-alpha 1 --dkd-beta 8``); nothing for
    plain ``kd``, so that the commands of the paper's grid are today's."""
    if name == DEFAULT_METHOD:
        return []
    flags = ["--kd-method", name]
    for key in method(name).settings:
        flags += ["--" + key.replace("_", "-"), f"{settings[key]:g}"]
    return flags


def kind(name: str) -> Kind:
    if name not in KINDS:
        raise LskdError(f"unknown KD kind {name!r}; known kinds: {', '.join(KINDS)}")
    return KINDS[name]


def method(name: str) -> Method:
    if name not in METHODS:
        raise LskdError(f"unknown KD method {name!r}; known methods: {', '.join(METHODS)}")
    return METHODS[name]
