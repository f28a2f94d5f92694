"""CUDA graphs: a stepper's step captured once and replayed per batch, one
launch instead of dozens of kernel launches and their Python dispatch."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import TypeVar

import torch

from fmlab.trainer.text import first_line
from fmlab.trainer.training.steppers import PlainSGD, Stepper

T = TypeVar("T")


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
    """A stepper's step captured as two CUDA graphs, with and without the
    gradient statistics, replayed per full batch; batches are copied into
    static input tensors and a last partial batch runs eagerly. The graphs
    hold the stack's tensors: after members drop out, capture anew."""

    def __init__(self, stepper: Stepper, batch_size: int, device: torch.device) -> None:
        self.stepper = stepper
        self.batch_size = batch_size
        self.x = torch.zeros(batch_size, 784, device=device)
        self.y = torch.zeros(batch_size, dtype=torch.long, device=device)
        self.onehot_t = torch.zeros(10, batch_size, device=device)
        stepper.sums_each_step = True  # a replayed graph cannot keep each step's logits
        state = stepper.state_tensors()
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


def choose_step(stepper: Stepper, batch_size: int, device: torch.device) -> tuple[Callable, str]:
    """The step to train with and a note saying why it is not graphed, when it
    could have been: captured on CUDA for plain SGD, else eager. If capture
    fails (an old driver, an unsupported op), training goes on eagerly."""
    if device.type != "cuda":
        return stepper.step, ""
    if not isinstance(stepper, PlainSGD):
        return stepper.step, "CUDA graph is used for plain SGD only; training eagerly"
    if os.environ.get("FMLAB_CUDA_GRAPH", "1") == "0":
        return stepper.step, "CUDA graph off (FMLAB_CUDA_GRAPH=0); training eagerly"
    try:
        return GraphedStep(stepper, batch_size, device), ""
    except Exception as exc:  # any capture failure: eager still trains correctly
        return stepper.step, f"CUDA graph capture failed ({first_line(exc)}); training eagerly"
