"""``fmlab serve`` in a real browser: the system's Chromium, driven by
Playwright, opens the page, starts a run from the form, watches the live view
count its steps, stops the run, finds its session in the sessions browser and
quits; the session file says "stopped".

With FMLAB_SCREENSHOT_DIR set, the live view is saved there as
browser-live-view.png (docs/browser-live-view.png was made this way). Skipped
where Playwright or Chromium is missing (``make test`` installs Chromium with
apt where it can).
"""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import pytest
from test_serve import serving

from fmlab.trainer.fields import parse_run_config
from fmlab.trainer.sessions import load
from fmlab.tui.settings import SettingsFile, settings_path

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="Playwright is not installed (pip install playwright)"
)
pytest.importorskip("textual_serve", reason="textual-serve is not installed (pip install 'fmlab[serve]')")

WAIT_MS = 30_000

# textual-serve's page draws the terminal with xterm.js on a canvas, and keeps
# its Terminal in a closure. xterm's constructor binds each option's getter to
# the Terminal (``getter.bind(terminal, name)``): this catches it there, so the
# test reads the screen from xterm's own buffer, as the page holds it.
CATCH_THE_TERMINAL = """
(() => {
  const bind = Function.prototype.bind;
  Function.prototype.bind = function (self, ...args) {
    if (self && self._core && self._addonManager && typeof self.loadAddon === "function") {
      window.fmlabTerminal = self;
      Function.prototype.bind = bind;
    }
    return bind.call(this, self, ...args);
  };
})();
"""
SCREEN = """() => {
  const terminal = window.fmlabTerminal;
  if (!terminal) return "";
  const buffer = terminal.buffer.active, lines = [];
  for (let row = 0; row < terminal.rows; row++) {
    const line = buffer.getLine(buffer.viewportY + row);
    lines.push(line ? line.translateToString(true) : "");
  }
  return lines.join("\\n");
}"""


# Predicates over the screen's text. The progress line reads "step 1,234/8,000":
# the first remembers each count shown while running and holds once two differ.
STEP_COUNT_MOVED = """(text) => {
  const step = text.match(/step ([\\d,]+)\\//);
  if (step && /running/.test(text)) (window.fmlabSteps ||= new Set()).add(step[1]);
  return (window.fmlabSteps || new Set()).size >= 2;
}"""
STEP_AT_LEAST = """(text, least) => {
  const step = text.match(/step ([\\d,]+)\\//);
  return step !== null && Number(step[1].replace(/,/g, "")) >= least;
}"""


def chromium() -> str:
    found = shutil.which("chromium") or next(
        (p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser") if os.access(p, os.X_OK)), None
    )
    if found is None:
        reason = "no Chromium here (apt-get install chromium; make test does it as root on Debian)"
        print(f"browser test skipped: {reason}")
        pytest.skip(reason)
    return found


def wait_for_screen(page, predicate: str, what: str, arg: object = None) -> str:
    """Wait until ``predicate(screenText, arg)`` (JavaScript) holds; the screen then."""
    try:
        page.wait_for_function(f"(arg) => ({predicate})(({SCREEN})(), arg)", arg=arg, timeout=WAIT_MS)
    except sync_api.TimeoutError:
        pytest.fail(f"the page did not show {what} within {WAIT_MS // 1000} s; it shows:\n{screen(page)}")
    return screen(page)


def screen(page) -> str:
    return page.evaluate(SCREEN)


def test_a_run_from_the_browser(tmp_path, tiny_data_dir):
    executable = chromium()
    sessions = tmp_path / "sessions"
    # the run form starts from the last run started: a small net on the CPU,
    # for more epochs than the test waits for (it stops the run)
    SettingsFile(settings_path()).remember_run(parse_run_config(arch="32", epochs=1000, device="cpu"))
    with serving("--sessions-dir", sessions, "--data-dir", tiny_data_dir) as (server, port):
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=executable, headless=True)
            try:
                page = browser.new_page(viewport={"width": 1000, "height": 620})
                page.add_init_script(CATCH_THE_TERMINAL)
                page.route("**/fonts.googleapis.com/**", lambda route: route.abort())  # no network
                page.goto(f"http://127.0.0.1:{port}/")

                form = wait_for_screen(
                    page, "(text) => text.includes('Start run') && /epochs +1000/.test(text)", "the run form"
                )
                assert "configure a run" in form, form

                page.locator(".xterm-helper-textarea").focus()
                page.keyboard.press("Control+r")
                # the live view, running, counts its steps: two different counts seen
                live = wait_for_screen(page, STEP_COUNT_MOVED, "the step count moving in the live view")
                assert "live run" in live and "running" in live, live
                if folder := os.environ.get("FMLAB_SCREENSHOT_DIR"):
                    wait_for_screen(page, STEP_AT_LEAST, "step 800", 800)  # a picture with more in it
                    Path(folder).mkdir(parents=True, exist_ok=True)
                    page.screenshot(path=str(Path(folder) / "browser-live-view.png"))

                page.keyboard.press("c")  # stop the run: it is saved as stopped
                wait_for_screen(
                    page, "(text) => /stopped/.test(text) && /took/.test(text)", "the run stopped"
                )
                [path] = sessions.glob("*.json")
                page.keyboard.press("F4")
                listed = wait_for_screen(
                    page,
                    "(text, id) => text.includes('sessions in') && text.includes(id)",
                    "the new session in the sessions browser",
                    path.stem,
                )
                assert "stopped" in listed, listed

                page.keyboard.press("Control+q")
                page.wait_for_function("document.body.classList.contains('-closed')", timeout=WAIT_MS)
            finally:
                browser.close()
        server.send_signal(signal.SIGINT)
        out, err = server.communicate(timeout=30)
    assert server.returncode == 130, err
    assert "Traceback" not in out + err, out + err
    assert load(path).status == "stopped"
