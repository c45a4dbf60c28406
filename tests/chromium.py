"""Headless Chromium for the page's tests: one-shot runs (``browse``) and a small Chrome
DevTools Protocol client over ``--remote-debugging-pipe`` (``Browser``), so a test can
click, type and read the page without a websocket library or a downloaded browser.

Chromium is Debian's package (``apt-get install -y chromium``, as ``.ci/run`` does).
In CI (``CI=true``) a missing browser fails the test instead of skipping it.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import itertools
import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support import wait_until

_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
)


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.environ.get("CI"):
        pytest.fail("chromium is not installed and CI is set: apt-get install -y chromium")
    pytest.skip("chromium is not installed (apt-get install -y chromium)")


def browse(url: str, tmp_path: Path, *mode: str) -> subprocess.CompletedProcess[str]:
    """One Chromium run on ``url`` with ``mode`` (``--dump-dom``, ``--screenshot=...``)."""
    return subprocess.run(
        [
            chromium(),
            *_FLAGS,
            f"--user-data-dir={tmp_path / 'chromium-profile'}",
            "--window-size=1280,900",
            *mode,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _high(fd: int) -> int:
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
    os.close(fd)
    return moved


class BrowserError(AssertionError):
    pass


class Browser:
    """One headless Chromium with one page, driven over the DevTools pipe.

    Chromium reads commands from fd 3 and writes answers to fd 4, each a JSON text
    ended by NUL; bash puts our pipe ends on those numbers.
    """

    def __init__(self, tmp_path: Path, width: int = 1280, height: int = 900) -> None:
        to_child, ours_out = os.pipe()
        ours_in, from_child = os.pipe()
        # Out of the way of 3 and 4, which the shell is about to fill.
        to_child, from_child = (_high(fd) for fd in (to_child, from_child))
        command = [
            "/bin/bash",
            "-c",
            f'exec "$0" "$@" 3<&{to_child} 4>&{from_child} {to_child}<&- {from_child}>&-',
            chromium(),
            *_FLAGS,
            "--remote-debugging-pipe",
            f"--user-data-dir={tmp_path / 'cdp-profile'}",
            f"--window-size={width},{height}",
            "about:blank",
        ]
        self._log = (tmp_path / "chromium.log").open("wb")
        self.proc = subprocess.Popen(
            command,
            pass_fds=(to_child, from_child),
            stdout=subprocess.DEVNULL,
            stderr=self._log,
        )
        os.close(to_child)
        os.close(from_child)
        self._out = os.fdopen(ours_out, "wb", buffering=0)
        self._in = os.fdopen(ours_in, "rb", buffering=0)
        self._ids = itertools.count(1)
        self._answers: dict[int, dict[str, Any]] = {}
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]
        self.page("Page.enable")
        self.page("Runtime.enable")
        self.resize(width, height)

    def _read(self) -> None:
        buffer = b""
        while True:
            chunk = self._in.read(65536)
            if not chunk:
                with self._cond:
                    self._answers[0] = {"error": {"message": "chromium closed the pipe"}}
                    self._cond.notify_all()
                return
            buffer += chunk
            while b"\0" in buffer:
                message, buffer = buffer.split(b"\0", 1)
                data = json.loads(message)
                if "id" in data:
                    with self._cond:
                        self._answers[data["id"]] = data
                        self._cond.notify_all()

    def send(
        self, method: str, params: dict[str, Any] | None = None, session: str | None = None
    ) -> dict[str, Any]:
        ident = next(self._ids)
        message: dict[str, Any] = {"id": ident, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        self._out.write(json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + 60
        with self._cond:
            while ident not in self._answers and 0 not in self._answers:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BrowserError(f"no answer from chromium to {method} within 60s")
                self._cond.wait(left)
            answer = self._answers.pop(ident, None) or self._answers[0]
        if "error" in answer:
            raise BrowserError(f"{method}: {answer['error'].get('message')}")
        result: dict[str, Any] = answer.get("result", {})
        return result

    def page(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.send(method, params, self.session)

    def resize(self, width: int, height: int) -> None:
        self.page(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 800},
        )

    def js(self, expression: str) -> Any:
        """The value of a script in the page (a promise is awaited)."""
        answer = self.page(
            "Runtime.evaluate",
            {"expression": expression, "awaitPromise": True, "returnByValue": True},
        )
        if "exceptionDetails" in answer:
            details = answer["exceptionDetails"]
            raise BrowserError(f"{expression!r} threw: {details.get('exception', details)}")
        return answer["result"].get("value")

    def goto(self, url: str) -> None:
        self.page("Page.navigate", {"url": url})
        self.wait_for("document.readyState === 'complete' && location.href !== 'about:blank'")

    def wait_for(self, expression: str, timeout: float = 60, what: str = "") -> Any:
        """Poll a script until it is truthy; fail naming it, and the page, at the deadline."""

        def value() -> Any:
            try:
                return self.js(expression)
            except BrowserError:  # the page is between documents
                return None

        try:
            return wait_until(value, timeout=timeout, interval=0.1, what=what or expression)
        except AssertionError:
            seen = self.js("location.href + ': ' + (document.body?.innerText ?? '')")
            raise BrowserError(
                f"timed out after {timeout}s waiting for {what or expression}; "
                f"the page: {str(seen)[:1500]}"
            ) from None

    def text(self, selector: str) -> str:
        found = self.js(f"document.querySelector({json.dumps(selector)})?.innerText ?? ''")
        return str(found)

    def click(self, selector: str) -> None:
        self.wait_for(f"!!document.querySelector({json.dumps(selector)})", what=selector)
        self.js(f"document.querySelector({json.dumps(selector)}).click()")

    def screenshot(self, path: Path, full: bool = True) -> None:
        params: dict[str, Any] = {"format": "png", "captureBeyondViewport": full}
        data = self.page("Page.captureScreenshot", params)["data"]
        path.write_bytes(base64.b64decode(data))

    def close(self) -> None:
        with contextlib.suppress(BrowserError):
            self.send("Browser.close")
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=30)
        self._out.close()
        self._reader.join(timeout=10)
        self._in.close()
        self._log.close()
