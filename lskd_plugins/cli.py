"""The ``lskd`` console command: one entry point, subcommands imported lazily.

Each subcommand lives in its own module exposing ``add_arguments(parser)`` and ``main(args)``;
importing fairseq or timm only happens for the subcommand that needs it.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import List

from lskd_plugins import __version__
from lskd_plugins.errors import LskdError, OneLineParser, report

# name -> (module, one-line help)
SUBCOMMANDS = {
    "synth-mt": ("lskd_plugins.nmt.synth_mt", "write the embedded synthetic parallel corpus"),
    "prepare-mt": ("lskd_plugins.nmt.prepare", "raw parallel text -> sentencepiece -> fairseq data-bin"),
    "seqkd": ("lskd_plugins.nmt.seqkd", "sequence-level KD data: decode a corpus with a teacher"),
    "bleu": ("lskd_plugins.nmt.bleu", "decode and score a translation checkpoint (sacreBLEU, chrF)"),
    "digits": ("lskd_plugins.image.digits", "scikit-learn's 8x8 digits as an ImageFolder"),
    "image-train": ("lskd_plugins.image.train", "train an image teacher or KD student (timm)"),
    "image-eval": ("lskd_plugins.image.evaluate", "evaluate an image checkpoint (top-1/5, NLL, ECE)"),
    "diffusion": ("lskd_plugins.diffusion.cli", "systematic-diffusion analysis: numbers and plots"),
    "cache-teacher": ("lskd_plugins.nmt.teacher_cache", "store a teacher's outputs once for word-level KD"),
    "study": ("lskd_plugins.study", "the one-command study: teachers, students, diffusion, report"),
}


# A missing framework is a set-up problem, not a bug: one line saying how to install it.
THIRD_PARTY_HINTS = {
    "fairseq": "fairseq is not installed in this environment; lskd needs the fairseq built by "
    "`make install` (fairseq-fixed 0.12.3.1; upstream fairseq 0.12.2 does not import on Python 3.11): "
    "see README, 'Install into your own environment'",
    "timm": "timm is not installed in this environment; pip install timm (see README, "
    "'Install into your own environment')",
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="lskd",
        description="Should the teacher use label smoothing, and at what temperature should you "
        "distil from it? Tools for the LS/KD compatibility study (ICML 2022).",
    )
    parser.add_argument("--version", action="version", version=f"lskd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == only:
            module = importlib.import_module(module_name)
            module.add_arguments(p)
            p.set_defaults(_module=module)
    return parser


def quiet_library_noise() -> None:
    """torch's, fairseq's and hydra's deprecation chatter at import is not for lskd's users: stderr
    keeps lskd's own lines (a user error is then the one line it should be). ``PYTHONWARNINGS`` or
    ``-W`` still show everything."""
    import logging
    import warnings

    logging.getLogger("matplotlib").setLevel(logging.WARNING)  # fairseq may set the root logger to DEBUG
    if sys.warnoptions:
        return
    for category in (FutureWarning, DeprecationWarning):
        warnings.filterwarnings("ignore", category=category)
    warnings.filterwarnings("ignore", message=".*TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD.*")
    logging.getLogger("fairseq.tasks.text_to_speech").setLevel(logging.WARNING)  # "install tensorboardX"
    from lskd_plugins.study.messages import quiet_fairseq_user_dir

    quiet_fairseq_user_dir()  # "--user-dir=... has already been imported" at every parse


def main(argv: List[str] | None = None) -> int:
    try:
        return run(argv)
    except ModuleNotFoundError as err:
        root = (err.name or "").split(".")[0]
        if root in THIRD_PARTY_HINTS:
            return report(LskdError(THIRD_PARTY_HINTS[root]))
        raise


def run(argv: List[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    quiet_library_noise()
    parser = build_parser(command if command in SUBCOMMANDS else None)
    args, extra = parser.parse_known_args(argv)
    if extra:  # argparse would say "lskd: error: lskd: unrecognized arguments" (the prefix twice)
        where = f"lskd {args.command}" if getattr(args, "command", None) else "lskd"
        return report(LskdError(f"unrecognized arguments: {' '.join(extra)} (see {where} --help)"))
    if getattr(args, "_module", None) is None:
        parser.print_help()
        return 0 if not argv or argv[0] in ("-h", "--help") else 2
    try:
        result = args._module.main(args)
    except LskdError as err:
        return report(err)
    except (OSError, RuntimeError) as err:  # a full disk outside the atomic writers: one line, exit 1
        from lskd_plugins.files import disk_full, is_disk_full

        if not is_disk_full(err):
            raise
        return report(disk_full(getattr(err, "filename", None) or "an output file"))
    except KeyboardInterrupt:
        print("lskd: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
