"""Prepare the graph canvas's third-party front-end modules (Vue Flow) from npm.

`prepare()` runs `npm ci` under `assets/` when `node_modules/` is missing or older than
`package-lock.json`, then copies each package's ES module into `assets/dist/<folder>/index.js`
(with `process.env.NODE_ENV` replaced, since browsers have no `process`) together with its CSS,
and writes `assets/dist/manifest.json`. `studio/canvas.py` serves these folders through
NiceGUI's import map and refuses to start without them. Nothing here is committed.

Hatchling runs this file as a custom build hook (`[tool.hatch.build.hooks.custom]` in
pyproject.toml) for wheels and editable installs; wheels also carry the prepared files under
`studio/_assets/`. By hand: `python assets/hatch_build.py` (add `--force` to rebuild).
Set `STUDIO_SKIP_ASSETS=1` to build a wheel without the canvas (the canvas then reports
what is missing when it is first shown).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ASSETS = Path(__file__).resolve().parent
# npm packages whose ES modules the canvas imports (by these names, through the import map).
PACKAGES = ("@vue-flow/core", "@vue-flow/background", "@vue-flow/controls")
# Bare imports a prepared module may keep: NiceGUI's import map provides `vue`.
PROVIDED = frozenset({"vue", *PACKAGES})
NPM_CI = ("ci", "--ignore-scripts", "--omit=peer", "--no-audit", "--no-fund")
STAMP = ".studio-lock-sha256"
OWN_FILES = ("graph_canvas.js", "graph_canvas_minimap.js", "graph_canvas.css")

_IMPORT_RE = re.compile(
    r"""(?:\bfrom\s*|\bimport\s*\(\s*|^\s*import\s*)["']([^"']+)["']""", re.MULTILINE
)

Log = Callable[[str], None]


class AssetBuildError(RuntimeError):
    """The front-end modules could not be prepared; the message says what to do."""


def folder_name(package: str) -> str:
    """The dist folder of an npm package: `@vue-flow/core` -> `vue-flow-core`."""
    return package.lstrip("@").replace("/", "-")


def lock_digest(assets: Path = ASSETS) -> str:
    """SHA-256 of package.json + package-lock.json: what a build was made from."""
    digest = hashlib.sha256()
    for name in ("package.json", "package-lock.json"):
        digest.update((assets / name).read_bytes())
    return digest.hexdigest()


def ensure_node_modules(assets: Path = ASSETS, *, log: Log = print) -> None:
    """Run `npm ci` unless node_modules/ was installed from the current lock file."""
    stamp = assets / "node_modules" / STAMP
    digest = lock_digest(assets)
    if stamp.is_file() and stamp.read_text().strip() == digest:
        return
    npm = shutil.which("npm")
    if npm is None:
        raise AssetBuildError(
            "npm was not found: install Node.js (>= 18) with npm, then run "
            "`pip install -e .` or `python assets/hatch_build.py` again "
            "(or set STUDIO_SKIP_ASSETS=1 to build without the graph canvas)."
        )
    log(f"graph canvas: npm {' '.join(NPM_CI)} in {assets}")
    done = subprocess.run(  # noqa: S603 - fixed arguments, no shell
        [npm, *NPM_CI], cwd=assets, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise AssetBuildError(f"`npm ci` failed in {assets}:\n{done.stdout}\n{done.stderr}")
    stamp.write_text(digest + "\n")


def _esm_entry(package_dir: Path) -> Path:
    meta = json.loads((package_dir / "package.json").read_text())
    exports = meta.get("exports", {}).get(".", {})
    entry = exports.get("import") if isinstance(exports, dict) else None
    entry = entry or meta.get("module")
    if not isinstance(entry, str):
        raise AssetBuildError(f"{package_dir.name}: package.json names no ES module entry")
    return package_dir / entry


def prepare_module(source: str, package: str) -> str:
    """Make one npm ES module loadable as-is by a browser, or say why it cannot be."""
    text = source.replace("process.env.NODE_ENV", '"production"')
    if "process.env" in text:
        raise AssetBuildError(f"{package}: refers to process.env beyond NODE_ENV")
    imports = set(_IMPORT_RE.findall(text))
    stray = sorted(name for name in imports if name not in PROVIDED)
    if stray:
        raise AssetBuildError(
            f"{package}: imports {stray}, which the import map does not provide; "
            "add them to PACKAGES in assets/hatch_build.py and to the canvas's esm= option"
        )
    return text


def _write_dist(assets: Path, staging: Path) -> dict[str, Any]:
    packages: dict[str, Any] = {}
    for package in PACKAGES:
        package_dir = assets / "node_modules" / package
        folder = staging / folder_name(package)
        folder.mkdir(parents=True)
        entry = _esm_entry(package_dir)
        text = prepare_module(entry.read_text(encoding="utf-8"), package)
        (folder / "index.js").write_text(text, encoding="utf-8")
        css = sorted(p.name for p in entry.parent.glob("*.css"))
        for name in css:
            shutil.copyfile(entry.parent / name, folder / name)
        version = json.loads((package_dir / "package.json").read_text())["version"]
        packages[package] = {"version": version, "folder": folder.name, "css": css}
    return packages


def is_current(assets: Path = ASSETS) -> bool:
    """Whether dist/ was prepared from the current package-lock.json."""
    manifest = assets / "dist" / "manifest.json"
    if not manifest.is_file():
        return False
    return bool(json.loads(manifest.read_text()).get("lock_sha256") == lock_digest(assets))


def prepare(assets: Path = ASSETS, *, force: bool = False, log: Log = print) -> Path:
    """Install (if needed) and prepare the modules into `assets/dist/`; return that folder."""
    dist = assets / "dist"
    if not force and is_current(assets):
        log(f"graph canvas: {dist} is up to date")
        return dist
    ensure_node_modules(assets, log=log)
    staging = assets / "dist.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    packages = _write_dist(assets, staging)
    manifest = {"lock_sha256": lock_digest(assets), "packages": packages}
    (staging / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    shutil.rmtree(dist, ignore_errors=True)
    staging.rename(dist)
    log(f"graph canvas: prepared {', '.join(PACKAGES)} into {dist}")
    return dist


try:
    from hatchling.builders.hooks.plugin.interface import BuildHookInterface
except ImportError:  # run by hand without hatchling installed: prepare() still works
    BuildHookInterface = None  # type: ignore[assignment,misc]

if BuildHookInterface is not None:

    class CanvasAssetsHook(BuildHookInterface[Any]):
        """Prepare dist/ before a wheel (or editable wheel) is built; ship it in wheels."""

        PLUGIN_NAME = "custom"

        def initialize(self, version: str, build_data: dict[str, Any]) -> None:
            if self.target_name != "wheel":
                return
            if os.environ.get("STUDIO_SKIP_ASSETS") == "1":
                self.app.display_warning("graph canvas: STUDIO_SKIP_ASSETS=1, not prepared")
                return
            assets = Path(self.root) / "assets"
            dist = prepare(assets, log=self.app.display_info)
            if version == "editable":  # studio/canvas.py finds assets/ next to studio/
                return
            build_data["force_include"][str(dist)] = "studio/_assets/dist"
            for name in OWN_FILES:
                build_data["force_include"][str(assets / name)] = f"studio/_assets/{name}"


def main(argv: list[str]) -> int:
    """`python assets/hatch_build.py [--force]`."""
    try:
        prepare(force="--force" in argv)
    except AssetBuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
