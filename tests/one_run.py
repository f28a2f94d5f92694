"""Tests often train one config and want its plain event stream."""

from __future__ import annotations

from fmlab.trainer.training.loop import Member, train


def train_one(config, dataset, cancel=None, *, resume=None, on_checkpoint=None):
    """The events of ``config`` trained alone (``on_checkpoint`` gets each Checkpoint)."""
    hook = None if on_checkpoint is None else (lambda _position, checkpoint: on_checkpoint(checkpoint))
    for _position, event in train([Member(config, resume)], dataset, cancel, on_checkpoint=hook):
        yield event
