"""The fields table: the one declaration of a run's fields, and everything
that derives from it agreeing with it (validation, JSON, grids, the CLI)."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from fmlab.trainer.config import ConfigError, ConfigErrors, RunConfig
from fmlab.trainer.fields import (
    AXES,
    RUN_FIELDS,
    YesNo,
    build_config,
    config_from_dict,
    config_to_dict,
    field_named,
    parse_run_config,
)
from fmlab.trainer.studies.grid import expand, grid_to_dict, parse_grid
from fmlab.tui.cli import app

runner = CliRunner()


def test_the_table_covers_the_config_and_its_defaults_are_the_configs():
    config = RunConfig()
    assert build_config({f.name: f.read(config) for f in RUN_FIELDS}) == config
    assert build_config({f.name: f.default for f in RUN_FIELDS}) == parse_run_config() == config
    assert len({f.attr for f in RUN_FIELDS}) == len(RUN_FIELDS)
    assert all(field_named(f.option) is f and field_named(f.name) is f for f in RUN_FIELDS)
    # each default reads back as itself
    assert all(f.parse(f.text(f.default)) == f.default for f in RUN_FIELDS if not isinstance(f.parser, YesNo))


def test_the_sweep_axes_today():
    assert [f.name for f in AXES] == ["arch", "lr", "batch_size", "optimizer", "seed"]
    assert sorted(f.axis.nesting for f in AXES) == list(range(len(AXES)))


def test_every_bad_field_is_reported_at_once():
    with pytest.raises(ConfigErrors) as caught:
        parse_run_config(lr="x", epochs="0", batch_size="abc", optimizer="adam", momentum="0.9")
    error = caught.value
    assert isinstance(error, ConfigError)  # callers that catch ConfigError still do
    assert list(error.errors) == ["lr", "epochs", "batch-size", "momentum"]  # the table's order
    assert (error.field, error.message) == ("lr", "'x' is not a number")
    assert error.errors["momentum"] == "momentum applies to sgd only"
    assert "\n" not in str(error) and str(error).startswith("lr: ")


def test_one_bad_field_is_a_plain_config_error():
    with pytest.raises(ConfigError) as caught:
        parse_run_config(epochs="0")
    assert type(caught.value) is ConfigError and caught.value.errors == {"epochs": caught.value.message}


def test_a_cross_field_rule_waits_for_its_fields():
    # optimizer is refused, so momentum's rule has nothing to check against
    with pytest.raises(ConfigError) as caught:
        parse_run_config(optimizer="rmsprop", momentum="0.9")
    assert caught.value.errors.keys() == {"optimizer"}


def test_an_unknown_field_is_a_type_error_like_an_unknown_keyword():
    with pytest.raises(TypeError, match="colour"):
        parse_run_config(colour="red")
    with pytest.raises(TypeError):
        parse_grid(colour="red")


def test_the_json_keys_stay_those_of_the_session_files():
    data = config_to_dict(parse_run_config(arch="32,16", lr="0.05"))
    assert set(data) == {"arch", "hidden", "layers", "module", "lr", "optimizer", "momentum", "epochs", "batch_size", "seed",
                         "shuffle", "device", "threshold", "patience", "stop_on_converge", "full_steps",
                         "step_every"}  # fmt: skip
    assert (data["arch"], data["hidden"]) == ("32,16", [32, 16])
    assert (data["layers"], data["module"]) == (None, None)
    old_order = {key: data[key] for key in sorted(data)}  # files written before the table
    assert config_from_dict(old_order) == parse_run_config(arch="32,16", lr="0.05")
    before_stacks = {key: value for key, value in data.items() if key not in ("layers", "module")}
    assert config_from_dict(before_stacks) == parse_run_config(arch="32,16", lr="0.05")


def test_a_grid_has_every_axis_and_reports_every_bad_option():
    grid = parse_grid(lr="0.1,0.01", seed="0,1,2")
    assert list(grid.axes) == [f.name for f in AXES]
    assert set(grid.fixed) == {f.name for f in RUN_FIELDS if not f.axis}
    assert grid.size == 6 == len(expand(grid))
    assert list(grid_to_dict(grid)) == [f.name for f in RUN_FIELDS]
    with pytest.raises(ConfigErrors) as caught:
        parse_grid(lr="0.1,x", seed="1,1", epochs="0", full_steps="-1")
    assert list(caught.value.errors) == ["lr", "epochs", "seed", "full-steps"]


def test_a_rule_holds_for_every_combination_of_a_grid():
    with pytest.raises(ConfigError, match="sgd only"):
        parse_grid(optimizer="sgd,adam", momentum="0.9")
    assert {c.optimizer.momentum for c in expand(parse_grid(optimizer="sgd", momentum="0.9"))} == {0.9}


# ----------------------------------------------------------------- the CLI


def command_options(name: str) -> dict[str, object]:
    """Every option of a command by its first flag."""
    command = typer.main.get_command(app).commands[name]
    return {param.opts[0]: param for param in command.params}


def test_every_field_is_a_train_option_and_a_sweep_option():
    train, sweep = command_options("train"), command_options("sweep")
    for field in RUN_FIELDS:
        assert field.flag in train and field.flag in sweep, field.name
        assert train[field.flag].name == sweep[field.flag].name == field.name
        assert train[field.flag].help == field.help
        if isinstance(field.parser, YesNo):
            assert train[field.flag].secondary_opts == [f"--no-{field.option}"]
        else:
            assert train[field.flag].default == field.text(field.default)
    for field in AXES:  # a sweep takes a list for each axis
        assert sweep[field.flag].help == field.axis.help and sweep[field.flag].metavar == field.axis.metavar
    for name in ("--data-dir", "--sessions-dir", "--json", "--quiet", "--resume"):
        assert name in train
    for name in ("--preset", "--stack", "--resume", "--format", "--out", "--figures", "--data-dir"):
        assert name in sweep


def test_train_help_lists_every_field():
    result = runner.invoke(app, ["train", "--help"])
    assert result.exit_code == 0
    for field in RUN_FIELDS:
        assert field.flag in result.output


@pytest.mark.parametrize("command", ["train", "sweep"])
def test_several_bad_options_exit_2_with_one_line_naming_each(command, tiny_data_dir, tmp_path):
    result = runner.invoke(
        app,
        [command, "--lr", "x", "--epochs", "0", "--optimizer", "adam", "--momentum", "0.9",
         "--data-dir", str(tiny_data_dir), "--sessions-dir", str(tmp_path / "s")],
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: --lr: 'x' is not a number; --epochs: ")
    assert "; --momentum: momentum applies to sgd only" in lines[0]
    assert "Traceback" not in result.output and not (tmp_path / "s").exists()


def test_a_sweep_option_given_wins_over_its_preset(tiny_data_dir, tmp_path):
    # --epochs 0 is refused although the preset sets 10: the given value is the one checked
    result = runner.invoke(
        app, ["sweep", "--preset", "lr", "--epochs", "0", "--data-dir", str(tiny_data_dir)]
    )
    assert result.exit_code == 2 and result.output.startswith("Error: --epochs:")
