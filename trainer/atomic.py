"""One way to write a file so that a crash leaves the old or the new version,
never half of one: a temporary file beside it, fsynced, renamed (or linked)
into place, then the folder fsynced. Session files, sweep records, study
state, checkpoints and exports all write through here.
"""

from __future__ import annotations

import os
from pathlib import Path


def _write_temp(tmp: Path, data: str | bytes) -> None:
    mode, encoding = ("wb", None) if isinstance(data, bytes) else ("w", "utf-8")
    with open(tmp, mode, encoding=encoding) as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def write_atomic(path: Path, data: str | bytes) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves old or new, never half."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        _write_temp(tmp, data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def write_new(path: Path, data: str | bytes) -> None:
    """Create ``path`` holding ``data``, failing with FileExistsError if it
    exists. The data is written to a temporary file first and hard-linked into
    place, so the name never points at an empty or half-written file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.new")
    try:
        _write_temp(tmp, data)
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise
        except OSError:  # no hard links here: exclusive create, then replace
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    """Make a rename durable; some filesystems cannot open a folder, which is fine."""
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)
