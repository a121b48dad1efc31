"""A JupyterLab server and a headless Chromium for the browser tests, both started and always stopped.

Nothing here downloads a browser: Chromium and its driver are Debian's ``chromium`` and
``chromium-driver`` (``.ci/run`` installs them), driven by Selenium through the driver's path, so
Selenium Manager is never asked to fetch one. :func:`browser_skip_reason` says why the tests
cannot run on a machine, and the tests skip with that reason.

The server runs in a throw-away environment: a free port on 127.0.0.1, a random token, a temp
``HOME`` and temp Jupyter / JupyterLab settings folders, its own process group (killed on exit,
also when a test fails).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from tests.course.cycle_support import person_env

__all__ = ["browser_skip_reason", "JupyterLab", "jupyterlab", "chromium", "Lab"]

_BROWSERS = ["chromium", "chromium-browser", "google-chrome"]
_DRIVERS = ["chromedriver"]
START_TIMEOUT_S = 90
BROWSER_WIDTH, BROWSER_HEIGHT = 1400, 1000


def _which(names: list[str]) -> str | None:
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    return None


def browser_skip_reason() -> str | None:
    """Why the browser tests cannot run here (None when they can)."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (it comes with the README's install command)"
    if _which(_BROWSERS) is None:
        return "no Chromium on PATH (Debian: apt-get install chromium chromium-driver; .ci/run does it)"
    if _which(_DRIVERS) is None:
        return "no chromedriver on PATH (Debian: apt-get install chromium-driver; .ci/run does it)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class JupyterLab:
    """A running JupyterLab: where it serves, with which token, and the folder it serves."""

    url: str
    token: str
    root: Path
    log: Path

    def lab_url(self, path: str = "") -> str:
        """The URL that opens ``path`` (relative to the root) in JupyterLab, with the token."""
        tree = f"/tree/{path}" if path else ""
        return f"{self.url}/lab{tree}?reset&token={self.token}"


def _lab_env(home: Path, nbgrader_config: str | None) -> dict[str, str]:
    """A student's environment (see ``person_env``) plus JupyterLab's own settings folders."""
    env = person_env(home, nbgrader_config)
    env.pop("JUPYTERHUB_API_TOKEN", None)
    user_settings = home / ".jupyter/lab/user-settings"
    env["JUPYTERLAB_SETTINGS_DIR"] = str(user_settings)
    env["JUPYTERLAB_WORKSPACES_DIR"] = str(home / ".jupyter/lab/workspaces")
    for plugin, settings in [
        # No news pop-up or update check over the screenshots (and no network).
        ("apputils-extension/notification", {"fetchNews": "false", "checkForUpdates": False}),
        # Every cell in the DOM (not only those scrolled into view), so the test can read any output.
        ("notebook-extension/tracker", {"windowingMode": "none"}),
    ]:
        path = user_settings / "@jupyterlab" / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(settings))
    return env


def _wait_until_up(proc: subprocess.Popen, url: str, token: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with code {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.3)
    raise RuntimeError(f"JupyterLab did not answer within {START_TIMEOUT_S} s:\n{log.read_text()[-3000:]}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    # The whole group: the server and every kernel it started.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=15)


@contextlib.contextmanager
def jupyterlab(root: Path, home: Path, nbgrader_config: str | None = None) -> Iterator[JupyterLab]:
    """Serve ``root`` with JupyterLab on a free localhost port; stop it (and its kernels) on exit.

    ``nbgrader_config`` becomes the user's ``~/.jupyter/nbgrader_config.py`` (nbgrader's Validate
    button reads it).
    """
    token = secrets.token_hex(16)
    port = _free_port()
    env = _lab_env(home, nbgrader_config)
    log = home / "jupyterlab.log"
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}", "--ServerApp.port_retries=0",
           "--LabApp.news_url=", "--ServerApp.terminals_enabled=False"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_until_up(proc, url, token, log)
        yield JupyterLab(url=url, token=token, root=root, log=log)
    finally:
        _stop(proc)


@contextlib.contextmanager
def chromium(log_dir: Path) -> Iterator["object"]:
    """A headless Chromium (Selenium WebDriver) from the system packages; quit on exit.

    The driver's path is given, so Selenium Manager never looks for (or downloads) one.
    """
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = _which(_BROWSERS)
    for arg in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--window-size={BROWSER_WIDTH},{BROWSER_HEIGHT}", "--no-first-run",
                "--disable-background-networking", "--disable-component-update"]:
        options.add_argument(arg)
    service = Service(executable_path=_which(_DRIVERS), log_output=str(log_dir / "chromedriver.log"))
    driver = webdriver.Chrome(options=options, service=service)
    try:
        yield driver
    finally:
        driver.quit()


class Lab:
    """What a student does in JupyterLab, as clicks and keystrokes, with a screenshot per step.

    Each method waits for JupyterLab to finish what it started (the kernel idle, a dialog shown)
    and fails with what was on the screen when it does not within ``timeout`` seconds.
    """

    def __init__(self, driver, server: JupyterLab, shots: Path, timeout: float = 120):
        self.driver, self.server, self.shots, self.timeout = driver, server, shots, timeout
        self.screenshots: list[Path] = []

    # -- waiting ---------------------------------------------------------------------------
    def wait_for(self, what: str, condition, timeout: float | None = None):
        """Poll ``condition()`` until it returns something truthy; fail with a screenshot if not."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while time.monotonic() < deadline:
            try:
                value = condition()
            except Exception:  # noqa: BLE001 - the page is re-rendering: retry
                value = None
            if value:
                return value
            time.sleep(0.2)
        shot = self.screenshot("timeout-" + re.sub(r"[^A-Za-z0-9]+", "-", what)[:40])
        raise AssertionError(f"JupyterLab: timed out waiting for {what} (screenshot: {shot})")

    def screenshot(self, name: str) -> Path:
        path = self.shots / f"{len(self.screenshots) + 1:02d}-{name}.png"
        self.driver.save_screenshot(str(path))
        self.screenshots.append(path)
        return path

    def _css(self, selector: str, root=None):
        from selenium.webdriver.common.by import By

        return (root or self.driver).find_elements(By.CSS_SELECTOR, selector)

    # -- the notebook ----------------------------------------------------------------------
    @property
    def panel(self):
        """The notebook panel of the current tab."""
        panels = [p for p in self._css(".jp-NotebookPanel") if p.is_displayed()]
        return panels[0] if panels else None

    def cells(self):
        return self._css(".jp-Notebook .jp-Cell", self.panel)

    def kernel_idle(self) -> bool:
        indicator = self._css(".jp-Notebook-ExecutionIndicator")
        prompts = [p.text for p in self._css(".jp-InputPrompt", self.panel)]
        return (bool(indicator) and indicator[0].get_attribute("data-status") == "idle"
                and not any("*" in p for p in prompts))

    def open(self, path: str, n_cells: int) -> None:
        """Open the notebook at ``path`` (relative to the server's root) and wait for its kernel."""
        self.driver.get(self.server.lab_url(path))
        self.wait_for(f"{path} to show {n_cells} cells", lambda: self.panel and len(self.cells()) == n_cells)
        self.wait_for("the kernel to start", self.kernel_idle)

    def menu(self, menu: str, entry: str) -> None:
        """Click ``menu`` in the menu bar, then its entry labelled ``entry``."""
        item = [m for m in self._css(".lm-MenuBar-item") if m.text.strip() == menu]
        assert item, f"no menu {menu!r} in the menu bar"
        item[0].click()
        label = self.wait_for(f"the entry {entry!r} of the {menu} menu", lambda: [
            e for e in self._css(".lm-Menu-content .lm-Menu-itemLabel") if e.text.strip() == entry], timeout=10)
        label[0].click()

    def wait_idle(self, settle_s: float = 0.5) -> None:
        """Wait until the kernel is idle and no cell is queued, twice ``settle_s`` apart."""
        self.wait_for("the kernel to finish", self.kernel_idle)
        time.sleep(settle_s)
        self.wait_for("the kernel to finish", self.kernel_idle)

    def run_all(self) -> None:
        """Run > Run All Cells; wait until the run has started and the kernel is idle again."""
        first = self._css(".jp-CodeCell .jp-InputPrompt", self.panel)[0]
        before = first.text
        self.menu("Run", "Run All Cells")

        def started() -> bool:
            if self.choose_the_kernel():  # then run all again, on the kernel just chosen
                self.wait_for("the kernel to start", self.kernel_idle)
                self.menu("Run", "Run All Cells")
            return first.text != before

        self.wait_for("the run to start", started, timeout=60)
        self.wait_idle()

    def choose_the_kernel(self) -> bool:
        """Accept JupyterLab's "Select Kernel" dialog (Python 3 preselected) if it is up, as a student
        would: on a loaded machine it can come up after the notebook's kernel was first reported idle."""
        for dialog in self._css(".jp-Dialog"):
            if "Select Kernel" in dialog.text:
                self._css(".jp-Dialog-button.jp-mod-accept", dialog)[0].click()
                self.wait_for("the dialog to close", lambda: not self._css(".jp-Dialog"), timeout=10)
                return True
        return False

    def error_output(self, index: int) -> str:
        """The traceback shown under cell ``index`` ('' when it raised nothing)."""
        errors = self._css('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]',
                           self.cells()[index])
        return "\n".join(e.get_attribute("textContent") for e in errors)

    def scroll_to(self, index: int, output: bool = False) -> None:
        """Scroll cell ``index`` to the top of the notebook, or the end of its output to the bottom."""
        target = self._css(".jp-OutputArea", self.cells()[index])[-1] if output else self.cells()[index]
        self.driver.execute_script(f"arguments[0].scrollIntoView({{block: '{'end' if output else 'start'}'}});", target)
        time.sleep(0.3)

    def replace_lines(self, index: int, first: str, last: str, new_lines: list[str]) -> None:
        """In cell ``index``, type ``new_lines`` over the lines from the one containing ``first`` to
        the next one containing ``last``, as a person would.

        Click on the first line, Home (the cursor stops after the indentation), Shift+Down to the
        last line, Shift+End: the selection is the old text less its indentation, which the first new
        line (less that indentation) replaces. After each Enter the editor indents the new line by
        itself: Shift+Home selects that indentation and the next line, typed verbatim, replaces it,
        so the result does not depend on the editor's guess.
        """
        from selenium.webdriver.common.action_chains import ActionChains
        from selenium.webdriver.common.keys import Keys

        texts = [line.get_attribute("textContent") for line in self._css(".cm-content .cm-line", self.cells()[index])]
        start = next((i for i, text in enumerate(texts) if first in text), None)
        assert start is not None, f"cell {index} has no line containing {first!r}"
        stop = next((i for i in range(start, len(texts)) if last in texts[i]), None)
        assert stop is not None, f"cell {index} has no line containing {last!r} after {first!r}"
        indent = texts[start][: len(texts[start]) - len(texts[start].lstrip())]
        assert new_lines[0].startswith(indent), f"the first new line must keep the indentation {indent!r}"
        line = self._css(".cm-content .cm-line", self.cells()[index])[start]
        self.driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", line)
        line.click()
        keys = ActionChains(self.driver).send_keys(Keys.END).send_keys(Keys.HOME).key_down(Keys.SHIFT)
        for _ in range(stop - start):
            keys = keys.send_keys(Keys.DOWN)
        keys = keys.send_keys(Keys.END).key_up(Keys.SHIFT)
        for i, line in enumerate(new_lines):
            if i:
                keys = keys.send_keys(Keys.ENTER).key_down(Keys.SHIFT).send_keys(Keys.HOME).key_up(Keys.SHIFT)
            typed = line[len(indent):] if i == 0 else line
            # A blank line: a space replaces the editor's indentation, and goes.
            keys = keys.send_keys(typed) if typed.strip() else keys.send_keys(" ", Keys.BACKSPACE)
        keys.perform()
        time.sleep(0.3)

    def edit_markdown(self, index: int) -> None:
        """Put the rendered Markdown cell ``index`` in edit mode, as a double-click on it does."""
        from selenium.webdriver.common.action_chains import ActionChains

        rendered = self._css(".jp-MarkdownOutput", self.cells()[index])
        assert rendered, f"cell {index} is not a rendered Markdown cell"
        self.driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", rendered[0])
        ActionChains(self.driver).double_click(rendered[0]).perform()
        self.wait_for(f"cell {index}'s editor", lambda: self._css(".cm-content .cm-line", self.cells()[index]))

    def render_markdown(self, index: int) -> None:
        """Render the Markdown cell ``index`` being edited with Shift+Enter (a Markdown cell has no
        execution count to wait for: wait until its rendered view is back)."""
        from selenium.webdriver.common.action_chains import ActionChains
        from selenium.webdriver.common.keys import Keys

        self._css(".cm-content", self.cells()[index])[0].click()
        ActionChains(self.driver).key_down(Keys.SHIFT).send_keys(Keys.ENTER).key_up(Keys.SHIFT).perform()
        self.wait_for(f"cell {index} to render", lambda: "jp-mod-rendered" in self.cells()[index].get_attribute("class"),
                      timeout=30)

    def run_cell(self, index: int) -> None:
        """Select cell ``index`` (command mode), run it with Shift+Enter and wait for the kernel."""
        from selenium.webdriver.common.action_chains import ActionChains
        from selenium.webdriver.common.keys import Keys

        prompt = self._css(".jp-InputPrompt", self.cells()[index])[0]
        self.driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", prompt)
        before = prompt.text  # every run changes it: [*], then a new execution count
        prompt.click()
        ActionChains(self.driver).key_down(Keys.SHIFT).send_keys(Keys.ENTER).key_up(Keys.SHIFT).perform()
        self.wait_for(f"cell {index} to run", lambda: prompt.text != before, timeout=30)
        self.wait_idle()

    def validate(self) -> tuple[bool, str]:
        """Click nbgrader's Validate button; return (success, the message shown), dialog closed."""
        button = self._css("jp-button.validate-button, .validate-button jp-button", self.panel)
        assert button, "no nbgrader Validate button in the notebook toolbar (is the labextension enabled?)"
        button[0].click()
        message = self.wait_for("nbgrader's validation result", lambda: self._css("#validation-message"))[0]
        time.sleep(0.5)  # let the dialog finish rendering before the screenshot
        classes = message.get_attribute("class").split()
        return "validation-success" in classes, message.get_attribute("textContent")

    def close_dialog(self) -> None:
        self._css(".jp-Dialog .jp-Dialog-button.jp-mod-accept")[0].click()
        self.wait_for("the dialog to close", lambda: not self._css(".jp-Dialog"), timeout=10)
