"""Which runs train together as one stack.

Members of one stack see the same batches in the same order, log the same
steps and use the same optimizer rule; each has its own learning rate,
initial weights (seed), epochs and convergence rule. Any run can be a stack
of one; ``stacked=False`` plans every run alone.
"""

from __future__ import annotations

from collections.abc import Sequence

from fmlab.trainer.config import RunConfig

MAX_STACK = 16  # members per stack; more share nothing but memory


def stack_key(config: RunConfig) -> tuple:
    """Runs with equal keys can be trained as one stack."""
    order = (config.shuffle, config.seed if config.shuffle else None)
    logging = (config.full_steps, config.step_every)
    rule = (config.optimizer.name, config.optimizer.momentum)
    return (config.model, config.batch_size, order, logging, rule, config.device, config.precision)


def plan_stacks(keys: Sequence[tuple], stacked: bool = True) -> list[list[int]]:
    """Positions grouped into stacks, in order of first appearance: equal keys
    share a stack of at most MAX_STACK members."""
    if not stacked:
        return [[i] for i in range(len(keys))]
    stacks: list[list[int]] = []
    open_stacks: dict[tuple, list[int]] = {}
    for index, key in enumerate(keys):
        stack = open_stacks.get(key)
        if stack is None or len(stack) >= MAX_STACK:
            stack = open_stacks[key] = []
            stacks.append(stack)
        stack.append(index)
    return stacks
