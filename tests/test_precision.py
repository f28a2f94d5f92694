"""--precision bf16: bf16 matrix products with fp32 weights, for MLPs; fp32
session files stay as they were."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from fmlab.trainer.fields import config_json, config_of_json, parse_run_config
from fmlab.trainer.sessions.decode import load
from fmlab.trainer.training.checkpoint import config_digest
from fmlab.tui.cli import app


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_bf16_trains_from_the_cli_and_the_session_says_so(tiny_data_dir, tmp_path):
    result = invoke("train", "--epochs", 2, "--precision", "bf16", "--json", "--data-dir", tiny_data_dir,
                    "--sessions-dir", tmp_path)  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["config"]["precision"] == "bf16"
    assert summary["results"]["final_test_acc"] > 80
    (path,) = tmp_path.glob("*.json")
    assert load(path).config.precision == "bf16"
    shown = invoke("sessions", "show", "latest", "--sessions-dir", tmp_path)
    assert "bf16" in shown.stdout


def test_a_bf16_sweep_stacks_its_runs(tiny_data_dir, tmp_path):
    result = invoke("sweep", "--lr", "0.1,0.01", "--epochs", 1, "--precision", "bf16", "--format", "json",
                    "--data-dir", tiny_data_dir, "--sessions-dir", tmp_path)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert [load(p).config.precision for p in tmp_path.glob("*.json")] == ["bf16", "bf16"]


def test_other_networks_refuse_bf16_in_one_line(tiny_data_dir, tmp_path):
    result = invoke("train", "--arch", "cnn", "--precision", "bf16", "--sessions-dir", tmp_path)
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "Error: --precision: bf16 applies to MLPs (widths or a preset like base); other networks train in fp32"
    ]
    bad = invoke("train", "--precision", "fp16", "--sessions-dir", tmp_path)
    assert bad.exit_code == 2 and "--precision" in bad.output


def test_fp32_files_and_their_checkpoint_digests_are_unchanged():
    fp32 = parse_run_config(lr=0.1)
    data = config_json(fp32)
    assert "precision" not in data  # written as before the field existed
    assert config_of_json(data).precision == "fp32"
    # the digest a checkpoint of this config was saved with before bf16 existed
    assert config_digest(fp32) == "1942eb48b8b0227f"  # (computed at commit bc6abfe)
    bf16 = parse_run_config(lr=0.1, precision="bf16")
    assert config_json(bf16)["precision"] == "bf16" and config_digest(bf16) != config_digest(fp32)
