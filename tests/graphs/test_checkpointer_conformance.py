"""LangGraph's own checkpointer conformance suite against the saver the runtime uses.

The runtime writes checkpoints through `graphs.db._FailpointSaver` (a SqliteSaver with
crash-test failpoints) on a real SQLite file. The suite is async-only, so the saver is
driven through a thin async façade that runs each sync method in a worker thread, exactly
as the run manager's worker threads call it.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path
from typing import Any

from langgraph.checkpoint.conformance import checkpointer_test, validate

from graphs.db import _FailpointSaver, checkpoint_connection


class _AsyncFacade(_FailpointSaver):
    async def aget_tuple(self, config: Any) -> Any:
        return await asyncio.to_thread(self.get_tuple, config)

    async def alist(self, config: Any, **kwargs: Any) -> AsyncIterator[Any]:
        for item in await asyncio.to_thread(lambda: list(self.list(config, **kwargs))):
            yield item

    async def aput(self, config: Any, checkpoint: Any, metadata: Any, new_versions: Any) -> Any:
        return await asyncio.to_thread(self.put, config, checkpoint, metadata, new_versions)

    async def aput_writes(
        self, config: Any, writes: Any, task_id: str, task_path: str = ""
    ) -> None:
        await asyncio.to_thread(self.put_writes, config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        await asyncio.to_thread(self.delete_thread, thread_id)


@checkpointer_test(name="studio SqliteSaver with failpoints")
async def studio_saver() -> AsyncGenerator[_AsyncFacade, None]:
    with tempfile.TemporaryDirectory() as folder:
        saver = _AsyncFacade(checkpoint_connection(Path(folder) / "checkpoints.db"))
        saver.setup()
        yield saver
        saver.conn.close()


async def test_runtime_checkpointer_passes_langgraph_conformance() -> None:
    report = await validate(studio_saver)
    failures = {
        name: result.failures for name, result in report.results.items() if result.passed is False
    }
    assert not failures, failures
    assert report.passed_all_base(), report.results
