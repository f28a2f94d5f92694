"""Observations are facts of the data they are written from: the same
templates on synthetic studies whose facts differ say different things, and
never a sentence that is false for them."""

from __future__ import annotations

import re

from test_analysis import curve

from fmlab.trainer.analysis import analyze
from fmlab.trainer.fields import parse_run_config
from fmlab.trainer.studies.observations import (
    StudyRun,
    arch_label,
    architecture_observations,
    convergence_observations,
    lr_label,
    lr_observations,
    paragraph,
)
from fmlab.trainer.studies.tables import RunRow


def run(accs, losses=None, label=lr_label, converged=None, status="completed", train=None, **config):
    """A StudyRun from a synthetic curve: its row and analysis agree."""
    epochs = curve(accs, losses, train)
    cfg = parse_run_config(epochs=max(len(accs), 1), **config)
    best = max(epochs, key=lambda e: e.test_acc)
    row = RunRow(cfg, "id", "path", status, accs[-1], best.test_acc, converged, len(accs), 1.0, best.epoch)
    return StudyRun(label(row), row, analyze(epochs, status=status, converged_epoch=converged))


def text(sentences):
    return paragraph(sentences)


def test_the_lr_study_names_whichever_rate_ends_highest():
    rising = [70.0 + i for i in range(10)]
    plateau = [80.0, 84.0, 85.5, 86.0, 86.5, 87.0, 87.0, 87.05, 87.0, 87.02]
    one = lr_observations([run([10.0] * 10, lr=1.0), run(plateau, lr=0.1), run(rising, lr=0.01)])
    two = lr_observations([run([10.0] * 10, lr=1.0), run(rising, lr=0.1), run(plateau, lr=0.01)])
    said, other = text(one), text(two)
    assert (
        "After 10 epochs, the final test accuracy, highest first: lr 0.1 (87.02%), lr 0.01 (79.00%), lr 1 (10.00%)."
        in said
    )
    assert "lr 0.1 ends highest, 8.02 points above lr 0.01." in said
    assert "lr 0.01 ends highest, 8.02 points above lr 0.1." in other
    assert "lr 1 did not learn: it ends at 10.00%" in said
    # the trend: only the rising curve is said to be rising, the plateau is flat
    assert (
        "still rising over the last 5 epochs (more than 0.1 points per epoch): lr 0.01 (+1.00 per epoch)."
        in said
    )
    assert "flat over the last 5 epochs (within 0.1 points per epoch either way): lr 0.1" in said
    assert (
        "still rising over the last 5 epochs (more than 0.1 points per epoch): lr 0.1 (+1.00 per epoch)."
        in other
    )
    # lr 1 is left out of the trends (it did not learn)
    assert "lr 1 (" not in said.split("did not learn")[1]
    # the reference: 87.0 / 83.5 for lr 0.1 / 0.01, and lr 1 does not learn
    assert "differs by +0.02 points for lr 0.1 and -4.50 points for lr 0.01" in said
    assert "They rank in the reference's order (lr 0.1, lr 0.01)." in said
    assert "They rank lr 0.1, lr 0.01 here, lr 0.01, lr 0.1 in the reference." not in said
    assert (
        "They rank lr 0.1, lr 0.01 here" not in other
        and "They rank lr 0.01, lr 0.1 here, lr 0.1, lr 0.01 in the reference." in other
    )
    assert "lr 1 does not learn here either, as in the reference." in said


def test_a_tie_and_a_learning_lr_1_are_said_as_they_are():
    said = text(lr_observations([run([50.0, 80.0], lr=1.0), run([60.0, 80.0], lr=0.1)]))
    assert "lr 1 and lr 0.1 end level at 80.00%." in said
    assert "lr 1 learns here, though the reference says it does not." in said


def test_a_final_dip_is_said_in_words_only_when_there_is_one():
    dip = [80.0, 88.0, 89.04, 88.5, 84.95]
    said = text(lr_observations([run(dip, lr=0.1), run([80.0, 81.0, 82.0, 83.0, 84.0], lr=0.01)]))
    assert "lr 0.1's final 84.95% is 4.09 points below its best, 89.04% at epoch 3" in said
    assert "Every run ends within" not in said
    calm = text(lr_observations([run([80.0, 81.0, 82.0, 83.0, 84.0], lr=0.01)]))
    assert "Every run ends within 1 point of its best test accuracy." in calm and "below its best" not in calm


def test_convergence_order_follows_the_numbers():
    def study(epochs_by_lr):
        return text(convergence_observations(
            [run([80.0, 85.0, 86.0, 86.0], lr=lr, converged=epoch) for lr, epoch in epochs_by_lr]
        ))  # fmt: skip

    assert "the smaller the learning rate, the later it converges" in study([(0.1, 2), (0.01, 3), (0.001, 4)])
    assert "the smaller the learning rate, the earlier it converges" in study(
        [(0.1, 4), (0.01, 3), (0.001, 2)]
    )
    mixed = study([(0.1, 3), (0.01, 2), (0.001, 4)])
    assert "does not move one way" in mixed and "later" not in mixed and "earlier" not in mixed
    never = study([(0.1, 2), (0.01, None)])
    assert "lr 0.01 never converged within 4 epochs." in never and "smaller" not in never
    stuck = text(
        convergence_observations(
            [run([10.0] * 4, lr=1.0, converged=1), run([80.0, 85.0, 86.0, 86.0], lr=0.1, converged=2)]
        )
    )
    assert (
        "lr 1 did not learn" in stuck
        and "its converged epoch (1) only says that its accuracy stopped moving" in stuck
    )
    assert (
        "Converged (the first epoch after which test accuracy moved less than 0.1 points for 3 epochs in a row): lr 0.1 at epoch 2."
        in stuck
    )


def arch(name, accs, losses, train=None):
    return run(accs, losses, label=arch_label, arch=name, lr=0.01, train=train)


def test_architectures_name_the_lowest_loss_the_rise_and_the_least_stable():
    base = arch("base", [80.0, 85.0, 87.0, 88.0, 86.5, 88.1], [0.6, 0.45, 0.4, 0.35, 0.4, 0.42])
    deeper = arch("deeper", [80.0, 86.0, 88.0, 86.0, 87.5, 85.0], [0.6, 0.4, 0.33, 0.38, 0.45, 0.5])
    wider = arch("wider", [82.0, 86.0, 87.0, 88.0, 88.5, 89.0], [0.5, 0.4, 0.37, 0.34, 0.33, 0.32])
    said = text(architecture_observations([base, deeper, wider]))
    assert (
        "base reaches its lowest test loss at epoch 4 (0.3500) and ends 0.0700 higher (0.4200 at epoch 6)."
        in said
    )
    assert (
        "deeper reaches its lowest test loss at epoch 3 (0.3300) and ends 0.1700 higher (0.5000 at epoch 6)."
        in said
    )
    assert "wider's test loss is lowest at its last epoch (6, 0.3200): no rise yet." in said
    assert "deeper bottoms out earliest (epoch 3)." in said
    assert "The rise after the lowest test loss is largest for deeper (0.1700)." in said
    assert (
        "falls by more than 1 point from one epoch to the next once for base (largest 1.50), twice for deeper (largest 2.50) and never for wider."
        in said
    )
    assert "Least stable: deeper, with the most such drops and the largest." in said
    assert "Test accuracy first reaches 88%: base at epoch 4, deeper at epoch 3 and wider at epoch 4." in said
    assert "Against base's 337,674 parameters, deeper 8.82 times and wider 8.66 times as many." in said
    assert "The parameter counts of base, deeper and wider match the reference exactly." in said
    assert "deeper's final 85.00% is 3.00 points below its best, 88.00% at epoch 3" in said

    # the same templates on calmer data: no drops, so nobody is least stable
    calm = [arch(n, [80.0, 85.0, 87.0, 88.0], [0.6, 0.5, 0.45, 0.4]) for n in ("base", "wider")]
    quiet = text(architecture_observations(calm))
    assert "no network's test accuracy falls by more than 1 point" in quiet
    assert "Least stable" not in quiet and "bottoms out earliest" not in quiet and "largest for" not in quiet


def test_every_number_in_the_lr_observations_is_in_the_tables_or_follows():
    """The numbers of the observations: the table's values, their differences,
    the slopes of the analysis table, and the thresholds the report names."""
    from fmlab.trainer.studies.report import analysis_table
    from fmlab.trainer.studies.tables import study_columns, table_text

    runs = [run([10.0] * 6, lr=1.0), run([80.0, 84.0, 85.5, 86.0, 86.5, 85.2], lr=0.1),
            run([70.0 + i for i in range(6)], lr=0.01)]  # fmt: skip
    tables = table_text(study_columns("lr"), [r.row for r in runs], "markdown") + analysis_table(runs)
    said = text(lr_observations(runs))
    numbers = set(re.findall(r"[-+]?\d+(?:\.\d+)?", tables))
    finals = {r.final for r in runs}
    derived = {f"{a - b:.2f}" for a in finals for b in finals} | {"25", "10", "1", "5", "0.1"}
    for number in re.findall(r"(?<![\w.])[-+]?\d+(?:\.\d+)?", said):
        assert number in numbers or number.lstrip("+-") in derived, number


def test_least_stable_on_a_tie_in_drops_names_the_largest_and_says_so():
    losses = [0.6, 0.4, 0.3, 0.35, 0.4, 0.45]
    base = arch("base", [80.0, 86.0, 88.0, 86.0, 87.0, 85.5], losses)  # falls 2.00 and 1.50
    wider = arch("wider", [80.0, 86.0, 88.0, 84.0, 86.0, 84.8], losses)  # falls 4.00 and 1.20
    said = text(architecture_observations([base, wider]))
    assert "twice for base (largest 2.00) and twice for wider (largest 4.00)" in said
    assert "Least stable: wider: both fall twice, and its largest fall (4.00) is the biggest of all." in said
    same = text(
        architecture_observations([base, arch("deeper", [80.0, 86.0, 88.0, 86.0, 87.0, 85.5], losses)])
    )
    assert "Least stable" not in same  # as many drops, as large
