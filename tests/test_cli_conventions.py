"""The command line behaves the way people's other tools do: exit statuses of
interrupted runs, --version, shell completion, choices in help, ``latest``,
JSON objects, the session schema, no app without a terminal."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from session_files import make_record, write_record
from typer.testing import CliRunner

from fmlab.trainer.events import EpochMetrics
from fmlab.trainer.sessions import SessionError, load
from fmlab.tui.cli import app
from fmlab.tui.cli.progress import ProgressPrinter

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


def invoke(*args, **kwargs):
    return runner.invoke(app, [str(a) for a in args], prog_name="fmlab", **kwargs)


def signal_after_first_epoch(monkeypatch, signum: int) -> None:
    """The command gets ``signum`` (as from Ctrl+C or kill) once an epoch ends."""
    real = ProgressPrinter.__call__
    sent = []

    def call(self, position, event):
        real(self, position, event)
        if isinstance(event, EpochMetrics) and not sent:
            sent.append(signum)
            os.kill(os.getpid(), signum)

    monkeypatch.setattr(ProgressPrinter, "__call__", call)


# ------------------------------------------------------------- exit statuses


@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_interrupted_train_is_saved_as_stopped_and_exits_128_plus_the_signal(
    monkeypatch, tiny_data_dir, sessions_dir, signum, status
):
    signal_after_first_epoch(monkeypatch, signum)
    result = invoke("train", "--epochs", 50, "--arch", "16", "--data-dir", tiny_data_dir,
                    "--sessions-dir", sessions_dir)  # fmt: skip
    assert result.exit_code == status, result.output
    assert "stopped: final test accuracy" in result.output
    [path] = sessions_dir.glob("*.json")
    assert load(path).status == "stopped"
    # what was stopped continues with latest
    resumed = invoke("train", "--resume", "latest", "--quiet", "--epochs", 1, "--data-dir", tiny_data_dir,
                     "--sessions-dir", sessions_dir)  # fmt: skip
    assert resumed.exit_code == 0, resumed.output
    assert load(path).status == "completed" and len(load(path).epochs) == 50


@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_interrupted_sweep_exits_128_plus_the_signal_and_resumes_with_latest(
    monkeypatch, tiny_data_dir, sessions_dir, signum, status
):
    signal_after_first_epoch(monkeypatch, signum)
    result = invoke("sweep", "--lr", "0.1,0.01", "--arch", "16", "--epochs", 30, "--data-dir",
                    tiny_data_dir, "--sessions-dir", sessions_dir)  # fmt: skip
    assert result.exit_code == status, result.output
    assert "fmlab sweep --resume" in result.output
    assert {load(p).status for p in sessions_dir.glob("*.json")} == {"stopped"}
    monkeypatch.undo()
    resumed = invoke("sweep", "--resume", "-1", "--quiet", "--json", "--sessions-dir", sessions_dir,
                     "--data-dir", tiny_data_dir)  # fmt: skip
    assert resumed.exit_code == 0, resumed.output
    rows = json.loads(resumed.stdout)
    assert [row["status"] for row in rows] == ["completed", "completed"]


@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_interrupted_reproduction_exits_128_plus_the_signal(
    monkeypatch, tiny_data_dir, tmp_path, signum, status
):
    from fmlab.trainer.fields import parse_run_config
    from fmlab.trainer.studies import reproduce
    from fmlab.trainer.studies.reproduce import Study

    small = [Study("lr", "learning rates", "lr",
                   tuple(parse_run_config(arch="16", lr=lr, epochs=20) for lr in (0.1, 0.01)), "note")]  # fmt: skip
    monkeypatch.setattr(reproduce, "plan_studies", lambda quick=False, threshold=0.1: small)
    signal_after_first_epoch(monkeypatch, signum)
    result = invoke("reproduce", "--out", tmp_path / "out", "--data-dir", tiny_data_dir)
    assert result.exit_code == status, result.output
    assert "stopped: run the same command again to resume" in result.output
    assert f"report: {tmp_path / 'out' / 'REPORT.md'}" in result.output
    sessions = list((tmp_path / "out" / "sessions").rglob("*.json"))
    assert sessions and {load(p).status for p in sessions} == {"stopped"}
    # the study's runs are listed from the reproduction's sessions folder, with their study
    listing = invoke("sessions", "list", "--sessions-dir", tmp_path / "out" / "sessions")
    assert listing.exit_code == 0 and listing.output.splitlines()[0].split()[:2] == ["study", "id"]
    assert sum(line.startswith("lr ") for line in listing.output.splitlines()) == 2
    as_json = json.loads(invoke("sessions", "list", "--json", "--sessions-dir", tmp_path / "out").stdout)
    assert {s["study"] for s in as_json} == {"sessions/lr"}


# ------------------------------------------------------------- basics


def test_version():
    from fmlab.tui.cli import installed_version

    for flag in ("--version", "-V"):
        result = invoke(flag)
        assert result.exit_code == 0 and result.output == f"fmlab {installed_version()}\n"
    module = subprocess.run([sys.executable, "-m", "fmlab", "--version"], capture_output=True, text=True,
                            cwd=REPO, timeout=60)  # fmt: skip
    assert module.returncode == 0 and module.stdout.startswith("fmlab ")


@pytest.mark.parametrize(
    "shell, env, expected",
    [
        ("bash", {"COMP_WORDS": "fmlab train --optimizer ", "COMP_CWORD": "3"}, ["sgd", "adam"]),
        ("bash", {"COMP_WORDS": "fmlab sw", "COMP_CWORD": "1"}, ["sweep"]),
        ("bash", {"COMP_WORDS": "fmlab sweep --optimizer sgd,", "COMP_CWORD": "3"}, ["sgd,adam"]),
        ("zsh", {"_TYPER_COMPLETE_ARGS": "fmlab sweep --preset "}, ["lr", "convergence", "architectures"]),
        ("zsh", {"_TYPER_COMPLETE_ARGS": "fmlab sessions s"}, ["show", "schema"]),
        ("fish", {"_TYPER_COMPLETE_ARGS": "fmlab train --device ", "_TYPER_COMPLETE_FISH_ACTION": "get-args"},
         ["auto", "cpu", "cuda"]),
        ("fish", {"_TYPER_COMPLETE_ARGS": "fmlab grads --format ", "_TYPER_COMPLETE_FISH_ACTION": "get-args"},
         ["markdown", "csv", "json"]),
    ],
)  # fmt: skip
def test_shell_completion_offers_commands_and_choices(shell, env, expected):
    result = invoke(env={"_FMLAB_COMPLETE": f"complete_{shell}", **env})
    assert result.exit_code == 0
    for word in expected:
        assert word in result.output, result.output


def test_completion_offers_session_ids_and_latest(sessions_dir):
    write_record(sessions_dir, make_record("20250101-000000-16-lr0.1-abcd"))
    result = invoke(env={"_FMLAB_COMPLETE": "complete_bash", "FMLAB_SESSIONS": str(sessions_dir),
                         "COMP_WORDS": "fmlab sessions show ", "COMP_CWORD": "3"})  # fmt: skip
    assert result.output.split() == ["20250101-000000-16-lr0.1-abcd", "latest"]


@pytest.mark.parametrize("shell, start", [("bash", "_fmlab_completion()"), ("zsh", "#compdef fmlab"),
                                          ("fish", "complete --command fmlab")])  # fmt: skip
def test_completion_scripts_for_each_shell(monkeypatch, shell, start):
    monkeypatch.setenv("_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION", "1")
    result = invoke("--show-completion", shell)
    assert result.exit_code == 0 and result.output.startswith(start)
    assert "_FMLAB_COMPLETE" in result.output


@pytest.mark.parametrize(
    "command, shown",
    [
        (["train"], ["--optimizer [sgd|adam]", "--device [auto|cpu|cuda]", "--arch [base|deeper|wider|cnn|WIDTHS|LAYERS]",
                     "[env var: FMLAB_DATA]", "[env var: FMLAB_SESSIONS]"]),
        (["sweep"], ["--preset [lr|convergence|architectures]", "--format [markdown|csv|json]", "--json",
                     "--device [auto|cpu|cuda]", "--resume SWEEP_ID"]),
        (["grads"], ["--format [markdown|csv|json]", "--device [auto|cpu|cuda]", "--json"]),
        (["params"], ["--arch [base|deeper|wider|cnn|WIDTHS|LAYERS]"]),
        (["export"], ["Usage: fmlab export [OPTIONS] ID...", "  ID...  "]),
        (["sessions", "show"], ["Usage: fmlab sessions show [OPTIONS] ID\n", "latest"]),
        (["sessions", "list"], ["--sessions-dir DIR"]),
    ],
)  # fmt: skip
def test_help_lists_choices_and_names_arguments_plainly(command, shown):
    result = invoke(*command, "--help")
    assert result.exit_code == 0
    text = result.output
    for piece in shown:
        assert piece in text, piece
    for artefact in ("<str>", "<list[str]>", "<path>", "{ID", "{session}", "[env: "):
        assert artefact not in text, artefact


def test_folders_come_from_their_environment_variables(tiny_data_dir, tmp_path):
    env = {"FMLAB_DATA": str(tiny_data_dir), "FMLAB_SESSIONS": str(tmp_path / "s")}
    result = invoke("train", "--epochs", 1, "--arch", "8", "--quiet", env=env)
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "s").glob("*.json"))) == 1
    missing = invoke("data", env={"FMLAB_DATA": str(tmp_path / "none")})
    assert missing.exit_code == 1 and "(FMLAB_DATA)" in missing.output


# ------------------------------------------------------------- finding runs


@pytest.fixture
def three_sessions(sessions_dir):
    for day, session_id in enumerate(("run-old", "run-mid", "run-new"), start=1):
        record = make_record(session_id)
        record.created = f"2025-01-0{day}T00:00:00+00:00"
        write_record(sessions_dir, record)
    return sessions_dir


@pytest.mark.parametrize("ref, expected", [("latest", "run-new"), ("-1", "run-new"), ("-2", "run-mid"),
                                           ("-3", "run-old")])  # fmt: skip
def test_latest_and_counting_back_name_sessions(three_sessions, ref, expected):
    result = invoke("sessions", "show", ref, "--sessions-dir", three_sessions)
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"session {expected}  ({three_sessions / expected}.json)")
    as_json = invoke("sessions", "show", "--json", ref, "--sessions-dir", three_sessions)
    assert json.loads(as_json.stdout)["id"] == expected


def test_counting_past_the_oldest_is_one_line(three_sessions):
    result = invoke("sessions", "show", "-4", "--sessions-dir", three_sessions)
    assert result.exit_code == 1
    assert result.output == f"Error: there are only 3 sessions in {three_sessions}\n"
    unknown = invoke("sessions", "show", "-x", "--sessions-dir", three_sessions)
    assert unknown.exit_code == 2  # still an unknown option


def test_export_takes_latest_and_counts_back(three_sessions, tmp_path):
    out = tmp_path / "two.json"
    result = invoke("export", "-1", "-3", "--out", out, "--sessions-dir", three_sessions)
    assert result.exit_code == 0, result.output
    assert result.output == f"wrote {out} (2 sessions)\n"
    assert [s["id"] for s in json.loads(out.read_text())["sessions"]] == ["run-new", "run-old"]


def test_the_app_replays_latest(three_sessions, monkeypatch):
    from fmlab.tui.cli import app_command

    opened = []
    monkeypatch.setattr(app_command, "in_a_terminal", lambda: True)
    monkeypatch.setattr(app_command, "run_app", opened.append)
    result = invoke("tui", "--replay", "latest", "--sessions-dir", three_sessions)
    assert result.exit_code == 0, result.output
    assert opened[0].replay.id == "run-new"


def test_paths_are_printed_absolute(tiny_data_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke("train", "--epochs", 1, "--arch", "8", "--quiet", "--data-dir", tiny_data_dir,
                    "--sessions-dir", "rel")  # fmt: skip
    assert result.exit_code == 0, result.output
    [path] = (tmp_path / "rel").glob("*.json")
    assert f"session saved: {path}\n" in result.output
    listing = json.loads(invoke("sessions", "list", "--json", "--sessions-dir", "rel").stdout)
    assert listing[0]["path"] == str(path)
    exported = invoke("export", "latest", "--out", "x.csv", "--sessions-dir", "rel")
    assert exported.output == f"wrote {tmp_path / 'x.csv'} (1 session)\n"
    assert (
        invoke("sessions", "list", "--sessions-dir", "none").output == f"no sessions in {tmp_path / 'none'}\n"
    )


# ------------------------------------------------------------- JSON


def test_json_output_is_objects_everywhere(tiny_data_dir, sessions_dir):
    trained = invoke("train", "--epochs", 1, "--arch", "8", "--json", "--data-dir", tiny_data_dir,
                     "--sessions-dir", sessions_dir)  # fmt: skip
    summary = json.loads(trained.stdout)
    assert summary["config"]["arch"] == "8" and summary["config"]["hidden"] == [8]
    assert summary["config"]["lr"] == 0.1 and summary["config"]["shuffle"] is False
    assert "1 epochs" not in trained.output
    swept = invoke("sweep", "--lr", "0.1,0.05", "--arch", "8", "--epochs", 1, "--json", "--quiet",
                   "--data-dir", tiny_data_dir, "--sessions-dir", sessions_dir)  # fmt: skip
    assert [row["lr"] for row in json.loads(swept.stdout)] == [0.1, 0.05]
    same = invoke("sweep", "--lr", "0.1", "--arch", "8", "--epochs", 1, "--format", "json", "--quiet",
                  "--data-dir", tiny_data_dir, "--sessions-dir", sessions_dir)  # fmt: skip
    assert isinstance(json.loads(same.stdout), list)
    both = invoke("sweep", "--json", "--format", "csv", "--sessions-dir", sessions_dir)
    assert both.exit_code == 2 and both.output.startswith("Error: --json:")
    grads = invoke("grads", "--arch", "8", "--steps", 3, "--json", "--quiet", "--data-dir", tiny_data_dir,
                   "--sessions-dir", sessions_dir)  # fmt: skip
    assert grads.exit_code == 0, grads.output
    assert isinstance(json.loads(grads.stdout), (list, dict))
    for command in (["sessions", "list"], ["data", "--data-dir", tiny_data_dir], ["params"]):
        result = invoke(*command, "--json", "--sessions-dir", sessions_dir) if command[0] == "sessions" else \
            invoke(*command, "--json")  # fmt: skip
        assert isinstance(json.loads(result.stdout), (list, dict)), command


def test_piped_lines_are_whole_and_say_1_epoch(tiny_data_dir, sessions_dir):
    result = invoke("train", "--epochs", 1, "--arch", "8", "--data-dir", tiny_data_dir,
                    "--sessions-dir", sessions_dir)  # fmt: skip
    assert ", 1 epoch in " in result.output and "1 epochs" not in result.output
    lines = result.output.splitlines()
    started = next(line for line in lines if line.startswith("training "))
    assert len(started) > 80 and started.endswith("test images")  # not cut at 80 columns
    epoch = next(line for line in lines if line.startswith("epoch   1"))
    assert len(epoch) > 80 and epoch.endswith("samples/s")


# ------------------------------------------------------------- the schema


def test_the_schema_validates_real_session_files(tiny_data_dir, sessions_dir, tmp_path):
    result = invoke("sessions", "schema")
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    for args in (
        ["--epochs", 2, "--arch", "8"],
        ["--epochs", 1, "--arch", "8,4", "--optimizer", "adam", "--lr", "0.001", "--shuffle"],
        ["--epochs", 2, "--lr", "1e5"],
        ["--epochs", 1, "--arch", "conv(4,3) bn relu maxpool(2) dropout(0.1) flatten fc(10)"],
        ["--epochs", 1, "--arch", "8", "--precision", "bf16"],
    ):
        invoke("train", *args, "--quiet", "--data-dir", tiny_data_dir, "--sessions-dir", sessions_dir)
    write_record(sessions_dir, make_record("fixture-run"))
    files = sorted(sessions_dir.glob("*.json"))
    assert len(files) == 6
    assert any(load(p).status == "diverged" for p in files)  # null losses in its columns
    for path in files:
        document = json.loads(path.read_text())
        load(path)
        assert list(validator.iter_errors(document)) == [], path


@pytest.mark.parametrize(
    "spoil",
    [
        lambda d: d.pop("steps"),
        lambda d: d.update(version=99),
        lambda d: d.update(status="finished"),
        lambda d: d["config"].update(epochs="2"),
        lambda d: d["config"].update(optimizer="SGD"),
        lambda d: d["config"].update(precision="fp16"),
        lambda d: d["config"].update(lr=0),
        lambda d: d["results"].update(epochs_done=-1),
        lambda d: d["epochs"][0].update(test_acc=True),
        lambda d: d["steps"].update(loss=["x"]),
        lambda d: d["model"]["layers"][0].pop("formula"),
        lambda d: d["model"]["layers"][0].update(shape=[-1]),
        lambda d: d["config"].update(hidden=[], layers=[{"layer": "conv", "out": 4, "size": 3}]),
        lambda d: d["config"].update(hidden=[], module={"path": "x.py", "factory": "f"}),
        lambda d: d.update(id="../escape"),
    ],
)
def test_what_the_schema_refuses_fmlab_refuses(sessions_dir, spoil):
    from fmlab.trainer.sessions.schema import session_schema

    document = json.loads(write_record(sessions_dir, make_record("good")).read_text())
    spoil(document)
    path = sessions_dir / "spoilt.json"
    path.write_text(json.dumps(document))
    assert list(jsonschema.Draft202012Validator(session_schema()).iter_errors(document))
    with pytest.raises(SessionError):
        load(path)


# ------------------------------------------------------------- no terminal


def test_bare_fmlab_without_a_terminal_prints_help_and_exits_2():
    result = invoke()
    assert result.exit_code == 2
    assert result.output.startswith("Usage: fmlab [OPTIONS] COMMAND")
    app_without_terminal = invoke("tui")
    assert app_without_terminal.exit_code == 2 and "needs a terminal" in app_without_terminal.output


def test_bare_fmlab_with_stdin_from_dev_null_does_not_hang(tmp_path):
    with open(os.devnull) as nothing:
        done = subprocess.run([sys.executable, "-m", "fmlab"], stdin=nothing, capture_output=True, text=True,
                              cwd=tmp_path, timeout=60, env={**os.environ, "PYTHONPATH": ""})  # fmt: skip
    assert done.returncode == 2 and "Usage: fmlab" in done.stderr and done.stdout == ""


def test_a_member_added_later_is_one_declaration_and_old_files_still_read(monkeypatch, sessions_dir):
    """How the next step column (or a header marker) will be added: one line
    in the declarations, and the schema and the reader follow it."""
    from dataclasses import dataclass, field

    from fmlab.trainer.sessions import decode, format, schema

    @dataclass
    class Curve(format.StepCurve):
        grad_mean_abs: list = field(default_factory=list)

    steps = schema.Record({**schema.STEPS.members, "grad_mean_abs": schema.Missing(schema.Values(), list)},
                          where="steps")  # fmt: skip
    monkeypatch.setattr(decode, "STEPS", steps)
    monkeypatch.setattr(decode, "BODY", {**schema.BODY, "steps": steps})
    monkeypatch.setattr(decode, "StepCurve", Curve)
    old = write_record(sessions_dir, make_record("old-file"))
    values = load(old).steps.grad_mean_abs  # absent: not measured then
    assert len(values) == len(load(old).steps.step) and all(v != v for v in values)
    document = json.loads(old.read_text())
    document["steps"]["grad_mean_abs"] = [0.5] * len(document["steps"]["step"])
    new = sessions_dir / "new-file.json"
    new.write_text(json.dumps({**document, "id": "new-file"}))
    assert load(new).steps.grad_mean_abs == document["steps"]["grad_mean_abs"]
    document["steps"]["grad_mean_abs"] = [0.5]
    new.write_text(json.dumps({**document, "id": "new-file"}))
    with pytest.raises(SessionError, match="column 'grad_mean_abs' has 1 rows"):
        load(new)
    spec = schema.Record({**schema.BODY, "steps": steps}).schema()
    assert "grad_mean_abs" in spec["properties"]["steps"]["properties"]
    assert "grad_mean_abs" not in spec["properties"]["steps"]["required"]
