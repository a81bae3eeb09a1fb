"""One run of the grid through the real tools, in-process (start-up would dominate small runs).

The engine's part: the command a run stands for (``command``, printed by ``--dry-run`` and kept in
each run's ``run.json``), the work itself (``execute``, returning the run's metrics), the diffusion
analysis of one seed's models, and the validation of every tool option before any training. What a
tool is and how it is called belongs to the run's modality (``lskd_plugins/study/modalities/``):
image-train for images; fairseq-train, lskd seqkd and lskd bleu for translation. An interrupted run
resumes from its own checkpoints (``image-train --resume``, fairseq's ``checkpoint_last.pt``,
``seqkd``'s shards).
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any, Dict, List

from lskd_plugins.errors import LskdError
from lskd_plugins.study import layout, messages
from lskd_plugins.study.grid import Run
from lskd_plugins.study.modalities.base import one_line_errors, options_argv  # noqa: F401 (the engine's API)

DIFFUSION_KEYS = ("eta", "fisher_ab", "leakage_ab", "p_b_given_a", "p_c_given_a")


def folder(ctx: Dict[str, Any], name: str) -> Path:
    return Path(ctx["folders"][name])


def modality(run: Run):
    from lskd_plugins.study import modalities

    return modalities.get(run.modality)


# -------------------------------------------------------------------------------------- diffusion
def diffusion(run: Run, ctx: Dict[str, Any]) -> Dict[str, Any]:
    """The analysis of one seed index's models on that index's sample (``run.tool_seed``); the three
    classes are the configuration's, or those the study's ``classes`` run chose (``run.classes_from``)."""
    from lskd_plugins.diffusion.report import write_outputs

    mod = modality(run)
    settings, out = dict(run.spec["settings"]), folder(ctx, run.name)
    models = [d for d in run.deps if d != run.classes_from]
    if run.classes_from:
        chosen = json.loads((folder(ctx, run.classes_from) / layout.RESULT_JSON).read_text())
        settings[mod.diffusion_choice] = ",".join(chosen["classes"])
    labels = [layout.short_name(m) for m in models]
    dev = None if ctx["cfg"]["device"] == "auto" else ctx["cfg"]["device"]
    records, projections = mod.analyse(run, ctx, models, settings, labels, dev)
    write_outputs(records, projections, out / layout.DIFFUSION_DIR)
    with open(out / "projections.pkl", "wb") as f:
        pickle.dump(projections, f)
    per_model = {m: {k: rec["valid"].get(k) for k in DIFFUSION_KEYS} for m, rec in zip(models, records)}
    classes = records[0].get("classes")
    names = [classes[k] for k in "abc"] if isinstance(classes, dict) else list(classes)
    return {
        "metrics": {},
        "per_model": per_model,
        "classes": names,
        "result_file": f"{layout.DIFFUSION_DIR}/diffusion.json",
    }


def choose_classes(run: Run, ctx: Dict[str, Any]) -> Dict[str, Any]:
    """The diffusion's three classes, chosen once for every seed index on the noLS teachers of all
    indices (``run.deps``), on the sample of ``run.tool_seed``."""
    dev = None if ctx["cfg"]["device"] == "auto" else ctx["cfg"]["device"]
    selection = modality(run).choose(run, ctx, list(run.deps), dict(run.spec["settings"]), dev)
    return {
        "metrics": {},
        "classes": list(selection.names),
        "reason": selection.reason,
        "scores": selection.scores,
        "models": list(run.deps),
    }


def validate(runs: List[Run], ctx: Dict[str, Any]) -> None:
    """Parse the options of one run of each sort with the tool's own parser, before any training:
    a misspelt or unknown option in the configuration stops with one line naming it."""
    seen = set()
    for run in runs:
        sort = (run.modality, run.role, run.kind)
        if sort in seen or run.role in ("diffusion", "seqkd", "classes"):
            continue
        seen.add(sort)
        mod = modality(run)
        with messages.recording_options() as names:
            extra = mod.unknown_options(run, ctx)
        if extra:
            part, sec = "teacher" if run.role == "teacher" else "student", ctx["cfg"][run.modality]
            raise LskdError(messages.unknown_option(run.modality, sec, part, extra[0], names, mod.trainer))


def command(run: Run, ctx: Dict[str, Any]) -> List[str]:
    """The command line this run stands for (the work itself runs in-process)."""
    if run.role == "diffusion":
        return [
            "lskd",
            "diffusion",
            run.modality,
            "--seed",
            str(run.tool_seed),
            "...",
            f"({len(run.deps)} models)",
        ]
    if run.role == "classes":
        n = len(run.deps)
        on = "the noLS teacher" if n == 1 else f"the {n} noLS teachers"
        what = f"(choose the three {modality(run).diffusion_choice} on {on})"
        return ["lskd", "diffusion", run.modality, "--seed", str(run.tool_seed), "...", what]
    return modality(run).command(run, ctx)


def execute(run: Run, ctx: Dict[str, Any]) -> Dict[str, Any]:
    if run.role == "diffusion":
        return diffusion(run, ctx)
    if run.role == "classes":
        return choose_classes(run, ctx)
    return modality(run).execute(run, ctx)
