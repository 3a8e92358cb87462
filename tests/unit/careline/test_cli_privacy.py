"""`careline patient` and `careline retention`: errors are clear and nothing is touched before the
arguments, settings and confirmation are right. No server is needed here."""

import io

import pytest

from careline.cli import main, privacy_settings

SECRET = "c" * 40


@pytest.fixture
def env(monkeypatch, tmp_path):
    for name in ("CONVERSATION_SECRET", "DATA_ENCRYPTION_KEY", "REDIS_URL", "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CONVERSATION_SECRET", SECRET)
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")  # nothing listens: touching Redis would exit 3
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'careline.db'}")
    return monkeypatch


def test_unknown_channel_is_a_usage_error(env, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["patient", "export", "--channel", "fax", "--address", "+15551234567"])
    assert exit_.value.code == 2 and "invalid choice" in capsys.readouterr().err


def test_malformed_number_is_refused_before_anything_is_read(env, capsys):
    assert main(["patient", "erase", "--channel", "sms", "--address", "555-1234", "--yes"]) == 2
    assert "E.164" in capsys.readouterr().err


def test_erase_needs_yes_without_a_terminal(env, capsys):
    env.setattr("sys.stdin", io.StringIO(""))
    assert main(["patient", "erase", "--channel", "api", "--address", "abc"]) == 2
    assert "--yes" in capsys.readouterr().err


def test_erase_not_confirmed_touches_nothing(env, capsys):
    tty = io.StringIO("")
    tty.isatty = lambda: True
    env.setattr("sys.stdin", tty)
    env.setattr("builtins.input", lambda _prompt: "no")
    assert main(["patient", "erase", "--channel", "api", "--address", "abc"]) == 1
    assert "not erased" in capsys.readouterr().err


def test_unreachable_redis_is_its_own_exit_code(env, capsys):
    assert main(["patient", "export", "--channel", "api", "--address", "abc"]) == 3
    err = capsys.readouterr().err
    assert "cannot reach Redis at redis://127.0.0.1:1/0" in err
    assert main(["retention", "sweep"]) == 3


def test_missing_secret_is_named(env, tmp_path):
    env.delenv("CONVERSATION_SECRET")
    with pytest.raises(ValueError, match="CONVERSATION_SECRET is not set"):
        privacy_settings(tmp_path)


def test_secret_and_key_come_from_var_like_make_run_gives_them(env, tmp_path):
    from cryptography.fernet import Fernet

    env.delenv("CONVERSATION_SECRET")
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "conversation_secret").write_text("v" * 64 + "\n")
    key = Fernet.generate_key().decode()
    (tmp_path / "var" / "data_key").write_text(key)
    settings = privacy_settings(tmp_path)
    assert settings.conversation_secret == "v" * 64 and settings.data_encryption_key == key
    assert not (tmp_path / "var" / "redis_url").exists()


def test_redis_url_must_be_set_somewhere(env, tmp_path):
    env.delenv("REDIS_URL")
    with pytest.raises(ValueError, match="REDIS_URL is not set"):
        privacy_settings(tmp_path)
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "redis_url").write_text("redis://127.0.0.1:6390/0\n")
    assert privacy_settings(tmp_path).redis_url == "redis://127.0.0.1:6390/0"


def test_settings_errors_exit_2_with_a_one_line_message(env, capsys):
    env.setenv("CONVERSATION_SECRET", "short")
    assert main(["retention", "sweep"]) == 2
    assert capsys.readouterr().err.strip() == "error: CONVERSATION_SECRET must be at least 32 characters"
