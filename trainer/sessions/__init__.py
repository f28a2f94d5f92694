"""Sessions: one JSON file per run.

- ``format``: what a file holds, how it is encoded, and which ids are safe;
- ``decode``: reading a file back, strictly (files in the folder are untrusted);
- ``store``: the sessions folder (listing, finding by id, checkpoints, deleting);
- ``recorder``: the consumer of a run's events that keeps its file up to date.
"""

from fmlab.trainer.sessions.decode import MAX_SESSION_BYTES, effective_status, load
from fmlab.trainer.sessions.format import (
    SCHEMA,
    VERSION,
    SessionError,
    SessionRecord,
    SessionSummary,
    StepCurve,
    TrainData,
    UnsafeSessionId,
    check_session_id,
    encode,
    is_safe_session_id,
    new_session_id,
)
from fmlab.trainer.sessions.recorder import SessionRecorder
from fmlab.trainer.sessions.store import (
    FileProblem,
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
    "MAX_SESSION_BYTES",
    "SCHEMA",
    "VERSION",
    "FileProblem",
    "ListingCache",
    "SessionError",
    "SessionRecord",
    "SessionRecorder",
    "SessionSummary",
    "StepCurve",
    "TrainData",
    "UnsafeSessionId",
    "check_session_id",
    "checkpoint_path",
    "default_sessions_dir",
    "delete_session",
    "effective_status",
    "encode",
    "find_session",
    "folder_signature",
    "is_safe_session_id",
    "list_sessions",
    "load",
    "new_session_id",
    "summarize_file",
]
