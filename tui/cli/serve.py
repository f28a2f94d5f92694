"""``fmlab serve``: the app in a web browser, through textual-serve.

textual-serve answers each browser tab's websocket by starting a command of
its own, ``fmlab serve --browser-tab``, which runs the app with Textual's web
driver on its pipes; the server relays keys and screen updates. It has no
login, so it listens on this machine only unless ``--public`` says otherwise,
and it refuses pages and websockets that another site could make a browser
open (a foreign Origin or, without --public, a foreign Host: DNS rebinding).
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
import sys
from pathlib import Path
from typing import Optional

import typer

from fmlab.tui.cli.options import data_dir_option, resolve_sessions_dir, sessions_dir_option
from fmlab.tui.cli.output import absolute, fail, say, usage_error, warn

WEB_DRIVER = "textual.drivers.web_driver:WebDriver"  # textual-serve sets TEXTUAL_DRIVER to it
INSTALL = "pip install 'fmlab[serve]'"


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only: localhost, 127.x.x.x, ::1."""
    import ipaddress

    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_port(text: str) -> int:
    try:
        port = int(text.strip())
    except ValueError:
        usage_error("port", f"{text!r} is not a port number (1 to 65535)")
    if not 1 <= port <= 65535:
        usage_error("port", f"{port} is out of range (1 to 65535)")
    return port


def url_of(host: str, port: int) -> str:
    if host in ("", "0.0.0.0", "::"):  # every interface: the name others reach it by
        host = socket.gethostname()
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def serve(
    host: str = typer.Option(
        "127.0.0.1",
        "--host",
        help="Address to listen on. Anything but this machine (localhost, 127.0.0.1, ::1) needs --public.",
        metavar="ADDRESS",
    ),
    port: str = typer.Option("8000", "--port", help="Port to listen on (1 to 65535).", metavar="PORT"),
    public: bool = typer.Option(
        False,
        "--public",
        help="Allow --host to be reachable from the network. There is no login: "
        "anyone who reaches the port can train and delete sessions.",
    ),
    sessions_dir: Optional[Path] = sessions_dir_option(),
    data_dir: Optional[Path] = data_dir_option(),
    browser_tab: bool = typer.Option(False, "--browser-tab", hidden=True),
) -> None:
    """Serve the app to a web browser: each tab runs its own app.

    Open the address it prints. It listens on this machine only, as there is
    no login and whoever reaches the port can train and delete sessions;
    from another machine, tunnel the port over SSH. Ctrl+C stops the server
    and every tab's app (a run training is saved as stopped). Needs
    textual-serve: pip install 'fmlab[serve]'.

    \b
    Examples:
      fmlab serve                             then open http://127.0.0.1:8000
      ssh -L 8000:localhost:8000 SERVER       on your machine: the same at
                                              http://localhost:8000
      fmlab serve --port 8080 --sessions-dir runs
      fmlab serve --host 0.0.0.0 --public     to the whole network (no login!)
    """
    if browser_tab:
        run_browser_tab(sessions_dir, data_dir)
        return
    number = check_port(port)
    if not (is_loopback(host) or public):
        usage_error(
            "host",
            f"{host or repr(host)} serves the app to the network, where anyone who reaches it can train "
            "and delete sessions (textual-serve has no login); add --public to do that",
        )
    directory = absolute(resolve_sessions_dir(sessions_dir))
    if directory.exists() and not directory.is_dir():
        usage_error("sessions-dir", f"{directory} is not a folder")
    try:
        server_class = fmlab_server_class()
    except ImportError:
        fail(f"fmlab serve needs textual-serve: {INSTALL}")
    command = [sys.executable, "-m", "fmlab", "serve", "--browser-tab", "--sessions-dir", str(directory)]
    if data_dir is not None:
        command += ["--data-dir", str(absolute(data_dir))]
    server = server_class(
        "exec " + shlex.join(command),  # a shell line: exec leaves the app, not a shell, as the child
        host=host,
        port=number,
        title="fmlab",
        local_names_only=not public,  # --public: behind a proxy, say, the page may come by any name
    )
    if public and not is_loopback(host):
        warn(
            f"serving to the network on {host or 'every interface'}:{number}: anyone who reaches it "
            "can train and delete sessions (textual-serve has no login)"
        )
    try:
        stopped_by = server.run()
    except OSError as exc:  # the port taken, an address not of this machine, a name not found
        known = isinstance(exc.errno, int) and exc.errno > 0
        fail(f"cannot listen on {host}:{number}: {os.strerror(exc.errno) if known else exc.strerror or exc}")
    if stopped_by is not None:
        raise typer.Exit(128 + stopped_by)


def run_browser_tab(sessions_dir: Optional[Path], data_dir: Optional[Path]) -> None:
    """One browser tab's app, started by the server with Textual's web driver
    on stdin and stdout (so not a terminal: fmlab tui would refuse)."""
    if os.environ.get("TEXTUAL_DRIVER") != WEB_DRIVER:
        usage_error("browser-tab", "is how fmlab serve starts the app for a tab; run fmlab serve")
    # Ctrl+C at the server's terminal reaches the tabs too; the server ends
    # them itself (until the web driver takes the signal over, it would be a
    # traceback)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from fmlab.tui.app import make_app
    from fmlab.tui.cli.app_command import run_app

    run_app(make_app(sessions_dir=resolve_sessions_dir(sessions_dir), data_dir=data_dir))


def fmlab_server_class():
    """textual-serve's Server, fitted to fmlab (imported here: it is optional).
    Raises ImportError when textual-serve is not installed."""
    import asyncio
    import logging
    from urllib.parse import urlsplit

    import aiohttp_jinja2
    from aiohttp import web
    from aiohttp.web_runner import GracefulExit
    from textual_serve.server import Server, to_int

    class OneLineLog(logging.Handler):
        """The server's log (textual-serve's, aiohttp's) as one line per record, no traceback."""

        def emit(self, record: logging.LogRecord) -> None:
            message = record.getMessage()
            error = record.exc_info[1] if record.exc_info else None
            if error is not None:
                detail = (str(error).strip().splitlines() or [""])[0]
                if not detail or detail not in message:
                    message += f" ({type(error).__name__}{': ' + detail if detail else ''})"
            say(f"fmlab serve: {message}", err=True)

    def hostname(netloc: str) -> str:
        return (urlsplit(f"//{netloc}").hostname or "").lower()

    class FmlabServer(Server):
        def __init__(self, *args, local_names_only: bool, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.local_names_only = local_names_only
            self.stopped_by: int | None = None
            self.tabs: set[asyncio.Task] = set()

        def initialize_logging(self) -> None:
            for name in ("textual-serve", "aiohttp", "asyncio"):
                log = logging.getLogger(name)
                log.handlers[:] = [OneLineLog()]
                log.setLevel(logging.WARNING)
                log.propagate = False

        def refusal(self, request: web.Request) -> str | None:
            """Why a request is refused: another site's page can make a
            browser open the websocket (browsers let it), and, by DNS
            rebinding, load the page under its own name."""
            if self.local_names_only and not is_loopback(hostname(request.host)):
                return "this server answers to localhost only"
            if request.path == "/ws":
                origin = request.headers.get("Origin", "")
                if urlsplit(origin).netloc.lower() != request.host.lower():
                    return "the app opens only from the page this server gives"
            return None

        async def _make_app(self) -> web.Application:
            app = await super()._make_app()

            @web.middleware
            async def same_origin(request: web.Request, handler):
                reason = self.refusal(request)
                if reason is not None:
                    raise web.HTTPForbidden(text=f"fmlab serve: {reason}\n")
                return await handler(request)

            app.middlewares.append(same_origin)
            return app

        async def handle_index(self, request: web.Request) -> web.StreamResponse:
            # the addresses the page uses are the ones the browser came by (a
            # tunnel's local port, this machine's name), not the listening one
            scheme = "wss" if request.scheme == "https" else "ws"
            context = {
                "font_size": to_int(request.query.get("fontsize", "16"), 16),
                "app_websocket_url": f"{scheme}://{request.host}/ws",
                "config": {"static": {"url": "/static/"}},
                "application": {"name": self.title},
            }
            return aiohttp_jinja2.render_template("app_index.html", request, context)

        async def handle_websocket(self, request: web.Request) -> web.WebSocketResponse:
            task = asyncio.current_task()
            self.tabs.add(task)
            try:
                return await super().handle_websocket(request)
            finally:
                self.tabs.discard(task)

        async def on_startup(self, app: web.Application) -> None:
            pass  # the address is printed once the port is open (announce)

        async def on_shutdown(self, app: web.Application) -> None:
            # each tab's handler then tells its app to quit and waits for it
            for task in list(self.tabs):
                task.cancel()

        def announce(self, *args: object) -> None:
            url = url_of(self.host, self.port)
            say(f"fmlab serves the app at {url} (each browser tab runs its own app; Ctrl+C stops)")
            if is_loopback(self.host):
                say(f"from another machine: ssh -L {self.port}:localhost:{self.port} {socket.gethostname()}, "
                    f"then open http://localhost:{self.port}")  # fmt: skip
            sys.stdout.flush()

        def stop(self, signum: int) -> None:
            self.stopped_by = signum
            raise GracefulExit()

        def run(self) -> int | None:
            """Serve until SIGINT or SIGTERM; the signal's number, or None."""
            self.initialize_logging()
            loop = asyncio.new_event_loop()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, self.stop, signum)
            web.run_app(
                self._make_app(),
                host=self.host,
                port=self.port,
                handle_signals=False,
                loop=loop,
                print=self.announce,
                access_log=None,
                shutdown_timeout=10,
            )
            return self.stopped_by

    return FmlabServer
