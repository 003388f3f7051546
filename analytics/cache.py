"""The exact-match response cache, per workspace.

An entry is keyed by (workspace, hash of model, parameters, messages and tools): the
workspace is part of the primary key and of every lookup, so one workspace never sees
another's entries. Entries expire after the node's TTL; each workspace has its own size
limit (bytes and entries), so one workspace cannot evict another's answers. The oldest
entries go first. All functions run inside the caller's transaction.
"""

from __future__ import annotations

__all__ = ["CachedAnswer", "ResponseCache"]

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import Connection, Table, bindparam, delete, func, insert, select, update

from analytics.tables import CacheEntry
from components.base import TokenUsage

_ENTRIES = cast(Table, CacheEntry.__table__)
_KEY = (_ENTRIES.c.workspace_id == bindparam("p_ws"), _ENTRIES.c.cache_key == bindparam("p_key"))
_LOOKUP = select(_ENTRIES.c.response, _ENTRIES.c.cost_usd).where(
    *_KEY, _ENTRIES.c.expires_at > bindparam("p_now")
)
_COUNT_HIT = update(_ENTRIES).where(*_KEY).values(hits=_ENTRIES.c.hits + 1)


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    response: Mapping[str, Any]
    cost_usd: Decimal | None


class ResponseCache:
    def __init__(
        self,
        clock: Callable[[], datetime],
        *,
        max_bytes_per_workspace: int = 50_000_000,
        max_entries_per_workspace: int = 10_000,
    ) -> None:
        self._clock = clock
        self.max_bytes = max_bytes_per_workspace
        self.max_entries = max_entries_per_workspace

    def hit(self, conn: Connection, workspace_id: str, key: str) -> CachedAnswer | None:
        """The live entry of this workspace under `key` (counted as a hit), or None."""
        params = {"p_ws": workspace_id, "p_key": key}
        row = conn.execute(_LOOKUP, {**params, "p_now": self._clock()}).first()
        if row is None:
            return None
        conn.execute(_COUNT_HIT, params)
        return CachedAnswer(row.response, row.cost_usd)

    def store(
        self,
        conn: Connection,
        *,
        workspace_id: str,
        key: str,
        model: str,
        provider: str,
        response: Mapping[str, Any],
        usage: TokenUsage | None,
        cost_usd: Decimal | None,
        ttl_s: float,
    ) -> bool:
        """Keep an answer (replacing an older one under the same key); False when it alone
        is larger than the workspace's limit."""
        size = len(json.dumps(response, default=str))
        if size > self.max_bytes or ttl_s <= 0:
            return False
        now = self._clock()
        where = (CacheEntry.workspace_id == workspace_id, CacheEntry.cache_key == key)
        conn.execute(delete(CacheEntry).where(*where))
        conn.execute(
            insert(CacheEntry).values(
                workspace_id=workspace_id,
                cache_key=key,
                model=model,
                provider=provider,
                response=dict(response),
                input_tokens=usage.input_tokens if usage else None,
                output_tokens=usage.output_tokens if usage else None,
                cached_tokens=usage.cached_tokens if usage else None,
                cost_usd=cost_usd,
                size_bytes=size,
                hits=0,
                created_at=now,
                expires_at=now + timedelta(seconds=ttl_s),
            )
        )
        self._evict(conn, workspace_id)
        return True

    def _evict(self, conn: Connection, workspace_id: str) -> None:
        mine = CacheEntry.workspace_id == workspace_id
        conn.execute(delete(CacheEntry).where(mine, CacheEntry.expires_at <= self._clock()))
        count, size = conn.execute(
            select(func.count(), func.coalesce(func.sum(CacheEntry.size_bytes), 0)).where(mine)
        ).one()
        if count <= self.max_entries and size <= self.max_bytes:
            return
        doomed: list[str] = []
        oldest = conn.execute(
            select(CacheEntry.cache_key, CacheEntry.size_bytes)
            .where(mine)
            .order_by(CacheEntry.created_at)
        ).all()
        for key, entry_size in oldest:
            if count <= self.max_entries and size <= self.max_bytes:
                break
            doomed.append(key)
            count, size = count - 1, size - entry_size
        conn.execute(delete(CacheEntry).where(mine, CacheEntry.cache_key.in_(doomed)))
