"""A bounded pool of threads for the blocking parts of checks: HTTP fetches, serial ports, files.

Checks run on one asyncio loop; anything that blocks goes through here, so a hung device or a slow disk
costs a worker, never the loop.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, TypeVar

T = TypeVar("T")


class BlockingWorkers:
    def __init__(self, max_workers: int = 32, name: str = "check-worker"):
        self._executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix=name)

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
