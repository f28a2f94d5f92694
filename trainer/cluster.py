"""Starting or joining Ray for fmlab, quietly: ``connected(address)``.

A plain ``--ray`` starts a Ray instance on this machine for the command;
``--ray-address`` joins a running cluster. Either way Ray's own chatter stays
off the terminal (no dashboard, workers' output not copied, its notices kept
off stdout where fmlab's tables go) and every failure is one ClusterError
line. Ray is imported inside functions only: fmlab works without it.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from fmlab.trainer.text import first_line, visible

LOCAL_OBJECT_STORE = 2 * 2**30  # the data (about 220 MB) and checkpoints in flight
JOIN_SECONDS = 10  # how long joining a cluster that does not answer as Ray may take (Ray's default: 20)


class ClusterError(Exception):
    """Ray missing, or a cluster that cannot be started or joined; one line."""


@contextmanager
def connected(address: str | None = None, *, num_cpus: int | None = None) -> Iterator[None]:
    """Connected to Ray for the block: to the cluster at ``address`` ("auto":
    the one started on this machine with ``ray start``, or named by
    RAY_ADDRESS; "HOST:PORT": its head), or to a Ray instance started here
    (None; ``num_cpus``: all unless given), shut down after the block. Quiet:
    no dashboard, and the workers' output is not copied to this terminal. A
    process already connected (a notebook, a test) keeps its connection.
    ClusterError when Ray is not installed or the cluster cannot be reached."""
    try:
        import ray
    except ImportError:
        raise ClusterError("Ray is not installed: pip install 'fmlab[ray]'") from None
    if address is not None and address != "auto" and "://" not in address:
        _check_reachable(address)
    if ray.is_initialized():
        yield
        return
    quiet = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    if address is None:
        options = dict(address="local", num_cpus=num_cpus, object_store_memory=LOCAL_OBJECT_STORE)
    else:
        options = dict(address=address)
    sigterm = signal.getsignal(signal.SIGTERM)
    native = _NativeStderr()
    try:
        with (
            native.kept_aside(address is not None),
            _join_patience(address is not None),
            interruptible_workers(),
        ):
            ray.init(**options, **quiet)
    except Exception as exc:  # Ray raises many kinds (ConnectionError, RuntimeError, ValueError...)
        where = "start Ray" if address is None else f"join the Ray cluster at {visible(address)}"
        said = f" (Ray: {native.last_line()})" if native.last_line() else ""
        raise ClusterError(f"cannot {where}: {first_line(exc, 200)}{said}") from None
    _quiet_ray_notices(True)
    try:
        yield
    finally:
        ray.shutdown()
        _quiet_ray_notices(False)
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, sigterm)  # ray.init put its own in


@contextmanager
def interruptible_workers() -> Iterator[None]:
    """Ray processes started inside this block can be interrupted as Ctrl-C
    would, which is how Ray cancels a running task. A process that ignores
    Ctrl-C (a job started with ``&`` from a script) passes that on to every
    process it starts, and a Ray worker that ignores it fails a cancel with
    "TypeError: 'Handlers' object is not callable" instead of stopping; a
    handler set here is reset to the default in each new process."""
    ignored = signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    if not ignored or threading.current_thread() is not threading.main_thread():
        yield
        return
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _quiet_ray_notices(quiet: bool) -> None:
    """Ray prints its notices (a task retried, a node lost) on stdout, where
    fmlab's tables go, however it is started; fmlab tells what matters on
    stderr itself (JobService's warnings). Ray's own debugger quiets them
    with the same switch; a Ray without it just stays chatty."""
    import ray._private.worker as ray_worker

    if hasattr(ray_worker, "_worker_logs_enabled"):
        ray_worker._worker_logs_enabled = not quiet


@contextmanager
def _join_patience(joining: bool) -> Iterator[None]:
    """Ray looks for a cluster's control store once a second, 20 times
    unless told otherwise (a setting the user's environment may also make)."""
    name = "RAY_gcs_server_port_wait_time_s"
    if not joining or name in os.environ:
        yield
        return
    os.environ[name] = str(JOIN_SECONDS)
    try:
        yield
    finally:
        os.environ.pop(name, None)


class _NativeStderr:
    """While Ray looks for a cluster, its C++ side writes a warning a second
    straight to file descriptor 2, for as long as it retries (an address that
    answers but not as Ray: a wrong port, a missing token). fmlab keeps them
    aside and, if joining fails, quotes the last one in its one line."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    @contextmanager
    def kept_aside(self, keep: bool) -> Iterator[None]:
        import tempfile

        if not keep:
            yield
            return
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError):  # no descriptor 2 to keep aside
            yield
            return
        with tempfile.TemporaryFile() as aside:
            os.dup2(aside.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved, 2)
                os.close(saved)
                aside.seek(0)
                self.lines = aside.read(2**16).decode("utf-8", "replace").splitlines()

    def last_line(self) -> str:
        """The last warning, without its log prefix (``[time W pid tid] file.cc:210:``)."""
        line = next((line for line in reversed(self.lines) if line.strip()), "")
        return visible(line.split("] ", 1)[-1].split(": ", 1)[-1].strip())[:200]


def _check_reachable(address: str) -> None:
    """Fail in seconds where Ray would retry for minutes."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ClusterError(f"Ray address {visible(address)!r} is not auto or HOST:PORT")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ClusterError(f"cannot reach a Ray cluster at {visible(address)} ({reason})") from None
