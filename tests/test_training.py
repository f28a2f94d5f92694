"""The one training loop and its steppers, on tiny generated data."""

import threading

import pytest
import torch
import torch.nn.functional as F
from one_run import train_one

from fmlab.trainer.config import ConfigError, ConvergenceRule
from fmlab.trainer.device import resolve_device
from fmlab.trainer.events import EpochMetrics, RunFinished, RunStarted, StepMetrics
from fmlab.trainer.fields import parse_run_config
from fmlab.trainer.metrics import ConvergenceTracker, is_metric_step
from fmlab.trainer.models import build_mlp
from fmlab.trainer.sessions import SessionRecorder
from fmlab.trainer.training import graphs, recorder, steppers
from fmlab.trainer.training.steppers import MomentumOrAdam, PlainSGD, make_stepper


def run_all(config, dataset, cancel=None):
    return list(train_one(config, dataset, cancel))


def of(events, kind):
    return [e for e in events if isinstance(e, kind)]


def batch(dataset, start=0, size=64):
    x, y = dataset.train_x[start : start + size], dataset.train_y[start : start + size]
    return x, y, F.one_hot(y, 10).float().t()


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


def test_plain_sgd_matches_autograd_and_torch_sgd(tiny_dataset):
    config = parse_run_config(lr=0.05, arch="32,16")
    reference = build_mlp(config.model, 0)
    optimizer = torch.optim.SGD(reference.parameters(), lr=0.05)
    stepper = make_stepper([config], torch.device("cpu"))
    assert isinstance(stepper, PlainSGD)
    for start in (0, 64, 128):
        x, y, onehot_t = batch(tiny_dataset, start)
        optimizer.zero_grad()
        loss = F.cross_entropy(reference(x), y)
        loss.backward()
        grads = [p.grad for p in reference.parameters()]
        ours_loss, stats = stepper.step(x, y, onehot_t, want_stats=True)
        optimizer.step()
        assert (ours_loss[0] / len(x)).item() == pytest.approx(loss.item(), rel=1e-5)
        flat = torch.cat([g.flatten() for g in grads])
        assert stats[0, 0].item() == pytest.approx(flat.mean().item(), rel=1e-3, abs=1e-9)
        assert stats[0, 1].item() == pytest.approx(flat.norm().item(), rel=1e-4)
        layer1 = torch.cat([grads[0].flatten(), grads[1]])
        assert stats[0, 3].item() == pytest.approx(layer1.norm().item(), rel=1e-4)
        assert stats[0, 6].item() == pytest.approx(layer1.mean().item(), rel=1e-3, abs=1e-9)
        assert stats[0, 2].item() == pytest.approx(sum(g.mean().item() for g in grads), abs=1e-7)
        assert stats.shape == (1, 3 + 2 * 3)
    for ours, theirs in zip(stepper.member_params(0), reference.parameters()):
        torch.testing.assert_close(ours, theirs.detach(), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("optimizer, momentum", [("sgd", 0.0), ("sgd", 0.9), ("adam", 0.0)])
def test_bf16_steps_follow_autograd_in_bf16_and_keep_fp32_weights(tiny_dataset, optimizer, momentum):
    """bf16: the products of autograd's own bf16 run, the update in fp32."""
    config = parse_run_config(lr=0.05 if optimizer == "sgd" else 0.001, arch="32,16", optimizer=optimizer,
                              momentum=momentum, precision="bf16")  # fmt: skip
    reference = build_mlp(config.model, 0)
    opt_class = torch.optim.Adam if optimizer == "adam" else torch.optim.SGD
    kwargs = {"momentum": momentum} if optimizer == "sgd" else {}
    torch_opt = opt_class(reference.parameters(), lr=config.optimizer.lr, **kwargs)
    stepper = make_stepper([config], torch.device("cpu"))
    for start in (0, 64, 128):
        x, y, onehot_t = batch(tiny_dataset, start)
        torch_opt.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = reference(x)
        F.cross_entropy(logits.float(), y).backward()
        torch_opt.step()
        stepper.step(x, y, onehot_t, want_stats=False)
    assert all(p.dtype == torch.float32 for p in stepper.params())
    for ours, theirs in zip(stepper.member_params(0), reference.parameters()):
        # bf16 keeps 8 bits: the two round in different places, not far apart
        torch.testing.assert_close(ours, theirs.detach(), rtol=2e-2, atol=2e-3)
    fp32 = make_stepper([parse_run_config(lr=config.optimizer.lr, arch="32,16", optimizer=optimizer,
                                          momentum=momentum)], torch.device("cpu"))  # fmt: skip
    for start in (0, 64, 128):
        fp32.step(*batch(tiny_dataset, start), want_stats=False)
    assert any(not torch.equal(a, b) for a, b in zip(fp32.params(), stepper.params()))  # it is bf16


def test_bf16_learns_the_tiny_problem(tiny_dataset):
    runs = {p: of(run_all(parse_run_config(epochs=3, lr=0.1, device="cpu", precision=p), tiny_dataset),
                  EpochMetrics) for p in ("fp32", "bf16")}  # fmt: skip
    assert runs["bf16"][-1].test_acc > 90
    assert abs(runs["bf16"][-1].test_acc - runs["fp32"][-1].test_acc) < 3


@pytest.mark.parametrize("optimizer, momentum", [("sgd", 0.9), ("adam", 0.0)])
def test_momentum_and_adam_follow_torch_optim(tiny_dataset, optimizer, momentum):
    config = parse_run_config(lr=0.01, arch="32", optimizer=optimizer, momentum=momentum)
    x, y, onehot_t = batch(tiny_dataset)
    reference = build_mlp(config.model, 0)
    if optimizer == "adam":
        torch_opt = torch.optim.Adam(reference.parameters(), lr=0.01)
    else:
        torch_opt = torch.optim.SGD(reference.parameters(), lr=0.01, momentum=0.9)
    stepper = make_stepper([config], torch.device("cpu"))
    assert isinstance(stepper, MomentumOrAdam)
    for number in range(4):
        torch_opt.zero_grad()
        F.cross_entropy(reference(x), y).backward()
        stepper.step(x, y, onehot_t, want_stats=False)
        if number == 0:  # from the same weights: the same gradients
            for ours, theirs in zip(stepper.grads, reference.parameters()):
                torch.testing.assert_close(ours[0], theirs.grad, rtol=1e-4, atol=1e-6)
        torch_opt.step()
    # Adam divides by the gradient's running scale, so last-bit differences in
    # near-zero gradients show up at the size of the learning rate's rounding
    atol = 1e-4 if optimizer == "adam" else 1e-6
    for ours, theirs in zip(stepper.member_params(0), reference.parameters()):
        torch.testing.assert_close(ours, theirs.detach(), rtol=1e-4, atol=atol)


def test_grad_stats_weight_every_parameter_equally(tiny_dataset):
    stepper = make_stepper([parse_run_config(arch="8", optimizer="adam", lr=0.001)], torch.device("cpu"))
    x, y, onehot_t = batch(tiny_dataset, size=32)
    _, stats = stepper.step(x, y, onehot_t, want_stats=True)
    flat = torch.cat([g[0].flatten() for g in stepper.grads])
    assert stats[0, 0].item() == pytest.approx(flat.mean().item(), rel=1e-4, abs=1e-9)
    assert stats[0, 1].item() == pytest.approx(flat.norm().item(), rel=1e-5)
    layer1 = torch.cat([stepper.grads[0][0].flatten(), stepper.grads[1][0]])
    assert stats[0, 3].item() == pytest.approx(layer1.norm().item(), rel=1e-5)
    assert stats[0, 5].item() == pytest.approx(layer1.mean().item(), rel=1e-4, abs=1e-9)
    assert stats[0, 2].item() == pytest.approx(sum(g[0].mean().item() for g in stepper.grads), abs=1e-7)
    assert stats.shape == (1, 3 + 2 * 2)


def test_step_metrics_every_step_then_at_a_bounded_rate(tiny_dataset):
    config = parse_run_config(epochs=4, full_steps=5, step_every=3)
    steps = [e.step for e in of(run_all(config, tiny_dataset), StepMetrics)]
    assert steps == [1, 2, 3, 4, 5, 6, 9, 12, 15, 18, 21, 24, 27, 30]
    assert steps == [s for s in range(1, 33) if is_metric_step(s, 5, 3)]


def test_huge_learning_rate_diverges_cleanly_at_its_step(tiny_dataset):
    events = run_all(parse_run_config(epochs=5, lr=1e5), tiny_dataset)
    finished = events[-1]
    assert finished.status == "diverged"
    first_bad = next(
        e.step for e in of(events, StepMetrics) if e.loss != e.loss or abs(e.loss) == float("inf")
    )
    assert finished.results.message == f"loss became non-finite at step {first_bad}"
    assert finished.results.steps_done == first_bad  # not the steps taken on before it was noticed
    assert len(of(events, EpochMetrics)) < 5


def test_running_results_count_every_step_of_an_epoch(tiny_dataset, sessions_dir):
    config = parse_run_config(epochs=2, arch="8", full_steps=0, step_every=3)  # 8 steps, 2 recorded
    session = SessionRecorder(sessions_dir)
    for event in train_one(config, tiny_dataset):
        session(event)
        if isinstance(event, EpochMetrics) and event.epoch == 1:
            assert session.record.results.steps_done == 8
    assert session.record.results.steps_done == 16


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
    monkeypatch.setattr(recorder, "FLUSH_SECONDS", 0.0)  # hand out every step at once
    cancel = threading.Event()
    config = parse_run_config(epochs=5, full_steps=0, step_every=1)
    events = []
    for event in train_one(config, tiny_dataset, cancel):
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
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="cuda"):
        resolve_device("cuda")
    assert resolve_device("auto").type == "cpu"


def test_errors_while_training_end_the_run_as_failed(tiny_dataset, monkeypatch):
    def broken(self, *args):
        raise RuntimeError("out of memory\nmore detail")

    monkeypatch.setattr(PlainSGD, "step", broken)
    events = run_all(parse_run_config(epochs=1), tiny_dataset)
    assert events[-1].status == "failed"
    assert events[-1].results.message == "RuntimeError: out of memory"


class FakeCuda:
    type = "cuda"


def test_cuda_graph_fallbacks_keep_the_eager_step(monkeypatch):
    stepper = make_stepper([parse_run_config(arch="8")], torch.device("cpu"))
    assert graphs.choose_step(stepper, 64, torch.device("cpu")) == (stepper.step, "")

    def capture_fails(*args):
        raise RuntimeError("operation not permitted when stream is capturing\ndetails")

    monkeypatch.setattr(graphs, "GraphedStep", capture_fails)
    step, note = graphs.choose_step(stepper, 64, FakeCuda())
    assert step == stepper.step
    assert (
        note
        == "CUDA graph capture failed (operation not permitted when stream is capturing); training eagerly"
    )
    monkeypatch.setenv("FMLAB_CUDA_GRAPH", "0")
    assert "FMLAB_CUDA_GRAPH=0" in graphs.choose_step(stepper, 64, FakeCuda())[1]
    monkeypatch.delenv("FMLAB_CUDA_GRAPH")
    adam = make_stepper([parse_run_config(arch="8", optimizer="adam")], torch.device("cpu"))
    assert "plain SGD only" in graphs.choose_step(adam, 64, FakeCuda())[1]


CPU = torch.device("cpu")


def tiny_epoch(dataset):
    return [batch(dataset, start) for start in range(0, len(dataset.train_x), 64)]


def test_sums_made_in_groups_count_what_sums_made_each_step_count(tiny_dataset, monkeypatch):
    """A step keeps its logits and the epoch's loss and accuracy are summed
    SETTLE_EVERY steps at a time; that changes no weight, no correct count, and
    the loss only in its last bits."""
    monkeypatch.setattr(steppers, "SETTLE_EVERY", 3)  # 8 steps: two groups and two left over
    config = parse_run_config(lr=0.1, arch="32,16")
    in_groups, each_step = make_stepper([config], CPU), make_stepper([config], CPU)
    each_step.sums_each_step = True
    for x, y, onehot_t in tiny_epoch(tiny_dataset):
        assert in_groups.step(x, y, onehot_t, want_stats=False)[0] is None  # nobody asked
        each_step.step(x, y, onehot_t, want_stats=False)
    assert all(torch.equal(a, b) for a, b in zip(in_groups.params(), each_step.params()))
    (grouped_loss,), (grouped_right,) = in_groups.take_epoch_sums()
    (loss,), (right,) = each_step.take_epoch_sums()
    assert grouped_right == right > 0
    assert grouped_loss == pytest.approx(loss, rel=1e-6)
    assert in_groups.take_epoch_sums() == ([0.0], [0])  # taken: nothing left over


def test_a_stack_that_loses_a_member_mid_group_trains_and_sums_as_the_member_alone(tiny_dataset, monkeypatch):
    monkeypatch.setattr(steppers, "SETTLE_EVERY", 3)
    configs = [parse_run_config(lr=lr, seed=seed, arch="32,16") for lr, seed in ((0.1, 0), (0.05, 1))]
    stack, alone = make_stepper(configs, CPU), make_stepper(configs[1:], CPU)
    for index, (x, y, onehot_t) in enumerate(tiny_epoch(tiny_dataset)):
        if index == 4:  # one step into the second group
            stack.keep(torch.tensor([1]))
        for stepper in (stack, alone):
            stepper.step(x, y, onehot_t, want_stats=False)
    assert all(torch.equal(a, b) for a, b in zip(stack.params(), alone.params()))
    assert stack.take_epoch_sums() == alone.take_epoch_sums()


def test_a_step_narrows_to_one_thread_once_and_leaves_the_count_as_it_found_it(tiny_dataset, monkeypatch):
    stepper = make_stepper([parse_run_config(lr=0.1)], CPU)  # 10 logits: multiplied on one thread
    stepper.native = None  # the Python step (the C++ one makes the same calls: test_native_step.py)
    threads_at_softmax = []
    softmax = torch.softmax

    def watched(*args, **kwargs):
        threads_at_softmax.append(torch.get_num_threads())
        return softmax(*args, **kwargs)

    def failing(*args, **kwargs):
        raise RuntimeError("failed mid-step")

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        monkeypatch.setattr(torch, "softmax", watched)
        stepper.step(*batch(tiny_dataset), want_stats=False)
        assert threads_at_softmax == [1] and torch.get_num_threads() == 2
        monkeypatch.setattr(torch, "softmax", failing)
        with pytest.raises(RuntimeError, match="mid-step"):
            stepper.step(*batch(tiny_dataset), want_stats=False)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
