"""A tiny NiceGUI app around one GraphCanvas, for the canvas's e2e tests and its benchmark.

`GET /?scenario=NAME` resets the server-side model to a scenario (`basic`, `hostile`,
`styled`, `grid` with `n=` nodes and `m=` edges; `readonly=1` starts read-only) and shows it;
`GET /` shows the current model (a reload after edits). `GET /state` returns the model and
every event received. Run with `python -m tests.e2e.canvas_app` (see `harness.start_server`).
Served as the studio serves its pages (`studio.canvas.page_options`: the compiled Tailwind
stylesheet, gzip level 1); `CANVAS_DEFAULTS=1` serves it with NiceGUI's defaults instead (its
Tailwind runtime, gzip level 9), for the benchmark's comparison.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from typing import Any

from nicegui import app, ui

from studio.canvas import END, EVENTS, GraphCanvas, auto_layout, page_options
from tests.e2e.harness import serve_args

XSS = '<img src=x onerror="window.__pwned=1;alert(1)">'
SCRIPT = "<script>window.__pwned=2;alert(2)</script>"

PALETTE: list[dict[str, Any]] = [
    {
        "group": "Models",
        "items": [{"type": "llm", "title": "LLM call", "description": "Ask a chat model"}],
    },
    {
        "group": "Tools",
        "items": [
            {"type": "tool", "title": "Tool call", "description": "Run one tool"},
            {"type": "http", "title": "HTTP request", "description": "Call a web API"},
        ],
    },
    {
        "group": "Flow",
        "items": [{"type": "router", "title": "Router", "description": "Branch on state"}],
    },
]
OTHER_PALETTE: list[dict[str, Any]] = [
    {
        "group": "Memory",
        "items": [{"type": "memory", "title": "Remember", "description": "Store a fact"}],
    }
]


def _node(
    node_id: str, node_type: str, label: str, x: float, y: float, **extra: Any
) -> dict[str, Any]:
    node = {
        "id": node_id,
        "type": node_type,
        "label": label,
        "position": {"x": x, "y": y},
        "group": "",
    }
    return node | {"error": None, "diff": None, "selected": False} | extra


def _edge(edge_id: str, source: str, target: str, **extra: Any) -> dict[str, Any]:
    edge = {"id": edge_id, "source": source, "target": target, "label": "", "conditional": False}
    return edge | {"error": None, "diff": None} | extra


def basic() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    nodes = [
        _node("a", "llm", "Draft reply", 0, 0),
        _node("b", "tool", "Lookup order", 300, 0),
        _node("c", "router", "Route", 600, 0),
        _node("d", "llm", "Summarize", 300, 220),
    ]
    edges = [
        _edge("e1", "a", "b"),
        _edge("e2", "b", "c"),
        _edge("e3", "c", END, label="done", conditional=True),
    ]
    return nodes, edges


def hostile() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    nodes = [
        _node("x1", XSS, XSS, 0, 0, error=SCRIPT),
        _node("x2", "llm", SCRIPT, 300, 0, group=XSS),
        _node("x3", "llm", "{{ 7*7 }} ${7*7}", 300, 200),
    ]
    edges = [_edge("ex1", "x1", "x2", label=XSS, conditional=True, error=SCRIPT)]
    return nodes, edges


def styled() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    nodes = [
        _node("bad", "llm", "Broken", 0, 0, error="prompt template is empty"),
        _node("new", "tool", "Added", 300, 0, diff="added"),
        _node("old", "tool", "Removed", 300, 200, diff="removed"),
        _node("mod", "llm", "Changed", 600, 0, diff="changed"),
    ]
    edges = [
        _edge("s1", "bad", "new", error="condition refers to an unknown field"),
        _edge("s2", "new", "mod", diff="added"),
        _edge("s3", "bad", "old", diff="removed"),
        _edge("s4", "old", "mod", diff="changed"),
    ]
    return nodes, edges


def grid(n: int, m: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """`n` nodes in rows of 10, `m` forward edges (each row a chain, then diagonals)."""
    nodes = [_node(f"n{i}", "llm", f"Step {i}", (i // 10) * 260, (i % 10) * 120) for i in range(n)]
    pairs = [(i, i + 10) for i in range(n - 10)]
    pairs += [(i, i + 11) for i in range(n - 11) if i % 10 != 9]
    pairs += [(i, i + 9) for i in range(n - 9) if i % 10 != 0]
    edges = [_edge(f"g{k}", f"n{a}", f"n{b}") for k, (a, b) in enumerate(pairs[:m])]
    return nodes, edges


@dataclass
class Model:
    """The server's copy of the graph, with undo history and a log of received events."""

    nodes: list[dict[str, Any]] = field(default_factory=list)
    edges: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    past: list[Any] = field(default_factory=list)
    future: list[Any] = field(default_factory=list)
    pushes: int = 0
    saves: int = 0
    counter: int = 0

    def reset(self, nodes: list[dict[str, Any]], edges: list[dict[str, Any]]) -> None:
        self.__dict__.update(vars(Model(nodes=nodes, edges=edges)))

    def new_id(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def snapshot(self) -> None:
        self.past.append(copy.deepcopy((self.nodes, self.edges)))
        self.future.clear()

    def step(self, back: bool) -> bool:
        source, target = (self.past, self.future) if back else (self.future, self.past)
        if not source:
            return False
        target.append(copy.deepcopy((self.nodes, self.edges)))
        self.nodes, self.edges = source.pop()
        return True

    def node_ids(self) -> set[str]:
        return {node["id"] for node in self.nodes}


MODEL = Model()


class Page:
    """Applies the canvas's events to MODEL and pushes changed graphs back."""

    def __init__(self, canvas: GraphCanvas) -> None:
        self.canvas = canvas
        for name in EVENTS:
            canvas.on(name, lambda event, name=name: self.handle(name, event.args))

    def push(self) -> None:
        MODEL.pushes += 1
        self.canvas.set_graph(MODEL.nodes, MODEL.edges)

    def handle(self, name: str, args: dict[str, Any]) -> None:
        MODEL.events.append({"event": name, "args": args})
        if getattr(self, f"on_{name}")(args):
            self.push()

    def on_add(self, args: dict[str, Any]) -> bool:
        item = next(
            i | {"group": g["group"]}
            for g in PALETTE
            for i in g["items"]
            if i["type"] == args["type"]
        )
        MODEL.snapshot()
        position = {"x": args["position"]["x"], "y": args["position"]["y"]}
        node = _node(MODEL.new_id("n"), item["type"], item["title"], 0, 0, group=item["group"])
        MODEL.nodes.append(node | {"position": position})
        return True

    def on_connect(self, args: dict[str, Any]) -> bool:
        source, target = args["source"], args["target"]
        known = MODEL.node_ids() | {END}
        duplicate = any(e["source"] == source and e["target"] == target for e in MODEL.edges)
        if source not in known or target not in known or duplicate:
            return False
        MODEL.snapshot()
        MODEL.edges.append(_edge(MODEL.new_id("e"), source, target))
        return True

    def on_move(self, args: dict[str, Any]) -> bool:
        MODEL.snapshot()
        for node in MODEL.nodes:
            if node["id"] in args["positions"]:
                node["position"] = args["positions"][node["id"]]
        return False  # the browser already shows it

    def on_remove(self, args: dict[str, Any]) -> bool:
        gone_nodes, gone_edges = set(args["nodes"]), set(args["edges"])
        MODEL.snapshot()
        MODEL.nodes = [n for n in MODEL.nodes if n["id"] not in gone_nodes]
        MODEL.edges = [
            e
            for e in MODEL.edges
            if e["id"] not in gone_edges and not {e["source"], e["target"]} & gone_nodes
        ]
        return True

    def on_select(self, args: dict[str, Any]) -> bool:
        for node in MODEL.nodes:
            node["selected"] = node["id"] in args["nodes"]
        return False

    def on_paste(self, args: dict[str, Any]) -> bool:
        copies = {n["id"]: n for n in MODEL.nodes if n["id"] in set(args["nodes"])}
        if not copies:
            return False
        MODEL.snapshot()
        dx, dy = args["offset"]["x"], args["offset"]["y"]
        new_ids = {old: MODEL.new_id("n") for old in copies}
        for node in MODEL.nodes:
            node["selected"] = False
        for old, node in copies.items():
            position = {"x": node["position"]["x"] + dx, "y": node["position"]["y"] + dy}
            MODEL.nodes.append(node | {"id": new_ids[old], "position": position, "selected": True})
        for edge in [e for e in MODEL.edges if e["source"] in copies and e["target"] in copies]:
            ends = {"source": new_ids[edge["source"]], "target": new_ids[edge["target"]]}
            MODEL.edges.append(edge | {"id": MODEL.new_id("e")} | ends)
        return True

    def on_shortcut(self, args: dict[str, Any]) -> bool:
        key = args["key"]
        if key in ("undo", "redo"):
            return MODEL.step(back=key == "undo")
        if key == "save":
            MODEL.saves += 1
        if key == "layout":
            MODEL.snapshot()
            positions = auto_layout(MODEL.nodes, MODEL.edges)
            for node in MODEL.nodes:
                node["position"] = positions[node["id"]]
            self.push()
            self.canvas.fit_view()
        return False


@ui.page("/")
def index(scenario: str | None = None, readonly: int = 0, n: int = 300, m: int = 400) -> None:
    if scenario is not None:
        build = {"basic": basic, "hostile": hostile, "styled": styled}.get(scenario)
        nodes, edges = build() if build else grid(n, m)
        MODEL.reset(nodes, edges)
    palette = copy.deepcopy(PALETTE)
    if scenario == "hostile":
        palette.append(
            {"group": XSS, "items": [{"type": "evil", "title": SCRIPT, "description": XSS}]}
        )
    controls = ui.row()
    canvas = GraphCanvas(
        nodes=MODEL.nodes, edges=MODEL.edges, palette=palette, readonly=bool(readonly)
    )
    canvas.style("height: 640px; width: 100%")
    with controls:  # server-side calls of the canvas's methods, above it
        ui.switch(
            "Read-only", value=bool(readonly), on_change=lambda e: canvas.set_readonly(e.value)
        )
        ui.button("Fit (server)", on_click=canvas.fit_view).props("id=server-fit")
        ui.button("Other palette", on_click=lambda: canvas.set_palette(OTHER_PALETTE)).props(
            "id=server-palette"
        )
    Page(canvas)


@app.get("/state")
async def state() -> dict[str, Any]:
    return {
        "nodes": MODEL.nodes,
        "edges": MODEL.edges,
        "events": MODEL.events,
        "pushes": MODEL.pushes,
        "saves": MODEL.saves,
    }


if __name__ in {"__main__", "__mp_main__"}:
    ui.run(
        title="Graph canvas test",
        uvicorn_logging_level="warning",
        **({} if os.environ.get("CANVAS_DEFAULTS") == "1" else page_options()),
        **serve_args(),
    )
