"""A tiny synchronous driver for headless Chromium over the DevTools protocol, for tests.

No new dependency and nothing that downloads a browser: it starts the system's Chromium (Debian's
``/usr/bin/chromium``) with ``--remote-debugging-pipe``, which reads NUL-terminated JSON commands
on file descriptor 3 and writes NUL-terminated JSON replies and events on file descriptor 4. A pipe
needs no free port, no websocket client and no HTTP endpoint polling, and it dies with the process.

    with Browser() as browser:
        browser.open(page.as_uri())
        browser.wait_for("document.readyState === 'complete'")
        assert browser.evaluate("document.title") == "..."

Every read has a timeout, so a hung browser fails the test instead of hanging CI, and ``close``
always kills the process (and its process group) and removes the temporary profile.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

CANDIDATES = ("chromium", "chromium-browser", "google-chrome")


def find_chromium() -> str | None:
    """Path of a Chromium executable on PATH, or None."""
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


class BrowserError(RuntimeError):
    """Chromium exited, timed out, or answered a command with an error."""


class Browser:
    """One headless Chromium with one page, driven synchronously.

    Args:
        executable: Chromium to run; the first of ``chromium``, ``chromium-browser``,
            ``google-chrome`` on PATH when None.
        width, height: viewport in CSS pixels (also the screenshot size).
        timeout: seconds any single command may take before :class:`BrowserError`.
    """

    def __init__(self, executable: str | None = None, *, width: int = 1100, height: int = 900, timeout: float = 30):
        executable = executable or find_chromium()
        if executable is None:
            raise BrowserError("no Chromium on PATH (Debian: apt-get install chromium)")
        self.timeout = timeout
        self.events: list[dict[str, Any]] = []
        self._next_id = 0
        self._buffer = b""
        self._profile = tempfile.mkdtemp(prefix="vadbench-chromium-")
        # Chromium wants the command pipe on fd 3 and the reply pipe on fd 4 exactly. pass_fds keeps
        # descriptors under their own numbers only, so the ends are moved to fds >= 10 here and
        # dup2'ed onto 3 and 4 in the child. The original ends stay open until Popen returns: if 3 or
        # 4 were free, they are what holds them, so subprocess's own error pipe can never land there.
        cmd_read, cmd_write = os.pipe()
        reply_read, reply_write = os.pipe()
        child_in = fcntl.fcntl(cmd_read, fcntl.F_DUPFD_CLOEXEC, 10)
        child_out = fcntl.fcntl(reply_write, fcntl.F_DUPFD_CLOEXEC, 10)

        def to_fds_3_and_4() -> None:  # runs in the child between fork and exec
            os.dup2(child_in, 3)  # dup2 clears close-on-exec on the copy
            os.dup2(child_out, 4)

        args = [
            executable,
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--remote-debugging-pipe",
            f"--user-data-dir={self._profile}",
            "--autoplay-policy=no-user-gesture-required",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--mute-audio",
            f"--window-size={width},{height}",
            "about:blank",
        ]
        try:
            self.process = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                close_fds=False,  # only fds 3 and 4 (cleared close-on-exec by dup2) are inherited
                preexec_fn=to_fds_3_and_4,
                start_new_session=True,  # its renderer and GPU processes die with the group in close()
            )
        except BaseException:
            for fd in (cmd_read, cmd_write, reply_read, reply_write, child_in, child_out):
                os.close(fd)
            shutil.rmtree(self._profile, ignore_errors=True)
            raise
        for fd in (cmd_read, reply_write, child_in, child_out):
            os.close(fd)
        self._write_fd, self._read_fd = cmd_write, reply_read
        try:
            self._attach(width, height)
        except BaseException:
            self.close()
            raise

    def _attach(self, width: int, height: int) -> None:
        deadline = time.monotonic() + self.timeout
        while True:
            pages = [t for t in self.send("Target.getTargets", session=False)["targetInfos"] if t["type"] == "page"]
            if pages:
                break
            if time.monotonic() > deadline:
                raise BrowserError("Chromium started but opened no page target")
            time.sleep(0.05)
        reply = self.send("Target.attachToTarget", {"targetId": pages[0]["targetId"], "flatten": True}, session=False)
        self.session_id = reply["sessionId"]
        self.send("Page.enable")
        self.send("Runtime.enable")
        self.send("Log.enable")
        self.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )

    # -- protocol ---------------------------------------------------------------------------------

    def send(self, method: str, params: dict[str, Any] | None = None, *, session: bool = True) -> dict[str, Any]:
        """Send one DevTools command and return its ``result``; events that arrive meanwhile are kept
        in :attr:`events`."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = self.session_id
        data = json.dumps(message).encode() + b"\0"
        while data:
            _, writable, _ = select.select([], [self._write_fd], [], self.timeout)
            if not writable:
                raise BrowserError(f"{method}: Chromium did not read the command within {self.timeout} s")
            try:
                data = data[os.write(self._write_fd, data) :]
            except BrokenPipeError:
                raise BrowserError(f"{method}: Chromium exited (rc {self._exit_code()})") from None
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._read_message(deadline, method)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            if "method" in reply:
                self.events.append(reply)

    def _read_message(self, deadline: float, method: str) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            readable, _, _ = select.select([self._read_fd], [], [], max(left, 0))
            if not readable:
                raise BrowserError(f"{method}: no reply from Chromium within {self.timeout} s")
            chunk = os.read(self._read_fd, 1 << 20)
            if not chunk:
                raise BrowserError(f"{method}: Chromium exited (rc {self._exit_code()})")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def _exit_code(self) -> int | None:
        try:
            return self.process.wait(timeout=1)
        except subprocess.TimeoutExpired:
            return None

    # -- what tests use ---------------------------------------------------------------------------

    def open(self, url: str, timeout: float | None = None) -> None:
        """Navigate to ``url`` and wait until its document has loaded."""
        reply = self.send("Page.navigate", {"url": url})
        if reply.get("errorText"):
            raise BrowserError(f"{url}: {reply['errorText']}")
        self.wait_for(f"location.href === {json.dumps(url)} && document.readyState === 'complete'", timeout=timeout)

    def evaluate(self, expression: str) -> Any:
        """Value of a JavaScript expression in the page (a promise is awaited); a thrown exception
        raises :class:`BrowserError` with its description."""
        reply = self.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True, "userGesture": True},
        )
        if "exceptionDetails" in reply:
            details = reply["exceptionDetails"]
            description = details.get("exception", {}).get("description") or details.get("text")
            raise BrowserError(f"{expression[:200]!r} threw: {description}")
        return reply["result"].get("value")

    def wait_for(self, condition: str, timeout: float | None = None, interval: float = 0.05) -> Any:
        """Poll a JavaScript expression until it is truthy and return its value."""
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(condition)
            if value:
                return value
            if time.monotonic() > deadline:
                raise BrowserError(f"{condition!r} still false after {timeout} s")
            time.sleep(interval)

    def click(self, x: float, y: float) -> None:
        """Left click at viewport coordinates (CSS pixels): move, press, release."""
        common = {"x": x, "y": y, "button": "left", "clickCount": 1}
        self.send("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": x, "y": y})
        self.send("Input.dispatchMouseEvent", {"type": "mousePressed", **common, "buttons": 1})
        self.send("Input.dispatchMouseEvent", {"type": "mouseReleased", **common, "buttons": 0})

    def screenshot(self, path: str | Path) -> Path:
        """Save the viewport as PNG."""
        data = self.send("Page.captureScreenshot", {"format": "png"})["data"]
        path = Path(path)
        path.write_bytes(base64.b64decode(data))
        return path

    def errors(self) -> list[str]:
        """Uncaught exceptions, console errors and error log entries the page produced so far."""
        found = []
        for event in self.events:
            params = event.get("params", {})
            if event["method"] == "Runtime.exceptionThrown":
                details = params["exceptionDetails"]
                found.append(details.get("exception", {}).get("description") or details.get("text", ""))
            elif event["method"] == "Runtime.consoleAPICalled" and params.get("type") == "error":
                found.append(" ".join(str(a.get("value", a.get("description", ""))) for a in params["args"]))
            elif event["method"] == "Log.entryAdded" and params["entry"].get("level") == "error":
                found.append(f"{params['entry'].get('url', '')}: {params['entry'].get('text', '')}")
        return found

    def close(self) -> None:
        """Kill Chromium (its whole process group) and remove the temporary profile; safe to call twice."""
        if getattr(self, "_closed", False):
            return
        self._closed = True
        for fd in (getattr(self, "_write_fd", None), getattr(self, "_read_fd", None)):
            if fd is not None:
                os.close(fd)
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=10)
        shutil.rmtree(self._profile, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
