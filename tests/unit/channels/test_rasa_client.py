from careline.contracts import Handoff, HandoffReason
from channels.messages import Button
from channels.rasa_client import parse_rest_output


def test_text_buttons_and_controls():
    reply = parse_rest_output(
        [
            {"recipient_id": "x", "text": "Hi", "buttons": [{"title": "Yes", "payload": "/affirm"}]},
            {"recipient_id": "x", "custom": {"careline": {"handoff": {"reason": "request_human"}}}},
            {"recipient_id": "x", "custom": {"other": 1}},
            {"recipient_id": "x", "image": "http://x/y.png"},
        ]
    )
    assert [m.text for m in reply.messages] == ["Hi"]
    assert reply.messages[0].buttons == (Button("Yes", "/affirm"),)
    assert reply.controls == [Handoff(HandoffReason.REQUEST_HUMAN)]


def test_empty_output():
    reply = parse_rest_output([])
    assert reply.messages == [] and reply.controls == []
