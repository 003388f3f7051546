"""Graphs and their immutable versions, scoped to the actor's workspace."""

from __future__ import annotations

__all__ = ["EditConflict", "GraphLibrary", "GraphSummary", "VersionSummary", "VersionView"]

import hashlib
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy import case, func, select
from sqlalchemy.orm import Session, sessionmaker

from components.errors import Conflict, GraphInvalid, NotFound, UserError
from components.gates import canonical_json
from components.registry import Registry
from graphs.identity import Actor, AuditHook, Authorizer, LocalAuthorizer, no_audit
from graphs.spec import GraphDocument
from graphs.tables import Graph, GraphVersion
from graphs.validation import load_document, problems_of

MAX_IMPORT_BYTES = 1_048_576


class EditConflict(Conflict):
    """Someone saved a newer version since the editor's base version: review, then force."""

    def __init__(self, graph_id: str, base: int | None, latest: int) -> None:
        self.graph_id, self.base, self.latest = graph_id, base, latest
        super().__init__(
            f"graph {graph_id!r} was saved as version {latest} since you started from "
            f"version {base}; review the differences, then save again to keep yours"
        )


@dataclass(frozen=True, slots=True)
class VersionView:
    version_id: str
    graph_id: str
    number: int
    document: GraphDocument
    message: str
    created_by: str
    created_at: datetime
    published: bool = True
    base_number: int | None = None


@dataclass(frozen=True, slots=True)
class VersionSummary:
    version_id: str
    number: int
    message: str
    created_by: str
    created_at: datetime
    published: bool


@dataclass(frozen=True, slots=True)
class GraphSummary:
    graph_id: str
    name: str
    latest_version: int
    created_at: datetime
    published_version: int | None = None
    updated_at: datetime | None = None


class GraphLibrary:
    """Graphs of a workspace and their immutable versions (drafts and published ones).

    Every method takes the acting identity, checks `authorize()` and scopes by its
    workspace: a foreign graph is "not found". Runs start on the newest published version.
    """

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

    # ------------------------------------------------------------------ writing

    def create(
        self,
        actor: Actor,
        raw: Any,
        *,
        message: str = "",
        publish: bool = True,
        audit_as: str = "graph.created",
    ) -> VersionView:
        """Store a new graph with its first version; nothing is stored if it is invalid
        (a draft only has to be well-formed)."""
        self._authz.require(actor, "graph:edit")
        doc = self._checked(raw, publish=publish)
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
            view = self._add_version(session, actor, graph, doc, message, publish, None)
            session.commit()
        self._audit(actor, audit_as, view.graph_id, {"version": view.number})
        return view

    def save_version(
        self,
        actor: Actor,
        graph_id: str,
        raw: Any,
        *,
        message: str = "",
        base: int | None = None,
        force: bool = False,
        publish: bool = True,
    ) -> VersionView:
        """A new immutable version; runs already started stay on theirs.

        `base` is the version the editor started from: when someone saved a newer one
        since, `EditConflict` is raised (nothing saved) unless `force` — never a silent
        overwrite. A draft (`publish=False`) may still have semantic problems.
        """
        self._authz.require(actor, "graph:edit")
        if publish:
            self._authz.require(actor, "graph:publish")
        doc = self._checked(raw, publish=publish)
        with self._sessions() as session:
            graph = self._graph(session, actor, graph_id)
            latest = self._latest_number(session, graph_id)
            if base is not None and base != latest and not force:
                raise EditConflict(graph_id, base, latest)
            graph.name = doc.name
            view = self._add_version(session, actor, graph, doc, message, publish, base)
            session.commit()
        action = "graph.published" if publish else "graph.saved"
        self._audit(actor, action, view.graph_id, {"version": view.number})
        return view

    def publish(self, actor: Actor, graph_id: str, number: int) -> VersionView:
        """Mark a saved version published (runs start on it); only a valid one."""
        self._authz.require(actor, "graph:publish")
        with self._sessions() as session:
            self._graph(session, actor, graph_id)
            row = self._version_row(session, graph_id, number)
            doc = GraphDocument.model_validate(row.document)
            problems = problems_of(doc, self._registry)
            if problems:
                raise GraphInvalid(problems)
            row.published = True
            session.commit()
            view = _version_view(row)
        self._versions.pop(view.version_id, None)
        self._audit(actor, "graph.published", graph_id, {"version": number})
        return view

    def restore(self, actor: Actor, graph_id: str, number: int) -> VersionView:
        """A new draft version with an old version's document (history is kept)."""
        old = self.version_number(actor, graph_id, number)
        return self.save_version(
            actor,
            graph_id,
            old.document.model_dump(mode="json"),
            message=f"restored version {number}",
            publish=False,
        )

    def duplicate(self, actor: Actor, graph_id: str) -> VersionView:
        """A new graph (new id) with a copy of the newest version's document."""
        source = self.head(actor, graph_id)
        document = source.document.model_dump(mode="json")
        document["name"] = f"Copy of {source.document.name}"[:200]
        return self.create(
            actor, document, message=f"copied from {graph_id}", publish=source.published
        )

    def delete(self, actor: Actor, graph_id: str) -> None:
        """Remove a graph from the library; its versions stay for the runs pinned to them."""
        self._authz.require(actor, "graph:edit")
        with self._sessions() as session:
            self._graph(session, actor, graph_id).deleted_at = datetime.now(UTC)
            session.commit()
        self._audit(actor, "graph.deleted", graph_id, {})

    def import_document(self, actor: Actor, raw: str | bytes | dict[str, Any]) -> VersionView:
        """Import a graph file as a new graph (its id is issued here). Invalid, oversized
        or hostile files are refused with every problem and nothing is stored."""
        self._authz.require(actor, "graph:import")
        if isinstance(raw, str | bytes) and len(raw) > MAX_IMPORT_BYTES:
            raise UserError(
                f"the file is {len(raw):,} bytes; a graph file may have at most "
                f"{MAX_IMPORT_BYTES:,}"
            )
        doc = load_document(raw, self._registry)
        return self.create(
            actor, doc.model_dump(mode="json"), message="imported", audit_as="graph.imported"
        )

    def export_document(
        self, actor: Actor, graph_id: str, number: int | None = None
    ) -> dict[str, Any]:
        """The document as JSON (schema version included). Documents hold secret *names*
        only, so an export never carries a secret value."""
        self._authz.require(actor, "graph:export")
        self._audit(actor, "graph.exported", graph_id, {"version": number})
        view = (
            self.head(actor, graph_id)
            if number is None
            else (self.version_number(actor, graph_id, number))
        )
        return view.document.model_dump(mode="json")

    # ------------------------------------------------------------------ reading

    def version(self, actor: Actor, version_id: str) -> VersionView:
        self._authz.require(actor, "graph:read")
        cached = self._versions.get(version_id)
        if cached is None:
            with self._sessions() as session:
                row = session.get(GraphVersion, version_id)
                if row is None:
                    raise NotFound(f"graph version {version_id!r} not found")
                cached = (row.workspace_id, _version_view(row))
                if row.published:  # a draft may still be published: do not cache it
                    self._versions[version_id] = cached
        workspace_id, view = cached
        if workspace_id != actor.workspace_id:
            raise NotFound(f"graph version {version_id!r} not found")
        return view

    def version_number(self, actor: Actor, graph_id: str, number: int) -> VersionView:
        self._authz.require(actor, "graph:read")
        with self._sessions() as session:
            self._graph(session, actor, graph_id)
            return _version_view(self._version_row(session, graph_id, number))

    def latest(self, actor: Actor, graph_id: str) -> VersionView:
        """The newest published version: the one a new run starts on."""
        self._authz.require(actor, "graph:read")
        with self._sessions() as session:
            graph = self._graph(session, actor, graph_id)
            row = session.scalars(
                select(GraphVersion)
                .where(GraphVersion.graph_id == graph_id, GraphVersion.published.is_(True))
                .order_by(GraphVersion.number.desc())
                .limit(1)
            ).first()
            if row is None:
                raise UserError(f"graph {graph.name!r} has no published version; publish one")
            return _version_view(row)

    def head(self, actor: Actor, graph_id: str) -> VersionView:
        """The newest version, draft or published: the one the editor opens."""
        self._authz.require(actor, "graph:read")
        with self._sessions() as session:
            self._graph(session, actor, graph_id)
            number = self._latest_number(session, graph_id)
            return _version_view(self._version_row(session, graph_id, number))

    def versions(self, actor: Actor, graph_id: str) -> list[VersionSummary]:
        """Every version of a graph, newest first."""
        self._authz.require(actor, "graph:read")
        with self._sessions() as session:
            self._graph(session, actor, graph_id)
            rows = session.scalars(
                select(GraphVersion)
                .where(GraphVersion.graph_id == graph_id)
                .order_by(GraphVersion.number.desc())
            )
            return [
                VersionSummary(
                    r.version_id, r.number, r.message, r.created_by, r.created_at, r.published
                )
                for r in rows
            ]

    def list(self, actor: Actor, *, search: str = "") -> list[GraphSummary]:
        """The workspace's graphs by name; `search` matches part of the name, any case."""
        self._authz.require(actor, "graph:read")
        published = func.max(
            case((GraphVersion.published.is_(True), GraphVersion.number), else_=None)
        )
        query = (
            select(
                Graph,
                func.max(GraphVersion.number),
                published,
                func.max(GraphVersion.created_at),
            )
            .join(GraphVersion, GraphVersion.graph_id == Graph.graph_id)
            .where(Graph.workspace_id == actor.workspace_id, Graph.deleted_at.is_(None))
            .group_by(Graph.graph_id)
            .order_by(func.lower(Graph.name), Graph.created_at)
        )
        needle = search.strip()[:200]
        if needle:
            escaped = needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            query = query.where(Graph.name.ilike(f"%{escaped}%", escape="\\"))
        with self._sessions() as session:
            return [
                GraphSummary(g.graph_id, g.name, number, g.created_at, pub, updated)
                for g, number, pub, updated in session.execute(query)
            ]

    # ------------------------------------------------------------------ helpers

    def _checked(self, raw: Any, *, publish: bool) -> GraphDocument:
        """A publishable document must be valid; a draft only well-formed."""
        try:
            return load_document(raw, self._registry)
        except GraphInvalid:
            if publish or not isinstance(raw, dict):
                raise
            try:
                return GraphDocument.model_validate(raw, strict=True)
            except ValidationError:
                pass
            raise  # the GraphInvalid: it lists the shape problems with their places

    def _graph(self, session: Session, actor: Actor, graph_id: str) -> Graph:
        graph = session.get(Graph, graph_id)
        if graph is None or graph.workspace_id != actor.workspace_id or graph.deleted_at:
            raise NotFound(f"graph {graph_id!r} not found")
        return graph

    @staticmethod
    def _latest_number(session: Session, graph_id: str) -> int:
        return (
            session.scalar(
                select(func.max(GraphVersion.number)).where(GraphVersion.graph_id == graph_id)
            )
            or 0
        )

    @staticmethod
    def _version_row(session: Session, graph_id: str, number: int) -> GraphVersion:
        row = session.scalars(
            select(GraphVersion).where(
                GraphVersion.graph_id == graph_id, GraphVersion.number == number
            )
        ).first()
        if row is None:
            raise NotFound(f"graph {graph_id!r} has no version {number}")
        return row

    @classmethod
    def _add_version(
        cls,
        session: Session,
        actor: Actor,
        graph: Graph,
        doc: GraphDocument,
        message: str,
        published: bool,
        base: int | None,
    ) -> VersionView:
        document = doc.model_dump(mode="json")
        row = GraphVersion(
            version_id=str(uuid.uuid4()),
            graph_id=graph.graph_id,
            workspace_id=actor.workspace_id,
            number=cls._latest_number(session, graph.graph_id) + 1,
            document=document,
            document_hash=hashlib.sha256(canonical_json(document).encode()).hexdigest(),
            message=message[:2000],
            created_by=actor.user_id,
            created_at=datetime.now(UTC),
            published=published,
            base_number=base,
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
        published=row.published,
        base_number=row.base_number,
    )
