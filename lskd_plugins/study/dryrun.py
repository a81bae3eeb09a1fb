"""``lskd study --dry-run``: the commands a user can paste, run for run, with the data's preparation
first.

The study runs its tools in process; ``runners.command`` gives the command each run stands for.
Here that becomes lines a shell runs: a translation run is ``fairseq-train ...`` then ``lskd bleu
...`` on its checkpoint; a diffusion analysis is ``lskd diffusion image|nmt ...`` on its models'
checkpoints, its three classes read from the ``classes`` run's ``result.json`` by a shell
substitution when the study chooses them; the ``classes`` choice itself (over the noLS teachers of
every seed index, a thing no single lskd command does) is a ``#`` comment line. Data: the
configured ``prepare`` command, or the commands that write the embedded data.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any, Dict, List

from lskd_plugins.study import layout, modalities, runners
from lskd_plugins.study.config import substitute

# the ``lskd diffusion`` subcommand of each modality (the modality's name where it is the same)
DIFFUSION_SUBCOMMAND = {"translation": "nmt"}
CLASSES_FROM = (
    '$(python -c \'import json, sys; print(",".join(json.load(open(sys.argv[1]))["classes"]))\' {path})'
)


def folder(ctx: Dict[str, Any], name: str) -> Path:
    return Path(ctx["folders"][name])


def bleu_command(run, ctx: Dict[str, Any]) -> List[str]:
    """``lskd bleu`` as the study scores a translation run (its first test set)."""
    sec = ctx["cfg"][run.modality]
    return [
        "lskd",
        "bleu",
        "--data",
        str(ctx["data"][run.modality]),
        "--path",
        str(folder(ctx, run.name) / sec["checkpoint"]),
        "--subset",
        "test",
        "--beam",
        str(sec["beam"]),
        "--max-len-b",
        str(sec["max_len_b"]),
        "--max-tokens",
        str(sec["decode_max_tokens"]),
        "--output",
        str(folder(ctx, run.name) / layout.EVAL_DIR),
    ]


def diffusion_line(run, ctx: Dict[str, Any]) -> str:
    """``lskd diffusion <image|nmt>`` on the run's models (a shell line: the classes may be read from
    the ``classes`` run's result by a substitution)."""
    mod = modalities.get(run.modality)
    models = [d for d in run.deps if d != run.classes_from]
    argv = ["lskd", "diffusion", DIFFUSION_SUBCOMMAND.get(run.modality, run.modality), "--checkpoints"]
    argv += [str(mod.checkpoint(ctx, m)) for m in models]
    argv += ["--labels", *[layout.short_name(m) for m in models], "--data", str(ctx["data"][run.modality])]
    argv += ["--output", str(folder(ctx, run.name) / layout.DIFFUSION_DIR), "--no-progress"]
    if getattr(run, "tool_seed", None) is not None and "--seed" in diffusion_flags(argv[2]):
        argv += ["--seed", str(run.tool_seed)]
    settings = dict(run.spec.get("settings") or {})
    choice = mod.diffusion_choice
    for key, value in settings.items():
        if key != choice and value not in (None, False, True):
            argv += [f"--{key.replace('_', '-')}", str(value)]
    line = shlex.join(argv)
    if settings.get(choice):
        return line + f" --{choice} {shlex.quote(str(settings[choice]))}"
    if run.classes_from:
        path = shlex.quote(str(folder(ctx, run.classes_from) / layout.RESULT_JSON))
        return line + f' --{choice} "{CLASSES_FROM.format(path=path)}"'
    return line


def diffusion_flags(sub: str) -> set:
    """The option strings of ``lskd diffusion <sub>`` (its own parser)."""
    from lskd_plugins.cli import build_parser

    parser = build_parser("diffusion")
    for action in parser._subparsers._group_actions:
        diffusion = action.choices["diffusion"]
        for inner in diffusion._subparsers._group_actions:
            return {s for a in inner.choices[sub]._actions for s in a.option_strings}
    return set()


def run_lines(run, ctx: Dict[str, Any]) -> List[str]:
    """The shell lines of one run."""
    if run.role == "diffusion":
        return [diffusion_line(run, ctx)]
    if run.role == "classes":
        return [
            f"# the three {modalities.get(run.modality).diffusion_choice}, chosen in process on "
            f"{teachers(len(run.deps))} "
            "(lskd_plugins.study.runners.choose_classes); the diffusion lines below read them"
        ]
    cmd = runners.command(run, ctx)
    if "&&" in cmd:  # fairseq-train && lskd bleu ...
        return [shlex.join(cmd[: cmd.index("&&")]), shlex.join(bleu_command(run, ctx))]
    return [shlex.join(cmd)]


def prepare_lines(cfg: Dict[str, Any], data: Dict[str, str]) -> List[str]:
    """The data's preparation: the configured ``prepare`` command, or the embedded data's writers."""
    lines = []
    for mod in modalities.present(cfg):
        sec, path = cfg[mod.name], data[mod.name]
        if sec.get("prepare"):
            cmd = [substitute(str(c), cfg, path) for c in sec["prepare"]["command"]]
            lines.append(shlex.join(cmd))
        elif sec["data"] == mod.embedded:
            lines += [shlex.join(c) for c in embedded_commands(mod, sec, Path(path))]
    return lines


def embedded_commands(mod, sec: Dict[str, Any], path: Path) -> List[List[str]]:
    """The commands that write a modality's embedded data at ``path``, as the study does in process
    (``Modality.prepare_embedded``), by the embedded data's name."""
    if sec["data"] == "synth":  # the embedded corpus, then its data-bin at path
        s, text = sec["synth"], path.parent / "text"
        synth = ["lskd", "synth-mt", "--output", str(text), "--size", str(s.get("size", 4000))]
        synth += ["--seed", str(s.get("seed", 1)), "--valid", str(s.get("valid", 200))]
        synth += ["--test", str(s.get("test", 200))]
        pre = ["fairseq-preprocess", "--source-lang", "en", "--target-lang", "de"]
        pre += ["--trainpref", str(text / "train"), "--validpref", str(text / "valid")]
        pre += ["--testpref", str(text / "test"), "--destdir", str(path), "--joined-dictionary"]
        return [synth, pre + ["--workers", "1"]]
    return [["lskd", "digits", "--output", str(path)]]


def teachers(n: int) -> str:
    """'the noLS teacher' or 'the 3 noLS teachers'."""
    return "the noLS teacher" if n == 1 else f"the {n} noLS teachers"
