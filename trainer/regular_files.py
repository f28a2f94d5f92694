"""Reading a file that may not be what its name says.

A sessions or data folder is untrusted: a FIFO named ``x.json`` blocks a plain
``open()`` until something writes to it, a link to ``/dev/zero`` never ends, a
huge file fills the memory. Files are therefore checked to be regular before
they are opened (following links), opened with O_NONBLOCK (a FIFO swapped in
meanwhile cannot block), checked again on the open descriptor, and read up to
a limit.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


class NotRegularFile(Exception):
    """A file refused before it was read; the message says why, without the path."""


def kind_of(mode: int) -> str:
    return next((name for test, name in KINDS if test(mode)), "not a regular file")


def _size_text(count: int) -> str:
    return f"{count / 2**20:.0f} MiB" if count >= 2**20 else f"{count:,} bytes"


def open_regular_file(path: Path | str, limit: int | None = None) -> BinaryIO:
    """Open ``path`` for binary reading if it is a regular file of at most
    ``limit`` bytes; NotRegularFile if not, OSError if it cannot be opened."""
    mode = os.stat(path).st_mode  # refuse a device before opening it: opening some has effects
    if not stat.S_ISREG(mode):
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(21, "Is a directory", str(path))
        raise NotRegularFile(f"is {kind_of(mode)}, not a regular file")
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    descriptor = os.open(path, flags | getattr(os, "O_CLOEXEC", 0))
    try:
        info = os.fstat(descriptor)  # the file opened, which may not be the one checked
        if not stat.S_ISREG(info.st_mode):
            raise NotRegularFile(f"is {kind_of(info.st_mode)}, not a regular file")
        if limit is not None and info.st_size > limit:
            raise NotRegularFile(f"is too large ({info.st_size:,} bytes; the limit is {_size_text(limit)})")
        return os.fdopen(descriptor, "rb")
    except BaseException:
        os.close(descriptor)
        raise


def read_regular_file(path: Path | str, limit: int) -> bytes:
    """All of ``path``, a regular file of at most ``limit`` bytes (checked
    again while reading: a file can grow after it was measured)."""
    with open_regular_file(path, limit) as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise NotRegularFile(f"is too large (over {_size_text(limit)})")
    return data
