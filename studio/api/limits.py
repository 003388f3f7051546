"""The request body limit: a 413 problem, whether the size is declared or only counted.

FastAPI's own `max_body_size` answers in plain text when the declared length is too large;
this middleware keeps every answer a problem document (`studio.api.errors`).
"""

from __future__ import annotations

__all__ = ["BodyLimit", "BodyTooLarge"]

from fastapi import Request
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from studio.api.errors import problem_response


class BodyTooLarge(HTTPException):
    """Raised while reading a body past the limit (FastAPI re-raises HTTP exceptions)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than {limit:,} bytes")


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            error = BodyTooLarge(self.max_bytes)
            response = problem_response(Request(scope), 413, "Content too large", str(error.detail))
            await response(scope, receive, send)
            return
        size = 0

        async def counted() -> Message:
            nonlocal size
            message = await receive()
            if message["type"] == "http.request":
                size += len(message.get("body", b""))
                if size > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        await self.app(scope, counted, send)
