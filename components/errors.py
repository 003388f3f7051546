"""The one error family of Agent Studio.

Three branches, after pydantic-ai: mistakes a person can fix (`UserError`), failures of a
run (`RunFailure`), and refusals (`NotFound`, `Conflict`, `Forbidden`). Messages name the
object and say what to do next. Approval pauses are not errors.
"""

from __future__ import annotations

__all__ = [
    "BudgetExceeded",
    "Conflict",
    "Forbidden",
    "GraphInvalid",
    "ModelFailure",
    "NotFound",
    "Problem",
    "RunFailure",
    "StudioError",
    "ToolFailure",
    "UserError",
]

from dataclasses import dataclass


class StudioError(Exception):
    """Root of every error the studio raises on purpose."""


class UserError(StudioError):
    """Bad input a person can correct."""


class NotFound(StudioError):
    """The object does not exist for this actor (foreign objects are 'not found' too)."""


class Conflict(StudioError):
    """The object changed state before this request (for example: already decided)."""


class Forbidden(StudioError):
    """The actor may see the object but not do this to it."""


class RunFailure(StudioError):
    """A run could not go on."""


class ToolFailure(RunFailure):
    """A tool call failed; the message is safe to show to the model and to people."""


class ModelFailure(RunFailure):
    """A model provider failed after its bounded retries."""


class BudgetExceeded(RunFailure):
    """A model call would exceed a budget and the graph's action on breach is to stop (or an
    admin refused the overspend): the run ends `budget_exceeded`."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One validation problem, located at a node, an edge or the document (`where`)."""

    where: str
    message: str
    node_id: str | None = None
    edge_id: str | None = None

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


class GraphInvalid(UserError):
    """A graph document has problems; all of them are listed."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        shown = "; ".join(str(p) for p in problems[:5])
        more = f" (+{len(problems) - 5} more)" if len(problems) > 5 else ""
        super().__init__(f"graph document is invalid: {shown}{more}")
