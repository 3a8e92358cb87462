"""SMS over Twilio through the whole stack: real signed webhooks from the Twilio stand-in, the real
`twilio` library sending replies to it, Redis streams, SQL consent and delivery records, Rasa."""

import os
import random
import signal
import time

import httpx
import pytest
from sqlalchemy import create_engine
from sqlalchemy import text as sql

from channels.pseudonym import conversation_key
from channels.sms_text import segments

pytestmark = pytest.mark.stack


@pytest.fixture
def number():
    return "+1555" + "".join(random.choice("0123456789") for _ in range(7))


def webhook(stack):
    return f"{stack.gateway_url}/sms/twilio"


def send(twilio, stack, number, body, **kw):
    resp = twilio.send_inbound(webhook(stack), number, body, **kw)
    assert resp.status_code == 200, resp.text
    assert "<Response></Response>" in resp.text  # empty TwiML: the reply goes through the REST API
    return resp


def replies(twilio, number, count, timeout=30):
    return [m.body for m in twilio.wait_for(count, to=number, timeout=timeout)]


def settle(twilio, number, seconds=2.0):
    """Wait until nothing more arrives for this number for `seconds`."""
    last, seen = time.monotonic(), len(twilio.messages(to=number))
    while time.monotonic() - last < seconds:
        time.sleep(0.2)
        now = len(twilio.messages(to=number))
        if now != seen:
            seen, last = now, time.monotonic()
    return [m.body for m in twilio.messages(to=number)]


def converse(twilio, stack, number, body, seconds=1.5, **kw):
    """Send one message; return the parts that arrive for it (one reply may be several SMS)."""
    before = len(twilio.messages(to=number))
    send(twilio, stack, number, body, **kw)
    twilio.wait_for(before + 1, to=number, timeout=30)
    return settle(twilio, number, seconds)[before:]


def db(stack):
    return create_engine(f"sqlite:///{stack.var / 'careline.db'}")


def test_signed_webhook_is_answered(twilio, stack, number):
    resp = send(twilio, stack, number, "what are your hours on saturday")
    assert resp.elapsed.total_seconds() < 1.0
    body = replies(twilio, number, 1)[0]
    assert "Saturday" in body


def test_wrong_or_missing_signature_is_refused(twilio, stack, number):
    params = {
        "MessageSid": "SM" + "1" * 32,
        "From": number,
        "To": twilio.phone_number,
        "Body": "hello",
        "AccountSid": twilio.account_sid,
    }
    missing = httpx.post(webhook(stack), data=params)
    wrong = httpx.post(webhook(stack), data=params, headers={"X-Twilio-Signature": "bm90IGEgc2lnbmF0dXJl"})
    assert missing.status_code == 403 and wrong.status_code == 403
    # signed for another URL (a forged host): refused too
    other = twilio.send_inbound(webhook(stack), number, "hello", public_url="https://evil.example/sms/twilio")
    assert other.status_code == 403
    assert settle(twilio, number, 1.5) == []
    log = (stack.logs / "gateway.log").read_text(errors="replace")
    assert "rejected" in log and number[2:] not in log and "hello" not in log


def test_another_account_or_another_number_is_refused(twilio, stack, number):
    """Signed with the right token (Twilio signs every account's webhooks the same way), but
    from another AccountSid, or to a number that is not the clinic's: 403, nothing queued."""
    other_account = twilio.send_inbound(webhook(stack), number, "hello there", extra={"AccountSid": "AC" + "9" * 32})
    other_number = twilio.send_inbound(webhook(stack), number, "hello there", to="+15005550199")
    assert other_account.status_code == 403 and other_number.status_code == 403
    assert settle(twilio, number, 1.5) == []
    log = (stack.logs / "gateway.log").read_text(errors="replace")
    assert "another account" in log and "not one of our numbers" in log
    assert number[2:] not in log and "hello there" not in log


def test_an_oversize_body_is_refused_before_it_is_read(twilio, stack, number):
    big = {
        "MessageSid": "SM" + "2" * 32,
        "From": number,
        "To": twilio.phone_number,
        "Body": "x" * 100_000,
        "AccountSid": twilio.account_sid,
    }
    declared = httpx.post(webhook(stack), data=big, headers={"X-Twilio-Signature": "x"})
    assert declared.status_code == 413

    def chunks():  # no Content-Length: the cap counts what arrives
        yield b"Body="
        for _ in range(100):
            yield b"x" * 1000

    streamed = httpx.post(
        webhook(stack),
        content=chunks(),
        headers={"X-Twilio-Signature": "x", "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert streamed.status_code == 413
    assert settle(twilio, number, 1.0) == []


def test_the_same_message_sid_five_times_gets_one_reply(twilio, stack, number):
    sid = "SM" + "".join(random.choice("0123456789abcdef") for _ in range(32))
    first = converse(twilio, stack, number, "what are your hours on saturday", message_sid=sid)
    for _ in range(4):
        send(twilio, stack, number, "what are your hours on saturday", message_sid=sid)
    assert settle(twilio, number) == first, "a retried webhook never produces a second reply"
    assert sum("Saturday" in b for b in first) == 1


def test_twenty_messages_from_one_number_are_answered_in_order(twilio, stack, number):
    import json

    import redis

    texts = [f"hi {i}" if i % 2 else f"thanks {i}" for i in range(20)]
    for text in texts:
        send(twilio, stack, number, text)
    key = conversation_key(stack.secret, "sms", number)
    r = redis.Redis.from_url(stack.redis_url)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        items = [json.loads(x) for x in r.lrange(f"careline:transcript:{key}", 0, -1)]
        if sum(i["role"] == "user" for i in items) == 20 and items[-1]["role"] != "user":
            break
        time.sleep(0.5)
    users = [i["text"] for i in items if i["role"] == "user"]
    assert users == texts, "handled in the order received"
    # every message answered before the next one was read: user, bot..., user, bot...
    roles = [i["role"] for i in items]
    assert all(roles[i + 1] != "user" for i, role in enumerate(roles[:-1]) if role == "user")
    assert roles[-1] != "user"
    settle(twilio, number)
    assert len(twilio.messages(to=number)) >= 20


def test_stop_then_nothing_more_then_start_resumes(twilio, stack, number):
    confirmation = " ".join(converse(twilio, stack, number, " Stop "))
    assert "unsubscribed" in confirmation.lower() and "START" in confirmation
    count = len(twilio.messages(to=number))
    send(twilio, stack, number, "what are your hours on saturday")
    assert len(settle(twilio, number, 3)) == count, "nothing is sent after STOP"
    assert "subscribed" in " ".join(converse(twilio, stack, number, "START")).lower()
    assert "Saturday" in " ".join(converse(twilio, stack, number, "what are your hours on saturday"))
    with db(stack).connect() as conn:
        rows = conn.execute(
            sql("select status, source from sms_consent where conversation = :c"),
            {"c": conversation_key(stack.secret, "sms", number)},
        ).all()
    assert rows == [("opted_in", "keyword")]


def test_help_gets_a_compliant_reply(twilio, stack, number):
    body = " ".join(converse(twilio, stack, number, "help"))
    assert "Maplewood" in body and "STOP" in body and "911" in body and "555" in body


def test_free_text_stop_texting_me_asks_to_confirm(twilio, stack, number):
    body = " ".join(converse(twilio, stack, number, "pls stop texting me"))
    assert "Reply STOP" in body
    assert "Saturday" in " ".join(converse(twilio, stack, number, "what are your hours on saturday")), (
        "not opted out by free text"
    )


def test_a_numbered_reply_picks_the_option(twilio, stack, number):
    greeting = " ".join(converse(twilio, stack, number, "hi"))
    assert "Reply 1 for" in greeting and "/" not in greeting.split("Reply 1 for")[1].split(",")[0]
    options = greeting.split("Reply ")[1]
    person = [part for part in options.replace(".", ",").split(",") if "person" in part.lower()][0]
    digit = [c for c in person if c.isdigit()][0]
    assert "member of our team" in " ".join(converse(twilio, stack, number, digit))


def test_replies_are_plain_gsm7_and_each_part_fits_a_segment(twilio, stack, number):
    send(twilio, stack, number, "what is sickle cell disease")
    for body in settle(twilio, number):
        encoding, count = segments(body)
        assert count == 1, (encoding, len(body))
        assert "**" not in body and "<" not in body


def test_a_long_answer_comes_a_page_a_turn_each_with_its_source(twilio, stack, number):
    turns = [converse(twilio, stack, number, "what is sickle cell disease")]
    while " ".join(turns[-1]).endswith("Reply MORE for more.") and len(turns) < 6:
        turns.append(converse(twilio, stack, number, "MORE"))
    assert len(turns) > 1
    for parts in turns:
        assert sum(len(p) for p in parts) <= 320 and "Source: " in " ".join(parts)
    assert len({" ".join(parts) for parts in turns}) == len(turns)  # every MORE brings a new page


def test_asking_for_the_rest_in_words_gets_the_next_page(twilio, stack, number):
    """ "what else?" is not the MORE keyword: the assistant reads it (ask_more) and asks the gateway for
    the next kept page; with no page kept, it says it has nothing more."""
    first = converse(twilio, stack, number, "what is sickle cell disease")
    assert " ".join(first).endswith("Reply MORE for more.")
    second = converse(twilio, stack, number, "what else?")
    assert "Source: " in " ".join(second) and second != first
    assert sum(len(p) for p in second) <= 320
    while " ".join(second).endswith("Reply MORE for more."):
        second = converse(twilio, stack, number, "MORE")
    last = " ".join(converse(twilio, stack, number, "what else?"))
    assert "Source: " not in last and last  # nothing kept: the assistant's own answer, never silence


def test_crisis_message_over_sms(twilio, stack, number):
    body = " ".join(converse(twilio, stack, number, "i dont want to wake up tomorrow"))
    assert "988" in body


def test_a_crisis_is_answered_even_in_a_stop_texting_or_over_long_message(twilio, stack, number):
    body = " ".join(converse(twilio, stack, number, "stop texting me i want to kill myself"))
    assert "988" in body and "Reply STOP to unsubscribe" not in body
    long = "my day was long and " * 120 + "i am going to kill myself tonight"
    body = " ".join(converse(twilio, stack, number, long))
    assert "988" in body and "too long" not in body


def test_status_callbacks_are_verified_and_recorded(twilio, stack, number):
    send(twilio, stack, number, "what are your hours on saturday")
    sid = twilio.wait_for(1, to=number)[0].sid
    deadline = time.monotonic() + 10
    status = None
    while time.monotonic() < deadline and status != "delivered":
        with db(stack).connect() as conn:
            row = conn.execute(sql("select status from sms_delivery where message_sid = :s"), {"s": sid}).first()
        status = row[0] if row else None
        time.sleep(0.2)
    assert status == "delivered"
    forged = httpx.post(f"{stack.gateway_url}/sms/twilio/status", data={"MessageSid": sid, "MessageStatus": "failed"})
    assert forged.status_code == 403


def test_malformed_requests_get_clear_answers(twilio, stack, number):
    no_from = twilio.send_inbound(webhook(stack), number, "hello", extra={"From": None})
    assert no_from.status_code == 400 and "From" in no_from.text
    media = converse(
        twilio,
        stack,
        number,
        "",
        extra={"NumMedia": "1", "MediaUrl0": "https://example.com/a.jpg", "MediaContentType0": "image/jpeg"},
    )
    assert "only read text" in " ".join(media)
    assert "too long" in " ".join(converse(twilio, stack, number, "x" * 2500))
    assert "Saturday" in " ".join(converse(twilio, stack, number, "what are your hours on saturday")), (
        "the worker survived"
    )


def test_rate_limited_sends_are_retried(twilio, stack, number):
    twilio.fail_next(2, status=429)
    send(twilio, stack, number, "what are your hours on saturday")
    assert "Saturday" in replies(twilio, number, 1, timeout=30)[0]


def test_error_21610_is_recorded_as_opt_out(twilio, stack, number):
    twilio.unsubscribe(number)
    send(twilio, stack, number, "what are your hours on saturday")
    key = conversation_key(stack.secret, "sms", number)
    deadline = time.monotonic() + 15
    row = None
    while time.monotonic() < deadline and row is None:
        with db(stack).connect() as conn:
            row = conn.execute(
                sql("select status, source from sms_consent where conversation = :c"), {"c": key}
            ).first()
        time.sleep(0.2)
    assert tuple(row) == ("opted_out", "twilio_21610")
    twilio.resubscribe(number)


def test_stop_wins_over_a_turn_in_flight(twilio, stack, number):
    rasa = stack.services["rasa"].proc
    os.killpg(rasa.pid, signal.SIGSTOP)
    try:
        send(twilio, stack, number, "what are your hours on saturday")
        time.sleep(0.5)
        send(twilio, stack, number, "STOP")
    finally:
        os.killpg(rasa.pid, signal.SIGCONT)
    bodies = settle(twilio, number, 4)
    assert "unsubscribed" in " ".join(bodies).lower()
    assert not any("Saturday" in b for b in bodies), "the answer in flight was not sent after STOP"


def test_worker_killed_mid_turn_answers_once_after_restart(twilio, stack, number):
    rasa = stack.services["rasa"].proc
    os.killpg(rasa.pid, signal.SIGSTOP)
    try:
        send(twilio, stack, number, "what are your hours on saturday")
        time.sleep(1.0)  # the turn is waiting on Rasa
        stack.kill("gateway")
    finally:
        os.killpg(rasa.pid, signal.SIGCONT)
    assert twilio.messages(to=number) == []
    stack.start_service("gateway")
    stack.wait_ready(60)
    # the dead process's shard lease expires (10 s); its pending entry is taken at once, since
    # its heartbeat is gone too, and answered once
    twilio.wait_for(1, to=number, timeout=45)
    bodies = settle(twilio, number, 4)
    assert sum("Saturday" in b for b in bodies) == 1, bodies
