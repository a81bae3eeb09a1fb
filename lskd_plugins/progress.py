"""Progress that reads well on a terminal and in a log file.

On a terminal: a tqdm bar. Anywhere else (a redirected log, a SLURM file, a test): no carriage
returns, one line every ``interval`` seconds (and at the end) with done / total, rate, elapsed
and time left. ``enabled=False`` (``--no-progress``) silences it. Every long lskd job (the study,
seqkd, cache-teacher, preparation, training epochs) goes through this one class, so the whole
job's time left is always shown the same way.

    with Progress(total=len(ids), desc="seqkd", unit="sent") as bar:
        for batch in batches:
            ...
            bar.update(len(batch))
"""

from __future__ import annotations

import sys
import time
from typing import IO, Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")


def format_seconds(seconds: float) -> str:
    """'42s', '3m05s', '2h07m' (never negative)."""
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def is_terminal(stream: IO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class Progress:
    """done / total with rate and time left; a bar on a terminal, periodic lines elsewhere."""

    def __init__(
        self,
        total: int | None,
        desc: str,
        unit: str = "it",
        enabled: bool = True,
        interval: float = 30.0,
        stream: IO | None = None,
        initial: int = 0,
        left: Callable[[], float | None] | None = None,
        note: Callable[[], str] | None = None,
    ):
        """``left``: the caller's own estimate of the seconds left (else: from the rate);
        ``note``: text the line ends with (e.g. the runs in progress)."""
        self.total, self.desc, self.unit, self.interval = total, desc, unit, interval
        self.left_fn, self.note_fn = left, note
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.done = self._start_done = initial
        self._start = self._last = time.monotonic()
        self._bar = None
        if enabled and is_terminal(self.stream):
            from tqdm import tqdm

            self._bar = tqdm(
                total=total,
                desc=desc,
                unit=unit,
                file=self.stream,
                initial=initial,
                leave=False,
                dynamic_ncols=True,
            )

    def line(self) -> str:
        """'desc: 12/40 sent (30%), 3.1 sent/s, elapsed 4s, left 9s' (rate over this process's work)."""
        elapsed = time.monotonic() - self._start
        rate = (self.done - self._start_done) / elapsed if elapsed > 0 else 0.0
        parts = [f"{self.desc}: {self.done}"]
        if self.total:
            parts[0] += f"/{self.total} {self.unit} ({100.0 * self.done / self.total:.0f}%)"
        else:
            parts[0] += f" {self.unit}"
        parts.append(f"{rate:.3g} {self.unit}/s")
        parts.append(f"elapsed {format_seconds(elapsed)}")
        left = self.left_fn() if self.left_fn is not None else None
        if left is None and self.total and rate > 0:
            left = (self.total - self.done) / rate
        if left is not None and self.total and self.done < self.total:
            parts.append(f"left {format_seconds(left)}")
        note = self.note_fn() if self.note_fn is not None else ""
        return ", ".join(parts + ([note] if note else []))

    def update(self, n: int = 1) -> None:
        self.done += n
        if not self.enabled:
            return
        if self._bar is not None:
            if self.left_fn is not None or self.note_fn is not None:
                self._bar.set_postfix_str(self.line().split(", elapsed ", 1)[-1], refresh=False)
            self._bar.update(n)
            return
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            print(self.line(), file=self.stream, flush=True)

    def set_postfix(self, text: str) -> None:
        if self._bar is not None:
            self._bar.set_postfix_str(text, refresh=False)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self.enabled and self.done > self._start_done:
            print(self.line(), file=self.stream, flush=True)
        self.enabled = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def progress_iter(
    items: Iterable[T],
    total: int | None,
    desc: str,
    unit: str = "it",
    enabled: bool = True,
    interval: float = 30.0,
) -> Iterator[T]:
    """``for x in progress_iter(loader, len(loader), 'epoch 3/10'):`` -- Progress over an iterable."""
    with Progress(total, desc, unit=unit, enabled=enabled, interval=interval) as bar:
        for item in items:
            yield item
            bar.update(1)
