"""careline/bench_staff.py at a small scale through the whole running stack: the consoles log in and
open /staff/ws, the seeded conversations are the gateway's own (a patient's message to one reaches
the agent watching it), the widgets hand off through Rasa, and every sample arrives. Latency is not
asserted here (`make bench` reports it); that the bench measures what it says is."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from redis import Redis

from careline.bench_staff import Config, Target, make_accounts, run_bench
from channels.pseudonym import conversation_key

pytestmark = pytest.mark.stack


def tidy(redis_url: str, prefix: str, secret: str, run: str, count: int) -> None:
    """Take this run's API conversations out of the shared stack's queue (other tests read it)."""
    r = Redis.from_url(redis_url)
    addresses = [f"bench-{run}-{i}" for i in range(count)] + [f"bench-{run}-arrival-{i}" for i in range(200)]
    keys = [conversation_key(secret, "api", a) for a in addresses]
    r.zrem(f"{prefix}:staff:waiting", *keys)
    r.zrem(f"{prefix}:staff:assigned", *keys)
    r.delete(*[f"{prefix}:{kind}:{k}" for k in keys for kind in ("conv", "transcript")])
    r.close()


def test_the_staff_bench_measures_every_sample_through_the_stack(stack):
    config = Config(agents=6, waiting=20, samples=5, warmup=1, watched=2, arrivals_per_s=2.0)
    run = uuid.uuid4().hex[:8]
    prefix = stack.services["gateway"].env.get("REDIS_KEY_PREFIX", "careline")
    pid = stack.services["gateway"].proc.pid
    target = Target(stack.gateway_url, stack.secret, stack.redis_url, prefix, run, pid)
    accounts, emails = make_accounts(stack, run, config.agents)
    try:
        report = asyncio.run(run_bench(target, emails, config))
    finally:
        for email in emails:
            accounts.disable(email)
        accounts.engine.dispose()
        tidy(stack.redis_url, prefix, stack.secret, run, config.waiting + config.watched)
    assert report["agents_connected"] == 6  # five measuring, one in the child process
    assert report["conversations_waiting"] >= 20 and report["consoles"]["errors"] == 0
    busy = report["busy_desk"]
    for phase in (report, busy):
        for figure in ("patient_to_console_ms", "reply_to_widget_ms", "queue_fetch_ms"):
            assert phase[figure]["n"] == 5 and "lost" not in phase[figure], (figure, phase[figure])
    assert busy["handoffs_per_s"] > 0 and busy["claims_per_s"] > 0
    assert report["consoles"]["desk_events"] > 0 and report["consoles"]["queue_fetches"] > 0
    assert report["seeded"].startswith("directly in Redis")
