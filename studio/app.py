"""The web studio: `create_app(settings)` wires the studio context into NiceGUI.

Nothing heavy happens at import time: the database, run manager, RBAC and the analytics
store (`studio.web_analytics`) are opened when the app starts (`WebStudio.open`) and closed
when it stops. Pages live in `studio.pages`, sign-in in `studio.web_auth`, the REST API
under `/api`.
"""

from __future__ import annotations

__all__ = ["WebStudio", "create_app", "serve", "storage_secret_for"]

import logging
from contextlib import ExitStack

from nicegui import app, ui

from graphs.headless import key_file_secret
from studio.api import build_api
from studio.bootstrap import FirstRun, bootstrap
from studio.canvas import page_options
from studio.context import Studio, open_studio
from studio.settings import Settings
from studio.web_analytics import WebAnalytics, open_web_analytics
from studio.web_auth import auth_routes

log = logging.getLogger(__name__)


class WebStudio:
    """The running app's one context: settings and (once started) the opened studio."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._stack = ExitStack()
        self._studio: Studio | None = None
        self._analytics: WebAnalytics | None = None
        self.first_run: FirstRun | None = None

    @property
    def studio(self) -> Studio:
        if self._studio is None:
            raise RuntimeError("the studio is not started yet")
        return self._studio

    @property
    def analytics(self) -> WebAnalytics:
        """The dashboards' DuckDB store, owned by this process (see `studio.web_analytics`)."""
        if self._analytics is None:
            raise RuntimeError("the studio is not started yet")
        return self._analytics

    def open(self) -> None:
        self._studio = self._stack.enter_context(open_studio(self.settings))
        self.first_run = bootstrap(self._studio)
        self._analytics = self._stack.enter_context(open_web_analytics(self._studio))
        if self.first_run is not None:
            print(  # the operator's console: the one place the password is shown
                "\nAgent Studio: first start. Sign in as "
                f"{self.first_run.email} with the one-time password {self.first_run.password}\n"
                "(shown once; change it with `studio users set-password "
                f"{self.first_run.email} --password-stdin`)\n",
                flush=True,
            )

    def close(self) -> None:
        self._stack.close()
        self._studio = None
        self._analytics = None


def storage_secret_for(settings: Settings) -> str:
    """STUDIO_STORAGE_SECRET, else a key file in the data folder created with mode 0600."""
    if settings.storage_secret:
        return settings.storage_secret
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return key_file_secret(settings.data_dir / "studio-storage.key").decode()


def create_app(settings: Settings | None = None) -> WebStudio:
    """Register the studio's routes and pages on NiceGUI's app; open it at start-up."""
    from studio.pages import register_pages  # NiceGUI page modules: only when serving

    web = WebStudio(settings or Settings())
    app.on_startup(web.open)
    app.on_shutdown(web.close)
    app.router.routes.extend(auth_routes(lambda: web.studio, web.settings))
    app.mount("/api", build_api(lambda: web.studio))
    register_pages(web)
    return web


def serve(settings: Settings, *, host: str = "127.0.0.1", port: int = 8080) -> None:
    """Start the web studio (blocks until stopped)."""
    create_app(settings)
    ui.run(
        host=host,
        port=port,
        title="Agent Studio",
        reload=False,
        show=False,
        storage_secret=storage_secret_for(settings),
        favicon="◆",
        **page_options(),  # compiled Tailwind stylesheet (no Tailwind runtime), gzip level
    )
