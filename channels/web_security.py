"""What every response and every browser connection must carry or prove: security headers on
each page, and the Origin check of the WebSocket handshake."""

from __future__ import annotations

from urllib.parse import urlparse

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Pages that sites in ALLOWED_ORIGINS may frame (the chat page); everything else: nobody.
FRAMEABLE = {"/chat"}


def origin_of(url: str | None) -> str | None:
    if not url:
        return None
    parsed = urlparse(url)
    if not parsed.scheme or not parsed.netloc:
        return None
    return f"{parsed.scheme}://{parsed.netloc}".lower()


class Origins:
    """The gateway's own origin(s) plus the configured embedding sites."""

    def __init__(self, configured: list[str], *own_urls: str | None, trust_forwarded: bool = False):
        self.allowed = {o.lower() for o in configured} | {o for o in map(origin_of, own_urls) if o}
        self.trust_forwarded = trust_forwarded

    def same_origin(self, scope: Scope) -> str | None:
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", [])}
        host = headers.get("host")
        scheme = {"ws": "http", "wss": "https"}.get(scope.get("scheme", "http"), scope.get("scheme", "http"))
        if self.trust_forwarded and headers.get("x-forwarded-host"):
            host = headers["x-forwarded-host"].split(",")[0].strip()
            scheme = headers.get("x-forwarded-proto", scheme).split(",")[0].strip()
        return f"{scheme}://{host}".lower() if host else None

    def permits(self, origin: str | None, scope: Scope) -> bool:
        """Browsers always send Origin on a WebSocket handshake; a client without one is not a
        browser, and cross-site WebSocket hijacking needs a browser."""
        if origin is None:
            return True
        origin = origin.lower().rstrip("/")
        return origin in self.allowed or origin == self.same_origin(scope)


class SecurityHeaders:
    """Pure ASGI middleware (no buffering of bodies or WebSockets)."""

    def __init__(self, app: ASGIApp, frame_ancestors: list[str], hsts: bool, trust_forwarded: bool = False):
        self.app = app
        self.frame_ancestors = " ".join(["'self'", *frame_ancestors])
        self.hsts = hsts
        self.trust_forwarded = trust_forwarded

    def _headers(self, scope: Scope) -> list[tuple[bytes, bytes]]:
        ancestors = self.frame_ancestors if scope["path"] in FRAMEABLE else "'none'"
        csp = (
            "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
            "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
            f"frame-ancestors {ancestors}"
        )
        headers = [
            (b"content-security-policy", csp.encode()),
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"no-referrer"),
            (b"cross-origin-opener-policy", b"same-origin"),
            (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
        ]
        if self._https(scope):
            headers.append((b"strict-transport-security", b"max-age=31536000; includeSubDomains"))
        return headers

    def _https(self, scope: Scope) -> bool:
        if scope.get("scheme") == "https" or self.hsts:
            return True
        if self.trust_forwarded:
            for k, v in scope.get("headers", []):
                if k == b"x-forwarded-proto" and v.split(b",")[0].strip() == b"https":
                    return True
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = self._headers(scope)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = list(message.get("headers", [])) + [h for h in extra if h[0] not in present]
            await send(message)

        await self.app(scope, receive, send_with_headers)
