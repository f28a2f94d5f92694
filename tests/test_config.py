import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fmlab.trainer.config import ConfigError, RunConfig, parse_widths
from fmlab.trainer.fields import config_from_dict, config_to_dict, parse_run_config


def test_defaults_are_the_reference_setup():
    config = parse_run_config()
    assert config.model.hidden == (256, 512) and config.model.name == "base"
    assert (config.batch_size, config.optimizer.name, config.shuffle) == (64, "sgd", False)
    assert config == RunConfig()


@pytest.mark.parametrize(
    "field, value, reason",
    [
        ("lr", "abc", "not a number"),
        ("lr", "0", "greater than 0"),
        ("lr", "-1", "greater than 0"),
        ("lr", "nan", "not a finite number"),
        ("lr", "inf", "not a finite number"),
        ("epochs", "0", "out of range"),
        ("epochs", "1.5", "not a whole number"),
        ("batch_size", "0", "out of range"),
        ("arch", "", "not a preset"),
        ("arch", "128,,64", "not a preset"),
        ("arch", "12x", "not a whole number"),
        ("arch", "-4", "at least 1"),
        ("arch", "100000,100000", "GiB"),
        ("optimizer", "rmsprop", "not one of"),
        ("device", "tpu", "not one of"),
        ("momentum", "2", "out of range"),
        ("patience", "0", "out of range"),
    ],
)
def test_bad_values_name_the_field(field, value, reason):
    with pytest.raises(ConfigError) as info:
        parse_run_config(**{field: value})
    assert info.value.field == field.replace("_", "-")
    assert reason in info.value.message


def test_momentum_is_for_sgd_only():
    with pytest.raises(ConfigError, match="sgd only"):
        parse_run_config(optimizer="adam", momentum="0.9")


def test_presets_and_custom_widths():
    assert parse_widths("DEEPER") == (256, 512, 1024, 2048)
    assert parse_widths(" 128, 64 ") == (128, 64)
    assert parse_run_config(arch="1024,2048").model.name == "wider"


def test_dict_round_trip_and_strictness():
    config = parse_run_config(arch="32,16", lr="0.05", optimizer="adam", shuffle=True, seed=9)
    assert config_from_dict(config_to_dict(config)) == config
    data = config_to_dict(config)
    with pytest.raises(ConfigError, match="missing"):
        config_from_dict({k: v for k, v in data.items() if k != "lr"})
    with pytest.raises(ConfigError, match="true or false"):
        config_from_dict({**data, "shuffle": "yes"})
    with pytest.raises(ConfigError):
        config_from_dict({**data, "hidden": [16, True]})


raw_values = st.one_of(
    st.none(), st.booleans(), st.integers(-10**20, 10**20), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12), st.lists(st.integers(-5, 5000), max_size=4),
)  # fmt: skip
fields = st.sampled_from(["arch", "lr", "epochs", "batch_size", "optimizer", "momentum", "seed",
                          "shuffle", "device", "threshold", "patience", "stop_on_converge"])  # fmt: skip


@given(fields, raw_values)
def test_any_value_gives_a_valid_config_or_a_config_error(field, value):
    try:
        config = parse_run_config(**{field: value})
    except ConfigError as exc:
        assert exc.field and exc.message and "\n" not in str(exc)
        return
    assert config.optimizer.lr > 0 and math.isfinite(config.optimizer.lr)
    assert 1 <= config.epochs and 1 <= config.batch_size
    assert config.model.hidden and all(w >= 1 for w in config.model.hidden)
    assert config_from_dict(config_to_dict(config)) == config
