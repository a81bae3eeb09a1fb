"""User-facing errors, and the range checks every numeric option goes through.

``LskdError`` subclasses ``SystemExit`` on purpose: raised anywhere (our CLI, or inside
``fairseq-train`` through the plugins) it stops the program with its one-line message and no
traceback from deep inside torch or fairseq. Tests catch it with ``pytest.raises(LskdError)``.

Exit codes (one convention for every lskd command and script): 2 for a usage error (a bad option
value, a missing or wrong input file: argparse's code), 1 for a failure of the work itself
(``LskdFailure``: e.g. a result that rests on failed items without ``--allow-failures``).
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import Callable, NoReturn

USAGE, FAILURE = 2, 1


class LskdError(SystemExit):
    exit_code = USAGE

    def __init__(self, message: str):
        super().__init__(f"lskd: error: {message}")
        self.message = message

    def __str__(self) -> str:
        return self.code if isinstance(self.code, str) else self.message


class LskdFailure(LskdError):
    """The work ran but its result cannot be trusted (exit 1)."""

    exit_code = FAILURE


def report(err: LskdError) -> int:
    """Print the one-line message on stderr; return the exit code."""
    print(str(err), file=sys.stderr)
    return err.exit_code


def run_script(main) -> None:
    """``if __name__ == "__main__": run_script(main)``: exit with main()'s code, or the one-line
    message and exit code of an LskdError (the ``lskd`` command's convention, for stand-alone scripts)."""
    try:
        code = main()
    except LskdError as err:
        code = report(err)
    sys.exit(code)


class OneLineParser(argparse.ArgumentParser):
    """argparse with the project's error format: ``lskd: error: <prog>: <what>`` on one line, exit 2
    (no ``<prog>:`` for ``lskd`` itself, which the prefix already names)."""

    def error(self, message: str) -> NoReturn:
        where = (
            "" if self.prog == "lskd" else f"{self.prog.removeprefix('lskd ')}: "
        )  # never "lskd: ... lskd:"
        print(f"lskd: error: {where}{message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(USAGE)


# ----------------------------------------------------------------------------- argparse range types
def _number(kind: Callable, check: Callable[[float], bool], what: str) -> Callable[[str], float]:
    def parse(text: str):
        try:
            value = kind(text)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        if not check(value):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    parse.__name__ = what  # argparse names the type in some messages
    return parse


positive_int = _number(int, lambda v: v > 0, "an integer > 0")
nonneg_int = _number(int, lambda v: v >= 0, "an integer >= 0")
positive_float = _number(float, lambda v: v > 0, "a finite number > 0")
nonneg_float = _number(float, lambda v: v >= 0, "a finite number >= 0")
finite_float = _number(float, lambda v: True, "a finite number")
unit_float = _number(float, lambda v: 0 <= v <= 1, "a number in [0, 1]")
smoothing_float = _number(float, lambda v: 0 <= v < 1, "a label smoothing in [0, 1)")


def int_at_least(low: int) -> Callable[[str], int]:
    return _number(int, lambda v: v >= low, f"an integer >= {low}")


def int_between(low: int, high: int) -> Callable[[str], int]:
    """An integer in [low, high]: for options whose huge values exhaust memory or never finish."""
    return _number(int, lambda v: low <= v <= high, f"an integer from {low} to {high}")


MAX_IMG_SIZE = 4096  # pixels per side; a larger input exhausts memory before the first step
MAX_BEAM = 1000
MAX_SENTENCES = 10_000_000


def fail(message: str) -> NoReturn:
    raise LskdError(message)
