"""A user's own nn.Module: loaded from a file named on the command line,
trained end to end, and replayed, compared and exported after the file is
gone. A module named by a session file is never run."""

from __future__ import annotations

import threading

import pytest
from typer.testing import CliRunner

from fmlab.trainer.config import ConfigError
from fmlab.trainer.events import EpochMetrics, RunFinished
from fmlab.trainer.fields import config_from_dict, config_to_dict, parse_run_config
from fmlab.trainer.jobs import Job, JobError, JobService, resume_job
from fmlab.trainer.replay import timeline
from fmlab.trainer.sessions import load
from fmlab.trainer.user_module import build_user_module, load_module_ref
from fmlab.tui.cli import app

MODULE = """
import pathlib
import torch
from torch import nn

class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2))
        self.head = nn.Linear(4 * 13 * 13, 10)
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, x):
        return self.head(self.features(x).flatten(1)) * self.scale

def build():
    return TinyNet()

def broken():
    raise ValueError("no weights today")

def wrong_output():
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 5))

def not_a_module():
    return 42

def marks():
    pathlib.Path(__file__).with_suffix(".ran").write_text("ran")
    return TinyNet()
"""


@pytest.fixture
def module_file(tmp_path):
    path = tmp_path / "my_net.py"
    path.write_text(MODULE)
    return path


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_loading_records_the_file_and_counts_every_parameter(module_file):
    ref = load_module_ref(f"{module_file}:build")
    model = build_user_module(ref, seed=0)
    assert ref.params == sum(p.numel() for p in model.parameters()) == ref.summary.total_params
    rows = {row.name: row for row in ref.summary.layers}
    assert rows["features.0"].formula == "(1 x 3 x 3 + 1) x 4 = 40"
    assert rows["features.0"].shape == (4, 26, 26)
    assert rows["features.1"].buffers == 8 and rows["head"].formula == f"({4 * 13 * 13} + 1) x 10 = 6,770"
    assert rows["(other)"].params == 1  # the scale, used outside the leaves
    assert len(ref.sha256) == 64 and "TinyNet" in ref.text


@pytest.mark.parametrize(
    "spec, message",
    [
        ("missing.py:build", "no file"),
        ("{dir}/my_net.py:nothing", "has no function nothing"),
        ("{dir}/my_net.py:broken", "broken raised ValueError: no weights today"),
        ("{dir}/my_net.py:wrong_output", "gives [2, 5] for 2 images; it must give [batch, 10]"),
        ("{dir}/my_net.py:not_a_module", "not_a_module() returned int, not a torch nn.Module"),
        ("{dir}/my_net.py", "is not FILE.py:FACTORY"),
    ],
)
def test_a_bad_module_is_one_line_and_exit_2(module_file, spec, message):
    spec = spec.format(dir=module_file.parent)
    result = invoke("train", "--model", spec, "--epochs", 1)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: --model:") and message in lines[0], lines
    result = invoke("params", "--arch", spec)
    assert result.exit_code == 2 and message in result.output


def test_a_module_trains_end_to_end_and_its_session_outlives_the_file(
    module_file, tiny_data_dir, sessions_dir, tmp_path
):
    result = invoke("train", "--model", f"{module_file}:build", "--epochs", 2, "--lr", 0.05,
                    "--data-dir", tiny_data_dir, "--sessions-dir", sessions_dir, "--quiet")  # fmt: skip
    assert result.exit_code == 0, result.output
    (path,) = sessions_dir.glob("*.json")
    module_file.unlink()
    record = load(path)
    assert record.status == "completed" and len(record.epochs) == 2
    assert record.config.model.module.name == f"{module_file}:build"
    assert record.model.total_params == record.config.model.num_params
    assert any(row.kind == "Conv2d" for row in record.model.layers)
    events = [event for _, event in timeline(record)]
    assert isinstance(events[-1], RunFinished) and sum(isinstance(e, EpochMetrics) for e in events) == 2
    shown = invoke("sessions", "show", path.stem, "--sessions-dir", sessions_dir)
    assert shown.exit_code == 0 and "my_net.py:build" in shown.output
    out = tmp_path / "curves.png"
    exported = invoke("export", path.stem, "--out", out, "--sessions-dir", sessions_dir)
    assert exported.exit_code == 0 and out.read_bytes()[:4] == b"\x89PNG"


def test_a_module_named_by_a_file_is_never_run(module_file, tiny_datasets, sessions_dir):
    spec = parse_run_config(arch=f"{module_file}:marks", epochs=3, lr=0.05)
    marker = module_file.with_suffix(".ran")
    marker.unlink()  # loading it just now ran it
    service = JobService(sessions_dir, tiny_datasets)
    cancel = threading.Event()
    for _, event in service.run([Job(spec)], cancel):
        if isinstance(event, EpochMetrics):
            cancel.set()
    marker.unlink()  # training built it: named by us, in this process
    path = service.session_path(0)
    recorded = load(path).config
    assert recorded == config_from_dict(config_to_dict(spec))
    with pytest.raises(ConfigError, match="fmlab runs a module only when you name it"):
        build_user_module(recorded.model.module, seed=0)
    with pytest.raises(JobError, match="resume with fmlab train --resume"):
        resume_job(path)
    assert not marker.exists()
    job = resume_job(path, spec.model)  # named again: it runs, and goes on
    results = [e for _, e in JobService(sessions_dir, tiny_datasets).run([job]) if isinstance(e, RunFinished)]
    assert results[0].results.status == "completed" and results[0].results.epochs_done == 3


def test_a_sweep_takes_a_module_path_with_its_slashes(module_file):
    from fmlab.trainer.studies.grid import expand, parse_grid

    configs = expand(parse_grid(arch=f"{module_file}:build", lr="0.1,0.01"))
    assert [c.model.module.name for c in configs] == [f"{module_file}:build"] * 2
