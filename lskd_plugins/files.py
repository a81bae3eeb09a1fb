"""Atomic file writes: write a temporary file beside the target, then rename over it.

A killed run never leaves a half-written output that a rerun would mistake for a finished one
(every lskd command resumes by looking at what is on disk). The temporary name carries the
process id, so several processes writing into one folder (seqkd workers) never collide.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any, Callable, Dict, Iterable

DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
# torch.save reports a failed write (ENOSPC underneath) as a RuntimeError with one of these
TORCH_WRITE_FAILURES = ("unexpected pos", "file write failed", "PytorchStreamWriter failed")


def disk_full(path: os.PathLike | str):
    """The one-line failure (exit 1) for a file that could not be written because the disk is full."""
    from lskd_plugins.errors import LskdFailure

    return LskdFailure(
        f"cannot write {path}: the disk is full (no space left on device); free some space or "
        "choose an output on another disk, then rerun the same command"
    )


def is_disk_full(err: BaseException) -> bool:
    if isinstance(err, OSError):
        return err.errno in DISK_FULL_ERRNOS
    return isinstance(err, RuntimeError) and any(m in str(err) for m in TORCH_WRITE_FAILURES)


def _replace(path: Path, write: Callable[[Path], None]) -> Path:
    """Run ``write(tmp)``, then rename tmp over ``path``; on failure remove tmp, keep ``path``.
    A full disk (OSError ENOSPC, or torch.save's RuntimeError for it) is one line naming ``path``."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if is_disk_full(err):
            raise disk_full(path) from None
        raise
    return path


def write_text_atomic(path: os.PathLike | str, text: str, fsync: bool = False) -> Path:
    """UTF-8 text with '\\n' line ends; ``fsync`` also flushes it to disk before the rename."""

    def write(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
            if fsync:
                f.flush()
                os.fsync(f.fileno())

    return _replace(Path(path), write)


def write_lines_atomic(path: os.PathLike | str, lines: Iterable[str]) -> Path:
    """One line per item, each ended by '\\n'."""
    return write_text_atomic(path, "".join(line + "\n" for line in lines))


def save_figure_atomic(fig, path: os.PathLike | str, dpi: int | None = None) -> Path:
    """A matplotlib figure as PNG, written atomically (the figure stays open: the caller closes it)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    return _replace(target, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi))


def torch_save_atomic(obj: Any, path: os.PathLike | str) -> Path:
    """torch.save, so that a kill never leaves a truncated checkpoint."""
    import torch

    return _replace(Path(path), lambda tmp: torch.save(obj, tmp))


# ----------------------------------------------------------------------------- output ownership
OWNER_FILE = ".lskd-owner.json"


def check_writable(folder: os.PathLike | str, option: str = "--output") -> Path:
    """Create ``folder`` (and parents) and prove a file can be written there, before any work.

    Raises LskdError naming the option when the path is a file or cannot be written."""
    from lskd_plugins.errors import LskdError

    path = Path(folder)
    if path.exists() and not path.is_dir():
        raise LskdError(f"{option} {path} is a file, not a folder; give a folder path")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".lskd-write-test.{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise LskdError(
            f"{option} {path} is not writable ({err.strerror or err}); choose another folder"
        ) from None
    return path


def check_file_writable(path: os.PathLike | str, option: str = "--output-file") -> Path:
    """The folder of ``path`` exists (created) and is writable; ``path`` itself is not a folder."""
    from lskd_plugins.errors import LskdError

    p = Path(path)
    if p.is_dir():
        raise LskdError(f"{option} {p} is a folder; give a file path")
    blocking = next((a for a in p.parents if a.exists() and not a.is_dir()), None)
    if blocking is not None:
        raise LskdError(
            f"{option} {p}: {blocking} is a file, so no folder can be made there; choose another path"
        )
    check_writable(p.parent if str(p.parent) else Path("."), option)
    return p


def installation() -> list:
    """The folders every lskd command reads its own code from: the lskd_plugins package and the
    Python environment (``sys.prefix``). An output that is or holds one of them would delete the
    program itself."""
    import sys

    return [Path(__file__).resolve().parent, Path(sys.prefix).resolve()]


def _relation(out: Path, inp: Path, option: str) -> str | None:
    """How ``out`` (a real path) meets ``inp`` (a real path): None when they are apart."""
    if out == inp:
        return "the same path"
    if inp.is_relative_to(out):
        return f"the input lies inside {option}"
    if inp.is_dir() and out.is_relative_to(inp):
        return f"{option} lies inside the input"
    return None


def refuse_overlap(
    output: os.PathLike | str,
    inputs: Iterable[os.PathLike | str | None],
    option: str = "--output",
    own: Iterable[os.PathLike | str] = (),
) -> None:
    """Refuse, before any file is touched, an output that is, contains, or lies inside an input.

    ``output`` is what the command writes, empties or replaces (a folder, or one file); ``inputs``
    are everything the command (and any run it starts) reads. Paths are compared as real paths
    (symlinks resolved), so a link to the data is the data. ``own`` names paths inside ``output``
    that the command itself recreates (its embedded data, what its own ``prepare`` step writes):
    an input at or under one of them may go. The lskd package and the Python environment are
    inputs of every command (``installation``). Raises LskdError (exit 2), one line."""
    from lskd_plugins.errors import LskdError

    out = Path(output).expanduser().resolve()
    mine = [Path(p).expanduser().resolve() for p in own]
    for item in inputs:
        if item is None or str(item) == "":
            continue
        inp = Path(item).expanduser().resolve()
        if any(inp.is_relative_to(m) for m in mine):
            continue
        why = _relation(out, inp, option)
        if why is not None:
            raise LskdError(
                f"{option} {output} would write over the input {item} ({why}); choose a separate folder"
            )
    for inp in installation():
        if out == inp or inp.is_relative_to(out):
            raise LskdError(
                f"{option} {output} would write over lskd's own installation ({inp}); "
                "choose a separate folder"
            )


def claim_output(
    folder: os.PathLike | str, owner: Dict[str, Any], overwrite: bool = False, option: str = "--output"
) -> Path:
    """Make ``folder`` this command's output, or refuse to touch another command's results.

    ``owner`` names the command and the settings that make its results (a run key where there is
    one); it is written to ``folder/.lskd-owner.json``. The same owner may reuse and resume the
    folder; an empty folder is claimed; a folder with other files, or another owner's, is refused
    unless ``overwrite`` is set (then its old contents are removed first)."""
    import json
    import shutil

    from lskd_plugins.errors import LskdError

    refuse_overlap(folder, (), option)  # never empty lskd's own installation
    path = check_writable(folder, option)
    marker = path / OWNER_FILE
    current = None
    if marker.is_file():
        try:
            current = json.loads(marker.read_text())
        except (OSError, ValueError):
            if not overwrite:
                raise LskdError(
                    f"{marker} (the record of which command made {path}'s files) is unreadable or cut short; "
                    "delete it if you know the files are this command's, or pass --overwrite to replace them"
                ) from None
            current = None
    entries = [p for p in path.iterdir() if not p.name.startswith(".lskd-write-test")]
    if current == owner:
        return path
    if entries and not overwrite:
        if current is None:
            why = "holds files that lskd did not write there"
        else:
            changed = sorted(k for k in set(owner) | set(current) if owner.get(k) != current.get(k))
            why = f"holds results made with other settings ({', '.join(changed[:6])})"
        raise LskdError(f"{option} {path} {why}; choose another folder or pass --overwrite to replace them")
    if entries and overwrite:
        for p in entries:
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
    write_text_atomic(marker, json.dumps(owner, indent=1, sort_keys=True, default=str) + "\n")
    return path


def claim_output_file(
    path: os.PathLike | str, owner: Dict[str, Any], overwrite: bool = False, option: str = "--output-file"
) -> Path:
    """A JSON result file: writable, and either absent or an earlier result of this same ``owner``
    (stored under the file's ``"owner"`` key); anything else is refused unless ``overwrite``."""
    import json

    from lskd_plugins.errors import LskdError

    p = check_file_writable(path, option)
    if p.exists() and not overwrite:
        try:
            earlier = json.loads(p.read_text(encoding="utf-8")).get("owner")
        except (OSError, ValueError, AttributeError):
            earlier = None
        if earlier != owner:
            raise LskdError(
                f"{option} {p} exists and is not an earlier result of this command with these inputs; "
                "choose another file or pass --overwrite to replace it"
            )
    return p
