"""Helpers for conversation tests."""

from __future__ import annotations

import httpx


def say(api: httpx.Client, conversation_id: str, text: str, **extra) -> dict:
    resp = api.post("/api/messages", json={"conversation_id": conversation_id, "text": text, **extra})
    assert resp.status_code == 200, resp.text
    return resp.json()


def texts(reply: dict) -> str:
    return " ".join(m["text"] for m in reply["messages"])
