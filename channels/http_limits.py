"""Request bodies read with a cap: a body larger than the limit is refused (413) before it is read
whole, whether or not the client sent Content-Length."""

from __future__ import annotations

from fastapi import Request

from channels.errors import PayloadTooLarge


async def read_body_capped(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise PayloadTooLarge(f"the body is larger than {limit} bytes")
        except ValueError:
            raise PayloadTooLarge("Content-Length is not a number") from None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
