"""Session files on disk: where they live, listing a folder, finding one by
id, the checkpoint beside each, deleting."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from fmlab.trainer.sessions.format import (
    SessionError,
    SessionSummary,
    _check_header,
    _decode_config,
    _decode_results,
    _read_json,
    _Reader,
    effective_status,
)


def default_sessions_dir() -> Path:
    return Path(os.environ.get("FMLAB_SESSIONS") or "sessions")


def checkpoint_path(session_path: Path) -> Path:
    """The sidecar holding model and optimizer state for resuming."""
    return session_path.with_name(session_path.stem + ".state.pt")


def delete_session(path: Path) -> None:
    """Remove a session file and its checkpoint sidecar."""
    checkpoint_path(path).unlink(missing_ok=True)
    path.unlink(missing_ok=True)


def summarize_file(path: Path) -> SessionSummary:
    """The listing fields, from the file's first line when it is intact."""
    try:
        with open(path, encoding="utf-8") as handle:
            first = handle.readline()
    except (OSError, UnicodeDecodeError):
        first = ""
    data = None
    if first.endswith(",\n"):
        try:
            data = json.loads(first[:-2] + "}")
        except (json.JSONDecodeError, RecursionError):
            data = None
    if data is None:  # an older or hand-edited layout: read it all
        data = _read_json(path)
    r = _Reader(path, data)
    _check_header(r)
    config = _decode_config(r)
    results = _decode_results(r.child("results", optional=True))
    return SessionSummary(
        id=r.get("id", (str,)),
        path=path,
        status=effective_status(r.data["status"], r.get("pid", (int,)), r.get("host", (str,))),
        created=r.get("created", (str,)),
        arch=config.model.name,
        lr=config.optimizer.lr,
        optimizer=config.optimizer.name,
        epochs=config.epochs,
        epochs_done=results.epochs_done if results else 0,
        final_test_acc=results.final_test_acc if results else None,
        best_test_acc=results.best_test_acc if results else None,
        converged_epoch=results.converged_epoch if results else None,
    )


def folder_signature(directory: Path) -> tuple:
    """Names, sizes and times of the folder's session files: equal signatures
    mean a listing would read the same files again."""
    try:
        entries = [e for e in os.scandir(directory) if e.name.endswith(".json")]
        return tuple(sorted((e.name, e.stat().st_mtime_ns, e.stat().st_size) for e in entries))
    except OSError:
        return ()


def list_sessions(directory: Path) -> tuple[list[SessionSummary], list[str]]:
    """Readable sessions (newest first) and one problem line per unreadable file."""
    if not directory.is_dir():
        return [], []
    good, bad = [], []
    for path in sorted(directory.glob("*.json")):
        try:
            good.append(summarize_file(path))
        except SessionError as exc:
            bad.append(str(exc))
    good.sort(key=lambda s: (s.created, s.id), reverse=True)
    return good, bad


class ListingCache:
    """A folder's last listing, handed out again while the folder is unchanged
    (same names, sizes and times), so a listing can be prepared in advance."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entry: tuple[Path, tuple, tuple[list[SessionSummary], list[str]]] | None = None

    def listing(self, directory: Path) -> tuple[list[SessionSummary], list[str]]:
        """list_sessions(directory), the same object while nothing changed."""
        signature = folder_signature(directory)
        with self._lock:
            entry = self._entry
        if entry is not None and signature and entry[:2] == (directory, signature):
            return entry[2]
        result = list_sessions(directory)
        with self._lock:
            self._entry = (directory, signature, result)
        return result


def find_session(directory: Path, ref: str) -> Path:
    """A session file from its id, a unique id prefix, or a path."""
    as_path = Path(ref)
    if as_path.suffix == ".json" and (as_path.exists() or as_path.parent != Path(".")):
        return as_path
    exact = directory / f"{ref}.json"
    if exact.exists():
        return exact
    matches = sorted(directory.glob(f"{ref}*.json")) if directory.is_dir() else []
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise SessionError(f"no session {ref!r} in {directory}")
    raise SessionError(f"{ref!r} matches {len(matches)} sessions in {directory}; give more of the id")
