"""Checks of `policies` that need the whole graph: approval timeouts name real nodes."""

from __future__ import annotations

from components.errors import Problem
from graphs._places import _DOCUMENT, _node_place, _show
from graphs.spec import GraphDocument

_FIELD = "policies.approval_timeouts"


def _timeout_problems(doc: GraphDocument, depth: int) -> list[Problem]:
    timeouts = doc.policies.approval_timeouts
    if depth > 0 and timeouts:
        text = (
            f"{_FIELD} are not supported inside a sub-graph (its approvals wait without a "
            "deadline): remove them"
        )
        return [_DOCUMENT.problem(text)]
    types = {node.id: node.type for node in doc.nodes}
    problems = []
    for node_id, timeout in timeouts.items():
        if node_id not in types:
            text = (
                f"{_FIELD} names node {_show(node_id)}, which is not in this graph: "
                "use the id of a node that asks for approval, or remove the entry"
            )
            problems.append(_DOCUMENT.problem(text))
            continue
        place = _node_place(node_id)
        if timeout.warn_before is not None and timeout.warn_before >= timeout.after:
            text = (
                f"{_FIELD}: warn_before ({timeout.warn_before} s) must be less than after "
                f"({timeout.after} s), so the warning comes before the timeout"
            )
            problems.append(place.problem(text))
        if types[node_id] == "human_input" and timeout.action == "reject":
            text = (
                f"{_FIELD}: a question cannot be rejected, only answered; "
                "use action 'escalate' or 'leave'"
            )
            problems.append(place.problem(text))
        if types[node_id] == "subgraph":
            text = (
                f"{_FIELD}: the approvals of a sub-graph's nodes cannot time out; remove this entry"
            )
            problems.append(place.problem(text))
    return problems
