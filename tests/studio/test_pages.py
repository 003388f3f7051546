"""Page logic with NiceGUI's `user` fixture (in-process): sign-in, the graph library, the
editor's permissions and forms. The browser-level behaviour is in tests/e2e."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from nicegui import ui
from nicegui.testing import User

from studio.context import open_studio
from studio.settings import Settings
from studio.web_auth import SESSION_COOKIE
from tests.studio.web_fixtures import PASSWORD, Seeded

pytestmark = pytest.mark.nicegui_main_file("tests/studio/web_main.py")


def sign_in(user: User, seeded: Seeded, name: str) -> None:
    user.http_client.cookies.set(SESSION_COOKIE, seeded.session_cookie(name))


async def test_pages_need_a_session(seeded: Seeded, user: User) -> None:
    await user.open("/graphs")
    await user.should_see("Sign in to your workspace", retries=50)
    await user.should_not_see("Ticket triage")


async def test_login_form_post_sets_an_httponly_session_and_rejects_cross_site(
    seeded: Seeded, user: User
) -> None:
    client = user.http_client
    refused = await client.post(
        "/auth/login",
        data={"email": "ed@example.com", "password": PASSWORD},
        headers={"origin": "https://evil.example"},
    )
    assert refused.status_code == 403
    wrong = await client.post(
        "/auth/login",
        data={"email": "ed@example.com", "password": "nope"},
        headers={"origin": "http://test"},
    )
    assert wrong.status_code == 303 and wrong.headers["location"] == "/login?error=invalid"
    ok = await client.post(
        "/auth/login",
        data={"email": "ed@example.com", "password": PASSWORD, "next": "//evil.example/x"},
        headers={"origin": "http://test"},
    )
    assert ok.status_code == 303 and ok.headers["location"] == "/"  # no open redirect
    cookie = ok.headers["set-cookie"]
    assert SESSION_COOKIE in cookie and "HttpOnly" in cookie and "samesite=lax" in cookie.lower()
    await user.open("/graphs")
    await user.should_see("Ticket triage", retries=50)


async def test_logout_ends_the_session_at_once(seeded: Seeded, user: User) -> None:
    sign_in(user, seeded, "ed")
    await user.open("/graphs")
    await user.should_see("Ticket triage", retries=50)
    out = await user.http_client.post("/auth/logout", headers={"origin": "http://test"})
    assert out.status_code == 303
    user.http_client.cookies.clear()
    await user.open("/graphs")
    await user.should_see("Sign in to your workspace", retries=50)


async def test_library_lists_only_the_workspace_graphs(seeded: Seeded, user: User) -> None:
    sign_in(user, seeded, "vi")
    await user.open("/graphs")
    await user.should_see("Ticket triage", retries=50)
    await user.should_not_see("Evil secret plan")


async def test_a_viewer_gets_no_edit_buttons_and_a_read_only_editor(
    seeded: Seeded, user: User
) -> None:
    sign_in(user, seeded, "vi")
    await user.open("/graphs")
    await user.should_not_see("New graph")
    await user.open(f"/graphs/{seeded.graphs['router']}")
    await user.should_see("Ticket triage", retries=50)
    await user.should_not_see(marker="save")


async def test_a_foreign_graph_is_not_found(seeded: Seeded, user: User) -> None:
    sign_in(user, seeded, "ed")
    await user.open(f"/graphs/{seeded.foreign_graph}")
    await user.should_see("This graph does not exist in your workspace.", retries=50)
    await user.should_not_see("Evil secret plan")


async def test_an_editor_creates_a_graph_from_an_example(seeded: Seeded, user: User) -> None:
    sign_in(user, seeded, "ed")
    await user.open("/graphs")
    user.find("New graph").click()
    await user.should_see("Start from", retries=50)
    name = next(e for e in user.find(ui.input).elements if e.props.get("label") == "Name")
    name.set_value("My support agent")
    start = next(iter(user.find(marker="start-from").elements))
    start.set_value("Support agent")
    user.find("Create").click()
    graph = await wait_for_graph(seeded, "My support agent")
    await user.open(f"/graphs/{graph}")
    await user.should_see("v1 draft", retries=50)


async def notified(user: User, fragment: str) -> None:
    for _ in range(100):
        if any(fragment in str(m) for m in user.notify.messages):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"no notification with {fragment!r}: {user.notify.messages}")


async def wait_for_graph(seeded: Seeded, name: str) -> str:
    for _ in range(100):
        with open_studio(Settings(data_dir=seeded.data_dir), resume=False) as studio:
            found = [
                g.graph_id
                for g in studio.manager.library.list(seeded.actor("ed"))
                if g.name == name
            ]
        if found:
            return found[0]
        await asyncio.sleep(0.05)
    raise AssertionError(f"no graph {name!r} was stored")


async def test_search_filters_the_library(seeded: Seeded, user: User) -> None:
    sign_in(user, seeded, "ed")
    await user.open("/graphs")
    search = next(iter(user.find(marker="search").elements))
    search.set_value("no such graph")
    await user.should_see("No graph matches your search.", retries=50)
    search.set_value("triage")
    await user.should_see("Ticket triage", retries=50)


async def test_import_rejects_a_hostile_file_and_stores_nothing(seeded: Seeded, user: User) -> None:
    sign_in(user, seeded, "ed")
    await user.open("/graphs")
    user.find("Import").click()
    await user.should_see("Import a graph file", retries=50)
    hostile = json.dumps(
        {
            "schema_version": 1,
            "name": "<script>alert(1)</script>",
            "entry": "a",
            "nodes": [{"id": "a", "type": "os_system"}],
        }
    ).encode()
    upload = next(iter(user.find(ui.upload).elements))
    await upload.handle_uploads(
        [ui.upload.SmallFileUpload("evil.json", "application/json", hostile)]
    )
    await notified(user, "os_system")
    with open_studio(Settings(data_dir=seeded.data_dir), resume=False) as studio:
        names = [g.name for g in studio.manager.library.list(seeded.actor("ed"))]
    assert names == ["Ticket triage"]


async def test_editor_form_edits_reach_the_document_and_undo(seeded: Seeded, user: User) -> None:
    from studio.canvas import GraphCanvas

    sign_in(user, seeded, "ed")
    await user.open(f"/graphs/{seeded.graphs['router']}")
    await user.should_see(kind=GraphCanvas, retries=50)
    canvas = next(iter(user.find(GraphCanvas).elements))
    first = canvas.props["nodes"][0]["id"]
    user.find(GraphCanvas).trigger("select", {"nodes": [first], "edges": []})
    await user.should_see("Label", retries=50)
    label = next(e for e in user.find(ui.input).elements if e.props.get("label") == "Label")
    label.set_value("Renamed")
    assert await eventually(lambda: label_of(canvas, first) == "Renamed")
    user.find(GraphCanvas).trigger("shortcut", {"key": "undo"})
    assert await eventually(lambda: label_of(canvas, first) != "Renamed")
    user.find(GraphCanvas).trigger("shortcut", {"key": "redo"})
    assert await eventually(lambda: label_of(canvas, first) == "Renamed")


def label_of(canvas: Any, node_id: str) -> str:
    return next(str(n["label"]) for n in canvas.props["nodes"] if n["id"] == node_id)


async def eventually(check: Any, timeout_s: float = 5.0) -> bool:
    for _ in range(int(timeout_s / 0.05)):
        if check():
            return True
        await asyncio.sleep(0.05)
    return bool(check())
