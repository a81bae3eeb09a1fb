"""What ``lskd study CONFIG --miniature`` adds to the study's own path (``lskd_plugins.study.main``).

The miniature's folder ``M`` (``--output``, else the configured output + ``-miniature``) holds
``M/raw/`` (the miniature raw data, the preparation's inputs), ``M/hf-cache/`` (timm weights for
``pretrained: true``) and ``M/study/``, the study folder itself (kept apart from its inputs, as a
study folder must be). ``image.teacher_init`` naming a study folder ``X`` (the CUB teachers' ImageNet
study) becomes the miniature of ``X`` beside ``M``; when that miniature has no finished teachers
yet, it is run first, from the shipped configuration whose ``output`` is ``X``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

from lskd_plugins.errors import LskdError
from lskd_plugins.study.miniature.rewrite import NOTE, miniature_doc, miniature_output

STUDY, RECIPES = "study", Path(__file__).resolve().parents[3] / "recipes" / "study"


def root_of(doc: Dict[str, Any], explicit_output: bool) -> Path:
    output = str(doc.get("output") or "study_out")
    return Path(output if explicit_output else miniature_output(output))


def chained_study(folder: str, root: Path) -> Path:
    """The miniature of the study folder ``folder`` that a miniature at ``root`` reads."""
    return root.parent / miniature_output(Path(str(folder).rstrip("/")).name) / STUDY


def recipe_for(folder: str) -> Path:
    """The shipped configuration whose ``output`` is ``folder`` (the study teacher_init names)."""
    import yaml

    want = Path(str(folder).rstrip("/"))
    for path in sorted(RECIPES.glob("*.yaml")):
        output = (yaml.safe_load(path.read_text()) or {}).get("output")
        if output and Path(str(output).rstrip("/")) == want:
            return path
    raise LskdError(
        f"image.teacher_init: {folder} is no shipped study's output (recipes/study/*.yaml); run the "
        f"miniature of its configuration with --output {chained_study(folder, Path('.')).parent} first"
    )


def run_chained(folder: str, root: Path, log) -> None:
    """The teachers' study miniature, run first when it has no finished teachers."""
    from lskd_plugins.study import layout

    target = chained_study(folder, root)
    if any(s.get("role") == "teacher" for _, s, _ in layout.finished_runs(target, "image")):
        return
    recipe = recipe_for(folder)
    cmd = [sys.executable, "-m", "lskd_plugins.cli", "study", str(recipe), "--miniature"]
    cmd += ["--output", str(target.parent), "--no-progress"]
    log(f"miniature: image.teacher_init: the teachers come from the miniature of {recipe.name}: running it")
    if subprocess.run(cmd).returncode != 0:
        raise LskdError(f"the miniature of {recipe} failed (its lines above); fix it, then rerun this one")


def make_miniature(doc: Dict[str, Any], explicit_output: bool, dry_run: bool, overwrite: bool, log=print):
    """The miniature configuration (the study folder ``M/study``); prints one line per replacement."""
    from lskd_plugins.files import claim_output

    root = root_of(doc, explicit_output)
    if not dry_run:
        claim_output(root, {"command": "lskd study --miniature"}, overwrite)
    doc = {**doc, "output": str(root)}
    mini, lines = miniature_doc(doc, explicit_output=True, dry_run=dry_run, out=root)
    mini["output"] = str(root / STUDY)
    init = (mini.get("image") or {}).get("teacher_init")
    if isinstance(init, str):
        mini["image"]["teacher_init"] = str(chained_study(init, root))
        lines.append(f"image.teacher_init: {init} -> {mini['image']['teacher_init']} (its miniature)")
        if not dry_run:
            run_chained(init, root, log)
    for line in lines:
        log(f"miniature: {line}")
    return mini


def mark_report(out: Path) -> None:
    """report.md opens with the note, report.json carries it (``miniature``)."""
    import json

    from lskd_plugins.files import write_text_atomic

    md, js = Path(out) / "report.md", Path(out) / "report.json"
    if md.is_file():
        text = md.read_text()
        title, _, rest = text.partition("\n")
        write_text_atomic(md, f"{title}\n\n**{NOTE[0].upper() + NOTE[1:]}.**\n{rest}")
    if js.is_file():
        doc = json.loads(js.read_text())
        write_text_atomic(js, json.dumps({"miniature": NOTE, **doc}, indent=1) + "\n")


def replacement_lines(lines: List[str]) -> List[str]:
    return [line for line in lines if line.startswith("miniature: ")]
