"""`make bench`: start the stack and print latency and memory figures as JSON.

Figures: gateway round trip (POST /api/messages → Rasa → action server → reply) for a response
turn and a custom-action turn, Rasa NLU parse alone, WebSocket round trip, and the resident
memory of each service. Medians and p95 over repeated runs: this machine is noisy.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

import httpx

from careline.stats import summary
from careline.supervisor import Stack, find_root, free_port


def rss_mib(pid: int) -> float:
    """Resident memory of a process and its children (same process group)."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(stat[2]) != pid and int(entry.name) != pid:  # stat[2] is the process group
                continue
            for line in (entry / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return round(total / 1024, 1)


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000


def main() -> None:
    root = find_root()
    n = int(os.environ.get("BENCH_N", "60"))
    stack = Stack(
        root,
        gateway_port=int(os.environ.get("BENCH_PORT", "0")) or free_port(),
        redis_url=os.environ.get("REDIS_URL") or None,
        # the benchmark is one client sending as fast as it can: it measures turns, not limits
        extra_env={"RATE_LIMIT_CLIENT": "1000000/minute", "RATE_LIMIT_CONVERSATION": "1000000/minute"},
    )
    t0 = time.perf_counter()
    stack.start()
    stack.wait_ready(60)
    startup_s = time.perf_counter() - t0
    try:
        results: dict = {"startup_s": round(startup_s, 1)}
        with httpx.Client(base_url=stack.gateway_url, timeout=60) as api:

            def turn(text: str):
                cid = f"bench-{uuid.uuid4().hex}"
                return lambda: api.post("/api/messages", json={"conversation_id": cid, "text": text}).raise_for_status()

            cold = timed(turn("hello"))
            for _ in range(5):
                turn("hello")()
            results["gateway_first_request_ms"] = round(cold, 1)
            results["gateway_greet_turn"] = summary([timed(turn("hello there")) for _ in range(n)])
            results["gateway_custom_action_turn"] = summary([timed(turn("can I speak to a person")) for _ in range(n)])
            params = {"token": stack.rasa_token}
            results["rasa_nlu_parse"] = summary(
                [
                    timed(
                        lambda: httpx.post(
                            f"{stack.rasa_url}/model/parse", json={"text": "do you take medicaid"}, params=params
                        ).raise_for_status()
                    )
                    for _ in range(n)
                ]
            )
        from websockets.sync.client import connect

        with connect(stack.gateway_url.replace("http://", "ws://") + "/ws") as ws:
            ws.send(json.dumps({"type": "hello", "conversation_token": None}))
            ws.recv(timeout=10)

            def ws_turn():
                ws.send(json.dumps({"type": "message", "text": "hello", "client_message_id": uuid.uuid4().hex}))
                while json.loads(ws.recv(timeout=60))["type"] != "message":
                    pass

            results["websocket_greet_turn"] = summary([timed(ws_turn) for _ in range(n)])
        results["rss_mib"] = {name: rss_mib(svc.proc.pid) for name, svc in stack.services.items()}
        print(json.dumps(results, indent=2))
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
