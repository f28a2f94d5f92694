"""One process trains a session at a time.

The process training a session holds an exclusive ``flock`` on ``<id>.lock``
beside it for as long as it writes the session; the lock file holds its pid
for the message. The kernel drops the lock when the process ends, however it
ends, so a killed run never leaves a session locked. Resuming a session and
deleting one both need the lock.
"""

from __future__ import annotations

import os
from pathlib import Path

try:
    import fcntl
except ImportError:  # no flock here (Windows): sessions are not locked
    fcntl = None


class SessionBusy(Exception):
    """The session is being trained by another process; the message says which."""


def lock_path(session_path: Path) -> Path:
    return session_path.with_name(session_path.stem + ".lock")


class SessionLock:
    """An exclusive lock on one session, taken with ``acquire`` (which raises
    SessionBusy when another process holds it) and given back with ``release``."""

    def __init__(self, session_path: Path) -> None:
        self.path = lock_path(Path(session_path))
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> SessionLock:
        if self._fd is not None or fcntl is None:
            return self
        while True:
            fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pid = _read_pid(fd)
                os.close(fd)
                raise SessionBusy(
                    f"{self.path.with_suffix('.json').name} is being trained by another process"
                    + (f" (pid {pid})" if pid else "")
                ) from None
            # the holder before us may have removed the file after we opened it
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        self.path.unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = None


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        return int(text) if text.isdigit() else None
    except OSError:
        return None


def is_busy(session_path: Path) -> str | None:
    """Why ``session_path`` cannot be changed now (another process trains it), or None."""
    lock = SessionLock(session_path)
    try:
        lock.acquire()
    except SessionBusy as exc:
        return str(exc)
    except OSError:
        return None  # an unwritable folder: nobody can be training into it
    lock.release()
    return None
