"""A real OpenAI-compatible HTTP server for tests and benchmarks (uvicorn + starlette).

It serves, over HTTP/1.1 (uvicorn's protocol, starlette's routing)::

    POST /v1/chat/completions   (also /chat/completions)
    GET  /health                (also /v1/health)
    GET  /v1/models
    GET  /stats                 this server's counters, as JSON

Behaviour is configurable, and every attribute may be changed while it runs (``slots``
takes effect at the next start):

- ``latency_s``: how long a request is "processed"; ``slots``: how many are processed at
  once (the rest queue, FIFO). ``max_concurrency`` records the most ever processed at once.
- failure rates (fractions of chat requests, drawn from a seeded RNG): ``fail_500``,
  ``fail_503``, ``fail_429`` (with a ``Retry-After: <retry_after_s>`` header), ``malformed``
  (a complete HTTP 200 whose JSON is cut short, after the latency), ``truncated`` (after
  the latency, a 200 whose Content-Length announces more than is sent before the
  connection closes), ``hang`` (never answers; the connection stays open until the client
  gives up or the server stops). ``script`` lists outcomes (``"ok"``, ``"500"``,
  ``"503"``, ``"429"``, ``"malformed"``, ``"truncated"``, ``"hang"``) for the first
  requests, before the rates apply.
- a client that closes its connection abandons its request (counted ``abandoned``), as
  vLLM does, so a cancelled call does not keep a slot busy.
- answers: ``n`` choices; with ``response_format`` the content is ``{"guess": <number>}``,
  else prose; the number is a function of the request's ``seed`` and the choice index.
  ``usage`` counts about four characters per token.
- ``quirks`` (``megasim.model.fake_quirks.Quirks``): what real servers refuse or ignore
  (``n`` above a limit, ``n`` ignored, ``response_format`` / ``seed`` / ``max_tokens``
  ignored or rejected, 404 for an unknown model name); refusals are counted ``rejected``.

Counters (``counts``): ``requests`` (chat requests received), one per outcome (``ok``,
``500``, ``503``, ``429``, ``malformed``, ``truncated``, ``hang``, ``abandoned``, ``bad_request``,
``rejected``), and ``not_found``, ``health``, ``connections``, ``unauthorized``.

Use it as ``async with FakeServer(...) as server: server.base_url`` (same event loop), as
``with FakeServer(...) as server:`` (its own event loop in a background thread, for sync
code), or from a shell::

    python -m megasim.model.fake_server --port 8000 --slots 256 --latency 1

Parts, one concept each: the HTTP side (uvicorn's protocol, every connection reachable,
faults below HTTP) in ``fake_http.py``, the answers in
``fake_answers.py``, real servers' quirks in ``fake_quirks.py``, running on a background
loop in ``fake_thread.py``, the command line in ``fake_cli.py``; this file holds the
server: routes, outcomes (faults) and slots.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
from collections import Counter, deque
from collections.abc import Iterable
from types import TracebackType
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from megasim.model.fake_answers import completion_body, fake_guess
from megasim.model.fake_http import (
    Hang,
    Listener,
    Truncated,
    error_body,
    json_response,
    until_disconnected,
)
from megasim.model.fake_quirks import Quirks
from megasim.model.fake_thread import ThreadedLifecycle

OUTCOMES = ("ok", "500", "503", "429", "malformed", "truncated", "hang")
_MALFORMED_BODY = b'{"id": "chatcmpl-broken", "object": "chat.completion", "choices": [{"ind'
__all__ = ["OUTCOMES", "FakeServer", "fake_guess", "main"]


_LOOPBACK = ("127.0.0.1", "localhost", "::1")  # anything else must require a token


class FakeServer(ThreadedLifecycle):
    """An OpenAI-compatible server on 127.0.0.1 (a free port unless ``port`` is given).

    After the first start its port is fixed, so ``stop()`` then ``start()`` brings it back
    on the same address (what a restarted replica looks like to clients).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        latency_s: float = 0.0,
        slots: int | None = None,
        fail_500: float = 0.0,
        fail_503: float = 0.0,
        fail_429: float = 0.0,
        retry_after_s: float = 1.0,
        malformed: float = 0.0,
        hang: float = 0.0,
        truncated: float = 0.0,
        script: Iterable[str] = (),
        model: str = "fake-model",
        rng_seed: int = 0,
        token: str | None = None,
        quirks: Quirks | None = None,
    ) -> None:
        if host not in _LOOPBACK and not token:
            raise ValueError(f"host {host!r} is not loopback: a token is required")
        self.token = token  # when set, requests need "Authorization: Bearer <token>"
        self.host = host
        self.port = port
        self.latency_s = latency_s
        self.slots = slots
        self.fail_500 = fail_500
        self.fail_503 = fail_503
        self.fail_429 = fail_429
        self.retry_after_s = retry_after_s
        self.malformed = malformed
        self.hang = hang
        self.truncated = truncated
        self.script: deque[str] = deque(script)
        for outcome in self.script:
            if outcome not in OUTCOMES:
                raise ValueError(f"script: unknown outcome {outcome!r} (known: {OUTCOMES})")
        self.model = model
        self.quirks = quirks if quirks is not None else Quirks()  # behaviours of real servers
        self._rng = random.Random(rng_seed)
        self._unseeded = 0
        self.counts: Counter[str] = Counter()
        self.last_request: dict[str, Any] | None = None  # the last valid chat request body
        self.in_flight = 0  # requests being processed (holding a slot)
        self.queued = 0  # requests waiting for a slot
        self.max_concurrency = 0
        self._listener: Listener | None = None
        self._slots: asyncio.Semaphore | None = None
        chat, health = ["POST"], ["GET"]
        self._app = Starlette(
            routes=[
                Route("/v1/chat/completions", self._chat, methods=chat),
                Route("/chat/completions", self._chat, methods=chat),
                Route("/health", self._health, methods=health),
                Route("/v1/health", self._health, methods=health),
                Route("/v1/models", self._models, methods=health),
                Route("/models", self._models, methods=health),
                Route("/stats", self._stats, methods=health),
            ],
            exception_handlers={HTTPException: self._http_error},
        )

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``http://host:port`` (the server root: /health lives here)."""
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """``http://host:port/v1``: what an OpenAI client's ``base_url`` should be."""
        return f"{self.url}/v1"

    @property
    def running(self) -> bool:
        return self._listener is not None

    @property
    def open_connections(self) -> int:
        return self._listener.open_connections if self._listener is not None else 0

    async def start(self) -> FakeServer:
        if self._listener is not None:
            raise RuntimeError("the fake server is already running")
        self._slots = asyncio.Semaphore(self.slots) if self.slots else None
        listener = Listener(self._asgi, self._connected)
        self.port = await listener.listen(self.host, self.port)
        self._listener = listener
        return self

    async def stop(self) -> None:
        """Stop listening and drop every connection (hung and queued requests included)."""
        listener, self._listener = self._listener, None
        if listener is not None:
            await listener.close()

    async def __aenter__(self) -> FakeServer:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- counters ----------------------------------------------------------------------

    @property
    def requests(self) -> int:
        """Chat completion requests received (every outcome)."""
        return self.counts["requests"]

    def stats(self) -> dict[str, Any]:
        return {
            "counts": dict(self.counts),
            "in_flight": self.in_flight,
            "queued": self.queued,
            "max_concurrency": self.max_concurrency,
            "open_connections": self.open_connections,
        }

    def reset_counts(self) -> None:
        self.counts.clear()
        self.max_concurrency = self.in_flight

    # -- HTTP --------------------------------------------------------------------------

    def _connected(self) -> None:
        self.counts["connections"] += 1

    async def _asgi(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The app uvicorn serves: the bearer-token check (read per request, so a token
        set while running applies at once), then the routes."""
        token = self.token
        if token and scope["type"] == "http":
            sent = dict(scope["headers"]).get(b"authorization")
            if sent != f"Bearer {token}".encode():
                self.counts["unauthorized"] += 1
                response = json_response(401, error_body("missing or wrong bearer token", 401))
                await response(scope, receive, send)
                return
        await self._app(scope, receive, send)

    async def _http_error(self, request: Request, exc: Exception) -> Response:
        """Starlette's 404 and 405, as OpenAI-style JSON errors."""
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        if status == 404:
            self.counts["not_found"] += 1
        message = f"no route for {request.method} {request.url.path}"
        return json_response(status, error_body(message, status))

    async def _health(self, request: Request) -> Response:
        self.counts["health"] += 1
        return json_response(200, b'{"status": "ok"}')

    async def _models(self, request: Request) -> Response:
        models = {"object": "list", "data": [{"id": self.model, "object": "model"}]}
        return json_response(200, json.dumps(models).encode())

    async def _stats(self, request: Request) -> Response:
        return json_response(200, json.dumps(self.stats()).encode())

    def _draw(self) -> str:
        if self.script:
            return self.script.popleft()
        u = self._rng.random()
        for outcome, rate in (  # truncated last: adding it left earlier seeds' draws alone
            ("hang", self.hang),
            ("malformed", self.malformed),
            ("429", self.fail_429),
            ("503", self.fail_503),
            ("500", self.fail_500),
            ("truncated", self.truncated),
        ):
            if u < rate:
                return outcome
            u -= rate
        return "ok"

    async def _chat(self, request: Request) -> Response:
        try:
            raw = await request.body()
        except ClientDisconnect:
            return Hang()  # gone before its request was complete: nothing to answer
        self.counts["requests"] += 1
        try:
            body = json.loads(raw)
            messages = body["messages"]
            if not isinstance(messages, list) or not messages:
                raise ValueError("messages must be a non-empty list")
        except (ValueError, KeyError, TypeError) as exc:
            self.counts["bad_request"] += 1
            return json_response(400, error_body(f"invalid request: {exc}", 400))
        self.last_request = body
        refused = self.quirks.rejection(body, self.model)
        if refused is not None:
            status, message = refused
            self.counts["rejected"] += 1
            return json_response(status, error_body(message, status))
        outcome = self._draw()
        if outcome == "hang":
            self.counts["hang"] += 1
            return Hang()
        if outcome in ("500", "503"):
            self.counts[outcome] += 1
            status = int(outcome)
            return json_response(status, error_body(f"fake failure {status}", status))
        if outcome == "429":
            self.counts["429"] += 1
            after = self.retry_after_s
            value = str(int(after)) if float(after).is_integer() else f"{after:g}"
            return json_response(429, error_body("rate limited", 429), {"Retry-After": value})
        if not await self._process_unless_gone(request.receive):
            return Hang()  # the client went away: nothing to send
        self.counts[outcome] += 1
        if outcome == "malformed":
            return json_response(200, _MALFORMED_BODY)
        if outcome == "truncated":
            assert self._listener is not None
            return Truncated(self._completion(body), self._listener.drop)
        return json_response(200, self._completion(body))

    async def _process_unless_gone(self, receive: Receive) -> bool:
        """Process the request, abandoning it (as vLLM does) if the client closes its
        connection first, so a cancelled call does not keep a slot busy. False: gone."""
        work = asyncio.ensure_future(self._process())
        gone = asyncio.ensure_future(until_disconnected(receive))
        try:
            await asyncio.wait((work, gone), return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
            if not work.done():
                work.cancel()
            await asyncio.gather(work, gone, return_exceptions=True)
        return not work.cancelled()

    async def _process(self) -> None:
        """Hold a slot for ``latency_s`` (queueing while every slot is busy)."""
        slots = self._slots
        try:
            if slots is not None:
                self.queued += 1
                try:
                    await slots.acquire()
                finally:
                    self.queued -= 1
            self.in_flight += 1
            self.max_concurrency = max(self.max_concurrency, self.in_flight)
            try:
                if self.latency_s > 0:
                    await asyncio.sleep(self.latency_s)
            finally:
                self.in_flight -= 1
                if slots is not None:
                    slots.release()
        except asyncio.CancelledError:
            self.counts["abandoned"] += 1  # the client went away (as vLLM, stop working)
            raise

    def _completion(self, body: dict[str, Any]) -> bytes:
        seed = body.get("seed") if self.quirks.uses_seed() else None
        if not isinstance(seed, int):
            self._unseeded += 1
            seed = -self._unseeded
        return completion_body(body, seed, self.quirks, self.model, self.counts["requests"])


def main(argv: list[str] | None = None) -> int:
    from megasim.model.fake_cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
