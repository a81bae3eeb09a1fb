"""The study's modalities, by name: ``MODALITIES[name]`` is the object that knows that modality's
configuration, data, runs, commands, metrics and diffusion analysis (``base.Modality``).

The engine looks a modality up with ``get(name)``; adding one is ``register(obj)`` (a module of
this package, or a test's toy modality). The order of ``MODALITIES`` is the order of the
configuration's sections, the grid and the report.
"""

from __future__ import annotations

from typing import Dict

from lskd_plugins.errors import LskdError
from lskd_plugins.study.modalities.base import Metric, Modality
from lskd_plugins.study.modalities.image import MODALITY as IMAGE
from lskd_plugins.study.modalities.translation import MODALITY as TRANSLATION

MODALITIES: Dict[str, Modality] = {m.name: m for m in (IMAGE, TRANSLATION)}

__all__ = ["MODALITIES", "Metric", "Modality", "get", "register"]


def get(name: str) -> Modality:
    if name not in MODALITIES:
        raise LskdError(f"unknown study modality {name!r}; known modalities: {', '.join(MODALITIES)}")
    return MODALITIES[name]


def register(modality: Modality) -> Modality:
    """Add (or replace) a modality; it becomes a top-level section of the configuration."""
    MODALITIES[modality.name] = modality
    return modality


def present(cfg) -> list:
    """The modalities a loaded configuration studies, in registry order."""
    return [m for name, m in MODALITIES.items() if cfg.get(name) is not None]
