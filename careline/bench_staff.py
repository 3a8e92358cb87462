"""`make bench` (staff console part): the call-center console with 50 agents connected and 500
conversations waiting (issue 11: p95 ≤ 300 ms).

Every agent is logged in and has /staff/ws open, and behaves as channels/static/staff/console.js
does: a ping every 20 s, the queue polled every 15 s and fetched again 200 ms after any desk event.
Measured one sample at a time, spread over several agents and conversations:

- patient → console: from a patient's message (POST /api/messages) until the WebSocket of the agent
  who claimed and watches that conversation receives it;
- reply → widget: from an agent's reply (POST /staff/api/conversations/{key}/messages) until the
  patient's open widget (/ws) receives it;
- GET /staff/api/queue with 500 waiting.

Twice: on a quiet desk, and on a busy one, where hand-offs arrive and are claimed
(BENCH_STAFF_ARRIVALS_PER_S of each): every arrival and claim is a desk event on which all 50
consoles fetch the queue again. The waiting conversations are seeded directly in Redis through
ConversationStore (BENCH_STAFF_SEED=redis, the default; so are the busy desk's arrivals) or handed
off through Rasa (=rasa, slower); the widget conversations are always handed off through Rasa, from
the widget itself. Sizes: BENCH_STAFF_AGENTS, _WAITING, _N (samples), _WATCHED (conversations the
samples rotate over); REDIS_URL and BENCH_PORT as for careline/bench.py.

The agents not used for measuring run in a child process, so their load reaches the gateway without
delaying the measuring client's event loop. The stack has its own var/ (var/bench-staff), its own
key prefix (pub/sub channels ignore the Redis database number) and its own staff accounts, disabled
and removed from Redis at the end. Prints JSON; medians and p95, this machine is noisy.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import os
import queue
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect

from careline.bench import rss_mib
from careline.stats import summary
from careline.supervisor import Stack, find_root, free_port
from channels.pseudonym import conversation_key
from channels.store import RASA_KEY_PREFIX, ConversationStore, Owner

PASSWORD = "bench console password 7f3k"
ASK_FOR_A_PERSON = "I want to talk to a real person please"
TARGET_P95_MS = 300
PING_S, POLL_S, DEBOUNCE_S = 20.0, 15.0, 0.2  # console.js: PING_MS, POLL_MS, DEBOUNCE_MS
DESK_EVENTS = {"waiting_for_staff", "staff", "bot", "closed", "claimed", "released", "alert", "presence"}
DELIVERY_TIMEOUT_S = 10.0
COOKIE, CSRF = "careline_staff", "X-CSRF-Token"  # channels/staff/auth.py


class BenchError(RuntimeError):
    pass


@dataclass(frozen=True)
class Config:
    agents: int = 50
    waiting: int = 500
    samples: int = 100
    warmup: int = 5
    watched: int = 10  # conversations (and agents) each measurement rotates over
    arrivals_per_s: float = 1.0  # busy desk: hand-offs arriving, and claimed, per second (0: no busy phase)
    seed: str = "redis"

    @classmethod
    def from_env(cls) -> Config:
        env = os.environ.get
        config = cls(
            agents=int(env("BENCH_STAFF_AGENTS", "50")),
            waiting=int(env("BENCH_STAFF_WAITING", "500")),
            samples=int(env("BENCH_STAFF_N", "100")),
            watched=int(env("BENCH_STAFF_WATCHED", "10")),
            arrivals_per_s=float(env("BENCH_STAFF_ARRIVALS_PER_S", "1.0")),
            seed=env("BENCH_STAFF_SEED", "redis"),
        )
        if config.seed not in ("redis", "rasa"):
            raise BenchError("BENCH_STAFF_SEED must be redis or rasa")
        if config.agents < 2 * config.watched + 1:
            raise BenchError("BENCH_STAFF_AGENTS must be at least 2 × BENCH_STAFF_WATCHED + 1")
        return config


def ws_url(base: str, path: str) -> str:
    return base.replace("http://", "ws://", 1).replace("https://", "wss://", 1) + path


def _resolve(waiters: dict[str, asyncio.Future], text: Any, at: float) -> None:
    future = waiters.pop(text, None) if isinstance(text, str) else None
    if future is not None and not future.done():
        future.set_result(at)


class Console:
    """One agent's console as console.js runs it: logged in, /staff/ws open, pings, queue fetches."""

    def __init__(self, base: str, email: str):
        self.base, self.email = base, email
        self.http = httpx.AsyncClient(base_url=base, timeout=30, trust_env=False)
        self.ws: ClientConnection | None = None
        self.expected: dict[str, asyncio.Future] = {}  # patient message text → when it arrived
        self.tasks: list[asyncio.Task] = []
        self.refresh = asyncio.Event()
        self.fetching = asyncio.Lock()
        self.pong: asyncio.Future | None = None
        self.fetches = self.desk_events = self.errors = 0
        self.closed = False

    async def open(self) -> None:
        resp = await self.http.post("/staff/api/login", json={"email": self.email, "password": PASSWORD})
        if resp.status_code != 200:
            raise BenchError(f"staff login failed: {resp.status_code} {resp.text[:200]}")
        self.http.headers[CSRF] = resp.json()["csrf_token"]
        cookie = f"{COOKIE}={self.http.cookies.get(COOKIE)}"
        self.ws = await connect(
            ws_url(self.base, "/staff/ws"), origin=self.base, additional_headers={"Cookie": cookie}, proxy=None
        )
        self.tasks = [asyncio.create_task(job()) for job in (self._read, self._pinger, self._poller, self._refresher)]
        await self.ping()

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                at = time.perf_counter()
                frame = json.loads(raw)
                kind = frame.get("type")
                if kind == "conversation":
                    event = frame.get("event") or {}
                    if event.get("role") == "user":
                        _resolve(self.expected, event.get("text"), at)
                elif kind == "pong":
                    if self.pong is not None and not self.pong.done():
                        self.pong.set_result(at)
                elif kind in DESK_EVENTS:
                    self.desk_events += 1
                    self.refresh.set()
        finally:
            self.closed = True

    async def ping(self) -> None:
        """Ping and wait for the pong: the server handles a socket's frames in order, so an earlier
        watch is in effect once this returns."""
        self.pong = asyncio.get_running_loop().create_future()
        await self.ws.send(json.dumps({"type": "ping", "status": "online"}))
        await asyncio.wait_for(self.pong, DELIVERY_TIMEOUT_S)

    async def watch(self, key: str) -> None:
        await self.ws.send(json.dumps({"type": "watch", "id": key}))
        await self.ping()

    def expect(self, text: str) -> asyncio.Future:
        self.expected[text] = future = asyncio.get_running_loop().create_future()
        return future

    async def fetch_queue(self) -> None:
        if self.fetching.locked():  # one at a time, as console.js: a burst of events costs one request
            return
        async with self.fetching:
            try:
                # as console.js marks its polls: no sign of a person, the idle logoff is not delayed
                (await self.http.get("/staff/api/queue", headers={"X-Staff-Background": "1"})).raise_for_status()
                self.fetches += 1
            except httpx.HTTPError:
                self.errors += 1

    async def _pinger(self) -> None:
        while True:
            await asyncio.sleep(PING_S)
            await self.ws.send(json.dumps({"type": "ping", "status": "online"}))

    async def _poller(self) -> None:
        await asyncio.sleep(random.uniform(0, POLL_S))  # browsers opened at different times
        while True:
            await self.fetch_queue()
            await asyncio.sleep(POLL_S)

    async def _refresher(self) -> None:
        while True:
            await self.refresh.wait()
            while self.refresh.is_set():  # debounced: 200 ms after the last desk event of a burst
                self.refresh.clear()
                await asyncio.sleep(DEBOUNCE_S)
            await self.fetch_queue()

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await self.ws.close()
        await self.http.aclose()


class Widget:
    """A patient's web chat on /ws: `hello`, then `message`; staff messages are pushed to it."""

    def __init__(self, base: str, secret: str):
        self.base, self.secret = base, secret
        self.ws: ClientConnection | None = None
        self.key = ""
        self.acks: dict[str, asyncio.Future] = {}
        self.expected: dict[str, asyncio.Future] = {}  # staff message text → when it arrived
        self.reader: asyncio.Task | None = None

    async def open(self) -> None:
        self.ws = await connect(ws_url(self.base, "/ws"), origin=self.base, proxy=None)
        await self.ws.send(json.dumps({"type": "hello", "conversation_token": None}))
        session = json.loads(await asyncio.wait_for(self.ws.recv(), DELIVERY_TIMEOUT_S))
        self.key = conversation_key(self.secret, "web", session["conversation_token"])
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for raw in self.ws:
            at = time.perf_counter()
            frame = json.loads(raw)
            kind = frame.get("type")
            if kind in ("ack", "error") and frame.get("client_message_id") in self.acks:
                self.acks.pop(frame["client_message_id"]).set_result(frame)
            elif kind == "message" and frame.get("role") == "staff":
                _resolve(self.expected, frame.get("text"), at)

    async def say(self, text: str) -> dict[str, Any]:
        """The patient's message; the gateway's ack (with the owner after it), or its error."""
        message_id = uuid.uuid4().hex
        self.acks[message_id] = ack = asyncio.get_running_loop().create_future()
        await self.ws.send(json.dumps({"type": "message", "text": text, "client_message_id": message_id}))
        return await asyncio.wait_for(ack, 120)

    async def hand_off(self) -> None:
        owner = (await self.say(ASK_FOR_A_PERSON)).get("owner")
        if owner != Owner.WAITING_FOR_STAFF:
            owner = (await self.say("yes")).get("owner")
        if owner != Owner.WAITING_FOR_STAFF:
            raise BenchError(f"the widget's hand-off did not reach the staff queue (owner {owner})")

    def expect(self, text: str) -> asyncio.Future:
        self.expected[text] = future = asyncio.get_running_loop().create_future()
        return future

    async def close(self) -> None:
        if self.reader is not None:
            self.reader.cancel()
            await asyncio.gather(self.reader, return_exceptions=True)
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await self.ws.close()


# --- seeding -----------------------------------------------------------------------------------
async def seed_in_redis(store: ConversationStore, secret: str, addresses: list[str]) -> list[str]:
    """API conversations waiting for staff, written as the gateway writes a hand-off (the patient's
    request, the holding message, owner waiting_for_staff), under the gateway's key derivation."""
    from channels.pipeline import holding_message

    async def one(address: str) -> str:
        key = conversation_key(secret, "api", address)
        await store.ensure(key, "api")
        await store.append(key, "user", text=ASK_FOR_A_PERSON)
        await store.append(key, "system", [holding_message()])
        summary_ = {"reason": "request_human", "recent_intents": ["request_human"]}
        await store.set_owner(key, Owner.WAITING_FOR_STAFF, reason="request_human", summary=summary_)
        return key

    keys: list[str] = []
    for start in range(0, len(addresses), 50):
        keys += await asyncio.gather(*(one(a) for a in addresses[start : start + 50]))
    return keys


async def seed_through_rasa(base: str, secret: str, addresses: list[str], concurrency: int = 4) -> list[str]:
    """The same conversations, each handed off by the patient through the gateway and Rasa."""
    gate = asyncio.Semaphore(concurrency)

    async def one(api: httpx.AsyncClient, address: str) -> str:
        async with gate:
            for text in (ASK_FOR_A_PERSON, "yes"):
                resp = await api.post("/api/messages", json={"conversation_id": address, "text": text})
                resp.raise_for_status()
                if resp.json()["owner"] == Owner.WAITING_FOR_STAFF:
                    return conversation_key(secret, "api", address)
        raise BenchError("an API hand-off did not reach the staff queue")

    async with httpx.AsyncClient(base_url=base, timeout=120, trust_env=False) as api:
        return list(await asyncio.gather(*(one(api, a) for a in addresses)))


# --- measuring ---------------------------------------------------------------------------------
async def timed_delivery(send: Awaitable[httpx.Response], arrived: asyncio.Future) -> float | None:
    """Milliseconds from sending until `arrived` resolves (with its arrival time); None if it never does."""
    t0 = time.perf_counter()
    resp = await send
    if resp.status_code != 200:
        raise BenchError(f"{resp.request.method} {resp.request.url.path}: {resp.status_code} {resp.text[:200]}")
    try:
        at = await asyncio.wait_for(arrived, DELIVERY_TIMEOUT_S)
    except TimeoutError:
        return None
    return (at - t0) * 1000


async def measure(count: int, warmup: int, one: Callable[[int], Awaitable[float | None]]) -> dict[str, Any]:
    values, lost = [], 0
    for i in range(warmup + count):
        ms = await one(i)
        if i >= warmup:
            if ms is None:
                lost += 1
            else:
                values.append(ms)
        await asyncio.sleep(random.uniform(0.02, 0.1))  # off the beat of the consoles' timers
    return figures(values, lost)


def figures(values: list[float], lost: int = 0) -> dict[str, Any]:
    result: dict[str, Any] = {**summary(values), "max_ms": round(max(values), 1) if values else None}
    if lost:
        result["lost"] = lost  # never arrived within DELIVERY_TIMEOUT_S
    return result


def patient_sample(patient: httpx.AsyncClient, pairs: list[tuple[Console, str]]):
    async def one(i: int) -> float | None:
        console, address = pairs[i % len(pairs)]
        text = f"bench patient message {i} {uuid.uuid4().hex[:8]}"
        send = patient.post("/api/messages", json={"conversation_id": address, "text": text})
        return await timed_delivery(send, console.expect(text))

    return one


def reply_sample(pairs: list[tuple[Console, Widget]]):
    async def one(i: int) -> float | None:
        console, widget = pairs[i % len(pairs)]
        text = f"bench staff reply {i} {uuid.uuid4().hex[:8]}"
        send = console.http.post(f"/staff/api/conversations/{widget.key}/messages", json={"text": text})
        return await timed_delivery(send, widget.expect(text))

    return one


def queue_sample(console: Console):
    async def one(i: int) -> float:
        t0 = time.perf_counter()
        (await console.http.get("/staff/api/queue")).raise_for_status()
        return (time.perf_counter() - t0) * 1000

    return one


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (/proc/<pid>/stat fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- the desk ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Target:
    base: str
    secret: str
    redis_url: str
    prefix: str
    run: str
    gateway_pid: int


@dataclass
class Desk:
    """The measuring side: agents with an API conversation each (claimed, watched), agents with a
    widget's conversation each (claimed, watched), and one that measures the queue and claims arrivals."""

    store: ConversationStore
    watchers: list[tuple[Console, str]]  # the console, and the API conversation's address
    repliers: list[tuple[Console, Widget]]
    dispatcher: Console
    consoles: list[Console]
    widgets: list[Widget]

    async def close(self) -> None:
        await asyncio.gather(*(c.close() for c in self.consoles), *(w.close() for w in self.widgets))


async def open_all(consoles: list[Console], concurrency: int = 4) -> None:
    gate = asyncio.Semaphore(concurrency)  # each login costs the gateway an Argon2 hash

    async def one(console: Console) -> None:
        async with gate:
            await console.open()

    await asyncio.gather(*(one(c) for c in consoles))


async def claim(console: Console, key: str) -> None:
    resp = await console.http.post(f"/staff/api/conversations/{key}/claim")
    if resp.status_code != 200:
        raise BenchError(f"claim failed: {resp.status_code} {resp.text[:200]}")
    await console.watch(key)


async def open_widgets(target: Target, count: int) -> list[Widget]:
    """Patients in the widget, each handed off through Rasa from the widget itself."""
    widgets = [Widget(target.base, target.secret) for _ in range(count)]
    gate = asyncio.Semaphore(4)

    async def one(widget: Widget) -> None:
        async with gate:
            await widget.open()
            await widget.hand_off()

    await asyncio.gather(*(one(w) for w in widgets))
    return widgets


async def set_up_desk(
    target: Target, store: ConversationStore, emails: list[str], addresses: list[str], widgets: list[Widget]
) -> Desk:
    consoles = [Console(target.base, email) for email in emails]
    desk = Desk(store, [], [], consoles[-1], consoles, widgets)
    try:
        await open_all(consoles)
        watched = len(widgets)
        for console, address in zip(consoles[:watched], addresses, strict=True):
            await claim(console, conversation_key(target.secret, "api", address))
            desk.watchers.append((console, address))
        for console, widget in zip(consoles[watched : 2 * watched], widgets, strict=True):
            await claim(console, widget.key)
            desk.repliers.append((console, widget))
    except BaseException:
        await desk.close()
        raise
    return desk


async def arrivals(desk: Desk, target: Target, rate: float, counts: dict[str, int]) -> None:
    """A busy desk: every 1/rate s the head of the queue is claimed and a new hand-off arrives, so
    the queue stays as long, and every console sees two desk events."""
    while True:
        await asyncio.sleep(1 / rate)
        head = await desk.store.waiting_for_staff(1)
        if head:
            resp = await desk.dispatcher.http.post(f"/staff/api/conversations/{head[0]}/claim")
            counts["claimed"] += resp.status_code == 200
        await seed_in_redis(desk.store, target.secret, [f"bench-{target.run}-arrival-{counts['arrived']}"])
        counts["arrived"] += 1


async def phase(cfg: Config, patient: httpx.AsyncClient, desk: Desk, target: Target) -> dict[str, Any]:
    cpu0, t0 = cpu_seconds(target.gateway_pid), time.perf_counter()
    fetches0 = sum(c.fetches for c in desk.consoles)
    result: dict[str, Any] = {
        "conversations_waiting": await desk.store.redis.zcard(f"{target.prefix}:staff:waiting"),
        "patient_to_console_ms": await measure(cfg.samples, cfg.warmup, patient_sample(patient, desk.watchers)),
        "reply_to_widget_ms": await measure(cfg.samples, cfg.warmup, reply_sample(desk.repliers)),
        "queue_fetch_ms": await measure(cfg.samples, cfg.warmup, queue_sample(desk.dispatcher)),
    }
    elapsed = time.perf_counter() - t0
    result["gateway_cpu_percent"] = round(100 * (cpu_seconds(target.gateway_pid) - cpu0) / elapsed)
    # the measuring process's consoles only; the child process's fetch at the same rate
    result["console_queue_fetches_per_s"] = round((sum(c.fetches for c in desk.consoles) - fetches0) / elapsed, 1)
    return result


async def phases(cfg: Config, desk: Desk, target: Target) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=target.base, timeout=30, trust_env=False) as patient:
        await asyncio.sleep(2)  # the claims' desk events and queue fetches are over
        report = {"quiet_desk": await phase(cfg, patient, desk, target)}
        if cfg.arrivals_per_s > 0:
            counts = {"arrived": 0, "claimed": 0}
            load = asyncio.create_task(arrivals(desk, target, cfg.arrivals_per_s, counts))
            try:
                await asyncio.sleep(3)
                t0, before = time.perf_counter(), dict(counts)
                busy = await phase(cfg, patient, desk, target)
                elapsed = time.perf_counter() - t0
            finally:
                load.cancel()
                await asyncio.gather(load, return_exceptions=True)
            busy["handoffs_per_s"] = round((counts["arrived"] - before["arrived"]) / elapsed, 2)
            busy["claims_per_s"] = round((counts["claimed"] - before["claimed"]) / elapsed, 2)
            report["busy_desk"] = busy
        listing = (await desk.dispatcher.http.get("/staff/api/queue")).json()
        report["queue_items_returned"] = len(listing["waiting"])
        report["gateway_rss_mib"] = rss_mib(target.gateway_pid)
    return report


# --- the agents that are not measuring, in a child process ---------------------------------------
def crowd_main(base: str, emails: list[str], ready, stop, results) -> None:
    asyncio.run(_crowd(base, emails, ready, stop, results))


async def _crowd(base: str, emails: list[str], ready, stop, results) -> None:
    consoles = [Console(base, email) for email in emails]
    try:
        await open_all(consoles)
    except Exception as exc:
        results.put({"error": f"{type(exc).__name__}: {exc}"})
        await asyncio.gather(*(c.close() for c in consoles))
        return
    ready.set()
    while not stop.is_set():
        await asyncio.sleep(0.2)
    results.put(console_counts(consoles))
    await asyncio.gather(*(c.close() for c in consoles))


def console_counts(consoles: list[Console]) -> dict[str, int]:
    return {
        "connected": sum(not c.closed for c in consoles),
        "queue_fetches": sum(c.fetches for c in consoles),
        "desk_events": sum(c.desk_events for c in consoles),
        "errors": sum(c.errors for c in consoles),
    }


class Crowd:
    """The other agents' consoles, in a process of their own (a busy desk makes them all fetch the
    queue at once; in this process that would delay the measured frames)."""

    def __init__(self, base: str, emails: list[str]):
        ctx = multiprocessing.get_context("spawn")
        self.ready, self.stop_event, self.results = ctx.Event(), ctx.Event(), ctx.Queue()
        self.proc = ctx.Process(
            target=crowd_main, args=(base, emails, self.ready, self.stop_event, self.results), daemon=True
        )

    async def start(self, timeout: float = 180) -> None:
        self.proc.start()
        deadline = time.monotonic() + timeout
        while not await asyncio.to_thread(self.ready.wait, 0.5):
            if not self.proc.is_alive():
                try:
                    error = (await asyncio.to_thread(self.results.get, True, 5)).get("error")
                except queue.Empty:
                    error = f"exit code {self.proc.exitcode}"
                raise BenchError(f"the other agents' consoles failed: {error}")
            if time.monotonic() > deadline:
                raise BenchError("the other agents' consoles did not connect in time")

    async def stop(self) -> dict[str, Any]:
        self.stop_event.set()
        try:
            return await asyncio.to_thread(self.results.get, True, 60)
        finally:
            await asyncio.to_thread(self.proc.join, 10)
            if self.proc.is_alive():
                self.proc.kill()


# --- the run -----------------------------------------------------------------------------------
async def run_bench(target: Target, emails: list[str], cfg: Config) -> dict[str, Any]:
    from redis.asyncio import Redis

    redis = Redis.from_url(target.redis_url)
    store = ConversationStore(redis, prefix=target.prefix)
    watched = cfg.watched
    crowd = Crowd(target.base, emails[2 * watched + 1 :])
    try:
        t0 = time.perf_counter()
        addresses = [f"bench-{target.run}-{i}" for i in range(cfg.waiting + watched)]
        if cfg.seed == "redis":
            await seed_in_redis(store, target.secret, addresses)
        else:
            await seed_through_rasa(target.base, target.secret, addresses)
        seed_s = time.perf_counter() - t0
        widgets = await open_widgets(target, watched)
        await crowd.start()
        desk = await set_up_desk(target, store, emails[: 2 * watched + 1], addresses[cfg.waiting :], widgets)
        try:
            report = await phases(cfg, desk, target)
            mine = console_counts(desk.consoles)
        finally:
            await desk.close()
    finally:
        others = await crowd.stop() if crowd.proc.is_alive() else {}
        await redis.aclose()
    seeded = SEEDED[cfg.seed] + f", {seed_s:.1f} s"
    return assemble(cfg, report, seeded, mine, others)


SEEDED = {
    "redis": "directly in Redis (ConversationStore ensure/append/set_owner, the gateway's key derivation)",
    "rasa": "through the gateway and Rasa (POST /api/messages: the patient asks for a person)",
}


def assemble(
    cfg: Config, report: dict[str, Any], seeded: str, mine: dict[str, int], others: dict[str, int]
) -> dict[str, Any]:
    quiet = report.pop("quiet_desk")
    busy = report.get("busy_desk", {})
    p95s = [r[k]["p95_ms"] for r in (quiet, busy) if r for k in ("patient_to_console_ms", "reply_to_widget_ms")]
    totals = {k: mine.get(k, 0) + others.get(k, 0) for k in ("connected", "queue_fetches", "desk_events", "errors")}
    return {
        "agents_connected": totals["connected"],
        "conversations_waiting": quiet.pop("conversations_waiting"),
        "seeded": seeded,
        **quiet,
        **report,
        "consoles": {k: v for k, v in totals.items() if k != "connected"},
        "target_p95_ms": TARGET_P95_MS,
        "target_met": bool(p95s) and max(p95s) <= TARGET_P95_MS,
        "samples_per_figure": cfg.samples,
    }


def make_accounts(stack: Stack, run: str, count: int):
    """Agents in the stack's database; cheap Argon2 parameters, as a bench needs no strong hashes."""
    from argon2 import PasswordHasher

    from channels.db import make_engine
    from channels.staff.accounts import StaffAccounts

    engine = make_engine(stack.services["gateway"].env["DATABASE_URL"])
    accounts = StaffAccounts(engine, hasher=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    emails = [f"agent{i:02d}-{run}@bench.test" for i in range(count)]
    for i, email in enumerate(emails):
        accounts.add(email, "agent", PASSWORD, display_name=f"Bench agent {i:02d}")
    return accounts, emails


def forget(redis_url: str, prefix: str) -> int:
    """Remove what the run left in Redis: its prefix's keys and Rasa's trackers of its conversations."""
    import redis

    r = redis.Redis.from_url(redis_url)
    keys = [k.decode() for k in r.scan_iter(match=f"{prefix}:*", count=1000)]
    conv = f"{prefix}:conv:"
    keys += [
        f"{RASA_KEY_PREFIX}:{kind}:{k[len(conv) :]}" for k in keys if k.startswith(conv) for kind in ("tracker", "lock")
    ]
    for start in range(0, len(keys), 500):
        r.delete(*keys[start : start + 500])
    r.close()
    return len(keys)


def main() -> None:
    cfg = Config.from_env()
    root = find_root()
    run = uuid.uuid4().hex[:8]
    prefix = f"bench-staff-{run}"
    unlimited = "1000000/minute"  # the bench measures latency, not the limits
    stack = Stack(
        root,
        gateway_port=int(os.environ.get("BENCH_PORT", "0")) or free_port(),
        redis_url=os.environ.get("REDIS_URL") or None,
        var=root / "var" / "bench-staff",
        extra_env={
            "REDIS_KEY_PREFIX": prefix,
            "RATE_LIMIT_CLIENT": unlimited,
            "RATE_LIMIT_CONVERSATION": unlimited,
            "STAFF_LOGIN_RATE_LIMIT": unlimited,
        },
    )
    try:
        stack.start()
        stack.wait_ready(120)
        target = Target(
            stack.gateway_url, stack.secret, stack.redis_url, prefix, run, stack.services["gateway"].proc.pid
        )
        accounts, emails = make_accounts(stack, run, cfg.agents)
        try:
            report = asyncio.run(run_bench(target, emails, cfg))
        finally:
            for email in emails:
                accounts.disable(email)
            accounts.engine.dispose()
        print(json.dumps({"staff_console": report}, indent=2))
    finally:
        if stack.redis_url:
            with contextlib.suppress(Exception):
                forget(stack.redis_url, prefix)
        stack.stop()


if __name__ == "__main__":
    main()
