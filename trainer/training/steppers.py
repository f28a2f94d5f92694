"""Steppers: forward, backward and update of M same-shaped MLPs on one batch.

A single run is a stack of one, so every run trains through this code. The
loop (fmlab.trainer.training.loop) only talks to the :class:`Stepper`
interface; two implementations are chosen per group:

- :class:`PlainSGD`, the fast path: the SGD update is folded into the
  weight-gradient product, so no gradient tensor is written out;
- :class:`MomentumOrAdam`: explicit gradients, then SGD with momentum or Adam
  per member (each with its own learning rate).

Precision: fp32 throughout, or (``precision="bf16"``) every matrix product in
bfloat16 on bf16 copies of the fp32 weights, which stay the ones updated;
activations are bf16, the softmax, the loss and each update's sums fp32.

Layout: weights are ``[M, out, in]`` and activations are kept transposed,
``[M, width, batch]``, so every product is a plain mm/bmm with no copies:
the first layer is one matmul of all members' weights against the shared
batch, later layers are bmm. Why hand-written backprop: at batch 64 this MLP's
matmuls are small, so autograd's graph and the optimizer's bookkeeping cost
more than the arithmetic. Tests check every gradient against autograd and
every update against torch.optim.

What a step does besides its products is a few dozen small ops, and at batch
64 each costs about as much to call as to compute, so a step makes as few as
it can: the biases are views of one vector and every layer's output gradient
is a block of one reused tensor in the same order, so one sum and one
subtraction update every bias (:class:`_Deltas`); the loss and accuracy sums
wait and are made SETTLE_EVERY steps at a time; the narrow products below
share one switch to one thread and back (:class:`_ThreadMode`). Where it is
built (fmlab.trainer.training.native), plain SGD in fp32 on the CPU makes
this step's calls from C++ instead: the same calls in the same order, so the
same numbers, with every view and the hidden outputs made once per batch size.

Same numbers alone or stacked, and whatever the thread count: a member's rows
of every product depend only on its own weights, and the products are arranged
so that the library computes them the same way whatever M is. Measured on the
2-core CPU: with several threads, a layer with few outputs (the 10 logits) or
a batch with few samples is split between threads along the summed dimension,
differently for one matrix than for a batch of them and differently for each
thread count, and the last bits differ. Such layers (and such batches) are
therefore multiplied member by member on one thread: the same call with the
same shapes, whatever the stack and the threads (they are the cheap products).
tests/test_stack_equality.py checks both, so the thread count can follow the
machine's load (fmlab.trainer.training.threads) without changing a number.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from fmlab.trainer.config import RunConfig
from fmlab.trainer.layers import tensor_shapes
from fmlab.trainer.models import build_mlp, linear_layers
from fmlab.trainer.training import native
from fmlab.trainer.training.rules import ADAM_BETAS, ADAM_EPS, EVAL_CHUNK, take_epoch_sums

NARROW_ROWS = 64  # a layer with fewer outputs is multiplied member by member
NARROW_BATCH = 16  # so is every layer for a batch with fewer samples
SETTLE_EVERY = 128  # steps whose logits wait to be added to the epoch's loss and accuracy sums


@contextmanager
def one_thread() -> Iterator[None]:
    """Products inside run on this thread alone (setting it costs well under a microsecond)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class _ThreadMode:
    """Narrow products on one thread, the rest on torch's count, switching only
    when the mode changes: a step switches once each way, however many narrow
    products and small ops lie between (the last layer's products, its loss and
    its delta), instead of twice around each narrow product. The small ops give
    the same numbers in either mode: elementwise ops compute each element
    alone, and a reduction splits a sum between threads only when it has fewer
    sums than threads, while the step's sums over the batch have one per row.
    Used as a context around a step: it leaves torch's count as it found it,
    even when the step fails."""

    def __init__(self) -> None:
        self.restore_to: int | None = None  # torch's count while narrowed

    def narrow(self) -> None:
        if self.restore_to is None:
            self.restore_to = torch.get_num_threads()
            torch.set_num_threads(1)

    def wide(self) -> None:
        if self.restore_to is not None:
            torch.set_num_threads(self.restore_to)
            self.restore_to = None

    def __enter__(self) -> _ThreadMode:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.wide()


def summed_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Each member's cross-entropy summed over the batch, from logits [M, 10, batch]."""
    targets = y.expand(logits.shape[0], 1, -1)
    return torch.log_softmax(logits, 1).gather(1, targets).sum((1, 2)).neg_()


def count_correct(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    # max().indices, not argmax(): the same first-maximum index, and several
    # times faster over this strided class dimension on CPU
    return (logits.max(1).indices == y).sum(1)


@dataclass(frozen=True)
class _Operands:
    """One layer's parameters in the shapes its products read them, in the
    products' precision: views, made once per stack, since at batch 64 a
    view per product per step is a noticeable share of the step."""

    weight: torch.Tensor  # [M, out, in]
    weight_t: torch.Tensor  # [M, in, out]
    bias_column: torch.Tensor  # [M, out, 1]; the input layer's [M * out, 1], beside flat_weight
    flat_weight: torch.Tensor  # [M * out, in]
    member_weights: tuple[torch.Tensor, ...]  # [out, in] each
    member_weights_t: tuple[torch.Tensor, ...]  # [in, out] each
    member_bias_columns: tuple[torch.Tensor, ...]  # [out, 1] each
    narrow: bool  # fewer outputs than NARROW_ROWS

    @classmethod
    def of(cls, weight: torch.Tensor, bias: torch.Tensor, first: bool) -> _Operands:
        return cls(
            weight=weight,
            weight_t=weight.transpose(1, 2),
            bias_column=bias.view(-1, 1) if first else bias.unsqueeze(2),
            flat_weight=weight.view(-1, weight.shape[2]),
            member_weights=weight.unbind(0),
            member_weights_t=tuple(w.t() for w in weight.unbind(0)),
            member_bias_columns=tuple(b.unsqueeze(1) for b in bias.unbind(0)),
            narrow=weight.shape[1] < NARROW_ROWS,
        )


@dataclass(frozen=True)
class _Deltas:
    """Every layer's output gradient for one batch size, in one tensor reused
    by every step: row blocks in the order of the joint bias vector
    (``Stepper.bias_rows``), so that one sum over the batch is the gradient of
    every bias, and one subtraction their update."""

    rows: torch.Tensor  # [M * all layers' outputs, batch]
    layers: tuple[torch.Tensor, ...]  # [M, out, batch] per layer, views of rows

    @classmethod
    def of(cls, widths: Sequence[int], members: int, batch: int, device: torch.device) -> _Deltas:
        rows = torch.empty(members * sum(widths), batch, device=device)
        blocks = rows.split([members * width for width in widths])
        return cls(rows, tuple(b.view(members, width, batch) for b, width in zip(blocks, widths)))


def joined(tensors: Sequence[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """One flat tensor holding these in turn, and each as a view of it, shaped as before."""
    flat = torch.cat([t.reshape(-1) for t in tensors])
    return flat, [part.view(t.shape) for part, t in zip(flat.split([t.numel() for t in tensors]), tensors)]


class Stepper:
    """What the loop needs of a stack of M members.

    ``thread_invariant``: the same numbers at any thread count (see the module's
    note), so the loop may change the count while it trains.

    ``step`` trains every member on one batch and, when asked, returns each
    member's summed loss ``[M]`` and its gradient statistics
    ``[M, 3 + 2 * layers]``: the mean over every parameter, the global L2
    norm, the sum over parameter tensors of each tensor's mean (the
    notebook's quantity), then the L2 norm per layer and the mean per layer
    (weight and bias together); unasked, the loss may be None. Sums of loss
    and correct predictions are kept as device tensors, so nothing here waits
    for the device. By default a step keeps its logits and adds them to those
    sums SETTLE_EVERY steps at a time (a dozen small ops a step fewer);
    ``sums_each_step`` adds them at once, as a captured CUDA graph must.
    """

    thread_invariant = True

    def __init__(self, configs: Sequence[RunConfig], device: torch.device) -> None:
        models = [linear_layers(build_mlp(c.model, c.seed)) for c in configs]
        depth = len(models[0])
        # [M, out, in] and [M, out]; contiguous, so layer 0 also views as [M*out, in]
        self.weights = [torch.stack([m[i].weight.data for m in models]).to(device) for i in range(depth)]
        # [M, out] each, views of one vector: see _Deltas
        self.bias_rows, self.biases = joined(
            [torch.stack([m[i].bias.data for m in models]).to(device) for i in range(depth)]
        )
        self.dtype = torch.bfloat16 if configs[0].precision == "bf16" else torch.float32
        self.bf16 = self.dtype != torch.float32  # tested per step: a no-op .to() still costs a call
        self._copy_for_products()
        # kept on the device: a Python float per member would force a sync per step
        self.lr = torch.tensor([c.optimizer.lr for c in configs], device=device)
        self.size = len(configs)  # members (an int: a tensor's len() costs a microsecond a call)
        self.num_params = configs[0].model.num_params
        # parameters per weight and per bias tensor, input layer first (made here:
        # a CUDA graph cannot copy a new tensor to the device while it captures)
        self.weight_sizes = torch.tensor(
            [w[0].numel() for w in self.weights], dtype=torch.float, device=device
        )
        self.bias_sizes = torch.tensor([b[0].numel() for b in self.biases], dtype=torch.float, device=device)
        self.loss_sum = torch.zeros(len(configs), device=device)
        self.correct = torch.zeros(len(configs), dtype=torch.long, device=device)
        self.sums_each_step = False
        self._unsummed: list[tuple[torch.Tensor, torch.Tensor]] = []  # (logits, targets) per step
        self.threads = _ThreadMode()
        self._deltas_by_batch: dict[int, _Deltas] = {}

    @property
    def depth(self) -> int:
        return len(self.weights)

    def params(self) -> list[torch.Tensor]:
        """[weight, bias, weight, bias, ...], each stacked over the members."""
        return [t for pair in zip(self.weights, self.biases) for t in pair]

    def state_tensors(self) -> list[torch.Tensor]:
        """Every tensor a step changes (what a captured CUDA graph must put back)."""
        copies = [*self.product_weights, *self.product_biases] if self.dtype != torch.float32 else []
        return [*self.params(), *copies, self.loss_sum, self.correct, *self._optimizer_tensors()]

    def _copy_for_products(self) -> None:
        """The weights the products read: the fp32 weights themselves, or bf16 copies."""
        if self.dtype == torch.float32:
            self.product_weights, self.product_biases = self.weights, self.biases
        else:
            self.product_weights = [w.to(self.dtype) for w in self.weights]
            self.product_biases = [b.to(self.dtype) for b in self.biases]
        self.operands = [
            _Operands.of(w, b, first=index == 0)
            for index, (w, b) in enumerate(zip(self.product_weights, self.product_biases))
        ]

    def _refresh_copies(self) -> None:
        """After an update: the bf16 copies follow (nothing to do in fp32)."""
        if self.bf16:
            for copy, param in zip(
                [*self.product_weights, *self.product_biases], [*self.weights, *self.biases]
            ):
                copy.copy_(param)

    def _deltas(self, batch: int) -> _Deltas:
        deltas = self._deltas_by_batch.get(batch)
        if deltas is None:
            widths = [w.shape[1] for w in self.weights]
            deltas = self._deltas_by_batch[batch] = _Deltas.of(
                widths, self.size, batch, self.weights[0].device
            )
        return deltas

    def member_params(self, position: int) -> list[torch.Tensor]:
        """One member's parameters, in ``model.parameters()`` order."""
        return [t[position] for t in self.params()]

    # ------------------------------------------------------------ members

    def keep(self, positions: torch.Tensor) -> None:
        """Rebuild every stacked tensor with only these member positions."""
        self.weights = [w.index_select(0, positions) for w in self.weights]
        self.bias_rows, self.biases = joined([b.index_select(0, positions) for b in self.biases])
        self._deltas_by_batch.clear()
        self._copy_for_products()
        self.lr = self.lr.index_select(0, positions)
        self.size = len(positions)
        self.loss_sum = self.loss_sum.index_select(0, positions)
        self.correct = self.correct.index_select(0, positions)
        # not summed now: the sums are made in the same groups of steps as a stack without the others'
        self._unsummed = [(logits.index_select(0, positions), y) for logits, y in self._unsummed]
        self._keep_optimizer(positions)

    def member_state(self, position: int) -> dict:
        """One member's parameters and optimizer state as CPU copies (checkpoints)."""
        return {
            "params": [t.detach().to("cpu", copy=True) for t in self.member_params(position)],
            "optimizer": self._optimizer_state(position),
        }

    def skip_to(self, step: int) -> None:
        """A resumed stack has taken ``step`` steps already (nothing here depends on it)."""

    def load_member_state(self, position: int, state: dict) -> None:
        """Put a checkpoint's state (checked by its loader) into a member."""
        for mine, saved in zip(self.member_params(position), state["params"]):
            mine.copy_(saved)
        self._copy_for_products()
        self._load_optimizer_state(position, state["optimizer"])

    # ------------------------------------------------------------ products

    def _narrow(self, index: int, batch: int) -> bool:
        return self.operands[index].narrow or batch < NARROW_BATCH

    def _member_inputs(
        self, index: int, inputs: torch.Tensor, batch_first: bool = False
    ) -> Sequence[torch.Tensor]:
        """Each member's inputs to layer ``index``, [in, batch] or (``batch_first``)
        [batch, in]; the input layer's are the shared batch, [batch, in] as given."""
        if index == 0:
            return (inputs if batch_first else inputs.t(),) * self.size
        return (inputs.transpose(1, 2) if batch_first else inputs).unbind(0)

    def _layer(self, index: int, inputs: torch.Tensor) -> torch.Tensor:
        """Layer ``index``'s pre-activation [M, out, batch]; layer 0's ``inputs``
        are the shared batch [batch, in], later ones [M, in, batch]."""
        ops = self.operands[index]
        batch = inputs.shape[0] if index == 0 else inputs.shape[2]
        if self._narrow(index, batch):
            out = torch.empty(
                self.size, ops.weight.shape[1], batch, device=ops.weight.device, dtype=self.dtype
            )
            self.threads.narrow()
            for bias, weight, member_inputs, member_out in zip(
                ops.member_bias_columns, ops.member_weights, self._member_inputs(index, inputs), out.unbind(0)
            ):
                torch.addmm(bias, weight, member_inputs, out=member_out)
            return out
        self.threads.wide()
        if index == 0:
            return torch.addmm(ops.bias_column, ops.flat_weight, inputs.t()).view(self.size, -1, batch)
        return torch.baddbmm(ops.bias_column, ops.weight, inputs)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every layer's output transposed to [M, width, batch] (x itself first,
        in the products' precision), ReLU applied to all but the last (the logits)."""
        outputs = [x.to(self.dtype) if self.bf16 else x]
        for index in range(self.depth):
            z = self._layer(index, outputs[-1])
            outputs.append(z.relu_() if index < self.depth - 1 else z)
        return outputs

    def _backward_input(
        self, index: int, delta: torch.Tensor, inputs: torch.Tensor, out: torch.Tensor
    ) -> None:
        """d(loss)/d(layer index's inputs) through its ReLU, from its output's ``delta``,
        into ``out`` (fp32); computed before the layer's weights are updated."""
        ops = self.operands[index]
        # in bf16 the product and the ReLU's mask are bf16, then widened into out
        back = torch.empty(inputs.shape, device=delta.device, dtype=self.dtype) if self.bf16 else out
        if self._narrow(index, delta.shape[2]):
            self.threads.narrow()
            for weight_t, member_delta, member_back in zip(
                ops.member_weights_t, delta.unbind(0), back.unbind(0)
            ):
                torch.mm(weight_t, member_delta, out=member_back)
        else:
            self.threads.wide()
            torch.bmm(ops.weight_t, delta, out=back)
        torch.ops.aten.threshold_backward.grad_input(back, inputs, 0, grad_input=back)
        if self.bf16:
            out.copy_(back)

    def _backward(self, outputs: list[torch.Tensor], deltas: _Deltas) -> Iterator[tuple[int, torch.Tensor]]:
        """Each layer's index and output gradient in the products' precision,
        last layer first, once the gradient of its inputs (the layer below's
        delta) is written and before the caller updates the layer."""
        for index in range(self.depth - 1, -1, -1):
            delta = deltas.layers[index].to(self.dtype) if self.bf16 else deltas.layers[index]
            if index:
                self._backward_input(index, delta, outputs[index], deltas.layers[index - 1])
            yield index, delta

    def _weight_product(self, index: int, delta: torch.Tensor, inputs: torch.Tensor, out: torch.Tensor,
                        alpha: float = 1.0, beta: float = 0.0) -> None:  # fmt: skip
        """``out = beta * out + alpha * delta @ inputs^T`` (a weight gradient, or
        with beta=1 and alpha=-1 an update folded into it); in bf16 the product
        is made apart and added to the fp32 ``out`` (beta 0 or 1)."""
        if self.bf16:
            product = torch.empty(out.shape, device=out.device, dtype=self.dtype)
            self._product_into(index, delta, inputs, product, 1.0, 0.0)
            if beta == 0:
                torch.mul(product, alpha, out=out)
            else:
                out.add_(product, alpha=alpha)
            return
        self._product_into(index, delta, inputs, out, alpha, beta)

    def _product_into(self, index: int, delta: torch.Tensor, inputs: torch.Tensor, out: torch.Tensor,
                      alpha: float, beta: float) -> None:  # fmt: skip
        ops = self.operands[index]
        into_weights = out is ops.weight  # fp32's update: the views are made already
        if self._narrow(index, delta.shape[2]):
            self.threads.narrow()
            member_inputs = self._member_inputs(index, inputs, batch_first=True)
            member_outs = ops.member_weights if into_weights else out.unbind(0)
            for member_delta, member_in, member_out in zip(delta.unbind(0), member_inputs, member_outs):
                torch.addmm(member_out, member_delta, member_in, beta=beta, alpha=alpha, out=member_out)
            return
        self.threads.wide()
        if index == 0:
            flat = ops.flat_weight if into_weights else out.view(-1, out.shape[2])
            torch.addmm(flat, delta.reshape(-1, delta.shape[2]), inputs, beta=beta, alpha=alpha, out=flat)
        else:
            torch.baddbmm(out, delta, inputs.transpose(1, 2), beta=beta, alpha=alpha, out=out)

    # ------------------------------------------------------------ a step

    def _loss_and_delta(self, outputs: list[torch.Tensor], y: torch.Tensor, onehot_t: torch.Tensor,
                        scale: torch.Tensor | float, want_loss: bool, out: torch.Tensor
                        ) -> torch.Tensor | None:  # fmt: skip
        """Each member's summed loss [M] (None when not wanted and not summed
        now), and into ``out`` d(mean loss)/d(logits) = (softmax - onehot) /
        batch, times ``scale`` (per member [M, 1, 1], or a number), as
        [M, 10, batch]; the batch goes into the epoch's sums."""
        logits = outputs[-1].float() if self.bf16 else outputs[-1]
        loss = None
        if self.sums_each_step:
            loss = summed_loss(logits, y)
            self.loss_sum += loss
            self.correct += count_correct(logits, y)
        else:
            self._keep_logits(logits, y)
            if want_loss:
                loss = summed_loss(logits, y)
        torch.sub(torch.softmax(logits, 1), onehot_t, out=out).mul_(scale)
        return loss

    def _keep_logits(self, logits: torch.Tensor, y: torch.Tensor) -> None:
        self._unsummed.append((logits, y))
        if len(self._unsummed) == SETTLE_EVERY:
            self._sum_kept_logits()

    def _sum_kept_logits(self) -> None:
        """Add the kept steps' loss and correct predictions to the epoch's sums."""
        if not self._unsummed:
            return
        logits = torch.cat([logits for logits, _ in self._unsummed], 2)
        y = torch.cat([y for _, y in self._unsummed])
        self._unsummed = []
        with one_thread():  # few sums over many samples: threads would split them by their count
            self.loss_sum += summed_loss(logits, y)
            self.correct += count_correct(logits, y)

    def step(self, x: torch.Tensor, y: torch.Tensor, onehot_t: torch.Tensor, want_stats: bool
             ) -> tuple[torch.Tensor | None, torch.Tensor | None]:  # fmt: skip
        """Train every member on one batch; ``onehot_t`` is the targets as [10, batch]."""
        with self.threads:
            return self._step(x, y, onehot_t, want_stats)

    def _step(self, x: torch.Tensor, y: torch.Tensor, onehot_t: torch.Tensor, want_stats: bool
              ) -> tuple[torch.Tensor | None, torch.Tensor | None]:  # fmt: skip
        raise NotImplementedError

    def _stats(self, weight_sums: list[torch.Tensor], bias_sums: list[torch.Tensor],
               squares: list[torch.Tensor]) -> torch.Tensor:  # fmt: skip
        """[grad mean, global L2 norm, sum of tensor means, L2 norm per layer...,
        mean per layer...] per member, from each layer's weight-gradient sum [M],
        bias-gradient sum [M] and squared norm [M] (input layer first). Only
        elementwise work and reductions over a member's own few columns: the
        same numbers whatever the stack."""
        weight_sums, bias_sums = torch.stack(weight_sums, 1), torch.stack(bias_sums, 1)  # [M, layers]
        per_layer = torch.stack(squares, 1)
        layer_sums = weight_sums + bias_sums
        mean = layer_sums.sum(1, keepdim=True) / self.num_params
        norm = per_layer.sum(1, keepdim=True).sqrt()
        # the notebook's gradient: for p in model.parameters(): g += p.grad.mean()
        tensor_means = (weight_sums / self.weight_sizes + bias_sums / self.bias_sizes).sum(1, keepdim=True)
        layer_means = layer_sums / (self.weight_sizes + self.bias_sizes)
        return torch.cat([mean, norm, tensor_means, per_layer.sqrt(), layer_means], 1)

    def take_epoch_sums(self) -> tuple[list[float], list[int]]:
        self._sum_kept_logits()
        return take_epoch_sums(self.loss_sum, self.correct)

    @torch.no_grad()
    def evaluate(self, x: torch.Tensor, y: torch.Tensor) -> tuple[list[float], list[float]]:
        """Each member's mean cross-entropy and accuracy (%) over a whole split."""
        loss = torch.zeros(self.size, device=x.device)
        correct = torch.zeros(self.size, dtype=torch.long, device=x.device)
        with self.threads:
            for start in range(0, len(x), EVAL_CHUNK):
                h, target = x[start : start + EVAL_CHUNK].to(self.dtype), y[start : start + EVAL_CHUNK]
                for index in range(self.depth):  # only the current layer's output is kept
                    h = self._layer(index, h)
                    if index < self.depth - 1:
                        h.relu_()
                h = h.float()
                loss += summed_loss(h, target)
                correct += count_correct(h, target)
        return [v / len(x) for v in loss.tolist()], [100.0 * c / len(x) for c in correct.tolist()]

    # ------------------------------------------------------------ optimizer state (none here)

    def _optimizer_tensors(self) -> list[torch.Tensor]:
        return []

    def _keep_optimizer(self, positions: torch.Tensor) -> None:
        pass

    def _optimizer_state(self, position: int) -> dict:
        return {}

    def _load_optimizer_state(self, position: int, state: dict) -> None:
        pass


class PlainSGD(Stepper):
    """SGD without momentum. The output gradient is scaled by each member's
    ``lr / batch`` before it is propagated (every gradient is linear in it),
    so the update folds into the weight-gradient product itself and no
    weight-gradient tensor is ever written out; on metric steps the gradient
    statistics come from the product's factors (see ``_weight_grad_square``).
    On the CPU in fp32 the step is made in C++ where that is built
    (native_step.cpp): the same calls, so a change to ``_step``'s calls is a
    change to that file too (tests/test_native_step.py compares the two)."""

    def __init__(self, configs: Sequence[RunConfig], device: torch.device) -> None:
        super().__init__(configs, device)
        self._scales: dict[int, torch.Tensor] = {}
        # the C++ step (the same calls, so the same numbers) where it is built
        self.native = native.module() if device.type == "cpu" and not self.bf16 else None
        self._native_steps: dict[int, object] = {}  # per batch size

    def _scale(self, batch: int) -> torch.Tensor:
        """lr / batch per member as [M, 1, 1], kept per batch size (one more for the last batch)."""
        scale = self._scales.get(batch)
        if scale is None:
            scale = self._scales[batch] = (self.lr / batch).view(-1, 1, 1)
        return scale

    def _keep_optimizer(self, positions: torch.Tensor) -> None:
        self._scales.clear()
        self._native_steps.clear()

    def _native_step(self, batch: int) -> object | None:
        """The C++ step for this batch size (its plan holds views of this
        stack's tensors), or None: not built, not fp32 on the CPU, or a CUDA
        graph's sums."""
        if self.native is None or self.sums_each_step:
            return None
        made = self._native_steps.get(batch)
        if made is None:
            deltas = self._deltas(batch)
            made = self._native_steps[batch] = self.native.PlainStep(
                self.weights, self.biases, self.bias_rows, deltas.rows, list(deltas.layers),
                batch, NARROW_ROWS, NARROW_BATCH, self.weight_sizes, self.bias_sizes, self.num_params,
            )  # fmt: skip
        return made

    def _step(self, x, y, onehot_t, want_stats):
        fast = self._native_step(x.shape[0])
        if fast is not None:
            return self._step_in_cpp(fast, x, y, onehot_t, want_stats)
        outputs = self.forward(x)
        deltas = self._deltas(x.shape[0])
        # times lr / batch: every product below is lr * gradient, the update's own scale
        scale = self._scale(x.shape[0])
        loss = self._loss_and_delta(outputs, y, onehot_t, scale, want_stats, deltas.layers[-1])
        for index, delta in self._backward(outputs, deltas):
            self._weight_product(index, delta, outputs[index], self.weights[index], alpha=-1.0, beta=1.0)
        bias_grads = deltas.rows.sum(1)  # every layer's, in bias_rows' order
        self.bias_rows.sub_(bias_grads)
        self._refresh_copies()
        if not want_stats:
            return loss, None
        # the products held lr * gradient, and every column is linear in it
        return loss, self._stats_from_factors(deltas, outputs, bias_grads) / self.lr.view(-1, 1)

    def _step_in_cpp(self, fast, x, y, onehot_t, want_stats):
        """What ``_step`` does in Python, made in C++, with a metric step's loss
        and statistics computed there as ``_step`` computes them (the loss on
        one thread: ``_step`` makes it in the last layer's narrow mode)."""
        logits = fast.step(x, onehot_t, self._scale(x.shape[0]))
        self._keep_logits(logits, y)
        if not want_stats:
            return None, None
        return fast.metrics(x, logits, y, self.lr)

    def _stats_from_factors(self, deltas: _Deltas, outputs: list[torch.Tensor], bias_grads: torch.Tensor
                            ) -> torch.Tensor:  # fmt: skip
        """The step's gradient statistics (in fp32 whatever the products' precision)."""
        weight_sums, bias_sums, squares = [], [], []
        layer_bias_grads = bias_grads.split([b.numel() for b in self.biases])
        for index, (delta, bias_grad) in enumerate(zip(deltas.layers, layer_bias_grads)):
            inputs, bias_grad = outputs[index].float(), bias_grad.view(self.size, -1)
            weight_sums.append(_weight_grad_sum(delta, inputs))
            bias_sums.append(bias_grad.sum(1))
            squares.append(self._weight_grad_square(index, delta, inputs) + bias_grad.square().sum(1))
        return self._stats(weight_sums, bias_sums, squares)

    # The statistics come from the factors of each weight gradient, delta @ inputs^T,
    # without forming it: its sum is sum_b (sum_o delta) (sum_i inputs), and its
    # squared norm the Frobenius product of the two batch-by-batch Gram matrices,
    # about a tenth of the product's cost.

    def _weight_grad_square(self, index: int, delta: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        if self._narrow(index, delta.shape[2]):
            with one_thread():
                gram_delta = torch.stack([delta[m].t() @ delta[m] for m in range(self.size)])
        else:
            gram_delta = torch.bmm(delta.transpose(1, 2), delta)
        if inputs.dim() == 2:
            gram_inputs = inputs @ inputs.t()
        else:
            gram_inputs = torch.bmm(inputs.transpose(1, 2), inputs)
        # both Gram matrices are positive semi-definite; rounding must not make it negative
        return (gram_delta * gram_inputs).sum((1, 2)).clamp_(min=0)


def _weight_grad_sum(delta: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    # inputs: [batch, in] for the shared batch, [M, in, batch] for a later layer
    return (delta.sum(1) * inputs.sum(-2 if inputs.dim() == 3 else 1)).sum(-1)


class MomentumOrAdam(Stepper):
    """Explicit gradients, then per-member SGD with momentum (PyTorch's rule:
    the buffer starts as the first gradient) or Adam (PyTorch's defaults:
    betas 0.9/0.999, eps 1e-8, bias-corrected)."""

    def __init__(self, configs: Sequence[RunConfig], device: torch.device) -> None:
        super().__init__(configs, device)
        opt = configs[0].optimizer
        self.adam = opt.name == "adam"
        self.momentum = opt.momentum
        self.grads = [torch.zeros_like(p) for p in self.params()]
        zeros = lambda: [torch.zeros_like(p) for p in self.params()]  # noqa: E731
        self.buffers = {"exp_avg": zeros(), "exp_avg_sq": zeros()} if self.adam else {"momentum": zeros()}
        self.steps = torch.zeros(len(configs), device=device)  # updates taken, per member

    def _step(self, x, y, onehot_t, want_stats):
        outputs = self.forward(x)
        deltas = self._deltas(x.shape[0])
        loss = self._loss_and_delta(outputs, y, onehot_t, 1.0 / x.shape[0], want_stats, deltas.layers[-1])
        for index, delta in self._backward(outputs, deltas):
            self._weight_product(index, delta, outputs[index], self.grads[2 * index])
            torch.sum(deltas.layers[index], 2, out=self.grads[2 * index + 1])
        stats = self._grad_stats() if want_stats else None
        self.steps += 1
        if self.adam:
            self._adam_update()
        else:
            self._momentum_update()
        self._refresh_copies()
        return loss, stats

    def _grad_stats(self) -> torch.Tensor:
        # member by member on one thread: a reduction over a large tensor is split
        # between threads, differently for a stack and for each thread count
        weight_sums, bias_sums, squares = [], [], []
        with one_thread():
            for weight, bias in zip(self.grads[0::2], self.grads[1::2]):
                weight_sums.append(torch.stack([weight[m].sum() for m in range(self.size)]))
                bias_sums.append(torch.stack([bias[m].sum() for m in range(self.size)]))
                squares.append(
                    torch.stack([weight[m].square().sum() + bias[m].square().sum() for m in range(self.size)])
                )
        return self._stats(weight_sums, bias_sums, squares)

    def _per_member(self, values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return values.view(-1, *([1] * (like.dim() - 1)))

    def _momentum_update(self) -> None:
        first = self.steps == 1
        for param, grad, buffer in zip(self.params(), self.grads, self.buffers["momentum"]):
            # buffer = grad at the first step, else momentum * buffer + grad
            buffer.mul_(self._per_member(torch.where(first, 0.0, self.momentum), buffer)).add_(grad)
            param.sub_(buffer * self._per_member(self.lr, param))

    def _adam_update(self) -> None:
        beta1, beta2 = ADAM_BETAS
        correction1 = 1 - beta1**self.steps
        correction2_sqrt = (1 - beta2**self.steps).sqrt()
        step_size = self.lr / correction1
        for param, grad, exp_avg, exp_avg_sq in zip(
            self.params(), self.grads, self.buffers["exp_avg"], self.buffers["exp_avg_sq"]
        ):
            exp_avg.lerp_(grad, 1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            denom = (exp_avg_sq.sqrt() / self._per_member(correction2_sqrt, param)).add_(ADAM_EPS)
            param.sub_(exp_avg / denom * self._per_member(step_size, param))

    def _optimizer_tensors(self) -> list[torch.Tensor]:
        return [*self.grads, *(t for ts in self.buffers.values() for t in ts), self.steps]

    def _keep_optimizer(self, positions: torch.Tensor) -> None:
        self.grads = [g.index_select(0, positions) for g in self.grads]
        self.buffers = {k: [t.index_select(0, positions) for t in ts] for k, ts in self.buffers.items()}
        self.steps = self.steps.index_select(0, positions)

    def _optimizer_state(self, position: int) -> dict:
        state = {k: [t[position].detach().to("cpu", copy=True) for t in ts] for k, ts in self.buffers.items()}
        state["steps"] = int(self.steps[position])
        return state

    def _load_optimizer_state(self, position: int, state: dict) -> None:
        for key, tensors in self.buffers.items():
            for mine, saved in zip(tensors, state[key]):
                mine[position].copy_(saved)
        self.steps[position] = state["steps"]


def make_stepper(configs: Sequence[RunConfig], device: torch.device) -> Stepper:
    """The stepper for a group (its members share the network's shape and the
    optimizer; see plan.stack_key): an MLP's hand-written steppers, or autograd
    for any other network."""
    if not configs[0].model.is_mlp:
        from fmlab.trainer.training.autograd import AutogradStepper

        return AutogradStepper(configs, device)
    opt = configs[0].optimizer
    if opt.name == "sgd" and opt.momentum == 0:
        return PlainSGD(configs, device)
    return MomentumOrAdam(configs, device)


def param_shapes(config: RunConfig) -> list[tuple[int, ...]] | None:
    """Every parameter's shape, in ``model.parameters()`` order; None for a
    user's module (known only once its file runs)."""
    if config.model.module is not None:
        return None
    if config.model.layers:
        return tensor_shapes(config.model.layers)[0]
    sizes = config.model.sizes
    return [shape for i, o in zip(sizes, sizes[1:]) for shape in ((o, i), (o,))]


def buffer_shapes(config: RunConfig) -> list[tuple[int, ...]] | None:
    """Every buffer's shape (batch norm's statistics), in ``model.buffers()``
    order; None for a user's module."""
    if config.model.module is not None:
        return None
    return tensor_shapes(config.model.layers)[1] if config.model.layers else []


def optimizer_state_shapes(config: RunConfig) -> dict[str, list[tuple[int, ...]] | None]:
    """What a checkpoint's optimizer state must hold for ``config``."""
    opt = config.optimizer
    shapes = param_shapes(config)  # None: any shapes (a user's module)
    if opt.name == "adam":
        return {"exp_avg": shapes, "exp_avg_sq": shapes}
    if opt.momentum:
        return {"momentum": shapes}
    return {}
