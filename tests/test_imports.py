import subprocess
import sys
from pathlib import Path

TRAINER_MODULES = sorted(p.stem for p in (Path(__file__).parents[1] / "trainer").glob("*.py"))


def test_trainer_never_imports_the_ui():
    imports = "\n".join(f"import fmlab.trainer.{name}" for name in TRAINER_MODULES if name != "__init__")
    code = (
        imports
        + "\nimport sys\nprint([m for m in ('tui', 'textual', 'plotext', 'textual_plotext') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_trainer_sources_do_not_mention_the_ui_packages():
    root = Path(__file__).parents[1] / "trainer"
    for path in root.glob("*.py"):
        text = path.read_text()
        for banned in (
            "import fmlab.tui",
            "from fmlab.tui",
            "import textual",
            "from textual",
            "import plotext",
        ):
            assert banned not in text, f"{path.name} has {banned!r}"
