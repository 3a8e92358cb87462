"""Conversations through POST /api/messages against the real stack (Rasa, actions, Redis)."""

import httpx
import pytest
from redis import Redis

from tests.helpers import say, texts

pytestmark = pytest.mark.stack


def tracker(stack, api_conversation_id: str) -> list[dict]:
    from channels.pseudonym import conversation_key

    key = conversation_key(stack.secret, "api", api_conversation_id)
    resp = httpx.get(f"{stack.rasa_url}/conversations/{key}/tracker", params={"token": stack.rasa_token})
    resp.raise_for_status()
    return resp.json()["events"]


def owner_of(stack, api_conversation_id: str) -> str:
    from channels.pseudonym import conversation_key

    key = conversation_key(stack.secret, "api", api_conversation_id)
    value = Redis.from_url(stack.redis_url).hget(f"careline:conv:{key}", "owner")
    return value.decode() if value else None


def test_greeting_then_goodbye(api, conversation_id):
    reply = say(api, conversation_id, "hello there")
    assert reply["conversation_id"] == conversation_id
    assert "CareLine" in texts(reply)
    assert reply["messages"][0]["buttons"], "the greeting offers quick replies"
    assert "take care" in texts(say(api, conversation_id, "ok bye now")).lower()


def test_booking_offers_a_person_and_hands_over(api, conversation_id):
    reply = say(api, conversation_id, "i need to book an appointment with a doctor next week")
    titles = [b["title"] for m in reply["messages"] for b in m["buttons"]]
    assert "Talk to a person" in titles, texts(reply)
    reply = say(api, conversation_id, "talk to a person")
    assert "staff" in texts(reply).lower()
    assert reply["owner"] == "waiting_for_staff"


def test_stopping_a_scheduling_conversation_keeps_the_bot(api, conversation_id):
    say(api, conversation_id, "i need to cancel my appointment on friday")
    reply = say(api, conversation_id, "never mind")
    assert reply["owner"] == "bot"
    assert "help" in texts(reply).lower() and "nothing has been changed" in texts(reply).lower()


def test_request_human_hands_off_and_bot_goes_quiet(stack, api, conversation_id):
    say(api, conversation_id, "hi")
    reply = say(api, conversation_id, "can I talk to a real person please")
    assert reply["owner"] == "waiting_for_staff"
    assert owner_of(stack, conversation_id) == "waiting_for_staff"
    # While staff own it, the bot does not answer; the patient is told once that staff will reply.
    first = say(api, conversation_id, "hello?")
    assert [m["text"] for m in first["messages"]] and "team" in texts(first).lower()
    second = say(api, conversation_id, "are you there")
    assert second["messages"] == []
    # The summary for staff names the reason and carries no message text.
    from channels.pseudonym import conversation_key

    key = conversation_key(stack.secret, "api", conversation_id)
    info = Redis.from_url(stack.redis_url).hgetall(f"careline:conv:{key}")
    assert info[b"reason"] == b"request_human"
    assert b"real person" not in info[b"summary"]


def test_fallback_asks_to_rephrase_then_offers_a_person(stack, api, conversation_id):
    # "/nlu_fallback" is the intent itself (as a quick-reply payload would be): deterministic.
    first = say(api, conversation_id, "/nlu_fallback")
    assert "another way" in texts(first).lower()
    second = say(api, conversation_id, "/nlu_fallback")
    assert "staff" in texts(second).lower()
    assert "/request_human" in [b["payload"] for m in second["messages"] for b in m["buttons"]]
    assert say(api, conversation_id, "yes")["owner"] == "waiting_for_staff"
    actions = [e["name"] for e in tracker(stack, conversation_id) if e["event"] == "action"]
    assert actions.count("action_fallback") == 2, "one fallback per misunderstanding, no loop"


def test_repeated_gibberish_never_gets_an_answer_and_ends_with_an_offer_of_a_person(api, conversation_id):
    # What NLU makes of gibberish depends on the trained model; whatever it is, the assistant must
    # not answer as if it understood, and by the second message a person is on offer.
    first = say(api, conversation_id, "zxqv blorp wibble")
    second = say(api, conversation_id, "qqqq mmmm zzzz")
    for reply in (first, second):
        assert "Source: " not in texts(reply)
    body = texts(second).lower()
    assert "staff" in body or "person" in body
    assert "/request_human" in [b["payload"] for m in second["messages"] for b in m["buttons"]]


def test_out_of_scope_is_declined(api, conversation_id):
    reply = say(api, conversation_id, "can you book me a flight to denver")
    assert "not something i can help with" in texts(reply).lower()


def test_opt_out_closes_and_a_new_message_reopens(stack, api, conversation_id):
    say(api, conversation_id, "hi")
    reply = say(api, conversation_id, "STOP")
    assert reply["owner"] == "closed"
    assert owner_of(stack, conversation_id) == "closed"
    reply = say(api, conversation_id, "hello again")
    assert reply["owner"] == "bot" and reply["messages"]


def test_tracker_is_kept_in_redis(stack, api, conversation_id):
    say(api, conversation_id, "hi")
    from channels.pseudonym import conversation_key

    key = conversation_key(stack.secret, "api", conversation_id)
    redis = Redis.from_url(stack.redis_url)
    assert redis.exists(f"careline:tracker:{key}")


def test_sender_id_is_pseudonymous(stack, api):
    conversation_id = "+15551230000"
    say(api, conversation_id, "hi")
    tracker_keys = [k.decode() for k in Redis.from_url(stack.redis_url).keys("careline:tracker:*")]
    assert tracker_keys
    assert not any("5551230000" in k for k in tracker_keys)


def user_turns_in_rasa(stack, api_conversation_id: str) -> int:
    return sum(1 for e in tracker(stack, api_conversation_id) if e["event"] == "user")


def test_duplicate_message_id_is_answered_once(stack, api, conversation_id):
    first = say(api, conversation_id, "hello", message_id="m-1")
    again = say(api, conversation_id, "hello", message_id="m-1")
    assert again["messages"] == first["messages"]
    assert user_turns_in_rasa(stack, conversation_id) == 1
    say(api, conversation_id, "hello", message_id="m-2")
    assert user_turns_in_rasa(stack, conversation_id) == 2


@pytest.mark.parametrize(
    "body, status, error",
    [
        ({"conversation_id": "c", "text": ""}, 422, "invalid_message"),
        ({"conversation_id": "c", "text": "   "}, 422, "invalid_message"),
        ({"conversation_id": "c", "text": 5}, 422, "invalid_message"),
        ({"conversation_id": "c"}, 422, "invalid_message"),
        ({"text": "hi"}, 422, "invalid_message"),
        ({"conversation_id": 12, "text": "hi"}, 422, "invalid_message"),
        ({"conversation_id": "has spaces", "text": "hi"}, 422, "invalid_message"),
        ({"conversation_id": "c", "text": "x" * 2001}, 413, "message_too_long"),
        (["not", "an", "object"], 422, "invalid_message"),
    ],
)
def test_bad_input_gets_a_clear_error(api, body, status, error):
    resp = api.post("/api/messages", json=body)
    assert resp.status_code == status
    assert resp.json()["error"] == error and resp.json()["detail"]


def test_malformed_json_gets_a_clear_error(api):
    resp = api.post("/api/messages", content=b"{not json", headers={"content-type": "application/json"})
    assert resp.status_code == 422 and "JSON" in resp.json()["detail"]


def test_health_and_readiness(api):
    assert api.get("/healthz").json() == {"status": "ok"}
    ready = api.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {
        "redis": True,
        "rasa": True,
        "action_server": True,
        "safety_screen": True,
        "sms_workers": True,
    }
