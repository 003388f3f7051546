"""The shape of the code base: import direction, migrations in step with the tables."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from graphs.db import make_engine, migrate
from graphs.tables import Base

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("studio", "graphs", "components", "auth", "analytics")
# studio → (graphs, analytics, auth) → components; nothing imports studio; only studio
# imports NiceGUI.
ALLOWED = {
    "studio": {"studio", "graphs", "analytics", "auth", "components"},
    "graphs": {"graphs", "components"},
    "analytics": {"analytics", "components"},
    "auth": {"auth", "components"},
    "components": {"components"},
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_flow_one_way(package: str) -> None:
    bad = []
    for path in (ROOT / package).rglob("*.py"):
        for name in _imports(path):
            top = name.split(".")[0]
            if top in PACKAGES and top not in ALLOWED[package]:
                bad.append(f"{path.relative_to(ROOT)} imports {name}")
            if top == "nicegui" and package != "studio":
                bad.append(f"{path.relative_to(ROOT)} imports NiceGUI")
    assert not bad, bad


def test_headless_runtime_needs_only_graphs_and_components() -> None:
    import subprocess
    import sys

    probe = (
        "import sys, graphs, components.registry as r; r.default_registry();"
        "bad=[m for m in sys.modules"
        " if m.split('.')[0] in ('studio','nicegui','auth','analytics')];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr


def test_migrations_create_exactly_the_tables(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'm.db'}")
    migrate(engine)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    diff = [d for d in diff if not (d[0] == "remove_table" and d[1].name.startswith("alembic_"))]
    assert diff == []


def test_every_failpoint_is_documented_and_reached_in_code() -> None:
    from graphs.failpoints import POINTS

    source = "\n".join(p.read_text() for p in (ROOT / "graphs").rglob("*.py"))
    for name, description in POINTS.items():
        assert description
        assert f'failpoint("{name}")' in source, name


def test_ci_runs_exactly_the_readme_test_command() -> None:
    root = Path(__file__).resolve().parent.parent
    readme = (root / "README.md").read_text()
    ci = (root / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert f"```sh\n{ci}\n```" in readme
