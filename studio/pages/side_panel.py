"""The editor's side panel: the selected node's form, the selected edge's condition, or
(with nothing selected) the graph's own settings and its tools' approval tiers."""

from __future__ import annotations

__all__ = ["SidePanel"]

import json
from typing import TYPE_CHECKING, Any

from nicegui import ui

from components.base import Tier
from studio.pages.config_form import config_form

if TYPE_CHECKING:
    from studio.pages.editor import Editor

TIERS: tuple[Tier, ...] = ("free", "confirm", "admin")


class SidePanel:
    def __init__(self, editor: Editor) -> None:
        self.editor = editor
        self.area = ui.column().classes("w-full p-3 gap-2").props('data-testid="side-panel"')
        self._shown: tuple[Any, ...] | None = None

    def show(self, selection: dict[str, list[str]]) -> None:
        """Rebuild the panel when the selection or the selected item changed."""
        model = self.editor.model
        nodes, edges = selection.get("nodes", []), selection.get("edges", [])
        key: tuple[Any, ...]
        # Rebuilt when the selection changes or the document was swapped (undo, redo,
        # restore) — not on the panel's own edits, so typing keeps its focus.
        if len(nodes) == 1 and any(n["id"] == nodes[0] for n in model.doc["nodes"]):
            key = ("node", nodes[0], self.editor.revision)
        elif len(edges) == 1 and not nodes:
            key = ("edge", edges[0], self.editor.revision)
        else:
            key = ("graph", len(nodes) + len(edges), self.editor.revision)
        if key == self._shown:
            return
        self._shown = key
        self.area.clear()
        with self.area:
            if key[0] == "node":
                self._node(model.node(nodes[0]))
            elif key[0] == "edge":
                self._edge(edges[0])
            else:
                self._graph(len(nodes) + len(edges))

    # ------------------------------------------------------------------ node

    def _node(self, node: dict[str, Any]) -> None:
        editor = self.editor
        spec = editor.registry.nodes.get(node["type"])
        ui.label(spec.title if spec else node["type"]).classes("text-lg font-semibold")
        ui.label(f"id: {node['id']}").classes("text-xs text-gray-500 font-mono")
        error = next((p.message for p in editor.problems if p.node_id == node["id"]), None)
        if error:
            ui.label(error).classes("text-sm text-red-700").props('data-testid="node-error"')
        self._text(
            "Label",
            node.get("label", ""),
            lambda v: editor.edit(editor.model.update_node, node["id"], label=v),
        )
        self._text(
            "Description",
            node.get("description", ""),
            lambda v: editor.edit(editor.model.update_node, node["id"], description=v),
            area=True,
        )
        ui.separator()
        if spec is None:
            ui.label(f"Unknown node type {node['type']!r}").classes("text-red-700")
            return
        choices = {
            "tool": [t["name"] for t in editor.model.doc.get("tools", [])],
            "secret": list(editor.model.doc.get("secrets", [])),
            "graph": [],
        }
        config_form(
            spec.config_model.model_json_schema(),
            node.get("config") or {},
            choices=choices,
            on_change=lambda config: editor.edit(
                editor.model.update_node, node["id"], config=config
            ),
            readonly=editor.readonly,
        )

    # ------------------------------------------------------------------ edge

    def _edge(self, edge_id: str) -> None:
        editor = self.editor
        edge = editor.model.edge(edge_id)
        if edge is None:
            return
        ui.label(f"Edge {edge['source']} → {edge['target']}").classes("text-lg font-semibold")
        condition = (
            ui.input("Condition", value=edge.get("condition") or "")
            .props('outlined dense debounce=500 data-testid="edge-condition"')
            .classes("w-full")
        )
        ui.label(
            "A safe expression over the state, e.g. category == 'billing'. Empty: the default edge."
        ).classes("text-xs text-gray-500")
        label = (
            ui.input("Label", value=edge.get("label") or "")
            .props("outlined dense debounce=500")
            .classes("w-full")
        )

        def save(_: Any) -> None:
            editor.edit(
                editor.model.update_edge,
                edge_id,
                condition=(condition.value or "").strip() or None,
                label=label.value or "",
            )

        if editor.readonly:
            condition.props("readonly")
            label.props("readonly")
        else:
            condition.on_value_change(save)
            label.on_value_change(save)

    # ------------------------------------------------------------------ graph

    def _graph(self, selected: int) -> None:
        editor = self.editor
        doc = editor.model.doc
        if selected > 1:
            ui.label(f"{selected} items selected").classes("text-sm text-gray-600")
        ui.label("Graph").classes("text-lg font-semibold")
        self._text(
            "Name", doc.get("name", ""), lambda v: editor.edit(editor.model.update_graph, name=v)
        )
        self._text(
            "Description",
            doc.get("description", ""),
            lambda v: editor.edit(editor.model.update_graph, description=v),
            area=True,
        )
        ids = [n["id"] for n in doc["nodes"]]
        ui.select(
            ids,
            label="Entry node",
            value=doc.get("entry") if doc.get("entry") in ids else None,
            on_change=lambda e: editor.edit(editor.model.update_graph, entry=e.value),
        ).classes("w-full").props("outlined dense" + (" readonly" if editor.readonly else ""))
        self._tiers()
        for field, help_text in (
            ("state", "State fields: name, type, input (asked at start), default."),
            ("tools", "Tools the graph's nodes may call, with their type and config."),
            ("secrets", "Names of the secrets the graph uses (values live in the vault)."),
            ("policies", "max_steps, untrusted_content_gates_effects."),
        ):
            self._json(field, doc.get(field), help_text)

    def _tiers(self) -> None:
        editor = self.editor
        tools = editor.model.doc.get("tools") or []
        if not tools:
            return
        floors = editor.page.studio.rbac.tool_floors(editor.page.actor.workspace_id)
        ui.label("Approval tiers").classes("font-medium mt-2")
        for index, tool in enumerate(tools):
            floor = floors.get(tool.get("name", ""), "free")
            allowed = list(TIERS[TIERS.index(floor) :])
            with ui.row().classes("w-full items-center no-wrap").props(f'data-tool="{index}"'):
                ui.label(str(tool.get("name", "?"))).classes("grow font-mono text-sm")
                ui.select(
                    allowed,
                    value=tool.get("tier") if tool.get("tier") in allowed else floor,
                    on_change=lambda e, i=index: self._set_tier(i, e.value),
                ).props("dense outlined" + (" readonly" if editor.readonly else ""))
            if floor != "free":
                ui.label(f"workspace minimum: {floor}").classes("text-xs text-gray-500")

    def _set_tier(self, index: int, tier: str) -> None:
        tools = [dict(t) for t in self.editor.model.doc.get("tools") or []]
        if tools[index].get("tier") == tier:
            return
        tools[index]["tier"] = tier
        self.editor.edit(self.editor.model.update_graph, tools=tools)

    # ------------------------------------------------------------------ widgets

    def _text(self, title: str, value: str, on_change: Any, *, area: bool = False) -> None:
        make = ui.textarea if area else ui.input
        box = make(title, value=value).props("outlined dense debounce=500").classes("w-full")
        if self.editor.readonly:
            box.props("readonly")
        else:
            box.on_value_change(lambda e: on_change(e.value or ""))

    def _json(self, field: str, value: Any, help_text: str) -> None:
        editor = self.editor
        text = json.dumps(value if value is not None else [], indent=2, ensure_ascii=False)
        box = (
            ui.textarea(field.capitalize(), value=text)
            .props(
                f'outlined dense autogrow debounce=700 input-class=font-mono data-json="{field}"'
            )
            .classes("w-full")
        )
        ui.label(help_text).classes("text-xs text-gray-500")
        if editor.readonly:
            box.props("readonly")
            return

        def changed(event: Any) -> None:
            try:
                parsed = json.loads(event.value or "null")
            except json.JSONDecodeError as exc:
                box.props.update({"error": True, "error-message": f"not valid JSON: {exc.msg}"})
                return
            box.props.update({"error": False, "error-message": ""})
            editor.edit(editor.model.update_graph, **{field: parsed})

        box.on_value_change(changed)
