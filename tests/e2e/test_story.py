"""Issue 5's browser stories on one real `studio serve` process and Debian's Chromium.

1. The support agent, end to end, by two people in two browser sessions: ed (an editor)
   starts it from the graph library and watches its tokens stream; he confirms the customer
   e-mail himself; ap (an approver) has the inbox open, sees the refund appear without a
   reload, lowers the amount and approves; the loopback payments API sees exactly one refund
   with ap's amount and the idempotency key; ed's timeline shows every step with its tokens
   and cost.
2. Durability seen from the browser: the server is SIGKILLed in the middle of a long run and
   started again on the same data folder and port; the open page comes back by itself and
   shows the run finishing. Closing the tab of a running run does not stop it.

The long run is a crawl of a loopback "API" that answers each page slowly until the test has
done what it needs in the middle of the run, then quickly (`pace`): the bundled "Dataset
report" example reaches its e-mail approval in ~0.2 s here, too fast to be caught mid-run.
The two people of the story sign in through the form; the other tests reuse seeded sessions.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from playwright.sync_api import Locator, Page, expect
from sqlalchemy import select

from graphs.ledger import idempotency_key
from graphs.tables import Effect
from graphs.timeline import run_timeline
from studio.context import open_studio
from studio.settings import Settings
from studio.web_auth import SESSION_COOKIE
from tests.conftest import support_doc
from tests.e2e.conftest import watch_of
from tests.e2e.harness import AppServer, start_server
from tests.e2e.test_studio import sign_in
from tests.loopback.http_receiver import HttpReceiver
from tests.studio.web_fixtures import Seeded, seed

pytestmark = pytest.mark.e2e
SERVER = "tests.e2e.studio_server"
# the loopback API's time per page: slow until the test has acted in the middle of the run
# (the run cannot end under its feet, however loaded the machine), then fast
SLOW_S, FAST_S = 1.0, 0.02
EDITED_AMOUNT = 12.5
RUN_DONE_MS = 30_000


def crawl_doc(receiver: HttpReceiver) -> dict[str, Any]:
    """A long multi-step run: fetch `pages` pages one by one (one step each), then answer."""
    return {
        "schema_version": 1,
        "name": "Slow crawl",
        "description": "Fetches pages from a slow API one step at a time.",
        "entry": "fetch",
        "state": [
            {"name": "pages", "type": "integer", "input": True, "default": 12},
            {"name": "fetched", "type": "list", "reducer": "append"},
            {"name": "last", "type": "object"},
        ],
        "tools": [
            {
                "name": "fetch_page",
                "type": "http",
                "tier": "free",
                "config": {
                    "method": "GET",
                    "url": receiver.url_for("/page"),
                    "params": [{"name": "page", "type": "integer"}],
                },
            }
        ],
        "nodes": [
            {
                "id": "fetch",
                "type": "tool_call",
                "config": {
                    "tool": "fetch_page",
                    "args": {"page": "len(fetched) + 1"},
                    "result_field": "last",
                },
            },
            {"id": "keep", "type": "transform", "config": {"assign": {"fetched": "[last]"}}},
            {"id": "done", "type": "output", "config": {"fields": ["pages", "fetched"]}},
        ],
        "edges": [
            {"source": "fetch", "target": "keep"},
            {"source": "keep", "target": "fetch", "condition": "len(fetched) < pages"},
            {"source": "keep", "target": "done"},
        ],
    }


@dataclass
class Served:
    """The seeded studio behind one `studio serve` process that a test may kill and start
    again on the same data folder and port."""

    seeded: Seeded
    env: dict[str, str]
    token: str  # ed's API token (run:read)
    server: AppServer = field(init=False)

    @property
    def base_url(self) -> str:
        return self.server.base_url

    def start(self, port: int | None = None) -> None:
        self.server = start_server(SERVER, self.env, port=port)

    def kill(self) -> None:
        self.server.kill()
        self.server.stop()  # the process is gone already: this closes its log

    def run(self, run_id: str) -> dict[str, Any]:
        """The run as the REST API shows it to ed."""
        answer = httpx.get(
            f"{self.base_url}/api/runs/{run_id}",
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=5,
        )
        answer.raise_for_status()
        found: dict[str, Any] = answer.json()
        return found

    def studio(self) -> Any:
        """The data folder opened beside the server, resuming nothing (to read rows)."""
        return open_studio(Settings(data_dir=self.seeded.data_dir), resume=False)


@pytest.fixture(scope="module")
def receiver() -> Iterator[HttpReceiver]:
    with HttpReceiver() as server:
        server.route("/refunds", status=201, body={"refund": "accepted"})
        pace(server, SLOW_S)
        yield server


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, receiver: HttpReceiver) -> Iterator[Served]:
    seeded = seed(
        tmp_path_factory.mktemp("story-e2e"),
        {"support": support_doc(receiver), "crawl": crawl_doc(receiver)},
    )
    with open_studio(Settings(data_dir=seeded.data_dir), resume=False) as studio:
        studio.budgets.set_price(
            seeded.actor("ad"),
            model="scripted-1",
            provider="scripted",
            input_per_mtok="1.5",
            output_per_mtok="6",
        )
        token, _ = studio.tokens.create_token(seeded.actor("ed"), name="e2e", actions=["run:read"])
    env = {"STUDIO_DATA_DIR": str(seeded.data_dir), "STUDIO_HTTP_ALLOW": receiver.host_port}
    world = Served(seeded, env, token)
    world.start()
    try:
        yield world
    finally:
        world.server.stop()


def pace(receiver: HttpReceiver, delay_s: float) -> None:
    """How long the loopback API takes per page from now on (the run in flight included)."""
    receiver.route("/page", body={"ok": True}, delay_s=delay_s)


# --- page helpers ------------------------------------------------------------------------------


def open_as(page: Page, served: Served, who: str, target: str) -> None:
    """Open `target` in a session seeded for `who` (no sign-in form: see `sign_in` for it)."""
    value = served.seeded.session_cookie(who)
    page.context.add_cookies([{"name": SESSION_COOKIE, "value": value, "url": served.base_url}])
    page.goto(served.base_url + target)


def start_from_library(page: Page, served: Served, graph: str, **inputs: str) -> str:
    """Open the Run dialog of a library row, fill the input form, start; returns the run id
    of the run page the browser lands on."""
    row = page.locator(f'[data-graph="{served.seeded.graphs[graph]}"]')
    row.get_by_test_id("run-graph").click()
    for name, value in inputs.items():
        page.get_by_label(name).fill(value)
    page.get_by_test_id("start-run").click()
    page.wait_for_url(re.compile(r".*/runs/[\w-]+$"))
    return page.url.rsplit("/", 1)[1]


def status_badge(page: Page, status: str) -> Locator:
    return page.locator(".q-badge").filter(has_text=re.compile(f"^{status}$"))


def live_card(page: Page) -> Locator:
    return page.locator(".q-card").filter(has_text="Live activity")


def steps_of(page: Page, node: str) -> Locator:
    """The timeline entries (their headers) of the steps that ran `node`."""
    return page.get_by_role("button", name=re.compile(rf'^Expand "#\d+ · step \d+ · {node}"$'))


def mark_page(page: Page) -> None:
    """Tag the loaded document; a reload loses the tag (see `not_reloaded`)."""
    page.evaluate("window.__e2e_same_document = true")


def not_reloaded(page: Page) -> bool:
    return bool(page.evaluate("window.__e2e_same_document === true"))


def refund_effects(receiver: HttpReceiver) -> list[Any]:
    return [e for e in receiver.effects if e.path == "/refunds"]


def page_requests(receiver: HttpReceiver) -> list[int]:
    return [int(r.query["page"][0]) for r in receiver.requests if r.path == "/page"]


def wait_until(check: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


# --- 1. the support agent, by two people --------------------------------------------------------


def test_support_refund_story_two_people(
    page: Page, new_page: Callable[..., Page], served: Served, receiver: HttpReceiver
) -> None:
    approver = new_page()
    sign_in(approver, served.server, "ap", "/approvals")
    expect(approver.get_by_text("Nothing is waiting for a decision.")).to_be_visible()
    mark_page(approver)

    # ed starts the support agent from the library with the input form
    sign_in(page, served.server, "ed", "/graphs")
    run_id = start_from_library(page, served, "support", order_id="A-2024")
    mark_page(page)
    stream = live_card(page)
    expect(stream).to_contain_text("agent:")
    expect(stream).to_contain_text("Let me look that order up.")
    expect(stream).to_contain_text("I will write to the customer.")
    expect(status_badge(page, "waiting_approval")).to_be_visible()

    # the e-mail is confirm-tier: ed, who started the run, confirms it in another tab
    tab = new_page(like=page)
    tab.goto(served.base_url + "/approvals")
    email = tab.locator("[data-approval]").filter(has_text="email_customer")
    email.get_by_role("button", name="Approve").click()
    expect(tab.get_by_text("Approved: the run continues.")).to_be_visible()
    tab.close()
    expect(stream).to_contain_text("Now the refund.")  # streamed into the open page
    assert refund_effects(receiver) == []

    # ap's open inbox shows the refund by itself; ap lowers the amount and approves
    refund = approver.locator("[data-approval]").filter(has_text="issue_refund")
    expect(refund).to_be_visible(timeout=15_000)
    expect(refund).to_contain_text('"amount": 49.9')
    expect(refund).to_contain_text("started by ed@example.com")
    assert not_reloaded(approver)
    refund.get_by_role("button", name="Edit arguments").click()
    amount = approver.locator('[data-field="amount"] input')
    expect(amount).to_have_value("49.9")
    amount.fill(str(EDITED_AMOUNT))
    approver.get_by_role("button", name="Approve with these arguments").click()
    expect(approver.get_by_text("Approved with your edits: the run continues.")).to_be_visible()
    expect(refund).to_have_count(0)

    # the run ends; the payments API saw one refund, with ap's amount and the effect key
    expect(status_badge(page, "succeeded")).to_be_visible(timeout=RUN_DONE_MS)
    assert not_reloaded(page)
    [paid] = refund_effects(receiver)
    assert paid.json == {"order_id": "A-2024", "amount": EDITED_AMOUNT}
    with served.studio() as studio, studio.engine.connect() as db:
        refunds = select(Effect).where(Effect.run_id == run_id, Effect.tool == "issue_refund")
        [effect] = db.execute(refunds).all()
    assert effect.status == "done"
    expected_key = idempotency_key("acme", run_id, effect.node_id, effect.tool_call_id)
    assert paid.idempotency_key == effect.idempotency_key == expected_key
    expect(stream).to_contain_text("the refund was issued")
    assert_timeline_shows_tokens_and_cost(page, served, run_id)
    with served.studio() as studio:
        decisions = {
            a.action: (a.status, a.decided_by, a.decided_args)
            for a in studio.manager.approvals.list(
                served.seeded.actor("ed"), status=None, run_id=run_id
            )
        }
    ed, ap = served.seeded.users["ed"], served.seeded.users["ap"]
    assert decisions["email_customer"][:2] == ("approved", ed)
    assert decisions["issue_refund"] == (
        "edited",
        ap,
        {"order_id": "A-2024", "amount": EDITED_AMOUNT},
    )


def assert_timeline_shows_tokens_and_cost(page: Page, served: Served, run_id: str) -> None:
    """Every step of the stored timeline is on the page; each model step, opened, shows its
    tokens and its (non-zero) cost exactly as recorded."""
    with served.studio() as studio:
        timeline = run_timeline(studio.manager, served.seeded.actor("ed"), run_id)
    titles = [f"#{s.index} · step {s.step} · {', '.join(s.nodes)}" for s in timeline.steps]
    assert "done" in timeline.path
    for title in titles:
        expect(page.get_by_text(title, exact=True)).to_be_visible()
    model_tasks = [(s, t) for s in timeline.steps for t in s.tasks if t.model]
    assert len(model_tasks) == 4  # four turns of the scripted model
    for step, task in model_tasks:
        assert task.input_tokens and task.output_tokens and task.cost_usd
        assert float(task.cost_usd) > 0
        entry = page.locator(".q-expansion-item").filter(
            has=page.get_by_text(titles[step.index], exact=True)
        )
        entry.get_by_text(titles[step.index], exact=True).click()
        card = entry.locator(".q-card").filter(has_text=task.node)
        expect(card).to_contain_text(f"{task.input_tokens} in · {task.output_tokens} out")
        expect(card).to_contain_text(f"${task.cost_usd}")
        expect(card).to_contain_text("scripted-1")


# --- 2. durability, seen from the browser ------------------------------------------------------


def test_server_killed_mid_run_comes_back_and_finishes(
    page: Page, served: Served, receiver: HttpReceiver, request: pytest.FixtureRequest
) -> None:
    pages = 16
    before = len(page_requests(receiver))
    open_as(page, served, "ed", "/graphs")
    run_id = start_from_library(page, served, "crawl", pages=str(pages))
    expect(steps_of(page, "fetch").nth(1)).to_be_attached()  # page 1 fetched, on the page
    with watch_of(page, request).outage(served.base_url):
        port = served.server.port
        served.kill()
        fetched_before_kill = page_requests(receiver)[before:]
        with served.studio() as studio:
            assert studio.manager.get(served.seeded.actor("ed"), run_id).status == "running"
        assert len(fetched_before_kill) < pages
        pace(receiver, FAST_S)
        try:
            served.start(port)
            # the page (never reloaded by the test) notices the new server, reloads itself
            # and follows the resumed run
            expect(status_badge(page, "succeeded")).to_be_visible(timeout=RUN_DONE_MS)
        finally:
            pace(receiver, SLOW_S)
    expect(steps_of(page, "fetch")).to_have_count(pages)
    expect(steps_of(page, "done")).to_have_count(1)
    fetched = page_requests(receiver)[before:]
    after_restart = fetched[len(fetched_before_kill) :]
    assert after_restart, "no step ran after the restart"
    assert max(after_restart) == pages
    assert sorted(set(fetched)) == list(range(1, pages + 1))
    # resumed from its last checkpoint: only the page in flight at the kill may come twice
    repeated = [n for n, times in Counter(fetched).items() if times > 1]
    assert set(repeated) <= {max(fetched_before_kill)}
    answer = served.run(run_id)
    assert (answer["status"], len(answer["output"]["fetched"])) == ("succeeded", pages)


def test_closing_the_tab_never_stops_a_run(
    page: Page, new_page: Callable[..., Page], served: Served, receiver: HttpReceiver
) -> None:
    pages = 10
    before = len(page_requests(receiver))
    open_as(page, served, "ed", "/graphs")
    run_id = start_from_library(page, served, "crawl", pages=str(pages))
    expect(steps_of(page, "fetch").first).to_be_attached()
    page.close()
    try:
        assert served.run(run_id)["status"] == "running"  # the tab closed mid-run
        pace(receiver, FAST_S)
        wait_until(lambda: served.run(run_id)["status"] != "running")
    finally:
        pace(receiver, SLOW_S)
    answer = served.run(run_id)
    assert (answer["status"], len(answer["output"]["fetched"])) == ("succeeded", pages)
    assert sorted(page_requests(receiver)[before:]) == list(range(1, pages + 1))
    fresh = new_page(like=page)  # another tab of the same session
    fresh.goto(f"{served.base_url}/runs/{run_id}")
    expect(status_badge(fresh, "succeeded")).to_be_visible()
    expect(steps_of(fresh, "fetch")).to_have_count(pages)
