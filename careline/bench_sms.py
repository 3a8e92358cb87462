"""`make bench` (SMS part): 200 conversations sending 5 messages each, all through signed Twilio
webhooks into the gateway, replies sent through the real `twilio` library to the local stand-in.

Prints JSON: every message answered exactly once (by the inbound MessageSid recorded with each
send), webhook response time p50/p95, and reply latency (webhook accepted → first reply part
accepted by the stand-in) p50/p95, plus throughput.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from careline.stats import summary
from careline.supervisor import Stack, find_root, free_port

MESSAGES = ["hi", "are you open saturday", "do you take medicaid", "where do I park", "thanks"]


def main() -> None:
    root = find_root()
    sys.path.insert(0, str(root))
    import httpx

    from tests.twilio_standin import TwilioStandIn, sign

    conversations = int(os.environ.get("BENCH_SMS_CONVERSATIONS", "200"))
    standin = TwilioStandIn(callback_delay=0.05).start()
    port = free_port()
    var = root / "var" / "bench-sms"
    stack = Stack(root, gateway_port=port, redis_url=os.environ.get("REDIS_URL") or None, var=var, extra_env={
        "TWILIO_ACCOUNT_SID": standin.account_sid, "TWILIO_AUTH_TOKEN": standin.auth_token,
        "TWILIO_PHONE_NUMBER": standin.phone_number, "TWILIO_API_BASE_URL": standin.base_url,
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}", "SMS_SHARDS": os.environ.get("SMS_SHARDS", "16")})
    webhook = f"{stack.gateway_url}/sms/twilio"
    sent_at: dict[str, float] = {}
    webhook_ms: list[float] = []
    lock = threading.Lock()
    try:
        stack.start()
        stack.wait_ready(120)

        local = threading.local()

        def post(number: str, body: str, sid: str):
            """Twilio's inbound webhook, signed; one keep-alive client per thread, as a real
            sender would have (a new client per request would time the client, not the gateway)."""
            if not hasattr(local, "http"):
                # shorter than the server's keep-alive (uvicorn: 5 s), so an idle connection is never reused late
                local.http = httpx.Client(timeout=60, trust_env=False, limits=httpx.Limits(keepalive_expiry=2))
            params = {"MessageSid": sid, "SmsSid": sid, "AccountSid": standin.account_sid, "From": number,
                      "To": standin.phone_number, "Body": body, "NumMedia": "0", "NumSegments": "1",
                      "ApiVersion": "2010-04-01"}
            return local.http.post(webhook, data=params,
                                   headers={"X-Twilio-Signature": sign(standin.auth_token, webhook, params)})

        def conversation(n: int) -> None:
            number = f"+1555{n:07d}"
            for body in MESSAGES:
                sid = "SM" + os.urandom(16).hex()
                start = time.perf_counter()
                resp = post(number, body, sid)
                elapsed = (time.perf_counter() - start) * 1000
                assert resp.status_code == 200, resp.status_code
                with lock:
                    webhook_ms.append(elapsed)
                    sent_at[sid] = time.time()
                # a patient waits for the answer before the next message
                deadline = time.monotonic() + 120
                while time.monotonic() < deadline:
                    if any(m.to == number for m in standin.messages(to=number)
                           if m.time >= sent_at[sid]):
                        break
                    time.sleep(0.05)

        wall = time.perf_counter()
        with ThreadPoolExecutor(max_workers=int(os.environ.get("BENCH_SMS_CONCURRENCY", "50"))) as pool:
            list(pool.map(conversation, range(conversations)))
        wall = time.perf_counter() - wall
        time.sleep(3)  # late duplicates would show up here

        from collections import Counter

        from sqlalchemy import create_engine, text
        with create_engine(f"sqlite:///{var / 'careline.db'}").connect() as conn:
            sends = conn.execute(text("select inbound_sid, message_sid from sms_delivery "
                                      "where message_sid is not null order by id")).all()
        parts = Counter(inbound for inbound, _ in sends)  # a repeated turn would show up as extra parts
        answered = set(parts)
        by_sid = {m.sid: m for m in standin.messages()}
        first_part_times: dict[str, float] = {}
        for inbound, message_sid in sends:
            if inbound not in first_part_times and message_sid in by_sid:
                first_part_times[inbound] = by_sid[message_sid].time
        reply_ms = [(first_part_times[s] - t) * 1000 for s, t in sent_at.items() if s in first_part_times]
        report = {
            "conversations": conversations, "messages": len(sent_at),
            "answered": len(answered & set(sent_at)), "unanswered": len(set(sent_at) - answered),
            "parts_per_message": {"min": min(parts.values(), default=0), "max": max(parts.values(), default=0)},
            "webhook_response_ms": summary(webhook_ms), "reply_latency_ms": summary(reply_ms),
            "wall_seconds": round(wall, 1), "messages_per_second": round(len(sent_at) / wall, 1),
            "sms_parts_sent": len(standin.messages()),
        }
        print(json.dumps({"sms_load": report}, indent=2))
    finally:
        stack.stop()
        standin.stop()


if __name__ == "__main__":
    main()
