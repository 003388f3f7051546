"""The e2e plumbing itself: the page watch sees what it must, the server helper reports."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser

from tests.e2e.conftest import BrowserWatch
from tests.e2e.harness import QUIET_FEATURES, browser_switch, start_server

pytestmark = pytest.mark.e2e


def test_the_watch_records_console_errors_page_errors_dialogs_and_outside_requests(
    browser: Browser,
) -> None:
    context = browser.new_context()
    try:
        page = context.new_page()
        watch = BrowserWatch(page)
        page.set_content("<p>quiet</p>")
        page.evaluate("console.log('fine'); console.warn('also fine')")
        watch.settle()
        assert watch.problems == []
        page.evaluate("console.error('boom')")
        page.evaluate("setTimeout(() => { throw new Error('uncaught') }, 0)")
        page.evaluate("alert('injected')")
        page.set_content('<img src="https://cdn.example.com/lib.js">')
        watch.settle()
    finally:
        context.close()
    report = watch.report()
    assert "console error: boom" in report
    assert "page error:" in report and "uncaught" in report
    assert "alert dialog: 'injected'" in report
    assert "request left the machine: https://cdn.example.com/lib.js" in report


def test_the_browser_keeps_playwrights_switches_and_opens_no_omnibox_popup(
    browser: Browser,
) -> None:
    disabled = browser_switch(browser, "--disable-features")
    assert set(QUIET_FEATURES) <= set(disabled)
    assert {"PaintHolding", "ThirdPartyStoragePartitioning", "MediaRouter"} <= set(disabled)
    cdp = browser.new_browser_cdp_session()
    context = browser.new_context()
    try:
        context.new_page().set_content("<p>a new window</p>")
        targets = cdp.send("Target.getTargets")["targetInfos"]
    finally:
        context.close()
    assert [t["type"] for t in targets] == ["page"], targets  # no chrome://omnibox-popup...


def test_a_server_that_cannot_start_reports_its_output() -> None:
    with pytest.raises(RuntimeError, match=r"No module named tests\.e2e\.no_such_app"):
        start_server("tests.e2e.no_such_app", timeout_s=10)
