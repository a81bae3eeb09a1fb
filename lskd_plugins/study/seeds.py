"""Seed streams: every run's actual ``--seed`` from its seed *index* and its role, one derivation.

    student(i)  = i * 2^20            every KD student of index i and its no-KD baseline
    teacher(i)  = 2^30 + i * 2^20     the LS and noLS teachers of index i (fixed teachers: the first index)
    sampling(i) = 2^31 + i * 2^20     index i's diffusion sample (images / sentences)
    choice(i)   = 3 * 2^30 + i * 2^20 the sample the diffusion's three classes are chosen on (once,
                                      at the first index; another sample than any index measures)

Why so far apart: the tools add counters to a seed. fairseq re-seeds torch with seed + update
number at every update and shuffles with seed + epoch; image-train's sampler uses seed + epoch and
re-seeds every generator per epoch from (seed, epoch, rank). With 2^20 (about a million) between
two streams no counter of a run reaches another run's seed, so a student never starts from its
teacher's initial weights nor sees its teacher's batch order (issue 17), while every student of
one index shares one initialisation and batch order: the pairing of the statistics
(method.md section 7).

Bounds: a training seed plus its counters stays below 2^31 (a signed 32-bit integer, which every
tool accepts; numpy takes seeds below 2^32, torch below 2^64), so the largest index is
``MAX_INDEX`` = 1023: teacher(1023) + 2^20 - 1 = 2^31 - 1. Sampling and choice seeds stay
below 2^32 (choice(1023) = 2^32 - 2^20).
"""

from __future__ import annotations

from typing import Dict

from lskd_plugins.errors import LskdError

STRIDE = 2**20  # room for the counters a tool adds to its seed (updates, epochs)
STUDENT_BASE, TEACHER_BASE, SAMPLING_BASE, CHOICE_BASE = 0, 2**30, 2**31, 3 * 2**30
MAX_INDEX = (2**31 - TEACHER_BASE) // STRIDE - 1  # 1023: teacher(i) + STRIDE - 1 fits in int32

# the stream of each role of the grid
STREAMS: Dict[str, int] = {
    "student": STUDENT_BASE,
    "baseline": STUDENT_BASE,
    "teacher": TEACHER_BASE,
    "seqkd": TEACHER_BASE,  # a teacher's translations (beam search: the seed does not enter)
    "diffusion": SAMPLING_BASE,
    "classes": CHOICE_BASE,  # the choice of the diffusion's three classes
}


def check_index(index: int, where: str = "seed index") -> int:
    if not isinstance(index, int) or index < 0 or index > MAX_INDEX:
        raise LskdError(
            f"{where} {index!r} is outside 0..{MAX_INDEX}: seed indices map to seeds i * 2^20 apart "
            f"below 2^31 (lskd_plugins/study/seeds.py); lower first_seed or seeds"
        )
    return index


def seed(role: str, index: int) -> int:
    """The actual ``--seed`` of a run of ``role`` at seed index ``index``."""
    if role not in STREAMS:
        raise LskdError(f"no seed stream for the role {role!r}; known roles: {', '.join(STREAMS)}")
    return STREAMS[role] + check_index(index) * STRIDE


def student(index: int) -> int:
    return seed("student", index)


def teacher(index: int) -> int:
    return seed("teacher", index)


def sampling(index: int) -> int:
    return seed("diffusion", index)
