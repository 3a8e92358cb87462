import pytest

from careline.settings import Settings


def test_production_refuses_placeholder_secret_and_open_api():
    with pytest.raises(ValueError, match="CONVERSATION_SECRET"):
        Settings(careline_env="production", conversation_secret="change-me", api_token="t", _env_file=None)
    with pytest.raises(ValueError, match="API_TOKEN"):
        Settings(careline_env="production", conversation_secret="a" * 64, _env_file=None)
    assert Settings(careline_env="production", conversation_secret="a" * 64, api_token="t", _env_file=None).api_token


def test_development_allows_an_open_api():
    assert Settings(conversation_secret="a" * 64, _env_file=None).api_token is None
