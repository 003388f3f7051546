"""The graph canvas: a NiceGUI element around Vue Flow, and a server-side auto-layout.

The server owns the graph. `GraphCanvas` shows what it is given and reports what the person
did as events (see `EVENTS`); the page updates its model and pushes the result back with
`set_graph()`. The Vue component is `assets/graph_canvas.js`; Vue Flow itself comes from npm
at install time (`assets/hatch_build.py`) and is served offline through NiceGUI's import map.
"""

from __future__ import annotations

__all__ = [
    "END",
    "EVENTS",
    "CanvasAssetsMissing",
    "GraphCanvas",
    "auto_layout",
    "build_hook",
    "check_assets",
    "page_options",
    "tailwind_stylesheet",
]

import copy
import functools
import hashlib
import importlib.util
import json
import logging
from collections import deque
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import quote
from weakref import WeakSet

from fastapi.middleware.gzip import GZipMiddleware
from nicegui import Client, __version__, context, dependencies, ui
from starlette.types import ASGIApp

from components.errors import StudioError

END = "__end__"
"""Target id of an edge that ends the graph; the canvas draws it as an END terminal."""

EVENTS = ("add", "connect", "move", "remove", "select", "paste", "shortcut")
"""Events a page can listen to with `canvas.on(name, handler)`; `event.args` is a dict."""

_HERE = Path(__file__).resolve().parent
# A wheel carries the prepared files in studio/_assets; a checkout has them in assets/.
ASSETS_DIR = _HERE / "_assets" if (_HERE / "_assets").is_dir() else _HERE.parent / "assets"
ESM_PACKAGES = ("@vue-flow/core", "@vue-flow/background", "@vue-flow/controls")
OWN_FILES = ("graph_canvas.js", "graph_canvas_minimap.js", "graph_canvas.css")
# Vue Flow's CSS, in this order after ours (as the browser loaded it before it came inline).
VENDOR_CSS = (
    ("@vue-flow/core", "style.css"),
    ("@vue-flow/core", "theme-default.css"),
    ("@vue-flow/controls", "style.css"),
)
FIX = "run `pip install -e .` or `python assets/hatch_build.py` in the project folder"

LAYER_GAP = 260.0
ROW_GAP = 120.0
STYLESHEET_ID = "studio-tailwind"
# gzip level for every response. Starlette's default, 9, cost this 2-core server ~180 ms of CPU
# per cold page load (Quasar, Vue, Vue Flow: ~1.5 MB), on the critical path of the first
# paint; level 1 (nginx's default) takes ~4x less for 10-25% more bytes, and browsers cache
# these files for a year.
GZIP_LEVEL = 1

log = logging.getLogger(__name__)


class CanvasAssetsMissing(StudioError):
    """The canvas's front-end files were not prepared (or were prepared from another lock)."""


def _folder(package: str) -> str:
    return package.lstrip("@").replace("/", "-")


def _lock_digest(assets: Path) -> str:
    digest = hashlib.sha256()
    for name in ("package.json", "package-lock.json"):
        digest.update((assets / name).read_bytes())
    return digest.hexdigest()


def check_assets(assets: Path | None = None) -> None:
    """Raise `CanvasAssetsMissing`, saying how to fix it, unless the canvas can be served."""
    assets = assets or ASSETS_DIR
    dist = assets / "dist"
    needed = [assets / name for name in OWN_FILES] + [dist / "manifest.json"]
    needed += [dist / _folder(package) / "index.js" for package in ESM_PACKAGES]
    needed += [dist / _folder(package) / name for package, name in VENDOR_CSS]
    missing = [str(path) for path in needed if not path.is_file()]
    if missing:
        raise CanvasAssetsMissing(
            f"the graph canvas's front-end files are missing ({', '.join(missing)}): {FIX}"
        )
    if (assets / "package-lock.json").is_file():  # a checkout: the build must match the lock
        built = json.loads((dist / "manifest.json").read_text()).get("lock_sha256")
        if built != _lock_digest(assets):
            raise CanvasAssetsMissing(
                f"{dist} was prepared from another assets/package-lock.json: {FIX}"
            )


def build_hook(assets: Path | None = None) -> ModuleType | None:
    """`assets/hatch_build.py` (what prepares `dist/`) as a module, or None where it is not (an
    installed wheel carries only the prepared files)."""
    hook = (assets or ASSETS_DIR) / "hatch_build.py"
    spec = importlib.util.spec_from_file_location("_studio_hatch_build", hook)
    if not hook.is_file() or spec is None or spec.loader is None:
        return None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tailwind_stylesheet(assets: Path | None = None) -> str | None:
    """The studio's Tailwind stylesheet (compiled by `assets/hatch_build.py`), or None if it is
    missing or, in a checkout, was compiled from other sources than the current ones."""
    assets = assets or ASSETS_DIR
    dist = assets / "dist"
    try:
        built = json.loads((dist / "manifest.json").read_text())["tailwind"]
        path = dist / str(built["css"])
        css = path.read_text(encoding="utf-8")
    except (OSError, ValueError, KeyError, TypeError):
        return None
    module = build_hook(assets) if (assets / "package-lock.json").is_file() else None
    if module is not None:  # a checkout
        compiled = path.stat().st_mtime
        edited = any(source.stat().st_mtime > compiled for source in module.tailwind_files(assets))
        # Only edits change what it was compiled from (comparing that takes ~0.3 s here).
        if edited and built.get("sources_sha256") != module.tailwind_digest(assets):
            return None
    return css


def _gzip(app: ASGIApp) -> GZipMiddleware:
    return GZipMiddleware(app, minimum_size=500, compresslevel=GZIP_LEVEL)


def page_options(assets: Path | None = None) -> dict[str, Any]:
    """`ui.run()` options for how the studio's pages reach the browser.

    Styles: NiceGUI's Tailwind runtime off, the compiled stylesheet in every page's head
    instead; while that stylesheet is missing or out of date, the runtime stays on (same
    styles, compiled in the browser: slower) and a warning says so. Compression: gzip level
    GZIP_LEVEL instead of Starlette's 9 (see there)."""
    options: dict[str, Any] = {"gzip_middleware_factory": _gzip}
    css = tailwind_stylesheet(assets)
    if css is None:
        log.warning(
            "the studio's Tailwind stylesheet is missing or out of date, so NiceGUI's Tailwind "
            "runtime styles the pages in the browser (slower): %s",
            FIX,
        )
        return options | {"tailwind": True}
    if f'id="{STYLESHEET_ID}"' not in Client.shared_head_html:
        ui.add_head_html(f'<style id="{STYLESHEET_ID}">{css}</style>', shared=True)
    return options | {"tailwind": False}


@functools.cache
def _page_css(assets: Path) -> str:
    """The canvas's CSS and Vue Flow's, inline in the page's head: the canvas mounts at once,
    without waiting for stylesheets that its module would only start loading when it runs."""
    files = [assets / "graph_canvas.css"]
    files += [assets / "dist" / _folder(package) / name for package, name in VENDOR_CSS]
    return "\n".join(path.read_text(encoding="utf-8") for path in files)


_PRELOADED: WeakSet[Client] = WeakSet()


def _module_preloads(client: Client, libraries: Iterable[Any]) -> str:
    """`<link rel="modulepreload">`s for the modules the canvas's component imports (Vue Flow,
    the minimap), at the URLs of the page's import map. Without them the browser only asks for
    them once it has parsed graph_canvas.js at the end of the page; with them it loads them
    alongside NiceGUI's own scripts. A URL that differed would only cost a second request."""
    request = client.request
    prefix = quote(request.headers.get("X-Forwarded-Prefix", ""), safe="/:@!$&'()*+,;=%")
    base = f"{prefix}{request.scope.get('root_path', '')}/_nicegui/{__version__}"
    urls = [
        f"{base}/esm/{key}/index.js"
        for key, module in dependencies.esm_modules.items()
        if module.name in ESM_PACKAGES
    ]
    urls += [f"{base}/libraries/{library.key}" for library in libraries]
    return "".join(f'<link rel="modulepreload" href="{url}" />' for url in urls)


class GraphCanvas(
    ui.element,
    component=str(ASSETS_DIR / "graph_canvas.js"),
    dependencies=[str(ASSETS_DIR / "graph_canvas_minimap.js")],
    esm={package: str(ASSETS_DIR / "dist" / _folder(package)) for package in ESM_PACKAGES},
    default_style="height: 600px",
):
    """An editable view of one graph: palette, nodes, edges, END terminal, toolbar, minimap.

    Nodes are dicts `{id, type, label, position: {x, y}, group, error, diff, selected}`, edges
    `{id, source, target, label, conditional, error, diff}` (target `END` draws the terminal),
    the palette `[{group, items: [{type, title, description}]}]`. Events: see `EVENTS`.
    """

    def __init__(
        self,
        *,
        nodes: list[dict[str, Any]],
        edges: list[dict[str, Any]],
        palette: list[dict[str, Any]],
        readonly: bool = False,
    ) -> None:
        check_assets()  # a clear error here, not a broken page or a stack trace in NiceGUI
        super().__init__()
        self._props["nodes"] = copy.deepcopy(nodes)
        self._props["edges"] = copy.deepcopy(edges)
        self._props["palette"] = copy.deepcopy(palette)
        self._props["readonly"] = readonly
        ui.add_css(_page_css(ASSETS_DIR))
        client = context.client
        if client not in _PRELOADED:  # once a page (a canvas added later gets them by script)
            _PRELOADED.add(client)
            ui.add_head_html(_module_preloads(client, self.exposed_libraries))
        # Keep the props in step with what the browser already shows, without a round trip,
        # so a later update (or a reconnect) does not snap nodes back or lose the selection.
        self.on("move", self._keep_positions)
        self.on("select", self._keep_selection)

    @property
    def readonly(self) -> bool:
        return bool(self._props["readonly"])

    def set_graph(self, nodes: list[dict[str, Any]], edges: list[dict[str, Any]]) -> None:
        """Replace every node and edge; the viewport (pan and zoom) stays where it is."""
        with self._props.suspend_updates():
            self._props["nodes"] = copy.deepcopy(nodes)
            self._props["edges"] = copy.deepcopy(edges)
        self.update()

    def set_readonly(self, readonly: bool) -> None:
        """Allow or forbid edits (drag, connect, delete, paste, drop; the palette is hidden)."""
        self._props["readonly"] = readonly
        self.update()

    def set_palette(self, palette: list[dict[str, Any]]) -> None:
        """Replace the palette's groups and items."""
        self._props["palette"] = copy.deepcopy(palette)
        self.update()

    def fit_view(self) -> None:
        """Zoom and pan so that the whole graph is visible."""
        self.run_method("fitView")

    def _keep_positions(self, event: Any) -> None:
        positions = event.args.get("positions") if isinstance(event.args, dict) else None
        if not isinstance(positions, dict):
            return
        with self._props.suspend_updates():  # the browser shows it already: no update
            for node in self._props["nodes"]:
                point = positions.get(node.get("id"))
                if isinstance(point, dict) and all(_is_number(point.get(k)) for k in ("x", "y")):
                    node["position"] = {"x": point["x"], "y": point["y"]}

    def _keep_selection(self, event: Any) -> None:
        args = event.args if isinstance(event.args, dict) else {}
        nodes, edges = _id_set(args.get("nodes")), _id_set(args.get("edges"))
        with self._props.suspend_updates():
            for node in self._props["nodes"]:
                node["selected"] = node.get("id") in nodes
            for edge in self._props["edges"]:
                edge["selected"] = edge.get("id") in edges


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _id_set(value: object) -> set[str]:
    return {item for item in value if isinstance(item, str)} if isinstance(value, list) else set()


def auto_layout(
    nodes: Iterable[Mapping[str, Any]],
    edges: Iterable[Mapping[str, Any]],
    *,
    entry: str | None = None,
) -> dict[str, dict[str, float]]:
    """Positions `{node_id: {"x", "y"}}` in layers from left to right.

    A node's layer is the longest path to it from the entry (if given) and the sources; edges
    that close a cycle (found by a depth-first walk in node order, entry first) do not count.
    Within a layer, nodes follow the mean row of their predecessors, then their input order,
    so the same graph always gets the same layout. Edges to `END` or unknown nodes are ignored.
    """
    order = [str(node["id"]) for node in nodes]
    index = {node_id: i for i, node_id in enumerate(order)}
    succ: dict[str, list[str]] = {node_id: [] for node_id in order}
    for edge in edges:
        source, target = str(edge["source"]), str(edge["target"])
        if source in index and target in index and target not in succ[source]:
            succ[source].append(target)
    starts = ([entry] if entry in index else []) + order
    forward = _acyclic(order, succ, starts)
    layer = _longest_path_layers(order, forward)
    return _place(order, forward, layer, index)


def _acyclic(
    order: list[str], succ: dict[str, list[str]], starts: list[str]
) -> dict[str, list[str]]:
    """`succ` without the back edges of an iterative depth-first walk from `starts`."""
    state: dict[str, int] = {}  # 1: on the walk's stack, 2: done
    forward: dict[str, list[str]] = {node_id: [] for node_id in order}
    for start in starts:
        if start in state:
            continue
        state[start] = 1
        stack = [(start, iter(succ[start]))]
        while stack:
            node_id, children = stack[-1]
            child = next(children, None)
            if child is None:
                state[node_id] = 2
                stack.pop()
            elif state.get(child) == 1:
                continue  # back edge: it closes a cycle
            else:
                forward[node_id].append(child)
                if child not in state:
                    state[child] = 1
                    stack.append((child, iter(succ[child])))
    return forward


def _longest_path_layers(order: list[str], forward: dict[str, list[str]]) -> dict[str, int]:
    indegree = {node_id: 0 for node_id in order}
    for targets in forward.values():
        for target in targets:
            indegree[target] += 1
    layer = dict.fromkeys(order, 0)
    ready = deque(node_id for node_id in order if indegree[node_id] == 0)
    while ready:
        node_id = ready.popleft()
        for target in forward[node_id]:
            layer[target] = max(layer[target], layer[node_id] + 1)
            indegree[target] -= 1
            if indegree[target] == 0:
                ready.append(target)
    return layer


def _place(
    order: list[str], forward: dict[str, list[str]], layer: dict[str, int], index: dict[str, int]
) -> dict[str, dict[str, float]]:
    preds: dict[str, list[str]] = {node_id: [] for node_id in order}
    for source, targets in forward.items():
        for target in targets:
            preds[target].append(source)
    layers: dict[int, list[str]] = {}
    for node_id in order:
        layers.setdefault(layer[node_id], []).append(node_id)
    row: dict[str, float] = {}
    positions: dict[str, dict[str, float]] = {}
    for depth in sorted(layers):
        members = layers[depth]
        mean_row = {
            node_id: sum(row[p] for p in preds[node_id]) / len(preds[node_id])
            if preds[node_id]
            else float(index[node_id])
            for node_id in members
        }
        members.sort(key=lambda node_id: (mean_row[node_id], index[node_id]))
        middle = (len(members) - 1) / 2
        for i, node_id in enumerate(members):
            row[node_id] = float(i)
            positions[node_id] = {"x": depth * LAYER_GAP, "y": (i - middle) * ROW_GAP}
    return positions
