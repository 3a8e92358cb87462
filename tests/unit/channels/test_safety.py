"""The safety screen in worker processes: a message that overruns its deadline fails closed
without blocking the event loop, and the next message is screened by fresh workers."""

from __future__ import annotations

import asyncio
import re
import time

import pytest

from channels.messages import InboundMessage
from channels.pipeline import Gateway
from channels.safety import IsolatedScreen, ScreenTimeout


def catastrophic(text: str, channel: str):
    """Python's backtracking engine on a pattern built to explode, as an unsafe rule would."""
    if text.startswith("slow"):
        re.match(r"(a|aa)*b", "a" * 40)
    return None


def no_rules() -> None:
    return None


def crashing(text: str, channel: str):
    """A worker that dies (out of memory, a crash in the regex library)."""
    if text.startswith("crash"):
        import os

        os._exit(1)
    return None


@pytest.fixture
def screen():
    s = IsolatedScreen(workers=2, timeout=1.0, work=catastrophic, initializer=no_rules)
    yield s
    s.close()


async def test_overrun_fails_closed_and_the_loop_keeps_running(screen):
    await screen.warm_up()
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            await asyncio.sleep(0.05)
            ticks += 1

    task = asyncio.create_task(ticker())
    started = time.monotonic()
    with pytest.raises(ScreenTimeout):
        await screen.screen(InboundMessage("web", "tok", "slow " + "a" * 40))
    elapsed = time.monotonic() - started
    task.cancel()
    assert 0.9 <= elapsed < 3.0
    assert ticks >= 10  # the event loop ran all along
    assert screen.recycled == 1
    # the next message is screened at once by the new workers
    started = time.monotonic()
    assert await screen.screen(InboundMessage("web", "tok", "hello")) is None
    assert time.monotonic() - started < 30  # includes spawning the new workers


async def test_other_conversations_are_screened_while_one_overruns(screen):
    await screen.warm_up()
    slow = asyncio.create_task(screen.screen(InboundMessage("web", "a", "slow " + "a" * 40)))
    await asyncio.sleep(0.1)
    started = time.monotonic()
    assert await screen.screen(InboundMessage("web", "b", "hello")) is None  # the other worker answers
    assert time.monotonic() - started < 0.5
    with pytest.raises(ScreenTimeout):
        await slow


async def test_the_gateway_turns_an_overrun_into_the_safety_message(screen):
    gateway = Gateway(store=None, rasa=None, secret="s" * 32, screen=screen)
    result = await gateway.screen(InboundMessage("web", "tok", "slow " + "a" * 40))
    assert result is not None and result.escalate and result.outcome == "screen_error"
    assert "911" in result.replies[0].text


async def test_workers_are_replaced_after_many_messages_without_a_gap():
    screen = IsolatedScreen(workers=2, timeout=5.0, work=catastrophic, initializer=no_rules, max_tasks=10)
    try:
        await screen.warm_up()
        first = screen._pool
        for i in range(40):
            assert await screen.screen(InboundMessage("web", "a", f"hello {i}")) is None
            await asyncio.sleep(0.05)
        assert screen._pool is not first and screen.recycled == 0
    finally:
        screen.close()


async def test_a_worker_that_dies_is_replaced_and_the_message_still_screened():
    screen = IsolatedScreen(workers=2, timeout=5.0, work=crashing, initializer=no_rules)
    try:
        await screen.warm_up()
        with pytest.raises(Exception):  # noqa: B017 - whatever the dead worker raises, it raises
            await screen.screen(InboundMessage("web", "a", "crash now"))  # dies again on the retry
        assert screen.recycled >= 1
        for i in range(5):  # the screen works again: not broken for good
            assert await screen.screen(InboundMessage("web", "b", f"hello {i}")) is None
        gateway = Gateway(store=None, rasa=None, secret="s" * 32, screen=screen)
        failed = await gateway.screen(InboundMessage("web", "c", "crash again"))
        assert failed.escalate and failed.outcome == "screen_error"  # fails closed
        assert await screen.screen(InboundMessage("web", "b", "hello")) is None
    finally:
        screen.close()
