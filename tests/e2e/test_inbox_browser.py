"""Hostile strings in a real browser. The approval inbox: hostile arguments, names and
descriptions show as text (no script runs, no dialog opens, nothing is fetched from
elsewhere), a viewer gets disabled buttons, an approver's click decides once. The run page:
markup in a model's answer, in a tool's output and in an error message is text too.

One `studio serve` process per module, on a seeded database with runs made beforehand.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from components.base import HttpPolicy
from graphs.identity import Actor
from studio.context import open_studio
from studio.settings import Settings
from tests.conftest import example
from tests.e2e.harness import AppServer, running_server
from tests.e2e.test_studio import sign_in
from tests.loopback.http_receiver import HttpReceiver
from tests.studio.test_run_pages import MARKUP, markup_agent
from tests.studio.web_fixtures import Seeded, seed

pytestmark = pytest.mark.e2e
XSS = '<img src="http://evil.test/x.png" onerror="alert(1)"><script>alert(2)</script>'
MARKDOWN = "**bold** [click](http://evil.test/) ```</div><b>x</b>```"


@pytest.fixture(scope="module")
def paused(tmp_path_factory: pytest.TempPathFactory) -> tuple[Seeded, list[str]]:
    """Two support runs waiting for their e-mail approval, with hostile strings in them."""
    seeded = seed(tmp_path_factory.mktemp("inbox-e2e"))
    doc = copy.deepcopy(example("support_agent"))
    doc["name"] = f"Support {XSS}"
    email = next(t for t in doc["tools"] if t["name"] == "email_customer")
    email["description"] = XSS
    turn = doc["nodes"][0]["config"]["provider_config"]["script"][1]["tool_calls"][0]
    turn["args"]["subject"] = f"{XSS} {MARKDOWN}"
    ids = []
    with open_studio(Settings(data_dir=seeded.data_dir), resume=False) as studio:
        ed = Actor("acme", seeded.users["ed"])
        version = studio.manager.library.create(ed, doc).version_id
        for order in ("A-1", "A-2"):
            run_id = studio.manager.start_run(ed, version_id=version, input={"order_id": order})
            assert studio.manager.wait(ed, run_id, timeout_s=60).status == "waiting_approval"
            [approval] = studio.manager.approvals.list(ed, run_id=run_id)
            ids.append(approval.approval_id)
    return seeded, ids


def fetch_doc(receiver: HttpReceiver, path: str) -> dict[str, Any]:
    """One HTTP tool call whose answer (or failure) the run page shows."""
    return {
        "schema_version": 1,
        "name": f"Fetch {path}",
        "entry": "fetch",
        "state": [{"name": "note", "type": "object"}],
        "tools": [
            {
                "name": "fetch_note",
                "type": "http",
                "tier": "free",
                "config": {"method": "GET", "url": receiver.url_for(path)},
            },
        ],
        "nodes": [
            {
                "id": "fetch",
                "type": "tool_call",
                "config": {"tool": "fetch_note", "args": {}, "result_field": "note"},
            },
            {"id": "done", "type": "output", "config": {"fields": ["note"]}},
        ],
        "edges": [{"source": "fetch", "target": "done"}],
    }


@pytest.fixture(scope="module")
def finished(paused: tuple[Seeded, list[str]]) -> dict[str, str]:
    """Runs whose model answer, tool output and error message carry markup, by what."""
    seeded, _ = paused
    runs = {}
    with HttpReceiver() as receiver:
        receiver.route("/note", body={"note": XSS})
        receiver.route("/broken", status=500, body=f"broken: {XSS}", content_type="text/html")
        policy = HttpPolicy(allow_hosts=frozenset({receiver.host_port}), timeout_s=5)
        with open_studio(Settings(data_dir=seeded.data_dir), http=policy) as studio:
            ed = Actor("acme", seeded.users["ed"])
            docs = {
                "answer": (markup_agent(), {"topic": "<b>bold topic</b>"}),
                "tool": (fetch_doc(receiver, "/note"), {}),
                "error": (fetch_doc(receiver, "/broken"), {}),
            }
            for what, (doc, values) in docs.items():
                version = studio.manager.library.create(ed, doc).version_id
                run_id = studio.manager.start_run(ed, version_id=version, input=values)
                runs[what] = run_id
                studio.manager.wait(ed, run_id, timeout_s=60)
    return runs


@pytest.fixture(scope="module")
def server(paused: tuple[Seeded, list[str]], finished: dict[str, str]) -> Iterator[AppServer]:
    seeded, _ = paused
    with running_server(
        "tests.e2e.studio_server", {"STUDIO_DATA_DIR": str(seeded.data_dir)}
    ) as app:
        yield app


def test_hostile_strings_are_text_and_a_viewer_cannot_click(
    page: Page, server: AppServer, paused: tuple[Seeded, list[str]]
) -> None:
    _, ids = paused
    sign_in(page, server, "vi", "/approvals")
    card = page.locator(f'[data-approval="{ids[0]}"]')
    expect(card).to_be_visible()
    expect(card).to_contain_text(f"Graph: Support {XSS}")
    expect(card).to_contain_text(MARKDOWN)
    expect(card.get_by_text(XSS).first).to_be_visible()
    assert page.locator("script:text('alert(2)')").count() == 0
    assert page.locator('img[src="http://evil.test/x.png"]').count() == 0
    assert page.locator('a[href="http://evil.test/"]').count() == 0
    expect(card.get_by_role("button", name="Approve")).to_be_disabled()
    expect(card).to_contain_text("You cannot decide this")
    expect(page.locator('[data-testid="approvals"]')).to_contain_text("2")


def test_an_approver_decides_with_one_click(
    page: Page, server: AppServer, paused: tuple[Seeded, list[str]]
) -> None:
    seeded, ids = paused
    sign_in(page, server, "ap", "/approvals")
    card = page.locator(f'[data-approval="{ids[1]}"]')
    approve = card.get_by_role("button", name="Approve")
    expect(approve).to_be_enabled()
    approve.dblclick()
    expect(page.get_by_text("Approved: the run continues.")).to_be_visible()
    expect(card).to_have_count(0)
    with open_studio(Settings(data_dir=seeded.data_dir), resume=False) as studio:
        decided = studio.manager.approvals.get(Actor("acme", seeded.users["ap"]), ids[1])
        entries = [e for e in studio.audit.entries("acme") if e.target == ids[1]]
    assert (decided.status, decided.decided_by) == ("approved", seeded.users["ap"])
    assert [e.action for e in entries] == ["approval.decided"]


@pytest.mark.parametrize(
    ("what", "shown"),
    [
        ("answer", f"{MARKUP} on <b>bold topic</b>"),
        ("tool", "<script>alert(2)</script>"),  # in the JSON of the tool's output
        ("error", "Internal Server Error: '\"broken: <img src="),
    ],
)
def test_markup_in_answers_tool_output_and_errors_is_text_on_the_run_page(
    page: Page, server: AppServer, finished: dict[str, str], what: str, shown: str
) -> None:
    sign_in(page, server, "ed", f"/runs/{finished[what]}")
    expect(page.get_by_text("failed" if what == "error" else "succeeded").first).to_be_visible()
    headers = page.locator(".q-expansion-item .q-item")
    for index in range(headers.count()):  # open every step: inputs, outputs, errors
        headers.nth(index).click()
    expect(page.get_by_text(shown, exact=False).first).to_be_visible()
    assert page.locator("script:text('alert')").count() == 0
    assert page.locator('img[src="x"], img[src="http://evil.test/x.png"]').count() == 0
    assert page.locator("b:text('bold topic'), strong:text('Done')").count() == 0
    assert page.get_by_text("ToolFailure(").count() == 0  # a message, not an exception's repr
