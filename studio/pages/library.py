"""The graph library: search, create (blank or from an example), duplicate, delete with
confirmation, import a graph file, export one."""

from __future__ import annotations

__all__ = ["example_documents", "register"]

import json
from functools import cache
from importlib.resources import files
from typing import TYPE_CHECKING, Any

from nicegui import events, ui
from starlette.requests import Request
from starlette.responses import RedirectResponse

from graphs.library import MAX_IMPORT_BYTES, GraphSummary
from studio.editor_model import BLANK
from studio.pages.frame import Page, frame, signed_in
from studio.pages.run_dialogs import run_controls

if TYPE_CHECKING:
    from studio.app import WebStudio


@cache
def example_documents() -> dict[str, dict[str, Any]]:
    """The bundled example graphs by name."""
    folder = files("graphs").joinpath("examples")
    docs = [json.loads(f.read_text()) for f in folder.iterdir() if f.name.endswith(".json")]
    return {doc["name"]: doc for doc in sorted(docs, key=lambda d: d["name"])}


def register(web: WebStudio) -> None:
    @ui.page("/")
    def home() -> RedirectResponse:
        return RedirectResponse("/graphs", status_code=303)

    @ui.page("/graphs")
    async def library_page(request: Request) -> RedirectResponse | None:
        page = signed_in(web, request)
        if isinstance(page, RedirectResponse):
            return page
        frame(page, "Graphs")
        LibraryView(page).build()
        return None


class LibraryView:
    def __init__(self, page: Page) -> None:
        self.page = page
        self.search = ""
        self.can_edit = page.allowed("graph:edit")

    def build(self) -> None:
        with ui.row().classes("w-full items-center gap-2 p-4"):
            ui.label("Graphs").classes("text-2xl font-semibold")
            ui.space()
            ui.input(placeholder="Search graphs", on_change=self._on_search).props(
                'dense outlined clearable debounce=250 data-testid="search"'
            ).classes("w-64").mark("search")
            if self.can_edit:
                ui.button("New graph", icon="add", on_click=self._new_dialog).props("no-caps")
            if self.page.allowed("graph:import"):
                ui.button("Import", icon="upload", on_click=self._import_dialog).props(
                    "outline no-caps"
                )
        self.table_area = ui.column().classes("w-full px-4")
        ui.timer(0, self.refresh, once=True)

    async def _on_search(self, event: events.ValueChangeEventArguments[str | None]) -> None:
        self.search = str(event.value or "")
        await self.refresh()

    async def refresh(self) -> None:
        graphs = await self.page.act(
            lambda actor: self.page.studio.manager.library.list(actor, search=self.search)
        )
        self.table_area.clear()
        with self.table_area:
            if not graphs:
                ui.label(
                    "No graph matches your search." if self.search else "No graphs yet."
                ).classes("text-gray-500 p-4")
                return
            for graph in graphs:
                self._row(graph)

    def _row(self, graph: GraphSummary) -> None:
        card = ui.card().classes("w-full").props(f'data-graph="{graph.graph_id}"')
        with card, ui.row().classes("w-full items-center gap-3"):
            ui.link(graph.name, f"/graphs/{graph.graph_id}").classes("text-lg font-medium").props(
                'data-testid="graph-link"'
            )
            status = (
                f"published v{graph.published_version}" if graph.published_version else "draft only"
            )
            ui.badge(f"v{graph.latest_version} · {status}").props("outline")
            if graph.updated_at:
                ui.label(f"saved {graph.updated_at:%Y-%m-%d %H:%M}").classes(
                    "text-sm text-gray-500"
                )
            ui.space()
            run_controls(self.page, graph.graph_id)
            ui.button(icon="download", on_click=lambda g=graph: self._export(g)).props(
                "flat dense"
            ).tooltip("Export")
            if self.can_edit:
                ui.button(icon="content_copy", on_click=lambda g=graph: self._duplicate(g)).props(
                    "flat dense"
                ).tooltip("Duplicate")
                ui.button(icon="delete", on_click=lambda g=graph: self._confirm_delete(g)).props(
                    "flat dense color=negative"
                ).tooltip("Delete")

    async def _create(self, document: dict[str, Any], name: str) -> None:
        doc = {**document, "name": name.strip()[:200] or document["name"]}
        view = await self.page.act(
            lambda actor: self.page.studio.manager.library.create(
                actor, doc, message="created", publish=False
            )
        )
        if view is not None:
            ui.navigate.to(f"/graphs/{view.graph_id}")

    def _new_dialog(self) -> None:
        examples = example_documents()
        with ui.dialog() as dialog, ui.card().classes("w-[28rem]"):
            ui.label("New graph").classes("text-lg font-semibold")
            name = ui.input("Name", value="Untitled graph").props("outlined").classes("w-full")
            start = (
                ui.select(
                    {"": "Blank graph", **{k: f"Example: {k}" for k in examples}},
                    value="",
                    label="Start from",
                )
                .classes("w-full")
                .props('data-testid="start-from"')
                .mark("start-from")
            )
            with ui.row().classes("w-full justify-end"):
                ui.button("Cancel", on_click=dialog.close).props("flat no-caps")

                async def create() -> None:
                    dialog.close()
                    source = examples.get(start.value or "", BLANK)
                    await self._create(source, name.value or "")

                ui.button("Create", on_click=create).props("no-caps")
        dialog.open()

    async def _duplicate(self, graph: GraphSummary) -> None:
        view = await self.page.act(
            lambda actor: self.page.studio.manager.library.duplicate(actor, graph.graph_id),
            success=f"Duplicated {graph.name}",
        )
        if view is not None:
            await self.refresh()

    def _confirm_delete(self, graph: GraphSummary) -> None:
        with ui.dialog() as dialog, ui.card():
            ui.label(f"Delete the graph {graph.name!r}?").classes("font-semibold")
            ui.label("Runs already started keep their version; the graph leaves the library.")
            with ui.row().classes("w-full justify-end"):
                ui.button("Cancel", on_click=dialog.close).props("flat no-caps")

                async def delete() -> None:
                    dialog.close()
                    await self.page.act(
                        lambda actor: self.page.studio.manager.library.delete(
                            actor, graph.graph_id
                        ),
                        success=f"Deleted {graph.name}",
                    )
                    await self.refresh()

                ui.button("Delete", on_click=delete).props("color=negative no-caps")
        dialog.open()

    async def _export(self, graph: GraphSummary) -> None:
        document = await self.page.act(
            lambda actor: self.page.studio.manager.library.export_document(actor, graph.graph_id)
        )
        if document is not None:
            data = json.dumps(document, indent=2, ensure_ascii=False).encode()
            ui.download.content(data, _file_name(graph.name), "application/json")

    def _import_dialog(self) -> None:
        with ui.dialog() as dialog, ui.card().classes("w-[28rem]"):
            ui.label("Import a graph file").classes("text-lg font-semibold")
            ui.label(
                "A graph document (.json). It is checked before anything is stored; "
                "secrets come in as names only."
            ).classes("text-sm text-gray-600")

            async def received(event: events.UploadEventArguments) -> None:
                data = await event.file.read()
                dialog.close()
                view = await self.page.act(
                    lambda actor: self.page.studio.manager.library.import_document(actor, data),
                    success="Imported",
                )
                if view is not None:
                    await self.refresh()

            ui.upload(
                on_upload=received,
                auto_upload=True,
                max_file_size=MAX_IMPORT_BYTES,
                on_rejected=lambda: ui.notify(
                    f"The file is too large (at most {MAX_IMPORT_BYTES:,} bytes).",
                    type="negative",
                ),
            ).props('accept=".json,application/json" data-testid="import"').classes("w-full")
        dialog.open()


def _file_name(name: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name).strip("_")
    return f"{safe or 'graph'}.json"
