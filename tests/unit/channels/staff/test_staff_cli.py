"""`careline staff add|disable|enable|list` against a SQLite file under a checkout of its own
(so no Redis and no secret of the real checkout is found)."""

from __future__ import annotations

import io
import json
import sys

import pytest
from sqlalchemy import select

from careline.cli import main
from channels.db import make_engine, staff_accounts

PASSWORD = "correct horse battery"


@pytest.fixture
def root(tmp_path, monkeypatch):
    (tmp_path / "bot").mkdir()
    (tmp_path / "bot" / "config.yml").write_text("recipe: default.v1\n")
    (tmp_path / "pyproject.toml").write_text("")
    monkeypatch.chdir(tmp_path)
    for name in ("DATABASE_URL", "REDIS_URL", "CONVERSATION_SECRET", "DATA_ENCRYPTION_KEY", "CARELINE_ENV"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def run(monkeypatch, capsys, *argv: str, stdin: str = "") -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def hashes(root) -> dict[str, str]:
    engine = make_engine(f"sqlite:///{root / 'var' / 'careline.db'}")
    with engine.connect() as conn:
        found = {r.email: r.password_hash for r in conn.execute(select(staff_accounts))}
    engine.dispose()
    return found


def test_add_list_disable_enable(root, monkeypatch, capsys):
    code, out, _ = run(
        monkeypatch, capsys, "staff", "add", "Ann@Clinic.org", "--role", "supervisor", "--password-stdin",
        stdin=PASSWORD + "\n",
    )  # fmt: skip
    assert code == 0 and out.strip() == "added supervisor ann@clinic.org (id 1)"
    stored = hashes(root)  # the default database is var/careline.db under the checkout
    assert stored["ann@clinic.org"].startswith("$argon2id$") and PASSWORD not in stored["ann@clinic.org"]

    code, _, _ = run(
        monkeypatch, capsys, "staff", "add", "bo@clinic.org", "--role", "agent", "--name", "Bo",
        "--password-stdin", stdin=PASSWORD,
    )  # fmt: skip
    assert code == 0
    code, out, _ = run(monkeypatch, capsys, "staff", "list")
    assert code == 0 and json.loads(out) == [
        {"id": 1, "email": "ann@clinic.org", "role": "supervisor", "display_name": "ann"},
        {"id": 2, "email": "bo@clinic.org", "role": "agent", "display_name": "Bo"},
    ]

    code, out, err = run(monkeypatch, capsys, "staff", "disable", "bo@clinic.org")
    assert code == 0 and "disabled bo@clinic.org (id 2)" in out
    assert "open sessions not looked for" in err  # no Redis known in this checkout
    _, out, _ = run(monkeypatch, capsys, "staff", "list")
    assert [m["email"] for m in json.loads(out)] == ["ann@clinic.org"]

    code, out, _ = run(monkeypatch, capsys, "staff", "enable", "bo@clinic.org")
    assert code == 0 and out.strip() == "enabled agent bo@clinic.org (id 2)"


def test_refusals_exit_2_with_the_reason(root, monkeypatch, capsys):
    add = ("staff", "add", "ann@clinic.org", "--role", "agent", "--password-stdin")
    assert run(monkeypatch, capsys, *add, stdin=PASSWORD)[0] == 0
    code, out, err = run(monkeypatch, capsys, *add, stdin=PASSWORD)
    assert code == 2 and err.strip() == "error: a staff account for ann@clinic.org already exists" and out == ""
    code, _, err = run(monkeypatch, capsys, "staff", "add", "cy@clinic.org", "--role", "agent", "--password-stdin")
    assert code == 2 and "12 to 256 characters" in err  # empty stdin: an empty password
    code, _, err = run(monkeypatch, capsys, "staff", "add", "not-an-email", "--role", "agent", "--password-stdin")
    assert code == 2 and "not an email address" in err
    code, _, err = run(monkeypatch, capsys, "staff", "disable", "nobody@clinic.org")
    assert code == 2 and "no staff account for nobody@clinic.org" in err
    assert set(hashes(root)) == {"ann@clinic.org"}


def test_without_password_stdin_and_no_terminal_it_refuses(root, monkeypatch, capsys):
    code, _, err = run(monkeypatch, capsys, "staff", "add", "ann@clinic.org", "--role", "agent", stdin=PASSWORD)
    assert code == 2 and "--password-stdin" in err
    assert hashes(root) == {}


def test_a_role_outside_the_two_is_a_usage_error(root, monkeypatch, capsys):
    with pytest.raises(SystemExit) as exited:
        run(monkeypatch, capsys, "staff", "add", "ann@clinic.org", "--role", "admin", "--password-stdin")
    assert exited.value.code == 2


def test_database_url_from_the_environment_is_used(root, tmp_path_factory, monkeypatch, capsys):
    other = tmp_path_factory.mktemp("elsewhere") / "staff.db"
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{other}")
    code, _, _ = run(
        monkeypatch, capsys, "staff", "add", "ann@clinic.org", "--role", "agent", "--password-stdin", stdin=PASSWORD
    )
    assert code == 0 and other.exists()
    assert not (root / "var" / "careline.db").exists()
