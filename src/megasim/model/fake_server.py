"""A real OpenAI-compatible HTTP server for tests and benchmarks (stdlib asyncio only).

It speaks enough HTTP/1.1 for httpx, the openai client and curl (keep-alive, requests
with a Content-Length, one request at a time per connection) and serves::

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
  (HTTP 200 with a truncated JSON body, after the latency), ``hang`` (never answers; the
  connection stays open until the client gives up or the server stops). ``script`` lists
  outcomes (``"ok"``, ``"500"``, ``"503"``, ``"429"``, ``"malformed"``, ``"hang"``) for the
  first requests, before the rates apply.
- a client that closes its connection abandons its request (counted ``abandoned``), as
  vLLM does, so a cancelled call does not keep a slot busy.
- answers: ``n`` choices; with ``response_format`` the content is ``{"guess": <number>}``,
  else prose; the number is a function of the request's ``seed`` and the choice index.
  ``usage`` counts about four characters per token.
- ``quirks`` (``megasim.model.fake_quirks.Quirks``): what real servers refuse or ignore
  (``n`` above a limit, ``n`` ignored, ``response_format`` / ``seed`` / ``max_tokens``
  ignored or rejected, 404 for an unknown model name); refusals are counted ``rejected``.

Counters (``counts``): ``requests`` (chat requests received), one per outcome (``ok``,
``500``, ``503``, ``429``, ``malformed``, ``hang``, ``abandoned``, ``bad_request``,
``rejected``), and ``not_found``, ``health``, ``connections``, ``unauthorized``.

Use it as ``async with FakeServer(...) as server: server.base_url`` (same event loop), as
``with FakeServer(...) as server:`` (its own event loop in a background thread, for sync
code), or from a shell::

    python -m megasim.model.fake_server --port 8000 --slots 256 --latency 1

Parts, one concept each: the HTTP/1.1 side in ``fake_http.py``, the answers in
``fake_answers.py``, real servers' quirks in ``fake_quirks.py``, running on a background
loop in ``fake_thread.py``, the command line in ``fake_cli.py``; this file holds the
server: routes, outcomes (faults) and slots.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from collections import Counter, deque
from collections.abc import Awaitable, Iterable
from types import TracebackType
from typing import Any

from megasim.model.fake_answers import completion_body, fake_guess
from megasim.model.fake_http import FakeConnection, Reply, error_body
from megasim.model.fake_quirks import Quirks
from megasim.model.fake_thread import ThreadedLifecycle

OUTCOMES = ("ok", "500", "503", "429", "malformed", "hang")
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
        self.open_connections = 0
        self._server: asyncio.Server | None = None
        self._slots: asyncio.Semaphore | None = None
        self._connections: set[FakeConnection] = set()

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
        return self._server is not None

    async def start(self) -> FakeServer:
        if self._server is not None:
            raise RuntimeError("the fake server is already running")
        self._slots = asyncio.Semaphore(self.slots) if self.slots else None
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: FakeConnection(self), self.host, self.port, reuse_address=True, backlog=4096
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        """Stop listening and drop every connection (hung and queued requests included)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        tasks = [c.task for c in self._connections if c.task is not None]
        for connection in list(self._connections):
            connection.close()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()
        deadline = time.monotonic() + 1.0
        while self._connections and time.monotonic() < deadline:
            await asyncio.sleep(0.001)  # sockets close on the loop's next turns

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

    def _route(self, method: str, path: str, body: bytes) -> Reply | Awaitable[Reply | None]:
        """The reply to one request: at once, or an awaitable (chat; None: never answer)."""
        if path in ("/v1/chat/completions", "/chat/completions"):
            if method != "POST":
                return 405, error_body("use POST", 405), ""
            return self._chat(body)
        if method == "GET" and path in ("/health", "/v1/health"):
            self.counts["health"] += 1
            return 200, b'{"status": "ok"}', ""
        if method == "GET" and path in ("/v1/models", "/models"):
            models = {"object": "list", "data": [{"id": self.model, "object": "model"}]}
            return 200, json.dumps(models).encode(), ""
        if method == "GET" and path == "/stats":
            return 200, json.dumps(self.stats()).encode(), ""
        self.counts["not_found"] += 1
        return 404, error_body(f"no route for {method} {path}", 404), ""

    def _draw(self) -> str:
        if self.script:
            return self.script.popleft()
        u = self._rng.random()
        for outcome, rate in (
            ("hang", self.hang),
            ("malformed", self.malformed),
            ("429", self.fail_429),
            ("503", self.fail_503),
            ("500", self.fail_500),
        ):
            if u < rate:
                return outcome
            u -= rate
        return "ok"

    async def _chat(self, raw: bytes) -> Reply | None:
        self.counts["requests"] += 1
        try:
            body = json.loads(raw)
            messages = body["messages"]
            if not isinstance(messages, list) or not messages:
                raise ValueError("messages must be a non-empty list")
        except (ValueError, KeyError, TypeError) as exc:
            self.counts["bad_request"] += 1
            return 400, error_body(f"invalid request: {exc}", 400), ""
        self.last_request = body
        refused = self.quirks.rejection(body, self.model)
        if refused is not None:
            status, message = refused
            self.counts["rejected"] += 1
            return status, error_body(message, status), ""
        outcome = self._draw()
        if outcome == "hang":
            self.counts["hang"] += 1
            return None
        if outcome in ("500", "503"):
            self.counts[outcome] += 1
            status = int(outcome)
            return status, error_body(f"fake failure {status}", status), ""
        if outcome == "429":
            self.counts["429"] += 1
            after = self.retry_after_s
            value = str(int(after)) if float(after).is_integer() else f"{after:g}"
            return 429, error_body("rate limited", 429), f"Retry-After: {value}\r\n"
        try:
            await self._process()
        except asyncio.CancelledError:
            self.counts["abandoned"] += 1  # the client went away (as vLLM, stop working)
            raise
        self.counts[outcome] += 1
        if outcome == "malformed":
            return 200, _MALFORMED_BODY, ""
        return 200, self._completion(body), ""

    async def _process(self) -> None:
        """Hold a slot for ``latency_s`` (queueing while every slot is busy)."""
        slots = self._slots
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
