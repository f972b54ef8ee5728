"""Fixtures for the JupyterLab end-to-end tests: a JupyterLab server and headless Chromium.

The server is started the way a student starts it, ``python -m cnnbook lab`` (what ``make lab``
runs), from this project's environment, on a loopback port with a random token, with every
per-user Jupyter folder empty and temporary (a fresh student; nothing leaks into ``~/.jupyter``).
The only user setting added is "no autosave" (so running cells never writes outputs into the
committed notebooks). It is always shut down (REST shutdown, then SIGTERM, then SIGKILL), also when a
test fails. Chromium is Debian's ``chromium`` package driven by Python ``playwright`` through
``executable_path``; no browser is ever downloaded.

Without Chromium or playwright the tests skip with the reason, unless ``CNNBOOK_REQUIRE_BROWSER=1``
(set by ``.ci/run``), which turns the skip into a failure so CI cannot pass without them.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "build" / "screenshots"
# Folder (relative to the repository) whose notebooks are opened; override only to debug the
# fixtures against scratch notebooks, e.g. CNNBOOK_BROWSER_NOTEBOOKS=build/browser-dev/notebooks.
NOTEBOOK_DIR = os.environ.get("CNNBOOK_BROWSER_NOTEBOOKS", "notebooks")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",  # containers often have a tiny /dev/shm
]
SERVER_START_TIMEOUT_S = 90
SERVER_STOP_TIMEOUT_S = 15


def _unavailable(reason: str) -> None:
    """Skip (or fail, when CI requires the browser) with ``reason``."""
    if os.environ.get("CNNBOOK_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason} (CNNBOOK_REQUIRE_BROWSER=1, so this is an error, not a skip)", pytrace=False)
    pytest.skip(reason)


def find_chromium() -> str | None:
    """Path of the system Chromium (``CNNBOOK_CHROMIUM`` overrides), or ``None``."""
    explicit = os.environ.get("CNNBOOK_CHROMIUM")
    if explicit:
        return explicit if Path(explicit).is_file() else None
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """Remember each phase's report on the item so fixtures can tell whether the test failed."""
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)


# ------------------------------------------------------------------------------ JupyterLab


@dataclass(frozen=True)
class LabServer:
    """A running JupyterLab: where it listens and how to authenticate."""

    base_url: str
    token: str
    root: Path
    log: Path

    def url(self, path: str) -> str:
        """Absolute URL for ``path`` (no leading slash) with the token attached."""
        sep = "&" if "?" in path else "?"
        return f"{self.base_url}{path}{sep}token={self.token}"

    def api(self, method: str, path: str, timeout: float = 10) -> object:
        """Call the REST API (``path`` like ``api/sessions``); returns the decoded JSON or None."""
        req = urllib.request.Request(
            f"{self.base_url}{path}", method=method, headers={"Authorization": f"token {self.token}"}
        )
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # loopback only
            body = resp.read()
        return json.loads(body) if body else None

    def shutdown_sessions(self) -> None:
        """Shut down every kernel session (keeps one test's kernels from piling up)."""
        for session in self.api("GET", "api/sessions") or []:
            with contextlib.suppress(urllib.error.URLError, OSError):
                self.api("DELETE", f"api/sessions/{session['id']}", timeout=30)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: Path, chars: int = 4000) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")[-chars:]
    except OSError:
        return "(no log)"


def _descendants(pid: int) -> list[int]:
    """Process ids below ``pid`` (kernels run in their own session, so killpg misses them)."""
    try:
        import psutil
    except ImportError:
        return []
    try:
        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return []


def _stop(proc: subprocess.Popen, lab: LabServer | None) -> None:
    """Shut the server down for sure: REST shutdown, SIGTERM to its group, SIGKILL, then orphans."""
    children = _descendants(proc.pid)
    if lab is not None and proc.poll() is None:
        with contextlib.suppress(urllib.error.URLError, OSError):
            lab.shutdown_sessions()
        with contextlib.suppress(urllib.error.URLError, OSError):
            lab.api("POST", "api/shutdown")
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(SERVER_STOP_TIMEOUT_S)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if proc.poll() is not None:
            break
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(SERVER_STOP_TIMEOUT_S)
    for pid in children:  # kernels the server did not take down with it
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def _die_with_parent() -> None:
    """In the child before exec (Linux): SIGTERM the server if pytest itself is killed.

    Finalizers do not run when pytest gets SIGTERM/SIGKILL (a CI timeout, say); the server
    then still stops, and on SIGTERM it shuts its kernels down.
    """
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG = 1


def _write_user_settings(settings: Path) -> None:
    """The one user setting the tests add to a fresh student's empty settings: never autosave.

    The tests run cells in the committed notebooks, which makes them dirty; an autosave would
    write outputs into the repository. Everything else a student sees (no news pop-up, the
    file browser, the launcher) comes from what ``python -m cnnbook lab`` ships, untouched.
    """
    path = settings / "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"autosave": False}), encoding="utf-8")


@pytest.fixture(scope="session")
def chromium_path() -> str:
    """Path of the system Chromium; skips (or fails in CI) when it or playwright is missing."""
    path = find_chromium()
    if path is None:
        _unavailable(
            "no Chromium found: install Debian's `chromium` package "
            "(apt-get install chromium) or set CNNBOOK_CHROMIUM"
        )
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _unavailable(
            "Python playwright is not installed: pip install -e '.[dev]' "
            "(never `playwright install`; the tests use the system Chromium)"
        )
    return path


# Module scope: the server and the browser stop as soon as the browser tests are done, before
# `make test` goes on to execute the notebooks with nbval.
@pytest.fixture(scope="module")
def lab_server(chromium_path: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    """A JupyterLab server on 127.0.0.1 serving the repository, shut down at the end."""
    del chromium_path  # only ordering: no server when the browser is missing
    if importlib.util.find_spec("jupyterlab") is None:
        _unavailable(
            f"JupyterLab is not installed for {sys.executable}: run the tests from the project's venv"
        )
    tmp = tmp_path_factory.mktemp("jupyterlab")
    dirs = {name: tmp / name for name in ("runtime", "config", "data", "settings", "workspaces", "ipython")}
    for d in dirs.values():
        d.mkdir()
    _write_user_settings(dirs["settings"])
    env = dict(os.environ)
    env.update(  # a fresh student: empty Jupyter folders of their own
        JUPYTER_RUNTIME_DIR=str(dirs["runtime"]),
        JUPYTER_CONFIG_DIR=str(dirs["config"]),
        JUPYTER_DATA_DIR=str(dirs["data"]),
        JUPYTERLAB_SETTINGS_DIR=str(dirs["settings"]),
        JUPYTERLAB_WORKSPACES_DIR=str(dirs["workspaces"]),
        IPYTHONDIR=str(dirs["ipython"]),
        CNNBOOK_FAST="1",
        PYTHONUNBUFFERED="1",
    )
    env.pop("MPLBACKEND", None)  # kernels pick the inline backend, as for a student
    token = secrets.token_hex(24)
    port = _free_port()
    log = tmp / "jupyterlab.log"
    # Exactly what `make lab` runs (`python -m cnnbook lab`), plus only what a test needs: no
    # browser of its own, a loopback port, a known token, and `window.jupyterapp` to drive the UI.
    cmd = [
        sys.executable,
        "-m",
        "cnnbook",
        "lab",
        "--",
        "--no-browser",
        "--expose-app-in-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
    lab = LabServer(f"http://127.0.0.1:{port}/", token, ROOT, log)
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with code {proc.returncode}:\n{_tail(log)}")
            try:
                lab.api("GET", "api/status", timeout=2)
                break
            except (urllib.error.URLError, OSError, ValueError):
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"JupyterLab did not answer on {lab.base_url} within "
                        f"{SERVER_START_TIMEOUT_S} s:\n{_tail(log)}"
                    ) from None
                time.sleep(0.5)
        docmanager = lab.api("GET", "lab/api/settings/@jupyterlab/docmanager-extension:plugin")
        assert docmanager["settings"].get("autosave", True) is False, (
            f"autosave is still on (settings dir not used?): {docmanager['settings']}"
        )
        yield lab
    finally:
        _stop(proc, lab)


# --------------------------------------------------------------------------------- browser


@pytest.fixture(scope="module")
def browser(chromium_path: str, tmp_path_factory: pytest.TempPathFactory):
    """Headless system Chromium driven by playwright (closed at the end of the session)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(
            executable_path=chromium_path,
            headless=True,
            args=CHROMIUM_ARGS,
            downloads_path=str(tmp_path_factory.mktemp("downloads")),
        )
        try:
            yield b
        finally:
            b.close()


def _new_page(browser):
    """A fresh context (own cookies and storage) and page; uncaught page errors are collected."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    pg.set_default_timeout(30_000)
    pg.console_errors = []  # type: ignore[attr-defined]
    pg.on("pageerror", lambda exc: pg.console_errors.append(str(exc)))
    return context, pg


def _screenshot_if_failed(pg, request: pytest.FixtureRequest) -> None:
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        name = "".join(c if c.isalnum() or c in "-_." else "_" for c in request.node.name)
        with contextlib.suppress(Exception):
            pg.screenshot(path=str(SCREENSHOTS / f"FAILED-{name}.png"), full_page=True)


def open_lab(pg, lab: LabServer, path: str = "") -> None:
    """Load JupyterLab in a fresh workspace (optionally opening ``path``) and wait for it."""
    tree = f"/tree/{path}" if path else ""
    pg.goto(lab.url(f"lab/workspaces/t{uuid.uuid4().hex[:12]}{tree}"))
    pg.wait_for_function("() => window.jupyterapp !== undefined", timeout=60_000)
    pg.evaluate("async () => { await window.jupyterapp.restored; }")


@pytest.fixture
def page(lab_server: LabServer, browser, request: pytest.FixtureRequest):
    """A fresh browser context and page; on failure a screenshot goes to build/screenshots/."""
    context, pg = _new_page(browser)
    try:
        yield pg
    finally:
        _screenshot_if_failed(pg, request)
        context.close()
        with contextlib.suppress(urllib.error.URLError, OSError):
            lab_server.shutdown_sessions()


@pytest.fixture(scope="module")
def _shared_lab(lab_server: LabServer, browser):
    context, pg = _new_page(browser)
    try:
        open_lab(pg, lab_server)
        yield pg
    finally:
        context.close()


@pytest.fixture
def lab_page(_shared_lab, lab_server: LabServer, request: pytest.FixtureRequest):
    """One JupyterLab page shared by a module's tests (loading JupyterLab costs seconds).

    Page errors are reset for each test; after a failure the screenshot is taken and the page
    reloaded in a fresh workspace, so one test's dialog cannot leak into the next.
    """
    _shared_lab.console_errors.clear()
    try:
        yield _shared_lab
    finally:
        _screenshot_if_failed(_shared_lab, request)
        rep = getattr(request.node, "rep_call", None)
        if rep is None or rep.failed:
            open_lab(_shared_lab, lab_server)
        with contextlib.suppress(urllib.error.URLError, OSError):
            lab_server.shutdown_sessions()
