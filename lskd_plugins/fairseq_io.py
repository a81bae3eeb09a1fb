"""The one place where lskd touches fairseq's loading machinery.

- ``register_plugins()`` registers the ``lskd_kd`` criterion and the ``lskd_translation`` task
  (what ``--user-dir lskd_plugins`` does), so that student checkpoints load from Python too.
- ``load_ensemble()`` loads one checkpoint or a ``:``-separated ensemble with one-line errors.

Reading and describing a checkpoint file (torch's weights-only default included) lives in
``lskd_plugins.checkpoints``; the names below that came from here are kept as thin aliases.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
from typing import Any, List, Sequence, Tuple, Union

from lskd_plugins import checkpoints
from lskd_plugins.checkpoints import describe as describe_object  # noqa: F401  (kept name)
from lskd_plugins.checkpoints import describe_file as describe_checkpoint_file
from lskd_plugins.checkpoints import trust_checkpoints
from lskd_plugins.errors import LskdError

PLUGIN_PACKAGES = ("lskd_plugins.criterions", "lskd_plugins.tasks")


def register_plugins() -> None:
    """Import every module of the criterion and task packages (each registers itself)."""
    trust_checkpoints()
    import fairseq  # noqa: F401  (registries must exist before our decorators run)

    for package_name in PLUGIN_PACKAGES:
        package = importlib.import_module(package_name)
        for info in pkgutil.iter_modules(package.__path__):
            if not info.name.startswith("_"):
                importlib.import_module(f"{package_name}.{info.name}")
    exit_codes_like_lskd()


def exit_codes_like_lskd() -> None:
    """Inside ``fairseq-train`` / ``fairseq-hydra-train``, an LskdError exits with lskd's codes (2: a
    usage error, 1: a failure) after its one line; Python itself exits 1 for any ``SystemExit``
    that carries a message. fairseq's CLIs run the training through ``distributed_utils.call_main``,
    looked up at call time, so wrapping that function (no change to fairseq's files) covers the
    task, criterion and teacher loading on every rank."""
    import sys

    from fairseq.distributed import utils as distributed_utils

    from lskd_plugins.errors import report

    original = distributed_utils.call_main
    if getattr(original, "lskd_exit_codes", False):
        return

    def call_main(*args, **kwargs):
        try:
            return original(*args, **kwargs)
        except LskdError as err:
            code = report(err)
            leave_process_group()
            sys.exit(code)

    call_main.lskd_exit_codes = True
    distributed_utils.call_main = call_main


def leave_process_group() -> None:
    """Tear down torch.distributed's group before an error exit: left to the interpreter's shutdown,
    gloo's threads may abort the process ("terminate called without an active exception"), which
    would bury the one-line error and replace lskd's exit code by SIGABRT's."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        try:
            dist.destroy_process_group()
        except Exception:  # noqa: BLE001  (best effort on the way out)
            pass


def split_paths(paths: Union[str, Sequence[str]]) -> List[str]:
    """'a.pt:b.pt' or ['a.pt', 'b.pt'] -> ['a.pt', 'b.pt'] (an ensemble)."""
    if isinstance(paths, (str, os.PathLike)):
        items = str(paths).split(":")
    else:
        items = [str(p) for p in paths]
    items = [p for p in (s.strip() for s in items) if p]
    if not items:
        raise LskdError("no checkpoint path given")
    return items


def check_readable(paths: Sequence[str], what: str = "checkpoint") -> None:
    for p in paths:
        checkpoints.check_file(p, what)


def wrong_kind_error(path: str, what: str) -> LskdError:
    """The one-line error for a file that is not the fairseq checkpoint expected as ``what``."""
    return checkpoints.wrong_kind(
        what,
        path,
        describe_checkpoint_file(path),
        "expected a fairseq translation checkpoint (checkpoint_best.pt / checkpoint_last.pt written by "
        "fairseq-train)",
    )


def load_ensemble(
    paths: Union[str, Sequence[str]],
    arg_overrides: dict | None = None,
    task: Any = None,
    what: str = "checkpoint",
) -> Tuple[list, Any, Any]:
    """Load fairseq models; returns (models, cfg, task). Errors name the offending path."""
    register_plugins()
    from fairseq import checkpoint_utils

    files = split_paths(paths)
    check_readable(files, what)
    models, cfg, loaded_task = [], None, task
    for f in files:
        try:
            m, cfg, loaded_task = checkpoint_utils.load_model_ensemble_and_task(
                [f], arg_overrides=arg_overrides, task=loaded_task
            )
        except LskdError:
            raise
        except Exception as err:
            if describe_checkpoint_file(f) != checkpoints.FAIRSEQ:
                raise wrong_kind_error(f, what) from None
            raise LskdError(f"cannot load {what} {f}: {type(err).__name__}: {err}") from None
        models.extend(m)
    return models, cfg, loaded_task
