"""The training engine: one run from a RunConfig, as a stream of events.

``run(config, data)`` is a generator of events (see trainer.events). The loop
reads top to bottom: per epoch, slice batches from the in-memory tensors, take
a hand-written forward/backward step, evaluate the test set in large batches,
emit the epoch's metrics, check convergence.

Why hand-written backprop: at batch 64 this MLP's matmuls are small, so the
textbook loop spends most of its time in per-sample Python (DataLoader) and
per-op dispatch (autograd, optimizer bookkeeping). The closed-form gradient of
Linear/ReLU/cross-entropy needs about 20 tensor ops a step. A test checks each
gradient against autograd.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TypeVar

import torch
import torch.nn.functional as F
from fmlab.trainer.config import ConfigError, RunConfig
from fmlab.trainer.data import FashionMNIST
from fmlab.trainer.events import (
    EpochMetrics,
    Event,
    RunFinished,
    RunResults,
    RunStarted,
    StepMetrics,
)
from fmlab.trainer.metrics import ConvergenceTracker, is_metric_step
from fmlab.trainer.models import build_mlp, linear_layers, summarize

log = logging.getLogger("fmlab.engine")
EVAL_BATCH = 10_000
FLUSH_SECONDS = 0.25  # step metrics reach consumers at most this late
T = TypeVar("T")


def resolve_device(name: str) -> torch.device:
    """``auto`` is CUDA when available; asking for CUDA without it is a ConfigError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device", "cuda was requested but no CUDA device is available")
    return torch.device(name)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    return platform.processor() or platform.machine() or "cpu"


@dataclass
class _Layer:
    weight: torch.Tensor
    bias: torch.Tensor


class MLPStepper:
    """Forward, backward and optimizer step of an MLP on one batch.

    Keeps running sums of loss and correct predictions as device tensors, so
    nothing here waits for the device; callers read them at epoch end.
    """

    def __init__(self, model: torch.nn.Sequential, config: RunConfig) -> None:
        self.layers = [_Layer(m.weight.data, m.bias.data) for m in linear_layers(model)]
        self.params = [t for layer in self.layers for t in (layer.weight, layer.bias)]
        self.grads = [torch.zeros_like(p) for p in self.params]
        self.num_params = sum(p.numel() for p in self.params)
        for param, grad in zip(model.parameters(), self.grads):
            param.grad = grad
        opt = config.optimizer
        params = list(model.parameters())
        self.plain_sgd = opt.name == "sgd" and opt.momentum == 0
        # Plain SGD is one foreach update below; torch.optim is only built when
        # needed, since its first construction in a process costs seconds.
        self.optimizer: torch.optim.Optimizer | None = None
        if opt.name == "adam":
            self.optimizer = torch.optim.Adam(params, lr=opt.lr, foreach=True)
        elif not self.plain_sgd:
            self.optimizer = torch.optim.SGD(params, lr=opt.lr, momentum=opt.momentum, foreach=True)
        self.lr = opt.lr
        device = self.params[0].device
        # On CUDA the learning rate lives in a device tensor, so a captured
        # graph reads it at replay instead of baking in a Python float.
        self.neg_lr = torch.tensor(-opt.lr, device=device) if device.type == "cuda" else None
        self.loss_sum = torch.zeros((), device=device)
        self.correct = torch.zeros((), dtype=torch.long, device=device)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every layer's output, ReLU applied to all but the last (the logits)."""
        outputs = [x]
        last = len(self.layers) - 1
        for index, layer in enumerate(self.layers):
            z = torch.addmm(layer.bias, outputs[-1], layer.weight.t())
            outputs.append(z.relu_() if index < last else z)
        return outputs

    def _forward_loss(
        self, x: torch.Tensor, y: torch.Tensor, onehot: torch.Tensor
    ) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        """Every layer's output, the batch's summed loss (also added to the
        epoch sums) and d(mean loss)/d(logits)."""
        outputs = self.forward(x)
        logits = outputs[-1]
        log_probs = torch.log_softmax(logits, 1)
        loss = F.nll_loss(log_probs, y, reduction="sum")
        self.loss_sum += loss
        self.correct += (logits.argmax(1) == y).sum()
        # d(mean cross-entropy)/d(logits) = (softmax - onehot) / batch
        return outputs, loss, log_probs.exp_().sub_(onehot).div_(x.shape[0])

    def step(self, x: torch.Tensor, y: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
        """Train on one batch; returns the batch's summed loss (a device scalar)."""
        outputs, loss, grad = self._forward_loss(x, y, onehot)
        for index in range(len(self.layers) - 1, -1, -1):
            layer = self.layers[index]
            torch.mm(grad.t(), outputs[index], out=self.grads[2 * index])
            torch.sum(grad, 0, out=self.grads[2 * index + 1])
            if index:
                # propagate through the weights before they are updated
                grad = torch.ops.aten.threshold_backward(grad @ layer.weight, outputs[index], 0)
        if self.plain_sgd and self.neg_lr is not None:
            torch._foreach_add_(self.params, torch._foreach_mul(self.grads, self.neg_lr))
        elif self.plain_sgd:
            torch._foreach_add_(self.params, self.grads, alpha=-self.lr)
        else:
            self.optimizer.step()
        return loss

    def fused_step(self, x: torch.Tensor, y: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
        """``step`` for plain SGD without writing the gradients out: each weight
        update is one ``addmm_`` (W -= lr * grad^T h) after the gradient has
        been propagated through W. On the 2-core CPU this took about a tenth
        off a base step (deeper and wider: within the noise). Steps that
        report gradient statistics use ``step``, which keeps the gradients."""
        outputs, loss, grad = self._forward_loss(x, y, onehot)
        for index in range(len(self.layers) - 1, -1, -1):
            layer = self.layers[index]
            back = None
            if index:
                back = torch.ops.aten.threshold_backward(grad @ layer.weight, outputs[index], 0)
            layer.weight.addmm_(grad.t(), outputs[index], alpha=-self.lr)
            layer.bias.add_(grad.sum(0), alpha=-self.lr)
            grad = back
        return loss

    def grad_stats(self) -> torch.Tensor:
        """[grad mean, global L2 norm, L2 norm per layer...] of the last step."""
        sums = torch.stack([g.sum() for g in self.grads])
        squares = torch.stack(torch._foreach_norm(self.grads)).square_()
        per_layer = squares.view(-1, 2).sum(1)
        return torch.cat(
            [(sums.sum() / self.num_params).view(1), per_layer.sum().sqrt().view(1), per_layer.sqrt()]
        )

    def take_epoch_sums(self) -> tuple[float, int]:
        loss, correct = float(self.loss_sum), int(self.correct)
        self.loss_sum.zero_()
        self.correct.zero_()
        return loss, correct

    @torch.no_grad()
    def evaluate(self, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
        """Mean cross-entropy and accuracy (%) over a whole split."""
        loss = torch.zeros((), device=x.device)
        correct = torch.zeros((), dtype=torch.long, device=x.device)
        for start in range(0, len(x), EVAL_BATCH):
            logits = self.forward(x[start : start + EVAL_BATCH])[-1]
            target = y[start : start + EVAL_BATCH]
            loss += F.cross_entropy(logits, target, reduction="sum")
            correct += (logits.argmax(1) == target).sum()
        return float(loss) / len(x), 100.0 * int(correct) / len(x)


def capture_graph(
    run_step: Callable[[], T], state: Sequence[torch.Tensor], device: torch.device
) -> tuple[torch.cuda.CUDAGraph, T]:
    """Capture one call of ``run_step`` as a CUDA graph; returns the graph and
    the call's result (static tensors the graph rewrites at each replay).

    The call is first warmed up on a side stream so its allocations happen
    outside the graph; those warm-up calls train on whatever the static inputs
    hold, so ``state`` (the tensors the step updates) is put back afterwards.
    Capture is thread-local: the app captures from its training thread while
    its UI thread may ask torch about memory.
    """
    saved = [t.clone() for t in state]
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        for _ in range(3):
            run_step()
    torch.cuda.current_stream(device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, capture_error_mode="thread_local"):
        result = run_step()
    for tensor, original in zip(state, saved):
        tensor.copy_(original)
    return graph, result


class GraphedStep:
    """One training step (forward, backward, SGD update) captured as a CUDA
    graph and replayed per batch: one launch instead of ~20 kernel launches
    and their Python dispatch. Batches are copied into static input tensors.
    Only full batches use it; a last partial batch runs eagerly.
    """

    def __init__(self, stepper: MLPStepper, batch_size: int, device: torch.device) -> None:
        self.stepper = stepper
        self.batch_size = batch_size
        self.x = torch.zeros(batch_size, 784, device=device)
        self.y = torch.zeros(batch_size, dtype=torch.long, device=device)
        self.onehot = F.one_hot(self.y, 10).float()
        state = (*stepper.params, stepper.loss_sum, stepper.correct)
        self.graph, self.loss = capture_graph(
            lambda: stepper.step(self.x, self.y, self.onehot), state, device
        )

    def __call__(self, x: torch.Tensor, y: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
        if len(x) != self.batch_size:
            return self.stepper.step(x, y, onehot)
        self.x.copy_(x)
        self.y.copy_(y)
        self.onehot.copy_(onehot)
        self.graph.replay()
        return self.loss


def graphed_or_eager(
    eager: Callable, capture: Callable[[], Callable], device: torch.device
) -> tuple[Callable, str]:
    """The step to train with: ``capture()`` on CUDA, else ``eager``; with a
    note saying why when the eager step was chosen on CUDA. If capture fails
    (an old driver, an unsupported op), training goes on eagerly."""
    if device.type != "cuda":
        return eager, ""
    if os.environ.get("FMLAB_CUDA_GRAPH", "1") == "0":
        return eager, "CUDA graph off (FMLAB_CUDA_GRAPH=0); training eagerly"
    try:
        return capture(), ""
    except Exception as exc:  # any capture failure: eager still trains correctly
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return eager, f"CUDA graph capture failed ({reason}); training eagerly"


def choose_step(stepper: MLPStepper, batch_size: int, device: torch.device) -> tuple[Callable, str]:
    """The engine's step function and its note (see graphed_or_eager)."""
    if device.type == "cuda" and not stepper.plain_sgd:
        return stepper.step, "CUDA graph is used for plain SGD only; training eagerly"
    return graphed_or_eager(stepper.step, lambda: GraphedStep(stepper, batch_size, device), device)


class StepRecorder:
    """Collects step metrics in a device buffer and hands them out in batches,
    so a GPU run syncs at most every FLUSH_SECONDS rather than every step."""

    def __init__(self, num_layers: int, device: torch.device, capacity: int = 256) -> None:
        self.buffer = torch.empty(capacity, 3 + num_layers, device=device)
        self.steps: list[tuple[int, int]] = []
        self.last_flush = time.perf_counter()

    def record(self, step: int, epoch: int, loss: torch.Tensor, stats: torch.Tensor) -> None:
        row = self.buffer[len(self.steps)]
        row[0] = loss
        row[1:] = stats
        self.steps.append((step, epoch))

    def due(self) -> bool:
        return len(self.steps) == len(self.buffer) or (
            bool(self.steps) and time.perf_counter() - self.last_flush >= FLUSH_SECONDS
        )

    def flush(self) -> list[StepMetrics]:
        rows = self.buffer[: len(self.steps)].tolist()
        events = [
            StepMetrics(step, epoch, row[0], row[1], row[2], tuple(row[3:]))
            for (step, epoch), row in zip(self.steps, rows)
        ]
        self.steps.clear()
        self.last_flush = time.perf_counter()
        return events


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
class Checkpoint:
    """Everything needed to continue a run after its last finished epoch.

    Tensors are CPU copies, so a checkpoint can be saved while training goes on.
    """

    epoch: int
    step: int
    model: dict[str, torch.Tensor]
    optimizer: dict
    shuffle_state: torch.Tensor
    history: list[EpochMetrics]

    def save(self, path: Path) -> None:
        """Write atomically (temp file, fsync, rename), like session files."""
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as handle:
                torch.save(asdict(self), handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    @classmethod
    def load(cls, path: Path) -> Checkpoint:
        data = torch.load(path, map_location="cpu", weights_only=False)
        data["history"] = [EpochMetrics(**e) if isinstance(e, dict) else e for e in data["history"]]
        return cls(**data)


def _checkpoint(stepper: MLPStepper, model: torch.nn.Module, epoch: int, step: int,
                shuffler: torch.Generator, history: list[EpochMetrics]) -> Checkpoint:  # fmt: skip
    def to_cpu(value):
        if isinstance(value, torch.Tensor):
            return value.detach().to("cpu", copy=True)
        if isinstance(value, dict):
            return {k: to_cpu(v) for k, v in value.items()}
        if isinstance(value, list):
            return [to_cpu(v) for v in value]
        return value

    return Checkpoint(
        epoch=epoch,
        step=step,
        model=to_cpu(model.state_dict()),
        optimizer=to_cpu(stepper.optimizer.state_dict()) if stepper.optimizer else {},
        shuffle_state=shuffler.get_state(),
        history=list(history),
    )


def _restore(
    stepper: MLPStepper, model: torch.nn.Module, shuffler: torch.Generator, ckpt: Checkpoint
) -> None:
    model.load_state_dict(ckpt.model)
    if stepper.optimizer is not None:
        stepper.optimizer.load_state_dict(ckpt.optimizer)
    shuffler.set_state(ckpt.shuffle_state)


def run(
    config: RunConfig,
    data: FashionMNIST,
    cancel: threading.Event | None = None,
    *,
    resume: Checkpoint | None = None,
    on_checkpoint: Callable[[Checkpoint], None] | None = None,
) -> Iterator[Event]:
    """Train one run, yielding RunStarted, StepMetrics/EpochMetrics, RunFinished.

    ``cancel`` is checked before every step; once set, the run ends as
    ``stopped`` after the current step. Errors raised while training end the
    run as ``failed`` with the message in the results; the generator itself
    only raises ConfigError (for a device that is not there).

    ``on_checkpoint`` receives a Checkpoint after every finished epoch, before
    that epoch's EpochMetrics is yielded; passing one back as ``resume``
    continues the run from there exactly as if it had never stopped. The
    resumed stream yields RunStarted, then only the new epochs.
    """
    device = resolve_device(config.device)
    cancel = cancel or threading.Event()
    started = time.perf_counter() - sum(e.seconds for e in resume.history) if resume else time.perf_counter()
    train_x, train_y = data.train_x.to(device), data.train_y.to(device)
    test_x, test_y = data.test_x.to(device), data.test_y.to(device)
    n_train, batch = len(train_x), config.batch_size
    steps_per_epoch = -(-n_train // batch)
    model = build_mlp(config.model, config.seed).to(device)
    stepper = MLPStepper(model, config)
    shuffler = torch.Generator().manual_seed(config.seed)
    if resume is not None:
        _restore(stepper, model, shuffler, resume)
    train_step, note = choose_step(stepper, batch, device)
    # steps that report no statistics need no gradient tensors (eager plain SGD)
    quiet_step = stepper.fused_step if stepper.plain_sgd and train_step == stepper.step else train_step
    if note:
        log.warning(note)
    yield RunStarted(
        config=config,
        model=summarize(config.model),
        device=device.type,
        device_name=device_name(device),
        torch_version=torch.__version__,
        train_size=n_train,
        test_size=len(test_x),
        steps_per_epoch=steps_per_epoch,
        notes=(note,) if note else (),
    )
    history: list[EpochMetrics] = list(resume.history) if resume else []
    tracker = ConvergenceTracker(config.convergence)
    for metrics in history:
        tracker.update(metrics.test_acc)
    recorder = StepRecorder(len(stepper.layers), device)
    onehot_all = F.one_hot(train_y, 10).float()
    step = resume.step if resume else 0
    epochs_done = resume.epoch if resume else 0
    status, message = "completed", ""
    last_epoch = config.epochs
    if config.convergence.stop and tracker.converged_epoch is not None:
        status, last_epoch = "converged", epochs_done  # it had converged before it stopped
    try:
        for epoch in range(epochs_done + 1, last_epoch + 1):
            epoch_start = time.perf_counter()
            x_all, y_all, onehot = epoch_order((train_x, train_y, onehot_all), config.shuffle, shuffler)
            for start in range(0, n_train, batch):
                if cancel.is_set():
                    status = "stopped"
                    break
                step += 1
                end = start + batch
                metric_step = is_metric_step(step, config.full_steps, config.step_every)
                loss = (train_step if metric_step else quiet_step)(
                    x_all[start:end], y_all[start:end], onehot[start:end]
                )
                if metric_step:
                    recorder.record(step, epoch, loss / (min(end, n_train) - start), stepper.grad_stats())
                if recorder.due():
                    events = recorder.flush()
                    yield from events
                    bad = next((e.step for e in events if not math.isfinite(e.loss)), None)
                    if bad is not None:
                        status, message = "diverged", f"loss became non-finite at step {bad}"
                        break
            yield from recorder.flush()
            if status != "completed":
                break
            loss_sum, correct = stepper.take_epoch_sums()
            if not math.isfinite(loss_sum):
                status, message = "diverged", f"training loss became non-finite in epoch {epoch}"
                break
            test_loss, test_acc = stepper.evaluate(test_x, test_y)
            seconds = time.perf_counter() - epoch_start
            converged = tracker.update(test_acc)
            metrics = EpochMetrics(
                epoch=epoch,
                train_loss=loss_sum / n_train,
                train_acc=100.0 * correct / n_train,
                test_loss=test_loss,
                test_acc=test_acc,
                seconds=seconds,
                samples_per_s=n_train / seconds,
                converged_epoch=converged,
            )
            history.append(metrics)
            epochs_done = epoch
            if on_checkpoint is not None:
                on_checkpoint(_checkpoint(stepper, model, epoch, step, shuffler, history))
            yield metrics
            if converged is not None and config.convergence.stop:
                status = "converged"
                break
    except Exception as exc:  # a failed run still ends with RunFinished
        status, message = "failed", f"{type(exc).__name__}: {exc}".splitlines()[0]
    best = max(history, key=lambda m: m.test_acc, default=None)
    yield RunFinished(
        RunResults(
            status=status,
            epochs_done=epochs_done,
            steps_done=step,
            final_test_acc=history[-1].test_acc if history else None,
            best_test_acc=best.test_acc if best else None,
            best_epoch=best.epoch if best else None,
            converged_epoch=tracker.converged_epoch,
            seconds=time.perf_counter() - started,
            message=message,
        )
    )
