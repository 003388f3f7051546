"""The studio's Tailwind stylesheet (`assets/hatch_build.py`), served instead of NiceGUI's runtime.

NiceGUI's Tailwind runtime compiled, in the browser, every class a page showed; the compiled
stylesheet only has the classes found in the sources at build time. These tests fail when a
Tailwind class used in studio/ is missing from it (a stale build, or a class the scan cannot
find), and when it was not compiled as the runtime would have compiled it. Tailwind itself
(`assets/tailwind_classes.mjs`, the pinned version under assets/node_modules) says which
words are Tailwind classes.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import nicegui
import pytest
from nicegui import Client

from studio import canvas

ROOT = Path(__file__).resolve().parents[2]
ASSETS = ROOT / "assets"
NICEGUI = Path(nicegui.__file__).resolve().parent
STRING = re.compile(r""""(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'|`(?:[^`\\]|\\.)*`""")
SELECTOR = re.compile(r"\.((?:[\w-]|\\[^0-9a-fA-F\s]|\\[0-9a-fA-F]{1,6}\s?)+)")
FIX = "run `python assets/hatch_build.py`"


_hook = canvas.build_hook(ASSETS)
assert _hook is not None
hb = _hook


def _unescape(selector: str) -> str:
    hex_escape = re.compile(r"\\([0-9a-fA-F]{1,6})\s?")
    selector = hex_escape.sub(lambda m: chr(int(m.group(1), 16)), selector)
    return re.sub(r"\\(.)", r"\1", selector)


def stylesheet_classes() -> set[str]:
    css = canvas.tailwind_stylesheet(ASSETS)
    assert css is not None, f"assets/dist/{hb.TAILWIND_CSS} is missing or out of date: {FIX}"
    return {_unescape(name) for name in SELECTOR.findall(css)}


def python_words(path: Path) -> set[str]:
    """Every word of every string literal (f-strings' literal parts too); `key=value` words of
    props strings (`input-class=font-mono`) give their value as well."""
    words: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            for word in node.value.split():
                words.add(word)
                words.update(word.split("=")[1:])
    return words


def javascript_words(path: Path) -> set[str]:
    return {
        word
        for literal in STRING.findall(path.read_text(encoding="utf-8"))
        for word in re.split(r"[\s'\"{}:,]+", literal[1:-1])
        if word
    }


def studio_words() -> set[str]:
    words: set[str] = set()
    for path in sorted((ROOT / "studio").rglob("*.py")):
        words |= python_words(path)
    for path in [*sorted((ROOT / "studio").rglob("*.js")), ASSETS / "graph_canvas.js"]:
        words |= javascript_words(path)
    return words


def test_every_tailwind_class_of_the_studio_is_in_the_stylesheet() -> None:
    utilities = hb.tailwind_utilities(ASSETS, tokens=sorted(studio_words()))
    assert {"w-[28rem]", "font-mono", "text-red-700", "items-center"} <= set(utilities)
    missing = sorted(set(utilities) - stylesheet_classes())
    assert missing == [], f"Tailwind classes used in studio/ but not compiled: {missing}: {FIX}"


def test_the_stylesheet_has_the_classes_niceguis_own_code_can_show() -> None:
    listed = [
        line
        for line in (ASSETS / hb.TAILWIND_NICEGUI).read_text(encoding="utf-8").splitlines()
        if line and not line.startswith("#")
    ]
    found = hb.tailwind_utilities(ASSETS, files=hb.nicegui_files())
    assert listed == found, (
        f"assets/{hb.TAILWIND_NICEGUI} is not what NiceGUI {nicegui.__version__} shows: run "
        "`python assets/hatch_build.py --nicegui-classes`"
    )
    assert set(listed) - stylesheet_classes() == set()


def _class_expressions(path: Path) -> list[tuple[int, ast.expr]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        if node.func.attr == "classes":
            found += [(node.lineno, arg) for arg in node.args]
            found += [(node.lineno, keyword.value) for keyword in node.keywords]
    return found


def test_no_class_name_is_put_together_at_run_time() -> None:
    """A class written out whole is found by the scan; `f"text-{color}-700"` is not: write the
    possible classes out (or add them to TAILWIND_SAFELIST in assets/hatch_build.py)."""
    built = []
    for path in sorted((ROOT / "studio").rglob("*.py")):
        for line, expression in _class_expressions(path):
            for node in ast.walk(expression):
                if isinstance(node, ast.FormattedValue):
                    built.append(f"{path.relative_to(ROOT)}:{line}")
    assert built == [], f"class names put together at run time: {built}"


def test_compiled_like_niceguis_runtime() -> None:
    """Same Tailwind version, the same `dark` variant, NiceGUI's rotate fix (headwind)."""
    runtime = (NICEGUI / "static" / "tailwindcss.min.js").read_text(encoding="utf-8")[:2000]
    version = re.search(r'"(4\.\d+\.\d+)"', runtime)
    assert version is not None
    cli = json.loads((ASSETS / "node_modules" / "tailwindcss" / "package.json").read_text())
    assert cli["version"] == version.group(1)
    manifest = json.loads((ASSETS / "dist" / "manifest.json").read_text())
    assert manifest["tailwind"]["version"] == version.group(1)

    template = (NICEGUI / "templates" / "index.html").read_text(encoding="utf-8")
    setup = re.search(r'<style type="text/tailwindcss">(.*?)</style>', template, re.DOTALL)
    assert setup is not None
    assert setup.group(1).strip() in hb.TAILWIND_PREAMBLE
    headwind = (NICEGUI / "static" / "headwind.css").read_text(encoding="utf-8")
    assert "{{ headwind_css | safe }}" in template.split("@layer overrides", 1)[1][:200]
    assert _squash(headwind) in _squash(hb.HEADWIND)
    css = canvas.tailwind_stylesheet(ASSETS) or ""
    assert css.endswith(hb.HEADWIND)
    assert "</" not in css  # it goes inline into a <style>


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


def test_the_input_scans_the_studio_and_the_canvas_modules() -> None:
    vendor = [ASSETS / "dist" / "vue-flow-core" / "index.js"]
    source = hb.tailwind_input(ASSETS, vendor)
    assert source.startswith("/* Generated")
    for path in (ROOT / "studio", ASSETS / "graph_canvas.js", ASSETS / hb.TAILWIND_NICEGUI):
        assert f"@source {json.dumps(path.as_posix())};" in source
    assert f"@source not {json.dumps((ROOT / 'studio' / '_assets').as_posix())};" in source
    assert f"@source {json.dumps(vendor[0].as_posix())};" in source


def test_the_digest_follows_class_words_not_other_edits(tmp_path: Path) -> None:
    assets = tmp_path / "assets"
    (tmp_path / "studio").mkdir()
    assets.mkdir()
    for name in hb.OWN_FILES:
        (assets / name).write_text("/* ours */\n")
    (assets / hb.TAILWIND_NICEGUI).write_text("block\n")
    page = tmp_path / "studio" / "page.py"
    page.write_text('def show():\n    """Docs."""\n    ui.label().classes("w-48 p-2")\n')
    first = hb.tailwind_digest(assets)
    page.write_text('def show(x=1):\n    """Other docs."""\n    ui.label().classes("w-48 p-2")\n')
    assert hb.tailwind_digest(assets) == first  # code and docstrings: still current
    page.write_text('def show():\n    ui.label().classes("w-52 p-2")\n')
    assert hb.tailwind_digest(assets) != first
    assert hb.tailwind_digest(tmp_path / "elsewhere" / "assets") is None  # no studio/ there


@pytest.fixture
def shared_head() -> object:
    saved = Client.shared_head_html
    yield
    Client.shared_head_html = saved


def fake_dist(assets: Path, css: str, digest: str | None) -> None:
    dist = assets / "dist"
    dist.mkdir(parents=True)
    tailwind = {"version": "4.1.13", "css": hb.TAILWIND_CSS, "sources_sha256": digest}
    (dist / "manifest.json").write_text(json.dumps({"tailwind": tailwind}))
    (dist / hb.TAILWIND_CSS).write_text(css)


@pytest.mark.usefixtures("shared_head")
def test_page_options_serve_the_stylesheet_else_the_runtime(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    wheel = tmp_path / "wheel"  # prepared files only: served as they are
    fake_dist(wheel, ".w-48{width:12rem}", None)
    options = canvas.page_options(wheel)
    assert options["tailwind"] is False
    assert options["gzip_middleware_factory"](object()).compresslevel == canvas.GZIP_LEVEL
    assert '<style id="studio-tailwind">.w-48{width:12rem}</style>' in Client.shared_head_html
    canvas.page_options(wheel)
    assert Client.shared_head_html.count('id="studio-tailwind"') == 1

    assert canvas.page_options(tmp_path / "nothing")["tailwind"] is True
    assert "Tailwind stylesheet is missing or out of date" in caplog.text


def test_a_checkout_notices_a_stylesheet_older_than_its_sources(tmp_path: Path) -> None:
    assets = tmp_path / "assets"
    (tmp_path / "studio").mkdir()
    assets.mkdir()
    for name in ("hatch_build.py", "package-lock.json", *hb.OWN_FILES, hb.TAILWIND_NICEGUI):
        (assets / name).write_bytes((ASSETS / name).read_bytes())
    page = tmp_path / "studio" / "page.py"
    page.write_text('ui.label().classes("w-48")\n')
    fake_dist(assets, ".w-48{width:12rem}", hb.tailwind_digest(assets))
    assert canvas.tailwind_stylesheet(assets) == ".w-48{width:12rem}"
    page.write_text('ui.label().classes("w-52")\n')
    assert canvas.tailwind_stylesheet(assets) is None
