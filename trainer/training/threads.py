"""How many threads a stack trains with: the cores other programs leave free.

Why: torch's threads meet at the end of every product. When another program
keeps one of two cores busy, the thread that shares its core arrives late at
every meeting, and the others spin waiting for it: base epochs took 5 to 13
times their idle time on a 2-core machine with one busy neighbour, where one
thread alone takes about 1.5 times.

So the governor reads, every ``INTERVAL`` seconds, how much CPU time the other
programs of the same or a higher priority took (Linux's /proc/stat, less this
process's own training threads; the app's UI thread counts as a neighbour)
and trains with as many threads as that leaves cores, up to the count it
started with. Programs under ``nice`` take only what this one leaves idle, so
they are not counted. The MLP steppers give the same numbers at any thread
count (tests/test_stack_equality.py), so this changes the speed only. A
pinned count (``--threads N``) or a stepper whose numbers depend on the
count (autograd) keeps its count; so does a machine without /proc/stat.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass

import torch

log = logging.getLogger("fmlab.threads")

INTERVAL = 0.25  # seconds between two looks at the machine's load
_STAT = "/proc/stat"


@dataclass(frozen=True)
class Sample:
    """CPU seconds so far: other programs' that compete with this one, and
    this process's training threads'; and when they were read."""

    busy: float
    own: float
    at: float


def competing_cores(before: Sample, after: Sample) -> float:
    """Cores' worth of CPU the competing programs used between two samples."""
    wall = after.at - before.at
    if wall <= 0:
        return 0.0
    others = (after.busy - before.busy) - (after.own - before.own)
    return max(0.0, others / wall)


def threads_for(cores: int, competing: float, most: int) -> int:
    """Threads that fit the cores left free (at least one, at most ``most``)."""
    return max(1, min(most, round(cores - competing)))


def _busy_seconds(niced: bool) -> float | None:
    """CPU seconds all programs spent at this process's priority or above."""
    try:
        with open(_STAT, encoding="ascii") as handle:
            fields = handle.readline().split()
    except (OSError, UnicodeDecodeError):
        return None
    if len(fields) < 8 or fields[0] != "cpu":
        return None
    user, nice, system, _idle, _iowait, irq, softirq = (int(v) for v in fields[1:8])
    ticks = user + system + irq + softirq + (nice if niced else 0)
    return ticks / os.sysconf("SC_CLK_TCK")


def _thread_seconds(tid: int) -> float:
    """CPU seconds of one of this process's threads (0 if it cannot be read)."""
    try:
        with open(f"/proc/self/task/{tid}/stat", encoding="ascii", errors="replace") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def _own_seconds() -> float:
    """CPU seconds of this process's training: all of it, less the main thread's
    when training runs in another thread (the app's UI is a neighbour)."""
    total = time.process_time()
    if threading.current_thread() is threading.main_thread():
        return total
    return total - _thread_seconds(os.getpid())


def _niced() -> bool:
    try:
        return os.getpriority(os.PRIO_PROCESS, 0) > 0
    except (AttributeError, OSError):
        return False


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


class ThreadGovernor:
    """Sets torch's thread count for the calling thread while a stack trains.

    ``pinned``: that many threads, always. Otherwise up to the count torch
    has now, fewer while competing programs keep cores busy, when
    ``adaptive`` (the stepper's numbers do not depend on the count).
    ``close()`` puts back the count found at the start.
    """

    def __init__(self, pinned: int | None, adaptive: bool) -> None:
        self.start_count = torch.get_num_threads()
        self.most = pinned or self.start_count
        torch.set_num_threads(self.most)
        self.current = self.most
        self.cores = _cores()
        self.niced = _niced()
        self._last = self._sample() if pinned is None and adaptive and self.most > 1 else None
        self.lowest = self.most  # the fewest threads used, for the record

    @property
    def adaptive(self) -> bool:
        return self._last is not None

    def describe(self) -> str:
        """The policy in words, for the session's device name."""
        plural = "s" if self.most > 1 else ""
        if self.adaptive:
            return f"{self.most} thread{plural}, fewer while other programs keep cores busy"
        return f"{self.most} thread{plural}"

    def tick(self) -> None:
        """Called before every step; looks at the load every INTERVAL seconds."""
        last = self._last
        if last is None or time.monotonic() - last.at < INTERVAL:
            return
        now = self._sample()
        if now is None:
            self._last = None  # /proc/stat went away: stay as we are
            return
        self._last = now
        competing = competing_cores(last, now)
        wanted = threads_for(self.cores, competing, self.most)
        if wanted != self.current:
            log.debug("%d -> %d threads: other programs busy on %.2f cores", self.current, wanted, competing)
            torch.set_num_threads(wanted)
            self.current = wanted
            self.lowest = min(self.lowest, wanted)

    def close(self) -> None:
        torch.set_num_threads(self.start_count)

    def _sample(self) -> Sample | None:
        at = time.monotonic()
        busy = _busy_seconds(self.niced)
        if busy is None:
            return None
        return Sample(busy, _own_seconds(), at)
