"""Browser tests' plumbing: a NiceGUI app in a real process, and Debian's Chromium.

`start_server("tests.e2e.canvas_app")` runs `python -m tests.e2e.canvas_app` on a free
loopback port (or the `port` given: a restart on the same address) and returns once the app
answers HTTP; `AppServer.kill()` ends it with SIGKILL, like a power cut. The app reads where
to listen from `E2E_HOST` / `E2E_PORT` (see `serve_args()`); any other settings go in `env`.
The same helper starts the full studio once a module wraps it that way.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)


def serve_args() -> dict[str, Any]:
    """`ui.run()` arguments for an app started by `start_server` (host, port, no reload)."""
    return {
        "host": os.environ.get("E2E_HOST", "127.0.0.1"),
        "port": int(os.environ["E2E_PORT"]),
        "reload": False,
        "show": False,
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class AppServer:
    """A running app process; `stop()` ends it (SIGTERM, then SIGKILL after `grace_s`)."""

    base_url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    grace_s: float = 5.0
    _log_file: Any = field(default=None, repr=False)

    @property
    def port(self) -> int:
        return int(self.base_url.rsplit(":", 1)[1])

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs. Waits for the process, so its pid is gone (a
        zombie would still look alive to the run leases' dead-owner check)."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(self.grace_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log_file is not None:
            self._log_file.close()
        self.log_path.unlink(missing_ok=True)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status < 500)
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except OSError:
        return False


def start_server(
    module: str,
    env: Mapping[str, str] | None = None,
    *,
    ready_path: str = "/",
    timeout_s: float = 30.0,
    port: int | None = None,
) -> AppServer:
    """Run `python -m module` on `port` (default: a free loopback port); return when
    `ready_path` answers."""
    port = port or free_port()
    log_file = tempfile.NamedTemporaryFile(prefix="e2e-server-", suffix=".log", delete=False)  # noqa: SIM115
    full_env = {**os.environ, **(env or {}), "E2E_HOST": "127.0.0.1", "E2E_PORT": str(port)}
    full_env.pop("PYTEST_CURRENT_TEST", None)  # else NiceGUI thinks it runs inside pytest
    process = subprocess.Popen(
        [sys.executable, "-m", module],
        cwd=ROOT,
        env=full_env,
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )
    server = AppServer(f"http://127.0.0.1:{port}", process, Path(log_file.name), _log_file=log_file)
    deadline = time.monotonic() + timeout_s
    while not _answers(server.base_url + ready_path):
        if process.poll() is not None or time.monotonic() > deadline:
            output = server.log()
            server.stop()
            raise RuntimeError(f"{module} did not start on port {port}:\n{output}")
        time.sleep(0.1)
    return server


@contextlib.contextmanager
def running_server(module: str, env: Mapping[str, str] | None = None) -> Iterator[AppServer]:
    """`start_server` as a context manager that always stops the process."""
    server = start_server(module, env)
    try:
        yield server
    finally:
        server.stop()


# Headless Chromium preloads its omnibox popup (WebUI pages in a renderer of their own) for
# every new window, that is for every browser context: 200-750 ms of CPU on the machine's two
# cores while the page under test loads, and nothing a page can see. Chromium keeps only the
# last `--disable-features`, and Playwright passes a list of its own, so these extend that
# list (read from the browser's command line, see `launch_chromium`).
QUIET_FEATURES = ("WebUIOmniboxPopup", "WebUIOmniboxAimPopup", "WebUIOmniboxFullPopup")
_disabled_features: list[str] | None = None  # Playwright's list + QUIET_FEATURES, once known


def browser_switch(browser: Any, name: str) -> list[str]:
    """The comma-separated values of the browser process's `name=` switch (Linux /proc)."""
    cdp = browser.new_browser_cdp_session()
    try:
        processes = cdp.send("SystemInfo.getProcessInfo")
    finally:
        cdp.detach()
    pid = next(p["id"] for p in processes["processInfo"] if p["type"] == "browser")
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    values = [arg.split("=", 1)[1] for arg in argv if arg.startswith(f"{name}=")]
    return values[-1].split(",") if values else []


def launch_chromium(playwright: Any) -> Any:
    """Debian's Chromium, headless, through Playwright's Python client, without the omnibox
    popup's renderer (QUIET_FEATURES). The first launch in a process reads Playwright's
    `--disable-features` and launches again with QUIET_FEATURES added to them."""
    global _disabled_features
    for _ in range(2):
        args = list(CHROMIUM_ARGS)
        if _disabled_features is not None:
            args.append("--disable-features=" + ",".join(_disabled_features))
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
        disabled = browser_switch(browser, "--disable-features")
        if set(QUIET_FEATURES) <= set(disabled):
            return browser
        browser.close()
        _disabled_features = list(dict.fromkeys([*disabled, *QUIET_FEATURES]))
    raise RuntimeError(f"Chromium ignored --disable-features={','.join(QUIET_FEATURES)}")
