"""The graph canvas in a real browser: every edit reaches the server, nothing else does.

One app process serves the whole module (`tests/e2e/canvas_app.py`); each test resets its
model by opening `/?scenario=...` and reads back what the server received from `/state`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.canvas_app import SCRIPT, XSS
from tests.e2e.canvas_page import (
    State,
    center,
    drag,
    events,
    fence,
    flow_position,
    node,
    open_canvas,
    shift_click,
    state,
    viewport,
    wait_state,
)
from tests.e2e.harness import ROOT, AppServer, running_server

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server() -> Iterator[AppServer]:
    """Served as the studio serves its pages: the compiled Tailwind stylesheet, no runtime."""
    with running_server("tests.e2e.canvas_app") as app_server:
        yield app_server


@pytest.fixture(scope="module")
def runtime_server() -> Iterator[AppServer]:
    """Served with NiceGUI's defaults: its Tailwind runtime compiles the styles in the page."""
    with running_server("tests.e2e.canvas_app", {"CANVAS_DEFAULTS": "1"}) as app_server:
        yield app_server


def test_renders_graph_end_terminal_palette_and_chrome(page: Page, server: AppServer) -> None:
    open_canvas(page, server)
    expect(page.locator(".vue-flow__node")).to_have_count(5)  # a, b, c, d and END
    expect(node(page, "__end__")).to_have_text("END")
    expect(page.locator(".vue-flow__edge")).to_have_count(3)
    for part in (".vue-flow__background", ".vue-flow__controls", ".gc-minimap canvas"):
        expect(page.locator(part)).to_be_visible()
    expect(page.locator(".gc-palette-group h4")).to_have_text(["Models", "Tools", "Flow"])
    expect(node(page, "a")).to_contain_text("Draft reply")
    expect(node(page, "a")).to_contain_text("llm")
    expect(page.locator('.gc-edge-label[data-edge-id="e3"]')).to_have_text("done")
    expect(page.locator(".gc-edge-label")).to_have_count(1)  # plain edges carry no label


def test_palette_search_filters_and_typing_is_not_a_shortcut(page: Page, server: AppServer) -> None:
    open_canvas(page, server)
    search = page.locator(".gc-palette-search")
    items = page.locator(".gc-palette-item .gc-palette-title")
    search.fill("http")
    expect(items).to_have_text(["HTTP request"])
    search.fill("BRANCH")  # description
    expect(items).to_have_text(["Router"])
    expect(page.locator(".gc-palette-group h4")).to_have_text(["Flow"])
    search.fill("nothing like this")
    expect(page.locator(".gc-palette-empty")).to_be_visible()
    node(page, "a").click()
    search.fill("llm")
    for key in ("Backspace", "Delete", "Control+z", "Control+Shift+Z", "Control+y", "Control+v"):
        search.press(key)
    current = fence(page, server)
    assert events(current, "remove") == []
    assert events(current, "paste") == []
    assert [e["key"] for e in events(current, "shortcut")] == ["fit"]


def test_dropping_a_palette_item_adds_a_node_at_the_drop_point(
    page: Page, server: AppServer
) -> None:
    open_canvas(page, server)
    x, y, zoom = viewport(page)
    page.drag_and_drop(
        '.gc-palette-item[data-type="http"]',
        ".vue-flow__pane",
        target_position={"x": 420, "y": 400},
    )
    current = wait_state(server, lambda s: events(s, "add"))
    added = events(current, "add")
    assert [a["type"] for a in added] == ["http"]
    assert abs(added[0]["position"]["x"] - (420 - x) / zoom) <= 1
    assert abs(added[0]["position"]["y"] - (400 - y) / zoom) <= 1
    new = next(n for n in current["nodes"] if n["type"] == "http")
    expect(node(page, new["id"])).to_contain_text("HTTP request")


def test_connecting_two_handles_creates_an_edge(page: Page, server: AppServer) -> None:
    open_canvas(page, server)
    source = center(node(page, "d").locator(".vue-flow__handle.source"))
    drag(page, source, center(node(page, "c").locator(".vue-flow__handle.target")))
    current = wait_state(server, lambda s: events(s, "connect"))
    assert events(current, "connect") == [{"source": "d", "target": "c"}]
    expect(page.locator(".vue-flow__edge")).to_have_count(4)
    drag(page, source, center(node(page, "__end__").locator(".vue-flow__handle.target")))
    current = wait_state(server, lambda s: len(events(s, "connect")) == 2)
    assert events(current, "connect")[1] == {"source": "d", "target": "__end__"}
    expect(page.locator(".vue-flow__edge")).to_have_count(5)


def test_moves_reach_the_server_without_a_round_trip_and_survive_a_reload(
    page: Page, server: AppServer
) -> None:
    updates: list[str] = []  # element updates the server sends over the websocket
    page.on(
        "websocket",
        lambda ws: ws.on(
            "framereceived",
            lambda frame: updates.append(str(frame)) if '["update"' in str(frame) else None,
        ),
    )
    open_canvas(page, server)
    updates.clear()
    start = center(node(page, "b"))
    drag(page, start, (start[0] + 120, start[1] + 80))
    current = wait_state(server, lambda s: events(s, "move"))
    moved = events(current, "move")[0]["positions"]
    assert set(moved) == {"b"}
    shown = flow_position(page, "b")
    assert shown[0] > 380 and shown[1] > 50  # it did move (less the drag threshold)
    assert moved["b"]["x"] == pytest.approx(shown[0], abs=0.01)
    assert moved["b"]["y"] == pytest.approx(shown[1], abs=0.01)
    assert current["pushes"] == 0  # the browser already shows it
    fence(page, server)
    assert updates == []  # not even the canvas's own bookkeeping sends the graph back

    node(page, "a").click()
    shift_click(page, node(page, "d"))
    start = center(node(page, "a"))
    drag(page, start, (start[0], start[1] - 60))
    current = wait_state(server, lambda s: len(events(s, "move")) == 2)
    assert set(events(current, "move")[1]["positions"]) == {"a", "d"}

    page.goto(server.base_url + "/")  # same model, new page
    expect(node(page, "b")).to_be_visible()
    assert flow_position(page, "b") == pytest.approx(shown, abs=0.01)


def test_arrow_keys_move_the_selected_node_and_the_server_hears_it(
    page: Page, server: AppServer
) -> None:
    open_canvas(page, server)
    node(page, "d").click()
    for key in ("ArrowRight", "ArrowRight", "ArrowRight", "ArrowDown"):
        page.keyboard.press(key)

    def latest(current: State) -> dict[str, float] | None:
        moves = [m["positions"]["d"] for m in events(current, "move") if "d" in m["positions"]]
        return moves[-1] if moves else None

    wait_state(server, lambda s: latest(s) == {"x": 315, "y": 225})  # 5 px a step
    assert flow_position(page, "d") == [315, 225]


def test_select_shift_click_box_select_and_clear(page: Page, server: AppServer) -> None:
    open_canvas(page, server)
    node(page, "a").click()
    wait_state(server, lambda s: events(s, "select")[-1:] == [{"nodes": ["a"], "edges": []}])
    shift_click(page, node(page, "b"))
    current = wait_state(server, lambda s: len(events(s, "select")) >= 2)
    assert sorted(events(current, "select")[-1]["nodes"]) == ["a", "b"]

    page.mouse.click(*center(page.locator(".gc-edge-label")))  # the label is not the edge
    page.mouse.click(
        *center(page.locator('.vue-flow__edge[data-id="e2"] path.vue-flow__edge-path'))
    )
    wait_state(server, lambda s: events(s, "select")[-1] == {"nodes": [], "edges": ["e2"]})

    pane = page.locator(".vue-flow__pane").bounding_box()
    assert pane is not None
    a_box, b_box = node(page, "a").bounding_box(), node(page, "b").bounding_box()
    assert a_box is not None and b_box is not None
    page.keyboard.down("Shift")
    drag(
        page,
        (a_box["x"] - 20, a_box["y"] - 20),
        (b_box["x"] + b_box["width"] + 20, b_box["y"] + 60),
    )
    page.keyboard.up("Shift")
    current = wait_state(server, lambda s: sorted(events(s, "select")[-1]["nodes"]) == ["a", "b"])
    expect(page.locator(".vue-flow__node.selected")).to_have_count(2)

    page.mouse.click(pane["x"] + pane["width"] / 2, pane["y"] + pane["height"] - 30)
    wait_state(server, lambda s: events(s, "select")[-1] == {"nodes": [], "edges": []})


HOLD_SELECTION_EMIT = """() => {
  const original = window.setTimeout;
  window.__held = [];
  window.setTimeout = function (fn, ms, ...rest) {  // only the canvas's queued `select`
    if (typeof fn === 'function' && String(fn).includes('selectionQueued')) {
      window.__held.push(fn);
      return 0;
    }
    return original.call(this, fn, ms, ...rest);
  };
  window.__release = () => {
    window.setTimeout = original;
    window.__held.splice(0).forEach((f) => f());
  };
}"""


def test_a_click_is_not_lost_to_a_graph_that_arrives_before_its_select_is_sent(
    page: Page, server: AppServer
) -> None:
    open_canvas(page, server)
    page.evaluate(HOLD_SELECTION_EMIT)
    node(page, "a").click()  # selected here; its `select` waits in the queue
    pushes = state(server)["pushes"]
    before = flow_position(page, "b")
    page.locator('[data-action="layout"]').click()  # the server moves nodes, sends a graph
    wait_state(server, lambda s: s["pushes"] > pushes)
    page.wait_for_function(  # the graph is on the page (built before the server heard of a)
        """(before) => { const m = new DOMMatrix(getComputedStyle(document.querySelector(
             '.vue-flow__node[data-id="b"]')).transform);
           return m.e !== before[0] || m.f !== before[1]; }""",
        arg=before,
    )
    assert events(state(server), "select") == []  # the server has not heard of the click
    page.evaluate("() => window.__release()")
    current = wait_state(
        server, lambda s: events(s, "select")[-1:] == [{"nodes": ["a"], "edges": []}]
    )
    assert [n["id"] for n in current["nodes"] if n.get("selected")] == ["a"]
    expect(node(page, "a")).to_have_class(re.compile(r"\bselected\b"))


def test_delete_key_and_toolbar_remove_the_selection_never_the_end(
    page: Page, server: AppServer
) -> None:
    open_canvas(page, server)
    node(page, "c").click()
    page.keyboard.press("Delete")
    current = wait_state(server, lambda s: events(s, "remove"))
    assert events(current, "remove") == [{"nodes": ["c"], "edges": []}]
    expect(node(page, "c")).to_have_count(0)
    expect(node(page, "__end__")).to_have_count(0)  # no edge ends the graph any more
    expect(page.locator(".vue-flow__edge")).to_have_count(1)

    page.mouse.click(
        *center(page.locator('.vue-flow__edge[data-id="e1"] path.vue-flow__edge-path'))
    )
    wait_state(server, lambda s: events(s, "select")[-1:] == [{"nodes": [], "edges": ["e1"]}])
    page.locator('[data-action="remove"]').click()
    current = wait_state(server, lambda s: len(events(s, "remove")) == 2)
    assert events(current, "remove")[1] == {"nodes": [], "edges": ["e1"]}
    expect(page.locator(".vue-flow__edge")).to_have_count(0)

    node(page, "d").click()
    page.keyboard.press("Backspace")
    current = wait_state(server, lambda s: len(events(s, "remove")) == 3)
    assert events(current, "remove")[2] == {"nodes": ["d"], "edges": []}
    assert all("__end__" not in r["nodes"] for r in events(current, "remove"))


def test_end_terminal_cannot_be_selected_dragged_or_deleted(page: Page, server: AppServer) -> None:
    open_canvas(page, server)
    end = node(page, "__end__")
    before = flow_position(page, "__end__")
    start = center(end)
    drag(page, start, (start[0] + 80, start[1] + 80))  # pans the view instead
    page.keyboard.press("Delete")
    expect(end).to_be_visible()
    assert flow_position(page, "__end__") == before
    current = fence(page, server)
    assert events(current, "move") == [] and events(current, "remove") == []
    assert all("__end__" not in s["nodes"] for s in events(current, "select"))


def test_copy_paste_sends_the_selection_with_a_growing_offset(
    page: Page, server: AppServer
) -> None:
    open_canvas(page, server)
    node(page, "a").click()
    shift_click(page, node(page, "b"))
    wait_state(server, lambda s: len(events(s, "select")) >= 2)
    page.keyboard.press("Control+c")
    page.keyboard.press("Control+v")
    current = wait_state(server, lambda s: events(s, "paste"))
    pasted = events(current, "paste")[0]
    assert sorted(pasted["nodes"]) == ["a", "b"] and pasted["offset"] == {"x": 40, "y": 40}
    expect(page.locator(".vue-flow__node")).to_have_count(7)
    expect(page.locator(".vue-flow__edge")).to_have_count(4)  # a->b copied with its nodes
    page.keyboard.press("Meta+v")
    current = wait_state(server, lambda s: len(events(s, "paste")) == 2)
    assert events(current, "paste")[1]["offset"] == {"x": 80, "y": 80}


def test_undo_redo_save_and_toolbar_shortcuts_reach_the_server(
    page: Page, server: AppServer
) -> None:
    open_canvas(page, server)
    page.drag_and_drop(
        '.gc-palette-item[data-type="router"]',
        ".vue-flow__pane",
        target_position={"x": 500, "y": 450},
    )
    expect(page.locator(".vue-flow__node")).to_have_count(6)
    page.keyboard.press("Control+z")
    expect(page.locator(".vue-flow__node")).to_have_count(5)
    page.keyboard.press("Control+Shift+Z")
    expect(page.locator(".vue-flow__node")).to_have_count(6)
    page.keyboard.press("Control+z")
    expect(page.locator(".vue-flow__node")).to_have_count(5)
    page.keyboard.press("Control+y")
    expect(page.locator(".vue-flow__node")).to_have_count(6)

    page.evaluate(
        "window.addEventListener('keydown', e => { window.__saveDefault = e.defaultPrevented })"
    )
    page.keyboard.press("Control+s")
    current = wait_state(server, lambda s: s["saves"] == 1)
    assert page.evaluate("window.__saveDefault") is True

    for action in ("undo", "redo", "layout", "fit"):
        page.locator(f'[data-action="{action}"]').click()
    current = wait_state(server, lambda s: len(events(s, "shortcut")) == 9)
    keys = [e["key"] for e in events(current, "shortcut")]
    assert keys == ["undo", "redo", "undo", "redo", "save", "undo", "redo", "layout", "fit"]
    positions = {n["id"]: n["position"] for n in current["nodes"]}
    assert positions["a"]["x"] == 0 and positions["b"]["x"] == 260 and positions["c"]["x"] == 520


def test_readonly_blocks_every_edit_until_the_server_allows_it(
    page: Page, server: AppServer
) -> None:
    open_canvas(page, server, "scenario=basic&readonly=1")
    expect(page.locator(".gc-palette")).to_have_count(0)
    expect(page.locator(".gc-toolbar button")).to_have_text(["Fit"])
    before = flow_position(page, "b")
    start = center(node(page, "b"))
    drag(page, start, (start[0] + 100, start[1] + 100))  # pans the view instead
    assert flow_position(page, "b") == before
    drag(
        page,
        center(node(page, "d").locator(".vue-flow__handle.source")),
        center(node(page, "c").locator(".vue-flow__handle.target")),
    )
    node(page, "a").click()
    for key in (
        "Delete",
        "Backspace",
        "Control+c",
        "Control+v",
        "Control+z",
        "Control+y",
        "Control+s",
    ):
        page.keyboard.press(key)
    page.evaluate(
        """() => { const data = new DataTransfer();
             data.setData('application/x-agent-studio-node', 'llm');
             const target = document.querySelector('.gc-flow');
             for (const type of ['dragover', 'drop'])
               target.dispatchEvent(new DragEvent(type, {dataTransfer: data, bubbles: true,
                                                         clientX: 600, clientY: 400})); }"""
    )
    current = fence(page, server)
    for name in ("move", "connect", "remove", "paste", "add"):
        assert events(current, name) == [], name
    assert [e["key"] for e in events(current, "shortcut")] == ["fit"]
    assert events(current, "select")  # looking around is still fine
    expect(page.locator(".vue-flow__edge")).to_have_count(3)

    page.get_by_role("switch", name="Read-only").click()  # the server calls set_readonly(False)
    expect(page.locator(".gc-palette")).to_be_visible()
    start = center(node(page, "b"))
    drag(page, start, (start[0] + 100, start[1] + 100))
    wait_state(server, lambda s: events(s, "move"))


def test_server_methods_fit_view_and_set_palette(page: Page, server: AppServer) -> None:
    open_canvas(page, server)
    fitted = viewport(page)
    for _ in range(3):
        page.locator(".vue-flow__controls-zoomin").click()
    page.wait_for_function(
        f"""() => new DOMMatrix(getComputedStyle(document.querySelector(
             '.vue-flow__transformationpane')).transform).a > {fitted[2]} + 0.1"""
    )
    page.locator("#server-fit").click()
    page.wait_for_function(
        f"""() => Math.abs(new DOMMatrix(getComputedStyle(document.querySelector(
             '.vue-flow__transformationpane')).transform).a - {fitted[2]}) < 0.01"""
    )
    page.locator("#server-palette").click()
    expect(page.locator(".gc-palette-group h4")).to_have_text(["Memory"])
    expect(page.locator(".gc-palette-title")).to_have_text(["Remember"])


def test_the_minimap_draws_the_graph_and_pans_the_view(page: Page, server: AppServer) -> None:
    open_canvas(page, server)
    minimap = page.locator(".gc-minimap canvas")
    painted = page.evaluate(
        """() => { const c = document.querySelector('.gc-minimap canvas');
             const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
             let n = 0; for (let i = 3; i < px.length; i += 4) if (px[i]) n++; return n; }"""
    )
    assert painted > 0
    before = viewport(page)
    box = minimap.bounding_box()
    assert box is not None
    page.mouse.click(box["x"] + 10, box["y"] + box["height"] - 10)  # its lower left corner
    page.wait_for_function(
        f"""() => new DOMMatrix(getComputedStyle(document.querySelector(
             '.vue-flow__transformationpane')).transform).e > {before[0]} + 20"""
    )
    after = viewport(page)
    assert after[1] < before[1] and after[2] == before[2]  # panned left and down, same zoom
    minimap.hover()
    page.mouse.wheel(0, -200)
    page.wait_for_function(
        f"""() => new DOMMatrix(getComputedStyle(document.querySelector(
             '.vue-flow__transformationpane')).transform).a > {after[2]} + 0.05"""
    )


def test_markup_in_user_strings_is_shown_as_text_and_never_runs(
    page: Page, server: AppServer
) -> None:
    open_canvas(page, server, "scenario=hostile")
    x1, x2 = node(page, "x1"), node(page, "x2")
    expect(x1.locator(".gc-node-label")).to_have_text(XSS)
    expect(x1.locator(".gc-node-type")).to_have_text(XSS)
    expect(x1.locator(".gc-error-text")).to_have_text(SCRIPT)
    expect(x1.locator(".gc-node")).to_have_attribute("title", SCRIPT)
    expect(x2.locator(".gc-node-label")).to_have_text(SCRIPT)
    expect(node(page, "x3").locator(".gc-node-label")).to_have_text("{{ 7*7 }} ${7*7}")
    label = page.locator('.gc-edge-label[data-edge-id="ex1"]')
    expect(label.locator(".gc-edge-text")).to_have_text(XSS)
    expect(label).to_have_attribute("title", SCRIPT)
    expect(page.locator(".gc-palette-group h4").last).to_have_text(XSS)
    evil = page.locator('.gc-palette-item[data-type="evil"]')
    expect(evil.locator(".gc-palette-title")).to_have_text(SCRIPT)
    expect(evil.locator(".gc-palette-description")).to_have_text(XSS)
    expect(evil).to_have_attribute("title", XSS)

    x1.hover()
    drag(
        page,
        center(node(page, "x3").locator(".vue-flow__handle.source")),
        center(x1.locator(".vue-flow__handle.target")),
    )  # the server pushes the graph again
    expect(page.locator(".vue-flow__edge")).to_have_count(2)
    page.wait_for_timeout(300)
    root = page.locator(".gc-root")
    expect(root.locator("img, script, iframe, object, embed")).to_have_count(0)
    assert page.evaluate("window.__pwned") is None


CLASSES_IN_CANVAS = """() => [...new Set(
  [...document.querySelectorAll('.gc-root, .gc-root [class]')].flatMap(e => [...e.classList]))]"""


def tailwind_seed() -> set[str]:
    source = (ROOT / "assets" / "graph_canvas.js").read_text(encoding="utf-8")
    match = re.search(r"const TAILWIND_SEED = \[(.*?)\];", source, re.DOTALL)
    assert match is not None
    return set(re.findall(r'"([^"]+)"', match.group(1)))


def test_tailwind_saw_every_class_of_the_canvas_before_the_graph(
    page: Page, runtime_server: AppServer
) -> None:
    """NiceGUI's Tailwind runtime (on where the compiled stylesheet is missing or stale) restyles
    the page for every class it has not seen yet; the canvas shows it all of its classes at
    once (TAILWIND_SEED), then drops that element."""
    server = runtime_server
    assert page.goto(server.base_url + "/?scenario=basic") is not None
    expect(page.locator('script[src*="tailwindcss"]')).to_have_count(1)
    seen: set[str] = set()
    for query in ("scenario=styled", "scenario=hostile", "scenario=basic&readonly=1"):
        open_canvas(page, server, query)
        seen |= set(page.evaluate(CLASSES_IN_CANVAS))
    open_canvas(page, server)
    assert page.locator("[hidden].vue-flow__node").count() == 0  # the seed is gone
    node(page, "a").click()
    start = center(node(page, "d"))
    page.mouse.move(*start)
    page.mouse.down()
    page.mouse.move(start[0] + 40, start[1] + 30, steps=4)  # dragging a node
    seen |= set(page.evaluate(CLASSES_IN_CANVAS))
    page.mouse.up()
    source = center(node(page, "d").locator(".vue-flow__handle.source"))
    target = center(node(page, "c").locator(".vue-flow__handle.target"))
    page.mouse.move(*source)
    page.mouse.down()
    page.mouse.move(*target, steps=8)  # a connection line over a valid target
    seen |= set(page.evaluate(CLASSES_IN_CANVAS))
    page.mouse.up()
    assert {"dragging", "selected", "vue-flow__connection", "gc-diff-added"} <= seen
    assert seen - tailwind_seed() == set()


def test_served_with_the_compiled_stylesheet_and_its_modules_preloaded(
    page: Page, server: AppServer
) -> None:
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    open_canvas(page, server)
    expect(page.locator('script[src*="tailwindcss"]')).to_have_count(0)
    expect(page.locator("style#studio-tailwind")).to_have_count(1)
    preloads = page.eval_on_selector_all(
        'link[rel="modulepreload"]', "links => links.map(link => link.href)"
    )
    imports = page.evaluate(
        """() => Object.fromEntries(Object.entries(JSON.parse(document.querySelector(
                 'script[type="importmap"]').textContent).imports)
                 .map(([name, url]) => [name, new URL(url, location.href).href]))"""
    )
    names = ("@vue-flow/core", "@vue-flow/background", "@vue-flow/controls", "graph_canvas_minimap")
    canvas_modules = [imports[name] for name in names]
    assert set(canvas_modules) <= set(preloads)  # each Vue Flow module and the minimap
    for url in canvas_modules:  # preloaded, then used: fetched once
        assert requests.count(url) <= 1, url


# NiceGUI's connection popups fade in and out (transitions): left out.
STYLES = """() => [...document.querySelectorAll(
    'body *:not(script, style, link, .nicegui-error-popup, .nicegui-error-popup *)')].map(e => {
  const s = getComputedStyle(e);
  return [e.tagName, e.getAttribute('class'), ['display', 'position', 'width', 'height',
    'margin', 'padding', 'color', 'background-color', 'font', 'border', 'border-radius',
    'box-shadow', 'gap', 'align-items', 'justify-content', 'flex', 'overflow', 'opacity',
    'transform', 'rotate', 'visibility', 'cursor', 'white-space', 'text-align', 'z-index',
    'box-sizing', 'outline'].map(p => s.getPropertyValue(p)).join('|')];
})"""


@pytest.mark.parametrize("query", ["scenario=styled", "scenario=hostile&readonly=1"])
def test_looks_exactly_as_with_niceguis_tailwind_runtime(
    page: Page, server: AppServer, runtime_server: AppServer, query: str
) -> None:
    looks = []
    for app_server in (runtime_server, server):
        open_canvas(page, app_server, query)
        page.wait_for_timeout(300)  # the runtime writes its styles after the page settles
        looks.append(page.evaluate(STYLES))
    with_runtime, compiled = looks
    assert len(with_runtime) == len(compiled) > 50
    assert [a for a, b in zip(with_runtime, compiled, strict=True) if a != b] == []
