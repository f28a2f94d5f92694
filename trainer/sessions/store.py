"""Session files on disk: where they live, listing a folder, finding one by
id, the checkpoint beside each, deleting.

A sessions folder holds session files, and may hold folders of them: a
study's runs (``fmlab reproduce`` keeps ``sessions/<study>/*.json``). Listing
and finding look one and two folders down too, and a session found there is
of that study. ``sweeps/`` (sweep records) and hidden folders are not looked
into, nor are links to folders.

Names in the folder are untrusted like the files: an id given on the command
line is matched literally (a prefix of a file name, never a glob pattern), and
only regular files are read (see decode). ``latest`` and ``-1``, ``-2``...
name the newest sessions.
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import replace
from pathlib import Path

from fmlab.trainer.sessions.decode import decode_header, read_header
from fmlab.trainer.sessions.format import SessionError, SessionSummary
from fmlab.trainer.sessions.lock import SessionBusy, SessionLock
from fmlab.trainer.text import has_hidden_characters, visible

# How deep below the sessions folder session files are looked for: a study
# of a reproduction is sessions/<study>/, and a reproduction's folder as a
# whole is <out>/sessions/<study>/.
MAX_DEPTH = 2
NOT_SESSIONS = frozenset(["sweeps"])  # sweep records, beside the sessions
NEWEST = re.compile(r"-([1-9][0-9]*)")


def default_sessions_dir() -> Path:
    return Path(os.environ.get("FMLAB_SESSIONS") or "sessions")


def checkpoint_path(session_path: Path) -> Path:
    """The sidecar holding model and optimizer state for resuming."""
    return session_path.with_name(session_path.stem + ".state.pt")


def delete_session(path: Path) -> None:
    """Remove a session file and its checkpoint sidecar. SessionBusy while a
    process trains it: its next epoch would write the file back."""
    lock = SessionLock(path)
    try:
        lock.acquire()
    except SessionBusy as exc:
        raise SessionBusy(f"{exc}; stop that run first") from None
    except OSError:
        lock = None  # a read-only folder: nothing can be training into it
    try:
        checkpoint_path(path).unlink(missing_ok=True)
        path.unlink(missing_ok=True)
    finally:
        if lock is not None:
            lock.release()


class FileProblem(str):
    """One line saying why a file in the folder was skipped; ``path`` is the file."""

    path: Path

    def __new__(cls, path: Path, message: str) -> FileProblem:
        line = super().__new__(cls, message)
        line.path = path
        return line


def summarize_file(path: Path) -> SessionSummary:
    """The listing fields, from the file's header (its first line when intact)."""
    header = decode_header(path, read_header(path))
    config, results = header["config"], header["results"]
    return SessionSummary(
        batch_size=config.batch_size,
        seed=config.seed,
        id=header["id"],
        path=path,
        status=header["status"],
        created=header["created"],
        arch=config.model.name,
        lr=config.optimizer.lr,
        optimizer=config.optimizer.name,
        epochs=config.epochs,
        epochs_done=results.epochs_done if results else 0,
        final_test_acc=results.final_test_acc if results else None,
        best_test_acc=results.best_test_acc if results else None,
        converged_epoch=results.converged_epoch if results else None,
        best_epoch=results.best_epoch if results else None,
        lowest_test_loss_epoch=results.lowest_test_loss_epoch if results else None,
        train_data=header["train_data"],
    )


def session_file_names(directory: Path) -> list[str]:
    """The names of the folder's session files (``*.json``, hidden ones
    left out, as a shell glob would), and those of its study folders as
    ``study/name.json``, sorted; none when it is no folder."""
    return sorted(_names_below(directory, "", MAX_DEPTH))


def _names_below(directory: Path, prefix: str, depth: int) -> list[str]:
    names, folders = [], []
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                if entry.name.endswith(".json"):
                    names.append(prefix + entry.name)
                elif depth and entry.name not in NOT_SESSIONS and _is_folder(entry):
                    folders.append(entry.name)
    except (OSError, ValueError):  # missing, not a folder, unreadable, NUL in the name
        return []
    for name in folders:
        names += _names_below(Path(directory) / name, f"{prefix}{name}/", depth - 1)
    return names


def _is_folder(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir(follow_symlinks=False)  # a link could lead anywhere, or in a circle
    except OSError:
        return False


def study_of(name: str) -> str:
    """The study folder of a name session_file_names gave ("" at the top)."""
    return name.rpartition("/")[0]


def folder_signature(directory: Path) -> tuple:
    """Names, sizes and times of the folder's session files: equal signatures
    mean a listing would read the same files again."""
    signature = []
    for name in session_file_names(directory):
        try:
            info = os.stat(directory / name)
            signature.append((name, info.st_mtime_ns, info.st_size, info.st_mode))
        except OSError:  # a dangling link, or gone meanwhile
            signature.append((name, -1, -1, -1))
    return tuple(signature)


def list_sessions(directory: Path) -> tuple[list[SessionSummary], list[FileProblem]]:
    """Readable sessions (newest first) and one problem line per unreadable file."""
    good, bad = [], []
    for name in session_file_names(directory):
        path = directory / name
        try:
            summary = summarize_file(path)
        except SessionError as exc:
            bad.append(FileProblem(path, str(exc)))
            continue
        good.append(replace(summary, study=study_of(name)) if study_of(name) else summary)
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


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except (OSError, ValueError):  # a name too long for the system, a NUL
        return False


def find_session(directory: Path, ref: str) -> Path:
    """A session file from its id, a unique prefix of its file name (matched
    literally: ``*`` and ``[`` are characters like any other), a path (a
    ref holding a path separator, or naming an existing ``.json`` file), or
    ``latest``, ``-1`` (the same), ``-2``... counted from the newest.
    Sessions of a study folder are found by their id like the others."""
    shown = visible(repr(ref))
    if not ref.strip():
        raise SessionError("give a session id, a unique prefix of one, or a path to a session file")
    as_path = Path(ref)
    separators = {os.sep, os.altsep} - {None}
    if any(sep in ref for sep in separators) or (ref.endswith(".json") and _exists(as_path)):
        if _exists(as_path):
            return as_path  # reading it says whether it is a session
        raise SessionError(f"no session file {visible(ref)}")
    if has_hidden_characters(ref):
        raise SessionError(f"{shown} is not a session id: it holds control or invisible characters")
    where = visible(directory)
    if _exists(directory) and not directory.is_dir():
        raise SessionError(f"{where} is not a folder")
    names = session_file_names(directory)
    newest = 1 if ref == "latest" else int(match.group(1)) if (match := NEWEST.fullmatch(ref)) else None
    if newest is not None and f"{ref}.json" not in names:
        return newest_session(directory, newest)
    exact = [name for name in names if name.rpartition("/")[2] == f"{ref}.json"]
    matches = exact or [name for name in names if name.rpartition("/")[2].startswith(ref)]
    if len(matches) == 1:
        return directory / matches[0]
    if not matches:
        raise SessionError(f"no session {shown} in {where}")
    raise SessionError(f"{shown} matches {len(matches)} sessions in {where}; give more of the id")


def newest_session(directory: Path, count: int = 1) -> Path:
    """The ``count``-th newest readable session of the folder (1: the newest),
    by the time it was created, as ``list_sessions`` orders them."""
    good, _ = list_sessions(directory)
    if count > len(good):
        have = "no sessions" if not good else f"only {len(good)} session{'s' if len(good) > 1 else ''}"
        raise SessionError(f"there {'are' if len(good) != 1 else 'is'} {have} in {visible(directory)}")
    return good[count - 1].path
