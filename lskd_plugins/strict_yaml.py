"""Strict reading of configuration values: what plain YAML and ``str.split`` accept silently.

- ``load_yaml``: YAML (safe types only) that refuses a key given twice in one mapping, naming the
  key and both line numbers (PyYAML keeps the last value without a word);
- ``split_list``: a comma-separated flag value (``--temps 1,2,3``) that refuses an empty item
  (``1,,2``, ``1,2,``) and a value given twice;
- ``check_list``: a list from a configuration with no empty item and no value given twice;
- ``is_number`` / ``is_int``: numbers that are not booleans (YAML's ``true`` is Python's ``True``,
  which ``isinstance(True, int)`` accepts).

Every refusal is an ``LskdError`` (one line, exit 2) naming where the value came from.
"""

from __future__ import annotations

import math
from typing import Any, Callable, List, Sequence

from lskd_plugins.errors import LskdError


def is_number(v: Any) -> bool:
    """An int or a finite float, not a boolean."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def is_int(v: Any) -> bool:
    """An int, not a boolean."""
    return isinstance(v, int) and not isinstance(v, bool)


def _loader(source: str):
    import yaml

    class StrictLoader(yaml.SafeLoader):
        """SafeLoader whose mappings refuse a key given twice."""

    def construct_mapping(loader, node, deep=False):
        seen = {}
        for key_node, _value in node.value:
            key = loader.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: let PyYAML say what is wrong with it
                continue
            if first is not None:
                raise LskdError(
                    f"{source}: key {key!r} is given twice in one mapping (lines {first} and {line}); "
                    "keep one of them"
                )
            seen[key] = line
        return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)

    StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    return StrictLoader


def load_yaml(text: str, source: str = "configuration") -> Any:
    """``yaml.safe_load(text)``, refusing a key given twice in one mapping (``source`` names the file
    in the message). YAML syntax errors are left to the caller (``yaml.YAMLError``)."""
    import yaml

    return yaml.load(text, Loader=_loader(source))  # noqa: S506 - a SafeLoader subclass


def check_list(values: Sequence[Any], where: str) -> List[Any]:
    """``values`` with no empty item (null, '') and no value given twice (1 and 1.0 are the same)."""
    for i, v in enumerate(values):
        if v is None or (isinstance(v, str) and not v.strip()):
            raise LskdError(f"{where}: item {i + 1} of {list(values)} is empty; remove it or give a value")
    seen: List[Any] = []
    for v in values:
        # 1 and 1.0 are one value, True and 1 are not (a boolean is refused as a number elsewhere)
        twice = any(v == w and isinstance(v, bool) == isinstance(w, bool) for w in seen)
        if twice:
            raise LskdError(f"{where} gives {v!r} twice ({list(values)}); give each value once")
        seen.append(v)
    return list(values)


def split_list(spec: str, flag: str, convert: Callable[[str], Any] = float, example: str = "1,2,3") -> list:
    """A comma-separated flag value converted item by item; an empty item (``1,,2``, a trailing
    comma), an item ``convert`` rejects, or a value given twice is refused naming ``flag``."""
    items = [item.strip() for item in str(spec).split(",")]
    if not any(items):
        raise LskdError(f"{flag} is empty; give comma-separated values, e.g. {flag} {example}")
    if "" in items:
        raise LskdError(
            f"{flag} {spec!r} has an empty item (two commas in a row, or one at an end); "
            f"e.g. {flag} {example}"
        )
    try:
        values = [convert(item) for item in items]
    except ValueError:
        raise LskdError(f"{flag} takes comma-separated values, e.g. {flag} {example}; got {spec!r}") from None
    return check_list(values, f"{flag} {spec!r}")
