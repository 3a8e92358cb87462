"""`make bench` (SMS part): two gateway replicas on one Redis behind a load balancer, 200
patients texting 5 messages each (50 at a time; messages 2, 3 and 4 in a burst 0.3-1 s apart,
otherwise waiting for the answer), every message a signed Twilio webhook, replies sent through
the real `twilio` library to the local stand-in. Midway, one replica is killed (SIGKILL); the
other takes its shards over.

Prints JSON: messages answered, duplicates (a part sent twice for one message), out-of-order
(a conversation's answers arriving in another order than its messages), the shards taken over
and how long until they answered again, webhook response time and reply latency (webhook → first
reply part accepted by the stand-in) p50/p95. `run_failover` is also what
tests/integration/test_sms_failover.py drives and asserts on.
"""

from __future__ import annotations

import json
import os
import random
import re
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from careline.stats import summary
from careline.supervisor import Stack, find_root, free_port

MESSAGES = ["hi", "are you open saturday", "do you take medicaid", "where do I park", "thanks"]
# After these messages the patient texts again at once (0.3-1 s later) instead of waiting for the answer.
DOUBLE_TEXT = {1, 2}


@dataclass
class Posted:
    sid: str
    number: str
    index: int  # its place in the conversation
    at: float  # time.time() before the webhook
    webhook_ms: float
    gateway: str
    twiml_reply: bool  # answered in the webhook's TwiML (the state stores failed)


class LoadBalancer:
    """Sends each signed webhook to a live replica, as a load balancer in front of them would. A
    replica that fails the connection is taken out and the webhook sent again to another one with
    the same MessageSid (Twilio retries a failed connection)."""

    def __init__(self, standin, gateways: dict[str, str], public_url: str):
        import httpx

        self.httpx = httpx
        self.standin = standin
        self.gateways = dict(gateways)
        self.public_url = public_url.rstrip("/") + "/sms/twilio"  # the URL Twilio signs
        self.down: set[str] = set()
        self.retried = 0
        self._lock = threading.Lock()
        self._local = threading.local()

    def mark_down(self, name: str) -> None:
        with self._lock:
            self.down.add(name)

    def post(self, number: str, body: str, sid: str):
        from careline.standins.twilio_api import sign

        if not hasattr(self._local, "http"):
            # shorter than the server's keep-alive (uvicorn: 5 s), so an idle connection is never reused late
            self._local.http = self.httpx.Client(
                timeout=60, trust_env=False, limits=self.httpx.Limits(keepalive_expiry=2)
            )
        params = {
            "MessageSid": sid,
            "SmsSid": sid,
            "AccountSid": self.standin.account_sid,
            "From": number,
            "To": self.standin.phone_number,
            "Body": body,
            "NumMedia": "0",
            "NumSegments": "1",
            "ApiVersion": "2010-04-01",
        }
        headers = {"X-Twilio-Signature": sign(self.standin.auth_token, self.public_url, params)}
        for _ in range(10):
            with self._lock:
                live = [n for n in self.gateways if n not in self.down]
            name = random.choice(live)
            try:
                return name, self._local.http.post(f"{self.gateways[name]}/sms/twilio", data=params, headers=headers)
            except self.httpx.TransportError:
                self.mark_down(name)
                with self._lock:
                    self.retried += 1
        raise RuntimeError("no gateway answered")


@dataclass
class _Load:
    """The patients: each conversation texts MESSAGES through the balancer, and the replica
    `kill_name` is killed once half of all the messages were posted."""

    standin: Any
    balancer: LoadBalancer
    redis: Any
    total: int
    kill: Callable[[], None] | None
    kill_name: str | None
    kill_pid: int | None
    prefix: str
    shards: int
    posted: dict[str, Posted] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    killed_at: list[float] = field(default_factory=list)
    taken_over: list[int] = field(default_factory=list)
    run: str = field(default_factory=lambda: f"{random.randrange(10**4):04d}")

    def maybe_kill(self) -> None:
        if self.kill is None or self.killed_at:
            return
        with self.lock:
            if self.killed_at or len(self.posted) < self.total // 2:
                return
            owners = {i: (self.redis.get(f"{self.prefix}:sms:lease:{i}") or b"").decode() for i in range(self.shards)}
            self.taken_over.extend(i for i, owner in owners.items() if self.kill_pid and f"-{self.kill_pid}-" in owner)
            self.kill()
            self.killed_at.append(time.time())
        self.balancer.mark_down(self.kill_name)

    def conversation(self, n: int) -> None:
        number = f"+1555{self.run}{n:03d}"
        for index, body in enumerate(MESSAGES):
            sid = "SM" + os.urandom(16).hex()
            start, at = time.perf_counter(), time.time()
            name, resp = self.balancer.post(number, body, sid)
            assert resp.status_code == 200, resp.status_code
            with self.lock:
                self.posted[sid] = Posted(
                    sid, number, index, at, (time.perf_counter() - start) * 1000, name, "<Message>" in resp.text
                )
            self.maybe_kill()
            if index in DOUBLE_TEXT:  # the next one follows at once, before this one is answered
                time.sleep(random.uniform(0.3, 1.0))
                continue
            deadline = time.monotonic() + 180  # else the patient waits for an answer
            while time.monotonic() < deadline and not any(m.time >= at for m in self.standin.messages(to=number)):
                time.sleep(0.2)


def run_failover(
    standin,
    gateways: dict[str, str],
    public_url: str,
    *,
    kill: Callable[[], None] | None,
    kill_name: str | None,
    kill_pid: int | None,
    redis_url: str,
    database_url: str,
    secret: str,
    conversations: int = 200,
    concurrency: int = 50,
    prefix: str = "careline",
    shards: int = 16,
    timeout: float = 600,
) -> dict:
    """Drive the load, kill `kill_name` (pid `kill_pid`) when half the messages were sent, wait
    until every message is answered (or `timeout`), and measure."""
    import redis
    from sqlalchemy import create_engine

    balancer = LoadBalancer(standin, gateways, public_url)
    load = _Load(
        standin,
        balancer,
        redis.Redis.from_url(redis_url),
        total=conversations * len(MESSAGES),
        kill=kill,
        kill_name=kill_name,
        kill_pid=kill_pid,
        prefix=prefix,
        shards=shards,
    )
    engine = create_engine(database_url)
    wall = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(load.conversation, range(conversations)))
    sending = time.perf_counter() - wall
    _wait_until_answered(engine, load.posted, timeout)
    wall = time.perf_counter() - wall
    time.sleep(3)  # late duplicates would show up here
    messages = len(load.posted)
    return {
        "gateways": len(gateways),
        "conversations": conversations,
        **_measure(standin, load, _delivered(engine), secret, shards),
        "offered_messages_per_second": round(messages / sending, 1),
        "wall_seconds": round(wall, 1),
        "messages_per_second": round(messages / wall, 1),
    }


def _wait_until_answered(engine, posted: dict[str, Posted], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answered = {inbound for inbound, _ in _delivered(engine)} | {s for s, p in posted.items() if p.twiml_reply}
        if set(posted) <= answered:
            return
        time.sleep(1)


def _measure(standin, load: _Load, rows, secret: str, shards: int) -> dict:
    """What reached the patients: answered, duplicated, out of order, recovery after the kill, latencies."""
    posted = load.posted
    by_number, unattributed = _parts_by_number(standin, posted, rows)
    parts = Counter((p.sid, m.body) for items in by_number.values() for m, p in items)
    out_of_order, conversations_out_of_order, first_part = _ordering(by_number)
    answered = set(first_part) | {s for s, p in posted.items() if p.twiml_reply}
    recovery = None
    if load.killed_at and load.taken_over:
        recovery = _time_to_recover(posted, first_part, load.killed_at[0], load.taken_over, secret, shards)
    return {
        "messages": len(posted),
        "answered": len(answered & set(posted)),
        "unanswered": len(set(posted) - answered),
        "answered_in_webhook_twiml": sum(p.twiml_reply for p in posted.values()),
        "duplicates": sum(count - 1 for count in parts.values()),
        "out_of_order": out_of_order,
        "conversations_out_of_order": conversations_out_of_order,
        "unattributed_parts": unattributed,
        "killed": load.kill_name if load.killed_at else None,
        "shards_taken_over": len(load.taken_over),
        "time_to_recover_s": recovery,
        "webhooks_retried_on_other_replica": load.balancer.retried,
        "webhook_response_ms": summary([p.webhook_ms for p in posted.values()]),
        "reply_latency_ms": summary([(first_part[s] - p.at) * 1000 for s, p in posted.items() if s in first_part]),
        "sms_parts_sent": sum(len(v) for v in by_number.values()),
    }


def _delivered(engine) -> list[tuple[str, str]]:
    """(inbound MessageSid, outbound part's MessageSid) of every part Twilio accepted."""
    from sqlalchemy import text

    with engine.connect() as conn:
        return [
            tuple(row)
            for row in conn.execute(
                text("select inbound_sid, message_sid from sms_delivery where message_sid is not null order by id")
            )
        ]


def _parts_by_number(standin, posted: dict[str, Posted], rows) -> tuple[dict[str, list], int]:
    """The parts the stand-in received for our patients, each with the message it answers, by
    number; and how many could not be traced to a message."""
    inbound_of = {message_sid: inbound for inbound, message_sid in rows}
    numbers = {p.number for p in posted.values()}
    by_number: dict[str, list] = defaultdict(list)
    unattributed = 0
    for m in standin.messages():
        if m.to not in numbers or m.direction != "outbound-api":
            continue
        inbound = inbound_of.get(m.sid)
        if inbound is None or inbound not in posted:
            unattributed += 1
            continue
        by_number[m.to].append((m, posted[inbound]))
    return by_number, unattributed


def _ordering(by_number: dict[str, list]) -> tuple[int, int, dict[str, float]]:
    """Answers out of order, conversations with any, and when each message's first part arrived."""
    out_of_order, conversations_out_of_order = 0, 0
    first_part: dict[str, float] = {}
    for items in by_number.values():
        order = [p.index for _, p in items]
        inversions = sum(1 for a, b in zip(order, order[1:], strict=False) if b < a)
        out_of_order += inversions
        conversations_out_of_order += bool(inversions)
        for m, p in items:
            first_part.setdefault(p.sid, m.time)
    return out_of_order, conversations_out_of_order, first_part


def _time_to_recover(
    posted: dict[str, Posted], first_part: dict[str, float], killed_at: float, taken_over, secret: str, shards: int
) -> float | None:
    """Seconds from the kill to the first answer on a shard the killed replica held, sent by the survivor."""
    from channels.pseudonym import conversation_key

    def shard(number: str) -> int:  # as SmsChannel.shard_of
        return int(conversation_key(secret, "sms", number).rsplit("-", 1)[-1][:8], 16) % shards

    after = [t for sid, t in first_part.items() if t > killed_at and shard(posted[sid].number) in taken_over]
    return round(min(after) - killed_at, 1) if after else None


def main() -> None:
    root = find_root()
    sys.path.insert(0, str(root))
    from careline.standins.twilio_api import TwilioStandIn

    conversations = int(os.environ.get("BENCH_SMS_CONVERSATIONS", "200"))
    shards = int(os.environ.get("SMS_SHARDS", "16"))
    standin = TwilioStandIn(callback_delay=0.05).start()
    port = free_port()
    var = root / "var" / "bench-sms"
    stack = Stack(
        root,
        gateway_port=port,
        redis_url=os.environ.get("REDIS_URL") or None,
        var=var,
        extra_env={**standin.gateway_env(f"http://127.0.0.1:{port}"), "SMS_SHARDS": str(shards)},
    )
    second = stack.add_gateway("gateway2")
    try:
        stack.start()
        stack.wait_ready(120)
        wait_for_shards_shared(stack.redis_url, shards)
        report = run_failover(
            standin,
            {"gateway": stack.gateway_url, "gateway2": second},
            stack.gateway_url,
            kill=lambda: stack.kill("gateway2"),
            kill_name="gateway2",
            kill_pid=stack.services["gateway2"].proc.pid,
            redis_url=stack.redis_url,
            database_url=stack.services["gateway"].env["DATABASE_URL"],
            secret=stack.secret,
            conversations=conversations,
            concurrency=int(os.environ.get("BENCH_SMS_CONCURRENCY", "50")),
            shards=shards,
        )
        print(json.dumps({"sms_failover": report}, indent=2))
    finally:
        stack.stop()
        standin.stop()


def wait_for_shards_shared(
    redis_url: str, shards: int, prefix: str = "careline", timeout: float = 60
) -> dict[str, int]:
    """Wait until every shard has a lease holder and the holders are more than one replica."""
    import redis

    r = redis.Redis.from_url(redis_url)
    deadline = time.monotonic() + timeout
    while True:
        owners = [(r.get(f"{prefix}:sms:lease:{i}") or b"").decode() for i in range(shards)]
        pids = Counter(re.sub(r"-[0-9a-f]+$", "", o) for o in owners if o)
        if all(owners) and len(pids) > 1:
            return dict(pids)
        if time.monotonic() > deadline:
            raise TimeoutError(f"shards not shared between replicas: {dict(pids)}")
        time.sleep(0.5)


if __name__ == "__main__":
    main()
