"""Sweep grids, presets, result tables, the sweep record and the command."""

from __future__ import annotations

import csv
import io
import json
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fmlab.trainer.config import ARCH_PRESETS, ConfigError
from fmlab.trainer.events import EpochMetrics, RunFinished
from fmlab.trainer.fields import parse_run_config
from fmlab.trainer.sessions import load
from fmlab.trainer.studies.grid import PRESETS, expand, parse_grid
from fmlab.trainer.studies.sweep import Sweep, load_sweep
from fmlab.trainer.studies.tables import (
    COLUMNS,
    RunRow,
    TableWriter,
    accuracy_cell,
    table_columns,
    table_text,
    varying_axes,
)
from fmlab.trainer.training.plan import MAX_STACK, plan_stacks, stack_key
from fmlab.tui.cli import app

runner = CliRunner()
SMALL = "48,32"


def row(lr=0.1, arch="base", acc=87.0, status="completed", converged=None):
    config = parse_run_config(arch=arch, lr=lr)
    return RunRow(config, "id", "path", status, acc, acc, converged, 10, 1.0)


# ----------------------------------------------------------------- grid


def test_grid_expands_every_combination_in_a_fixed_order():
    grid = parse_grid(lr="1,0.1,0.01", arch="base,wider", batch_size="32,64", seed="0,1", epochs=3)
    configs = expand(grid)
    assert len(configs) == grid.size == 3 * 2 * 2 * 2
    assert [c.optimizer.lr for c in configs[:3]] == [1.0, 0.1, 0.01]  # lr innermost
    assert (
        configs[0].model.hidden == ARCH_PRESETS["base"] and configs[-1].model.hidden == ARCH_PRESETS["wider"]
    )
    assert {(c.batch_size, c.seed) for c in configs} == {(32, 0), (32, 1), (64, 0), (64, 1)}
    assert all(c.epochs == 3 and c.optimizer.name == "sgd" for c in configs)
    assert len({c for c in configs}) == len(configs)


def test_architectures_by_name_or_by_widths():
    def archs(text):
        return [spec.hidden for spec in parse_grid(arch=text).axes["arch"]]

    assert archs("base,deeper") == [ARCH_PRESETS["base"], ARCH_PRESETS["deeper"]]
    assert archs("128,64") == [(128, 64)]
    assert archs("base;128,64") == [ARCH_PRESETS["base"], (128, 64)]
    assert archs("32/16,8") == [(32,), (16, 8)]


@pytest.mark.parametrize(
    "options, field",
    [
        ({"lr": "0.1,abc"}, "lr"),
        ({"lr": "0.1,,0.2"}, "lr"),
        ({"lr": "0.1,0.1"}, "lr"),
        ({"arch": "base,huge"}, "arch"),
        ({"batch_size": "64,0"}, "batch-size"),
        ({"optimizer": "sgd,lbfgs"}, "optimizer"),
        ({"seed": "-1"}, "seed"),
        ({"epochs": "0"}, "epochs"),
        ({"optimizer": "sgd,adam", "momentum": "0.9"}, "momentum"),
    ],
)
def test_bad_grid_values_name_their_option(options, field):
    with pytest.raises(ConfigError) as caught:
        parse_grid(**options)
    assert caught.value.field == field


def test_presets_ask_the_reference_questions():
    lr = expand(parse_grid(**PRESETS["lr"].options))
    assert [c.optimizer.lr for c in lr] == [1, 0.1, 0.01, 0.001] and {c.epochs for c in lr} == {10}
    conv = expand(parse_grid(**PRESETS["convergence"].options))
    # lr 1 too, as the reference's convergence table has it
    assert [c.optimizer.lr for c in conv] == [1, 0.1, 0.01, 0.001] and {c.epochs for c in conv} == {100}
    archs = expand(parse_grid(**PRESETS["architectures"].options))
    assert [c.model.name for c in archs] == ["base", "deeper", "wider"]
    assert {(c.optimizer.lr, c.epochs, c.convergence.stop) for c in archs} == {(0.01, 200, False)}


def test_runs_that_share_a_shape_are_grouped():
    configs = expand(parse_grid(lr="0.1,0.01", arch="base,wider"))
    configs.append(parse_run_config(optimizer="adam", lr=0.001))
    assert plan_stacks([stack_key(c) for c in configs]) == [[0, 1], [2, 3], [4]]
    many = expand(parse_grid(lr=",".join(str(0.001 * (i + 1)) for i in range(MAX_STACK + 2))))
    assert [len(g) for g in plan_stacks([stack_key(c) for c in many])] == [MAX_STACK, 2]


# ----------------------------------------------------------------- tables


def test_table_columns_fit_the_question():
    assert table_columns("lr") == ["lr", "accuracy"]
    assert table_columns("convergence") == ["lr", "accuracy", "epoch"]
    assert table_columns("architectures") == ["structure", "accuracy", "params"]
    configs = expand(parse_grid(lr="0.1,0.01", seed="0,1"))
    assert table_columns("grid", configs) == ["lr", "seed", "accuracy", "epoch", "status"]


def test_varying_axes_name_what_differs_between_runs():
    assert varying_axes(expand(parse_grid(lr="0.1,0.01", arch="base,wider"))) == ["arch", "lr"]
    assert varying_axes(expand(parse_grid(lr="0.1"))) == []


def test_a_pending_row_reads_its_config_and_has_no_results():
    config = parse_run_config(arch="base", lr=0.01)
    pending = RunRow.pending(config)
    assert [COLUMNS[c].text(pending) for c in ("lr", "structure", "params", "epoch")] == [
        "0.01",
        "base (256,512)",
        "337,674",
        "-",
    ]
    assert pending.status == "pending" and pending.final_test_acc is None
    assert accuracy_cell(pending) == "pending"


def test_markdown_table():
    rows = [row(1.0, acc=18.2), row(0.1, acc=87.03), row(0.5, acc=None, status="diverged"),
            row(0.2, acc=80.0, status="stopped")]  # fmt: skip
    text = table_text(["lr", "accuracy"], rows, "markdown")
    assert text.splitlines() == [
        "| lr | accuracy (%) |",
        "| --- | --- |",
        "| 1 | 18.20 (did not learn) |",
        "| 0.1 | 87.03 |",
        "| 0.5 | diverged |",
        "| 0.2 | 80.00 (stopped) |",
    ]
    archs = table_text(["structure", "accuracy", "params"], [row(0.01, "wider", 89.1)], "markdown")
    assert "| wider (1024,2048) | 89.10 | 2,923,530 |" in archs


def test_csv_and_json_tables_carry_plain_values():
    rows = [row(0.1, acc=87.0, converged=12), row(0.001, acc=None, status="diverged")]
    parsed = list(csv.DictReader(io.StringIO(table_text(["lr", "accuracy", "epoch"], rows, "csv"))))
    assert parsed == [
        {"lr": "0.1", "accuracy": "87.0", "converged_epoch": "12"},
        {"lr": "0.001", "accuracy": "", "converged_epoch": ""},
    ]
    items = json.loads(table_text(["structure", "accuracy", "params"], rows, "json"))
    assert items[0] == {"structure": "base (256,512)", "accuracy": 87.0, "parameters": 337674,
                        "status": "completed", "note": "", "session": "id"}  # fmt: skip
    assert items[1]["accuracy"] is None and items[1]["status"] == "diverged"


def test_rows_stream_as_they_come():
    buffer = io.StringIO()
    writer = TableWriter(["lr", "accuracy"], "markdown", buffer)
    writer.header()
    assert buffer.getvalue().count("\n") == 2
    writer.row(row())
    assert buffer.getvalue().splitlines()[-1] == "| 0.1 | 87.00 |"


# ----------------------------------------------------------------- running


def test_sweep_saves_sessions_and_a_record(tiny_datasets, sessions_dir):
    configs = expand(parse_grid(lr="0.1,0.02", arch=SMALL, epochs=2, device="cpu"))
    sweep = Sweep.new(configs, sessions_dir, table="lr", preset="lr")
    finished = [i for i, e in sweep.run(tiny_datasets) if isinstance(e, RunFinished)]
    assert sorted(finished) == [0, 1]
    record = load_sweep(sweep.record.path)
    assert record.path.parent == sessions_dir / "sweeps" and record.status == "completed"
    assert record.configs == configs and [r.config for r in record.rows] == configs
    assert all(r.status == "completed" and r.final_test_acc is not None for r in record.rows)
    assert {p.name for p in sessions_dir.glob("*.json")} == {f"{r.session}.json" for r in record.rows}
    assert record.sessions == [r.session for r in record.rows]
    assert not list(sessions_dir.glob("*.state.pt")) and not list(sessions_dir.glob("*.lock"))


def test_a_stopped_sweep_resumes_each_run_from_its_last_epoch(tiny_datasets, sessions_dir):
    configs = expand(parse_grid(lr="0.1,0.02,0.5", arch=SMALL, epochs=4, device="cpu"))
    configs[2] = parse_run_config(arch="32", lr=0.5, epochs=4, device="cpu")  # a stack of its own
    whole = Sweep.new(configs, sessions_dir / "whole")
    list(whole.run(tiny_datasets))
    cancel = threading.Event()
    stopped = Sweep.new(configs, sessions_dir)
    for index, event in stopped.run(tiny_datasets, cancel):
        if isinstance(event, EpochMetrics) and index == 1 and event.epoch == 2:
            cancel.set()  # the first stack stops after epoch 2; the second never starts
    assert load_sweep(stopped.record.path).status == "stopped"
    assert [r.status if r else None for r in stopped.rows] == ["stopped", "stopped", None]

    again = Sweep.resume(stopped.record.path, sessions_dir)
    first_epochs = {}
    for index, event in again.run(tiny_datasets):
        if isinstance(event, EpochMetrics):
            first_epochs.setdefault(index, event.epoch)
    assert first_epochs == {0: 3, 1: 3, 2: 1}  # nothing trained twice
    assert load_sweep(again.record.path).status == "completed"
    for mine, straight in zip(again.rows, whole.rows):  # the same numbers as without the stop
        record = load(Path(mine.path))
        assert [e.epoch for e in record.epochs] == [1, 2, 3, 4]
        assert (mine.status, mine.final_test_acc) == (straight.status, straight.final_test_acc)
        assert [e.test_loss for e in record.epochs] == [e.test_loss for e in load(Path(straight.path)).epochs]
    assert again.record.sessions[:2] == stopped.record.sessions[:2]  # each run kept its session


def test_sweep_command_prints_the_table(tiny_data_dir, tmp_path):
    out = tmp_path / "table.csv"
    result = runner.invoke(
        app,
        ["sweep", "--lr", "0.1,1e6", "--arch", SMALL, "--epochs", "2", "--data-dir", str(tiny_data_dir),
         "--sessions-dir", str(tmp_path / "s"), "--format", "csv", "--out", str(out), "--quiet"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "lr,accuracy,converged_epoch,status" in result.stdout
    assert "1000000.0,,,diverged" in result.stdout
    assert out.read_text().splitlines()[0] == "lr,accuracy,converged_epoch,status"
    assert len(list((tmp_path / "s" / "sweeps").glob("*.json"))) == 1


@pytest.mark.parametrize(
    "args, option",
    [
        (["--preset", "nope"], "--preset"),
        (["--lr", "0.1,x"], "--lr"),
        (["--arch", "base,big"], "--arch"),
        (["--format", "xml"], "--format"),
        (["--epochs", "0"], "--epochs"),
        (["--seed", "1,1"], "--seed"),
    ],
)
def test_sweep_bad_values_exit_2_with_one_line(args, option, tiny_data_dir, tmp_path):
    result = runner.invoke(
        app, ["sweep", *args, "--data-dir", str(tiny_data_dir), "--sessions-dir", str(tmp_path)]
    )
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: {option}:")


def test_grads_command_prints_every_step(tiny_data_dir, tmp_path):
    figure = tmp_path / "grads.png"
    result = runner.invoke(
        app,
        ["grads", "--arch", SMALL, "--steps", "5", "--lr", "0.1,0.01", "--format", "csv", "--figure", str(figure),
         "--data-dir", str(tiny_data_dir), "--sessions-dir", str(tmp_path / "s"), "--quiet"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if line and line[0].isdigit()]
    assert [line.split(",")[0] for line in lines] == ["1", "2", "3", "4", "5"]
    assert (
        "step,sum of tensor means (notebook) (lr 0.1),mean over all parameters (lr 0.1),"
        "sum of tensor means (notebook) (lr 0.01),mean over all parameters (lr 0.01)"
    ) in result.stdout
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    "args, option",
    [
        (["grads", "--steps", "0"], "--steps"),
        (["grads", "--steps", "9"], "--steps"),  # 9 x 64 is more than the 512 tiny images
        (["grads", "--arch", "base,wider"], "--arch"),
        (["grads", "--figure", "g.jpg"], "--figure"),
        (["reproduce", "--out", "x", "--threshold", "-1"], "--threshold"),
    ],
)
def test_grads_and_reproduce_bad_values_exit_2_with_one_line(
    args, option, tiny_data_dir, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, [*args, "--data-dir", str(tiny_data_dir)])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: {option}:")


def test_grads_uses_the_notebook_lr_and_shows_both_definitions(tiny_data_dir, tmp_path):
    result = runner.invoke(
        app,
        ["grads", "--arch", SMALL, "--steps", "5", "--data-dir", str(tiny_data_dir),
         "--sessions-dir", str(tmp_path / "s"), "--quiet"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "| lr 0.01 | sum of tensor means (notebook) | 5 |" in out
    assert "| lr 0.01 | mean over all parameters | 5 |" in out
    assert "Two definitions of the mean gradient: the notebook's adds each parameter tensor's own mean" in out
    assert "| step | loss | sum of tensor means (notebook) | mean over all parameters | grad norm |" in out
    assert len([line for line in out.splitlines() if line[:4] in {f"| {n} " for n in range(1, 6)}]) == 5
