"""A headless Chromium driven over the DevTools protocol (its ``--remote-debugging-pipe``: JSON messages ending in
NUL on file descriptors 3 and 4), so a test can wait for a page to reach a state in real time. ``--dump-dom`` with
``--virtual-time-budget`` cannot: its virtual time runs out while the page awaits a fetch or a blob read on a
loaded machine (measured: 3 of 6 dumps before the matte arrived with both cores busy)."""
from __future__ import annotations

import base64
import fcntl
import json
import os
import shutil
import subprocess
import time

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)


def _above_4(fd: int) -> int:
    """``fd`` moved to a descriptor of 10 or more, clear of the 3 and 4 that bash assigns below."""
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
    os.close(fd)
    return moved


class HeadlessPage:
    """One page of a fresh headless Chromium (``width`` x ``height`` CSS px); use as a context manager."""

    def __init__(self, width: int = 1280, height: int = 1000):
        to_browser, from_us = os.pipe()
        to_us, from_browser = os.pipe()
        to_browser, from_browser = _above_4(to_browser), _above_4(from_browser)
        # bash (dash takes one-digit descriptors only) puts the pipes at the descriptors Chromium reads (3) and
        # writes (4); no Python runs in the child between fork and exec, unsafe while the test's server threads run
        redirect = f'exec "$0" "$@" 3<&{to_browser} 4>&{from_browser} {to_browser}<&- {from_browser}>&-'
        self._process = subprocess.Popen(
            ["bash", "-c", redirect, CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             "--remote-debugging-pipe", "about:blank"], pass_fds=(to_browser, from_browser),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_browser)
        os.close(from_browser)
        self._out, self._in, self._id, self._buffer = os.fdopen(from_us, "wb"), to_us, 0, b""
        target = self._call("Target.createTarget", url="about:blank")["targetId"]
        self._session = self._call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self._call("Emulation.setDeviceMetricsOverride", self._session, width=width, height=height,
                   deviceScaleFactor=1, mobile=False)

    def _call(self, method: str, session: str | None = None, **params) -> dict:
        self._id += 1
        message = {"id": self._id, "method": method, "params": params, **({"sessionId": session} if session else {})}
        self._out.write(json.dumps(message).encode() + b"\0")
        self._out.flush()
        while True:  # events and other replies are skipped
            while b"\0" not in self._buffer:
                chunk = os.read(self._in, 1 << 20)
                if not chunk:
                    raise RuntimeError("Chromium closed its DevTools pipe")
                self._buffer += chunk
            raw, self._buffer = self._buffer.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]

    def open(self, url: str) -> None:
        self._call("Page.navigate", self._session, url=url)

    def evaluate(self, expression: str):
        """The value of a JavaScript expression in the page."""
        return self._call("Runtime.evaluate", self._session, expression=expression,
                          returnByValue=True)["result"].get("value")

    def wait_for(self, expression: str, timeout_s: float = 120.0) -> bool:
        """Poll until the expression is truthy (True) or the time is up (False)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.evaluate(expression):
                return True
            time.sleep(0.1)
        return False

    def html(self) -> str:
        return self.evaluate("document.documentElement.outerHTML")

    def screenshot(self) -> bytes:
        """The viewport as PNG bytes."""
        return base64.b64decode(self._call("Page.captureScreenshot", self._session, format="png")["data"])

    def __enter__(self) -> HeadlessPage:
        return self

    def __exit__(self, *exc) -> None:
        try:
            self._call("Browser.close")
        except (RuntimeError, OSError):
            pass
        self._out.close()
        os.close(self._in)
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
