"""careline.aio: background tasks stop even when a cancellation is lost on the way."""

from __future__ import annotations

import asyncio

from careline import aio


async def _swallows_cancels(times: int, log: list[str]) -> None:
    """Like a task inside redis-py's wait_for on Python 3.11: the first `times` cancellations vanish."""
    while True:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            log.append("swallowed")
            if len(log) > times:
                raise


async def test_a_task_whose_cancellation_was_lost_is_cancelled_again():
    log: list[str] = []
    task = asyncio.create_task(_swallows_cancels(1, log))
    await asyncio.sleep(0)
    assert await aio.cancel_and_wait([task], timeout=5) == set()
    assert task.cancelled() and log == ["swallowed", "swallowed"]


async def test_a_task_that_never_ends_is_returned_after_the_deadline():
    log: list[str] = []
    task = asyncio.create_task(_swallows_cancels(10**6, log))
    await asyncio.sleep(0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await aio.cancel_and_wait([task], timeout=0.3) == {task}
    assert loop.time() - started < 2 and not task.done() and log
    log.extend(["swallowed"] * 10**6)  # now the next cancellation ends it
    task.cancel()
    await asyncio.wait([task], timeout=2)
    assert task.cancelled()


async def test_done_tasks_and_their_errors_are_fine():
    async def fails():
        raise RuntimeError("a bug")

    task = asyncio.create_task(fails())
    await asyncio.sleep(0)
    assert await aio.cancel_and_wait([task]) == set()
    assert await aio.cancel_and_wait([]) == set()


async def test_a_loop_on_still_running_stops_after_a_lost_cancellation():
    rounds = 0

    async def loop_until_cancelled():
        nonlocal rounds
        while aio.still_running():
            rounds += 1
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                pass  # lost, as in a client library that ate it
        return "stopped"

    task = asyncio.create_task(loop_until_cancelled())
    await asyncio.sleep(0.05)
    task.cancel()
    assert await asyncio.wait_for(task, 2) == "stopped"
    assert rounds >= 2


async def test_clean_up_waited_through_cancellation_is_not_cut_by_a_second_cancel():
    """A task that finishes a write when stopped keeps finishing it while cancel_and_wait asks again."""
    finished: list[str] = []

    async def write():
        await asyncio.sleep(aio.RECANCEL_EVERY * 2.5)  # longer than one re-cancel interval
        finished.append("written")
        return "sid"

    async def worker():
        writing = asyncio.ensure_future(write())
        try:
            await asyncio.shield(writing)
        except asyncio.CancelledError:
            finished.append(await aio.through_cancellation(writing))
            raise

    task = asyncio.create_task(worker())
    await asyncio.sleep(0.05)
    assert await aio.cancel_and_wait([task], timeout=10) == set()
    assert task.cancelled() and finished == ["written", "sid"]
