"""Make the README's editor screenshot: `python -m tests.e2e.screenshot [OUT.png]`.

Starts `studio serve` on a seeded copy of the demo (the support-agent example), signs in and
captures the editor with the agent node selected.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

from tests.conftest import example
from tests.e2e.harness import launch_chromium, running_server
from tests.studio.web_fixtures import PASSWORD, seed


def main(out: Path) -> None:
    with tempfile.TemporaryDirectory() as folder:
        seeded = seed(Path(folder), {"support": example("support_agent")})
        env = {"STUDIO_DATA_DIR": str(seeded.data_dir)}
        with running_server("tests.e2e.studio_server", env) as server, sync_playwright() as pw:
            browser = launch_chromium(pw)
            page = browser.new_page(viewport={"width": 1440, "height": 860})
            page.goto(f"{server.base_url}/login?next=/graphs/{seeded.graphs['support']}")
            page.get_by_label("E-mail").fill("ed@example.com")
            page.get_by_label("Password").fill(PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            page.locator('.vue-flow__node[data-id="agent"]').click()
            page.wait_for_timeout(800)
            page.screenshot(path=str(out))
            browser.close()


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "assets/editor.png"))
