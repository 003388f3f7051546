"""The editor's version history: every version, a diff between any two (as a list and on
the canvas), and restore."""

from __future__ import annotations

__all__ = ["HistoryDialog"]

from typing import TYPE_CHECKING

from nicegui import ui

if TYPE_CHECKING:
    from studio.pages.editor import Editor


class HistoryDialog:
    def __init__(self, editor: Editor) -> None:
        self.editor = editor

    async def open(self) -> None:
        editor = self.editor
        library = editor.page.studio.manager.library
        versions = await editor.page.act(lambda actor: library.versions(actor, editor.graph_id))
        if not versions:
            return
        numbers = [v.number for v in versions]
        with ui.dialog() as dialog, ui.card().classes("w-[40rem]"):
            ui.label("Versions").classes("text-lg font-semibold")
            for v in versions:
                with (
                    ui.row()
                    .classes("w-full items-center gap-2")
                    .props(f'data-version="{v.number}"')
                ):
                    ui.label(f"v{v.number}").classes("font-mono font-semibold")
                    ui.badge("published" if v.published else "draft").props("outline")
                    ui.label(f"{v.created_at:%Y-%m-%d %H:%M} · {v.created_by}").classes(
                        "text-sm text-gray-600"
                    )
                    ui.label(v.message).classes("text-sm grow")
                    if not editor.readonly:

                        async def restore(number: int = v.number) -> None:
                            dialog.close()
                            await editor.restore(number)

                        ui.button("Restore", on_click=restore).props("flat dense no-caps")
            ui.separator()
            with ui.row().classes("items-center gap-2"):
                ui.label("Compare")
                old = ui.select(numbers, value=numbers[-1] if len(numbers) > 1 else numbers[0])
                old.props('dense outlined data-testid="compare-old"')
                ui.label("→")
                new = ui.select(numbers, value=numbers[0]).props(
                    'dense outlined data-testid="compare-new"'
                )

                async def compare() -> None:
                    a, b = await editor.page.act(
                        lambda actor: (
                            library.version_number(actor, editor.graph_id, int(old.value)),
                            library.version_number(actor, editor.graph_id, int(new.value)),
                        )
                    ) or (None, None)
                    if a is not None and b is not None:
                        dialog.close()
                        editor.show_comparison(a, b)

                ui.button("Show differences", on_click=compare).props(
                    'no-caps data-testid="compare"'
                )
        dialog.open()
