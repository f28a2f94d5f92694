from __future__ import annotations

from pathlib import Path

import pytest
from sessions_fixture import FixedProbe, write_fixed_sessions


@pytest.fixture
def probe() -> FixedProbe:
    return FixedProbe()


@pytest.fixture
def fixed_sessions(tmp_path: Path):
    directory = tmp_path / "fixed-sessions"
    return directory, write_fixed_sessions(directory)
