"""Graphs and their immutable versions, scoped to the actor's workspace."""

from __future__ import annotations

__all__ = ["GraphLibrary", "GraphSummary", "VersionView"]

import hashlib
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from components.errors import NotFound
from components.gates import canonical_json
from components.registry import Registry
from graphs.identity import Actor, AuditHook, Authorizer, LocalAuthorizer, no_audit
from graphs.spec import GraphDocument
from graphs.tables import Graph, GraphVersion
from graphs.validation import load_document


@dataclass(frozen=True, slots=True)
class VersionView:
    version_id: str
    graph_id: str
    number: int
    document: GraphDocument
    message: str
    created_by: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class GraphSummary:
    graph_id: str
    name: str
    latest_version: int
    created_at: datetime


class GraphLibrary:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        registry: Registry,
        authorizer: Authorizer | None = None,
        audit: AuditHook = no_audit,
    ) -> None:
        self._sessions = sessions
        self._registry = registry
        self._authz: Authorizer = authorizer or LocalAuthorizer()
        self._audit = audit
        self._versions: dict[str, tuple[str, VersionView]] = {}  # immutable: safe to keep

    def create(self, actor: Actor, raw: Any, *, message: str = "") -> VersionView:
        """Validate and store a new graph with its first version; nothing is stored if invalid."""
        self._authz.require(actor, "graph:edit")
        doc = load_document(raw, self._registry)
        with self._sessions() as session:
            graph = Graph(
                graph_id=str(uuid.uuid4()),
                workspace_id=actor.workspace_id,
                name=doc.name,
                created_by=actor.user_id,
                created_at=datetime.now(UTC),
            )
            session.add(graph)
            session.flush()
            view = self._add_version(session, actor, graph, doc, message)
            session.commit()
        self._audit(actor, "graph.imported", view.graph_id, {"version": view.number})
        return view

    def save_version(
        self, actor: Actor, graph_id: str, raw: Any, *, message: str = ""
    ) -> VersionView:
        """A new immutable version; runs already started stay on theirs."""
        self._authz.require(actor, "graph:edit")
        doc = load_document(raw, self._registry)
        with self._sessions() as session:
            graph = self._graph(session, actor, graph_id)
            graph.name = doc.name
            view = self._add_version(session, actor, graph, doc, message)
            session.commit()
        self._audit(actor, "graph.published", view.graph_id, {"version": view.number})
        return view

    def version(self, actor: Actor, version_id: str) -> VersionView:
        self._authz.require(actor, "graph:read")
        cached = self._versions.get(version_id)
        if cached is None:
            with self._sessions() as session:
                row = session.get(GraphVersion, version_id)
                if row is None:
                    raise NotFound(f"graph version {version_id!r} not found")
                cached = self._versions[version_id] = (row.workspace_id, _version_view(row))
        workspace_id, view = cached
        if workspace_id != actor.workspace_id:
            raise NotFound(f"graph version {version_id!r} not found")
        return view

    def latest(self, actor: Actor, graph_id: str) -> VersionView:
        self._authz.require(actor, "graph:read")
        with self._sessions() as session:
            self._graph(session, actor, graph_id)
            row = session.scalars(
                select(GraphVersion)
                .where(GraphVersion.graph_id == graph_id)
                .order_by(GraphVersion.number.desc())
                .limit(1)
            ).one()
            return _version_view(row)

    def list(self, actor: Actor) -> list[GraphSummary]:
        self._authz.require(actor, "graph:read")
        query = (
            select(Graph, func.max(GraphVersion.number))
            .join(GraphVersion, GraphVersion.graph_id == Graph.graph_id)
            .where(Graph.workspace_id == actor.workspace_id, Graph.deleted_at.is_(None))
            .group_by(Graph.graph_id)
            .order_by(Graph.name)
        )
        with self._sessions() as session:
            return [
                GraphSummary(g.graph_id, g.name, number, g.created_at)
                for g, number in session.execute(query)
            ]

    def _graph(self, session: Session, actor: Actor, graph_id: str) -> Graph:
        graph = session.get(Graph, graph_id)
        if graph is None or graph.workspace_id != actor.workspace_id or graph.deleted_at:
            raise NotFound(f"graph {graph_id!r} not found")
        return graph

    @staticmethod
    def _add_version(
        session: Session, actor: Actor, graph: Graph, doc: GraphDocument, message: str
    ) -> VersionView:
        number = (
            session.scalar(
                select(func.max(GraphVersion.number)).where(GraphVersion.graph_id == graph.graph_id)
            )
            or 0
        ) + 1
        document = doc.model_dump(mode="json")
        row = GraphVersion(
            version_id=str(uuid.uuid4()),
            graph_id=graph.graph_id,
            workspace_id=actor.workspace_id,
            number=number,
            document=document,
            document_hash=hashlib.sha256(canonical_json(document).encode()).hexdigest(),
            message=message,
            created_by=actor.user_id,
            created_at=datetime.now(UTC),
        )
        session.add(row)
        session.flush()
        return _version_view(row)


def _version_view(row: GraphVersion) -> VersionView:
    return VersionView(
        version_id=row.version_id,
        graph_id=row.graph_id,
        number=row.number,
        document=GraphDocument.model_validate(row.document),
        message=row.message,
        created_by=row.created_by,
        created_at=row.created_at,
    )
