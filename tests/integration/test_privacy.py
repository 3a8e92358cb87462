"""Export and erasure through the running stack: a patient talks over the API and over SMS (the
Twilio stand-in), `careline patient export` returns what is held, `careline patient erase` removes
it, and then no Redis key or value and no SQL row holds the address, the message text, or the
pseudonym (outside the consent and audit records that are kept on purpose)."""

import json
import os
import random
import string
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select

from careline.cli import main
from channels.db import safety_audit, sms_consent
from channels.pseudonym import conversation_key
from tests.helpers import say
from tests.privacy.traces import redis_traces, sql_traces

pytestmark = pytest.mark.stack

ROOT = Path(__file__).resolve().parents[2]
KEPT = {"sms_consent", "safety_audit", "privacy_audit"}


def settle(twilio, number, seconds=2.0, timeout=60):
    deadline = time.monotonic() + timeout
    last, seen = time.monotonic(), len(twilio.messages(to=number))
    while time.monotonic() - last < seconds and time.monotonic() < deadline:
        time.sleep(0.2)
        now = len(twilio.messages(to=number))
        if now != seen:
            seen, last = now, time.monotonic()
    return [m.body for m in twilio.messages(to=number)]


def cli(capsys, *args) -> tuple[int, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return code, captured.out


def test_export_then_erase_leaves_no_trace(stack, api, twilio, monkeypatch, capsys):
    database_url = os.environ.get("DATABASE_URL") or f"sqlite:///{stack.var / 'careline.db'}"
    for name, value in (
        ("CONVERSATION_SECRET", stack.secret),
        ("DATA_ENCRYPTION_KEY", stack.data_key),
        ("REDIS_URL", stack.redis_url),
        ("DATABASE_URL", database_url),
    ):
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(ROOT)
    marker = "Zq" + "".join(random.choices(string.ascii_lowercase, k=10))
    sms_marker = "Zq" + "".join(random.choices(string.ascii_lowercase, k=10))

    # A patient on the API: a greeting with a name, a red flag (staff queue, safety audit), an idempotency key.
    cid = f"privacy-{uuid.uuid4().hex}"
    say(api, cid, f"hi, my name is {marker}", message_id="m-1")
    say(api, cid, "my dad is slurring his words")
    say(api, cid, f"{marker} here again, can I talk to a person")
    api_key = conversation_key(stack.secret, "api", cid)

    # A patient on SMS: a question, then STOP (the consent that must survive the erasure).
    number = "+1555" + "".join(random.choices(string.digits, k=7))
    twilio.send_inbound(f"{stack.gateway_url}/sms/twilio", number, f"hi, my name is {sms_marker}")
    twilio.wait_for(1, to=number, timeout=60)
    twilio.send_inbound(f"{stack.gateway_url}/sms/twilio", number, "STOP")
    twilio.wait_for(2, to=number, timeout=60)
    settle(twilio, number)
    sms_key = conversation_key(stack.secret, "sms", number)

    # Export returns what is held.
    code, out = cli(capsys, "patient", "export", "--channel", "api", "--address", cid)
    data = json.loads(out)
    assert code == 0 and data["found"] and data["conversation"] == api_key
    assert f"hi, my name is {marker}" in [m["text"] for m in data["transcript"]]
    assert any(e.get("text") == f"hi, my name is {marker}" for e in data["rasa_tracker"]["events"])
    assert data["staff_queue"] and data["sql"]["safety_audit"] and "m-1" in data["idempotency"]
    code, out = cli(capsys, "patient", "export", "--channel", "sms", "--address", number)
    data = json.loads(out)
    assert code == 0 and data["conversation_state"]["address"] == number
    assert f"hi, my name is {sms_marker}" in [m["text"] for m in data["transcript"]]
    assert data["sql"]["sms_delivery"] and data["sql"]["sms_consent"][0]["status"] == "opted_out"

    # Erase both.
    for channel, address in (("api", cid), ("sms", number)):
        code, out = cli(capsys, "patient", "erase", "--channel", channel, "--address", address, "--yes")
        result = json.loads(out)
        assert code == 0 and result["removed"]["redis_keys"] > 0 and "pseudonym only" in result["note"]

    # No trace anywhere: every Redis key and value, every SQL row.
    needles = [cid, api_key, marker, number, number[2:], sms_key, sms_marker]
    assert redis_traces(stack.redis_url, needles) == []
    engine = create_engine(database_url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        assert sql_traces(engine, [cid, marker, number, number[2:], sms_marker]) == []
        assert sql_traces(engine, [api_key, sms_key], skip_tables=KEPT) == []
        with engine.connect() as conn:  # what is kept, on purpose
            assert conn.execute(select(safety_audit).where(safety_audit.c.conversation == api_key)).first()
            consent = conn.execute(select(sms_consent).where(sms_consent.c.conversation == sms_key)).first()
            assert consent.status == "opted_out"
    finally:
        engine.dispose()

    # The STOP is still honoured after the erasure.
    before = len(twilio.messages(to=number))
    twilio.send_inbound(f"{stack.gateway_url}/sms/twilio", number, "hello again")
    assert len(settle(twilio, number, seconds=3.0)) == before


def test_retention_sweep_removes_an_expired_conversation_from_the_running_stack(stack, api, monkeypatch, capsys):
    """A conversation whose first message is older than RETENTION_DAYS: `careline retention sweep`
    removes it, Rasa's tracker included; a current one is untouched."""
    import redis

    database_url = os.environ.get("DATABASE_URL") or f"sqlite:///{stack.var / 'careline.db'}"
    for name, value in (
        ("CONVERSATION_SECRET", stack.secret),
        ("DATA_ENCRYPTION_KEY", stack.data_key),
        ("REDIS_URL", stack.redis_url),
        ("DATABASE_URL", database_url),
    ):
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(ROOT)
    marker = "Zq" + "".join(random.choices(string.ascii_lowercase, k=10))
    old_cid, new_cid = f"privacy-old-{uuid.uuid4().hex}", f"privacy-new-{uuid.uuid4().hex}"
    say(api, old_cid, f"hi, my name is {marker}")
    say(api, new_cid, "hi")
    old_key, new_key = (conversation_key(stack.secret, "api", c) for c in (old_cid, new_cid))
    r = redis.Redis.from_url(stack.redis_url)
    try:
        assert r.exists(f"careline:tracker:{old_key}"), "Rasa keeps its tracker under careline:tracker:"
        r.zadd("careline:retention", {old_key: time.time() - 31 * 24 * 3600})  # its first message, 31 days ago
        code, out = cli(capsys, "retention", "sweep")
        assert json.loads(out)["conversations"] >= 1
        assert redis_traces(stack.redis_url, [old_cid, old_key, marker]) == []
        assert (
            r.exists(f"careline:tracker:{new_key}", f"careline:conv:{new_key}", f"careline:transcript:{new_key}") == 3
        )
    finally:
        r.close()
