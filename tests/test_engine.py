import threading

import pytest
import torch
import torch.nn.functional as F
from fmlab.trainer.config import ConvergenceRule, parse_run_config
from fmlab.trainer.events import EpochMetrics, RunFinished, RunStarted, StepMetrics
from fmlab.trainer.metrics import ConvergenceTracker, is_metric_step
from fmlab.trainer.models import build_mlp
from fmlab.trainer.training import loop as engine


def run_all(config, dataset, cancel=None):
    return list(engine.run(config, dataset, cancel))


def of(events, kind):
    return [e for e in events if isinstance(e, kind)]


def test_learns_the_tiny_problem_and_event_order(tiny_dataset):
    events = run_all(parse_run_config(epochs=3, lr=0.1, device="cpu"), tiny_dataset)
    assert isinstance(events[0], RunStarted) and isinstance(events[-1], RunFinished)
    assert events[0].steps_per_epoch == 8 and events[0].model.total_params == 337_674
    epochs = of(events, EpochMetrics)
    assert [e.epoch for e in epochs] == [1, 2, 3]
    assert epochs[-1].test_acc > 90 and epochs[-1].train_loss < epochs[0].train_loss
    finished = events[-1]
    assert finished.status == "completed"
    assert finished.results.final_test_acc == epochs[-1].test_acc
    assert finished.results.steps_done == 24


def test_gradients_and_update_match_autograd_and_torch_sgd(tiny_dataset):
    config = parse_run_config(lr=0.05, arch="32,16")
    x, y = tiny_dataset.train_x[:64], tiny_dataset.train_y[:64]
    reference = build_mlp(config.model, 3)
    ours = build_mlp(config.model, 3)
    optimizer = torch.optim.SGD(reference.parameters(), lr=0.05)
    stepper = engine.MLPStepper(ours, config)
    for _ in range(3):
        optimizer.zero_grad()
        loss = F.cross_entropy(reference(x), y)
        loss.backward()
        expected_grads = [p.grad.clone() for p in reference.parameters()]
        optimizer.step()
        ours_loss = stepper.step(x, y, F.one_hot(y, 10).float()) / len(x)
        assert ours_loss.item() == pytest.approx(loss.item(), rel=1e-5)
        for grad, expected in zip(stepper.grads, expected_grads):
            torch.testing.assert_close(grad, expected, rtol=1e-4, atol=1e-6)
    for p, q in zip(ours.parameters(), reference.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-6)


def test_fused_step_updates_like_torch_sgd(tiny_dataset):
    config = parse_run_config(lr=0.05, arch="32,16")
    reference = build_mlp(config.model, 3)
    ours = build_mlp(config.model, 3)
    optimizer = torch.optim.SGD(reference.parameters(), lr=0.05)
    stepper = engine.MLPStepper(ours, config)
    for start in (0, 64, 128):
        x, y = tiny_dataset.train_x[start : start + 64], tiny_dataset.train_y[start : start + 64]
        optimizer.zero_grad()
        loss = F.cross_entropy(reference(x), y)
        loss.backward()
        optimizer.step()
        ours_loss = stepper.fused_step(x, y, F.one_hot(y, 10).float()) / len(x)
        assert ours_loss.item() == pytest.approx(loss.item(), rel=1e-5)
    for p, q in zip(ours.parameters(), reference.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-6)
    assert all(not g.any() for g in stepper.grads)  # no gradient tensor was written


@pytest.mark.parametrize("optimizer, momentum", [("sgd", 0.9), ("adam", 0.0)])
def test_momentum_and_adam_follow_torch_optim(tiny_dataset, optimizer, momentum):
    config = parse_run_config(lr=0.01, arch="32", optimizer=optimizer, momentum=momentum)
    x, y = tiny_dataset.train_x[:64], tiny_dataset.train_y[:64]
    reference, ours = build_mlp(config.model, 1), build_mlp(config.model, 1)
    if optimizer == "adam":
        torch_opt = torch.optim.Adam(reference.parameters(), lr=0.01)
    else:
        torch_opt = torch.optim.SGD(reference.parameters(), lr=0.01, momentum=0.9)
    stepper = engine.MLPStepper(ours, config)
    for _ in range(4):
        torch_opt.zero_grad()
        F.cross_entropy(reference(x), y).backward()
        torch_opt.step()
        stepper.step(x, y, F.one_hot(y, 10).float())
    # Adam divides by the gradient's running scale, so last-bit differences in
    # near-zero gradients show up at the size of the learning rate's rounding
    atol = 1e-4 if optimizer == "adam" else 1e-6
    for p, q in zip(ours.parameters(), reference.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=atol)


def test_grad_stats_weight_every_parameter_equally(tiny_dataset):
    config = parse_run_config(arch="8")
    model = build_mlp(config.model, 0)
    stepper = engine.MLPStepper(model, config)
    x, y = tiny_dataset.train_x[:32], tiny_dataset.train_y[:32]
    stepper.step(x, y, F.one_hot(y, 10).float())
    stats = stepper.grad_stats().tolist()
    flat = torch.cat([g.flatten() for g in stepper.grads])
    assert stats[0] == pytest.approx(flat.mean().item(), rel=1e-4, abs=1e-9)
    assert stats[1] == pytest.approx(flat.norm().item(), rel=1e-5)
    layer1 = torch.cat([stepper.grads[0].flatten(), stepper.grads[1]])
    assert stats[2] == pytest.approx(layer1.norm().item(), rel=1e-5)
    assert len(stats) == 2 + 2


def test_step_metrics_every_step_then_at_a_bounded_rate(tiny_dataset):
    config = parse_run_config(epochs=4, full_steps=5, step_every=3)
    steps = [e.step for e in of(run_all(config, tiny_dataset), StepMetrics)]
    assert steps == [1, 2, 3, 4, 5, 6, 9, 12, 15, 18, 21, 24, 27, 30]
    assert steps == [s for s in range(1, 33) if is_metric_step(s, 5, 3)]


def test_huge_learning_rate_diverges_cleanly(tiny_dataset):
    events = run_all(parse_run_config(epochs=5, lr=1e5), tiny_dataset)
    finished = events[-1]
    assert finished.status == "diverged"
    assert "non-finite" in finished.results.message
    assert len(of(events, EpochMetrics)) < 5


def test_stop_on_converge_ends_the_run(tiny_dataset):
    config = parse_run_config(epochs=30, lr=0.1, threshold=0.5, patience=2, stop_on_converge=True)
    events = run_all(config, tiny_dataset)
    epochs = of(events, EpochMetrics)
    finished = events[-1]
    assert finished.status == "converged"
    converged = finished.results.converged_epoch
    assert converged is not None and len(epochs) == converged + 2 < 30
    accs = [e.test_acc for e in epochs]
    assert all(abs(b - a) < 0.5 for a, b in zip(accs[converged - 1 :], accs[converged:]))


def test_convergence_tracker_rule():
    tracker = ConvergenceTracker(ConvergenceRule(threshold=0.1, patience=3))
    seen = [tracker.update(acc) for acc in [50, 70, 80, 80.05, 80.1, 80.3, 80.35, 80.4, 80.42, 90]]
    # quiet streak of 3 changes < 0.1 starts after epoch 6 (80.3 -> 80.35 -> 80.4 -> 80.42)
    assert seen[:8] == [None] * 8
    assert seen[8] == 6 and seen[9] == 6  # fixed once found


def test_cancel_stops_at_the_next_step(tiny_dataset, monkeypatch):
    monkeypatch.setattr(engine, "FLUSH_SECONDS", 0.0)  # hand out every step at once
    cancel = threading.Event()
    config = parse_run_config(epochs=5, full_steps=0, step_every=1)
    events = []
    for event in engine.run(config, tiny_dataset, cancel):
        events.append(event)
        if isinstance(event, StepMetrics) and event.step == 11:
            cancel.set()
    finished = events[-1]
    assert finished.status == "stopped"
    assert finished.results.epochs_done == 1 and finished.results.steps_done == 11
    assert len(of(events, EpochMetrics)) == 1


def test_shuffle_is_seeded_and_changes_the_order(tiny_dataset):
    def final(**kw):
        events = run_all(parse_run_config(epochs=2, arch="16", **kw), tiny_dataset)
        return [e.train_loss for e in of(events, EpochMetrics)]

    assert final(shuffle=True, seed=1) == final(shuffle=True, seed=1)
    assert final(shuffle=True, seed=1) != final(shuffle=False, seed=1)


def test_cuda_request_without_cuda_is_a_config_error(monkeypatch):
    from fmlab.trainer.config import ConfigError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="cuda"):
        engine.resolve_device("cuda")
    assert engine.resolve_device("auto").type == "cpu"


def test_errors_while_training_end_the_run_as_failed(tiny_dataset, monkeypatch):
    def broken(self, *args):
        raise RuntimeError("out of memory\nmore detail")

    monkeypatch.setattr(engine.MLPStepper, "step", broken)
    events = run_all(parse_run_config(epochs=1), tiny_dataset)
    assert events[-1].status == "failed"
    assert events[-1].results.message == "RuntimeError: out of memory"


class FakeCuda:
    type = "cuda"


def test_cuda_graph_fallbacks_keep_the_eager_step(tiny_dataset, monkeypatch):
    stepper = engine.MLPStepper(build_mlp(parse_run_config(arch="8").model, 0), parse_run_config())
    assert engine.choose_step(stepper, 64, torch.device("cpu")) == (stepper.step, "")

    def capture_fails(*args):
        raise RuntimeError("operation not permitted when stream is capturing\ndetails")

    monkeypatch.setattr(engine, "GraphedStep", capture_fails)
    step, note = engine.choose_step(stepper, 64, FakeCuda())
    assert step == stepper.step
    assert (
        note
        == "CUDA graph capture failed (operation not permitted when stream is capturing); training eagerly"
    )
    monkeypatch.setenv("FMLAB_CUDA_GRAPH", "0")
    assert "FMLAB_CUDA_GRAPH=0" in engine.choose_step(stepper, 64, FakeCuda())[1]
    adam = engine.MLPStepper(
        build_mlp(parse_run_config(arch="8").model, 0), parse_run_config(optimizer="adam")
    )
    monkeypatch.delenv("FMLAB_CUDA_GRAPH")
    assert "plain SGD only" in engine.choose_step(adam, 64, FakeCuda())[1]
