"""The autograd stepper: any network (a layer stack or a user's module),
trained with PyTorch's own autograd and torch.optim.

It speaks the loop's Stepper interface (fmlab.trainer.training.steppers), so
every run, whatever its network, gets the same events, step statistics,
checkpoints, resume and divergence and convergence rules. The members of a
stack train one after another on each batch, each with its own module and
optimizer: a member's numbers are the same alone or stacked. A network with
dropout (and any user's module) draws its random numbers from the global
generator seeded by the member's seed and the step before each step, so a
resumed run draws the masks it would have drawn.

Per-layer statistics are per module that holds parameters (a conv, a Linear,
a batch norm), in ``model.modules()`` order.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from fmlab.trainer.config import RunConfig
from fmlab.trainer.models import build_model, summarize
from fmlab.trainer.training.rules import ADAM_BETAS, ADAM_EPS, EVAL_CHUNK, take_epoch_sums

EVAL_VALUES = 2**26  # the widest layer's output over one evaluation chunk (256 MiB as float32)

OPTIMIZER_KEYS = ("momentum", "exp_avg", "exp_avg_sq")  # per-parameter tensors of a checkpoint's optimizer
DROPOUT_SEED_STRIDE = 1_000_003  # a member's dropout seed is seed * this + step


class AutogradStepper:
    """A stack of M members with any network; see the module doc."""

    # convolutions and reductions split work by thread count: the count stays as set
    thread_invariant = False

    def __init__(self, configs: Sequence[RunConfig], device: torch.device) -> None:
        self.device = device
        self.configs = list(configs)
        self.models = [self._model(c, device) for c in configs]
        self.optimizers = [_optimizer(m, c) for m, c in zip(self.models, configs)]
        self.owners = [[m for m in model.modules() if next(m.parameters(recurse=False), None) is not None]
                       for model in self.models]  # fmt: skip
        self.num_params = sum(p.numel() for p in self.models[0].parameters())
        # a user's module may draw random numbers in ways no module type shows
        self.random = configs[0].model.module is not None or any(
            isinstance(m, nn.modules.dropout._DropoutNd) for m in self.models[0].modules()
        )
        self.steps_taken = 0
        self.eval_chunk = _eval_chunk(configs[0])
        self.loss_sum = torch.zeros(len(configs), device=device)
        self.correct = torch.zeros(len(configs), dtype=torch.long, device=device)

    @staticmethod
    def _model(config: RunConfig, device: torch.device) -> nn.Module:
        model = build_model(config.model, config.seed).to(device)
        if any(isinstance(m, nn.Conv2d) for m in model.modules()):
            # oneDNN's convolutions and pools run faster on channels-last tensors
            model = model.to(memory_format=torch.channels_last)
        return model.train()

    @property
    def depth(self) -> int:
        return len(self.owners[0])

    def skip_to(self, step: int) -> None:
        """A resumed stack has taken ``step`` steps already (the dropout seeds)."""
        self.steps_taken = step

    def step(self, x, y, onehot_t, want_stats):
        images = x.view(-1, 1, 28, 28)
        self.steps_taken += 1
        losses, stats = [], []
        for slot, (model, optimizer) in enumerate(zip(self.models, self.optimizers)):
            if self.random:
                torch.manual_seed((self.configs[slot].seed * DROPOUT_SEED_STRIDE + self.steps_taken) % 2**63)
            logits = model(images)
            loss = F.cross_entropy(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if want_stats:
                stats.append(self._stats(slot))
            optimizer.step()
            summed = loss.detach() * len(y)
            losses.append(summed)
            self.loss_sum[slot] += summed
            self.correct[slot] += (logits.detach().max(1).indices == y).sum()
        return torch.stack(losses), torch.stack(stats) if want_stats else None

    def _stats(self, slot: int) -> torch.Tensor:
        """[grad mean, global L2 norm, sum of tensor means, L2 norm per layer...,
        mean per layer...], as the MLP steppers give them."""
        sums, squares, sizes, tensor_means = [], [], [], []
        for owner in self.owners[slot]:
            # a parameter the loss does not reach has no gradient: zero
            grads = [
                torch.zeros_like(p) if p.grad is None else p.grad for p in owner.parameters(recurse=False)
            ]
            sums.append(sum(g.sum() for g in grads))
            squares.append(sum(g.square().sum() for g in grads))
            sizes.append(sum(g.numel() for g in grads))
            tensor_means += [g.mean() for g in grads]
        layer_sums, layer_squares = torch.stack(sums), torch.stack(squares)
        sizes_t = torch.tensor(sizes, dtype=torch.float, device=self.device)
        head = torch.stack([layer_sums.sum() / self.num_params, layer_squares.sum().sqrt(),
                            torch.stack(tensor_means).sum()])  # fmt: skip
        return torch.cat([head, layer_squares.sqrt(), layer_sums / sizes_t])

    def take_epoch_sums(self) -> tuple[list[float], list[int]]:
        return take_epoch_sums(self.loss_sum, self.correct)

    @torch.no_grad()
    def evaluate(self, x: torch.Tensor, y: torch.Tensor) -> tuple[list[float], list[float]]:
        losses, accuracies = [], []
        for model in self.models:
            model.eval()
            loss = torch.zeros((), device=x.device)
            correct = torch.zeros((), dtype=torch.long, device=x.device)
            for start in range(0, len(x), self.eval_chunk):
                logits = model(x[start : start + self.eval_chunk].view(-1, 1, 28, 28))
                target = y[start : start + self.eval_chunk]
                loss += F.cross_entropy(logits, target, reduction="sum")
                correct += (logits.max(1).indices == target).sum()
            model.train()
            losses.append(loss.item() / len(x))
            accuracies.append(100.0 * correct.item() / len(x))
        return losses, accuracies

    def keep(self, positions: torch.Tensor) -> None:
        slots = positions.tolist()
        self.models = [self.models[s] for s in slots]
        self.optimizers = [self.optimizers[s] for s in slots]
        self.owners = [self.owners[s] for s in slots]
        self.configs = [self.configs[s] for s in slots]
        self.loss_sum = self.loss_sum.index_select(0, positions)
        self.correct = self.correct.index_select(0, positions)

    # ------------------------------------------------------------ checkpoints

    def member_state(self, position: int) -> dict:
        model, optimizer = self.models[position], self.optimizers[position]
        copy = lambda t: t.detach().to("cpu", copy=True).contiguous()  # noqa: E731
        params = list(model.parameters())
        return {
            "params": [copy(p) for p in params],
            "buffers": [copy(b) for b in model.buffers()],
            "optimizer": _optimizer_state(optimizer, params, self.configs[position], self.steps_taken, copy),
        }

    def load_member_state(self, position: int, state: dict) -> None:
        """Put a checked checkpoint's state into a member; ValueError if its
        tensors do not fit this network (a user's module is only checked here)."""
        model, optimizer = self.models[position], self.optimizers[position]
        params, buffers = list(model.parameters()), list(model.buffers())
        saved, saved_buffers = state["optimizer"], state.get("buffers", [])
        _check_fits(params, state["params"], "params")
        _check_fits(buffers, saved_buffers, "buffers")
        for key in OPTIMIZER_KEYS:
            if key in saved:
                _check_fits(params, saved[key], key)
        with torch.no_grad():
            for target, value in zip([*params, *buffers], [*state["params"], *saved_buffers]):
                target.copy_(value)
        config = self.configs[position]
        for index, param in enumerate(params):
            if config.optimizer.name == "adam":
                optimizer.state[param] = {
                    "step": torch.tensor(float(saved["steps"])),
                    "exp_avg": saved["exp_avg"][index].to(param.device).clone(),
                    "exp_avg_sq": saved["exp_avg_sq"][index].to(param.device).clone(),
                }
            elif config.optimizer.momentum:
                optimizer.state[param] = {
                    "momentum_buffer": saved["momentum"][index].to(param.device).clone()
                }


def _check_fits(mine: list[torch.Tensor], saved: list[torch.Tensor], what: str) -> None:
    if len(mine) != len(saved) or any(a.shape != b.shape for a, b in zip(mine, saved)):
        raise ValueError(f"the checkpoint's {what} do not fit this network")


def _eval_chunk(config: RunConfig) -> int:
    """Test images per forward pass: EVAL_CHUNK, fewer for a network whose
    widest layer (from its summary) would need more than EVAL_VALUES values
    for that many."""
    widest = max((layer.out_features for layer in summarize(config.model).layers), default=1)
    return max(1, min(EVAL_CHUNK, EVAL_VALUES // max(widest, 1)))


def _optimizer(model: nn.Module, config: RunConfig) -> torch.optim.Optimizer:
    opt = config.optimizer
    # foreach: one call per update for every tensor (torch picks it on CUDA only by default)
    if opt.name == "adam":
        return torch.optim.Adam(model.parameters(), lr=opt.lr, betas=ADAM_BETAS, eps=ADAM_EPS, foreach=True)
    return torch.optim.SGD(model.parameters(), lr=opt.lr, momentum=opt.momentum, foreach=True)


def _optimizer_state(optimizer: torch.optim.Optimizer, params: list, config: RunConfig, steps: int,
                     copy) -> dict:  # fmt: skip
    """torch.optim's state in the checkpoint's form (that of the MLP steppers)."""
    state = [optimizer.state.get(p, {}) for p in params]
    if config.optimizer.name == "adam":
        return {"exp_avg": [copy(s["exp_avg"]) for s in state],
                "exp_avg_sq": [copy(s["exp_avg_sq"]) for s in state], "steps": steps}  # fmt: skip
    if config.optimizer.momentum:
        return {"momentum": [copy(s["momentum_buffer"]) for s in state], "steps": steps}
    return {}
