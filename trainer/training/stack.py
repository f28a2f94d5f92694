"""Several runs of one architecture trained together as one stacked model.

``run_batched(configs, data)`` trains every config and yields ``(index, event)``
pairs: each member speaks the ordinary event stream (RunStarted, StepMetrics,
EpochMetrics, RunFinished), so its events can go straight to a SessionRecorder
and the member is saved as a normal session.

Members of one group share the architecture, batch size, data order and step
logging; each has its own learning rate and its own initial weights (from
``build_mlp(spec, seed)``). The step is the engine's MLPStepper math, stacked:

- weights are ``[M, out, in]`` and activations are kept transposed,
  ``[M, width, batch]``, so every product is a plain mm/bmm with no copies: the
  first layer is one matmul of all members' weights against the shared batch,
  later layers are bmm;
- the output gradient is scaled by each member's ``lr / batch`` before it is
  propagated (every gradient is linear in it), so the SGD update folds into
  the weight-gradient product itself (``W.baddbmm_(delta, h, alpha=-1)``) and
  no weight-gradient tensor is ever written out; on metric steps the gradient
  statistics come from the product's factors (see ``_weight_grad_square``).

Why it pays on a CPU: at batch 64 one member's matmuls are too small to keep
two cores busy; stacked, they are big enough. Members never mix: a member's
rows of every product depend only on its own weights, so one that diverges
(non-finite loss) ends with status ``diverged`` and is dropped from the stack
while the others go on unchanged.

Only plain SGD (no momentum) stacks; ``can_batch`` says which configs do and
``group_key`` which ones may share a stack.
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
from fmlab.trainer.events import EpochMetrics, Event, RunFinished, RunResults, RunStarted, StepMetrics
from fmlab.trainer.metrics import ConvergenceTracker, is_metric_step
from fmlab.trainer.models import build_mlp, linear_layers, summarize
from fmlab.trainer.training.loop import (
    EVAL_BATCH,
    FLUSH_SECONDS,
    capture_graph,
    device_name,
    epoch_order,
    graphed_or_eager,
    resolve_device,
)

log = logging.getLogger("fmlab.batched")


def can_batch(config: RunConfig) -> bool:
    """Plain SGD only: other optimizers keep state the stacked step does not."""
    return config.optimizer.name == "sgd" and config.optimizer.momentum == 0


def group_key(config: RunConfig) -> tuple:
    """Configs with equal keys see the same batches in the same order and log
    the same steps, so they can be trained as one stack."""
    order = (config.shuffle, config.seed if config.shuffle else None)
    logging = (config.full_steps, config.step_every)
    return (config.model.hidden, config.batch_size, order, logging, config.device)


class StackedStepper:
    """Forward, backward and SGD step of M same-shaped MLPs on one shared batch."""

    def __init__(self, configs: Sequence[RunConfig], device: torch.device) -> None:
        models = [linear_layers(build_mlp(c.model, c.seed)) for c in configs]
        depth = len(models[0])
        # [M, out, in] and [M, out]; contiguous, so layer 0 also views as [M*out, in]
        self.weights = [torch.stack([m[i].weight.data for m in models]).to(device) for i in range(depth)]
        self.biases = [torch.stack([m[i].bias.data for m in models]).to(device) for i in range(depth)]
        # kept on the device: a Python float per member would force a sync per step
        self.lr = torch.tensor([c.optimizer.lr for c in configs], device=device)
        self._scales: dict[int, torch.Tensor] = {}
        self.num_params = configs[0].model.num_params
        self.loss_sum = torch.zeros(len(configs), device=device)
        self.correct = torch.zeros(len(configs), dtype=torch.long, device=device)

    @property
    def size(self) -> int:
        return len(self.lr)

    def keep(self, members: torch.Tensor) -> None:
        """Rebuild every stacked tensor with only these member positions."""
        self.weights = [w.index_select(0, members) for w in self.weights]
        self.biases = [b.index_select(0, members) for b in self.biases]
        self.lr = self.lr.index_select(0, members)
        self._scales.clear()
        self.loss_sum = self.loss_sum.index_select(0, members)
        self.correct = self.correct.index_select(0, members)

    def member_weights(self, position: int) -> list[torch.Tensor]:
        """One member's [weight, bias, weight, bias, ...] like model.parameters()."""
        return [t[position] for pair in zip(self.weights, self.biases) for t in pair]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every layer's output transposed to [M, width, batch] (x itself first),
        ReLU applied to all but the last (the logits)."""
        members, batch = self.size, x.shape[0]
        first = self.weights[0]
        z = torch.addmm(self.biases[0].view(-1, 1), first.view(-1, first.shape[2]), x.t())
        outputs = [x, z.view(members, -1, batch)]
        last = len(self.weights) - 1
        if last:
            outputs[-1].relu_()
        for index in range(1, last + 1):
            z = torch.baddbmm(self.biases[index].unsqueeze(2), self.weights[index], outputs[-1])
            outputs.append(z.relu_() if index < last else z)
        return outputs

    def step(
        self, x: torch.Tensor, y: torch.Tensor, onehot_t: torch.Tensor, want_stats: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Train every member on one batch.

        ``onehot_t`` is the batch's one-hot targets as [10, batch]. Returns each
        member's summed loss [M] and, when ``want_stats``, its gradient
        statistics [M, 2 + layers] (see MLPStepper.grad_stats).
        """
        outputs = self.forward(x)
        logits = outputs[-1]
        log_probs = torch.log_softmax(logits, 1)
        targets = y.view(1, 1, -1).expand(self.size, 1, -1)
        loss = log_probs.gather(1, targets).sum((1, 2)).neg_()
        self.loss_sum += loss
        # max().indices, not argmax(): the same first-maximum index, and several
        # times faster over this strided class dimension on CPU
        self.correct += (logits.max(1).indices == y).sum(1)
        # (softmax - onehot) / batch is d(mean loss)/d(logits); times lr it is the
        # update's own scale, so every product below is already lr * gradient
        delta = log_probs.exp_().sub_(onehot_t).mul_(self._scale(x.shape[0]))
        sums, squares = [], []
        for index in range(len(self.weights) - 1, -1, -1):
            weight, bias, inputs = self.weights[index], self.biases[index], outputs[index]
            back = None
            if index:
                # propagate through the weights before they are updated
                back = torch.bmm(weight.transpose(1, 2), delta)
                back = torch.ops.aten.threshold_backward(back, inputs, 0)
            grad_b = delta.sum(2)
            if want_stats:
                sums.append(self._weight_grad_sum(delta, inputs) + grad_b.sum(1))
                squares.append(self._weight_grad_square(delta, inputs) + grad_b.square().sum(1))
            self._fused_update(index, delta, inputs)
            bias.sub_(grad_b)
            delta = back
        stats = self._stats(sums[::-1], squares[::-1]) if want_stats else None
        return loss, stats

    # The statistics come from the factors of each weight gradient, delta @ inputs^T,
    # without forming it (the update is fused into the product): its sum is
    # sum_b (sum_o delta) (sum_i inputs), and its squared norm the Frobenius
    # product of the two batch-by-batch Gram matrices, about a tenth of the
    # product's cost. Layer 0's inputs are the shared batch [batch, in].

    @staticmethod
    def _weight_grad_sum(delta: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        # [batch] for the shared batch, [M, batch] for a later layer's inputs
        return (delta.sum(1) * inputs.sum(1)).sum(-1)

    @staticmethod
    def _weight_grad_square(delta: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        gram_delta = torch.bmm(delta.transpose(1, 2), delta)
        if inputs.dim() == 2:
            gram_inputs = inputs @ inputs.t()
        else:
            gram_inputs = torch.bmm(inputs.transpose(1, 2), inputs)
        # both Gram matrices are positive semi-definite; rounding must not make it negative
        return (gram_delta * gram_inputs).sum((1, 2)).clamp_(min=0)

    def _fused_update(self, index: int, delta: torch.Tensor, inputs: torch.Tensor) -> None:
        weight = self.weights[index]
        if index == 0:
            weight.view(-1, weight.shape[2]).addmm_(delta.reshape(-1, delta.shape[2]), inputs, alpha=-1)
        else:
            weight.baddbmm_(delta, inputs.transpose(1, 2), alpha=-1)

    def _scale(self, batch: int) -> torch.Tensor:
        """lr / batch per member as [M, 1, 1], kept per batch size (one more for the last batch)."""
        scale = self._scales.get(batch)
        if scale is None:
            scale = self._scales[batch] = (self.lr / batch).view(-1, 1, 1)
        return scale

    def _stats(self, sums: list[torch.Tensor], squares: list[torch.Tensor]) -> torch.Tensor:
        """[grad mean, global L2 norm, L2 norm per layer...] per member; the
        products held lr * gradient, so divide the lr back out."""
        lr = self.lr.view(-1, 1)
        per_layer = torch.stack(squares, 1)  # [M, layers]
        mean = torch.stack(sums, 1).sum(1, keepdim=True) / self.num_params
        norm = per_layer.sum(1, keepdim=True).sqrt()
        return torch.cat([mean, norm, per_layer.sqrt()], 1) / lr

    def take_epoch_sums(self) -> tuple[list[float], list[int]]:
        loss, correct = self.loss_sum.tolist(), self.correct.tolist()
        self.loss_sum.zero_()
        self.correct.zero_()
        return loss, correct

    @torch.no_grad()
    def evaluate(self, x: torch.Tensor, y: torch.Tensor) -> tuple[list[float], list[float]]:
        """Each member's mean cross-entropy and accuracy (%) over a whole split."""
        loss = torch.zeros(self.size, device=x.device)
        correct = torch.zeros(self.size, dtype=torch.long, device=x.device)
        # the activations grow with M, so the chunk shrinks to keep memory flat
        chunk = max(1_000, EVAL_BATCH // self.size)
        for start in range(0, len(x), chunk):
            logits = self.forward(x[start : start + chunk])[-1]
            target = y[start : start + chunk]
            log_probs = torch.log_softmax(logits, 1)
            loss -= log_probs.gather(1, target.view(1, 1, -1).expand(self.size, 1, -1)).sum((1, 2))
            correct += (logits.max(1).indices == target).sum(1)
        return [v / len(x) for v in loss.tolist()], [100.0 * c / len(x) for c in correct.tolist()]


class GraphedStackStep:
    """StackedStepper.step captured as two CUDA graphs, with and without the
    gradient statistics, replayed per full batch (see engine.GraphedStep). The
    graphs hold the stack's tensors: after members drop out, capture anew."""

    def __init__(self, stepper: StackedStepper, batch_size: int, device: torch.device) -> None:
        self.stepper = stepper
        self.batch_size = batch_size
        self.x = torch.zeros(batch_size, 784, device=device)
        self.y = torch.zeros(batch_size, dtype=torch.long, device=device)
        self.onehot_t = torch.zeros(10, batch_size, device=device)
        state = (*stepper.weights, *stepper.biases, stepper.loss_sum, stepper.correct)
        self.graphs = {
            want: capture_graph(lambda w=want: stepper.step(self.x, self.y, self.onehot_t, w), state, device)
            for want in (False, True)
        }

    def __call__(
        self, x: torch.Tensor, y: torch.Tensor, onehot_t: torch.Tensor, want_stats: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if len(x) != self.batch_size:
            return self.stepper.step(x, y, onehot_t, want_stats)
        self.x.copy_(x)
        self.y.copy_(y)
        self.onehot_t.copy_(onehot_t)
        graph, result = self.graphs[want_stats]
        graph.replay()
        return result


def choose_stack_step(stepper: StackedStepper, batch_size: int, device: torch.device) -> tuple[Callable, str]:
    """The stack's step function and its note (see engine.graphed_or_eager)."""
    return graphed_or_eager(stepper.step, lambda: GraphedStackStep(stepper, batch_size, device), device)


class StackedStepRecorder:
    """The engine's StepRecorder for M members at once: one device buffer row
    per recorded step, synced at most every FLUSH_SECONDS."""

    def __init__(self, members: int, num_layers: int, device: torch.device, capacity: int = 256) -> None:
        self.buffer = torch.empty(capacity, members, 3 + num_layers, device=device)
        self.steps: list[tuple[int, int]] = []
        self.last_flush = time.perf_counter()

    def record(self, step: int, epoch: int, loss: torch.Tensor, stats: torch.Tensor) -> None:
        row = self.buffer[len(self.steps)]
        row[:, 0] = loss
        row[:, 1:] = stats
        self.steps.append((step, epoch))

    def due(self) -> bool:
        return len(self.steps) == len(self.buffer) or (
            bool(self.steps) and time.perf_counter() - self.last_flush >= FLUSH_SECONDS
        )

    def flush(self) -> list[list[StepMetrics]]:
        """Each member position's step events since the last flush."""
        rows = self.buffer[: len(self.steps)].tolist()
        members = self.buffer.shape[1]
        per_member: list[list[StepMetrics]] = [[] for _ in range(members)]
        for (step, epoch), row in zip(self.steps, rows):
            for position, values in enumerate(row):
                per_member[position].append(
                    StepMetrics(step, epoch, values[0], values[1], values[2], tuple(values[3:]))
                )
        self.steps.clear()
        self.last_flush = time.perf_counter()
        return per_member

    def keep(self, members: torch.Tensor) -> None:
        self.buffer = self.buffer.index_select(1, members)


@dataclass
class _Member:
    """One run's bookkeeping while it is in the stack."""

    index: int  # position in the caller's config list
    config: RunConfig
    tracker: ConvergenceTracker
    history: list[EpochMetrics] = field(default_factory=list)
    status: str = "running"
    message: str = ""

    def finished(self, steps: int, seconds: float) -> RunFinished:
        best = max(self.history, key=lambda m: m.test_acc, default=None)
        return RunFinished(
            RunResults(
                status=self.status,
                epochs_done=len(self.history),
                steps_done=steps,
                final_test_acc=self.history[-1].test_acc if self.history else None,
                best_test_acc=best.test_acc if best else None,
                best_epoch=best.epoch if best else None,
                converged_epoch=self.tracker.converged_epoch,
                seconds=seconds,
                message=self.message,
            )
        )


def run_batched(
    configs: Sequence[RunConfig],
    data: FashionMNIST,
    cancel: threading.Event | None = None,
) -> Iterator[tuple[int, Event]]:
    """Train configs that share a ``group_key`` as one stack.

    Yields ``(i, event)`` where ``i`` indexes ``configs``; each member's events
    form the same stream ``engine.run(configs[i], data)`` would produce, with
    times measured for the whole stack. Raises ValueError for configs that
    cannot share a stack (check ``can_batch`` and ``group_key`` first) and
    ConfigError for a device that is not there.
    """
    if not configs:
        return
    if not all(can_batch(c) for c in configs) or len({group_key(c) for c in configs}) > 1:
        raise ValueError("these configs cannot be trained as one stack")
    yield from _StackRun(list(configs), data, cancel or threading.Event()).events()


class _StackRun:
    """The state of one stacked run; ``events()`` reads like engine.run."""

    def __init__(self, configs: list[RunConfig], data: FashionMNIST, cancel: threading.Event) -> None:
        self.shape = configs[0]  # what all members share
        self.device = resolve_device(self.shape.device)
        self.data, self.cancel = data, cancel
        self.members = [_Member(i, c, ConvergenceTracker(c.convergence)) for i, c in enumerate(configs)]
        self.stepper = StackedStepper(configs, self.device)
        self.recorder = StackedStepRecorder(len(configs), len(self.stepper.weights), self.device)
        self.started = time.perf_counter()
        self.step = 0
        self.train_step: Callable = self.stepper.step
        self.note = ""

    def events(self) -> Iterator[tuple[int, Event]]:
        device, shape = self.device, self.shape
        train_x, train_y = self.data.train_x.to(device), self.data.train_y.to(device)
        test_x, test_y = self.data.test_x.to(device), self.data.test_y.to(device)
        n_train, batch = len(train_x), shape.batch_size
        self.train_step, self.note = choose_stack_step(self.stepper, batch, device)
        if self.note:
            log.warning(self.note)
        for member in self.members:
            yield member.index, self._started_event(member.config, n_train, len(test_x))
        onehot_all = torch.nn.functional.one_hot(train_y, 10).float()
        shuffler = torch.Generator().manual_seed(shape.seed)
        last_epoch = max(m.config.epochs for m in self.members)
        try:
            for epoch in range(1, last_epoch + 1):
                epoch_start = time.perf_counter()
                x_all, y_all, onehot = epoch_order((train_x, train_y, onehot_all), shape.shuffle, shuffler)
                for start in range(0, n_train, batch):
                    if self.cancel.is_set():
                        break
                    self.step += 1
                    end = min(start + batch, n_train)
                    want = is_metric_step(self.step, shape.full_steps, shape.step_every)
                    loss, stats = self.train_step(
                        x_all[start:end], y_all[start:end], onehot[start:end].t(), want
                    )
                    if want:
                        self.recorder.record(self.step, epoch, loss / (end - start), stats)
                    if self.recorder.due():
                        yield from self._flush()
                        if not self.members:
                            break
                yield from self._flush()
                if self.cancel.is_set():
                    self._end_all("stopped")
                    break
                if not self.members:
                    break
                yield from self._end_epoch(epoch, epoch_start, test_x, test_y, n_train)
                if not self.members:
                    break
        except Exception as exc:  # a failed stack still ends every member with RunFinished
            self._end_all("failed", f"{type(exc).__name__}: {exc}".splitlines()[0])
        yield from self._finish_marked()

    def _started_event(self, config: RunConfig, n_train: int, n_test: int) -> RunStarted:
        return RunStarted(
            config=config,
            model=summarize(config.model),
            device=self.device.type,
            device_name=device_name(self.device),
            torch_version=torch.__version__,
            train_size=n_train,
            test_size=n_test,
            steps_per_epoch=-(-n_train // config.batch_size),
            notes=(self.note,) if self.note else (),
        )

    def _flush(self) -> Iterator[tuple[int, Event]]:
        """Hand out buffered step events; members whose loss went non-finite diverge."""
        if not self.recorder.steps:
            return
        for member, events in zip(self.members, self.recorder.flush()):
            for event in events:
                yield member.index, event
            if not all(math.isfinite(e.loss) for e in events):
                member.status = "diverged"
                member.message = f"loss became non-finite at step {events[-1].step}"
        yield from self._finish_marked()

    def _end_epoch(
        self, epoch: int, epoch_start: float, test_x: torch.Tensor, test_y: torch.Tensor, n_train: int
    ) -> Iterator[tuple[int, Event]]:
        loss_sums, corrects = self.stepper.take_epoch_sums()
        for member, loss_sum in zip(self.members, loss_sums):
            if not math.isfinite(loss_sum):
                member.status = "diverged"
                member.message = f"training loss became non-finite in epoch {epoch}"
        alive = [m.status == "running" for m in self.members]
        yield from self._finish_marked()
        loss_sums = [v for v, ok in zip(loss_sums, alive) if ok]
        corrects = [v for v, ok in zip(corrects, alive) if ok]
        if not self.members:
            return
        test_losses, test_accs = self.stepper.evaluate(test_x, test_y)
        seconds = time.perf_counter() - epoch_start
        for position, member in enumerate(self.members):
            converged = member.tracker.update(test_accs[position])
            metrics = EpochMetrics(
                epoch=epoch,
                train_loss=loss_sums[position] / n_train,
                train_acc=100.0 * corrects[position] / n_train,
                test_loss=test_losses[position],
                test_acc=test_accs[position],
                seconds=seconds,
                samples_per_s=n_train / seconds,
                converged_epoch=converged,
            )
            member.history.append(metrics)
            yield member.index, metrics
            if converged is not None and member.config.convergence.stop:
                member.status = "converged"
            elif epoch == member.config.epochs:
                member.status = "completed"
        yield from self._finish_marked()

    def _end_all(self, status: str, message: str = "") -> None:
        for member in self.members:
            member.status, member.message = status, message

    def _finish_marked(self) -> Iterator[tuple[int, Event]]:
        """End the members no longer running and drop them from the stack."""
        done = [m for m in self.members if m.status != "running"]
        if not done:
            return
        seconds = time.perf_counter() - self.started
        for member in done:
            yield member.index, member.finished(self.step, seconds)
        keep = [p for p, m in enumerate(self.members) if m.status == "running"]
        self.members = [self.members[p] for p in keep]
        if self.members:
            members = torch.tensor(keep, device=self.device)
            self.stepper.keep(members)
            self.recorder.keep(members)
            # a captured graph still holds the old stack's tensors
            self.train_step, _ = choose_stack_step(self.stepper, self.shape.batch_size, self.device)
