"""Browser fixtures: Debian's Chromium through Playwright, and a watchful `page`.

Every `page` records console errors, uncaught page errors, dialogs (alert/confirm/prompt,
dismissed at once) and requests that leave the loopback interface. Any of them fails the test
that used the page, so injected script, JS errors and CDN loads are caught in every e2e test.
`new_page()` opens more watched pages: another person (a fresh browser context) or another
tab of the same session (`new_page(like=page)`). A test that stops the server on purpose
wraps the gap in `watch.outage(base_url)`: only the failed connections to that server in
that window are forgiven. Mark e2e test modules with `pytestmark = pytest.mark.e2e`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Dialog,
    Page,
    Request,
    sync_playwright,
)

from tests.e2e.harness import CHROMIUM, launch_chromium

LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}
# what a browser logs while the server it talks to is down (socket.io retries, a reload)
_CONNECTION_LOST = re.compile(r"net::ERR_(CONNECTION_REFUSED|CONNECTION_RESET|EMPTY_RESPONSE)")


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

    @contextmanager
    def outage(self, base_url: str) -> Iterator[None]:
        """Forgive the failed connections to `base_url` logged inside this block (the test
        stopped that server on purpose); every other problem still counts."""
        before = len(self.problems)
        yield
        late = [
            p
            for p in self.problems[before:]
            if not (_CONNECTION_LOST.search(p) and f"({base_url}" in p)
        ]
        self.problems[before:] = late


WATCH = pytest.StashKey[BrowserWatch]()
MORE_WATCHES = pytest.StashKey[list[BrowserWatch]]()


def _watches(item: pytest.Item) -> list[BrowserWatch]:
    first = item.stash.get(WATCH, None)
    return ([first] if first is not None else []) + item.stash.get(MORE_WATCHES, [])


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    """Fail a test whose page saw a browser problem, even if its assertions passed."""
    try:
        result = yield
    except BaseException as exc:
        for watch in _watches(item):
            if watch.problems:
                exc.add_note(watch.report())
        raise
    for watch in _watches(item):
        watch.settle()
    troubled = [watch.report() for watch in _watches(item) if watch.problems]
    if troubled:
        pytest.fail("\n".join(troubled), pytrace=False)
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


def watch_of(page: Page, request: pytest.FixtureRequest) -> BrowserWatch:
    """The watch of a page opened by `page` or `new_page` in this test."""
    return next(w for w in _watches(request.node) if w.page is page)


@pytest.fixture
def new_page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Callable[..., Page]]:
    """Open more watched pages: `new_page()` for another person (its own browser context,
    so its own cookies), `new_page(like=page)` for another tab of `page`'s session."""
    contexts: list[BrowserContext] = []

    def open_page(like: Page | None = None) -> Page:
        if like is not None:
            context = like.context
        else:
            context = browser.new_context(viewport={"width": 1280, "height": 800})
            context.set_default_timeout(10_000)
            contexts.append(context)
        page = context.new_page()
        request.node.stash.setdefault(MORE_WATCHES, []).append(BrowserWatch(page))
        return page

    yield open_page
    for context in contexts:
        context.close()
