"""The run console with NiceGUI's `user` fixture: start a run from the library or the editor
with the generated input form, live events, the timeline with tokens, cancel, retry from
the failed step, fork with a state edit, schedules, and what viewers and outsiders get."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
from nicegui import ui
from nicegui.testing import User

from graphs.forks import fork_of
from graphs.timeline import run_timeline
from studio.web_auth import SESSION_COOKIE
from tests.conftest import example
from tests.graphs.test_forks import chain_doc
from tests.loopback.http_receiver import HttpReceiver
from tests.studio.web_fixtures import Seeded, add_graph, seeded_studio, set_role

pytestmark = pytest.mark.nicegui_main_file("tests/studio/web_main.py")
T = TypeVar("T")

MARKUP = "<script>alert('pwned')</script><img src=x onerror=alert(1)> **Done**"


def markup_agent() -> dict[str, Any]:
    """One model call whose answer is hostile markup (and echoes the hostile input)."""
    return {
        "schema_version": 1,
        "name": "Markup agent",
        "entry": "agent",
        "state": [
            {"name": "topic", "type": "string", "input": True, "description": "What about."},
            {"name": "answer", "type": "string"},
        ],
        "nodes": [
            {
                "id": "agent",
                "type": "llm",
                "config": {
                    "provider": "scripted",
                    "system_prompt": "You answer in one line.",
                    "prompt": "Write about {{ topic }}",
                    "output_field": "answer",
                    "provider_config": {"script": [{"text": MARKUP + " on {{ topic }}"}]},
                },
            },
            {"id": "done", "type": "output", "config": {"fields": ["answer"]}},
        ],
        "edges": [{"source": "agent", "target": "done"}],
    }


def sign_in(user: User, seeded: Seeded, name: str) -> None:
    user.http_client.cookies.set(SESSION_COOKIE, seeded.session_cookie(name))


async def until(check: Callable[[], T | None], timeout_s: float = 20.0) -> T:
    """Poll `check` while the page's event loop runs (timers, the live feed)."""
    for _ in range(int(timeout_s / 0.05)):
        try:
            result = check()
        except AssertionError:  # `user.find` finds nothing yet
            result = None
        if result:
            return result
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {check}")


async def click(user: User, marker: str) -> None:
    """Click the element with `marker` once it is on the page (lists fill after loading)."""
    await user.should_see(marker=marker, retries=100)
    user.find(marker=marker).click()


def one(user: User, marker: str) -> Any:
    return next(iter(user.find(marker=marker).elements))


def texts(user: User, marker: str) -> list[str]:
    return [str(getattr(e, "text", "")) for e in user.find(marker=marker).elements]


def with_tokens(user: User, marker: str, also: str = "") -> list[str] | None:
    """The texts of the task card with `marker` once it shows token counts (and `also`)."""
    for card in user.find(marker=marker).elements:
        shown = [str(getattr(e, "text", "")) for e in card.descendants()]
        if any(" in · " in text and " out" in text for text in shown) and any(
            also in text for text in shown
        ):
            return shown
    return None


def visited_on_canvas(user: User) -> set[str] | None:
    nodes = one(user, "path-canvas").props["nodes"]
    return {n["id"] for n in nodes if n.get("diff") == "added"} or None


def run_page_id(user: User) -> str | None:
    path = user.back_history[-1] if user.back_history else ""
    return path.removeprefix("/runs/") if path.startswith("/runs/") else None


async def new_run_page(user: User, old: str | None = None) -> str:
    try:
        return await until(lambda: (r := run_page_id(user)) and r != old and r)
    except AssertionError:
        raise AssertionError(f"no new run page; notifications: {user.notify.messages}") from None


async def status_is(user: User, status: str) -> None:
    await user.should_see(marker="status", content=status, retries=300)


def run_view(seeded: Seeded, run_id: str, name: str = "ed") -> Any:
    with seeded_studio(seeded) as studio:
        return studio.manager.get(seeded.actor(name), run_id)


def run_count(seeded: Seeded) -> int:
    with seeded_studio(seeded) as studio:
        return len(studio.manager.list(seeded.actor("ad"), limit=1000))


async def start_from_dialog(user: User, values: dict[str, str]) -> str:
    await user.should_see(marker="start-run", retries=200)
    for name, value in values.items():
        one(user, f"input-{name}").set_value(value)
    await click(user, "start-run")
    return await new_run_page(user)


@pytest.fixture
def flaky(receiver: HttpReceiver, monkeypatch: pytest.MonkeyPatch) -> Iterator[HttpReceiver]:
    """A payment API the studio may reach; its notify endpoint is down at first."""
    receiver.route("/charges", status=201, body={"charge": "ch_1"})
    receiver.route("/notify", status=503, body={"error": "down"})
    monkeypatch.setenv("STUDIO_HTTP_ALLOW", receiver.host_port)
    yield receiver


# --- starting, watching, the timeline ----------------------------------------------------


async def test_start_from_the_library_with_the_input_form_and_see_the_timeline(
    seeded: Seeded, user: User
) -> None:
    sign_in(user, seeded, "ed")
    await user.open("/graphs")
    await click(user, f"run-{seeded.graphs['router']}")
    await user.should_see("Run Ticket triage", retries=200)
    run_id = await start_from_dialog(user, {"ticket": "My invoice is wrong"})

    await status_is(user, "succeeded")
    await user.should_see(
        marker="run-output", content="Billing will correct your invoice", retries=200
    )
    await user.should_see(marker="event", content="node_finished route", retries=200)
    await until(lambda: len(user.find(marker="step").elements) >= 4)
    path = [e.text for e in one(user, "path").descendants() if isinstance(e, ui.badge)]
    assert path == ["classify", "route", "billing", "done"]
    marked = await until(lambda: visited_on_canvas(user))
    assert marked == {"classify", "route", "billing", "done"}  # not bug, retry, escalate
    view = run_view(seeded, run_id)
    assert view.input == {"ticket": "My invoice is wrong"}
    assert view.started_by == seeded.users["ed"]
    await user.open("/runs")
    await user.should_see(marker=f"run-{run_id}", retries=200)


async def test_live_tokens_steps_and_model_markup_shown_as_text(seeded: Seeded, user: User) -> None:
    graph = add_graph(seeded, markup_agent())
    sign_in(user, seeded, "ed")
    await user.open(f"/graphs/{graph}")  # the editor's toolbar has the Run button too
    await click(user, "run-graph")
    await start_from_dialog(user, {"topic": "<b>bold topic</b>"})

    await status_is(user, "succeeded")
    expected = f"{MARKUP} on <b>bold topic</b>"
    await until(lambda: expected in texts(user, "stream"))  # the streamed tokens, as text
    for kind in ("node_started agent", "node_finished agent", "run_status"):
        await user.should_see(marker="event", content=kind, retries=200)
    # A refresh between the step's end event and its saved writes shows the token counts
    # before what the model saw; the refresh after the run's end shows both.
    shown = await until(lambda: with_tokens(user, "task-agent", "You answer in one line."))
    assert "—" in shown  # the cost: not metered for this model, so unknown, never "$0"
    assert not any(text.startswith("$0") for text in shown)
    assert any("You answer in one line." in text for text in shown)  # what the model saw
    assert any(expected in text for text in shown)
    # markup reaches the page only as the text of labels, never as HTML or Markdown
    client = user.client
    assert client is not None
    for element in client.layout.descendants():
        if isinstance(element, ui.html | ui.markdown | ui.code):
            assert "pwned" not in str(element.content)
    labels = [e for e in client.layout.descendants() if isinstance(e, ui.label)]
    assert any(expected in e.text for e in labels)


async def test_cancel_a_run_waiting_for_approval(seeded: Seeded, user: User) -> None:
    add_graph(seeded, example("support_agent"))
    sign_in(user, seeded, "ed")
    await user.open("/graphs")
    graph = next(g for n, g in graph_ids(seeded).items() if n == "Support agent")
    await click(user, f"run-{graph}")
    run_id = await start_from_dialog(user, {"order_id": "A-1001"})

    await status_is(user, "waiting_approval")
    await user.should_see(marker="event", content="approval_requested", retries=200)
    await click(user, "cancel")
    await status_is(user, "cancelled")
    await user.should_see(marker="event", content="run_status  cancelled", retries=200)
    await user.should_not_see(marker="cancel", retries=100)
    assert run_view(seeded, run_id).status == "cancelled"


async def test_closing_the_tab_ends_the_feed_and_leaves_the_run_alone(
    seeded: Seeded, user: User
) -> None:
    graph = add_graph(seeded, example("support_agent"))
    sign_in(user, seeded, "ed")
    await user.open("/graphs")
    before = set(threading.enumerate())
    await click(user, f"run-{graph}")
    run_id = await start_from_dialog(user, {"order_id": "A-1001"})
    await status_is(user, "waiting_approval")
    feeds = [t for t in threading.enumerate() if t.name == "run-page-feed" and t not in before]
    assert feeds and all(t.is_alive() for t in feeds)

    client = user.client
    assert client is not None
    client.delete()  # the tab is gone
    await until(lambda: not any(t.is_alive() for t in feeds))
    assert run_view(seeded, run_id).status == "waiting_approval"  # untouched
    with seeded_studio(seeded) as studio:  # someone confirms later: the run goes on
        manager, ed = studio.manager, seeded.actor("ed")
        [email] = manager.approvals.list(ed, run_id=run_id)
        manager.decide(ed, email.approval_id, "approve")
        assert manager.wait(ed, run_id, timeout_s=30).status == "waiting_approval"
        waiting = [a.action for a in manager.approvals.list(ed, run_id=run_id)]
        assert "issue_refund" in waiting  # the run went on to its next gated call


def graph_ids(seeded: Seeded) -> dict[str, str]:
    with seeded_studio(seeded) as studio:
        return {g.name: g.graph_id for g in studio.manager.library.list(seeded.actor("ed"))}


async def test_retry_a_failed_run_from_the_failed_step(
    seeded: Seeded, flaky: HttpReceiver, user: User
) -> None:
    graph = add_graph(seeded, chain_doc(flaky))
    sign_in(user, seeded, "ed")
    await user.open("/graphs")
    await click(user, f"run-{graph}")
    failed = await start_from_dialog(user, {"order_id": "A-7"})
    await status_is(user, "failed")
    await user.should_see(marker="run-error", content="notify_it", retries=200)
    await user.should_see(marker="error", content="503", retries=200)  # on the failed step
    failed_nodes = await until(
        lambda: {n["id"] for n in one(user, "path-canvas").props["nodes"] if n.get("error")}
    )
    assert failed_nodes == {"notify_it"}

    flaky.route("/notify", status=201, body={"sent": True})
    await click(user, "retry")
    retried = await new_run_page(user, failed)
    await status_is(user, "succeeded")
    await user.should_see(marker="origin", content="retry of run", retries=200)
    paths = sorted(effect.path for effect in flaky.effects)
    assert paths == ["/charges", "/notify"]  # the charge before the failed step: once
    with seeded_studio(seeded) as studio:
        info = fork_of(studio.manager, seeded.actor("ed"), retried)
    assert info is not None and info.origin_run_id == failed and info.kind == "retry"


async def test_fork_from_a_step_with_a_state_edit(seeded: Seeded, user: User) -> None:
    sign_in(user, seeded, "ed")
    await user.open("/graphs")
    await click(user, f"run-{seeded.graphs['router']}")
    origin = await start_from_dialog(user, {"ticket": "My invoice is wrong"})
    await status_is(user, "succeeded")
    with seeded_studio(seeded) as studio:
        timeline = run_timeline(studio.manager, seeded.actor("ed"), origin)
    route = next(s for s in timeline.steps if s.nodes == ["route"])

    await until(lambda: user.find(marker=f"fork-{route.index}").elements)
    await click(user, f"fork-{route.index}")
    editor = one(user, "fork-state")
    state = json.loads(editor.value)
    assert state["category"] == "billing"
    editor.set_value(json.dumps({**state, "category": "bug"}))
    await click(user, "start-fork")
    fork = await new_run_page(user, origin)

    await status_is(user, "succeeded")
    await user.should_see(
        marker="run-output", content="Engineering is looking into the crash.", retries=200
    )
    await user.should_see(marker="origin", content="state edited: category", retries=200)
    with seeded_studio(seeded) as studio:
        info = fork_of(studio.manager, seeded.actor("ed"), fork)
    assert info is not None and info.edits == {"category": "bug"} and info.step == route.step


# --- authority and scope --------------------------------------------------------------------


def start_as(seeded: Seeded, name: str, graph: str, ticket: str) -> str:
    with seeded_studio(seeded) as studio:
        actor = seeded.actor(name)
        run_id = studio.manager.start_run(actor, graph_id=graph, input={"ticket": ticket})
        assert studio.manager.wait(actor, run_id, timeout_s=30).status == "succeeded"
        return run_id


async def test_a_viewer_gets_no_start_fork_cancel_or_schedule_edit(
    seeded: Seeded, user: User
) -> None:
    run_id = start_as(seeded, "ed", seeded.graphs["router"], "crash on start")
    sign_in(user, seeded, "vi")
    await user.open("/graphs")
    await user.should_see("Ticket triage", retries=200)
    await user.should_not_see(marker="run-graph")
    await click(user, f"schedule-{seeded.graphs['router']}")
    await user.should_see(marker="schedule-status", content="Not scheduled.", retries=200)
    await user.should_not_see(marker="save-schedule")
    await user.open(f"/runs/{run_id}")
    await status_is(user, "succeeded")
    await until(lambda: user.find(marker="step").elements)
    for marker in ("fork", "cancel", "retry"):
        await user.should_not_see(marker=marker)


async def test_a_stale_run_button_is_refused_by_the_service(seeded: Seeded, user: User) -> None:
    sign_in(user, seeded, "ed")
    await user.open("/graphs")
    await click(user, f"run-{seeded.graphs['router']}")
    await user.should_see(marker="start-run", retries=200)
    one(user, "input-ticket").set_value("anything")
    runs = run_count(seeded)
    set_role(seeded, "ed", "viewer")  # while the dialog is open (or a forged event)
    await click(user, "start-run")
    await until(lambda: user.notify.messages)
    assert run_count(seeded) == runs
    assert run_page_id(user) is None


async def test_a_stale_fork_button_is_refused_by_the_service(seeded: Seeded, user: User) -> None:
    run_id = start_as(seeded, "ed", seeded.graphs["router"], "My invoice is wrong")
    sign_in(user, seeded, "ed")
    await user.open(f"/runs/{run_id}")
    await until(lambda: user.find(marker="fork-1").elements)
    await click(user, "fork-1")
    editor = one(user, "fork-state")
    editor.set_value(json.dumps({**json.loads(editor.value), "category": "bug"}))
    runs = run_count(seeded)
    set_role(seeded, "ed", "runner")  # may run, may not edit graphs: no time travel
    await click(user, "start-fork")
    await until(lambda: user.notify.messages)
    assert run_count(seeded) == runs
    assert run_page_id(user) == run_id


async def test_a_foreign_run_is_not_found_and_not_listed(seeded: Seeded, user: User) -> None:
    foreign = start_as(seeded, "mallory", seeded.foreign_graph, "Evil secret ticket")
    mine = start_as(seeded, "ed", seeded.graphs["router"], "crash")
    sign_in(user, seeded, "ed")
    await user.open(f"/runs/{foreign}")
    await user.should_see("This run does not exist in your workspace.", retries=200)
    await user.should_not_see("Evil secret")
    await user.should_not_see(marker="timeline")
    await user.open(f"/runs?graph={seeded.foreign_graph}")  # a foreign filter is dropped
    await user.should_see(marker=f"run-{mine}", retries=200)
    await user.should_not_see(marker=f"run-{foreign}", retries=100)


async def test_run_list_filters_by_status_graph_and_starter(seeded: Seeded, user: User) -> None:
    by_ed = start_as(seeded, "ed", seeded.graphs["router"], "crash")
    by_admin = start_as(seeded, "ad", seeded.graphs["router"], "invoice")
    with seeded_studio(seeded) as studio:
        waiting_graph = studio.manager.library.create(
            seeded.actor("ed"), example("support_agent")
        ).graph_id
        waiting = studio.manager.start_run(
            seeded.actor("ed"), graph_id=waiting_graph, input={"order_id": "A-1"}
        )
        studio.manager.wait(seeded.actor("ed"), waiting, timeout_s=30)
    sign_in(user, seeded, "vi")
    await user.open("/runs")
    for run_id in (by_ed, by_admin, waiting):
        await user.should_see(marker=f"run-{run_id}", retries=200)
    one(user, "filter-status").set_value("waiting_approval")
    await user.should_not_see(marker=f"run-{by_ed}", retries=100)
    await user.should_see(marker=f"run-{waiting}", retries=200)
    one(user, "filter-status").set_value("")
    one(user, "filter-by").set_value(seeded.users["ad"])
    await user.should_see(marker=f"run-{by_admin}", retries=200)
    await user.should_not_see(marker=f"run-{by_ed}", retries=100)
    one(user, "filter-by").set_value("")
    one(user, "filter-graph").set_value(waiting_graph)
    await user.should_see(marker=f"run-{waiting}", retries=200)
    await user.should_not_see(marker=f"run-{by_admin}", retries=100)
    one(user, "filter-since").set_value("1h")
    await user.should_see(marker=f"run-{waiting}", retries=200)


async def test_schedule_a_graph_from_its_library_row(seeded: Seeded, user: User) -> None:
    graph = seeded.graphs["router"]
    sign_in(user, seeded, "ed")
    await user.open("/graphs")
    await click(user, f"schedule-{graph}")
    await user.should_see(marker="schedule-status", content="Not scheduled.", retries=200)
    one(user, "schedule-cron").set_value("not a cron")
    one(user, "input-ticket").set_value("Nightly invoice check")
    await click(user, "save-schedule")
    await until(lambda: any("not a cron" in str(m) for m in user.notify.messages))
    one(user, "schedule-cron").set_value("*/15 * * * *")
    await click(user, "save-schedule")
    await until(lambda: any("Scheduled: next run" in str(m) for m in user.notify.messages))
    with seeded_studio(seeded) as studio:
        view = studio.manager.schedules.get(seeded.actor("ed"), graph)
    assert view is not None
    assert (view.cron, view.input, view.run_as) == (
        "*/15 * * * *",
        {"ticket": "Nightly invoice check"},
        seeded.users["ed"],
    )
    await user.open(f"/graphs/{graph}")  # and on the editor's toolbar
    await click(user, "schedule-graph")
    await user.should_see(
        marker="schedule-status", content="*/15 * * * * (UTC), enabled", retries=200
    )
