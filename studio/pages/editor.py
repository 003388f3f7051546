"""The graph editor: canvas, palette, the selected item's form, live validation, undo/redo,
save (draft or published) with conflict review, version history with diff and restore.

The browser only reports gestures (`studio.canvas.GraphCanvas` events); the document, its
history and every check live here on the server. Viewers get the same page read-only, and
every save still goes through the library service, which checks `graph:edit` again.
"""

from __future__ import annotations

__all__ = ["register"]

from typing import TYPE_CHECKING, Any

from nicegui import ui
from starlette.requests import Request
from starlette.responses import RedirectResponse

from components.errors import Problem
from graphs.diff import Change, diff_documents
from graphs.library import EditConflict, VersionView
from studio.canvas import GraphCanvas, auto_layout
from studio.editor_model import EditorModel, palette
from studio.pages.frame import Page, frame, signed_in
from studio.pages.history import HistoryDialog
from studio.pages.run_dialogs import run_controls
from studio.pages.side_panel import SidePanel

if TYPE_CHECKING:
    from studio.app import WebStudio


def register(web: WebStudio) -> None:
    @ui.page("/graphs/{graph_id}")
    async def editor_page(request: Request, graph_id: str) -> RedirectResponse | None:
        page = signed_in(web, request)
        if isinstance(page, RedirectResponse):
            return page
        frame(page, "Editor")
        library = page.studio.manager.library
        head = await page.act(lambda actor: library.head(actor, graph_id))
        if head is None:
            ui.label("This graph does not exist in your workspace.").classes("p-8 text-lg")
            ui.link("Back to the graphs", "/graphs").classes("px-8")
            return None
        Editor(page, head).build()
        return None


class Editor:
    def __init__(self, page: Page, head: VersionView) -> None:
        self.page = page
        self.graph_id = head.graph_id
        self.version = head
        self.registry = page.studio.manager.registry
        self.model = EditorModel(head.document.model_dump(mode="json"), self.registry)
        self.readonly = not page.allowed("graph:edit")
        self.can_publish = page.allowed("graph:publish")
        self.selection: dict[str, list[str]] = {"nodes": [], "edges": []}
        self.problems: list[Problem] = []
        self.compare: list[Change] | None = None
        self.revision = 0  # bumped when the whole document is swapped (undo, redo, load)

    # ------------------------------------------------------------------ layout

    def build(self) -> None:
        with ui.row().classes("w-full items-center gap-2 px-4 py-2 border-b"):
            self.title = ui.label(self.model.doc.get("name", "")).classes("text-xl font-semibold")
            self.badge = ui.badge().props('outline data-testid="version"')
            self.status = ui.label().classes("text-sm").props('data-testid="problems"')
            ui.space()
            ui.button("Versions", icon="history", on_click=self.open_history).props(
                'flat no-caps data-testid="versions"'
            )
            run_controls(self.page, self.graph_id)
            if not self.readonly:
                ui.button("Save", icon="save", on_click=self.save_dialog).props(
                    'no-caps data-testid="save"'
                ).mark("save")
            if self.can_publish:
                self.publish_button = ui.button(
                    "Publish", icon="publish", on_click=self.publish
                ).props('outline no-caps data-testid="publish"')
        self.banner = ui.row().classes("w-full px-4")
        with ui.row().classes("w-full no-wrap gap-0").style("height: calc(100vh - 140px)"):
            nodes, edges = self.model.canvas([])
            self.canvas = GraphCanvas(
                nodes=nodes,
                edges=edges,
                palette=palette(self.registry),
                readonly=self.readonly,
            ).classes("grow h-full")
            with ui.scroll_area().classes("w-96 h-full border-l"):
                self.side = SidePanel(self)
        self._wire_canvas()
        self.render()

    def _wire_canvas(self) -> None:
        canvas = self.canvas
        canvas.on(
            "add", lambda e: self.edit(self.model.add_node, e.args["type"], e.args["position"])
        )
        canvas.on(
            "connect", lambda e: self.edit(self.model.connect, e.args["source"], e.args["target"])
        )
        canvas.on("move", lambda e: self.edit(self.model.move, e.args["positions"], redraw=False))
        canvas.on(
            "remove", lambda e: self.edit(self.model.remove, e.args["nodes"], e.args["edges"])
        )
        canvas.on("paste", lambda e: self.edit(self.model.paste, e.args["nodes"], e.args["offset"]))
        canvas.on("select", self.on_select)
        canvas.on("shortcut", self.on_shortcut)

    # ------------------------------------------------------------------ rendering

    def render(self, *, redraw: bool = True) -> None:
        """Re-check the document and show it: canvas marks, problem count, side panel.
        Without `redraw` (a drag the browser already shows: positions only) the document's
        problems cannot have changed, so they are not checked again."""
        if redraw:
            self.problems = self.model.problems()
            nodes, edges = self.model.canvas(self.problems, self.compare or ())
            self.canvas.set_graph(nodes, edges)
        count = len(self.problems)
        self.status.text = "valid" if not count else f"{count} problem{'s' * (count != 1)}"
        self.status.classes(
            replace="text-sm " + ("text-green-700" if not count else "text-red-700")
        )
        state = "published" if self.version.published else "draft"
        changed = " · unsaved changes" if self.model.dirty else ""
        self.badge.text = f"v{self.version.number} {state}{changed}"
        self.title.text = str(self.model.doc.get("name", ""))
        self.side.show(self.selection)

    def edit(self, change: Any, *args: Any, redraw: bool = True, **fields: Any) -> None:
        """Apply one edit from the canvas or a form (never in read-only mode)."""
        if self.readonly:
            ui.notify("You can view this graph but not change it.", type="warning")
            self.render()
            return
        try:
            change(*args, **fields)
        except Exception as exc:  # a UserError from the model: shown, nothing changed
            ui.notify(" ".join(str(exc).split())[:300], type="warning")
        self.render(redraw=redraw)

    # ------------------------------------------------------------------ events

    def on_select(self, event: Any) -> None:
        self.selection = {
            "nodes": [str(n) for n in event.args.get("nodes", [])][:500],
            "edges": [str(e) for e in event.args.get("edges", [])][:2000],
        }
        self.side.show(self.selection)

    async def on_shortcut(self, event: Any) -> None:
        key = event.args.get("key")
        if key == "undo":
            self.undo()
        elif key == "redo":
            self.redo()
        elif key == "layout":
            self.layout()
        elif key == "fit":
            self.canvas.fit_view()
        elif key == "save" and not self.readonly:
            self.save_dialog()

    def undo(self) -> None:
        if not self.readonly and self.model.undo():
            self.revision += 1
            self.render()

    def redo(self) -> None:
        if not self.readonly and self.model.redo():
            self.revision += 1
            self.render()

    def layout(self) -> None:
        nodes, edges = self.model.canvas([])
        positions = auto_layout(nodes, edges)
        self.edit(self.model.move, positions)
        self.canvas.fit_view()

    # ------------------------------------------------------------------ saving

    def save_dialog(self) -> None:
        with ui.dialog() as dialog, ui.card().classes("w-[28rem]"):
            ui.label("Save a new version").classes("text-lg font-semibold")
            message = (
                ui.input("What changed? (optional)")
                .props('outlined data-testid="save-message"')
                .classes("w-full")
            )
            publish = ui.checkbox("Publish it (new runs start on it)", value=False)
            if not self.can_publish or self.problems:
                publish.disable()
                if self.problems:
                    ui.label("A graph with problems can be saved as a draft only.").classes(
                        "text-sm text-red-700"
                    )
            with ui.row().classes("w-full justify-end"):
                ui.button("Cancel", on_click=dialog.close).props("flat no-caps")

                async def save() -> None:
                    dialog.close()
                    await self.save(message.value or "", publish=bool(publish.value))

                ui.button("Save", on_click=save).props('no-caps data-testid="save-confirm"')
        dialog.open()

    async def save(self, message: str, *, publish: bool, force: bool = False) -> None:
        library = self.page.studio.manager.library
        document = dict(self.model.doc)
        try:
            view = await self.page.act_raising(
                lambda actor: library.save_version(
                    actor,
                    self.graph_id,
                    document,
                    message=message,
                    base=self.version.number,
                    force=force,
                    publish=publish,
                ),
                EditConflict,
            )
        except EditConflict as conflict:
            await self.review_conflict(conflict, message, publish)
            return
        if view is None:
            return
        self.version = view
        self.model.dirty = False
        ui.notify(f"Saved version {view.number}", type="positive")
        self.render()

    async def review_conflict(self, conflict: EditConflict, message: str, publish: bool) -> None:
        library = self.page.studio.manager.library
        theirs = await self.page.act(
            lambda actor: library.version_number(actor, self.graph_id, conflict.latest)
        )
        if theirs is None:
            return
        mine = self.model.parsed()
        changes = diff_documents(theirs.document, mine) if mine is not None else []
        with ui.dialog() as dialog, ui.card().classes("w-[36rem]"):
            ui.label("Someone saved this graph while you were editing").classes(
                "text-lg font-semibold"
            )
            ui.label(
                f"Version {conflict.latest} by {theirs.created_by} is newer than the version "
                f"{conflict.base} you started from. Your changes compared with theirs:"
            ).classes("text-sm")
            with ui.column().classes("gap-0").props('data-testid="conflict-diff"'):
                for line in [str(c) for c in changes] or ["no differences in nodes or edges"]:
                    ui.label(line).classes("text-sm font-mono")
            with ui.row().classes("w-full justify-end"):

                def load_theirs() -> None:
                    dialog.close()
                    self.model.replace(theirs.document.model_dump(mode="json"))
                    self.version = theirs
                    self.revision += 1
                    self.render()

                async def keep_mine() -> None:
                    dialog.close()
                    await self.save(message, publish=publish, force=True)

                ui.button("Open their version", on_click=load_theirs).props("flat no-caps")
                ui.button("Save mine as the newest", on_click=keep_mine).props(
                    'no-caps color=warning data-testid="force-save"'
                )
        dialog.open()

    async def publish(self) -> None:
        if self.model.dirty:
            ui.notify("Save your changes first, then publish.", type="warning")
            return
        library = self.page.studio.manager.library
        view = await self.page.act(
            lambda actor: library.publish(actor, self.graph_id, self.version.number),
            success=f"Published version {self.version.number}",
        )
        if view is not None:
            self.version = view
            self.render()

    # ------------------------------------------------------------------ history

    async def open_history(self) -> None:
        await HistoryDialog(self).open()

    def show_comparison(self, old: VersionView, new: VersionView) -> None:
        """Show `new` on the canvas, marked against `old` (read-only until closed)."""
        changes = diff_documents(old.document, new.document)
        compare = EditorModel(new.document.model_dump(mode="json"), self.registry)
        nodes, edges = compare.canvas([], changes)
        removed = {c.item for c in changes if c.kind == "node" and c.change == "removed"}
        ghost = EditorModel(old.document.model_dump(mode="json"), self.registry)
        ghost_nodes, _ = ghost.canvas([], [Change("node", i, "removed") for i in removed])
        nodes += [n for n in ghost_nodes if n["id"] in removed]
        self.canvas.set_readonly(True)
        self.canvas.set_graph(nodes, edges)
        self.banner.clear()
        with self.banner, ui.card().classes("w-full bg-amber-50").props('data-testid="comparison"'):
            ui.label(f"Comparing version {old.number} → {new.number}").classes("font-semibold")
            for line in [str(c) for c in changes] or ["no differences"]:
                ui.label(line).classes("text-sm font-mono")
            ui.button("Back to editing", on_click=self.close_comparison).props("no-caps")

    def close_comparison(self) -> None:
        self.banner.clear()
        self.canvas.set_readonly(self.readonly)
        self.render()

    async def restore(self, number: int) -> None:
        library = self.page.studio.manager.library
        view = await self.page.act(
            lambda actor: library.restore(actor, self.graph_id, number),
            success=f"Restored version {number} as a new draft",
        )
        if view is not None:
            self.version = view
            self.model.replace(view.document.model_dump(mode="json"), keep_history=False)
            self.model.dirty = False
            self.revision += 1
            self.close_comparison()
