"""Sessions: one JSON file per run.

- ``format``: what a file holds and how it is encoded and strictly decoded;
- ``store``: the sessions folder (listing, finding by id, checkpoints, deleting);
- ``recorder``: the consumer of a run's events that keeps its file up to date.
"""

from fmlab.trainer.sessions.format import (
    SCHEMA,
    VERSION,
    SessionError,
    SessionRecord,
    SessionSummary,
    StepCurve,
    effective_status,
    encode,
    load,
    new_session_id,
)
from fmlab.trainer.sessions.recorder import SessionRecorder
from fmlab.trainer.sessions.store import (
    ListingCache,
    checkpoint_path,
    default_sessions_dir,
    delete_session,
    find_session,
    folder_signature,
    list_sessions,
    summarize_file,
)

__all__ = [
    "SCHEMA",
    "VERSION",
    "ListingCache",
    "SessionError",
    "SessionRecord",
    "SessionRecorder",
    "SessionSummary",
    "StepCurve",
    "checkpoint_path",
    "default_sessions_dir",
    "delete_session",
    "effective_status",
    "encode",
    "find_session",
    "folder_signature",
    "list_sessions",
    "load",
    "new_session_id",
    "summarize_file",
]
