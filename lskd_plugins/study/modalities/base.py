"""What the engine asks of a modality (``Modality``), and the metric table each one fills in.

A modality is one object registered by name in ``lskd_plugins.study.modalities``: its section of
the configuration (``section``: key -> (default, check, what must hold, documentation)), its data
(embedded or prepared), the runs it adds to the grid, the command each of them stands for and the
work itself, its metrics and the diffusion analysis of its models. The engine never compares a
modality's name: it looks the object up and calls it.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

from lskd_plugins.errors import LskdError
from lskd_plugins.study.config import substitute


@dataclass(frozen=True)
class Metric:
    label: str  # in the report's tables and figures
    digits: int = 2  # decimals in the report
    what: str = "other metric"  # the report's heading for a secondary metric ("calibration", ...)


class Modality:
    """The interface; ``image.py`` and ``translation.py`` are the two implementations."""

    name: str = ""
    doc: str = ""  # the top-level key's documentation ("the image study (or null)")
    section: Dict[str, Tuple[Any, Any, str, str]] = {}
    embedded: str = ""  # the value of ``data`` that names the embedded data set
    primary: str = ""  # the metric verdicts are given for
    metrics: Dict[str, Metric] = {}  # the primary one first, then the others, in report order
    diffusion_choice: str = "classes"  # the diffusion setting that names its three classes (tokens)
    trainer: str = ""  # the tool, for "not an option of the <trainer>" errors

    # ---------------------------------------------------------------------------- configuration
    def kinds(self, sec: Dict[str, Any]) -> List[str]:
        """The KD kinds of this modality's students (names in ``lskd_plugins.study.kinds``)."""
        raise NotImplementedError

    # mappings inside the section (key -> {sub-key: (check, what must hold)}), checked by ``validate``
    subsections: Dict[str, Dict[str, Tuple[Any, str]]] = {}

    def validate(self, sec: Dict[str, Any], where: str) -> None:
        """One line for a value the section's table cannot check alone (``where``: "CONFIG: name.");
        by default the ``subsections``' keys and values."""
        from lskd_plugins.study.config import check_mapping

        for key, spec in self.subsections.items():
            check_mapping(sec.get(key), spec, f"{where}{key}")

    def check_data(self, data: str) -> None:
        """One line when the prepared data at ``data`` (an existing folder) is not of this modality."""

    # -------------------------------------------------------------------------------------- data
    def prepare_embedded(self, cfg: Dict[str, Any], out: Path) -> str:
        raise NotImplementedError

    def dry_run_data(self, out: Path) -> str:
        """The embedded data's path as a dry run names it (nothing is written)."""
        return f"{out}/data/{self.embedded}"

    def prepare(self, cfg: Dict[str, Any], out: Path) -> str:
        sec = cfg[self.name]
        if sec["data"] == self.embedded:
            return self.prepare_embedded(cfg, out)
        return prepared(sec, cfg, self.name)

    # ------------------------------------------------------------------------------------- runs
    def build(self, cfg: Dict[str, Any], g) -> None:
        """Add this modality's runs to the grid builder ``g`` (``lskd_plugins.study.grid``)."""
        raise NotImplementedError

    def command(self, run, ctx: Dict[str, Any]) -> List[str]:
        raise NotImplementedError

    def execute(self, run, ctx: Dict[str, Any]) -> Dict[str, Any]:
        raise NotImplementedError

    def unknown_options(self, run, ctx: Dict[str, Any]) -> List[str]:
        """The options of ``run``'s command that its tool does not know (validation before training)."""
        return []

    def checkpoint(self, ctx: Dict[str, Any], name: str) -> Path:
        """The checkpoint of the run ``name`` that students read and the diffusion analyses."""
        raise NotImplementedError

    def diffusion_source(self, ctx: Dict[str, Any], settings: Dict[str, Any], seed: int, device):
        """The diffusion package's source of this modality (its data sample drawn with ``seed``)."""
        raise NotImplementedError

    def analyse(self, run, ctx, models: List[str], settings: Dict[str, Any], labels, device):
        """The diffusion analysis of ``models`` (run names) on ``run``'s own sample (its
        ``tool_seed``), the three classes named in ``settings[diffusion_choice]``:
        (records, projections)."""
        from lskd_plugins.diffusion.analyse import analyse_checkpoints

        source = self.diffusion_source(ctx, settings, run.tool_seed, device)
        paths = [str(self.checkpoint(ctx, m)) for m in models]
        return analyse_checkpoints(source, paths, settings.get(self.diffusion_choice), labels, log=print)

    def choose(self, run, ctx, models: List[str], settings: Dict[str, Any], device):
        """The three classes, chosen once on the mean soft predictions of ``models`` (the noLS
        teachers of every index) on ``run``'s sample: a ``diffusion.select.Selection``."""
        source = self.diffusion_source(ctx, settings, run.tool_seed, device)
        return choose_on_models(source, [str(self.checkpoint(ctx, m)) for m in models])


PREPARED_STAMP = ".lskd-study-prepared"


def prepared(sec: Dict[str, Any], cfg: Dict[str, Any], name: str) -> str:
    """The configured data folder, made by ``prepare.command`` when it is missing."""
    data = substitute(sec["data"], cfg)
    if sec["prepare"] and not Path(data, PREPARED_STAMP).is_file():
        cmd = [substitute(str(c), cfg, data) for c in sec["prepare"]["command"]]
        cmd = [sys.executable if c == "python" else c for c in cmd]
        print(f"study: preparing {name} data: {shlex.join(cmd)}", file=sys.stderr)
        proc = subprocess.run(cmd)
        if proc.returncode != 0:
            raise LskdError(f"{name}.prepare failed (exit {proc.returncode}): {shlex.join(cmd)}")
        Path(data, PREPARED_STAMP).write_text(shlex.join(cmd) + "\n")
    return str(Path(data).resolve())


def options_argv(options: Dict[str, Any]) -> List[str]:
    """{"img-size": 16, "amp": true, "decay-milestones": [30, 60]} -> ["--img-size", "16", "--amp", ...]."""
    out: List[str] = []
    for key, value in options.items():
        flag = "--" + key.lstrip("-")
        if value is True:
            out.append(flag)
        elif value is False or value is None:
            continue
        elif isinstance(value, list):
            out += [flag, *[str(v) for v in value]]
        else:
            out += [flag, str(value)]
    return out


@contextmanager
def one_line_errors(what: str) -> Iterator[None]:
    """argparse errors of a tool's own parser as one ``lskd: error:`` line (not its 200-line usage)."""

    def error(self, message):
        raise LskdError(f"{what}: {message}")

    saved = argparse.ArgumentParser.error
    argparse.ArgumentParser.error = error
    try:
        yield
    finally:
        argparse.ArgumentParser.error = saved


def choose_on_models(source, paths: List[str], log=print):
    """The diffusion's three classes from the mean of several models' confusion matrices (each
    model's mean soft predictions on the same sample, ``source.confusion``)."""
    import numpy as np

    from lskd_plugins.diffusion.select import choose_classes

    matrices, names, ids = [], None, None
    for path in paths:
        model = source.load(path)
        matrix, model_names, model_ids = source.confusion(model)
        del model
        if names is None:
            names, ids = list(model_names), list(model_ids)
        elif list(model_names) != names:
            raise LskdError(
                f"diffusion: {path} is not scored on the classes of {paths[0]}; one data set only"
            )
        matrices.append(np.asarray(matrix, dtype=np.float64))
    selection = choose_classes(
        np.mean(matrices, axis=0), names, ids=ids, reference=f"the mean of {len(paths)} noLS teacher(s)"
    )
    log(f"diffusion: {source.units} a, b, c = {', '.join(selection.names)}: {selection.reason}")
    return selection
