"""The safety screen: runs in the gateway on every inbound message, on every channel, in every
conversation state, before NLU. Its clinical content is knowledge/triage/safety/*.yml.

A hit on an emergency or a crisis answers at once with the channel's emergency message and
flags the conversation for staff at top priority. An information question about an emergency
("what are the signs of a stroke?") goes on to the assistant and gets "if this is happening now,
call 911" added. A screen that raises fails closed (see pipeline).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Protocol

from careline.contracts import ScreenOutcome
from channels.messages import InboundMessage, OutboundMessage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScreenResult:
    rule: str  # stable rule ids for logs and staff, never message text
    replies: tuple[OutboundMessage, ...] = field(default_factory=tuple)
    escalate: bool = True
    proceed: bool = False  # let the message go on to the assistant; replies are appended
    outcome: ScreenOutcome = ScreenOutcome.EMERGENCY
    category: str = ""
    rules: tuple[str, ...] = ()


class SafetyScreen(Protocol):
    async def screen(self, message: InboundMessage) -> ScreenResult | None: ...


class PassThroughScreen:
    """Screens nothing: for tests of the pipeline's plumbing only."""

    async def screen(self, message: InboundMessage) -> ScreenResult | None:
        return None


def render_channel(message: InboundMessage) -> str:
    return "sms" if "sms" in (message.channel, message.metadata.get("format")) else "web"


def screen_text(rules, text: str, channel: str) -> ScreenResult | None:
    """The red-flag rules' decision on one message, as the gateway acts on it."""
    screening = rules.screen(text)
    if screening.outcome is None:
        return None
    reply = (OutboundMessage(rules.message(screening, channel), role="system"),)
    category = screening.category.name if screening.category else ""
    if screening.outcome == ScreenOutcome.ADVISE:
        return ScreenResult(
            rule=f"advise:{category}",
            replies=reply,
            escalate=False,
            proceed=True,
            outcome=ScreenOutcome.ADVISE,
            category=category,
            rules=tuple(screening.rules),
        )
    return ScreenResult(
        rule=",".join(screening.rules),
        replies=reply,
        escalate=True,
        outcome=screening.outcome,
        category=category,
        rules=tuple(screening.rules),
    )


class RedFlagScreen:
    """The rules in this process: for evaluations, tests and tools. The gateway uses IsolatedScreen."""

    def __init__(self, rules=None):
        if rules is None:
            from knowledge.triage.redflags import default_rules

            rules = default_rules()
        self.rules = rules

    async def screen(self, message: InboundMessage) -> ScreenResult | None:
        return screen_text(self.rules, message.text, render_channel(message))


class ScreenTimeout(Exception):
    """The screen did not decide within its deadline."""


# --- the screen in worker processes ------------------------------------------------------------
_worker_rules = None


def _load_worker_rules() -> None:
    global _worker_rules
    from knowledge.triage.redflags import default_rules

    _worker_rules = default_rules()


def worker_screen(text: str, channel: str) -> ScreenResult | None:
    return screen_text(_worker_rules, text, channel)


class IsolatedScreen:
    """The red-flag screen in worker processes with a deadline per message. The rules run in linear
    time by construction (knowledge.triage.safe_regex); this is the second wall: a message that still
    takes too long fails closed (the caller escalates it) and its workers are killed and replaced,
    while the event loop and every other conversation go on. A worker that dies is replaced the
    same way. `work` is the function the workers run (module-level, picklable); tests pass a slow
    one. Everything here runs on the event loop's thread."""

    def __init__(
        self,
        workers: int = 2,
        timeout: float = 2.0,
        work: Callable[[str, str], ScreenResult | None] = worker_screen,
        initializer: Callable[[], None] | None = _load_worker_rules,
        max_tasks: int = 20_000,
    ):
        self.workers = workers
        self.max_tasks = max_tasks
        self.timeout = timeout
        self.work = work
        self.initializer = initializer
        self._pool = self._new_pool()
        self._screened = 0
        self._rotation: asyncio.Task | None = None
        self._warming: asyncio.Future | None = None
        self.recycled = 0

    def _new_pool(self) -> ProcessPoolExecutor:
        # spawn: a fresh interpreter, not a fork of the gateway's event loop and threads
        return ProcessPoolExecutor(
            self.workers, mp_context=multiprocessing.get_context("spawn"), initializer=self.initializer
        )

    def _start(self, pool: ProcessPoolExecutor) -> list[Future]:
        """Spawn the pool's workers and load the rules now, not on the next patient's message."""
        return [pool.submit(self.work, "warm up", "web") for _ in range(self.workers)]

    async def warm_up(self) -> None:
        """Start every worker and load the rules before the first patient message."""
        self._warming = asyncio.gather(*map(asyncio.wrap_future, self._start(self._pool)))
        await self._warming

    async def screen(self, message: InboundMessage) -> ScreenResult | None:
        try:
            return await self._run(message.text, render_channel(message))
        except BrokenProcessPool:
            # a worker died (or was killed for another message's overrun): once more on new workers
            return await self._run(message.text, render_channel(message))

    async def _run(self, text: str, channel: str) -> ScreenResult | None:
        if self._warming is not None and not self._warming.done():
            # new workers still starting (after a replacement): the deadline is for the rules, not
            # for spawning interpreters, so wait for them first
            await asyncio.wait_for(asyncio.shield(self._warming), 60)
        pool = self._pool
        self._screened += 1
        if self._screened >= self.max_tasks and self._rotation is None:
            self._rotation = asyncio.create_task(self._rotate())
        try:
            future = pool.submit(self.work, text, channel)
            return await asyncio.wait_for(asyncio.wrap_future(future), self.timeout)
        except TimeoutError:
            self._replace(pool, "a worker overran its deadline")
            raise ScreenTimeout(f"no decision within {self.timeout:.1f}s") from None
        except BrokenProcessPool:
            self._replace(pool, "a worker died")
            raise

    async def _rotate(self) -> None:
        """Replace the workers after `max_tasks` messages, the new ones warmed up before they take
        over: RE2's automata grow with the text they meet (at most 2 MiB a pattern), and an
        attacker's corpus would otherwise keep the workers large."""
        fresh = self._new_pool()
        try:
            await asyncio.gather(*map(asyncio.wrap_future, self._start(fresh)))
        except BaseException:  # cancelled (close) or failed: the fresh workers go too
            fresh.shutdown(wait=False, cancel_futures=True)
            raise
        finally:
            self._rotation = None
        old, self._pool, self._screened = self._pool, fresh, 0
        old.shutdown(wait=False)  # messages already on the old workers finish there

    def _replace(self, pool: ProcessPoolExecutor, why: str) -> None:
        """Kill `pool`'s workers (a runaway keeps its CPU otherwise) and, if it is still the one in
        use, put fresh workers in its place, started at once."""
        for process in list((getattr(pool, "_processes", None) or {}).values()):
            process.kill()
        pool.shutdown(wait=False, cancel_futures=True)
        if pool is self._pool:
            self._pool = self._new_pool()
            self._warming = asyncio.gather(*map(asyncio.wrap_future, self._start(self._pool)), return_exceptions=True)
            self.recycled += 1
            log.error("safety screen: %s; workers replaced", why)

    def close(self) -> None:
        if self._rotation is not None:
            self._rotation.cancel()
        self._pool.shutdown(wait=False, cancel_futures=True)
