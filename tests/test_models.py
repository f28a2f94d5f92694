import pytest

from fmlab.trainer.config import ARCH_PRESETS, ModelSpec, parse_widths
from fmlab.trainer.models import build_mlp, summarize


@pytest.mark.parametrize("name, total", [("base", 337_674), ("deeper", 2_977_546), ("wider", 2_923_530)])
def test_preset_parameter_counts(name, total):
    spec = ModelSpec(ARCH_PRESETS[name])
    summary = summarize(spec)
    assert summary.total_params == total == spec.num_params
    assert sum(p.numel() for p in build_mlp(spec, 0).parameters()) == total


@pytest.mark.parametrize("widths", ["128,64", "1", "300,20,7"])
def test_summary_agrees_with_torch_per_layer(widths):
    spec = ModelSpec(parse_widths(widths))
    model = build_mlp(spec, 0)
    linear = [layer for layer in summarize(spec).layers if layer.kind == "Linear"]
    torch_linear = [m for m in model if type(m).__name__ == "Linear"]
    assert [layer.params for layer in linear] == [
        sum(p.numel() for p in m.parameters()) for m in torch_linear
    ]


def test_formula_text_and_size():
    summary = summarize(ModelSpec(ARCH_PRESETS["base"]))
    assert summary.layers[0].formula == "(784 + 1) x 256 = 200,960"
    assert summary.layers[0].output_shape == "(batch, 256)"
    assert [layer.name for layer in summary.layers] == ["fc1", "relu1", "fc2", "relu2", "fc3"]
    assert summary.size_mb == pytest.approx(337_674 * 4 / 1e6)


def test_same_seed_same_weights_and_global_rng_untouched():
    import torch

    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    a = build_mlp(ModelSpec((16,)), 7)
    assert torch.rand(1).item() == expected_next.item()
    b = build_mlp(ModelSpec((16,)), 7)
    c = build_mlp(ModelSpec((16,)), 8)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a[1].weight, c[1].weight)
