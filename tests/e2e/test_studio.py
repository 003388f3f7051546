"""The studio in a real browser: sign in, build a graph on the canvas, configure it, save,
reload, undo/redo, compare versions — and hostile strings that never execute.

One `studio serve` process per module, on a copy of a seeded database.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Locator, Page, expect

from graphs.identity import Actor
from studio.context import open_studio
from studio.settings import Settings
from tests.conftest import example
from tests.e2e.harness import AppServer, running_server
from tests.studio.web_fixtures import PASSWORD, Seeded, seed

pytestmark = pytest.mark.e2e
XSS = '<img src=x onerror="alert(1)"><script>alert(2)</script>'


@pytest.fixture(scope="module")
def seeded_dir(tmp_path_factory: pytest.TempPathFactory) -> Seeded:
    hostile = example("triage_router")
    hostile["name"] = f"Hostile {XSS}"
    hostile["description"] = XSS
    hostile["nodes"][0]["label"] = XSS
    hostile["nodes"][0]["description"] = XSS
    return seed(
        tmp_path_factory.mktemp("studio-e2e"),
        {"router": example("triage_router"), "hostile": hostile},
    )


@pytest.fixture(scope="module")
def server(seeded_dir: Seeded) -> Iterator[AppServer]:
    with running_server(
        "tests.e2e.studio_server", {"STUDIO_DATA_DIR": str(seeded_dir.data_dir)}
    ) as app:
        yield app


def sign_in(page: Page, server: AppServer, who: str = "ed", target: str = "/graphs") -> None:
    page.goto(f"{server.base_url}/login?next={target}")
    page.get_by_label("E-mail").fill(f"{who}@example.com")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"**{target}")


def node(page: Page, node_id: str) -> Locator:
    return page.locator(f'.vue-flow__node[data-id="{node_id}"]')


def center(locator: Locator) -> tuple[float, float]:
    box = locator.bounding_box()
    assert box is not None
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


def connect(page: Page, source: str, target: str) -> None:
    start = center(node(page, source).locator(".vue-flow__handle.source"))
    end = center(node(page, target).locator(".vue-flow__handle.target"))
    page.mouse.move(*start)
    page.mouse.down()
    page.mouse.move(*end, steps=12)
    page.mouse.up()


def stored(seeded: Seeded, graph_name: str) -> dict[str, Any]:
    with open_studio(Settings(data_dir=seeded.data_dir), resume=False) as studio:
        library = studio.manager.library
        actor = Actor("acme", seeded.users["ed"])
        graph = next(g for g in library.list(actor) if g.name == graph_name)
        return library.head(actor, graph.graph_id).document.model_dump(mode="json")


def create_blank(page: Page, name: str) -> None:
    page.get_by_role("button", name="New graph").click()
    page.get_by_label("Name").fill(name)
    page.get_by_role("button", name="Create").click()
    page.wait_for_url("**/graphs/*")
    expect(node(page, "output")).to_be_visible()


def test_wrong_password_then_sign_in_and_out(page: Page, server: AppServer) -> None:
    page.goto(server.base_url + "/graphs")
    page.wait_for_url("**/login**")
    page.get_by_label("E-mail").fill("ed@example.com")
    page.get_by_label("Password").fill("wrong")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text("E-mail or password is wrong.")).to_be_visible()
    sign_in(page, server)
    expect(page.get_by_text("Ticket triage").first).to_be_visible()
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/login")
    page.goto(server.base_url + "/graphs")
    page.wait_for_url("**/login**")


def test_build_configure_save_reload_undo_redo(
    page: Page, server: AppServer, seeded_dir: Seeded
) -> None:
    sign_in(page, server)
    create_blank(page, "Built in the browser")
    page.drag_and_drop(
        '.gc-palette-item[data-type="llm"]', ".vue-flow__pane", target_position={"x": 300, "y": 200}
    )
    expect(node(page, "llm_1")).to_be_visible()
    page.drag_and_drop(
        '.gc-palette-item[data-type="transform"]',
        ".vue-flow__pane",
        target_position={"x": 300, "y": 420},
    )
    expect(node(page, "transform_1")).to_be_visible()
    connect(page, "llm_1", "output")
    expect(page.locator(".vue-flow__edge")).to_have_count(2)
    node(page, "llm_1").click()
    panel = page.locator('[data-testid="side-panel"]')
    expect(panel).to_contain_text("LLM call")
    panel.get_by_label("Label", exact=True).fill("Writer")
    prompt = panel.get_by_label("Prompt", exact=True)
    prompt.fill("Write about {{ topic }}")
    expect(node(page, "llm_1")).to_contain_text("Writer")
    # undo the last edit (the prompt) and redo it, with the keyboard on the canvas
    # (each click waits for the server's new graph, so that a click and a graph never cross:
    # see test_a_click_is_not_lost_to_a_graph_that_arrives_before_its_select_is_sent)
    expect(node(page, "llm_1")).to_contain_text("reads 'topic'")  # the prompt's problem
    page.locator(".vue-flow__pane").click(position={"x": 40, "y": 40})
    page.keyboard.press("Control+z")
    expect(node(page, "llm_1")).not_to_contain_text("reads 'topic'")
    node(page, "llm_1").click()
    expect(panel.get_by_label("Prompt", exact=True)).to_have_value("")
    page.locator(".vue-flow__pane").click(position={"x": 40, "y": 40})
    page.keyboard.press("Control+Shift+Z")
    expect(node(page, "llm_1")).to_contain_text("reads 'topic'")
    node(page, "llm_1").click()
    expect(panel.get_by_label("Prompt", exact=True)).to_have_value("Write about {{ topic }}")
    page.get_by_test_id("save").click()
    page.get_by_test_id("save-message").fill("first cut")
    page.get_by_test_id("save-confirm").click()
    expect(page.get_by_test_id("version")).to_contain_text("v2")
    saved = stored(seeded_dir, "Built in the browser")
    writer = next(n for n in saved["nodes"] if n["id"] == "llm_1")
    assert writer["label"] == "Writer" and writer["config"]["prompt"] == "Write about {{ topic }}"
    assert {"source": "llm_1", "target": "output"} in [
        {"source": e["source"], "target": e["target"]} for e in saved["edges"]
    ]
    positions = {n["id"]: n["position"] for n in saved["nodes"]}
    page.reload()
    expect(node(page, "llm_1")).to_contain_text("Writer")
    expect(page.locator(".vue-flow__node")).to_have_count(4)  # output, llm_1, transform_1, END
    expect(page.locator(".vue-flow__edge")).to_have_count(2)
    assert stored(seeded_dir, "Built in the browser")["nodes"] == saved["nodes"]
    for node_id, position in positions.items():
        shown = page.evaluate(
            """(id) => { const m = new DOMMatrix(getComputedStyle(document.querySelector(
                 `.vue-flow__node[data-id="${id}"]`)).transform); return [m.e, m.f]; }""",
            node_id,
        )
        assert shown == [position["x"], position["y"]]


def test_version_diff_shows_a_changed_node(
    page: Page, server: AppServer, seeded_dir: Seeded
) -> None:
    sign_in(page, server)
    page.get_by_text("Ticket triage").first.click()
    page.wait_for_url("**/graphs/*")
    first = page.locator(".vue-flow__node").first.get_attribute("data-id")
    assert first
    node(page, first).click()
    panel = page.locator('[data-testid="side-panel"]')
    panel.get_by_label("Label", exact=True).fill("Renamed step")
    expect(node(page, first)).to_contain_text("Renamed step")
    page.get_by_test_id("save").click()
    page.get_by_test_id("save-confirm").click()
    expect(page.get_by_test_id("version")).to_contain_text("v2")
    page.get_by_test_id("versions").click()
    page.get_by_role("button", name="Show differences").click()
    expect(page.get_by_test_id("comparison")).to_contain_text(f"node '{first}' changed (label)")
    expect(node(page, first).locator(".gc-node")).to_have_class(re.compile("gc-diff-changed"))
    page.get_by_role("button", name="Back to editing").click()
    expect(node(page, first).locator(".gc-node")).not_to_have_class(re.compile("gc-diff"))


def test_viewer_cannot_change_the_graph(page: Page, server: AppServer) -> None:
    sign_in(page, server, "vi")
    page.get_by_text("Ticket triage").first.click()
    page.wait_for_url("**/graphs/*")
    expect(page.locator(".vue-flow__node").first).to_be_visible()
    expect(page.get_by_test_id("save")).to_have_count(0)
    expect(page.locator(".gc-palette-item")).to_have_count(0)


def test_hostile_strings_render_as_text(page: Page, server: AppServer) -> None:
    sign_in(page, server)
    expect(page.get_by_text(f"Hostile {XSS}")).to_be_visible()
    page.get_by_text(f"Hostile {XSS}").click()
    page.wait_for_url("**/graphs/*")
    expect(page.locator(".vue-flow__node").first).to_be_visible()
    expect(page.get_by_text(XSS).first).to_be_visible()
    page.locator(".vue-flow__node").first.click()
    assert page.locator("img[src=x]").count() == 0  # shown as text, never as markup


def test_importing_a_hostile_file_stores_nothing(
    page: Page, server: AppServer, seeded_dir: Seeded, tmp_path: Path
) -> None:
    sign_in(page, server)
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps(
            {
                "schema_version": 1,
                "name": XSS,
                "entry": "a",
                "nodes": [{"id": "a", "type": "shell_exec"}],
            }
        )
    )
    page.get_by_role("button", name="Import").click()
    page.locator('input[type="file"]').set_input_files(str(bad))
    expect(page.get_by_text("shell_exec", exact=False).first).to_be_visible()
    with open_studio(Settings(data_dir=seeded_dir.data_dir), resume=False) as studio:
        names = [g.name for g in studio.manager.library.list(Actor("acme", seeded_dir.users["ed"]))]
    assert XSS not in names
