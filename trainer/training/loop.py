"""The training loop: one stack of members, as one stream of events.

``train(members, data)`` trains every member together (a single run is a stack
of one) and yields ``(position, event)`` pairs; each member's events are the
ordinary run stream (RunStarted, StepMetrics and EpochMetrics, exactly one
RunFinished). The loop reads top to bottom: per epoch, slice batches from the
in-memory tensors, take a step (fmlab.trainer.training.steppers), evaluate the
test set, emit each member's epoch metrics, check its convergence.

Members never mix: one that diverges (non-finite loss) ends ``diverged`` and
is dropped from the stack while the others go on unchanged. ``cancel`` is
checked before every step; once set, every member ends ``stopped``.
Torch's thread count follows the machine's load (training.threads) unless
``threads`` pins it; the stepper's numbers do not depend on it.
``on_checkpoint(position, Checkpoint)`` is called after each finished epoch,
before that epoch's metrics are yielded; a member started from it as
``Member(config, resume=checkpoint)`` goes on exactly as if it had never
stopped (its stream yields RunStarted, then only the new epochs).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch

from fmlab.trainer.config import RunConfig
from fmlab.trainer.data import FashionMNIST
from fmlab.trainer.device import device_name, resolve_device
from fmlab.trainer.events import EpochMetrics, Event, RunFinished, RunStarted
from fmlab.trainer.metrics import ConvergenceTracker, is_metric_step, results_after
from fmlab.trainer.models import summarize
from fmlab.trainer.training.checkpoint import Checkpoint
from fmlab.trainer.training.graphs import choose_step
from fmlab.trainer.training.plan import stack_key
from fmlab.trainer.training.recorder import StepRecorder
from fmlab.trainer.training.steppers import make_stepper
from fmlab.trainer.training.threads import ThreadGovernor

log = logging.getLogger("fmlab.training")

OnCheckpoint = Callable[[int, Checkpoint], None]


@dataclass(frozen=True)
class Member:
    """A run to train: its config, and where it resumes from (None: the start)."""

    config: RunConfig
    resume: Checkpoint | None = None


def can_stack(members: Sequence[Member]) -> bool:
    """Whether these members can share one stack: the same stack key and the
    same resume point."""
    points = {(m.resume.epoch, m.resume.step) if m.resume else (0, 0) for m in members}
    return len({stack_key(m.config) for m in members}) == 1 and len(points) == 1


def train(
    members: Sequence[Member],
    data: FashionMNIST,
    cancel: threading.Event | None = None,
    *,
    on_checkpoint: OnCheckpoint | None = None,
    threads: int | None = None,
) -> Iterator[tuple[int, Event]]:
    """Train ``members`` as one stack, yielding ``(position in members, event)``.
    ``threads``: torch threads to train with (None: as many as are free).

    Raises ValueError for members that cannot share a stack (see can_stack)
    and ConfigError for a device that is not there; errors while training end
    every member still running as ``failed``, with the message in its results.
    """
    if not members:
        return
    if not can_stack(members):
        raise ValueError("these runs cannot be trained as one stack")
    stack = _Stack(list(members), data, cancel or threading.Event(), on_checkpoint)
    # made here, in the thread that iterates: the count is that thread's own
    governor = ThreadGovernor(threads, adaptive=stack.device.type == "cpu" and stack.stepper.thread_invariant)
    try:
        yield from stack.events(governor)
    finally:
        governor.close()


def epoch_order(
    tensors: tuple[torch.Tensor, ...], shuffle: bool, shuffler: torch.Generator
) -> tuple[torch.Tensor, ...]:
    """The training tensors in this epoch's order: as stored, or permuted by
    the seeded generator (one gather per epoch, then batches are slices)."""
    if not shuffle:
        return tensors
    order = torch.randperm(len(tensors[0]), generator=shuffler).to(tensors[0].device)
    return tuple(t[order] for t in tensors)


@dataclass
class _Run:
    """One member's bookkeeping while it is in the stack."""

    position: int  # in the caller's member list
    config: RunConfig
    tracker: ConvergenceTracker
    history: list[EpochMetrics] = field(default_factory=list)
    seconds_before: float = 0.0  # training time in earlier attempts
    status: str = "running"
    message: str = ""
    last_step: int | None = None  # set when the member ends before the stack does

    def finished(self, step: int, seconds: float) -> RunFinished:
        return RunFinished(
            results_after(
                self.history,
                status=self.status,
                steps_done=self.last_step if self.last_step is not None else step,
                seconds=self.seconds_before + seconds,
                converged_epoch=self.tracker.converged_epoch,
                message=self.message,
            )
        )


class _Stack:
    """The state of one stack while it trains; ``events()`` is the loop."""

    def __init__(self, members: list[Member], data: FashionMNIST, cancel: threading.Event,
                 on_checkpoint: OnCheckpoint | None) -> None:  # fmt: skip
        self.shape = members[0].config  # what all members share
        self.device = resolve_device(self.shape.device)
        self.data, self.cancel, self.on_checkpoint = data, cancel, on_checkpoint
        self.runs = [self._run_of(position, member) for position, member in enumerate(members)]
        self.stepper = make_stepper([m.config for m in members], self.device)
        self.shuffler = torch.Generator().manual_seed(self.shape.seed)
        resume = members[0].resume
        self.step = resume.step if resume else 0
        self.epochs_done = resume.epoch if resume else 0
        if resume is not None:
            self.shuffler.set_state(resume.shuffle_state)
            for position, member in enumerate(members):
                self.stepper.load_member_state(position, {"params": member.resume.params,
                                                          "optimizer": member.resume.optimizer,
                                                          "buffers": member.resume.buffers})  # fmt: skip
            self.stepper.skip_to(self.step)
        self.recorder = StepRecorder(len(members), self.stepper.depth, self.device)
        self.started = time.perf_counter()
        self.train_step: Callable = self.stepper.step
        self.note = ""
        self.threads = ""

    @staticmethod
    def _run_of(position: int, member: Member) -> _Run:
        run = _Run(position, member.config, ConvergenceTracker(member.config.convergence))
        if member.resume is not None:
            run.history = list(member.resume.history)
            run.seconds_before = member.resume.seconds
            for metrics in run.history:
                run.tracker.update(metrics.test_acc)
        return run

    def events(self, governor: ThreadGovernor) -> Iterator[tuple[int, Event]]:
        device = self.device
        self.threads = governor.describe()
        if getattr(self.stepper, "native", None) is not None:  # same numbers, faster: said for the speed
            self.threads = f"steps in C++, {self.threads}"
        train_x, train_y = self.data.train_x.to(device), self.data.train_y.to(device)
        test_x, test_y = self.data.test_x.to(device), self.data.test_y.to(device)
        n_train, batch = len(train_x), self.shape.batch_size
        self.train_step, self.note = choose_step(self.stepper, batch, device)
        if self.note:
            log.warning(self.note)
        for run in self.runs:
            yield run.position, self._started_event(run.config, n_train, len(test_x))
        self._end_resumed_runs()
        yield from self._finish_marked()
        onehot_all = torch.nn.functional.one_hot(train_y, 10).float()
        last_epoch = max((r.config.epochs for r in self.runs), default=0)
        try:
            for epoch in range(self.epochs_done + 1, last_epoch + 1):
                epoch_start = time.perf_counter()
                x_all, y_all, onehot = epoch_order(
                    (train_x, train_y, onehot_all), self.shape.shuffle, self.shuffler
                )
                # views made in three calls, not three per step
                batches = zip(x_all.split(batch), y_all.split(batch), onehot.t().split(batch, 1))
                for x, y, onehot_t in batches:
                    if self.cancel.is_set():
                        break
                    governor.tick()
                    self.step += 1
                    want = is_metric_step(self.step, self.shape.full_steps, self.shape.step_every)
                    loss, stats = self.train_step(x, y, onehot_t, want)
                    if want:
                        self.recorder.record(self.step, epoch, loss / len(x), stats)
                    if self.recorder.due():
                        yield from self._flush()
                        if not self.runs:
                            break
                yield from self._flush()
                if self.cancel.is_set():
                    self._end_all("stopped")
                    break
                if not self.runs:
                    break
                yield from self._end_epoch(epoch, epoch_start, test_x, test_y, n_train)
                if not self.runs:
                    break
        except Exception as exc:  # a failed stack still ends every member with RunFinished
            self._end_all("failed", f"{type(exc).__name__}: {exc}".splitlines()[0])
        yield from self._finish_marked()

    def _started_event(self, config: RunConfig, n_train: int, n_test: int) -> RunStarted:
        return RunStarted(
            config=config,
            model=summarize(config.model),
            device=self.device.type,
            device_name=device_name(self.device, self.threads),
            torch_version=str(torch.__version__),  # plain: unpickling a TorchVersion imports torch
            train_size=n_train,
            test_size=n_test,
            steps_per_epoch=-(-n_train // config.batch_size),
            notes=(self.note,) if self.note else (),
            train_total=self.data.train_total or n_train,
        )

    def _end_resumed_runs(self) -> None:
        """A member resumed after its last epoch, or after it had converged with
        stop-on-converge, has nothing left to train."""
        for run in self.runs:
            if run.config.convergence.stop and run.tracker.converged_epoch is not None:
                run.status = "converged"
            elif len(run.history) >= run.config.epochs:
                run.status = "completed"

    def _flush(self) -> Iterator[tuple[int, Event]]:
        """Hand out buffered step events; members whose loss went non-finite diverge."""
        if not self.recorder.steps:
            return
        for run, events in zip(self.runs, self.recorder.flush()):
            for event in events:
                yield run.position, event
            bad = next((e.step for e in events if not math.isfinite(e.loss)), None)
            if bad is not None:
                run.status, run.last_step = "diverged", bad
                run.message = f"loss became non-finite at step {bad}"
        yield from self._finish_marked()

    def _end_epoch(self, epoch: int, epoch_start: float, test_x: torch.Tensor, test_y: torch.Tensor,
                   n_train: int) -> Iterator[tuple[int, Event]]:  # fmt: skip
        loss_sums, corrects = self.stepper.take_epoch_sums()
        for run, loss_sum in zip(self.runs, loss_sums):
            if not math.isfinite(loss_sum):
                run.status = "diverged"
                run.message = f"training loss became non-finite in epoch {epoch}"
        alive = [r.status == "running" for r in self.runs]
        yield from self._finish_marked()
        loss_sums = [v for v, ok in zip(loss_sums, alive) if ok]
        corrects = [v for v, ok in zip(corrects, alive) if ok]
        if not self.runs:
            return
        test_losses, test_accs = self.stepper.evaluate(test_x, test_y)
        seconds = time.perf_counter() - epoch_start
        self.epochs_done = epoch
        for slot, run in enumerate(self.runs):
            converged = run.tracker.update(test_accs[slot])
            metrics = EpochMetrics(
                epoch=epoch,
                train_loss=loss_sums[slot] / n_train,
                train_acc=100.0 * corrects[slot] / n_train,
                test_loss=test_losses[slot],
                test_acc=test_accs[slot],
                seconds=seconds,
                samples_per_s=n_train / seconds,
                converged_epoch=converged,
            )
            run.history.append(metrics)
            if self.on_checkpoint is not None:
                self.on_checkpoint(run.position, self._checkpoint(slot, run))
            yield run.position, metrics
            if converged is not None and run.config.convergence.stop:
                run.status = "converged"
            elif epoch == run.config.epochs:
                run.status = "completed"
        yield from self._finish_marked()

    def _checkpoint(self, slot: int, run: _Run) -> Checkpoint:
        state = self.stepper.member_state(slot)
        return Checkpoint(
            epoch=len(run.history),
            step=self.step,
            params=state["params"],
            optimizer=state["optimizer"],
            shuffle_state=self.shuffler.get_state(),
            history=list(run.history),
            seconds=run.seconds_before + time.perf_counter() - self.started,
            buffers=state.get("buffers", []),
        )

    def _end_all(self, status: str, message: str = "") -> None:
        for run in self.runs:
            run.status, run.message = status, message

    def _finish_marked(self) -> Iterator[tuple[int, Event]]:
        """End the members no longer running and drop them from the stack."""
        done = [r for r in self.runs if r.status != "running"]
        if not done:
            return
        seconds = time.perf_counter() - self.started
        for run in done:
            yield run.position, run.finished(self.step, seconds)
        keep = [slot for slot, r in enumerate(self.runs) if r.status == "running"]
        self.runs = [self.runs[slot] for slot in keep]
        if self.runs:
            slots = torch.tensor(keep, device=self.device)
            self.stepper.keep(slots)
            self.recorder.keep(slots)
            # a captured graph still holds the old stack's tensors
            self.train_step, _ = choose_step(self.stepper, self.shape.batch_size, self.device)
