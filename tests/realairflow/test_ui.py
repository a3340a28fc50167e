"""The provider in Airflow's own UI, in a real (headless) browser.

Why a browser: the REST API shows that extra links and the connection form metadata exist, but not
that the React UI renders them: that the task instance page has the two buttons pointing at the
request and the video, and that choosing the ``segmind`` type in Admin -> Connections shows our
labels and placeholders. Headless Chromium (the Debian ``chromium`` package, loopback only) is
driven over the Chrome DevTools Protocol with the ``websockets`` client; screenshots go to
``docs/screenshots/`` (committed, named in the README).

The deployment is the one ``test_failures_and_secrets.py`` uses (same emulators, same env).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests

from .conftest import DeploymentFactory
from .harness import REPO_ROOT, AirflowDeployment
from .test_failures_and_secrets import Policy, start_policy_deployment

pytestmark = pytest.mark.realairflow

#: Where the PNGs go: the committed docs folder (so a run refreshes them), or REALAIRFLOW_SCREENSHOT_DIR.
SCREENSHOTS = Path(os.environ.get("REALAIRFLOW_SCREENSHOT_DIR") or REPO_ROOT / "docs" / "screenshots")
#: Exactly these flags (plus a fresh profile and the DevTools port): no network but loopback.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)

#: DevTools errors of an evaluation cut short by a navigation (e.g. the UI's redirect to its sign-in page).
NAVIGATED_AWAY = ("Inspected target navigated or closed", "Execution context was destroyed", "Cannot find context")


def _chromium() -> str | None:
    return os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


class Browser:
    """A headless Chromium driven over the DevTools Protocol (one page, synchronous calls)."""

    def __init__(self, executable: str, *, width: int = 1440, height: int = 1000) -> None:
        from websockets.sync.client import connect

        self.profile = Path(tempfile.mkdtemp(prefix="surge-ui-chromium-"))
        self._stderr = (self.profile.parent / f"{self.profile.name}.stderr").open("w")
        self.proc = subprocess.Popen(
            [
                executable,
                *CHROMIUM_FLAGS,
                f"--user-data-dir={self.profile}",
                "--remote-debugging-port=0",
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
            start_new_session=True,
        )
        self._next_id = 0
        try:
            port = self._devtools_port()
            targets = requests.get(f"http://127.0.0.1:{port}/json/list", timeout=10).json()
            page = next(t for t in targets if t["type"] == "page")
            self.ws = connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=10)
            self.send("Page.enable")
            self.send("Runtime.enable")
            self.viewport(width, height)
        except BaseException:
            self.close()
            raise

    def _devtools_port(self) -> int:
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().strip()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"chromium did not start (exit {self.proc.poll()})")
            time.sleep(0.1)
        return int(port_file.read_text().split()[0])

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        self._next_id += 1
        call_id = self._next_id
        self.ws.send(json.dumps({"id": call_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv(timeout=60))
            if message.get("id") == call_id:  # events (no id) are not needed here
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return dict(message["result"])

    def viewport(self, width: int, height: int) -> None:
        self.send("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)

    def eval(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression[:200]}: {str(result['exceptionDetails'])[:1000]}")
        return result["result"].get("value")

    def wait(self, expression: str, *, timeout: float = 45.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            try:
                value = self.eval(expression)
            except RuntimeError as exc:  # the page navigated mid-evaluation (a redirect): look again
                if not any(m in str(exc) for m in NAVIGATED_AWAY):
                    raise
                value = None
            if value:
                return value
            if time.monotonic() > deadline:
                text = self.eval("document.body ? document.body.innerText.slice(0, 3000) : ''")
                raise TimeoutError(f"timed out waiting for {expression!r} at {self.eval('location.href')}:\n{text}")
            time.sleep(0.25)

    def goto(self, url: str) -> None:
        self.send("Page.navigate", url=url)
        self.wait("document.readyState === 'complete'")

    def click(self, element_js: str) -> None:
        """A real mouse click in the middle of the element ``element_js`` evaluates to."""
        x, y = self.wait(
            f"(() => {{ const e = {element_js}; if (!e) return null; e.scrollIntoView({{block: 'center'}});"
            " const r = e.getBoundingClientRect();"
            " return r.width ? [r.x + r.width / 2, r.y + r.height / 2] : null; })()"
        )
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)

    def type(self, text: str) -> None:
        self.send("Input.insertText", text=text)

    def press_enter(self) -> None:
        for kind in ("keyDown", "keyUp"):
            self.send("Input.dispatchKeyEvent", type=kind, key="Enter", code="Enter", windowsVirtualKeyCode=13)

    def screenshot(self, path: Path, *, timeout: float = 15.0) -> bytes:
        """Save a PNG once the page has settled: two captures in a row are identical (no animation)."""
        self.eval("document.activeElement && document.activeElement.blur && document.activeElement.blur()")
        deadline = time.monotonic() + timeout
        previous = b""
        while True:
            data = base64.b64decode(self.send("Page.captureScreenshot", format="png")["data"])
            if data == previous or time.monotonic() > deadline:
                break
            previous = data
            time.sleep(0.4)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return data

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.send("Browser.close")
        with contextlib.suppress(Exception):
            self.ws.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self._stderr.close()
        shutil.rmtree(self.profile, ignore_errors=True)
        Path(self._stderr.name).unlink(missing_ok=True)


@pytest.fixture(scope="module")
def policy(airflow_deployment: DeploymentFactory, session_emulator: Callable[..., Any]) -> Policy:
    return start_policy_deployment(airflow_deployment, session_emulator)


@pytest.fixture(scope="module")
def browser(policy: Policy) -> Iterator[Browser]:
    """Chromium, logged in to the Airflow UI through the simple auth manager's sign-in form."""
    executable = _chromium()
    if executable is None:
        pytest.fail("chromium is not installed: apt-get install -y chromium (see .ci/run)")
    browser = Browser(executable)
    try:
        sign_in(browser, policy.deployment)
        yield browser
    finally:
        browser.close()


def sign_in(browser: Browser, deployment: AirflowDeployment) -> None:
    """Through the simple auth manager's sign-in form, as a person would (also used by test_approval)."""
    browser.goto(f"{deployment.base_url}/")
    browser.wait("location.pathname.startsWith('/auth/login')")
    browser.click("document.querySelector('input[name=username]')")
    browser.type(deployment.settings.username)
    browser.click("document.querySelector('input[name=password]')")
    browser.type(deployment.settings.password)
    browser.click("document.querySelector('button[type=submit]:not([disabled])')")
    browser.wait("!location.pathname.startsWith('/auth')")


def _anchor(text: str) -> str:
    return f"Array.from(document.querySelectorAll('a')).find(a => a.innerText.trim() === {json.dumps(text)})"


def test_task_instance_page_shows_the_extra_links(policy: Policy, browser: Browser) -> None:
    dag_id, task_id = "surge_policy_ui", "render_video"
    client = policy.client
    run = policy.deployment.run_dag(dag_id, {"image_url": policy.main.sample_url("athlete-2")}, timeout=150)
    run_id = run["dag_run_id"]
    assert run["state"] == "success"
    xcom = client.xcoms(dag_id, run_id, task_id)
    request_id = xcom["request_id"]
    assert xcom["output_url"] == f"{policy.main.url}/_emulator/outputs/{request_id}.mp4"
    assert xcom["status_url"] == f"{policy.main.url}/v2/requests/{request_id}/status"
    links = client.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/links")
    assert links["extra_links"] == {"Segmind output": xcom["output_url"], "Segmind request": xcom["status_url"]}

    browser.viewport(1440, 1000)
    browser.goto(f"{policy.deployment.base_url}/dags/{dag_id}/runs/{quote(run_id)}/tasks/{task_id}/details")
    browser.wait(f"!!{_anchor('Segmind output')} && !!{_anchor('Segmind request')}")
    hrefs = {name: browser.eval(f"{_anchor(name)}.href") for name in ("Segmind output", "Segmind request")}
    assert hrefs == {"Segmind output": xcom["output_url"], "Segmind request": xcom["status_url"]}
    page = browser.eval("document.body.innerText")
    assert "Extra Links" in page and "MuscleSurgeOperator" in page and "Success" in page
    # The video link really serves the MP4 (public output URL, no key needed).
    video = requests.get(hrefs["Segmind output"], timeout=10)
    assert video.status_code == 200 and video.content[4:8] == b"ftyp"
    png = browser.screenshot(SCREENSHOTS / "task-instance-extra-links.png")
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000


def test_connection_form_for_the_segmind_type(policy: Policy, browser: Browser) -> None:
    meta = {m["connection_type"]: m for m in policy.client.get("/ui/connections/hook_meta")}
    assert meta["segmind"]["hook_name"] == "Segmind"

    browser.viewport(1440, 1000)
    browser.goto(f"{policy.deployment.base_url}/connections")
    add = "Array.from(document.querySelectorAll('button')).find(b => b.innerText.trim() === 'Add Connection')"
    browser.click(add)
    browser.wait("!!document.querySelector('[role=dialog] input[role=combobox]')")
    browser.click("document.querySelector('[role=dialog] input[name=connection_id]')")
    browser.type("segmind_default")
    browser.click("document.querySelector('[role=dialog] input[role=combobox]')")
    browser.type("Segmind")
    browser.wait("Array.from(document.querySelectorAll('[role=option]')).some(o => o.innerText.trim() === 'Segmind')")
    browser.press_enter()
    browser.wait("!!document.querySelector('[role=dialog] input[name=password]')")

    dialog = "document.querySelector('[role=dialog]')"
    text = browser.eval(f"{dialog}.innerText")
    assert "API key" in text and "API base URL" in text and "Port (optional)" in text, text
    for hidden in ("Login", "Schema"):
        assert f"\n{hidden}\n" not in f"\n{text}\n", f"{hidden} is hidden for the segmind type"
    placeholders = browser.eval(
        f"Object.fromEntries(Array.from({dialog}.querySelectorAll('input')).filter(e => e.name)"
        ".map(e => [e.name, [e.type, e.placeholder]]))"
    )
    assert placeholders["host"] == ["text", "https://api.segmind.com"]
    assert placeholders["password"] == ["password", "SG_... (from cloud.segmind.com/console/api-keys)"]
    png = browser.screenshot(SCREENSHOTS / "segmind-connection-form.png")
    assert png[:8] == b"\x89PNG\r\n\x1a\n"

    # The extra fields from conn-fields: labels and descriptions (Airflow 3.3 renders no placeholders there).
    browser.viewport(1440, 1100)
    browser.click(f"Array.from({dialog}.querySelectorAll('button')).find(b => b.innerText.trim() === 'Extra Fields')")
    browser.wait(f"{dialog}.innerText.includes('Upload URL')")
    text = browser.eval(f"{dialog}.innerText")
    labels = (
        "Upload URL",
        "Max retries",
        "Max retry time (s)",
        "Call time limit (s)",
        "Max backoff (s)",
        "Polling schedule",
    )
    for label in labels:
        assert label in text, text
    assert "Retries of 429/5xx/connection errors per call (default 6)." in text
    names = browser.eval(f"Array.from({dialog}.querySelectorAll('input')).map(e => e.name)")
    assert {"element_upload_url", "element_max_retries", "element_timeout", "element_max_backoff"} <= set(names)
    browser.screenshot(SCREENSHOTS / "segmind-connection-form-extra-fields.png")
