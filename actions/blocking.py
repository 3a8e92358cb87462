"""Blocking work off the action server's event loop.

rasa_sdk runs every action on one asyncio loop, so a synchronous `run()` that waits (retrieval, an
LLM call of up to LLM_TIMEOUT_S, the triage engine) holds up every other conversation's actions.
Actions that do such work `await in_thread(...)` instead; trivial ones (a response, a payload)
stay synchronous.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

# A pool of our own rather than the loop's default executor (min(32, CPUs + 4): 6 threads on 2
# cores): a thread may sit in an LLM call for LLM_TIMEOUT_S, and a few such waits must not make
# other conversations' retrieval or triage queue behind them. Mostly waiting threads, so cheap.
WORKERS = 16


def built_once(factory: Callable[[], T]) -> Callable[[], T]:
    """`factory()` built on first use, and only once even when two threads ask at the same time
    (two knowledge-base loads would cost seconds and memory). A failed build is retried on the next
    call. `cache_clear()` forgets the value (tests), like functools.lru_cache."""
    lock = threading.Lock()
    box: list[T] = []

    @functools.wraps(factory)
    def get() -> T:
        if box:
            return box[0]
        with lock:
            if not box:
                box.append(factory())
            return box[0]

    def cache_clear() -> None:
        with lock:
            box.clear()

    get.cache_clear = cache_clear  # type: ignore[attr-defined]
    return get


@built_once
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="careline-action")


async def in_thread(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """Run `fn(*args, **kwargs)` in the actions' thread pool and wait for it without blocking the loop."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_pool(), functools.partial(fn, *args, **kwargs))
