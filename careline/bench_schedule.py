"""`make bench` (scheduling part): booking-turn latency through the gateway, the race for slots,
and reminders sent per second.

- Booking turns: BENCH_SCHEDULE_CONVERSATIONS new patients (default 20, BENCH_SCHEDULE_CONCURRENCY
  at a time, default 5; and a quarter of them one at a time) book a check-up through POST
  /api/messages, the whole conversation: reason, new patient, "earliest", a slot, name, date of
  birth, phone, "yes". Every turn's latency is measured; the figure that matters is the booking
  turn (the "yes" that commits), and all turns of the flow. A slot taken by a concurrent patient
  ("someone has just taken that time") counts as a turn like any other and the patient picks again.
- The race: careline/scheduling/race.py, 50 patients for 10 slots on SQLite (and on PostgreSQL
  when BENCH_DATABASE_URL names one): booked, double-booked, seconds.
- Reminders: careline/bench_reminders.py (one worker, due reminders to the Twilio stand-in).

The stack has its own var/ (var/bench-schedule) and key prefix. Prints JSON: medians and p95.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import string
import time
import uuid
from typing import Any

import httpx

from careline.stats import summary
from careline.supervisor import Stack, find_root, free_port

BOOKING = [
    "I'd like to book a check-up",
    "No, I'm new",
    "earliest",
    "slot 1",
    "{name}",
    "03/14/1985",
    "(555) 555-{phone}",
    "yes, book it",
]


async def one_booking(api: httpx.AsyncClient, run: str, n: int, turns: dict[str, list[float]]) -> bool:
    conversation = f"bench-{run}-{n}"
    name = "Bench " + "".join(random.choice(string.ascii_lowercase) for _ in range(10)).capitalize()
    script = [t.format(name=name, phone=f"{random.randint(2000, 9999)}") for t in BOOKING]
    i = 0
    for _ in range(len(script) + 6):  # room for a slot taken by another patient: pick again
        if i >= len(script):
            break
        text = script[i]
        started = time.perf_counter()
        response = await api.post("/api/messages", json={"conversation_id": conversation, "text": text})
        elapsed = (time.perf_counter() - started) * 1000
        response.raise_for_status()
        body = " ".join(m.get("text") or "" for m in response.json()["messages"])
        turns["all"].append(elapsed)
        if i == len(script) - 1:
            turns["book"].append(elapsed)
            if "booked" in body:
                return True
            i = 3  # taken meanwhile: the offer came again
            continue
        if "just taken" in body:
            i = 3
            continue
        i += 1
    return False


async def run_bench(base: str, count: int, concurrency: int) -> dict[str, Any]:
    run = uuid.uuid4().hex[:6]
    turns: dict[str, list[float]] = {"all": [], "book": []}
    gate = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=base, timeout=60) as api:
        await one_booking(api, run + "w", 0, {"all": [], "book": []})  # warm-up

        async def guarded(n: int) -> bool:
            async with gate:
                return await one_booking(api, run, n, turns)

        booked = await asyncio.gather(*(guarded(n) for n in range(1, count + 1)))
    return {
        "conversations": count,
        "concurrency": concurrency,
        "booked": sum(booked),
        "booking_turn": summary(turns["book"]),
        "all_turns": summary(turns["all"]),
    }


def race_figures() -> dict[str, Any]:
    import tempfile

    from careline.scheduling.race import race
    from channels.db import make_engine

    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite:///{tmp}/race.db")
        out["sqlite"] = race(engine, clients=50, slots=10)
        engine.dispose()
    url = os.environ.get("BENCH_DATABASE_URL")
    if url:
        engine = make_engine(url)
        out["postgresql"] = race(engine, clients=50, slots=10)
        engine.dispose()
    return out


def main() -> None:
    root = find_root()
    count = int(os.environ.get("BENCH_SCHEDULE_CONVERSATIONS", "20"))
    concurrency = int(os.environ.get("BENCH_SCHEDULE_CONCURRENCY", "5"))
    unlimited = "1000000/minute"
    stack = Stack(
        root,
        gateway_port=int(os.environ.get("BENCH_PORT", "0")) or free_port(),
        redis_url=os.environ.get("REDIS_URL") or None,
        var=root / "var" / "bench-schedule",
        extra_env={
            "REDIS_KEY_PREFIX": f"bench-schedule-{uuid.uuid4().hex[:6]}",
            "RATE_LIMIT_CLIENT": unlimited,
            "RATE_LIMIT_CONVERSATION": unlimited,
        },
    )
    report: dict[str, Any] = {}
    try:
        stack.start()
        stack.wait_ready(120)
        report["booking_one_at_a_time"] = asyncio.run(run_bench(stack.gateway_url, max(5, count // 4), 1))
        report["booking"] = asyncio.run(run_bench(stack.gateway_url, count, concurrency))
    finally:
        stack.stop()
    report["race"] = race_figures()
    print(json.dumps({"scheduling": report}, indent=2))


if __name__ == "__main__":
    main()
