"""The API on a real uvicorn server: Server-Sent Events of runs, and decision races.

Reconnecting with `Last-Event-ID` (or `?after=`) misses no event and repeats none; the run
goes on while nobody listens; a client that goes away frees its thread and subscription;
ten clients on one run each get every event; two decisions at once give one 200 and one 409.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from graphs.events import RunEventView
from studio.api.sse import StreamSlots
from tests.studio.api.conftest import WAIT_S, ApiWorld, bearer
from tests.studio.api.support import (
    LiveServer,
    SseEvent,
    gated_line_document,
    mounted,
    sse_items,
)
from tests.tenancy_fixtures import WS_A, run_to_email


@pytest.fixture(scope="module")
def live(api: FastAPI) -> Iterator[LiveServer]:
    with LiveServer(mounted(api)) as server:
        yield server


@pytest.fixture(scope="module")
def http(live: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{live.url}/api", timeout=WAIT_S) as client:
        yield client


def read_events(
    http: httpx.Client,
    run_id: str,
    headers: dict[str, str],
    *,
    until: Callable[[SseEvent], bool] = lambda _e: False,
    params: dict[str, Any] | None = None,
) -> tuple[list[SseEvent], bool]:
    """Events until `until` says stop (then disconnect) or the server ends the stream;
    returns (events, whether the server ended it)."""
    events: list[SseEvent] = []
    with http.stream("GET", f"/runs/{run_id}/events", headers=headers, params=params) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/event-stream")
        for item in sse_items(r.iter_lines()):
            if isinstance(item, SseEvent):
                events.append(item)
                if until(item):
                    return events, False
    return events, True


def kind(name: str, **data: Any) -> Callable[[SseEvent], bool]:
    def match(event: SseEvent) -> bool:
        return event.event == name and all(event.json["data"].get(k) == v for k, v in data.items())

    return match


def stored(api_world: ApiWorld, run_id: str) -> list[RunEventView]:
    api_world.studio.manager.events.flush()
    return api_world.studio.manager.events.history(WS_A, run_id)


def slots(api: FastAPI) -> StreamSlots:
    result: StreamSlots = api.state.sse_slots
    return result


def eventually(check: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


def test_reconnecting_misses_nothing_repeats_nothing_and_the_run_goes_on_alone(
    http: httpx.Client, api_world: ApiWorld
) -> None:
    m, runner = api_world.studio.manager, api_world.actor(WS_A, "runner")
    reader = api_world.auth(WS_A, "viewer")
    approver = api_world.auth(WS_A, "approver")
    started = http.post(
        "/runs",
        headers=api_world.auth(WS_A, "runner"),
        json={"graph_id": api_world.world.ids_a.graph_id, "input": {"order_id": "S-1"}},
    )
    run_id = started.json()["run_id"]
    # 1: listen until the e-mail approval is asked for, then go away
    got, ended = read_events(http, run_id, reader, until=kind("approval_requested"))
    assert not ended
    email = got[-1].json["data"]["approval_id"]
    # 2: decide while nobody listens; the run goes on to the refund approval alone
    assert (
        http.post(
            f"/approvals/{email}/decision", headers=approver, json={"decision": "approve"}
        ).status_code
        == 200
    )
    m.wait(runner, run_id, timeout_s=WAIT_S)
    [refund] = m.approvals.list(runner, run_id=run_id)
    # 3: come back with Last-Event-ID: everything after it, through the next pause
    more, _ = read_events(
        http,
        run_id,
        {**reader, "Last-Event-ID": got[-1].id or ""},
        until=kind("approval_requested"),
    )
    assert more[0].seq == got[-1].seq + 1
    got += more
    # 4: leave in the middle of a running step (the payments API takes a second)
    world = api_world.world
    world.receiver.route("/refunds", status=201, body={"refund": "accepted"}, delay_s=1.0)
    try:
        decided = http.post(
            f"/approvals/{refund.approval_id}/decision",
            headers=approver,
            json={"decision": "approve"},
        )
        assert decided.status_code == 200
        more, _ = read_events(
            http,
            run_id,
            {**reader, "Last-Event-ID": got[-1].id or ""},
            until=kind("run_status", status="running"),
        )
        assert m.get(runner, run_id).status == "running"  # left while it runs
        got += more
        assert m.wait(runner, run_id, timeout_s=WAIT_S).status == "succeeded"
    finally:
        world.receiver.route("/refunds", status=201, body={"refund": "accepted"})
    # 5: `?after=` instead of the header; the server ends the stream after the final status
    rest, ended = read_events(http, run_id, reader, params={"after": got[-1].seq})
    assert ended and rest and rest[-1].json["data"]["status"] == "succeeded"
    got += rest
    seqs = [e.seq for e in got]
    assert seqs == list(range(1, len(seqs) + 1)), seqs  # none missed, none twice
    history = stored(api_world, run_id)
    assert [(e.seq, e.kind) for e in history] == [(e.seq, e.event) for e in got]
    assert [e.json["data"] for e in got] == [e.data for e in history]
    # and once the run is over, a reconnect ends at once with nothing new
    begun = time.monotonic()
    nothing, ended = read_events(http, run_id, {**reader, "Last-Event-ID": str(seqs[-1])})
    assert (nothing, ended) == ([], True) and time.monotonic() - begun < 3


def test_a_client_that_leaves_frees_its_thread_and_subscription(
    http: httpx.Client, api: FastAPI, api_world: ApiWorld
) -> None:
    run_id = api_world.world.ids_a.run_id  # paused on its refund approval: the stream idles
    m = api_world.studio.manager
    lines: list[str] = []
    with http.stream("GET", f"/runs/{run_id}/events", headers=api_world.auth(WS_A, "viewer")) as r:
        reading = r.iter_lines()  # kept: dropping a half-read iterator closes the connection
        started = time.monotonic()
        while time.monotonic() - started < 1.0:  # heartbeats every 0.3 s keep lines coming
            lines.append(next(reading))
        assert slots(api).active == 1 and m.events.has_subscribers(run_id)
        assert any(t.name == f"sse-{run_id[:8]}" for t in threading.enumerate())
    assert lines[0].startswith("retry: ")
    assert ": keepalive" in lines  # heartbeats are comments
    assert eventually(lambda: slots(api).active == 0)
    assert eventually(lambda: not m.events.has_subscribers(run_id))
    assert eventually(lambda: not any(t.name == f"sse-{run_id[:8]}" for t in threading.enumerate()))


def test_ten_clients_on_one_run_each_get_every_event(
    http: httpx.Client, api: FastAPI, api_world: ApiWorld
) -> None:
    m = api_world.studio.manager
    editor, runner = api_world.actor(WS_A, "editor"), api_world.actor(WS_A, "runner")
    graph = m.library.create(editor, gated_line_document(5))
    run_id = m.start_run(runner, graph_id=graph.graph_id)
    assert m.wait(runner, run_id, timeout_s=WAIT_S).status == "waiting_approval"
    results: dict[int, list[SseEvent]] = {}

    def listen(i: int) -> None:
        results[i], _ = read_events(http, run_id, api_world.auth(WS_A, "viewer"))

    threads = [threading.Thread(target=listen, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    assert eventually(lambda: slots(api).active == 10)
    [gate] = m.approvals.list(runner, run_id=run_id)
    m.decide(api_world.actor(WS_A, "approver"), gate.approval_id, "approve")
    for t in threads:
        t.join(timeout=WAIT_S)
    history = [(e.seq, e.kind) for e in stored(api_world, run_id)]
    assert history[-1][1] == "run_status" and len(history) > 20
    assert any(kind_ == "token" for _, kind_ in history)  # listeners get model tokens too
    for i in range(10):
        assert [(e.seq, e.event) for e in results[i]] == history, i
    assert eventually(lambda: slots(api).active == 0)


def test_a_token_revoked_mid_stream_ends_it_with_an_error_event(
    http: httpx.Client, api_world: ApiWorld
) -> None:
    viewer = api_world.actor(WS_A, "viewer")
    token = api_world.new_token(viewer, ["run:read"])
    run_id = api_world.world.ids_a.run_id
    items: list[SseEvent | str] = []
    with http.stream("GET", f"/runs/{run_id}/events", headers=bearer(token)) as r:
        for item in sse_items(r.iter_lines()):
            items.append(item)
            if len(items) == 1:
                [view] = [
                    t
                    for t in api_world.studio.tokens.list_tokens(viewer)
                    if token.startswith(f"sk_{t.prefix}_")
                ]
                api_world.studio.tokens.revoke_token(viewer, view.token_id)
    errors = [i for i in items if isinstance(i, SseEvent) and i.event == "error"]
    assert len(errors) == 1 and errors[0].json["status"] == 401
    assert items[-1] == errors[0]  # and the stream ended there


def test_a_bad_last_event_id_is_a_422(http: httpx.Client, api_world: ApiWorld) -> None:
    run_id = api_world.world.ids_a.run_id
    for value in ("abc", "-1", "1.5", "9" * 16, "1 2"):
        response = http.get(
            f"/runs/{run_id}/events",
            headers={**api_world.auth(WS_A, "viewer"), "Last-Event-ID": value},
        )
        assert response.status_code == 422, value
        assert response.headers["content-type"] == "application/problem+json"


def race(
    url: str, approval_id: str, headers: dict[str, str], decisions: tuple[str, ...]
) -> list[httpx.Response]:
    """POST the decisions at the same moment, each on its own connection."""
    barrier = threading.Barrier(len(decisions))
    answers: list[httpx.Response] = []

    def post(decision: str) -> None:
        with httpx.Client(base_url=url, timeout=WAIT_S) as own:
            barrier.wait()
            body = {"decision": decision}
            answers.append(
                own.post(f"/approvals/{approval_id}/decision", headers=headers, json=body)
            )

    threads = [threading.Thread(target=post, args=(d,)) for d in decisions]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=WAIT_S)
    return answers


@pytest.mark.parametrize("decisions", [("approve", "approve"), ("approve", "reject")])
def test_two_decisions_at_once_give_one_200_and_one_409(
    live: LiveServer, api_world: ApiWorld, decisions: tuple[str, str]
) -> None:
    runner = api_world.actor(WS_A, "runner")
    for attempt in range(3):
        run_id, email = run_to_email(
            api_world.world, runner, api_world.world.ids_a.version_id, f"R-{attempt}"
        )
        answers = race(
            f"{live.url}/api", email.approval_id, api_world.auth(WS_A, "approver"), decisions
        )
        assert sorted(a.status_code for a in answers) == [200, 409]
        winner = next(a for a in answers if a.status_code == 200).json()
        loser = next(a for a in answers if a.status_code == 409).json()
        assert loser["approval"]["decision"] == winner["decision"]
        assert loser["approval"]["decided_at"] == winner["decided_at"]
        decided = [
            e
            for e in api_world.studio.audit.entries(WS_A)
            if e.action == "approval.decided" and e.target == email.approval_id
        ]
        assert len(decided) == 1
        api_world.studio.manager.wait(runner, run_id, timeout_s=WAIT_S)
