import asyncio
import threading
import time

import pytest

from actions.blocking import built_once, in_thread


def test_built_once_builds_one_value_when_threads_ask_together():
    calls = []

    @built_once
    def load():
        calls.append(1)
        time.sleep(0.05)  # long enough for every thread to arrive during the build
        return object()

    got = []
    threads = [threading.Thread(target=lambda: got.append(load())) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len({id(v) for v in got}) == 1
    load.cache_clear()
    assert load() is not got[0] and len(calls) == 2


def test_built_once_retries_a_failed_build():
    attempts = []

    @built_once
    def load():
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("store not ready")
        return "ready"

    with pytest.raises(RuntimeError):
        load()
    assert load() == "ready" and load() == "ready" and len(attempts) == 2


def test_in_thread_leaves_the_event_loop_free():
    async def main():
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        task = asyncio.create_task(ticker())
        assert await in_thread(lambda x: (time.sleep(0.3), x * 2)[1], 21) == 42
        task.cancel()
        return ticks

    assert asyncio.run(main()) >= 10  # the loop kept running while the blocking call slept
