"""Layer stacks: the one-line grammar, its refusals, and the parameter
arithmetic against the built torch modules."""

from __future__ import annotations

import pytest
import torch

from fmlab.trainer.config import STACK_PRESETS, ConfigError, parse_arch
from fmlab.trainer.fields import config_from_dict, config_to_dict, parse_run_config
from fmlab.trainer.layers import StackError, layers_from_json, parse_stack, stack_text, tensor_shapes
from fmlab.trainer.models import build_model, summarize

STACKS = [
    STACK_PRESETS["cnn"],
    "conv(32,3) relu pool(2) conv(64,3) relu pool(2) flatten fc(128) relu fc(10)",
    "conv(8,3,stride=2,pad=1) bn gelu dropout(0.25) avgpool(2) flatten fc(32) tanh fc(10)",
    "conv(4,5) maxpool(3,2) bn relu flatten bn dropout fc(10)",
    "flatten fc(64) gelu fc(10)",
]


@pytest.mark.parametrize("text", STACKS)
def test_the_summary_counts_every_parameter_of_the_built_model(text):
    spec = parse_arch(text)
    model = build_model(spec, seed=0)
    summary = summarize(spec)
    assert summary.total_params == spec.num_params == sum(p.numel() for p in model.parameters())
    statistics = sum(b.numel() for b in model.buffers() if b.is_floating_point())
    assert summary.non_trainable == statistics
    output = model(torch.zeros(3, 1, 28, 28))
    assert output.shape == (3, 10)
    shapes = tensor_shapes(spec.layers)
    assert shapes[0] == [tuple(p.shape) for p in model.parameters()]
    assert shapes[1] == [tuple(b.shape) for b in model.buffers()]


def test_each_layer_shows_its_output_shape_and_formula():
    rows = {
        row.name: row for row in summarize(parse_arch("conv(32,3) relu pool(2) bn flatten fc(10)")).layers
    }
    assert rows["conv1"].formula == "(1 x 3 x 3 + 1) x 32 = 320" and rows["conv1"].shape == (32, 26, 26)
    assert rows["pool1"].shape == (32, 13, 13) and rows["pool1"].params == 0
    assert rows["bn1"].formula.startswith("2 x 32 = 64") and rows["bn1"].buffers == 64
    assert rows["flatten"].shape == (32 * 13 * 13,)
    assert rows["fc1"].formula == f"({32 * 13 * 13} + 1) x 10 = {(32 * 13 * 13 + 1) * 10:,}"
    assert rows["relu1"].formula == "-" and rows["relu1"].params == 0


def test_each_layer_output_shape_matches_torch():
    spec = parse_arch("conv(6,5,stride=2,pad=1) relu avgpool(2) conv(4,2) flatten fc(12) relu fc(10)")
    model = build_model(spec, 0)
    x = torch.zeros(1, 1, 28, 28)
    for module, row in zip(model, summarize(spec).layers):
        x = module(x)
        assert tuple(x.shape[1:]) == row.shape, row.name


def test_text_round_trips_and_a_plain_mlp_stack_takes_the_fast_path():
    layers = parse_stack("Conv(8, 3, pad=1)  RELU pool(2) flatten linear(10)")
    assert stack_text(layers) == "conv(8,3,pad=1) relu maxpool(2) flatten fc(10)"
    assert parse_stack(stack_text(layers)) == layers
    assert parse_arch("flatten fc(256) relu fc(512) relu fc(10)").name == "base"
    assert parse_arch("flatten fc(64) relu fc(10)").kind == "mlp"
    assert parse_arch("cnn").name == "cnn" and parse_arch(STACK_PRESETS["cnn"]).name == "cnn"


def test_a_stack_is_stored_structured_and_read_back_equal():
    config = parse_run_config(arch="conv(8,3) bn relu maxpool(3,2) dropout(0.1) flatten fc(10)", lr="0.05")
    data = config_to_dict(config)
    assert data["layers"][0] == {"layer": "conv", "out": 8, "kernel": 3, "stride": 1, "pad": 0}
    assert data["hidden"] == [] and data["module"] is None
    assert config_from_dict(data) == config


@pytest.mark.parametrize(
    "text, message",
    [
        ("conv(8,3) pool(2) pool(2) pool(2) pool(2) pool(2) flatten fc(10)",
         "layer 6, maxpool(2), gets a 1x1 input, smaller than its 2x2 window"),
        ("conv(8,3) relu fc(10)", "layer 3, fc(10), gets a 8x26x26 input; put flatten before it"),
        ("conv(8,3) sigmoid flatten fc(10)", "layer 2, sigmoid: unknown layer"),
        ("conv(8,x) flatten fc(10)", "layer 1, conv: kernel 'x' is not a whole number"),
        ("conv(8,3,stride=0) flatten fc(10)", "layer 1, conv: stride 0 is out of range"),
        ("conv(8) flatten fc(10)", "layer 1, conv: needs its kernel"),
        ("dropout(1.5) flatten fc(10)", "layer 1, dropout: p 1.5 must be at least 0 and below 1"),
        ("flatten conv(8,3) fc(10)", "layer 2, conv(8,3), gets 784 flat values"),
        ("conv(8,3) flatten fc(20)", "the stack ends with 20 values, not the 10 classes"),
        ("conv(8,3", "unbalanced brackets"),
        ("relu(2) flatten fc(10)", "layer 1, relu: takes no numbers"),
        ("conv(8,3,size=2) flatten fc(10)", "layer 1, conv: no number called 'size'"),
        ("sigmoid", "is not a preset (base, deeper, wider, cnn)"),
    ],
)  # fmt: skip
def test_a_bad_stack_is_refused_with_the_layer_at_fault(text, message):
    with pytest.raises(ConfigError) as caught:
        parse_run_config(arch=text)
    assert caught.value.field == "arch"
    assert message in caught.value.message
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "layers",
    [
        [{"layer": "conv", "out": 8, "kernel": 3, "stride": 1}],  # a number missing
        [{"layer": "fc", "out": True}],
        [{"layer": "exec", "code": "1"}],
        [{"layer": "conv", "out": 8, "kernel": 3, "stride": 1, "pad": 0}],  # never reaches 10 classes
        "conv(8,3)",
    ],
)
def test_a_file_stack_is_checked_like_typed_text(layers):
    with pytest.raises(StackError):
        layers_from_json(layers)


def test_a_sweep_lists_stacks_beside_mlps_and_stacks_only_equal_nets():
    from fmlab.trainer.studies.grid import expand, grid_to_dict, parse_grid
    from fmlab.trainer.training.plan import plan_stacks, stack_key

    grid = parse_grid(arch="cnn;base;conv(4,3) flatten fc(10)", lr="0.1,0.01")
    configs = expand(grid)
    assert [c.model.kind for c in configs] == ["stack", "stack", "mlp", "mlp", "stack", "stack"]
    assert plan_stacks([stack_key(c) for c in configs]) == [[0, 1], [2, 3], [4, 5]]
    assert grid_to_dict(grid)["arch"] == ["cnn", "base", "conv(4,3) flatten fc(10)"]
