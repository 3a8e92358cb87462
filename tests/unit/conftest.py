"""The offline unit tier: no Redis, PostgreSQL, Rasa or browser. Anything that needs one of them
belongs in tests/integration (or browser, security, privacy, eval): asking for one of the
fixtures that start them fails here."""

from __future__ import annotations

import pytest


def _outside_the_unit_tier(name: str):
    @pytest.fixture(name=name)
    def fixture():
        pytest.fail(f"a unit test asked for {name!r}: move it to tests/integration", pytrace=False)

    return fixture


redis_url = _outside_the_unit_tier("redis_url")
private_redis = _outside_the_unit_tier("private_redis")
stack = _outside_the_unit_tier("stack")
fault_stack = _outside_the_unit_tier("fault_stack")
