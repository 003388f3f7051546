"""Graph structure: reachability, ambiguous defaults, cycles without exit (iterative)."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping

from components.errors import Problem
from graphs._places import _node_place, _show
from graphs.spec import (
    EdgeDoc,
    GraphDocument,
)

# ---------------------------------------------------------------- graph structure


def _graph_problems(doc: GraphDocument) -> list[Problem]:
    adjacency: dict[str, list[str]] = {node.id: [] for node in doc.nodes}
    for edge in doc.edges:
        if edge.source in adjacency and edge.target in adjacency:
            adjacency[edge.source].append(edge.target)
    return [
        *_unreachable(doc, adjacency),
        *_ambiguous_defaults(doc),
        *_closed_cycles(doc, adjacency),
    ]


def _unreachable(doc: GraphDocument, adjacency: Mapping[str, list[str]]) -> list[Problem]:
    if doc.entry not in adjacency:
        return []  # already reported; every node would look unreachable
    seen, queue = {doc.entry}, deque([doc.entry])
    while queue:
        for target in adjacency[queue.popleft()]:
            if target not in seen:
                seen.add(target)
                queue.append(target)
    return [
        _node_place(node_id).problem("unreachable node: connect it or delete it")
        for node_id in adjacency
        if node_id not in seen
    ]


def _ambiguous_defaults(doc: GraphDocument) -> list[Problem]:
    outgoing: dict[str, list[EdgeDoc]] = {}
    for edge in doc.edges:
        outgoing.setdefault(edge.source, []).append(edge)
    problems = []
    for source, out in outgoing.items():
        defaults = [e.edge_id for e in out if e.condition is None]
        if len(defaults) > 1 and len(defaults) < len(out):
            names = ", ".join(_show(d) for d in defaults)
            text = (
                f"ambiguous default: {len(defaults)} unconditional edges ({names}) next to "
                "conditional ones; keep one default and give the others a condition"
            )
            problems.append(_node_place(source).problem(text))
    return problems


def _closed_cycles(doc: GraphDocument, adjacency: Mapping[str, list[str]]) -> list[Problem]:
    if doc.policies.max_steps is not None:
        return []
    components = _components(adjacency)
    component_of = {node: i for i, members in enumerate(components) for node in members}
    left = {
        component_of[e.source]
        for e in doc.edges
        if e.source in component_of and component_of.get(e.target) != component_of[e.source]
    }
    problems = []
    for number, members in enumerate(components):
        start, inside = members[0], set(members)
        if number in left or (len(members) == 1 and start not in adjacency[start]):
            continue
        path = _cycle_through(start, inside, adjacency)
        shown = " → ".join(path if len(path) <= 12 else [*path[:11], "…", start])
        spans = f" (the loop spans {len(members)} nodes)" if len(members) > len(path) - 1 else ""
        text = (
            f"cycle {shown}{spans} has no exit and no step limit: add a conditional edge "
            "out of it or set policies.max_steps"
        )
        problems.append(_node_place(start).problem(text))
    return problems


def _components(adjacency: Mapping[str, list[str]]) -> list[list[str]]:
    """Strongly connected components (iterative Tarjan), members in document order."""
    order = {node: i for i, node in enumerate(adjacency)}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in adjacency:
        if root in index:
            continue
        work = [(root, 0)]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edge_no = work[-1]
            if edge_no < len(adjacency[node]):
                work[-1] = (node, edge_no + 1)
                target = adjacency[node][edge_no]
                if target not in index:
                    index[target] = low[target] = len(index)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, 0))
                elif target in on_stack:
                    low[node] = min(low[node], index[target])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                members: list[str] = []
                while not members or members[-1] != node:
                    members.append(stack.pop())
                    on_stack.discard(members[-1])
                found.append(sorted(members, key=order.__getitem__))
    return found


def _cycle_through(start: str, inside: set[str], adjacency: Mapping[str, list[str]]) -> list[str]:
    """A shortest cycle start → … → start inside one strongly connected component."""
    parents: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for target in adjacency[node]:
            if target == start:
                path = [node]
                while path[-1] != start:
                    path.append(parents[path[-1]])
                return [*reversed(path), start]
            if target in inside and target not in parents:
                parents[target] = node
                queue.append(target)
    return [start, start]
