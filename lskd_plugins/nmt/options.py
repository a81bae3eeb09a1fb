"""The options every translation command shares, in the project's one vocabulary.

``--output`` (a folder) with ``--out`` as a hidden alias, ``--no-progress`` with ``--quiet`` as a
hidden alias, ``--overwrite`` and ``--allow-failures``: one definition, so ``lskd seqkd``,
``lskd bleu``, ``lskd synth-mt`` and ``lskd prepare-mt`` spell and explain them the same way.
"""

from __future__ import annotations

import argparse
import sys

from lskd_plugins.errors import LskdError, LskdFailure


def add_output_option(parser: argparse.ArgumentParser, what: str, required: bool = True) -> None:
    """``--output DIR`` (``--out`` still works, hidden). Required-ness is checked by ``require_output``
    so that either spelling satisfies it."""
    need = "required" if required else "default: none, nothing is written"
    parser.add_argument("--output", default=None, metavar="DIR", help=f"output folder: {what} ({need})")
    parser.add_argument("--out", dest="output", default=None, help=argparse.SUPPRESS)


def require_output(args: argparse.Namespace) -> str:
    if not args.output:
        raise LskdError("--output DIR is required (the folder to write)")
    return args.output


def add_progress_option(parser: argparse.ArgumentParser) -> None:
    """``--no-progress`` (``--quiet`` still works, hidden)."""
    parser.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress display (default: a bar on a terminal, a line every 30 s in a log)",
    )
    parser.add_argument("--quiet", dest="no_progress", action="store_true", help=argparse.SUPPRESS)


def add_overwrite_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an output folder that holds files this command did not write with these "
        "settings (default: refuse)",
    )


def add_allow_failures_option(parser: argparse.ArgumentParser, items: str) -> None:
    parser.add_argument(
        "--allow-failures",
        action="store_true",
        help=f"exit 0 even when some {items} failed (default: exit 1; the count is printed either way)",
    )


def report_failures(failed: int, total: int, what: str, allow: bool, consequence: str) -> None:
    """Say on stderr how many items failed; raise LskdFailure (exit 1) unless ``allow``."""
    if not failed:
        return
    line = f"{failed} of {total} {what} failed ({consequence})"
    if not allow:
        raise LskdFailure(f"{line}; the result rests on them: pass --allow-failures to accept it")
    print(f"lskd: warning: {line}; accepted by --allow-failures", file=sys.stderr)
