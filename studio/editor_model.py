"""The editor's document model: edits, undo/redo and the canvas view of a graph document.

Pure Python (no NiceGUI): the editor page turns canvas events into these calls. The model
holds the document as JSON; every edit takes a snapshot first, so undo/redo cover canvas
edits and form edits alike. Node ids are issued here, never by the browser.
"""

from __future__ import annotations

__all__ = ["BLANK", "EditorModel", "palette"]

import copy
import re
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import ValidationError

from components.errors import Problem, UserError
from components.registry import Registry
from graphs.diff import Change
from graphs.spec import END, GraphDocument
from graphs.validation import problems_of

HISTORY_LIMIT = 200
BLANK: dict[str, Any] = {
    "schema_version": 1,
    "name": "Untitled graph",
    "entry": "output",
    "nodes": [{"id": "output", "type": "output", "label": "Output", "config": {}}],
    "edges": [{"source": "output", "target": END}],
}
_GROUP_ORDER = ("Models", "Tools", "Flow", "People", "Memory", "Data", "Output")


def palette(registry: Registry) -> list[dict[str, Any]]:
    """Node types grouped for the canvas palette (registry order within a group)."""
    groups: dict[str, list[dict[str, str]]] = {}
    for spec in registry.nodes.values():
        groups.setdefault(spec.group, []).append(
            {"type": spec.type_name, "title": spec.title, "description": spec.description}
        )
    order = {name: i for i, name in enumerate(_GROUP_ORDER)}
    return [
        {"group": g, "items": items}
        for g, items in sorted(groups.items(), key=lambda kv: (order.get(kv[0], 99), kv[0]))
    ]


class EditorModel:
    def __init__(self, document: Mapping[str, Any], registry: Registry) -> None:
        self.doc: dict[str, Any] = copy.deepcopy(dict(document))
        self.doc.setdefault("edges", [])
        self._registry = registry
        self._undo: list[dict[str, Any]] = []
        self._redo: list[dict[str, Any]] = []
        self.dirty = False

    # ------------------------------------------------------------------ history

    def _snapshot(self) -> None:
        self._undo.append(copy.deepcopy(self.doc))
        del self._undo[:-HISTORY_LIMIT]
        self._redo.clear()
        self.dirty = True

    def undo(self) -> bool:
        if not self._undo:
            return False
        self._redo.append(self.doc)
        self.doc = self._undo.pop()
        self.dirty = True
        return True

    def redo(self) -> bool:
        if not self._redo:
            return False
        self._undo.append(self.doc)
        self.doc = self._redo.pop()
        self.dirty = True
        return True

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    def replace(self, document: Mapping[str, Any], *, keep_history: bool = True) -> None:
        """Load another document (a restored version, a reviewed merge)."""
        if keep_history:
            self._snapshot()
        else:
            self._undo.clear()
            self._redo.clear()
        self.doc = copy.deepcopy(dict(document))
        self.doc.setdefault("edges", [])

    # ------------------------------------------------------------------ edits

    def node(self, node_id: str) -> dict[str, Any]:
        for node in self.doc["nodes"]:
            if node["id"] == node_id:
                return dict(node)
        raise UserError(f"the graph has no node {node_id!r}")

    def edge(self, edge_id: str) -> dict[str, Any] | None:
        return next((dict(e) for e in self.doc["edges"] if _edge_id(e) == edge_id), None)

    def add_node(self, node_type: str, position: Mapping[str, float]) -> str:
        spec = self._registry.nodes.get(node_type)
        if spec is None:
            raise UserError(f"unknown node type {node_type!r}")
        self._snapshot()
        node_id = self._new_id(node_type)
        self.doc["nodes"].append(
            {
                "id": node_id,
                "type": node_type,
                "label": spec.title,
                "config": {},
                "position": _position(position),
            }
        )
        if not self.doc.get("entry") or len(self.doc["nodes"]) == 1:
            self.doc["entry"] = node_id
        return node_id

    def connect(self, source: str, target: str) -> str:
        ids = self._node_ids()
        if source not in ids or (target not in ids and target != END):
            raise UserError("connect two nodes of this graph")
        edge_id = f"{source}->{target}"
        if any(_edge_id(e) == edge_id for e in self.doc["edges"]):
            raise UserError(f"{source!r} is already connected to {target!r}")
        self._snapshot()
        self.doc["edges"].append({"source": source, "target": target})
        return edge_id

    def move(self, positions: Mapping[str, Mapping[str, float]]) -> None:
        moved = {k: _position(v) for k, v in positions.items() if k in self._node_ids()}
        if not moved:
            return
        self._snapshot()
        for node in self.doc["nodes"]:
            if node["id"] in moved:
                node["position"] = moved[node["id"]]

    def remove(self, node_ids: Iterable[str], edge_ids: Iterable[str]) -> None:
        nodes, edges = set(node_ids) - {END}, set(edge_ids)
        if not nodes and not edges:
            return
        self._snapshot()
        self.doc["nodes"] = [n for n in self.doc["nodes"] if n["id"] not in nodes]
        self.doc["edges"] = [
            e
            for e in self.doc["edges"]
            if _edge_id(e) not in edges and e["source"] not in nodes and e["target"] not in nodes
        ]
        if self.doc.get("entry") in nodes:
            self.doc["entry"] = self.doc["nodes"][0]["id"] if self.doc["nodes"] else ""

    def paste(self, node_ids: Iterable[str], offset: Mapping[str, float]) -> list[str]:
        """Copies of the nodes (new ids, shifted) and of the edges between them."""
        originals = [n for n in self.doc["nodes"] if n["id"] in set(node_ids)]
        if not originals:
            return []
        self._snapshot()
        dx, dy = float(offset.get("x", 40)), float(offset.get("y", 40))
        renamed: dict[str, str] = {}
        for node in originals:
            copy_ = copy.deepcopy(node)
            copy_["id"] = renamed[node["id"]] = self._new_id(node["type"])
            pos = node.get("position") or {"x": 0, "y": 0}
            copy_["position"] = {"x": pos["x"] + dx, "y": pos["y"] + dy}
            self.doc["nodes"].append(copy_)
        for edge in list(self.doc["edges"]):
            if edge["source"] in renamed and edge["target"] in renamed:
                new = {**edge, "source": renamed[edge["source"]]}
                new["target"] = renamed[edge["target"]]
                new.pop("id", None)
                self.doc["edges"].append(new)
        return list(renamed.values())

    def update_node(self, node_id: str, **fields: Any) -> None:
        """Change a node's label, description or config (the side panel's form)."""
        allowed = {"label", "description", "config"}
        if set(fields) - allowed:
            raise UserError(f"a node has no field {sorted(set(fields) - allowed)[0]!r}")
        self.node(node_id)
        self._snapshot()
        for node in self.doc["nodes"]:
            if node["id"] == node_id:
                node.update(copy.deepcopy(fields))

    def update_edge(self, edge_id: str, *, condition: str | None, label: str) -> None:
        self._snapshot()
        for edge in self.doc["edges"]:
            if _edge_id(edge) == edge_id:
                edge["condition"] = condition or None
                edge["label"] = label
                return
        raise UserError(f"the graph has no edge {edge_id!r}")

    def update_graph(self, **fields: Any) -> None:
        """Document fields: name, description, entry, state, tools, secrets, policies."""
        allowed = {"name", "description", "entry", "state", "tools", "secrets", "policies"}
        if set(fields) - allowed:
            raise UserError(f"a graph has no field {sorted(set(fields) - allowed)[0]!r}")
        self._snapshot()
        self.doc.update(copy.deepcopy(fields))

    # ------------------------------------------------------------------ checking

    def parsed(self) -> GraphDocument | None:
        """The document as a model, when it is well-formed (it may still have problems)."""
        try:
            return GraphDocument.model_validate(self.doc)
        except ValidationError:
            return None

    def problems(self) -> list[Problem]:
        """Every problem of the current document (shape first, then semantics)."""
        try:
            doc = GraphDocument.model_validate(self.doc)
        except ValidationError as exc:
            return [_shape_problem(error) for error in exc.errors()[:20]]
        return problems_of(doc, self._registry)

    # ------------------------------------------------------------------ canvas view

    def canvas(
        self, problems: list[Problem], diff: Iterable[Change] = ()
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Nodes and edges for the canvas, with their problems and diff marks."""
        node_errors, edge_errors = _by_place(problems)
        marks = {(c.kind, c.item): c.change for c in diff if c.change != "moved"}
        groups = {s.type_name: s.group for s in self._registry.nodes.values()}
        nodes = [
            {
                "id": n["id"],
                "type": n["type"],
                "label": n.get("label") or n["id"],
                "position": n.get("position") or {"x": 0.0, "y": 0.0},
                "group": groups.get(n["type"], ""),
                "error": node_errors.get(n["id"]),
                "diff": marks.get(("node", n["id"])),
                "entry": n["id"] == self.doc.get("entry"),
            }
            for n in self.doc["nodes"]
        ]
        edges = [
            {
                "id": _edge_id(e),
                "source": e["source"],
                "target": e["target"],
                "label": e.get("label") or e.get("condition") or "",
                "conditional": bool(e.get("condition")),
                "error": edge_errors.get(_edge_id(e)),
                "diff": marks.get(("edge", _edge_id(e))),
            }
            for e in self.doc["edges"]
        ]
        return nodes, edges

    # ------------------------------------------------------------------ helpers

    def _node_ids(self) -> set[str]:
        return {n["id"] for n in self.doc["nodes"]}

    def _new_id(self, node_type: str) -> str:
        base = re.sub(r"[^A-Za-z0-9_]", "_", node_type)[:50] or "node"
        taken, n = self._node_ids(), 1
        while f"{base}_{n}" in taken:
            n += 1
        return f"{base}_{n}"


def _edge_id(edge: Mapping[str, Any]) -> str:
    return str(edge.get("id") or f"{edge['source']}->{edge['target']}")


def _position(value: Mapping[str, Any]) -> dict[str, float]:
    try:
        x, y = float(value.get("x", 0)), float(value.get("y", 0))
    except (TypeError, ValueError):
        raise UserError("a position needs numbers x and y") from None
    if not (abs(x) < 1e7 and abs(y) < 1e7):
        raise UserError("a position is out of range")
    return {"x": round(x, 1), "y": round(y, 1)}


def _shape_problem(error: Mapping[str, Any]) -> Problem:
    loc = [str(p) for p in error.get("loc", ())]
    where = ".".join(loc) or "document"
    return Problem(where, str(error.get("msg", "is not valid")))


def _by_place(problems: Iterable[Problem]) -> tuple[dict[str, str], dict[str, str]]:
    nodes: dict[str, str] = {}
    edges: dict[str, str] = {}
    for p in problems:
        if p.node_id:
            nodes[p.node_id] = (
                f"{nodes[p.node_id]}; {p.message}" if p.node_id in nodes else p.message
            )
        if p.edge_id:
            edges[p.edge_id] = (
                f"{edges[p.edge_id]}; {p.message}" if p.edge_id in edges else p.message
            )
    return nodes, edges
