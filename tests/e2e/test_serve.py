"""The README's main command on a fresh data folder: `studio serve` starts, prints the
one-time admin password once, and the demo workspace with the examples is there."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from tests.e2e.harness import running_server


def test_first_start_serves_the_demo_workspace_to_the_printed_admin(tmp_path: Path) -> None:
    data = tmp_path / "fresh"
    with running_server("tests.e2e.studio_server", {"STUDIO_DATA_DIR": str(data)}) as server:
        found = re.search(r"Sign in as (\S+) with the one-time password (\S+)", server.log())
        assert found, server.log()
        email, password = found.groups()
        assert (data / "studio.db").exists()
        assert (data / "studio-storage.key").stat().st_mode & 0o777 == 0o600
        with httpx.Client(base_url=server.base_url) as client:
            assert client.get("/graphs").headers.get("location", "").startswith("/login")
            login = client.post(
                "/auth/login",
                data={"email": email, "password": password},
                headers={"origin": server.base_url},
            )
            assert login.status_code == 303, login.text
            page = client.get("/graphs")
            assert page.status_code == 200
            assert "Agent Studio" in page.text
    with running_server("tests.e2e.studio_server", {"STUDIO_DATA_DIR": str(data)}) as again:
        assert "one-time password" not in again.log()  # shown once, on the first start only
