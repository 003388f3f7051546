"""The inbox's dialogs: edit arguments (a form from the tool's argument schema, else JSON),
reject with feedback, answer a question. They collect input only; the inbox sends the
decision, and the approval service validates and re-checks it."""

from __future__ import annotations

__all__ = ["answer_dialog", "edit_dialog", "reject_dialog"]

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from nicegui import ui

from studio.approval_inbox import InboxCard
from studio.pages.approval_card import args_text
from studio.pages.config_form import config_form

MAX_TEXT = 4000


def edit_dialog(
    card: InboxCard,
    schema: Mapping[str, Any] | None,
    submit: Callable[[dict[str, Any]], Awaitable[None]],
) -> None:
    """A form when the tool's schema has fields, else a JSON editor for the arguments."""
    view = card.approval
    values: dict[str, Any] = dict(view.args)
    with ui.dialog() as dialog, ui.card().classes("w-[36rem] max-w-full"):
        ui.label(f"Edit the arguments of {view.action}").classes("text-lg font-semibold")
        ui.label(
            "The edited call is validated and approved as shown; the run sees only the result."
        ).classes("text-sm text-gray-600")
        box: Any = None
        if schema and schema.get("properties"):

            def changed(new: dict[str, Any]) -> None:
                values.clear()
                values.update(new)

            config_form(schema, values, choices={}, on_change=changed, readonly=False)
        else:
            box = (
                ui.textarea("Arguments (JSON)", value=args_text(view.args))
                .props("outlined autogrow input-class=font-mono")
                .classes("w-full")
                .mark("edit-json")
            )

        async def send() -> None:
            edited = dict(values)
            if box is not None:
                try:
                    parsed = json.loads(str(box.value or ""))
                except json.JSONDecodeError as exc:
                    ui.notify(f"The arguments are not valid JSON: {exc.msg}", type="negative")
                    return
                if not isinstance(parsed, dict):
                    ui.notify("The arguments must be a JSON object.", type="negative")
                    return
                edited = parsed
            dialog.close()
            await submit(edited)

        with ui.row().classes("w-full justify-end"):
            ui.button("Cancel", on_click=dialog.close).props("flat no-caps")
            ui.button("Approve with these arguments", on_click=send).props(
                "no-caps color=positive"
            ).mark("edit-submit")
    dialog.open()


def reject_dialog(card: InboxCard, submit: Callable[[str], Awaitable[None]]) -> None:
    view = card.approval
    with ui.dialog() as dialog, ui.card().classes("w-[32rem] max-w-full"):
        ui.label(f"Reject {view.action}").classes("text-lg font-semibold")
        feedback = (
            ui.textarea("Feedback (the model sees it)", validation=_short)
            .props("outlined autogrow")
            .classes("w-full")
            .mark("reject-feedback")
        )

        async def send() -> None:
            dialog.close()
            await submit(str(feedback.value or "")[:MAX_TEXT])

        with ui.row().classes("w-full justify-end"):
            ui.button("Cancel", on_click=dialog.close).props("flat no-caps")
            ui.button("Reject", on_click=send).props("no-caps color=negative").mark("reject-submit")
    dialog.open()


def answer_dialog(card: InboxCard, submit: Callable[[str], Awaitable[None]]) -> None:
    view = card.approval
    with ui.dialog() as dialog, ui.card().classes("w-[32rem] max-w-full"):
        ui.label(view.description or view.action).classes("font-semibold")
        answer = (
            ui.textarea("Your answer", validation=_short)
            .props("outlined autogrow")
            .classes("w-full")
            .mark("answer-text")
        )

        async def send() -> None:
            dialog.close()
            await submit(str(answer.value or "")[:MAX_TEXT])

        with ui.row().classes("w-full justify-end"):
            ui.button("Cancel", on_click=dialog.close).props("flat no-caps")
            ui.button("Send answer", on_click=send).props("no-caps").mark("answer-submit")
    dialog.open()


def _short(value: str | None) -> str | None:
    return None if len(value or "") <= MAX_TEXT else f"at most {MAX_TEXT} characters"
