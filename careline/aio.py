"""Stopping background tasks for sure.

On Python 3.11, `asyncio.wait_for` can lose a cancellation that arrives in the same loop
iteration as its inner call finishes (CPython gh-86296, fixed in 3.12 by rebuilding `wait_for` on
`asyncio.timeout`). redis-py calls `wait_for` around every command it sends when a socket timeout
is set, so a task cancelled mid-command may carry on as if nothing happened, and a shutdown that
cancels it once and awaits it waits for ever. Two defences, used together:

- `cancel_and_wait` cancels again until the tasks end, within a deadline, and returns any left;
- clean-up that must finish waits with `through_cancellation`, which a second cancel does not cut;
- a loop that runs until cancelled checks `still_running()` (the task's pending cancel requests,
  which a swallowed cancellation leaves behind) instead of `while True`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

RECANCEL_EVERY = 1.0  # seconds a cancelled task gets to finish its clean-up before it is asked again


async def cancel_and_wait(tasks: Iterable[asyncio.Task], timeout: float = 10.0) -> set[asyncio.Task]:
    """Cancel `tasks` and wait until every one has ended, cancelling again any that went on
    (a lost cancellation), for at most `timeout` seconds. Returns the tasks still running."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    pending = {t for t in tasks if not t.done()}
    while pending:
        for task in pending:
            task.cancel()
        left = deadline - loop.time()
        if left <= 0:
            break
        done, pending = await asyncio.wait(pending, timeout=min(RECANCEL_EVERY, left))
        for task in done:  # their errors are theirs to log; retrieved so asyncio does not warn
            if not task.cancelled():
                task.exception()
    return pending


async def through_cancellation(future: asyncio.Future):
    """The result of `future`, waited for even while this task is cancelled, once or again and
    again (cancel_and_wait re-cancels): for the clean-up inside an `except CancelledError` that
    re-raises afterwards. `future` must end by itself (its own timeout)."""
    while not future.done():
        try:
            await asyncio.shield(future)
        except asyncio.CancelledError:
            continue
    return future.result()


def still_running() -> bool:
    """False once the current task has been asked to cancel, even if the CancelledError was
    swallowed on the way (see the module's docstring)."""
    task = asyncio.current_task()
    return task is None or not task.cancelling()
