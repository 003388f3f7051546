"""A run's timeline on its page: the path taken, then one expandable entry per step with its
inputs, outputs, state change, the messages the model saw, tokens, cost, latency and
errors — and, for editors, "Fork from here" with the state as editable JSON.

Every value is shown as text (`json_block`): model output and state never become markup.
"""

from __future__ import annotations

__all__ = ["PathCanvas", "TimelineView", "json_block"]

import json
from typing import Any

from nicegui import ui

from graphs.forks import fork_run
from graphs.timeline import StepView, TaskView, Timeline, run_timeline
from studio.canvas import CanvasAssetsMissing, GraphCanvas
from studio.editor_model import EditorModel
from studio.pages.frame import Page
from studio.pages.run_dialogs import refuse

MAX_TEXT = 20_000


def json_block(value: Any) -> ui.label:
    """A JSON value as preformatted text (a label: never parsed as markup)."""
    text = value if isinstance(value, str) else json.dumps(value, indent=2, ensure_ascii=False)
    if len(text) > MAX_TEXT:
        text = text[:MAX_TEXT] + f"\n… ({len(text) - MAX_TEXT:,} more characters)"
    return ui.label(text).classes(
        "font-mono text-xs whitespace-pre-wrap break-all bg-gray-50 p-2 rounded w-full"
    )


def _metric(label: str, value: str) -> None:
    with ui.column().classes("gap-0"):
        ui.label(label).classes("text-xs text-gray-500")
        ui.label(value).classes("text-sm font-mono")


def _tokens(task: TaskView) -> str:
    if task.input_tokens is None and task.output_tokens is None:
        return "—"
    given = [str(n) if n is not None else "?" for n in (task.input_tokens, task.output_tokens)]
    return f"{given[0]} in · {given[1]} out"


def _cost(task: TaskView) -> str:
    return f"${task.cost_usd}" if task.cost_usd is not None else "—"


def _latency(task: TaskView) -> str:
    if task.latency_ms is None:
        return "—"
    ms = task.latency_ms
    return f"{ms:.0f} ms" if ms < 1000 else f"{ms / 1000:.2f} s"


class TimelineView:
    def __init__(self, page: Page, run_id: str) -> None:
        self.page = page
        self.run_id = run_id
        self.can_fork = page.allowed("graph:edit")
        self.timeline: Timeline | None = None
        self.area = ui.column().classes("w-full gap-2").mark("timeline")

    async def refresh(self) -> Timeline | None:
        manager = self.page.studio.manager
        timeline = await self.page.act(lambda actor: run_timeline(manager, actor, self.run_id))
        if timeline is None or self.area.is_deleted:  # the tab closed meanwhile
            return None
        self.timeline = timeline
        self.area.clear()
        with self.area:
            self._path(timeline)
            for step in timeline.steps:
                self._step(step)
        return timeline

    def _path(self, timeline: Timeline) -> None:
        with ui.row().classes("w-full items-center gap-1").mark("path"):
            ui.label("Path taken:").classes("text-sm font-semibold")
            if not timeline.path:
                ui.label("no step yet").classes("text-sm text-gray-500")
            for index, node in enumerate(timeline.path):
                if index:
                    ui.label("→").classes("text-gray-400")
                ui.badge(node).props("outline")

    def _step(self, step: StepView) -> None:
        if step.kind == "edit":
            title = f"#{step.index} · state edited for this fork (step {step.step})"
        else:
            title = f"#{step.index} · step {step.step} · {', '.join(step.nodes) or '—'}"
        troubled = any(t.error for t in step.tasks)
        with (
            ui.expansion(title, icon="error" if troubled else "radio_button_checked")
            .classes("w-full border rounded")
            .mark("step", f"step-{step.index}")
        ):
            if step.inherited:
                ui.label("Copied from the origin run (this run was forked after it).").classes(
                    "text-xs text-gray-500"
                )
            for task in step.tasks:
                self._task(task)
            if step.change:
                ui.label("State change").classes("text-sm font-semibold mt-2")
                json_block(step.change)
            ui.label("State before the step (inputs)").classes("text-sm font-semibold mt-2")
            json_block(step.inputs)
            if self.can_fork and step.kind == "step" and step.step >= 0:
                ui.button(
                    "Fork from here", icon="call_split", on_click=lambda s=step: self.fork_dialog(s)
                ).props("outline no-caps").mark("fork", f"fork-{step.index}")

    def _task(self, task: TaskView) -> None:
        with ui.card().classes("w-full").mark("task", f"task-{task.node}"):
            with ui.row().classes("items-end gap-6"):
                ui.label(task.node).classes("font-semibold")
                _metric("latency", _latency(task))
                _metric("tokens", _tokens(task))
                _metric("cost", _cost(task))
                if task.model:
                    _metric("model", task.model)
                if task.interrupted:
                    ui.badge("paused for a person").props("color=warning")
            if task.error:
                ui.label(f"Error: {task.error}").classes("text-sm text-red-700").mark("error")
            if task.messages_seen:
                ui.label("Messages the model saw").classes("text-sm font-semibold")
                json_block(task.messages_seen)
            if task.tool_calls:
                ui.label("Tool calls").classes("text-sm font-semibold")
                json_block(task.tool_calls)
            if task.output is not None:
                ui.label("Output").classes("text-sm font-semibold")
                json_block(task.output).mark("output")

    # --- time travel ---------------------------------------------------------------------
    def fork_dialog(self, step: StepView) -> None:
        editable = self.timeline.editable if self.timeline else []
        state = {name: step.inputs.get(name) for name in editable}
        with ui.dialog() as dialog, ui.card().classes("w-[40rem]"):
            ui.label(f"Fork from step {step.step}").classes("text-lg font-semibold")
            ui.label(
                "A new run starts from this point with the state below. Effects the original "
                "run already made are not made again; a changed call is a new effect."
            ).classes("text-sm text-gray-600")
            editor = ui.textarea("State (JSON)", value=json.dumps(state, indent=2))
            editor.props("outlined autogrow").classes("w-full font-mono").mark("fork-state")
            with ui.row().classes("w-full justify-end"):
                ui.button("Cancel", on_click=dialog.close).props("flat no-caps")

                async def start() -> None:
                    await self.fork(step.checkpoint_id, state, str(editor.value or ""), dialog)

                ui.button("Start the fork", on_click=start).props("no-caps").mark("start-fork")
        dialog.open()

    async def fork(
        self, checkpoint_id: str, before: dict[str, Any], text: str, dialog: ui.dialog
    ) -> None:
        try:
            after = json.loads(text)
            if not isinstance(after, dict):
                raise ValueError("the state must be a JSON object")
        except ValueError as exc:
            refuse(ValueError(f"the state is not valid JSON: {exc}"))
            return
        edits = {k: v for k, v in after.items() if k not in before or before[k] != v}
        manager = self.page.studio.manager
        new_run = await self.page.act(
            lambda actor: fork_run(
                manager, actor, self.run_id, checkpoint_id, edits, stream_tokens=True
            )
        )
        if new_run is not None:
            dialog.close()
            ui.navigate.to(f"/runs/{new_run}")


class PathCanvas:
    """The run's graph, read-only, with the nodes the run visited marked (and a failed
    node's error on it) — when the canvas's front-end files are installed."""

    def __init__(self, page: Page, document: dict[str, Any]) -> None:
        self.model = EditorModel(document, page.studio.manager.registry)
        nodes, edges = self.model.canvas([])
        try:
            self.canvas: GraphCanvas | None = GraphCanvas(
                nodes=nodes, edges=edges, palette=[], readonly=True
            ).classes("w-full h-72 border rounded")
        except CanvasAssetsMissing:
            self.canvas = None
        if self.canvas is not None:
            self.canvas.mark("path-canvas")

    def mark(self, timeline: Timeline) -> None:
        if self.canvas is None or self.canvas.is_deleted:
            return
        visited = {node.split(".", 1)[0] for node in timeline.path}
        failed = {
            task.node.split(".", 1)[0]: task.error
            for step in timeline.steps
            for task in step.tasks
            if task.error
        }
        nodes, edges = self.model.canvas([])
        for node in nodes:
            node["diff"] = "added" if node["id"] in visited else None
            node["error"] = failed.get(node["id"])
        self.canvas.set_graph(nodes, edges)
