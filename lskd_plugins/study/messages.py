"""Small pieces of the study's user-facing messages: the section an option came from, the closest
valid option, a path as the absolute path that was tried, and fairseq's repeated ``--user-dir``
INFO line kept off the terminal."""

from __future__ import annotations

import argparse
import difflib
import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping


def closest(word: str, options: Iterable[str]) -> str | None:
    """The valid option closest to a misspelt one (difflib), or None when nothing is close."""
    found = difflib.get_close_matches(word, sorted(set(options)), n=1, cutoff=0.6)
    return found[0] if found else None


def option_section(modality: str, sec: Mapping[str, Any], part: str, option: str) -> str:
    """Where a tool option was written: ``<modality>.<part>`` when the role's own mapping (teacher or
    student) has it, else ``<modality>.common`` when common has it, else both named."""
    key = option.lstrip("-").split("=", 1)[0]
    spelt = {key, key.replace("-", "_"), key.replace("_", "-")}
    if spelt & set(sec.get(part) or {}):
        return f"{modality}.{part}"
    if spelt & set(sec.get("common") or {}):
        return f"{modality}.common"
    return f"{modality}.{part} or {modality}.common"


def unknown_option(
    modality: str, sec: Mapping[str, Any], part: str, option: str, valid: Iterable[str], trainer: str = ""
) -> str:
    """'translation.teacher: option 'encoder-layer' is not an option of the translation trainer; the
    closest is 'encoder-layers'' (``valid``: the trainer's option names without dashes)."""
    key = option.lstrip("-").split("=", 1)[0]
    where = option_section(modality, sec, part, option)
    text = f"{where}: option {key!r} is not an option of the {trainer or modality + ' trainer'}"
    near = closest(key, valid)
    return text + (f"; the closest is {near!r}" if near else "")


def parser_options(parser) -> list:
    """An argparse parser's long option names, without the dashes."""
    return [s[2:] for a in parser._actions for s in a.option_strings if s.startswith("--")]


@contextmanager
def recording_options() -> Iterator[list]:
    """The long option names of every argparse parser that parses inside the block (a tool's parser,
    or fairseq's several ones: the task's, the model's, ...), for the closest-option hint."""
    names: list = []
    original = argparse.ArgumentParser.parse_known_args

    def recorded(self, *args, **kwargs):
        names.extend(parser_options(self))
        return original(self, *args, **kwargs)

    argparse.ArgumentParser.parse_known_args = recorded
    try:
        yield names
    finally:
        argparse.ArgumentParser.parse_known_args = original


def tried(path: str | Path) -> str:
    """A path as the message shows it: as written, and the absolute path it was looked for at."""
    p = Path(path)
    absolute = p.expanduser().resolve()
    return str(p) if str(p) == str(absolute) else f"{p} (looked for at {absolute})"


class DropUserDirRepeat(logging.Filter):
    """fairseq logs ``--user-dir=... has already been imported.`` at every parse once lskd_plugins
    is imported (always, inside lskd): it tells a study's user nothing."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "has already been imported" not in record.getMessage()


def quiet_fairseq_user_dir() -> None:
    logger = logging.getLogger("fairseq.utils")
    if not any(isinstance(f, DropUserDirRepeat) for f in logger.filters):
        logger.addFilter(DropUserDirRepeat())
