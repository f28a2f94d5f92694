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
they are not counted, unless they do take cores from it: Linux's autogroups
(on by default on desktops) rank ``nice`` only among the programs of one
terminal session, so a niced program started from another terminal competes
as an equal: base epochs took 40 to 60 times their idle time at two threads
beside one such spinning program. That shows as this process's training
threads waiting for a core (their run delay, /proc/self/task/*/schedstat);
from then on niced programs are counted until they leave the cores. The MLP
steppers give the same numbers at any thread
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
STARVED = 0.5  # cores' worth of waiting for a core that shows niced programs compete
NICED_GONE = 0.5  # niced programs using fewer cores than this compete no longer
_STAT = "/proc/stat"


@dataclass(frozen=True)
class Sample:
    """Seconds so far, and when they were read: CPU time of the programs at
    this process's priority or above, of niced programs (0 for a niced
    process: its busy time counts them), of this process's training threads,
    and the time those threads waited for a core."""

    busy: float
    niced: float
    own: float
    waited: float
    at: float


@dataclass(frozen=True)
class Load:
    """Cores' worth of each between two samples: other programs at this
    priority or above, niced programs, this process's training threads waiting."""

    competing: float
    niced: float
    waited: float


def load_between(before: Sample, after: Sample) -> Load:
    wall = after.at - before.at
    if wall <= 0:
        return Load(0.0, 0.0, 0.0)
    others = (after.busy - before.busy) - (after.own - before.own)
    niced, waited = after.niced - before.niced, after.waited - before.waited
    # never below zero: own time is read a moment after the machine's, threads end
    return Load(max(0.0, others / wall), max(0.0, niced / wall), max(0.0, waited / wall))


def niced_compete(load: Load, before: bool, fits: bool) -> bool:
    """Whether niced programs take cores from this one: its training threads
    keep waiting for a core while their count already ``fits`` the cores the
    other programs leave (else those explain the wait); once counted, niced
    programs stay counted until they leave the cores."""
    if load.niced < NICED_GONE:
        return False
    return before or (fits and load.waited >= STARVED)


def threads_for(cores: int, competing: float, most: int) -> int:
    """Threads that fit the cores left free (at least one, at most ``most``)."""
    return max(1, min(most, round(cores - competing)))


def _machine_seconds(niced: bool) -> tuple[float, float] | None:
    """CPU seconds all programs spent at this process's priority or above, and
    niced ones (0 for a niced process: the first counts them)."""
    try:
        with open(_STAT, encoding="ascii") as handle:
            fields = handle.readline().split()
    except (OSError, UnicodeDecodeError):
        return None
    if len(fields) < 8 or fields[0] != "cpu":
        return None
    user, nice, system, _idle, _iowait, irq, softirq = (int(v) for v in fields[1:8])
    tick = os.sysconf("SC_CLK_TCK")
    busy = user + system + irq + softirq
    return ((busy + nice) / tick, 0.0) if niced else (busy / tick, nice / tick)


def _ui_thread() -> int | None:
    """The id of the thread that is not training: the main thread (the app's
    UI, whose id is the process's) when training runs in another thread."""
    return None if threading.current_thread() is threading.main_thread() else os.getpid()


def _waited_seconds() -> float:
    """Seconds this process's training threads spent ready to run but waiting
    for a core (0 where the kernel does not say)."""
    ui = _ui_thread()
    skip = str(ui) if ui is not None else None
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return 0.0
    total = 0
    for task in tasks:
        if task == skip:
            continue
        try:
            with open(f"/proc/self/task/{task}/schedstat", encoding="ascii") as handle:
                total += int(handle.read().split()[1])
        except (OSError, IndexError, ValueError):
            continue  # a thread that ended meanwhile
    return total / 1e9


def sample(niced: bool) -> Sample | None:
    """The machine's and this process's counters now (None: no /proc/stat)."""
    at = time.monotonic()
    machine = _machine_seconds(niced)
    if machine is None:
        return None
    return Sample(*machine, own=_own_seconds(), waited=_waited_seconds(), at=at)


def stat_cpu_seconds(path: str) -> float:
    """User and system CPU seconds from a Linux ``/proc/.../stat`` file (a
    process's, its threads' included, or one thread's). OSError, ValueError."""
    with open(path, encoding="ascii", errors="replace") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()  # the name may hold spaces
    try:
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except IndexError:
        raise ValueError(f"{path}: too few fields") from None


def _own_seconds() -> float:
    """CPU seconds of this process's training: all of it, less the main thread's
    when training runs in another thread (the app's UI is a neighbour)."""
    total = time.process_time()
    ui = _ui_thread()
    if ui is None:
        return total
    try:
        return total - stat_cpu_seconds(f"/proc/self/task/{ui}/stat")
    except (OSError, ValueError):
        return total


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
        self.niced_compete = False  # niced programs have been seen taking cores from this one
        self._last = sample(self.niced) if pinned is None and adaptive and self.most > 1 else None

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
        now = sample(self.niced)
        if now is None:
            self._last = None  # /proc/stat went away: stay as we are
            return
        self._last = now
        load = load_between(last, now)
        fits = self.current <= threads_for(self.cores, load.competing, self.most)
        compete = niced_compete(load, self.niced_compete, fits)
        if compete != self.niced_compete:
            log.debug("niced programs on %.2f cores %s", load.niced, "compete" if compete else "left")
            self.niced_compete = compete
        competing = load.competing + (load.niced if self.niced_compete else 0.0)
        wanted = threads_for(self.cores, competing, self.most)
        if wanted != self.current:
            log.debug("%d -> %d threads: other programs busy on %.2f cores", self.current, wanted, competing)
            torch.set_num_threads(wanted)
            self.current = wanted

    def close(self) -> None:
        torch.set_num_threads(self.start_count)
