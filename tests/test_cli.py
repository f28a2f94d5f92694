import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from fmlab.tui.cli import app

runner = CliRunner()


def invoke(*args, **kwargs):
    return runner.invoke(app, [str(a) for a in args], **kwargs)


@pytest.mark.parametrize(
    "args, option",
    [
        (["--lr", "abc"], "--lr"),
        (["--lr", "0"], "--lr"),
        (["--lr", "-0.5"], "--lr"),
        (["--epochs", "0"], "--epochs"),
        (["--batch-size", "-3"], "--batch-size"),
        (["--arch", ""], "--arch"),
        (["--arch", "0,5"], "--arch"),
        (["--arch", "big"], "--arch"),
        (["--optimizer", "lbfgs"], "--optimizer"),
        (["--device", "cuda"], "--device"),
    ],
)
def test_train_bad_values_exit_2_with_one_line(args, option, tiny_data_dir, tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    result = invoke("train", *args, "--data-dir", tiny_data_dir, "--sessions-dir", tmp_path / "s")
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: {option}:")
    assert "Traceback" not in result.output


def test_unwritable_sessions_dir_is_refused(tiny_data_dir, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = invoke("train", "--data-dir", tiny_data_dir, "--sessions-dir", blocker / "s")
    assert result.exit_code == 2 and "--sessions-dir" in result.output


def test_missing_data_is_one_line_exit_1(tmp_path):
    result = invoke("train", "--data-dir", tmp_path / "nothing", "--sessions-dir", tmp_path / "s")
    assert result.exit_code == 1
    assert result.output.strip().count("\n") == 0 and "no Fashion-MNIST files" in result.output


def test_train_then_list_and_show(tiny_data_dir, sessions_dir):
    result = invoke("train", "--epochs", 2, "--arch", "32", "--data-dir", tiny_data_dir,
                    "--sessions-dir", sessions_dir)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "completed: final test accuracy" in result.output
    assert "epoch   2" in result.output and "session saved:" in result.output
    [path] = sessions_dir.glob("*.json")
    listing = invoke("sessions", "list", "--sessions-dir", sessions_dir)
    assert listing.exit_code == 0 and path.stem in listing.output and "2/2" in listing.output
    shown = invoke("sessions", "show", path.stem[:-3], "--sessions-dir", sessions_dir)
    assert shown.exit_code == 0 and "test acc" in shown.output and "32" in shown.output
    as_json = invoke("sessions", "show", path.stem, "--sessions-dir", sessions_dir, "--json")
    assert json.loads(as_json.output)["id"] == path.stem


def test_train_json_prints_one_object(tiny_data_dir, sessions_dir):
    result = runner.invoke(
        app,
        ["train", "--epochs", "1", "--arch", "16", "--json", "--data-dir", str(tiny_data_dir),
         "--sessions-dir", str(sessions_dir)],
    )  # fmt: skip
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["results"]["status"] == "completed" and len(data["epochs"]) == 1
    assert data["path"].endswith(".json")


def test_sessions_list_warns_about_bad_files(sessions_dir):
    (sessions_dir / "bad.json").write_text("nope")
    result = invoke("sessions", "list", "--sessions-dir", sessions_dir)
    assert result.exit_code == 0
    assert "Warning:" in result.output and "bad.json" in result.output
    assert "no sessions" in result.output


def test_show_bad_session_exits_1_with_one_line(sessions_dir):
    (sessions_dir / "bad.json").write_text('{"schema": "x"}')
    result = invoke("sessions", "show", "bad", "--sessions-dir", sessions_dir)
    assert result.exit_code == 1
    assert result.output.strip().startswith("Error:") and result.output.strip().count("\n") == 0


def test_params_table_and_json():
    result = invoke("params", "--arch", "base")
    assert result.exit_code == 0
    assert "(784 + 1) x 256 = 200,960" in result.output and "337,674" in result.output
    data = json.loads(invoke("params", "--arch", "wider", "--json").output)
    assert data["total_params"] == 2_923_530
    bad = invoke("params", "--arch", "1,-2")
    assert bad.exit_code == 2 and bad.output.startswith("Error: --arch:")


def test_data_command_reports_location_and_sizes(tiny_data_dir):
    result = invoke("data", "--data-dir", tiny_data_dir)
    assert result.exit_code == 0
    assert str(tiny_data_dir) in result.output and "512 images" in result.output
    assert "Ankle boot" in result.output


def test_help_does_not_import_torch_or_textual():
    code = (
        "import sys\n"
        "from fmlab.tui.cli import app\n"
        "try:\n    app(['--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('torch', 'textual', 'matplotlib') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_export_png_csv_json_and_bad_input(tiny_data_dir, sessions_dir, tmp_path):
    for seed in (1, 2):
        invoke("train", "--epochs", 1, "--arch", "16", "--seed", seed, "--data-dir", tiny_data_dir,
               "--sessions-dir", sessions_dir, "--quiet")  # fmt: skip
    ids = sorted(p.stem for p in sessions_dir.glob("*.json"))
    for suffix in ("png", "csv", "json"):
        out = tmp_path / "out" / f"both.{suffix}"
        result = invoke("export", *ids, "--out", out, "--sessions-dir", sessions_dir)
        assert result.exit_code == 0, result.output
        assert f"wrote {out} (2 sessions)" in result.output
    assert (tmp_path / "out" / "both.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = (tmp_path / "out" / "both.csv").read_text().splitlines()
    assert rows[0].startswith("session,arch,lr") and sum(",epoch,1," in r for r in rows) == 2
    assert len(json.loads((tmp_path / "out" / "both.json").read_text())["sessions"]) == 2

    bad_suffix = invoke("export", ids[0], "--out", tmp_path / "x.txt", "--sessions-dir", sessions_dir)
    assert bad_suffix.exit_code == 2 and bad_suffix.output.startswith("Error: --out:")
    (sessions_dir / "broken.json").write_text("{")
    broken = invoke("export", "broken", "--out", tmp_path / "x.png", "--sessions-dir", sessions_dir)
    assert broken.exit_code == 1 and broken.output.count("\n") == 1 and "broken.json" in broken.output
    blocker = tmp_path / "file"
    blocker.write_text("")
    unwritable = invoke("export", ids[0], "--out", blocker / "x.csv", "--sessions-dir", sessions_dir)
    assert unwritable.exit_code == 1 and unwritable.output.startswith("Error: cannot write")


def test_a_sessions_dir_that_is_a_file_is_refused(tmp_path):
    """The example: ``sessions list --sessions-dir FILE`` said "no sessions" with status 0."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    listing = invoke("sessions", "list", "--sessions-dir", blocker)
    assert listing.exit_code == 2 and listing.output == f"Error: --sessions-dir: {blocker} is not a folder\n"
    as_json = invoke("sessions", "list", "--json", "--sessions-dir", blocker)
    assert as_json.exit_code == 2 and as_json.stdout == ""
    shown = invoke("sessions", "show", "x", "--sessions-dir", blocker)
    assert shown.exit_code == 1 and shown.output == f"Error: {blocker} is not a folder\n"
    exported = invoke("export", "x", "--out", tmp_path / "x.csv", "--sessions-dir", blocker)
    assert exported.exit_code == 1 and exported.output == f"Error: {blocker} is not a folder\n"
    app_refused = invoke("tui", "--sessions-dir", blocker)
    assert app_refused.exit_code == 2 and "is not a folder" in app_refused.output


def test_a_missing_sessions_dir_is_an_empty_one(tmp_path):
    result = invoke("sessions", "list", "--sessions-dir", tmp_path / "not-yet")
    assert result.exit_code == 0 and result.output == f"no sessions in {tmp_path / 'not-yet'}\n"
