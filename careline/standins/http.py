"""What both stand-ins' HTTP handlers share: quiet logs, and an answer that tolerates a client
that has already gone."""

from __future__ import annotations

from http.server import BaseHTTPRequestHandler


class StandinHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # quiet: bodies and numbers are patient data
        pass

    def respond(self, status: int, data: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        """Send `data`; a client that gave up (a timeout, a killed gateway) is no error of the stand-in."""
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
