"""`assets/hatch_build.py`: npm packages prepared for the browser, and the build hook."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from studio import canvas

ROOT = Path(__file__).resolve().parents[2]


_hook = canvas.build_hook(ROOT / "assets")
assert _hook is not None
hb = _hook


def fake_assets(root: Path) -> Path:
    """An assets/ folder whose node_modules/ was 'installed' from its lock file."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "package.json").write_text('{"name": "x"}\n')
    (root / "package-lock.json").write_text('{"lockfileVersion": 3}\n')
    for name in hb.OWN_FILES:
        (root / name).write_text("/* ours */\n")
    for package in hb.PACKAGES:
        folder = root / "node_modules" / package
        (folder / "dist").mkdir(parents=True)
        meta = {"version": "1.0.0", "exports": {".": {"import": "./dist/index.mjs"}}}
        (folder / "package.json").write_text(json.dumps(meta))
        source = 'import { h } from "vue";\nexport const env = process.env.NODE_ENV;\n'
        if package != "@vue-flow/core":
            source += 'import { useVueFlow } from "@vue-flow/core";\n'
        (folder / "dist" / "index.mjs").write_text(source)
        (folder / "dist" / "style.css").write_text(".x{}\n")
        if package == "@vue-flow/core":
            (folder / "dist" / "theme-default.css").write_text(".y{}\n")
    (root / "node_modules" / hb.STAMP).write_text(hb.lock_digest(root))
    return root


def test_modules_get_node_env_replaced_and_only_provided_imports() -> None:
    source = 'import { ref } from "vue";\nif (process.env.NODE_ENV !== "production") {}\n'
    assert '"production" !== "production"' in hb.prepare_module(source, "p")
    with pytest.raises(hb.AssetBuildError, match=r"process\.env beyond NODE_ENV"):
        hb.prepare_module("const debug = process.env.DEBUG;", "p")
    for stray in ('import x from "d3-zoom";', 'export * from "./chunk.js";', 'import("lodash")'):
        with pytest.raises(hb.AssetBuildError, match="import map does not provide"):
            hb.prepare_module(stray, "p")


def test_prepare_writes_dist_that_the_canvas_accepts(tmp_path: Path) -> None:
    assets = fake_assets(tmp_path)
    dist = hb.prepare(assets, log=lambda _: None)
    core = (dist / "vue-flow-core" / "index.js").read_text()
    assert "process.env" not in core and 'const env = "production"' in core
    assert (dist / "vue-flow-controls" / "style.css").is_file()
    manifest = json.loads((dist / "manifest.json").read_text())
    assert manifest["packages"]["@vue-flow/controls"] == {
        "version": "1.0.0",
        "folder": "vue-flow-controls",
        "css": ["style.css"],
    }
    assert manifest["lock_sha256"] == canvas._lock_digest(assets)
    canvas.check_assets(assets)
    assert not (assets / "dist.tmp").exists()


def test_prepare_skips_work_when_current_and_rebuilds_when_the_lock_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assets = fake_assets(tmp_path)
    hb.prepare(assets, log=lambda _: None)
    index = assets / "dist" / "vue-flow-core" / "index.js"
    index.write_text("// touched\n")
    hb.prepare(assets, log=lambda _: None)
    assert index.read_text() == "// touched\n"  # up to date: left alone

    calls: list[Any] = []

    def fake_run(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        calls.append((args, kwargs["cwd"]))
        return subprocess.CompletedProcess(args, 0, "", "")

    monkeypatch.setattr(hb.shutil, "which", lambda name: "/opt/node/bin/npm")
    monkeypatch.setattr(hb.subprocess, "run", fake_run)
    (assets / "package-lock.json").write_text('{"lockfileVersion": 3, "changed": 1}\n')
    hb.prepare(assets, log=lambda _: None)
    assert calls == [(["/opt/node/bin/npm", *hb.NPM_CI], assets)]
    assert "--ignore-scripts" in hb.NPM_CI
    assert "process.env" not in index.read_text()
    assert (assets / "node_modules" / hb.STAMP).read_text().strip() == hb.lock_digest(assets)


def test_without_npm_the_build_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assets = fake_assets(tmp_path)
    (assets / "node_modules" / hb.STAMP).unlink()
    monkeypatch.setattr(hb.shutil, "which", lambda name: None)
    with pytest.raises(hb.AssetBuildError, match=r"install Node\.js.*STUDIO_SKIP_ASSETS"):
        hb.prepare(assets, log=lambda _: None)


def test_the_command_line_reports_a_failed_build(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(**_: Any) -> Path:
        raise hb.AssetBuildError("`npm ci` failed")

    monkeypatch.setattr(hb, "prepare", broken)
    assert hb.main([]) == 1
    assert "error: `npm ci` failed" in capsys.readouterr().err


def test_digests_agree_between_the_hook_and_the_canvas() -> None:
    assets = ROOT / "assets"
    assert hb.lock_digest(assets) == canvas._lock_digest(assets)
    assert hb.PACKAGES == canvas.ESM_PACKAGES
    assert hb.OWN_FILES == canvas.OWN_FILES
    assert all((assets / name).is_file() for name in hb.OWN_FILES)
    assert [hb.folder_name(p) for p in hb.PACKAGES] == [canvas._folder(p) for p in hb.PACKAGES]


@pytest.mark.parametrize(
    ("target", "version", "shipped"),
    [("wheel", "standard", True), ("wheel", "editable", False), ("sdist", "standard", False)],
)
def test_the_hook_ships_dist_in_wheels_only(
    tmp_path: Path, target: str, version: str, shipped: bool
) -> None:
    fake_assets(tmp_path / "assets")
    hook = hb.CanvasAssetsHook(str(tmp_path), {}, None, None, str(tmp_path / "out"), target)
    build_data: dict[str, Any] = {"force_include": {}}
    hook.initialize(version, build_data)
    dist = tmp_path / "assets" / "dist"
    assert dist.is_dir() == (target == "wheel")
    expected = {str(dist): "studio/_assets/dist"} | {
        str(tmp_path / "assets" / name): f"studio/_assets/{name}" for name in hb.OWN_FILES
    }
    assert build_data["force_include"] == (expected if shipped else {})
