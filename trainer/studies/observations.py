"""Observations: what each study's runs show, said in sentences built from
the numbers alone.

Every sentence here is a template filled with values computed from the runs
(their rows, their analysis, their step curves), and a sentence is only
written when its facts hold: an ordering is stated only when the numbers
follow it, a "least stable" network only when one has drops. Numbers are
printed as the report's tables print them (accuracies to 2 decimals, losses
to 4, gradients to 4 significant digits), and differences are taken between
printed values, so a reader can check each one against the tables.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from fmlab.trainer.analysis import DROP_POINTS, FINAL_BELOW_BEST, FLAT_SLOPE, RunAnalysis
from fmlab.trainer.config import ARCH_PRESETS
from fmlab.trainer.sessions import SessionRecord
from fmlab.trainer.studies.grads import GRAD_STEPS, grad_summary
from fmlab.trainer.studies.reference import reference_accuracy, reference_parameters
from fmlab.trainer.studies.tables import NOT_LEARNED_BELOW, RunRow, below_best, final_marked, outcome


@dataclass(frozen=True)
class StudyRun:
    """One run of a study as the observations see it."""

    label: str  # "lr 0.1", "base"
    row: RunRow
    analysis: RunAnalysis

    @property
    def learned(self) -> bool:
        return outcome(self.row) == ""

    @property
    def final(self) -> float | None:
        return None if self.row.final_test_acc is None else round(self.row.final_test_acc, 2)


def lr_label(row: RunRow) -> str:
    return f"lr {row.config.optimizer.lr:g}"


def arch_label(row: RunRow) -> str:
    """A preset's name, else the widths in brackets (as the tables' structure),
    or a layer stack or module as written."""
    spec = row.config.model
    if spec.name in ARCH_PRESETS or not spec.is_mlp:
        return spec.name
    return f"({','.join(map(str, spec.hidden))})"


# ----------------------------------------------------------------- wording


def loss_rise(a: RunAnalysis) -> float | None:
    """The test loss's rise after its lowest, between the values as printed (4 decimals)."""
    if a.test_loss_rise is None:
        return None
    return round(round(a.final_test_loss, 4) - round(a.lowest_test_loss, 4), 4)


def _pct(value: float) -> str:
    return f"{value:.2f}%"


def _series(items: Sequence[str]) -> str:
    """Items joined in words: a; a and b; a, b and c."""
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _times(count: int) -> str:
    return "once" if count == 1 else "twice" if count == 2 else f"{count} times"


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _common(values: Sequence[int]) -> int | None:
    return values[0] if values and all(v == values[0] for v in values) else None


# ----------------------------------------------------------------- shared sentences


def ranking_sentences(runs: Sequence[StudyRun]) -> list[str]:
    """The final accuracies highest first, and how far the leader is ahead."""
    ranked = sorted((r for r in runs if r.final is not None), key=lambda r: -r.final)
    if not ranked:
        return []
    epochs = _common([r.analysis.epochs for r in runs])
    when = f"After {epochs} epochs" if epochs is not None else "At the end"
    listed = ", ".join(f"{r.label} ({_pct(r.final)})" for r in ranked)
    out = [f"{when}, the final test accuracy, highest first: {listed}."]
    if len(ranked) >= 2:
        top, second = ranked[0], ranked[1]
        gap = round(top.final - second.final, 2)
        level = [r.label for r in ranked if r.final == top.final]
        if gap == 0:
            out.append(f"{_series(level)} end level at {_pct(top.final)}.")
        else:
            out.append(f"{top.label} ends highest, {gap:.2f} points above {second.label}.")
    return out


def not_learned_sentences(runs: Sequence[StudyRun], convergence: bool = False) -> list[str]:
    out = []
    for run in runs:
        note = outcome(run.row)
        if not note:
            continue
        if note == "did not learn":
            final = "no finished epoch" if run.final is None else f"it ends at {_pct(run.final)}"
            sentence = (f"{run.label} did not learn: {final}, under the {NOT_LEARNED_BELOW:g}% this report "
                        f"takes as learning (chance is 10%)")  # fmt: skip
            if convergence:
                epoch = run.row.converged_epoch
                sentence += (
                    f"; its converged epoch ({epoch}) only says that its accuracy stopped moving"
                    if epoch is not None
                    else " and it never converged"
                )
            out.append(sentence + ".")
        else:
            out.append(f"{run.label} ended {note} after {run.row.epochs_done} epochs.")
    return out


def trend_sentences(runs: Sequence[StudyRun]) -> list[str]:
    """Which runs that learned are still rising, flat or falling at the end."""
    groups: dict[str, list[StudyRun]] = {"rising": [], "flat": [], "falling": []}
    for run in runs:
        if run.learned and run.analysis.trend:
            groups[run.analysis.trend].append(run)
    counted = [r.analysis.slope_epochs for group in groups.values() for r in group]
    if not counted:
        return []
    span = _common(counted)
    over = f"over the last {span} epochs" if span is not None else "over the last epochs (up to 5)"
    words = {
        "rising": f"still rising {over} (more than {FLAT_SLOPE:g} points per epoch)",
        "flat": f"flat {over} (within {FLAT_SLOPE:g} points per epoch either way)",
        "falling": f"falling {over} (more than {FLAT_SLOPE:g} points per epoch)",
    }
    out = []
    for trend, group in groups.items():
        if group:
            listed = _series([f"{r.label} ({r.analysis.slope:+.2f} per epoch)" for r in group])
            out.append(f"Test accuracy is {words[trend]}: {listed}.")
    return out


def best_sentences(runs: Sequence[StudyRun]) -> list[str]:
    """Final values more than FINAL_BELOW_BEST under the best, said in words."""
    marked = [r for r in runs if final_marked(r.row)]
    out = []
    for run in marked:
        row = run.row
        out.append(
            f"{run.label}'s final {_pct(run.final)} is {below_best(row):.2f} points below its best, "
            f"{_pct(round(row.best_test_acc, 2))} at epoch {row.best_epoch}, so the final number understates "
            f"what the run reached."
        )
    if not marked and all(r.row.best_test_acc is not None for r in runs) and runs:
        out.append(f"Every run ends within {FINAL_BELOW_BEST:g} point of its best test accuracy.")
    return out


def reference_sentences(runs: Sequence[StudyRun], table: str) -> list[str]:
    """fmlab's final accuracies against the published ones."""
    with_value, without = [], []
    for run in runs:
        ref = reference_accuracy(table, run.row.config)
        if ref is None:
            continue
        (with_value if ref.value is not None and run.final is not None else without).append((run, ref))
    out = []
    if with_value:
        parts = [f"{round(run.final - ref.value, 2):+.2f} points for {run.label}" for run, ref in with_value]
        out.append(f"Against the reference, fmlab's final accuracy differs by {_series(parts)}.")
        if len(with_value) >= 2:
            ours = [run.label for run, _ in sorted(with_value, key=lambda p: -p[0].final)]
            theirs = [run.label for run, ref in sorted(with_value, key=lambda p: -p[1].value)]
            if ours == theirs:
                out.append(f"They rank in the reference's order ({', '.join(theirs)}).")
            else:
                out.append(f"They rank {', '.join(ours)} here, {', '.join(theirs)} in the reference.")
    for run, ref in without:
        if ref.text == "does not learn":
            if run.learned:
                out.append(f"{run.label} learns here, though the reference says it does not.")
            else:
                out.append(f"{run.label} does not learn here either, as in the reference.")
    return out


def loss_sentences(runs: Sequence[StudyRun]) -> list[str]:
    """Where each run's test loss bottoms out and how far it rises after."""
    parts, still = [], []
    for run in runs:
        a = run.analysis
        if not run.learned or a.lowest_test_loss_epoch is None:
            continue
        if a.lowest_test_loss_epoch == a.final_epoch:
            still.append(run.label)
        elif a.test_loss_rise is not None:
            parts.append(f"{run.label} at epoch {a.lowest_test_loss_epoch} ({a.lowest_test_loss:.4f}, then "
                         f"{loss_rise(a):+.4f} by epoch {a.final_epoch})")  # fmt: skip
    out = []
    if parts:
        out.append(f"The test loss bottoms out for {_series(parts)}.")
    if still:
        out.append(f"The test loss of {_series(still)} is lowest at the last epoch: no rise yet.")
    return out


# ----------------------------------------------------------------- per study


def lr_observations(runs: Sequence[StudyRun]) -> list[str]:
    out = ranking_sentences(runs)
    out += not_learned_sentences(runs)
    out += trend_sentences(runs)
    out += best_sentences(runs)
    out += reference_sentences(runs, "lr")
    return out


def convergence_observations(runs: Sequence[StudyRun]) -> list[str]:
    out = []
    if runs:
        rule = runs[0].row.config.convergence
        converged = [r for r in runs if r.learned and r.row.converged_epoch is not None]
        never = [r for r in runs if r.learned and r.row.converged_epoch is None]
        if converged:
            listed = _series([f"{r.label} at epoch {r.row.converged_epoch}" for r in converged])
            out.append(f"Converged (the first epoch after which test accuracy moved less than {rule.threshold:g} "
                       f"points for {_count(rule.patience, 'epoch')} in a row): {listed}.")  # fmt: skip
        if never:
            counts = _common([r.row.epochs_done for r in never])
            within = f" within {counts} epochs" if counts is not None else ""
            out.append(f"{_series([r.label for r in never])} never converged{within}.")
        out += _order_sentence(converged)
    out += not_learned_sentences(runs, convergence=True)
    out += ranking_sentences(runs)
    out += loss_sentences(runs)
    out += trend_sentences(runs)
    out += best_sentences(runs)
    out += reference_sentences(runs, "convergence")
    return out


def _order_sentence(converged: Sequence[StudyRun]) -> list[str]:
    """How the converged epoch moves with the learning rate, when it moves one way."""
    if len(converged) < 2:
        return []
    by_lr = sorted(converged, key=lambda r: -r.row.config.optimizer.lr)
    epochs = [r.row.converged_epoch for r in by_lr]
    pairs = list(zip(epochs, epochs[1:]))
    if all(b > a for a, b in pairs):
        return ["Among these, the smaller the learning rate, the later it converges."]
    if all(b < a for a, b in pairs):
        return ["Among these, the smaller the learning rate, the earlier it converges."]
    if all(b == a for a, b in pairs):
        return ["These all converge at the same epoch."]
    return ["The converged epoch does not move one way with the learning rate."]


def architecture_observations(runs: Sequence[StudyRun]) -> list[str]:
    out = []
    for run in runs:
        a = run.analysis
        if a.lowest_test_loss_epoch is None:
            continue
        if a.lowest_test_loss_epoch == a.final_epoch:
            out.append(f"{run.label}'s test loss is lowest at its last epoch ({a.final_epoch}, "
                       f"{a.lowest_test_loss:.4f}): no rise yet.")  # fmt: skip
        elif a.test_loss_rise is not None:
            out.append(f"{run.label} reaches its lowest test loss at epoch {a.lowest_test_loss_epoch} "
                       f"({a.lowest_test_loss:.4f}) and ends {loss_rise(a):.4f} higher "
                       f"({a.final_test_loss:.4f} at epoch {a.final_epoch}).")  # fmt: skip
    out += _extreme_sentence(
        [r for r in runs if r.analysis.lowest_test_loss_epoch is not None],
        lambda r: r.analysis.lowest_test_loss_epoch,
        lambda names, value: (
            f"{_series(names)} bottom{'s' if len(names) == 1 else ''} out earliest (epoch {value})."
        ),
    )
    rising = [r for r in runs if r.analysis.test_loss_rise is not None and loss_rise(r.analysis) > 0]
    out += _extreme_sentence(
        rising,
        lambda r: -loss_rise(r.analysis),
        lambda names, value: (
            f"The rise after the lowest test loss is largest for {_series(names)} ({-value:.4f})."
        ),
    )
    gaps = [r for r in runs if r.analysis.train_test_gap is not None]
    if gaps:
        listed = _series([f"{r.analysis.train_test_gap:+.2f} for {r.label}" for r in gaps])
        out.append(f"The train-test accuracy gap at the end (train minus test, in points): {listed}.")
    out += _stability_sentences(runs)
    out += ranking_sentences(runs)
    out += best_sentences(runs)
    out += _reach_sentences(runs, 88.0)
    out += _parameter_sentences(runs)
    out += reference_sentences(runs, "architectures")
    return out


def _extreme_sentence(runs: Sequence[StudyRun], key: Callable[[StudyRun], float], say) -> list[str]:
    """The runs at the smallest ``key``, when at least two runs are compared."""
    if len(runs) < 2:
        return []
    low = min(key(r) for r in runs)
    names = [r.label for r in runs if key(r) == low]
    if len(names) == len(runs):
        return []
    return [say(names, low)]


def _stability_sentences(runs: Sequence[StudyRun]) -> list[str]:
    counted = [r for r in runs if r.analysis.lowest_test_loss_epoch is not None]
    if not counted:
        return []
    if all(r.analysis.drops_after_lowest_loss == 0 for r in counted):
        return [f"After its lowest test loss, no network's test accuracy falls by more than {DROP_POINTS:g} "
                f"point from one epoch to the next."]  # fmt: skip
    parts = []
    for run in counted:
        a = run.analysis
        if a.drops_after_lowest_loss:
            parts.append(f"{_times(a.drops_after_lowest_loss)} for {run.label} (largest "
                         f"{a.largest_drop_after_lowest_loss:.2f})")  # fmt: skip
        else:
            parts.append(f"never for {run.label}")
    out = [f"After its lowest test loss, test accuracy falls by more than {DROP_POINTS:g} point from one epoch "
           f"to the next {_series(parts)}."]  # fmt: skip
    if len(counted) >= 2:
        out += _least_stable(counted)
    return out


def _least_stable(runs: Sequence[StudyRun]) -> list[str]:
    """The network with the most drops after its lowest test loss; on a tie in
    number, the one among them with the largest drop (said as such)."""

    def largest(run: StudyRun) -> float:
        return round(run.analysis.largest_drop_after_lowest_loss or 0.0, 2)

    most = max(r.analysis.drops_after_lowest_loss for r in runs)
    at_most = [r for r in runs if r.analysis.drops_after_lowest_loss == most]
    biggest = max(largest(r) for r in runs)
    if len(at_most) == 1:
        run = at_most[0]
        also = " and the largest" if largest(run) == biggest else ""
        return [f"Least stable: {run.label}, with the most such drops{also}."]
    top = max(largest(r) for r in at_most)
    worst = [r for r in at_most if largest(r) == top]
    if len(worst) == len(at_most):
        return []  # as many drops, as large: none stands out
    everyone = {2: "both", 3: "all three", 4: "all four"}.get(len(runs), f"all {len(runs)}")
    tied = everyone if len(at_most) == len(runs) else _series([r.label for r in at_most])
    among = "of all" if top == biggest else "among these"
    return [
        f"Least stable: {_series([r.label for r in worst])}: {tied} fall {_times(most)}, and "
        f"{'its' if len(worst) == 1 else 'their'} largest fall ({top:.2f}) is the biggest {among}."
    ]


def _reach_sentences(runs: Sequence[StudyRun], accuracy: float) -> list[str]:
    parts = []
    for run in runs:
        epoch = run.analysis.epochs_to(accuracy)
        parts.append(f"{run.label} at epoch {epoch}" if epoch is not None else f"{run.label} never")
    return [f"Test accuracy first reaches {accuracy:g}%: {_series(parts)}."] if parts else []


def _parameter_sentences(runs: Sequence[StudyRun]) -> list[str]:
    counts = {r.label: r.row.config.model.num_params for r in runs}
    out = []
    if "base" in counts and len(counts) > 1:
        ratios = [
            f"{label} {count / counts['base']:.2f} times"
            for label, count in counts.items()
            if label != "base"
        ]
        out.append(f"Against base's {counts['base']:,} parameters, {_series(ratios)} as many.")
    refs = {r.label: reference_parameters(r.row.config) for r in runs}
    checked = {label: ref for label, ref in refs.items() if ref is not None}
    if checked:
        wrong = [label for label, ref in checked.items() if counts[label] != ref]
        if not wrong:
            out.append(f"The parameter counts of {_series(list(checked))} match the reference exactly.")
        else:
            out += [
                f"{label}'s parameter count differs from the reference's ({checked[label]:,})."
                for label in wrong
            ]
    return out


# ----------------------------------------------------------------- the gradient study


def _g(value: float) -> str:
    """A gradient value as the gradient tables print it."""
    return f"{value:.3e}"


def _two_means_sentence(spec) -> str:
    total = f"{spec.num_params:,}"
    if not spec.is_mlp:
        return (
            "The notebook's value adds the mean gradient of each parameter tensor, so a bias counts as much as "
            f"the largest weight; the mean over all parameters divides the sum of all {total} gradients by "
            "their number, so each tensor counts by its size."
        )
    sizes = spec.sizes
    largest = max(i * o for i, o in zip(sizes, sizes[1:]))
    return (
        f"The notebook's value adds the mean gradient of each of the {2 * (len(sizes) - 1)} parameter tensors "
        f"(every layer's weight and bias), so the output bias ({sizes[-1]} values) counts as much as the largest "
        f"weight matrix ({largest:,} values); the mean over all parameters divides the sum of all "
        f"{total} gradients by their number, so each tensor counts by its size."
    )


def gradient_observations(records: Sequence[SessionRecord], steps: int = GRAD_STEPS) -> list[str]:
    """The two gradient definitions compared over the first ``steps`` steps."""
    out = []
    for record in records:
        label = f"lr {record.config.optimizer.lr:g}"
        out.append(_two_means_sentence(record.config.model))
        mean = grad_summary(record, steps, "grad_mean")
        if not mean["steps"]:
            out.append(f"At {label} no step has a finite gradient to describe.")
            continue
        if not record.steps.has_sum_of_means:
            out.append(f"The session at {label} was recorded before the notebook's value was: only the mean "
                       f"over all parameters is known.")  # fmt: skip
        notebook = grad_summary(record, steps, "grad_sum_of_means")
        for name, s in (("the notebook's value", notebook), ("the mean over all parameters", mean)):
            if s["steps"]:
                out.append(
                    f"At {label}, over steps 1 to {s['last_step']}, {name} runs from {_g(s['first'])} to "
                    f"{_g(s['last'])}, between {_g(s['min'])} (step {s['min_step']}) and {_g(s['max'])} "
                    f"(step {s['max_step']}), averages {_g(s['mean'])} and changes sign "
                    f"{_times(s['sign_changes']) if s['sign_changes'] else 'never'}."
                )
        if notebook["steps"]:
            out += _two_definitions(record, steps, notebook, mean)
        out += _loss_sentence(record, steps)
    return out


def _two_definitions(record: SessionRecord, steps: int, notebook: dict, mean: dict) -> list[str]:
    curve = record.steps
    pairs = [(a, b) for s, a, b in zip(curve.step, curve.grad_sum_of_means, curve.grad_mean)
             if s <= steps and math.isfinite(a) and math.isfinite(b)]  # fmt: skip
    out = []
    if mean["mean_abs"] > 0:
        ratio = notebook["mean_abs"] / mean["mean_abs"]
        out.append(f"In magnitude the notebook's value averages {_g(notebook['mean_abs'])} against "
                   f"{_g(mean['mean_abs'])}, {ratio:.1f} times as large.")  # fmt: skip
    same = sum((a > 0) == (b > 0) for a, b in pairs)
    out.append(f"The two have the same sign at {same} of {len(pairs)} steps.")
    half = len(pairs) // 2
    if half:
        first = sum(abs(a) for a, _ in pairs[:half]) / half
        second = sum(abs(a) for a, _ in pairs[half:]) / (len(pairs) - half)
        more = "larger" if second > first else "smaller" if second < first else "the same"
        out.append(f"The notebook value's mean magnitude is {_g(first)} over the first {half} of these steps "
                   f"and {_g(second)} over the other {len(pairs) - half}: {more} later on.")  # fmt: skip
    return out


def _loss_sentence(record: SessionRecord, steps: int) -> list[str]:
    losses = [(s, v) for s, v in zip(record.steps.step, record.steps.loss) if s <= steps and math.isfinite(v)]
    if len(losses) < 2:
        return []
    (s1, first), (s2, last) = losses[0], losses[-1]
    verb = "falls" if last < first else "rises" if last > first else "stays"
    return [f"Meanwhile the training loss {verb} from {_g(first)} at step {s1} to {_g(last)} at step {s2}."]


# ----------------------------------------------------------------- assembled


OBSERVERS: dict[str, Callable[[Sequence[StudyRun]], list[str]]] = {
    "lr": lr_observations,
    "convergence": convergence_observations,
    "architectures": architecture_observations,
}
LABELS: dict[str, Callable[[RunRow], str]] = {
    "lr": lr_label,
    "convergence": lr_label,
    "architectures": arch_label,
}


def paragraph(sentences: Sequence[str]) -> str:
    return " ".join(sentences) if sentences else "No finished run to observe."
