"""What the retention sweep and erasure remove or keep, decided per table and per key name."""

import pytest
import yaml

from careline.settings import Settings
from channels.db import CONVERSATION_DATA, KEPT_RECORDS, SCHEDULE_RECORDS, STAFF_RECORDS, metadata
from channels.privacy import PrivacyError, normalise_address, pseudonyms_in
from channels.pseudonym import conversation_key
from tests.helpers import ROOT


def test_every_table_is_either_conversation_data_or_a_kept_record():
    erased = {t.name for t in CONVERSATION_DATA}
    kept = {t.name for t in KEPT_RECORDS}
    assert not erased & kept
    staff = {t.name for t in STAFF_RECORDS}
    assert not staff & (erased | kept)
    assert all("conversation" not in t.c for t in STAFF_RECORDS)  # else it belongs in one of the others
    schedule = {t.name for t in SCHEDULE_RECORDS}
    assert not schedule & (erased | kept | staff)
    assert all("conversation" not in t.c and why for t, why in SCHEDULE_RECORDS.items())
    unclassified = set(metadata.tables) - erased - kept - staff - schedule
    assert not unclassified, (
        f"classify {sorted(unclassified)} in channels/db.py: CONVERSATION_DATA (erased with "
        "the conversation) or KEPT_RECORDS (with the reason it must be kept)"
    )


def test_conversation_tables_name_the_conversation_and_a_time():
    for table, time_column in CONVERSATION_DATA.items():
        assert "conversation" in table.c, table.name
        assert time_column in table.c, f"{table.name}.{time_column}"
    for table in KEPT_RECORDS:
        assert "conversation" in table.c, table.name


def test_kept_records_carry_no_address_or_text_column():
    for table in KEPT_RECORDS:
        assert not {"address", "phone", "number", "text", "body", "message"} & set(table.c.keys()), table.name


@pytest.mark.parametrize("channel,address", [("sms", "+15551234567"), ("web", "A" * 32), ("api", "abc")])
def test_pseudonyms_are_found_in_key_names(channel, address):
    key = conversation_key("s" * 40, channel, address)
    assert pseudonyms_in(f"careline:dedupe:{key}:m1") == [key]
    assert pseudonyms_in(f"careline:ratelimit:LIMITER/conversation/{key}/20/1/minute") == [key]
    assert pseudonyms_in(f"careline:tracker:{key}") == [key]
    assert pseudonyms_in("careline:staff:queue") == []
    assert pseudonyms_in(f"careline:x:{key}0") == []  # a longer hex run is not this pseudonym


@pytest.mark.parametrize(
    "channel,given,expected",
    [
        ("sms", "+1 (555) 123-4567", "+15551234567"),
        ("sms", "+15551234567", "+15551234567"),
        ("web", "  Abc_defghijklmnopqrstuvwxyz-0123 ", "Abc_defghijklmnopqrstuvwxyz-0123"),
        ("api", "test-1", "test-1"),
    ],
)
def test_addresses_are_normalised_as_the_channel_gives_them(channel, given, expected):
    assert normalise_address(channel, given) == expected


@pytest.mark.parametrize(
    "channel,given,reason",
    [
        ("sms", "5551234567", "E.164"),
        ("sms", "+1555", "E.164"),
        ("web", "short", "chat token"),
        ("api", "has space", "conversation_id"),
        ("fax", "+15551234567", "unknown channel"),
    ],
)
def test_malformed_addresses_are_refused_with_the_reason(channel, given, reason):
    with pytest.raises(PrivacyError, match=reason):
        normalise_address(channel, given)


def test_rasa_tracker_expiry_backstop_is_the_retention():
    """Rasa refreshes record_exp on every save, so a tracker lives record_exp after the last turn:
    equal to the retention it never outlives an idle conversation by more than that."""
    endpoints = yaml.safe_load((ROOT / "bot" / "endpoints.yml").read_text())
    record_exp = endpoints["tracker_store"].get("record_exp")
    assert record_exp, "bot/endpoints.yml must keep record_exp as a backstop to the retention sweep"
    default = Settings.model_fields["retention_days"].default * 24 * 3600
    assert int(record_exp) == default
