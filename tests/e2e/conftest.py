"""Browser fixtures: Debian's Chromium through Playwright, and a watchful `page`.

Every `page` records console errors, uncaught page errors, dialogs (alert/confirm/prompt,
dismissed at once) and requests that leave the loopback interface. Any of them fails the test
that used the page, so injected script, JS errors and CDN loads are caught in every e2e test.
Mark e2e test modules with `pytestmark = pytest.mark.e2e`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Dialog, Page, Request, sync_playwright

from tests.e2e.harness import CHROMIUM, launch_chromium

LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}


class BrowserWatch:
    """Collects what must never happen on a page."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.problems: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))
        page.on("dialog", self._dialog)
        page.on("request", self._request)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            where = message.location.get("url", "")
            self.problems.append(f"console error: {message.text} ({where})")

    def _dialog(self, dialog: Dialog) -> None:
        self.problems.append(f"{dialog.type} dialog: {dialog.message!r}")
        dialog.dismiss()

    def _request(self, request: Request) -> None:
        url = urlsplit(request.url)
        if url.scheme in {"http", "https", "ws", "wss"} and url.hostname not in LOOPBACK:
            self.problems.append(f"request left the machine: {request.url}")

    def settle(self) -> None:
        """Let late events (an onerror handler, a failed load) arrive before judging."""
        if not self.page.is_closed():
            self.page.wait_for_timeout(150)

    def report(self) -> str:
        return "browser problems:\n  " + "\n  ".join(self.problems)


WATCH = pytest.StashKey[BrowserWatch]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    """Fail a test whose page saw a browser problem, even if its assertions passed."""
    try:
        result = yield
    except BaseException as exc:
        watch = item.stash.get(WATCH, None)
        if watch is not None and watch.problems:
            exc.add_note(watch.report())
        raise
    watch = item.stash.get(WATCH, None)
    if watch is not None:
        watch.settle()
        if watch.problems:
            pytest.fail(watch.report(), pytrace=False)
    return result


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One Chromium per module: Playwright's sync API keeps an event loop running in the
    main thread while it is open, which would break later async (NiceGUI `user`) tests."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(10_000)
    page = context.new_page()
    request.node.stash[WATCH] = BrowserWatch(page)
    yield page
    context.close()
