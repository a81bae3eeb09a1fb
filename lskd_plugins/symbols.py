"""The one comparison of two symbol lists (dictionaries, class lists) for error messages."""

from __future__ import annotations

from typing import Sequence


def first_difference(expected: Sequence[str], found: Sequence[str], names: Sequence[str]) -> str | None:
    """'first difference at index 3: model 'cat', data 'dog'' (None when the lists are equal).

    Dictionaries (fairseq-train's teacher check, bleu, seqkd, diffusion nmt) and class lists
    (diffusion image)."""
    for i in range(max(len(expected), len(found))):
        a = expected[i] if i < len(expected) else None
        b = found[i] if i < len(found) else None
        if a != b:
            show = lambda s: "<none>" if s is None else repr(s)  # noqa: E731
            return f"first difference at index {i}: {names[0]} {show(a)}, {names[1]} {show(b)}"
    return None
