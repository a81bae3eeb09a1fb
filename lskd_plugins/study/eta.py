"""The study's time left, weighed by the sort of each run.

A study mixes runs of very different lengths (an 8x8 image student: seconds; a translation teacher
with BLEU: minutes), so the overall rate (runs per second) says little. ``Eta`` keeps the durations
of the finished runs per sort, (modality, role), and expects each unfinished run to take the mean
of its sort; before the first run of a sort finishes, the mean of the finished runs of the same
modality, else of all finished runs, else ``DEFAULT_SECONDS``. A running run is expected to need
its sort's mean less the time it has run (at least 0). With ``jobs`` runs at once, the time left
is the larger of the expected work divided by ``jobs`` and the longest expected remainder of a
running run.
"""

from __future__ import annotations

from typing import Dict, Iterable, List, Mapping, Tuple

from lskd_plugins.progress import format_seconds

DEFAULT_SECONDS = 60.0
SHOWN_RUNNING = 2  # the progress line names at most this many runs in progress

Sort = Tuple[str, str]  # (modality, role)


class Eta:
    def __init__(self, jobs: int = 1, default: float = DEFAULT_SECONDS):
        self.jobs, self.default = max(1, jobs), default
        self.durations: Dict[Sort, List[float]] = {}

    def finished(self, sort: Sort, seconds: float) -> None:
        self.durations.setdefault(tuple(sort), []).append(float(seconds))

    def expected(self, sort: Sort) -> float:
        """The mean duration of the finished runs of this sort (else the fallbacks above)."""
        same = self.durations.get(tuple(sort))
        if same:
            return sum(same) / len(same)
        modality = [d for (m, _), ds in self.durations.items() if m == sort[0] for d in ds]
        if modality:
            return sum(modality) / len(modality)
        every = [d for ds in self.durations.values() for d in ds]
        return sum(every) / len(every) if every else self.default

    def left(self, pending: Iterable[Sort], running: Iterable[Tuple[Sort, float]] = ()) -> float:
        """Seconds left: ``pending`` sorts still to start, ``running`` (sort, seconds run so far)."""
        rest = [max(0.0, self.expected(s) - elapsed) for s, elapsed in running]
        work = sum(self.expected(s) for s in pending) + sum(rest)
        return max(work / self.jobs, max(rest, default=0.0))


def running_text(running: Mapping[str, float]) -> str:
    """'running translation/word_eps0.1_T4_s1 (1m05s), image/teacher_eps0_s0 (3s) and 2 more'."""
    if not running:
        return ""
    items = sorted(running.items(), key=lambda kv: -kv[1])
    shown = ", ".join(f"{name} ({format_seconds(sec)})" for name, sec in items[:SHOWN_RUNNING])
    more = len(items) - SHOWN_RUNNING
    return f"running {shown}" + (f" and {more} more" if more > 0 else "")
