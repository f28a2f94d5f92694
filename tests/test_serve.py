"""``fmlab serve``: what it refuses (one line each), what it prints, and a
real server that answers only pages and websockets of its own."""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from fmlab.tui.cli import app, serve

runner = CliRunner()


def invoke(*args, **kwargs):
    return runner.invoke(app, ["serve", *map(str, args)], prog_name="fmlab", **kwargs)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "", "192.168.1.7", "example.com"])
def test_a_host_beyond_this_machine_needs_public_and_is_refused_in_one_line(host):
    result = invoke("--host", host)
    assert result.exit_code == 2
    assert len(result.output.splitlines()) == 1, result.output
    assert result.output.startswith("Error: --host: ")
    assert "add --public" in result.output and "no login" in result.output


@pytest.mark.parametrize("port", ["0", "65536", "-1", "http"])
def test_the_port_is_checked(port):
    result = invoke("--port", port)
    assert result.exit_code == 2
    assert len(result.output.splitlines()) == 1 and result.output.startswith("Error: --port: "), result.output
    assert "1 to 65535" in result.output


def test_help_teaches_the_tunnel_and_public():
    result = invoke("--help")
    assert result.exit_code == 0
    assert "--public" in result.output and "ssh -L 8000:localhost:8000" in result.output
    assert "--browser-tab" not in result.output  # the server's own way to start a tab's app


def test_without_textual_serve_it_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "textual_serve.server", None)  # import fails
    result = invoke()
    assert result.exit_code == 1
    assert result.output == "Error: fmlab serve needs textual-serve: pip install 'fmlab[serve]'\n"


def test_a_browser_tab_outside_textual_serve_is_refused(monkeypatch):
    monkeypatch.delenv("TEXTUAL_DRIVER", raising=False)
    result = invoke("--browser-tab")
    assert result.exit_code == 2 and len(result.output.splitlines()) == 1, result.output


@pytest.mark.parametrize(
    "host, loopback",
    [("localhost", True), ("127.0.0.1", True), ("127.3.2.1", True), ("::1", True), ("[::1]", True),
     ("LOCALHOST", True), ("0.0.0.0", False), ("::", False), ("", False), ("localhost.example.com", False)],
)  # fmt: skip
def test_only_this_machine_counts_as_loopback(host, loopback):
    assert serve.is_loopback(host) is loopback


class FakeServer:
    """Takes the place of textual-serve's server: records what it was given."""

    made: list[FakeServer] = []

    def __init__(self, command: str, **options) -> None:
        self.command, self.options = command, options
        FakeServer.made.append(self)

    def run(self) -> None:
        return None


def test_public_warns_in_one_line_and_each_tab_runs_the_app_on_the_folders(monkeypatch, tmp_path):
    monkeypatch.setattr(serve, "fmlab_server_class", lambda: FakeServer)
    FakeServer.made.clear()
    result = invoke("--host", "0.0.0.0", "--public", "--port", 9000, "--sessions-dir", tmp_path / "s",
                    "--data-dir", tmp_path / "d")  # fmt: skip
    assert result.exit_code == 0, result.output
    [line] = result.output.splitlines()
    assert line.startswith("Warning: serving to the network on 0.0.0.0:9000") and "no login" in line
    [server] = FakeServer.made
    assert server.options["host"] == "0.0.0.0" and server.options["port"] == 9000
    assert server.options["local_names_only"] is False  # a page may come by any name
    assert server.command.startswith(f"exec {sys.executable} -m fmlab serve --browser-tab")
    assert (
        f"--sessions-dir {tmp_path / 's'}" in server.command
        and f"--data-dir {tmp_path / 'd'}" in server.command
    )


def test_a_port_in_use_is_one_line(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        # in a process of its own: the server sets up logging for its process
        result = subprocess.run([sys.executable, "-m", "fmlab", "serve", "--port", str(port), "--sessions-dir",
                                 str(tmp_path)], capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == f"Error: cannot listen on 127.0.0.1:{port}: Address already in use\n"


# ------------------------------------------------------------- a real server


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def serving(*args: object, env: dict[str, str] | None = None) -> Iterator[tuple[subprocess.Popen, int]]:
    """``fmlab serve --port PORT *args`` in a process of its own, once it
    answers; stopped with SIGINT (Ctrl+C) on the way out if still running."""
    port = free_port()
    command = [sys.executable, "-m", "fmlab", "serve", "--port", str(port), *map(str, args)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, **(env or {})})  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                pytest.fail(f"fmlab serve ended with status {process.returncode}: {process.stderr.read()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            if time.monotonic() > deadline:
                pytest.fail("fmlab serve did not answer within 30 s")
            time.sleep(0.1)
        yield process, port
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def get(port: int, path: str = "/", **headers: str) -> tuple[int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


UPGRADE = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
           "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}  # fmt: skip


def test_the_server_prints_its_address_and_tunnel_answers_its_own_pages_only_and_stops_on_ctrl_c(tmp_path):
    with serving("--sessions-dir", tmp_path) as (process, port):
        status, page = get(port, Host=f"localhost:{port}")
        assert status == 200
        # the page's websocket is where the browser came from (a tunnel's port)
        assert f'data-session-websocket-url="ws://localhost:{port}/ws"' in page
        # DNS rebinding: another site's name for this machine
        assert get(port, Host=f"evil.example:{port}") == (
            403,
            "fmlab serve: this server answers to localhost only\n",
        )
        # another site's page opening the app's websocket (browsers allow it)
        status, text = get(port, "/ws", Host=f"127.0.0.1:{port}", Origin="http://evil.example", **UPGRADE)
        assert status == 403 and "only from the page" in text
        status, _ = get(port, "/ws", Host=f"127.0.0.1:{port}", **UPGRADE)  # no Origin: not a page of ours
        assert status == 403
        with socket.create_connection(("127.0.0.1", port), timeout=10) as nonsense:
            nonsense.sendall(b"GARBAGE\x00 / HTTP/9\r\n\r\n")
            assert nonsense.recv(100).startswith(b"HTTP/1.0 400")
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    assert process.returncode == 130
    assert out.splitlines() == [
        f"fmlab serves the app at http://127.0.0.1:{port} (each browser tab runs its own app; Ctrl+C stops)",
        f"from another machine: ssh -L {port}:localhost:{port} {socket.gethostname()}, "
        f"then open http://localhost:{port}",
    ]
    # what the server logs is one line each, never a traceback
    assert all(line.startswith("fmlab serve: ") for line in err.splitlines()), err
