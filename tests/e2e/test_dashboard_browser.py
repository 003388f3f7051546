"""The cost dashboard in a real browser: after real runs, plotly draws the bars (SVG) with the
values the studio database holds, a click on a bar lists the runs behind it, and nothing
goes wrong in the browser (console errors fail the test; see conftest).

One `studio serve` process per module, on a seeded database with the runs of
`tests.studio.test_analytics_page.build_world` made beforehand.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from studio.pages.analytics_data import usd
from tests.e2e.harness import AppServer, running_server
from tests.e2e.test_studio import sign_in
from tests.studio.test_analytics_page import (
    PRICED,
    UNPRICED,
    World,
    build_world,
    escaped,
    model_totals,
)
from tests.studio.web_fixtures import seed

pytestmark = pytest.mark.e2e
COST_CHART = '[data-testid="chart-cost-0"]'

# The value each visible bar of the cost chart stands for, read back from its SVG path
# ("M x,bottom V top H x V bottom Z") through the y axis's own pixel-to-value function, and
# the values the trace was given.
BAR_VALUES = """(chart) => {
  const axis = chart._fullLayout.yaxis;
  return [...chart.querySelectorAll('.barlayer .trace')].map((trace, n) => ({
    name: chart.data[n].name,
    given: chart.data[n].y,
    drawn: [...trace.querySelectorAll('.point path')]
      .map((path) => (path.getAttribute('d') || '').match(/V([\\d.]+)/g) || [])
      .filter((edges) => edges.length === 2)
      .map((edges) => edges.map((v) => +v.slice(1)))
      .filter(([top, bottom]) => bottom - top >= 1)
      .map(([top, bottom]) => axis.p2l(top) - axis.p2l(bottom)),
  }));
}"""


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return build_world(seed(tmp_path_factory.mktemp("dashboard-e2e")))


@pytest.fixture(scope="module")
def server(world: World) -> Iterator[AppServer]:
    with running_server(
        "tests.e2e.studio_server", {"STUDIO_DATA_DIR": str(world.seeded.data_dir)}
    ) as app:
        yield app


def bar_values(page: Page) -> dict[str, dict[str, list[Any]]]:
    found: list[dict[str, Any]] = page.locator(COST_CHART).evaluate(BAR_VALUES)
    return {trace["name"]: trace for trace in found}


def test_cost_chart_draws_the_database_totals_and_drills_down(
    page: Page, server: AppServer, world: World
) -> None:
    totals = model_totals(world.seeded.data_dir)
    priced = model_totals(world.seeded.data_dir, model=PRICED)
    sign_in(page, server, "ed", "/analytics")
    chart = page.locator(COST_CHART)
    # the first page loads plotly.js (megabytes) into a browser that shares 2 busy cores
    drawn_bar = chart.locator(".barlayer .point path >> visible=true")
    expect(drawn_bar.first).to_be_visible(timeout=30_000)
    expect(page.get_by_text(f"Cost {usd(totals['cost'])}")).to_be_visible()

    bars = bar_values(page)
    unpriced = escaped(UNPRICED)  # a model name with markup: plotly gets it escaped
    assert set(bars) == {PRICED, unpriced}
    assert bars[unpriced] == {"name": unpriced, "given": [None], "drawn": []}  # unknown, not $0
    expect(chart.locator(".legendtext").filter(has_text=UNPRICED)).to_have_count(1)  # as text
    assert page.locator('a[href="http://evil.test/"]').count() == 0
    [drawn] = bars[PRICED]["drawn"]  # one day, one bar
    assert bars[PRICED]["given"] == [pytest.approx(float(priced["cost"]), abs=1e-12)]
    plot_area = chart.locator(".nsewdrag").first.bounding_box()
    assert plot_area is not None
    pixel = float(priced["cost"]) * 1.2 / plot_area["height"]  # the axis spans < 1.2 * max
    assert drawn == pytest.approx(float(priced["cost"]), abs=pixel)
    assert priced["cost"] == totals["cost"] and priced["cost"] > Decimal(0)

    bar = drawn_bar.first.bounding_box()
    assert bar is not None  # plotly's drag layer lies over the bars: click where one is
    page.mouse.click(bar["x"] + bar["width"] / 2, bar["y"] + bar["height"] / 2)
    expect(page.get_by_text("Runs behind this point: 2")).to_be_visible()
    for name in ("ed1", "ed2"):
        link = page.locator(f'a[href="/runs/{world.runs[name]}"]')
        expect(link).to_have_text(world.runs[name][:8])
    expect(page.locator(f'a[href="/runs/{world.runs["ad1"]}"]')).to_have_count(0)
