"""The run analysis on synthetic curves whose answers are known."""

from __future__ import annotations

import json
import math

import pytest
from one_run import train_one

from fmlab.trainer.analysis import analysis_lines, analyze, analyze_record, slope
from fmlab.trainer.events import EpochMetrics
from fmlab.trainer.fields import parse_run_config
from fmlab.trainer.sessions import SessionRecorder, load


def curve(test_acc, test_loss=None, train_acc=None):
    """Epoch rows from per-epoch test accuracies (and losses, train accuracies)."""
    test_loss = test_loss or [1.0] * len(test_acc)
    train_acc = train_acc or [a + 1.0 for a in test_acc]
    return [
        EpochMetrics(
            epoch=i + 1,
            train_loss=0.5,
            train_acc=tr,
            test_loss=lo,
            test_acc=acc,
            seconds=1.0,
            samples_per_s=1.0,
        )  # fmt: skip
        for i, (acc, lo, tr) in enumerate(zip(test_acc, test_loss, train_acc))
    ]


# the loss bottoms out at epoch 4; after it the accuracy falls by 1.5 (to epoch 5)
# and by 1.3 (to epoch 7), and rises once in between
OVERFITTING = curve(
    test_acc=[80.0, 84.0, 86.0, 88.5, 87.0, 88.2, 86.9, 86.5],
    test_loss=[1.0, 0.6, 0.5, 0.45, 0.5, 0.55, 0.6, 0.7],
    train_acc=[81.0, 86.0, 89.0, 91.0, 92.0, 93.0, 94.0, 95.0],
)


def test_the_lowest_loss_the_rise_and_the_drops_after_it():
    a = analyze(OVERFITTING, converged_epoch=6)
    assert a.epochs == 8 and a.final_epoch == 8
    assert (a.lowest_test_loss_epoch, a.lowest_test_loss) == (4, 0.45)
    assert a.test_loss_rise == pytest.approx(0.25)
    assert (a.best_test_acc_epoch, a.best_test_acc) == (4, 88.5)
    assert a.final_below_best == pytest.approx(2.0) and a.final_marked
    assert a.train_test_gap == pytest.approx(8.5)
    assert a.drops_after_lowest_loss == 2
    assert a.largest_drop_after_lowest_loss == pytest.approx(1.5) and a.largest_drop_epoch == 5
    assert a.epochs_to(85.0) == 3 and a.epochs_to(88.0) == 4
    # least squares over epochs 4-8: sum((x - 6)(y - 87.42)) / 10
    assert a.slope == pytest.approx(-0.41) and a.slope_epochs == 5 and a.trend == "falling"
    assert a.converged_epoch == 6


def test_drops_before_the_lowest_loss_do_not_count():
    a = analyze(curve([80.0, 70.0, 85.0, 86.0], test_loss=[1.0, 1.2, 0.5, 0.4]))
    assert a.lowest_test_loss_epoch == 4 and a.drops_after_lowest_loss == 0
    assert a.largest_drop_after_lowest_loss is None and a.test_loss_rise == 0.0


def test_still_rising_flat_and_never_reaching_an_accuracy():
    rising = analyze(curve([70.0 + 0.5 * i for i in range(10)]))
    assert rising.slope == pytest.approx(0.5) and rising.trend == "rising"
    assert rising.epochs_to(85.0) is None and rising.epochs_to(88.0) is None
    flat = analyze(curve([88.0, 88.05, 87.98, 88.02, 88.0, 88.04]))
    assert flat.trend == "flat" and abs(flat.slope) <= 0.1
    assert flat.epochs_to(85.0) == 1 and flat.epochs_to(88.0) == 1
    assert not flat.final_marked  # 0.05 under the best
    two = analyze(curve([50.0, 60.0]))
    assert two.slope == pytest.approx(10.0) and two.slope_epochs == 2
    assert slope([1.0], [2.0]) is None


def test_ties_take_the_first_epoch():
    a = analyze(curve([85.0, 86.0, 86.0], test_loss=[0.5, 0.4, 0.4]))
    assert a.lowest_test_loss_epoch == 2 and a.best_test_acc_epoch == 2


def test_an_empty_session():
    a = analyze([], status="stopped")
    assert a.epochs == 0 and a.final_test_acc is None and a.best_test_acc is None
    assert a.lowest_test_loss_epoch is None and a.test_loss_rise is None and a.train_test_gap is None
    assert a.drops_after_lowest_loss == 0 and a.slope is None and a.trend == ""
    assert a.epochs_to(85.0) is None and not a.final_marked
    assert analysis_lines(a) == ["no finished epoch (stopped): nothing to analyse"]
    json.dumps(a.to_dict(), allow_nan=False)


def test_a_diverged_curve_leaves_out_what_is_not_finite():
    epochs = curve([60.0, 70.0, 10.0], test_loss=[1.0, 0.8, math.nan])
    a = analyze(epochs, status="diverged")
    assert a.status == "diverged" and a.epochs == 3
    assert a.lowest_test_loss_epoch == 2 and a.final_test_loss is None and a.test_loss_rise is None
    assert a.drops_after_lowest_loss == 1 and a.largest_drop_after_lowest_loss == pytest.approx(60.0)
    assert a.final_below_best == pytest.approx(60.0) and a.final_marked
    assert json.loads(json.dumps(a.to_dict(), allow_nan=False))["final_test_loss"] is None


def test_a_run_that_diverged_for_real(tiny_dataset, sessions_dir):
    recorder = SessionRecorder(sessions_dir)
    for event in train_one(parse_run_config(epochs=3, lr=1e5), tiny_dataset):
        recorder(event)
    record = load(recorder.path)
    a = analyze_record(record)
    assert record.status == "diverged" and a.status == "diverged"
    assert a.epochs == len(record.epochs) < 3
    assert record.results.lowest_test_loss_epoch == a.lowest_test_loss_epoch
    assert analysis_lines(a)  # words, whatever is left
    json.dumps(a.to_dict(), allow_nan=False)


def test_the_words_say_the_numbers():
    lines = "\n".join(analysis_lines(analyze(OVERFITTING, converged_epoch=6)))
    assert "0.4500 at epoch 4, then +0.2500 by epoch 8" in lines
    assert "88.50% at epoch 4; final 86.50%, 2.00 points below the best (more than 1)" in lines
    assert "+8.50 points at the end (train 95.00%, test 86.50%)" in lines
    assert "2 test-accuracy drops of more than 1 point after epoch 4, the largest 1.50 (to epoch 5)" in lines
    assert "85% at epoch 3; 88% at epoch 4" in lines
    assert "test accuracy -0.41 points per epoch (falling)" in lines
    assert "at epoch 6" in lines


def test_recorded_results_know_the_lowest_loss_epoch(tiny_dataset, sessions_dir):
    recorder = SessionRecorder(sessions_dir)
    for event in train_one(parse_run_config(arch="16", epochs=3, lr=0.1), tiny_dataset):
        recorder(event)
    record = load(recorder.path)
    assert record.results.lowest_test_loss_epoch == analyze_record(record).lowest_test_loss_epoch
    assert record.results.lowest_test_loss_epoch in (1, 2, 3)
