"""The web studio's analytics: one DuckDB store in the data folder, kept fresh, and its
dashboard queries.

The server process owns `analytics.duckdb` (DuckDB lets one process open a file). At
start-up `open_web_analytics()` opens it and starts a background thread that catches up
with the studio database in chunks, then loads new rows every `REFRESH_EVERY_S`. A page
also refreshes (incrementally, at most `PAGE_ROWS` rows) just before it asks its queries, so
what a run just recorded shows at once. Every method blocks: call it off the event loop.
When the file is held by another process the studio still starts; the dashboards then
answer with that problem (`AnalyticsUnavailable`).
"""

from __future__ import annotations

__all__ = ["FILE_NAME", "PAGE_ROWS", "REFRESH_EVERY_S", "WebAnalytics", "open_web_analytics"]

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from analytics.queries import READ, Dashboards
from analytics.store import AnalyticsStore, AnalyticsUnavailable, LoadReport
from graphs.identity import Actor
from studio.context import Studio, StudioAuthorizer

log = logging.getLogger(__name__)

FILE_NAME = "analytics.duckdb"
REFRESH_EVERY_S = 15.0  # the background refresh, once caught up
CHUNK_ROWS = 50_000  # events per background refresh step (the lock is held this long)
PAGE_ROWS = 50_000  # events a page loads at most before it answers


class WebAnalytics:
    """The store, its dashboards and the thread that keeps it fresh (see the module doc)."""

    def __init__(
        self, store: AnalyticsStore | None, authorizer: StudioAuthorizer, problem: str = ""
    ) -> None:
        self._store = store
        self._problem = problem or "the analytics store is not open"
        self._authorizer = authorizer
        self._dashboards = Dashboards(store, authorizer) if store is not None else None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.behind = False  # True while older events are still being loaded

    def require(self, actor: Actor) -> None:
        """Refuse (Forbidden / NotFound) unless the actor may read the dashboards."""
        self._authorizer.require(actor, READ)

    def dashboards(self) -> Dashboards:
        """The queries (each authorizes the actor); raises when the store is unavailable."""
        if self._dashboards is None:
            raise AnalyticsUnavailable(self._problem)
        return self._dashboards

    def fresh(self) -> LoadReport | None:
        """Load what is new before a page answers (at most `PAGE_ROWS` events)."""
        if self._store is None:
            return None
        report = self._store.refresh(max_rows=PAGE_ROWS)
        if report is not None:
            self.behind = report.behind
        return report

    def start(self) -> None:
        if self._store is None or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._keep_fresh, name="analytics-refresh",
                                        daemon=True)  # fmt: skip
        self._thread.start()

    def _keep_fresh(self) -> None:
        store = self._store
        assert store is not None
        while not self._stop.is_set():
            report: LoadReport | None = None
            try:
                report = store.refresh(max_rows=CHUNK_ROWS)
            except AnalyticsUnavailable:
                return  # closed under us
            except Exception:
                log.warning("analytics refresh failed; trying again later", exc_info=True)
            if report is not None:
                self.behind = report.behind
            if report is None or not report.behind:
                self._stop.wait(REFRESH_EVERY_S)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._store is not None:
            self._store.close()


@contextmanager
def open_web_analytics(studio: Studio) -> Iterator[WebAnalytics]:
    """Open `analytics.duckdb` in the studio's data folder and keep it fresh until closed."""
    authorizer = StudioAuthorizer(studio.rbac)
    path = studio.settings.data_dir / FILE_NAME
    try:
        store = AnalyticsStore(studio.engine, path)
    except AnalyticsUnavailable as exc:
        log.warning("dashboards are unavailable: %s", exc)
        analytics = WebAnalytics(None, authorizer, str(exc))
    else:
        analytics = WebAnalytics(store, authorizer)
    analytics.start()
    try:
        yield analytics
    finally:
        analytics.close()
