"""No PHI in logs: message text and addresses never reach a service's log file."""

import pytest

from tests.helpers import say

pytestmark = pytest.mark.stack


def test_message_text_and_phone_number_stay_out_of_logs(stack, api):
    phone = "+15559876543"
    marker = "Zebulon Quartermaine has chest pain"
    say(api, phone, f"hi, my name is {marker}")
    say(api, phone, "I want a person")
    say(api, phone, "qwzx vbnm plkj")
    for log_file in stack.logs.glob("*.log"):
        content = log_file.read_text(errors="replace")
        assert "Zebulon" not in content, log_file.name
        assert "5559876543" not in content, log_file.name
