"""Starting and scheduling runs from a graph: the "Run" and "Schedule" buttons the library
rows and the editor toolbar show, and their dialogs.

The input form is generated from the graph's `input` state fields. The buttons are hints:
every action goes through `Page.act`, so the service checks `run:start` / `graph:edit` again
as the live identity.
"""

from __future__ import annotations

__all__ = ["InputForm", "open_run_dialog", "open_schedule_dialog", "refuse", "run_controls"]

import json
from collections.abc import Callable
from typing import Any

from nicegui import ui

from components.errors import UserError
from graphs.schedules import ScheduleView
from graphs.spec import GraphDocument, StateField
from studio.pages.frame import Page


def run_controls(page: Page, graph_id: str) -> None:
    """The "Run" and "Schedule" buttons of one graph (for a library row or a toolbar)."""
    if page.allowed("run:start"):
        ui.button(icon="play_arrow", on_click=lambda: open_run_dialog(page, graph_id)).props(
            'flat dense color=positive data-testid="run-graph"'
        ).mark("run-graph", f"run-{graph_id}").tooltip("Run")
    ui.button(icon="schedule", on_click=lambda: open_schedule_dialog(page, graph_id)).props(
        'flat dense data-testid="schedule-graph"'
    ).mark("schedule-graph", f"schedule-{graph_id}").tooltip("Schedule")


class InputForm:
    """One control per input field of a graph; `values()` reads them back (JSON for
    objects and lists), raising `UserError` when one is not valid."""

    def __init__(self, fields: list[StateField], values: dict[str, Any] | None = None) -> None:
        self._readers: dict[str, Callable[[], Any]] = {}
        given = values or {}
        if not fields:
            ui.label("This graph takes no input.").classes("text-sm text-gray-600")
        for field in fields:
            value = given.get(field.name, field.default)
            self._readers[field.name] = self._control(field, value)

    def _control(self, field: StateField, value: Any) -> Callable[[], Any]:
        with ui.column().classes("w-full gap-0"):
            reader = _widget(field, value)
            if field.description:
                ui.label(field.description).classes("text-xs text-gray-600 px-1")
        return reader

    def values(self) -> dict[str, Any]:
        out = {name: read() for name, read in self._readers.items()}
        return {name: value for name, value in out.items() if value is not None}


def _widget(field: StateField, value: Any) -> Callable[[], Any]:
    label = field.name + (" *" if field.default is None else "")
    marker = f"input-{field.name}"
    if field.type == "boolean":
        box = ui.checkbox(label, value=bool(value)).mark(marker)
        return lambda: bool(box.value)
    if field.type in ("number", "integer"):
        precision = 0 if field.type == "integer" else None
        number = ui.number(label, value=value, precision=precision)
        number.props("outlined dense").classes("w-full").mark(marker)
        return lambda: _number(field, number.value)
    if field.type in ("object", "list"):
        text = json.dumps(value, indent=2) if value is not None else ""
        area = ui.textarea(f"{label} (JSON)", value=text).props("outlined autogrow")
        area.classes("w-full font-mono").mark(marker)
        return lambda: _json(field, area.value)
    plain = ui.textarea(label, value="" if value is None else str(value))
    plain.props("outlined autogrow").classes("w-full").mark(marker)
    return lambda: _string(field, plain.value)


def refuse(exc: Exception) -> None:
    """A mistake in a form, before any service is asked."""
    ui.notify(" ".join(str(exc).split())[:600], type="negative", multi_line=True)


def _string(field: StateField, value: Any) -> str | None:
    text = str(value or "")
    return text if text or field.default is None else None


def _number(field: StateField, value: Any) -> int | float | None:
    if value is None or value == "":
        return None
    return int(value) if field.type == "integer" else float(value)


def _json(field: StateField, value: Any) -> Any:
    text = str(value or "").strip()
    if not text:
        return None
    try:
        parsed = json.loads(text)
    except ValueError as exc:
        raise UserError(f"input {field.name!r} is not valid JSON: {exc}") from None
    return parsed


async def _document(page: Page, graph_id: str) -> tuple[str, GraphDocument] | None:
    library = page.studio.manager.library
    version = await page.act(lambda actor: library.latest(actor, graph_id))
    return (version.version_id, version.document) if version is not None else None


async def open_run_dialog(page: Page, graph_id: str) -> None:
    found = await _document(page, graph_id)
    if found is None:
        return
    _version_id, doc = found
    with ui.dialog() as dialog, ui.card().classes("w-[32rem]"):
        ui.label(f"Run {doc.name}").classes("text-lg font-semibold")
        form = InputForm(doc.input_fields())
        with ui.row().classes("w-full justify-end"):
            ui.button("Cancel", on_click=dialog.close).props("flat no-caps")

            async def start() -> None:
                try:
                    values = form.values()
                except UserError as exc:
                    refuse(exc)
                    return
                manager = page.studio.manager
                run_id = await page.act(
                    lambda actor: manager.start_run(
                        actor, graph_id=graph_id, input=values, stream_tokens=True
                    )
                )
                if run_id is not None:
                    dialog.close()
                    ui.navigate.to(f"/runs/{run_id}")

            ui.button("Start", icon="play_arrow", on_click=start).props(
                'no-caps data-testid="start-run"'
            ).mark("start-run")
    dialog.open()


async def open_schedule_dialog(page: Page, graph_id: str) -> None:
    schedules = page.studio.manager.schedules
    current = await page.act(lambda actor: (schedules.get(actor, graph_id), True))
    if current is None:
        return
    schedule, _ = current
    found = await _document(page, graph_id) if page.allowed("graph:edit") else None
    with ui.dialog() as dialog, ui.card().classes("w-[32rem]"):
        ui.label("Schedule").classes("text-lg font-semibold")
        _schedule_status(schedule)
        if found is None:  # a viewer, or no published version to run
            ui.button("Close", on_click=dialog.close).props("flat no-caps")
            dialog.open()
            return
        _version_id, doc = found
        cron = ui.input("Cron (minute hour day month weekday)", value=_cron_of(schedule))
        cron.props("outlined dense").classes("w-full font-mono").mark("schedule-cron")
        zone = ui.input("Time zone", value=schedule.timezone if schedule else "UTC")
        zone.props("outlined dense").classes("w-full").mark("schedule-zone")
        enabled = ui.checkbox("Enabled", value=schedule.enabled if schedule else True)
        form = InputForm(doc.input_fields(), schedule.input if schedule else None)
        with ui.row().classes("w-full justify-end"):
            ui.button("Cancel", on_click=dialog.close).props("flat no-caps")

            async def remove() -> None:
                done = await page.act(
                    lambda actor: schedules.delete(actor, graph_id), success="Schedule removed"
                )
                if done is not None:
                    dialog.close()

            async def save() -> None:
                try:
                    values = form.values()
                except UserError as exc:
                    refuse(exc)
                    return
                view = await page.act(
                    lambda actor: schedules.set(
                        actor,
                        graph_id,
                        str(cron.value or ""),
                        timezone=str(zone.value or "UTC"),
                        input=values,
                        enabled=bool(enabled.value),
                    )
                )
                if view is not None:
                    dialog.close()
                    ui.notify(_saved_message(view), type="positive")

            if schedule is not None:
                ui.button("Remove", on_click=remove).props("flat no-caps color=negative")
            ui.button("Save", on_click=save).props('no-caps data-testid="save-schedule"').mark(
                "save-schedule"
            )
    dialog.open()


def _cron_of(schedule: ScheduleView | None) -> str:
    return schedule.cron if schedule is not None else "0 9 * * 1-5"


def _schedule_status(schedule: ScheduleView | None) -> None:
    if schedule is None:
        ui.label("Not scheduled.").classes("text-sm text-gray-600").mark("schedule-status")
        return
    state = "enabled" if schedule.enabled else "paused"
    nxt = f"{schedule.next_fire_at:%Y-%m-%d %H:%M} UTC" if schedule.next_fire_at else "—"
    text = f"{schedule.cron} ({schedule.timezone}), {state}; next run {nxt}"
    ui.label(text).classes("text-sm font-mono").mark("schedule-status")
    if schedule.last_run_id:
        ui.link("Last scheduled run", f"/runs/{schedule.last_run_id}").classes("text-sm")
    if schedule.last_error:
        ui.label(f"Last attempt failed: {schedule.last_error}").classes("text-sm text-red-700")


def _saved_message(view: ScheduleView) -> str:
    if not view.enabled or view.next_fire_at is None:
        return "Schedule saved (paused)"
    return f"Scheduled: next run {view.next_fire_at:%Y-%m-%d %H:%M} UTC"
