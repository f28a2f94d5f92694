"""The step's own matrix products, alone: the floor an MLP step can reach.

A plain-SGD step of an MLP with widths ``sizes`` at batch B multiplies, per
layer of ``in`` inputs and ``out`` outputs (fmlab's layout: weights [out, in],
activations [width, B]):
  forward       [out, in] @ [in, B] (+ bias)
  weight        [out, B] @ [B, in], added into the weights (the update)
  input grad    [in, out] @ [out, B], every layer but the first
``products(sizes, B)`` makes them as closures on tensors of those shapes, one
set per layer, so that a step's products meet the caches as the step does.
``floor_seconds`` runs them for a number of steps; with ``best=True`` each
product uses whichever of the four operand layouts (each operand as stored or
transposed) was fastest on this machine, so the floor does not inherit a
layout fmlab happens to use.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence

import torch

Product = Callable[[], object]

# (rows, columns, summed) of each product, and the layout fmlab stores its
# operands in: (first operand transposed, second operand transposed)
FMLAB_LAYOUT = {"forward": (False, False), "weight": (False, True), "input grad": (True, False)}


def shapes(sizes: Sequence[int], batch: int) -> list[tuple[str, int, int, int]]:
    """(name, m, n, k) of every product of one step: C[m, n] += A[m, k] @ B[k, n]."""
    out = []
    for index, (fan_in, fan_out) in enumerate(zip(sizes, sizes[1:])):
        out.append(("forward", fan_out, batch, fan_in))
        out.append(("weight", fan_out, fan_in, batch))
        if index:
            out.append(("input grad", fan_in, batch, fan_out))
    return out


def product(m: int, n: int, k: int, a_transposed: bool, b_transposed: bool) -> Product:
    """C += A @ B on new tensors, each operand stored as asked."""
    a = torch.randn(k, m).t() if a_transposed else torch.randn(m, k)
    b = torch.randn(n, k).t() if b_transposed else torch.randn(k, n)
    c = torch.randn(m, n)
    return lambda: torch.addmm(c, a, b, out=c)


def per_call(fn: Product, repeats: int = 30) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def products(sizes: Sequence[int], batch: int, best: bool) -> list[Product]:
    """Every product of one step, in fmlab's operand layouts or the fastest ones."""
    made = []
    for name, m, n, k in shapes(sizes, batch):
        if best:
            options = [product(m, n, k, ta, tb) for ta, tb in itertools.product((False, True), repeat=2)]
            made.append(min(options, key=per_call))
        else:
            made.append(product(m, n, k, *FMLAB_LAYOUT[name]))
    return made


def floor_seconds(step_products: Sequence[Product], steps: int) -> float:
    """Seconds for ``steps`` steps' worth of these products."""
    for fn in step_products:
        fn()
    start = time.perf_counter()
    for _ in range(steps):
        for fn in step_products:
            fn()
    return time.perf_counter() - start


def flops_per_step(sizes: Sequence[int], batch: int) -> int:
    return sum(2 * m * n * k for _, m, n, k in shapes(sizes, batch))
