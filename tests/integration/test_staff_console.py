"""The staff side through the whole running stack (Redis, Rasa, actions, gateway, the Twilio
stand-in): a patient asks for a person, an agent logged in to the staff API claims, reads the
packet, replies over the patient's channel, and hands back; every staff endpoint refuses without a
session (401), a change without the CSRF token (403), and another agent's conversation (403);
every action is audited without message text. Two gateway processes: the patient on one, the
agent on the other. The browser version is tests/browser/test_staff_console.py."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from sqlalchemy import select

from channels.db import make_engine, staff_audit
from channels.pseudonym import conversation_key
from tests.helpers import STAFF_PASSWORD, staff_accounts

pytestmark = pytest.mark.stack

ASK_FOR_A_PERSON = "I want to talk to a real person please"


@pytest.fixture(scope="module")
def accounts(stack):
    return staff_accounts(stack, sam="agent", alex="agent", pat="supervisor")


@contextmanager
def staff_client(base_url: str, member) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=30) as client:
        resp = client.post("/staff/api/login", json={"email": member.email, "password": STAFF_PASSWORD})
        assert resp.status_code == 200, resp.text
        client.headers["X-CSRF-Token"] = resp.json()["csrf_token"]
        yield client


@pytest.fixture
def sam(stack, accounts):
    with staff_client(stack.gateway_url, accounts["sam"]) as client:
        yield client


@pytest.fixture
def alex(stack, accounts):
    with staff_client(stack.gateway_url, accounts["alex"]) as client:
        yield client


def patient_says(api: httpx.Client, conversation: str, text: str) -> dict:
    resp = api.post("/api/messages", json={"conversation_id": conversation, "text": text})
    assert resp.status_code == 200, resp.text
    return resp.json()


def handed_off(api: httpx.Client, conversation: str) -> str:
    """The patient asks for a person until the conversation waits for staff; its pseudonymous key."""
    reply = patient_says(api, conversation, ASK_FOR_A_PERSON)
    if reply["owner"] != "waiting_for_staff":
        reply = patient_says(api, conversation, "yes")
    assert reply["owner"] == "waiting_for_staff", reply
    return conversation_key(api.secret, "api", conversation)


@pytest.fixture
def api(stack):
    with httpx.Client(base_url=stack.gateway_url, timeout=60) as client:
        client.secret = stack.secret
        yield client


def waiting_ids(client: httpx.Client) -> list[str]:
    resp = client.get("/staff/api/queue")
    assert resp.status_code == 200, resp.text
    return [item["id"] for item in resp.json()["waiting"]]


def test_a_hand_off_is_claimed_answered_and_handed_back(api, sam, alex):
    conversation = f"staff-{uuid.uuid4().hex}"
    key = handed_off(api, conversation)
    assert key in waiting_ids(sam)
    view = sam.get(f"/staff/api/conversations/{key}").json()
    assert view["packet"]["reason"] == "request_human" and view["channel"] == "api"
    assert any(m["role"] == "user" and m["text"] == ASK_FOR_A_PERSON for m in view["transcript"])

    assert sam.post(f"/staff/api/conversations/{key}/claim").status_code == 200
    taken = alex.post(f"/staff/api/conversations/{key}/claim")
    assert taken.status_code == 409 and taken.json()["name"] == "Sam"
    assert alex.post(f"/staff/api/conversations/{key}/messages", json={"text": "hi"}).status_code == 403
    assert alex.get(f"/staff/api/conversations/{key}").status_code == 403  # a colleague's: not to read either
    assert key not in waiting_ids(sam)

    cursor = view["cursor"]
    sent = sam.post(f"/staff/api/conversations/{key}/messages", json={"text": "Hello, this is Sam."})
    assert sent.status_code == 200, sent.text
    polled = api.get("/api/messages", params={"conversation_id": conversation, "after": cursor}).json()
    assert polled["owner"] == "staff"
    said = [(m["role"], m["text"]) for m in polled["messages"]]
    assert ("staff", "Hello, this is Sam.") in said and said[0][0] == "system"  # "Sam ... has joined"
    assert all(m["cursor"] > cursor for m in polled["messages"])

    # While staff own it, the bot says nothing; the patient's message reaches the agent.
    assert patient_says(api, conversation, "thanks, it is about my prescription")["messages"] == []
    transcript = sam.get(f"/staff/api/conversations/{key}").json()["transcript"]
    assert transcript[-1] == transcript[-1] | {"role": "user", "text": "thanks, it is about my prescription"}
    assert sam.post(f"/staff/api/conversations/{key}/notes", json={"text": "wants a refill"}).status_code == 200

    assert sam.post(f"/staff/api/conversations/{key}/return-to-bot", json={}).status_code == 200
    after = patient_says(api, conversation, "what are your opening hours?")
    assert after["owner"] == "bot" and after["messages"], after
    # the private note never reached the patient
    everything = api.get("/api/messages", params={"conversation_id": conversation}).json()["messages"]
    assert all("refill" not in m["text"] for m in everything)
    # back with the assistant: no longer the agent's to read (minimum necessary), nor to annotate
    assert sam.get(f"/staff/api/conversations/{key}").status_code == 403
    assert sam.post(f"/staff/api/conversations/{key}/notes", json={"text": "late note"}).status_code == 403


def test_close_ends_it_and_the_next_message_reopens_to_the_bot(api, sam):
    conversation = f"staff-{uuid.uuid4().hex}"
    key = handed_off(api, conversation)
    sam.post(f"/staff/api/conversations/{key}/claim").raise_for_status()
    sam.post(f"/staff/api/conversations/{key}/close").raise_for_status()
    polled = api.get("/api/messages", params={"conversation_id": conversation}).json()
    assert polled["owner"] == "closed" and polled["messages"][-1]["role"] == "system"
    reply = patient_says(api, conversation, "hello again")
    assert reply["owner"] == "bot" and reply["messages"]


def test_an_emergency_jumps_the_queue(api, sam):
    normal = handed_off(api, f"staff-{uuid.uuid4().hex}")
    emergency_id = f"staff-{uuid.uuid4().hex}"
    reply = patient_says(api, emergency_id, "I have crushing chest pain and I can't breathe")
    assert reply["owner"] == "waiting_for_staff"
    emergency = conversation_key(api.secret, "api", emergency_id)
    queue = sam.get("/staff/api/queue").json()["waiting"]
    ids = [i["id"] for i in queue]
    assert ids.index(emergency) < ids.index(normal)
    assert next(i for i in queue if i["id"] == emergency)["priority"] == "emergency"


def test_every_staff_endpoint_needs_a_session_and_changes_need_the_csrf_token(stack, sam):
    key = "0" * 64
    reads = ["/staff/api/queue", "/staff/api/staff", "/staff/api/canned", "/staff/api/audit", "/staff/api/me"]
    reads.append(f"/staff/api/conversations/{key}")
    actions = ["claim", "release", "transfer", "messages", "typing", "notes", "return-to-bot", "close", "reveal"]
    writes = ["/staff/api/logout", "/staff/api/presence", "/staff/api/canned"]
    writes += [f"/staff/api/conversations/{key}/{a}" for a in actions]
    with httpx.Client(base_url=stack.gateway_url, timeout=10) as anonymous:
        assert all(anonymous.get(path).status_code == 401 for path in reads)
        assert all(anonymous.post(path, json={}).status_code == 401 for path in writes)
        assert anonymous.delete("/staff/api/canned/1").status_code == 401
    without_csrf = {k: v for k, v in sam.headers.items() if k.lower() != "x-csrf-token"}
    for path in writes[1:]:
        resp = httpx.post(f"{stack.gateway_url}{path}", json={}, cookies=sam.cookies, headers=without_csrf)
        assert resp.status_code == 403 and resp.json()["error"] == "csrf_failed", path


def test_only_a_supervisor_reads_the_audit_and_it_holds_no_text(stack, accounts, api, sam):
    key = handed_off(api, f"staff-{uuid.uuid4().hex}")
    sam.post(f"/staff/api/conversations/{key}/claim").raise_for_status()
    sam.post(f"/staff/api/conversations/{key}/messages", json={"text": "Secret words 4711"}).raise_for_status()
    sam.post(f"/staff/api/conversations/{key}/notes", json={"text": "private note 4712"}).raise_for_status()
    assert sam.get("/staff/api/audit").status_code == 403
    with staff_client(stack.gateway_url, accounts["pat"]) as pat:
        rows = pat.get("/staff/api/audit").json()["rows"]
        csv = pat.get("/staff/api/audit", params={"format": "csv"}).text
    mine = {r["action"] for r in rows if r["conversation"] == key and r["staff_id"] == accounts["sam"].id}
    assert {"open", "claim", "reply", "note"} <= mine or {"claim", "reply", "note"} <= mine
    assert "4711" not in csv and "4712" not in csv
    engine = make_engine(stack.services["gateway"].env["DATABASE_URL"])
    with engine.connect() as conn:
        stored = " ".join(str(v) for row in conn.execute(select(staff_audit)) for v in row)
    engine.dispose()
    assert "4711" not in stored and "4712" not in stored


def test_sms_reply_goes_to_the_patients_phone_and_not_after_stop(stack, twilio, sam):
    number = "+1555" + uuid.uuid4().int.__str__()[:7]
    webhook = f"{stack.gateway_url}/sms/twilio"
    twilio.send_inbound(webhook, number, ASK_FOR_A_PERSON)
    key = conversation_key(stack.secret, "sms", number)
    deadline = time.monotonic() + 30
    while key not in waiting_ids(sam):
        if time.monotonic() > deadline:
            twilio.send_inbound(webhook, number, "yes")
            deadline = time.monotonic() + 30
        time.sleep(0.3)
    view = sam.get(f"/staff/api/conversations/{key}").json()
    assert view["patient"]["number"].endswith(number[-4:]) and number not in str(view)
    sam.post(f"/staff/api/conversations/{key}/claim").raise_for_status()
    sam.post(f"/staff/api/conversations/{key}/messages", json={"text": "Hi, Sam from the clinic here."})
    deadline = time.monotonic() + 30
    while "Hi, Sam from the clinic here." not in [m.body for m in twilio.messages(to=number)]:
        assert time.monotonic() < deadline, [m.body for m in twilio.messages(to=number)]
        time.sleep(0.2)
    got = [m.body for m in twilio.messages(to=number)]
    assert any("Sam" in body and "joined" in body for body in got)
    twilio.send_inbound(webhook, number, "STOP")
    deadline = time.monotonic() + 15
    while not sam.get(f"/staff/api/conversations/{key}").json()["patient"]["opted_out"]:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    refused = sam.post(f"/staff/api/conversations/{key}/messages", json={"text": "are you there?"})
    assert refused.status_code == 409 and "opted out" in refused.json()["detail"]


def test_two_gateway_processes_patient_on_one_agent_on_the_other(stack, accounts):
    second = stack.add_gateway("gateway-staff")
    try:
        stack.start_service("gateway-staff")
        with (
            httpx.Client(base_url=stack.gateway_url, timeout=60) as api,
            staff_client(second, accounts["alex"]) as agent,
        ):
            api.secret = stack.secret
            conversation = f"staff-{uuid.uuid4().hex}"
            key = handed_off(api, conversation)
            assert key in waiting_ids(agent)
            agent.post(f"/staff/api/conversations/{key}/claim").raise_for_status()
            agent.post(f"/staff/api/conversations/{key}/messages", json={"text": "From the other side"})
            polled = api.get("/api/messages", params={"conversation_id": conversation}).json()["messages"]
            assert ("staff", "From the other side") in [(m["role"], m["text"]) for m in polled]
            patient_says(api, conversation, "got it, thanks")
            transcript = agent.get(f"/staff/api/conversations/{key}").json()["transcript"]
            assert transcript[-1]["text"] == "got it, thanks"
    finally:
        stack.stop(["gateway-staff"])
        del stack.services["gateway-staff"]


def test_a_red_flag_while_staff_hold_it_is_alerted_and_still_answered(api, sam):
    conversation = f"staff-{uuid.uuid4().hex}"
    key = handed_off(api, conversation)
    sam.post(f"/staff/api/conversations/{key}/claim").raise_for_status()
    reply = patient_says(api, conversation, "now I have crushing chest pain and I can't breathe")
    assert reply["owner"] == "staff" and "911" in " ".join(m["text"] for m in reply["messages"])
    (mine,) = [i for i in sam.get("/staff/api/queue").json()["assigned"] if i["id"] == key]
    assert mine["alert"] and mine["alert"].startswith("safety:")
    assert sam.get(f"/staff/api/conversations/{key}").json()["packet"]["alert"] == mine["alert"]


def test_a_retried_reply_is_sent_once(api, sam):
    conversation = f"staff-{uuid.uuid4().hex}"
    key = handed_off(api, conversation)
    sam.post(f"/staff/api/conversations/{key}/claim").raise_for_status()
    body = {"text": "Only once, please.", "client_message_id": "reply-1"}
    first = sam.post(f"/staff/api/conversations/{key}/messages", json=body)
    again = sam.post(f"/staff/api/conversations/{key}/messages", json=body)
    assert first.status_code == again.status_code == 200 and again.json()["duplicate"] is True
    assert again.json()["seq"] == first.json()["seq"]
    polled = api.get("/api/messages", params={"conversation_id": conversation}).json()["messages"]
    assert [m["text"] for m in polled].count("Only once, please.") == 1
    other = sam.post(f"/staff/api/conversations/{key}/messages", json={**body, "client_message_id": "reply-2"})
    assert other.status_code == 200 and other.json()["seq"] > first.json()["seq"]
