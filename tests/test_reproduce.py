"""The reproduction: studies, resume after an interruption, report and figures."""

from __future__ import annotations

import json
import threading

import pytest
from session_files import layout
from typer.testing import CliRunner

from fmlab.trainer.events import RunFinished
from fmlab.trainer.fields import parse_run_config
from fmlab.trainer.figures import is_png
from fmlab.trainer.studies.grads import grad_summary, grad_table
from fmlab.trainer.studies.reproduce import Reproduction, Study, grad_configs, plan_studies
from fmlab.trainer.studies.sweep import SweepError, list_sweeps, records_of
from fmlab.tui.cli import app

SMALL = "48,32"


def small_studies(epochs: int = 2) -> list[Study]:
    """The four studies' shapes on a small net, a few epochs each."""

    def runs(lrs, arch=SMALL, epochs=epochs, **extra):
        return tuple(parse_run_config(arch=arch, lr=lr, epochs=epochs, **extra) for lr in lrs)

    return [
        Study("lr", "learning rates", "lr", runs([1.0, 0.1, 0.01]), "note"),
        Study("convergence", "convergence", "convergence", runs([0.1, 0.01], epochs=2 * epochs, patience=1), "note"),
        Study("architectures", "architectures", "architectures",
              runs([0.05], arch="32") + runs([0.05], arch="32,16") + runs([0.05], arch="64,32,16"), "note"),
        Study("grads", "gradients", "grads", tuple(grad_configs([0.1], SMALL, steps=5)), "note", train_limit=5 * 64),
    ]  # fmt: skip


def test_plans_match_the_reference_and_quick_is_smaller():
    full = {s.name: s for s in plan_studies()}
    assert [c.optimizer.lr for c in full["lr"].configs] == [1, 0.1, 0.01, 0.001]
    assert {c.epochs for c in full["convergence"].configs} == {100}
    assert [c.model.name for c in full["architectures"].configs] == ["base", "deeper", "wider"]
    assert {c.epochs for c in full["architectures"].configs} == {200}
    assert full["grads"].train_limit == 6400 and full["grads"].configs[0].full_steps == 100
    quick = {s.name: s for s in plan_studies(quick=True)}
    for name in ("lr", "convergence", "architectures"):
        assert quick[name].configs[0].epochs < full[name].configs[0].epochs


def test_an_interrupted_reproduction_resumes_without_redoing_runs(tiny_datasets, tmp_path):
    first = Reproduction(tmp_path, studies=small_studies(), figures=False)
    lr_study, convergence = first.studies[0], first.studies[1]
    list(first.run_study(lr_study, tiny_datasets))
    done_ids = {r.session for r in first.sweep(lr_study).rows}
    # interrupt the second study after its first run ends (what Ctrl+C does)
    cancel = threading.Event()
    one_by_one = Reproduction(tmp_path, studies=small_studies(), stacked=False, figures=False)
    for _, event in one_by_one.run_study(one_by_one.studies[1], tiny_datasets, cancel):
        if isinstance(event, RunFinished):
            cancel.set()
    assert not one_by_one.state.studies["convergence"].done

    again = Reproduction(tmp_path, studies=small_studies(), figures=False)
    assert again.pending_runs(again.studies[0]) == 0
    assert again.pending_runs(again.studies[1]) == 1
    assert {r.session for r in again.sweep(again.studies[0]).rows} == done_ids
    trained = []
    for study in again.studies:
        trained += [i for i, e in again.run_study(study, tiny_datasets) if isinstance(e, RunFinished)]
    assert len(trained) == 1 + 3 + 1  # the rest of convergence, architectures, grads
    assert all(s.done for s in again.state.studies.values())
    sessions = list((tmp_path / "sessions" / convergence.name).glob("*.json"))
    assert len(sessions) == 2

    report = again.write_report().read_text()
    assert "| lr | reference (%) | fmlab final (%) | difference | fmlab best (%) |" in report
    assert (
        "| lr | reference (%) | fmlab final (%) | difference | fmlab best (%) | converged epoch |" in report
    )
    assert "| structure | reference (%) | fmlab final (%) | difference | fmlab best (%) |" in report
    assert "| structure | fmlab | reference | difference |" in report  # the parameters
    assert "(784 + 1) x 32 = 25,120" in report  # the per-layer parameter calculation
    assert "| grads |" in report and "wall time" in report and "torch" in report
    assert report.count("### Observations") == 4 and report.count("### Run analysis") == 3
    assert "the first 320 of 512 training images" in report  # the gradient study's part of the data
    assert "![lr: loss, accuracy and gradients](figures/lr.png)" in report


def test_figures_are_valid_pngs(tiny_datasets, tmp_path):
    studies = small_studies()
    repro = Reproduction(tmp_path, studies=[studies[0], studies[3]])
    for study in repro.studies:
        list(repro.run_study(study, tiny_datasets))
    for name in ("lr.png", "lr-loss.png", "lr-accuracy.png", "grads.png"):
        assert is_png(tmp_path / "figures" / name), name
    runs = list((tmp_path / "figures" / "runs").glob("*.png"))
    assert len(runs) == 3 and all(is_png(p) for p in runs)
    assert not is_png(repro.write_report())


def test_gradient_numbers(tiny_datasets, tmp_path):
    repro = Reproduction(tmp_path, studies=small_studies()[3:])
    list(repro.run_study(repro.studies[0], tiny_datasets))
    records = records_of([r for r in repro.sweep(repro.studies[0]).rows])
    summary = grad_summary(records[0], steps=5)
    assert summary["steps"] == 5 and summary["min"] <= summary["first"] <= summary["max"]
    table = grad_table(records, "markdown", steps=5).splitlines()
    assert (
        table[0] == "| step | loss | sum of tensor means (notebook) | mean over all parameters | grad norm |"
    )
    assert len(table) == 2 + 5


def test_quick_reproduce_command_writes_the_report_and_resumes(tiny_data_dir, tmp_path, monkeypatch):
    import fmlab.trainer.studies.reproduce

    # the real quick plan on a small net; figures are checked above
    monkeypatch.setattr(
        fmlab.trainer.studies.reproduce, "plan_studies", lambda quick, threshold: small_studies()
    )
    monkeypatch.setattr(fmlab.trainer.studies.reproduce.Reproduction, "_figures", lambda self, study: None)
    out = tmp_path / "out"
    args = ["reproduce", "--quick", "--out", str(out), "--data-dir", str(tiny_data_dir), "-q"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    report = (out / "REPORT.md").read_text()
    assert "Quick mode" in report and "Not finished" not in report
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0 and again.output.count("already done") == 4


def test_a_study_whose_plan_grows_keeps_its_finished_runs(tiny_datasets, tmp_path):
    """A run added to a study (lr 1 in the convergence table, say) is the only
    one trained again: runs whose settings did not change are kept."""
    first = Reproduction(tmp_path, studies=small_studies()[:1], figures=False)
    list(first.run_study(first.studies[0], tiny_datasets))
    kept = {r.config: r.session for r in first.sweep(first.studies[0]).rows}
    # as a record written elsewhere by fmlab 0.1 reads: no session per run, the rows' paths on that machine
    record = tmp_path / "sweeps" / "lr.json"
    document = json.loads(record.read_text())
    for run in document["runs"]:
        del run["session"]
        run["result"]["path"] = "/elsewhere/" + run["result"]["session"] + ".json"
        del run["result"]["best_epoch"]
    record.write_text(json.dumps(document))

    grown = small_studies()[:1]
    extra = parse_run_config(arch=SMALL, lr=0.5, epochs=2)
    grown[0] = Study("lr", "learning rates", "lr", grown[0].configs + (extra,), "note")
    again = Reproduction(tmp_path, studies=grown, figures=False)
    assert again.pending_runs(again.studies[0]) == 1
    ended = [i for i, e in again.run_study(again.studies[0], tiny_datasets) if isinstance(e, RunFinished)]
    assert ended == [3]
    rows = again.sweep(again.studies[0]).rows
    assert {r.config: r.session for r in rows[:3]} == kept and rows[3].status == "completed"
    assert len(list((tmp_path / "sessions" / "lr").glob("*.json"))) == 4
    finished = again.finished(again.studies[0])  # found in the study's folder, rows taken afresh
    assert all(record is not None for _, record in finished) and all(row.best_epoch for row, _ in finished)
    assert "### Observations" in again.write_report().read_text()


def test_the_report_says_where_each_study_was_trained(tiny_datasets, tmp_path):
    repro = Reproduction(tmp_path, studies=[small_studies()[0], small_studies()[3]], figures=False)
    for study in repro.studies:
        list(repro.run_study(study, tiny_datasets))
    # one lr run as if it had been trained elsewhere
    path = next((tmp_path / "sessions" / "lr").glob("*.json"))
    document = json.loads(path.read_text())
    document["environment"].update(device="cuda", device_name="NVIDIA H200", torch="2.11.0+cu130")
    path.write_text(layout(document))
    report = repro.write_report().read_text()
    lr_line = next(line for line in report.splitlines() if line.startswith("| lr |"))
    assert "cuda (NVIDIA H200) (1 run)" in lr_line and "(2 runs)" in lr_line
    assert "2.11.0+cu130 (1 run)" in lr_line
    grads_line = next(line for line in report.splitlines() if line.startswith("| grads |"))
    assert "the first 320 of 512 training images" in grads_line and "cuda" not in grads_line


def test_a_reproduction_folder_opens_as_it_was_made_and_sweeps_list(tiny_datasets, tmp_path):
    quick = Reproduction(tmp_path / "q", quick=True, studies=small_studies()[:1], figures=False)
    list(quick.run_study(quick.studies[0], tiny_datasets))
    assert Reproduction.open(tmp_path / "q").quick is True
    with pytest.raises(SweepError, match="not a reproduction folder"):
        Reproduction.open(tmp_path / "nothing")
    records, problems = list_sweeps(tmp_path / "q")  # its sweeps/ beside sessions/
    assert [r.preset for r in records] == ["lr"] and problems == []
    (tmp_path / "q" / "sweeps" / "broken.json").write_text("{")
    records, problems = list_sweeps(tmp_path / "q")
    assert len(records) == 1 and len(problems) == 1 and "broken.json" in problems[0]
