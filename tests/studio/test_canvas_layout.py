"""`studio.canvas`: the server-side auto-layout and the refusal to start without a build."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any

import pytest

from studio import canvas
from studio.canvas import END, CanvasAssetsMissing, GraphCanvas, auto_layout, check_assets


def nodes(*ids: str) -> list[dict[str, Any]]:
    return [{"id": node_id, "position": {"x": 999, "y": 999}} for node_id in ids]


def edges(*pairs: str) -> list[dict[str, str]]:
    return [{"source": pair[0], "target": pair[1:]} for pair in pairs]


def layer_of(positions: dict[str, dict[str, float]]) -> dict[str, int]:
    return {node_id: round(p["x"] / canvas.LAYER_GAP) for node_id, p in positions.items()}


def test_a_chain_runs_left_to_right_on_one_row() -> None:
    positions = auto_layout(nodes("a", "b", "c"), edges("ab", "bc"))
    assert positions == {
        "a": {"x": 0.0, "y": 0.0},
        "b": {"x": 260.0, "y": 0.0},
        "c": {"x": 520.0, "y": 0.0},
    }


def test_a_node_sits_after_its_longest_path() -> None:
    layers = layer_of(auto_layout(nodes("a", "b", "c", "d"), edges("ab", "bc", "cd", "ad")))
    assert layers == {"a": 0, "b": 1, "c": 2, "d": 3}


def test_cycles_are_broken_where_the_walk_from_the_entry_closes_them() -> None:
    loop = edges("ab", "ba")
    assert layer_of(auto_layout(nodes("b", "a"), loop)) == {"b": 0, "a": 1}
    assert layer_of(auto_layout(nodes("b", "a"), loop, entry="a")) == {"a": 0, "b": 1}
    agent_loop = edges("ab", "bc", "ca", "cd")  # llm -> tools -> llm ..., then out
    assert layer_of(auto_layout(nodes("a", "b", "c", "d"), agent_loop, entry="a")) == {
        "a": 0,
        "b": 1,
        "c": 2,
        "d": 3,
    }


def test_self_loops_end_edges_and_unknown_ids_are_ignored() -> None:
    links = [*edges("aa", "ab", "bz", "zb"), {"source": "b", "target": END}]
    positions = auto_layout(nodes("a", "b"), links)
    assert set(positions) == {"a", "b"}
    assert layer_of(positions) == {"a": 0, "b": 1}


def test_rows_follow_the_predecessors_then_the_input_order() -> None:
    positions = auto_layout(nodes("a", "b", "y", "x"), edges("ax", "by"))
    assert positions["x"]["y"] < positions["y"]["y"]  # x hangs off a, the upper source
    assert positions["a"]["y"] < positions["b"]["y"]
    isolated = auto_layout(nodes("p", "q", "r"), [])
    assert [isolated[n]["y"] for n in "pqr"] == [-120.0, 0.0, 120.0]  # centred on y = 0


def test_every_forward_edge_points_right_and_the_layout_is_stable() -> None:
    rng = random.Random(7)
    ids = [f"n{i}" for i in range(300)]
    links: list[dict[str, str]] = []
    while len(links) < 400:
        a, b = sorted(rng.sample(range(300), 2))
        links.append({"source": ids[a], "target": ids[b]})
    started = time.perf_counter()
    positions = auto_layout(nodes(*ids), links)
    assert time.perf_counter() - started < 0.5
    assert all(positions[e["target"]]["x"] > positions[e["source"]]["x"] for e in links)
    assert auto_layout(nodes(*ids), links) == positions
    assert len({(p["x"], p["y"]) for p in positions.values()}) == 300  # no two nodes overlap


def test_empty_graph() -> None:
    assert auto_layout([], []) == {}


def _fake_build(root: Path) -> Path:
    dist = root / "dist"
    for package in canvas.ESM_PACKAGES:
        folder = dist / package.lstrip("@").replace("/", "-")
        folder.mkdir(parents=True)
        (folder / "index.js").write_text("export {};\n")
    for package, name in canvas.VENDOR_CSS:
        (dist / canvas._folder(package) / name).write_text(f"/* {package} {name} */\n")
    for name in (*canvas.OWN_FILES, "package.json", "package-lock.json"):
        (root / name).write_text("{}\n")
    (dist / "manifest.json").write_text(json.dumps({"lock_sha256": canvas._lock_digest(root)}))
    return root


def test_a_missing_build_says_how_to_fix_it(tmp_path: Path) -> None:
    with pytest.raises(CanvasAssetsMissing) as caught:
        check_assets(tmp_path)
    message = str(caught.value)
    assert "pip install -e ." in message and "python assets/hatch_build.py" in message
    assert str(tmp_path / "dist" / "vue-flow-core" / "index.js") in message


def test_a_build_from_another_lock_file_is_refused(tmp_path: Path) -> None:
    root = _fake_build(tmp_path)
    check_assets(root)
    (root / "package-lock.json").write_text('{"changed": true}\n')
    with pytest.raises(CanvasAssetsMissing, match=r"package-lock\.json.*pip install"):
        check_assets(root)
    (root / "package-lock.json").unlink()  # an installed wheel has no lock file to compare
    check_assets(root)


def test_a_build_without_vue_flows_css_is_refused(tmp_path: Path) -> None:
    root = _fake_build(tmp_path)
    (root / "dist" / "vue-flow-core" / "theme-default.css").unlink()
    with pytest.raises(CanvasAssetsMissing, match=r"theme-default\.css.*pip install"):
        check_assets(root)


def test_the_page_gets_our_css_then_vue_flows_inline(tmp_path: Path) -> None:
    root = _fake_build(tmp_path)
    (root / "graph_canvas.css").write_text("/* ours */\n")
    css = canvas._page_css(root)
    parts = ["/* ours */"] + [f"/* {package} {name} */" for package, name in canvas.VENDOR_CSS]
    assert [css.index(part) for part in parts] == sorted(css.index(part) for part in parts)
    # what the browser loaded before the CSS came inline: the files the manifest lists
    manifest = json.loads((canvas.ASSETS_DIR / "dist" / "manifest.json").read_text())
    packages = manifest["packages"].items()
    listed = {(package, name) for package, meta in packages for name in meta["css"]}
    assert listed == set(canvas.VENDOR_CSS)


def test_creating_a_canvas_without_a_build_fails_before_nicegui_is_involved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(canvas, "ASSETS_DIR", tmp_path)
    with pytest.raises(CanvasAssetsMissing, match=r"python assets/hatch_build\.py"):
        GraphCanvas(nodes=[], edges=[], palette=[])


def test_this_checkout_has_a_current_build() -> None:
    check_assets()  # fails with the fix in its message if `pip install -e .` was skipped
