"""Node- and edge-level differences between two graph documents (for version history and
for reviewing a conflicting save)."""

from __future__ import annotations

__all__ = ["Change", "diff_documents"]

from dataclasses import dataclass
from typing import Any, Literal

from graphs.spec import EdgeDoc, GraphDocument, NodeDoc

ChangeKind = Literal["added", "removed", "changed", "moved"]
_GRAPH_FIELDS = ("name", "description", "entry", "state", "tools", "secrets", "policies")


@dataclass(frozen=True, slots=True)
class Change:
    """One difference: `item` is a node id, an edge id, or a document field for `graph`."""

    kind: Literal["node", "edge", "graph"]
    item: str
    change: ChangeKind
    fields: tuple[str, ...] = ()

    def __str__(self) -> str:
        what = f"{self.kind} {self.item!r} {self.change}"
        return f"{what} ({', '.join(self.fields)})" if self.fields else what


def diff_documents(old: GraphDocument, new: GraphDocument) -> list[Change]:
    """What changed from `old` to `new`: nodes, then edges, then document fields."""
    changes = _items(
        "node", {n.id: _node(n) for n in old.nodes}, {n.id: _node(n) for n in new.nodes}
    )
    changes += _items(
        "edge",
        {e.edge_id: _edge(e) for e in old.edges},
        {e.edge_id: _edge(e) for e in new.edges},
    )
    before, after = old.model_dump(mode="json"), new.model_dump(mode="json")
    changes += [
        Change("graph", name, "changed") for name in _GRAPH_FIELDS if before[name] != after[name]
    ]
    return changes


def _items(
    kind: Literal["node", "edge"], old: dict[str, dict[str, Any]], new: dict[str, dict[str, Any]]
) -> list[Change]:
    changes = [Change(kind, item, "added") for item in new if item not in old]
    changes += [Change(kind, item, "removed") for item in old if item not in new]
    for item in (i for i in new if i in old):
        fields = _changed_fields(old[item], new[item])
        if fields == ("position",):
            changes.append(Change(kind, item, "moved", fields))
        elif fields:
            changes.append(Change(kind, item, "changed", fields))
    return changes


def _changed_fields(old: dict[str, Any], new: dict[str, Any]) -> tuple[str, ...]:
    fields: list[str] = []
    for key in sorted(old.keys() | new.keys()):
        if key == "config":
            before, after = old.get(key) or {}, new.get(key) or {}
            fields += [
                f"config.{k}"
                for k in sorted(before.keys() | after.keys())
                if before.get(k) != after.get(k)
            ]
        elif old.get(key) != new.get(key):
            fields.append(key)
    return tuple(fields)


def _node(node: NodeDoc) -> dict[str, Any]:
    return node.model_dump(mode="json", exclude={"id"})


def _edge(edge: EdgeDoc) -> dict[str, Any]:
    return edge.model_dump(mode="json", exclude={"id"})
