"""Property tests: whatever a session file holds, loading either gives a
record or one SessionError line naming the file; nothing else escapes."""

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from one_run import train_one

from fmlab.trainer.fields import parse_run_config
from fmlab.trainer.sessions import SessionError, SessionRecorder, load, summarize_file

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=6,
)


@pytest.fixture(scope="module")
def good_session(tiny_dataset, tmp_path_factory) -> dict:
    recorder = SessionRecorder(tmp_path_factory.mktemp("fuzz"))
    for event in train_one(parse_run_config(epochs=2, arch="8", full_steps=3), tiny_dataset):
        recorder(event)
    return json.loads(recorder.path.read_text())


def paths_of(value, prefix=()):
    """Every (path, value) inside a JSON value."""
    yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            yield from paths_of(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value[:3]):
            yield from paths_of(child, (*prefix, index))


def replaced(document, path, new):
    if not path:
        return new
    copy = json.loads(json.dumps(document))
    target = copy
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = new
    return copy


def assert_loads_or_one_line(path: Path) -> None:
    for read in (load, summarize_file):
        try:
            read(path)
        except SessionError as exc:
            message = str(exc)
            assert message.startswith(str(path)) and "\n" not in message


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(data=st.data())
def test_any_field_replaced_by_any_value(good_session, tmp_path, data):
    paths = list(paths_of(good_session))
    path = data.draw(st.sampled_from(paths))
    document = replaced(good_session, path, data.draw(json_values))
    file = tmp_path / "s.json"
    file.write_text(json.dumps(document))
    assert_loads_or_one_line(file)


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(cut=st.integers(0, 10_000), junk=st.binary(max_size=20))
def test_truncated_or_garbled_bytes(good_session, tmp_path, cut, junk):
    text = json.dumps(good_session).encode()
    file = tmp_path / "s.json"
    file.write_bytes(text[: cut % (len(text) + 1)] + junk)
    assert_loads_or_one_line(file)
