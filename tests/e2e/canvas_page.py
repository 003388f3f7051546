"""Driving the graph canvas of `tests/e2e/canvas_app.py` from Playwright, and asking its server.

`state()` reads what the server received (`/state`); `fence()` waits until every event sent
before it has arrived, so a test can assert that something did *not* happen.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable
from typing import Any

from playwright.sync_api import Locator, Page, expect

from tests.e2e.harness import AppServer

State = dict[str, Any]


def open_canvas(page: Page, server: AppServer, query: str = "scenario=basic") -> None:
    page.goto(f"{server.base_url}/?{query}")
    expect(page.locator(".vue-flow__node").first).to_be_visible()
    page.wait_for_function("document.querySelector('.vue-flow__node').offsetWidth > 0")


def state(server: AppServer) -> State:
    with urllib.request.urlopen(server.base_url + "/state", timeout=5) as response:
        return dict(json.load(response))


def wait_state(server: AppServer, ready: Callable[[State], object], timeout_s: float = 5) -> State:
    deadline = time.monotonic() + timeout_s
    while True:
        current = state(server)
        if ready(current):
            return current
        if time.monotonic() > deadline:
            raise AssertionError(f"server never reached the expected state: {current}")
        time.sleep(0.05)


def events(current: State, name: str) -> list[dict[str, Any]]:
    return [e["args"] for e in current["events"] if e["event"] == name]


def fence(page: Page, server: AppServer) -> State:
    """Click Fit (always allowed) and wait for its event: everything sent before it arrived."""
    count = len(events(state(server), "shortcut"))
    page.locator('[data-action="fit"]').click()
    return wait_state(server, lambda s: len(events(s, "shortcut")) > count)


def node(page: Page, node_id: str) -> Locator:
    return page.locator(f'.vue-flow__node[data-id="{node_id}"]')


def center(locator: Locator) -> tuple[float, float]:
    box = locator.bounding_box()
    assert box is not None
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


def drag(page: Page, start: tuple[float, float], end: tuple[float, float]) -> None:
    page.mouse.move(*start)
    page.mouse.down()
    page.mouse.move(*end, steps=12)
    page.mouse.up()


def viewport(page: Page) -> tuple[float, float, float]:
    """(x, y, zoom) of the flow's transform."""
    x, y, zoom = page.evaluate(
        """() => { const m = new DOMMatrix(getComputedStyle(
             document.querySelector('.vue-flow__transformationpane')).transform);
           return [m.e, m.f, m.a]; }"""
    )
    return float(x), float(y), float(zoom)


def flow_position(page: Page, node_id: str) -> list[float]:
    """Where a node is in flow coordinates (its transform inside the viewport)."""
    return list(
        page.evaluate(
            """(id) => { const m = new DOMMatrix(getComputedStyle(document.querySelector(
                 `.vue-flow__node[data-id="${id}"]`)).transform); return [m.e, m.f]; }""",
            node_id,
        )
    )


def shift_click(page: Page, locator: Locator) -> None:
    page.keyboard.down("Shift")
    locator.click()
    page.keyboard.up("Shift")
