"""The notebook's gradient, recorded at every step, is the notebook's loop:
``for p in model.parameters(): g += p.grad.mean()`` after ``loss.backward()``,
before the optimizer's step."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from one_run import train_one

from fmlab.trainer.events import StepMetrics
from fmlab.trainer.fields import parse_run_config
from fmlab.trainer.models import build_mlp


@pytest.mark.parametrize("momentum", [0.0, 0.9], ids=["plain SGD", "momentum"])
def test_the_recorded_gradients_are_the_notebook_loop(tiny_dataset, momentum):
    config = parse_run_config(arch="32,16", lr=0.01, momentum=momentum, epochs=1, device="cpu")
    recorded = [e for e in train_one(config, tiny_dataset) if isinstance(e, StepMetrics)]
    assert len(recorded) == 8  # every step of the 512 tiny images, batch 64

    model = build_mlp(config.model, config.seed)  # the same initial weights
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=momentum)
    x_all, y_all = tiny_dataset.train_x, tiny_dataset.train_y
    for event, start in zip(recorded, range(0, len(x_all), 64)):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x_all[start : start + 64]), y_all[start : start + 64])
        loss.backward()
        g = 0
        for p in model.parameters():  # the notebook's loop, literally
            g += p.grad.mean()
        assert event.grad_sum_of_means == pytest.approx(g.item(), abs=1e-6)
        grads = [p.grad for p in model.parameters()]
        flat = torch.cat([t.flatten() for t in grads])
        assert event.grad_mean == pytest.approx(flat.mean().item(), abs=1e-6)
        per_layer = [torch.cat([w.flatten(), b]).mean().item() for w, b in zip(grads[0::2], grads[1::2])]
        assert event.layer_grad_means == pytest.approx(per_layer, abs=1e-6)
        optimizer.step()
