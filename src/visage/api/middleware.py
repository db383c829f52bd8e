"""Pure ASGI middleware (no per-request task or body buffering, unlike Starlette's ``BaseHTTPMiddleware``).

``BodyLimit`` refuses oversized bodies before they are read; ``ServiceHeaders`` stamps the
version on every response, adds the console's security headers, answers 504 when a request
runs past the service's time limit and, when several workers serve, counts requests in flight
and closes the connection of an overloaded worker (see :mod:`visage.api.workers`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.datastructures import MutableHeaders

from visage.api.errors import error_response
from visage.api.workers import WorkerLoads

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

log = logging.getLogger(__name__)


class ServiceHeaders:
    """Every response carries ``version_header``; pages under ``/console`` also get ``console_headers``.

    A request still running after ``timeout_s`` is cancelled and answered 504 (a blocking route
    keeps its worker thread until it returns, but the client is answered on time).
    """

    def __init__(self, app: App, *, version_header: tuple[str, str], console_headers: dict[str, str],
                 timeout_s: float, loads: WorkerLoads | None = None) -> None:
        self.app, self.version_header, self.timeout_s = app, version_header, timeout_s
        self.console_headers, self.loads = console_headers, loads

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        console = scope["path"].startswith("/console")
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = MutableHeaders(scope=message)
                headers[self.version_header[0]] = self.version_header[1]
                if console:
                    headers.update(self.console_headers)
                if self.loads is not None and self.loads.overloaded():
                    headers["Connection"] = "close"
            await send(message)

        if self.loads is not None:
            self.loads.started()
        try:
            async with asyncio.timeout(self.timeout_s):
                await self.app(scope, receive, send_with_headers)
        except TimeoutError:
            if started:  # part of the answer is out: nothing else can be said on this connection
                log.warning("%s %s ran past %g s after its response had started", scope["method"], scope["path"],
                            self.timeout_s)
                return
            response = error_response(504, "timeout", f"the request took longer than {self.timeout_s:g} s")
            await response(scope, receive, send_with_headers)
        finally:
            if self.loads is not None:
                self.loads.finished()


class BodyLimit:
    """ASGI middleware: a request body above ``max_bytes`` gets 413 before it is read into memory.

    A declared Content-Length is checked up front; a chunked body is counted as it streams.
    """

    def __init__(self, app: App, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        declared = headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._refuse(send)
            return
        seen = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _TooLarge:
            if not started:
                await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        mib = self.max_bytes / (1024 * 1024)
        body = ('{"code":"payload_too_large","message":"the request body is larger than the limit of '
                f'{mib:g} MiB"}}').encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass
