"""A local stand-in for a hosted LLM that speaks OpenAI's Chat Completions HTTP protocol
(`POST /v1/chat/completions`, the same JSON and error shapes), so tests drive the real
langchain-openai client against it on a free loopback port.

What it answers is chosen by `standin.mode`, or per request by an `X-Standin-Mode` header or a
`[standin:MODE]` keyword in the last user message:

    grounded   the first sentences of the first <passage> it received (an answer a good model gives)
    ungrounded a confident claim found in no passage
    mixed      the grounded answer plus one unsupported sentence
    link       the grounded answer plus a link that is in no passage
    dont_know  "I don't know."
    empty      an empty message
    slow       the grounded answer after `standin.delay` seconds
    500 / 429  OpenAI's error bodies for a server error / a rate limit
"""

from __future__ import annotations

import html
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from typing import Any

from careline.standins.http import StandinHandler, StandinServer

MODES = ("grounded", "ungrounded", "mixed", "link", "dont_know", "empty", "slow", "500", "429")
UNGROUNDED = "Drinking lemon juice every morning cures this condition completely and for good."
_PASSAGE = re.compile(r"<passage\b[^>]*>\n?(.*?)\n?</passage>", re.S)
_MAX_CHARS = re.compile(r"at most (\d+) characters")
_KEYWORD = re.compile(r"\[standin:([a-z0-9_]+)\]")
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def _error(status: int, message: str, type_: str, code: str | None) -> tuple[int, dict]:
    """OpenAI's error body."""
    return status, {"error": {"message": message, "type": type_, "param": None, "code": code}}


def grounded_answer(user_message: str) -> str:
    """At most two sentences of the first passage, within the asked length, skipping any that carry
    instructions: what a model that obeys the prompt says at best."""
    match = _PASSAGE.search(user_message)
    if not match:
        return "I don't know."
    limit = int(m.group(1)) if (m := _MAX_CHARS.search(user_message)) else 300
    text = re.sub(r"\s+", " ", html.unescape(match.group(1))).strip()
    out, taken = "", 0
    for sentence in _SENTENCE.split(text):
        if "[quoted text:" in sentence or "<" in sentence:
            continue
        if taken == 2 or len(out) + len(sentence) + 1 > min(limit, 300):
            break
        out, taken = f"{out} {sentence}".strip(), taken + 1
    return out or text[: min(limit, 300)].rsplit(" ", 1)[0]


def _last_user_text(messages: list[dict]) -> str:
    last_user = next((m.get("content") or "" for m in reversed(messages) if m.get("role") == "user"), "")
    if isinstance(last_user, list):  # content parts
        last_user = "".join(p.get("text", "") for p in last_user if isinstance(p, dict))
    return last_user


def _content(mode: str, last_user: str) -> str:
    """What the model says in `mode` (any other mode answers grounded)."""
    grounded = grounded_answer(last_user)
    return {
        "grounded": grounded,
        "slow": grounded,
        "ungrounded": UNGROUNDED,
        "mixed": f"{grounded} {UNGROUNDED}",
        "link": f"{grounded} Read more at https://cures.example.com/now.",
        "dont_know": "I don't know.",
        "empty": "",
    }.get(mode, grounded)


def _completion(model: str, content: str, messages: list[dict]) -> dict[str, Any]:
    """A chat.completion object, as OpenAI returns it."""
    prompt_tokens = sum(len(str(m.get("content") or "").split()) for m in messages)
    completion_tokens = len(content.split())
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": None, "annotations": []},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        },
        "service_tier": "default",
        "system_fingerprint": "fp_careline_standin",
    }


def _stream_payload(model: str, content: str) -> bytes:
    """The same answer as server-sent chat.completion.chunk events, word by word."""
    cid = f"chatcmpl-{uuid.uuid4().hex[:24]}"
    words = re.findall(r"\S+\s*", content)
    chunks = [{"role": "assistant", "content": ""}] + [{"content": w} for w in words]
    events = [
        {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "delta": d, "logprobs": None, "finish_reason": None}],
        }
        for d in chunks
    ]
    events.append({**events[0], "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}]})
    payload = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
    return payload.encode()


class _Handler(StandinHandler):
    server: StandinServer

    def do_GET(self) -> None:
        if self.path.rstrip("/") == "/v1/models":
            self._send(
                200,
                {
                    "object": "list",
                    "data": [{"id": "gpt-4o-mini", "object": "model", "created": 0, "owned_by": "careline-standin"}],
                },
            )
        else:
            self._send(*_error(404, f"Invalid URL (GET {self.path})", "invalid_request_error", None))

    def do_POST(self) -> None:
        standin = self.server.standin
        request = self._read_request(standin)
        if request is None:
            return
        body, messages, model = request
        last_user = _last_user_text(messages)
        keyword = _KEYWORD.search(last_user)
        mode = self.headers.get("X-Standin-Mode") or (keyword.group(1) if keyword else standin.mode)
        headers = {k.lower(): v for k, v in self.headers.items()}
        standin.requests.append(
            {"path": self.path, "headers": headers, "body": body, "mode": mode, "at": time.monotonic()}
        )
        if mode in ("500", "429"):
            self._send_fault(mode, model)
            return
        if mode == "slow":
            time.sleep(standin.delay)
        content = _content(mode, last_user)
        if body.get("stream"):
            self._stream(model, content)
            return
        self._send(200, _completion(model, content, messages))

    def _read_request(self, standin: LLMStandin) -> tuple[dict, list, str] | None:
        """The request's body, messages and model; None when an error was sent instead."""
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._send(*_error(404, f"Invalid URL (POST {self.path})", "invalid_request_error", None))
            return None
        if self.headers.get("Authorization") != f"Bearer {standin.api_key}":
            self._send(*_error(401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key"))
            return None
        try:
            body = json.loads(raw)
            return body, body["messages"], body["model"]
        except (ValueError, KeyError, TypeError):
            self._send(*_error(400, "We could not parse the JSON body of your request.", "invalid_request_error", None))
            return None

    def _send_fault(self, mode: str, model: str) -> None:
        if mode == "500":
            self._send(
                *_error(
                    500,
                    "The server had an error while processing your request. Sorry about that!",
                    "server_error",
                    None,
                )
            )
            return
        self._send(
            429,
            {
                "error": {
                    "message": f"Rate limit reached for {model}.",
                    "type": "requests",
                    "param": None,
                    "code": "rate_limit_exceeded",
                }
            },
            {"retry-after-ms": "100", "x-ratelimit-remaining-requests": "0"},
        )

    def _stream(self, model: str, content: str) -> None:
        self.respond(200, _stream_payload(model, content), "text/event-stream")

    def _send(self, status: int, payload: dict, headers: dict | None = None) -> None:
        ids = {"x-request-id": f"req_{uuid.uuid4().hex[:16]}", "openai-processing-ms": "1"}
        self.respond(status, json.dumps(payload).encode(), "application/json", {**ids, **(headers or {})})


@dataclass
class LLMStandin:
    mode: str = "grounded"
    delay: float = 2.0
    api_key: str = "test-key"
    requests: list[dict[str, Any]] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> LLMStandin:
        self._server = StandinServer(("127.0.0.1", 0), self, _Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="llm-standin", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> LLMStandin:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
