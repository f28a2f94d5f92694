"""Stacks trained as Ray tasks: ``fmlab sweep --ray`` and ``fmlab reproduce --ray``.

RayStacks is a stack runner for the job service (fmlab.trainer.jobs): it
submits every stack as one Ray task at once, so stacks train in parallel
across the cluster, and hands each member's events to the driver as they
arrive; the driver's JobService records the sessions exactly as it does for a
local sweep.

- Data: the driver loads it (on the CPU) and puts it in the object store
  once; each task moves it to its device. Workers need no data folder.
- Events and checkpoints travel through a Mailbox actor that lives on the
  driver's node, so it outlives any worker. It keeps each member's latest
  checkpoint: a task that Ray retries after its worker or node died resumes
  every member from the last checkpoint the driver received (at most an
  epoch is lost), and the driver rewinds the session to it. Checkpoints
  travel pickled, so the mailbox never imports torch (its worker starts in
  a moment).
- Cancel: the driver's cancel event sets a flag in the mailbox; a thread in
  each task polls it and sets the event the loop checks, so members end
  ``stopped``; stacks not begun are cancelled.

Ray is imported inside functions only: fmlab works without it, and
``import fmlab.trainer.jobs`` never imports it. Connecting is
fmlab.trainer.cluster's business.
"""

from __future__ import annotations

import pickle
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import suppress
from typing import TYPE_CHECKING

from fmlab.trainer.cluster import connected
from fmlab.trainer.config import RunConfig
from fmlab.trainer.events import EpochMetrics, Event, RunFinished, RunResults, RunStarted, StepMetrics
from fmlab.trainer.jobs import JobError, OnStackCheckpoint
from fmlab.trainer.metrics import results_after
from fmlab.trainer.text import first_line, visible

if TYPE_CHECKING:
    from fmlab.trainer.data import FashionMNIST
    from fmlab.trainer.training.checkpoint import Checkpoint
    from fmlab.trainer.training.loop import Member

POLL_SECONDS = 0.1  # how often the driver collects events
STOP_POLL_SECONDS = 0.2  # how soon a task hears of a cancel
SEND_SECONDS = 0.25  # step events reach the driver at most this late (as a local run's do)
MAX_RETRIES = 3  # times Ray runs a stack again after its worker or node died


# ----------------------------------------------------------------- the driver


def cpus_per_task(node_cpus: Sequence[int], tasks: int) -> int:
    """The most CPUs each of ``tasks`` tasks can have with all of them running
    at once on nodes of these sizes (1 when they cannot all run at once)."""
    for cpus in range(max(node_cpus, default=1), 1, -1):
        if sum(count // cpus for count in node_cpus) >= tasks:
            return cpus
    return 1


class RayStacks:
    """Trains every stack as a Ray task at once; see the module doc.

    ``cpus_per_task``: CPUs (and torch threads) per stack; by default the
    cluster's CPUs shared out so that every stack runs at once. A stack on
    CUDA (or on ``auto`` where the cluster has a GPU) takes one GPU.
    Connects to a Ray instance of its own unless the process is connected.
    """

    def __init__(self, *, cpus_per_task: int | None = None, max_retries: int = MAX_RETRIES) -> None:
        self.cpus_per_task = cpus_per_task
        self.max_retries = max_retries

    def data_device(self, config: RunConfig) -> str:
        return "cpu"  # the driver may have no GPU; each task moves the data to its own device

    def run(
        self,
        stacks: Sequence[Sequence[Member]],
        data: Callable[[RunConfig], FashionMNIST],
        cancel: threading.Event,
        on_checkpoint: OnStackCheckpoint,
    ) -> Iterator[tuple[int, int, Event]]:
        if not stacks or cancel.is_set():
            return
        if any(m.config.model.module is not None for stack in stacks for m in stack):
            raise JobError("a module of your own cannot train on Ray: its file is not sent to the workers")
        import ray

        if not ray.is_initialized():
            with connected():
                yield from self.run(stacks, data, cancel, on_checkpoint)
            return
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
        mailbox = ray.remote(Mailbox).options(num_cpus=0, scheduling_strategy=here).remote(len(stacks))
        try:
            tasks = self._submit(stacks, data, mailbox)
            yield from _Driver(stacks, tasks, mailbox, cancel, on_checkpoint).events()
        finally:
            # tasks still running (the reader left early) lose their mailbox and stop
            with suppress(Exception):
                ray.kill(mailbox)

    def _submit(self, stacks: Sequence[Sequence[Member]], data, mailbox) -> dict:
        """One task per stack, by its object ref."""
        import ray

        gpus = ray.cluster_resources().get("GPU", 0)
        on_gpu = [s[0].config.device == "cuda" or (s[0].config.device == "auto" and gpus > 0) for s in stacks]
        if any(on_gpu) and gpus < 1:
            raise JobError("runs on cuda need a GPU, and the Ray cluster has none")
        nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
        cpus = self.cpus_per_task or cpus_per_task([int(r.get("CPU", 0)) for r in nodes], on_gpu.count(False))
        train_stack = ray.remote(_train_stack)
        shipped: dict[tuple, object] = {}
        tasks = {}
        for number, (members, gpu) in enumerate(zip(stacks, on_gpu)):
            stack_data = data(members[0].config)
            key = tuple((t.data_ptr(), len(t)) for t in (stack_data.train_x, stack_data.test_x))
            if key not in shipped:  # stacks share one copy in the object store
                shipped[key] = ray.put(stack_data)
            threads = 1 if gpu else cpus
            options = dict(num_cpus=threads, num_gpus=1 if gpu else 0, max_retries=self.max_retries)
            ref = train_stack.options(**options).remote(mailbox, number, list(members), shipped[key], threads)
            tasks[ref] = number
        return tasks


class _Driver:
    """Follows the tasks: hands on what they send and ends the members a task
    left unfinished (its worker lost for good, or stopped before it began again)."""

    def __init__(self, stacks, tasks: dict, mailbox, cancel: threading.Event,
                 on_checkpoint: OnStackCheckpoint) -> None:  # fmt: skip
        self.stacks, self.tasks, self.mailbox = stacks, dict(tasks), mailbox
        self.cancel, self.on_checkpoint = cancel, on_checkpoint
        self.by_number = {number: ref for ref, number in tasks.items()}
        self.started: set[tuple[int, int]] = set()
        self.ended: set[tuple[int, int]] = set()
        # the checkpoint each member continues from, were it trained again
        self.last = {(n, s): m.resume for n, stack in enumerate(stacks) for s, m in enumerate(stack)}
        self.never_started: list[str] = []

    def events(self) -> Iterator[tuple[int, int, Event]]:
        import ray

        while self.tasks:
            # what has ended first: a task sends everything before it returns
            done, _ = ray.wait(list(self.tasks), num_returns=len(self.tasks), timeout=POLL_SECONDS)
            items, not_begun = ray.get(self.mailbox.take.remote(self.cancel.is_set()))
            for number in not_begun:
                ray.cancel(self.by_number[number])
            for number, slot, item in items:
                yield from self._hand_on(number, slot, item)
            for ref in done:
                yield from self._ended(self.tasks.pop(ref), _task_error(ref))
        if self.never_started:
            raise JobError(self.never_started[0])

    def _hand_on(self, number: int, slot: int, item) -> Iterator[tuple[int, int, Event]]:
        member = (number, slot)
        if isinstance(item, bytes):  # a checkpoint
            self.last[member] = checkpoint = pickle.loads(item)
            self.on_checkpoint(number, slot, checkpoint)
            return
        if isinstance(item, RunStarted):
            self.started.add(member)
        elif isinstance(item, RunFinished):
            self.ended.add(member)
        yield number, slot, item

    def _ended(self, number: int, error: str | None) -> Iterator[tuple[int, int, Event]]:
        members = [(number, slot) for slot in range(len(self.stacks[number]))]
        left = [m for m in members if m not in self.ended]
        if error is not None and any(m not in self.started for m in left):
            self.never_started.append(f"a Ray task failed: {error}")
        for member in left:
            if member not in self.started:
                continue  # it never began: it stays to train (a resumed sweep starts it)
            if self.cancel.is_set():
                status, message = "stopped", ""
            else:
                status, message = "failed", f"its Ray task failed: {error or 'it ended early'}"
            self.ended.add(member)
            yield number, member[1], RunFinished(_results_at(self.last[member], status, message))


def _task_error(ref) -> str | None:
    """Why a finished task failed, on one line (None: it did not, or it was
    cancelled before it began)."""
    import ray
    from ray.exceptions import RayTaskError, TaskCancelledError

    try:
        ray.get(ref)
    except TaskCancelledError:
        return None
    except RayTaskError as exc:
        cause = exc.cause if isinstance(exc.cause, BaseException) else exc
        return visible(f"{type(cause).__name__}: {first_line(cause, 200)}")
    except Exception as exc:  # the worker or its node was lost more times than Ray retries
        return visible(first_line(exc, 200))
    return None


def _results_at(checkpoint: Checkpoint | None, status: str, message: str) -> RunResults:
    """A run's results as of its last checkpoint (the driver's session holds
    exactly the epochs up to it)."""
    history = list(checkpoint.history) if checkpoint else []
    return results_after(
        history,
        status=status,
        steps_done=checkpoint.step if checkpoint else 0,
        seconds=checkpoint.seconds if checkpoint else 0.0,
        converged_epoch=history[-1].converged_epoch if history else None,
        message=message,
    )


# ----------------------------------------------------------------- the mailbox


class Mailbox:
    """The Ray actor between the tasks and the driver: it queues what the
    tasks send until the driver takes it, keeps what a task run again needs
    (each member's latest checkpoint, the members that ended), and the stop
    flag. An item is an event, or a checkpoint pickled (bytes)."""

    def __init__(self, stacks: int) -> None:
        self.items: list[tuple[int, int, object]] = []
        self.attempts = [0] * stacks
        self.checkpoints: list[dict[int, bytes]] = [{} for _ in range(stacks)]
        self.ended: list[set[int]] = [set() for _ in range(stacks)]
        self.stop = False

    def begin(self, number: int) -> tuple[int, dict[int, bytes], set[int]] | None:
        """A stack's task begins (again): its attempt, each member's latest
        checkpoint and the members that ended; None once stopped."""
        if self.stop:
            return None
        self.attempts[number] += 1
        return self.attempts[number], dict(self.checkpoints[number]), set(self.ended[number])

    def put(self, number: int, attempt: int, items: list[tuple[int, object]]) -> None:
        if attempt != self.attempts[number]:
            return  # late news from an attempt that was lost: the next one trains those members again
        for slot, item in items:
            if isinstance(item, bytes):
                self.checkpoints[number][slot] = item
            elif isinstance(item, RunFinished):
                self.ended[number].add(slot)
                self.checkpoints[number].pop(slot, None)
            self.items.append((number, slot, item))

    def take(self, stop: bool) -> tuple[list[tuple[int, int, object]], list[int]]:
        """What the tasks sent since the last take; on the first ``stop``, also
        the stacks whose task never began (for the driver to cancel)."""
        not_begun = []
        if stop and not self.stop:
            self.stop = True
            not_begun = [number for number, attempts in enumerate(self.attempts) if attempts == 0]
        items, self.items = self.items, []
        return items, not_begun

    def stopped(self) -> bool:
        return self.stop


# ----------------------------------------------------------------- the task


def _train_stack(mailbox, number: int, members: list[Member], data: FashionMNIST, threads: int) -> None:
    """One stack, in a Ray worker: the members not ended, each from its
    latest checkpoint (a task run again after its worker died)."""
    import ray
    import torch

    from fmlab.trainer.training.loop import Member, train

    torch.set_num_threads(threads)
    begun = ray.get(mailbox.begin.remote(number))
    if begun is None:
        return
    attempt, sealed, ended = begun
    checkpoints = {slot: pickle.loads(blob) for slot, blob in sealed.items()}
    cancel, done = threading.Event(), threading.Event()
    threading.Thread(target=_hear_stop, args=(mailbox, cancel, done), daemon=True).start()
    outbox = _Outbox(mailbox, number, attempt)
    try:
        for slots in _groups(members, checkpoints, ended):
            group = [Member(members[s].config, checkpoints.get(s, members[s].resume)) for s in slots]

            def save(index: int, checkpoint: Checkpoint, slots=slots) -> None:
                outbox.add(slots[index], pickle.dumps(checkpoint))

            for index, event in train(group, data, cancel, on_checkpoint=save, threads=threads):
                outbox.add(slots[index], event)
    finally:
        done.set()
        outbox.send(wait=True)


def _groups(
    members: Sequence[Member], checkpoints: dict[int, Checkpoint], ended: set[int]
) -> list[list[int]]:
    """The members left to train, grouped by where they resume (a stack can
    only train members at one point): one group, as an epoch's end reaches
    the mailbox whole, but a stack is never trained wrong if it does not."""
    groups: dict[tuple[int, int], list[int]] = {}
    for slot, member in enumerate(members):
        if slot in ended:
            continue
        resume = checkpoints.get(slot, member.resume)
        groups.setdefault((resume.epoch, resume.step) if resume else (0, 0), []).append(slot)
    return list(groups.values())


def _hear_stop(mailbox, cancel: threading.Event, done: threading.Event) -> None:
    import ray

    while not done.wait(STOP_POLL_SECONDS):
        try:
            stop = ray.get(mailbox.stopped.remote())
        except Exception:  # the driver is gone: nobody is left to train for
            stop = True
        if stop:
            cancel.set()
            return


class _Outbox:
    """A task's events and checkpoints on their way to the mailbox, in order
    (one caller's actor calls run in the order they were made). An epoch's
    end (every member's checkpoint and metrics) goes as one message, so a
    task run again finds every member at the same checkpoint; step events go
    in batches; the rest at once."""

    def __init__(self, mailbox, number: int, attempt: int) -> None:
        self.mailbox, self.number, self.attempt = mailbox, number, attempt
        self.pending: list[tuple[int, object]] = []
        self.sent = time.monotonic()
        self.last_put = None
        self.running = 0  # members started and not ended
        self.epoch, self.epoch_metrics = 0, 0  # the epoch ending, and how many members reported it

    def add(self, slot: int, item) -> None:
        self.pending.append((slot, item))
        if isinstance(item, RunStarted):
            self.running += 1
        elif isinstance(item, RunFinished):
            self.running -= 1
        elif isinstance(item, EpochMetrics):
            if item.epoch != self.epoch:
                self.epoch, self.epoch_metrics = item.epoch, 0
            self.epoch_metrics += 1
            if self.epoch_metrics >= self.running:
                self.send()
            return
        if isinstance(item, (RunStarted, RunFinished)) or (
            isinstance(item, StepMetrics) and time.monotonic() - self.sent >= SEND_SECONDS
        ):
            self.send()

    def send(self, wait: bool = False) -> None:
        import ray

        if self.pending:
            self.last_put = self.mailbox.put.remote(self.number, self.attempt, self.pending)
            self.pending, self.sent = [], time.monotonic()
        if wait and self.last_put is not None:
            try:  # the task's end must not overtake its events
                ray.get(self.last_put)
            except Exception:  # the driver is gone; nothing to wait for
                pass
