"""Reading zip and tar archives (data_prep/) with one line for a damaged one.

A truncated download or a corrupt member surfaces from Python as one of several exceptions
(``zipfile.BadZipFile`` for a bad CRC, ``zlib.error`` for a broken deflate or gzip stream,
``EOFError`` or ``tarfile.ReadError`` for a cut-off file, ``lzma.LZMAError``, ``OSError``);
``damaged`` turns each into one ``lskd: error:`` line naming the archive and the member, exit 1
(a failure: the input is broken, the command was right). Errors of writing (a full disk) are not
caught here: they are raised around the reading, not by it.
"""

from __future__ import annotations

import errno
import lzma
import tarfile
import zipfile
import zlib
from pathlib import Path

from lskd_plugins.errors import LskdFailure

READ_ERRORS = (zipfile.BadZipFile, tarfile.TarError, zlib.error, lzma.LZMAError, EOFError, OSError)

ZIP_MAGIC = b"PK\x03\x04"


WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT)  # a full disk while unpacking is not a damaged archive


def damaged(archive: Path | str, member: str | None, err: BaseException) -> BaseException:
    """The one-line failure for a damaged archive (a full disk's OSError is returned as it is)."""
    if isinstance(err, OSError) and err.errno in WRITE_ERRNOS:
        return err
    what = f"member {member}" if member else "its table of contents"
    detail = str(err).splitlines()[0] if str(err) else type(err).__name__
    return LskdFailure(
        f"{archive} is damaged: cannot read {what} ({detail}); download or copy the archive again"
    )


def read_zip_member(archive: zipfile.ZipFile, name: str, source: Path | str) -> bytes:
    try:
        return archive.read(name)
    except READ_ERRORS as err:
        raise damaged(source, name, err) from None


def read_tar_member(tar: tarfile.TarFile, member: tarfile.TarInfo, source: Path | str) -> bytes:
    try:
        return tar.extractfile(member).read()
    except READ_ERRORS as err:
        raise damaged(source, member.name, err) from None


def looks_like_zip(path: Path) -> bool:
    """A file that starts as a zip does (``zipfile.is_zipfile`` is False when its end is cut off)."""
    try:
        with open(path, "rb") as f:
            return f.read(4) == ZIP_MAGIC
    except OSError:
        return False


def tar_members(tar: tarfile.TarFile, source: Path | str):
    """Iterate over a tar's members; a damaged header or a cut-off stream names the last member read."""
    last = None
    it = iter(tar)
    while True:
        try:
            member = next(it)
        except StopIteration:
            break
        except READ_ERRORS as err:
            raise damaged(source, f"after {last}" if last else None, err) from None
        last = member.name
        yield member
        # tarfile ends quietly when the cut falls on a member header: a gzip stream proves its own end
    check_gzip_complete(source, last)


def check_gzip_complete(source: Path | str, last: str | None) -> None:
    """A gzip-compressed archive read to its end (tarfile may stop at a cut header without a word)."""
    import gzip

    try:
        with open(source, "rb") as f:
            if f.read(2) != b"\x1f\x8b":
                return
        with gzip.open(source, "rb") as f:
            while f.read(1 << 20):
                pass
    except READ_ERRORS as err:
        raise damaged(source, f"after {last}" if last else None, err) from None
