"""docker-compose.yml is valid (no Docker engine here: `config` only parses and validates)."""

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ENV = {"RASA_TOKEN": "t", "CONVERSATION_SECRET": "s", "POSTGRES_PASSWORD": "p", "API_TOKEN": "a", "PATH": "/usr/bin:/bin"}


def compose_command() -> list[str]:
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    pytest.fail("neither `docker compose` nor `docker-compose` is installed (make test installs it)")


def test_compose_config_is_valid():
    result = subprocess.run([*compose_command(), "-f", str(ROOT / "docker-compose.yml"), "config"],
                            capture_output=True, text=True, env=ENV, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    services = config["services"]
    assert set(services) == {"redis", "postgres", "chroma", "actions", "rasa", "gateway"}
    for name, service in services.items():
        assert "healthcheck" in service, name
    for name in ("actions", "rasa", "gateway"):
        for dep in services[name]["depends_on"].values():
            assert dep["condition"] == "service_healthy"
    # Only the gateway is published; Rasa stays on the internal network.
    assert [n for n, s in services.items() if s.get("ports")] == ["gateway"]
    assert (ROOT / "docker/rasa.Dockerfile").read_text().startswith("# The official Rasa 3.6.21")


def test_compose_refuses_missing_secrets():
    env = {k: v for k, v in ENV.items() if k != "CONVERSATION_SECRET"}
    result = subprocess.run([*compose_command(), "-f", str(ROOT / "docker-compose.yml"), "config"],
                            capture_output=True, text=True, env=env, cwd=ROOT)
    assert result.returncode != 0 and "CONVERSATION_SECRET" in result.stderr
