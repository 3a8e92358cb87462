"""What the stand-ins' HTTP servers share (Twilio, FHIR, the LLM): quiet logs, an answer that
tolerates a client that has already gone, and a threaded server that does not report it."""

from __future__ import annotations

import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class StandinServer(ThreadingHTTPServer):
    """Serves `handler` with `standin` (what the handler answers from) at `address`."""

    request_queue_size = 128  # many clients at once (a booking race) without SYN retries

    def __init__(self, address: tuple[str, int], standin: Any, handler: type[BaseHTTPRequestHandler]):
        self.standin = standin
        super().__init__(address, handler)

    def handle_error(self, request, client_address) -> None:
        """A client that dies mid-request (a killed gateway) is not an error of the stand-in."""
        if not isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            super().handle_error(request, client_address)


class StandinHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # small answers go out at once (no 40 ms delayed-ACK stall)

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
