"""Helpers for conversation tests."""

from __future__ import annotations

from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]  # the checkout


def say(api: httpx.Client, conversation_id: str, text: str, **extra) -> dict:
    resp = api.post("/api/messages", json={"conversation_id": conversation_id, "text": text, **extra})
    assert resp.status_code == 200, resp.text
    return resp.json()


def texts(reply: dict) -> str:
    return " ".join(m["text"] for m in reply["messages"])
