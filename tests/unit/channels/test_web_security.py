"""Production defaults and browser-facing checks, on the app without its services."""

from cryptography.fernet import Fernet
from fastapi.testclient import TestClient

from careline.settings import Settings
from channels.app import create_app
from channels.web_security import Origins


def app_for(**kw):
    base = {"conversation_secret": "s" * 64, "_env_file": None}
    return create_app(Settings(**{**base, **kw}))


def test_no_api_docs_in_production():
    prod = TestClient(
        app_for(careline_env="production", api_token="t" * 32, data_encryption_key=Fernet.generate_key().decode())
    )
    for path in ("/docs", "/redoc", "/openapi.json"):
        assert prod.get(path).status_code == 404, path
    assert TestClient(app_for()).get("/openapi.json").status_code == 200  # development keeps them


def test_hsts_behind_https_and_frame_ancestors_from_allowed_origins():
    client = TestClient(app_for(public_url="https://chat.clinic.org", allowed_origins="https://www.clinic.org"))
    chat = client.get("/chat")
    assert chat.headers["strict-transport-security"].startswith("max-age=")
    assert "frame-ancestors 'self' https://www.clinic.org" in chat.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in client.get("/healthz").headers["content-security-policy"]
    assert "strict-transport-security" not in TestClient(app_for()).get("/healthz").headers


def test_origins():
    origins = Origins(["https://www.clinic.org"], "https://chat.clinic.org/", None)
    scope = {"scheme": "ws", "headers": [(b"host", b"10.0.0.5:8000")]}
    assert origins.permits("https://www.clinic.org", scope)
    assert origins.permits("https://chat.clinic.org", scope)
    assert origins.permits("http://10.0.0.5:8000", scope)  # same origin
    assert origins.permits(None, scope)  # not a browser
    assert not origins.permits("https://evil.example", scope)
    assert not origins.permits("https://www.clinic.org.evil.example", scope)
