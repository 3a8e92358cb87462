from channels.pseudonym import conversation_key


def test_key_is_stable_for_a_secret():
    assert conversation_key("s1", "sms", "+15551234567") == conversation_key("s1", "sms", "+15551234567")


def test_key_hides_the_address_and_depends_on_secret_and_channel():
    key = conversation_key("s1", "sms", "+15551234567")
    assert "5551234567" not in key
    assert key != conversation_key("s2", "sms", "+15551234567")
    assert key != conversation_key("s1", "web", "+15551234567")
    assert key.startswith("sms-") and len(key) == 36
