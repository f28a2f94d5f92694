"""Saved sweeps read back to be looked at: a folder's sweep records, and one
record's runs with their sessions and what each run's curves say.

Sweep records live in ``<folder>/sweeps/``. In a sessions folder, a sweep's
sessions are beside that folder's other sessions; in a reproduction's folder
(``fmlab reproduce --out DIR``, which holds ``state.json``), each study is a
sweep and its sessions are in ``DIR/sessions/<study>/``. ``SweepFolder.of``
tells the two apart, so either can be opened.

A run's session is looked up by its id in the sessions folder, matched
exactly: the paths a record holds are where the files were when it was
written, and a record is as untrusted as any file in the folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fmlab.trainer.analysis import RunAnalysis, analyze_record
from fmlab.trainer.config import RunConfig
from fmlab.trainer.sessions import SessionError, SessionRecord, load
from fmlab.trainer.sessions.store import session_file_names
from fmlab.trainer.studies.sweep import SweepRecord, list_sweeps
from fmlab.trainer.studies.tables import RunRow


@dataclass(frozen=True)
class SweepFolder:
    """Where a folder's sweep records are (``root/sweeps``) and where their
    runs' sessions are found."""

    root: Path
    sessions: Path
    reproduction: bool  # a reproduce folder: its sweeps are its studies

    @classmethod
    def of(cls, folder: Path) -> SweepFolder:
        folder = Path(folder)
        if (folder / "state.json").is_file() and (folder / "sweeps").is_dir():
            return cls(folder, folder / "sessions", True)
        return cls(folder, folder, False)

    def records(self) -> tuple[list[SweepRecord], list[str]]:
        """The saved sweeps, newest first, and one line per unreadable file."""
        return list_sweeps(self.root)


@dataclass(frozen=True)
class SavedRun:
    """One run of a saved sweep: its row (None if it never finished), its
    session (None if it is not in the folder or cannot be read, with
    ``problem`` saying why) and that session's analysis."""

    config: RunConfig
    row: RunRow | None
    record: SessionRecord | None = None
    analysis: RunAnalysis | None = None
    problem: str = ""


def saved_runs(sweep: SweepRecord, sessions_dir: Path) -> list[SavedRun]:
    """Each run of ``sweep`` in order, with its session from ``sessions_dir``
    (or a study folder under it), read in full."""
    by_name = {name.rpartition("/")[2]: name for name in session_file_names(sessions_dir)}
    runs = []
    for position, config in enumerate(sweep.configs):
        row = sweep.rows[position]
        session = sweep.sessions[position] if position < len(sweep.sessions) else None
        runs.append(_saved_run(config, row, session or (row.session if row else None), by_name, sessions_dir))
    return runs


def _saved_run(
    config: RunConfig, row: RunRow | None, session: str | None, by_name: dict[str, str], sessions_dir: Path
) -> SavedRun:
    if not session:
        return SavedRun(config, row, problem="never started")
    name = by_name.get(f"{session}.json")
    if name is None:
        return SavedRun(config, row, problem=f"session {session} is not in {sessions_dir}")
    try:
        record = load(sessions_dir / name)
    except SessionError as exc:
        return SavedRun(config, row, problem=str(exc))
    # the session may know more than the row written when the sweep last saved
    return SavedRun(config, RunRow.from_record(record) if row else None, record, analyze_record(record))
