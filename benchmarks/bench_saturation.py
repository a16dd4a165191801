"""Saturation: N requests through the endpoint pool against the fake OpenAI server.

The fake server processes ``--slots`` requests at a time, each for ``--latency`` seconds,
so it can answer at most ``slots / latency`` calls per second (256/s by default). The
benchmark sends every request at once (as a shard does), through the same client a run
builds (``build_model`` with ``backend: openai, endpoints: [...]``: RetryingModel around
EndpointPool around OpenAIModel), and reports the achieved throughput against that limit.

The servers run in their own processes (``python -m megasim.model.fake_server``), as a
model server would; ``--server thread`` runs them in a thread of this process instead.

``--http-client`` picks the client's transport: ``httpx`` (the default: the openai client
over httpx, in HTTP clients of at most 16 connections each), ``fast`` (megasim's
``FastHTTPTransport``), ``aiohttp``: the same ``httpx`` path with each HTTP client the
openai SDK's ``DefaultAioHttpClient`` (its aiohttp transport; needs
``pip install 'openai[aiohttp]'``), swapped in while the model is built, or
``aiohttp-one``: the same with each endpoint in one HTTP client (no split into clients of
16 connections, which only httpx's pool needs), as the SDK's docs use it.

    python benchmarks/bench_saturation.py --requests 10000 --slots 256 --latency 1 --repeat 3
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import math
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any
from unittest import mock

import httpx
import openai
import psutil
from pydantic import TypeAdapter

import megasim.model.pool
from megasim.model.base import ChatMessage, ChatRequest, ChatResponse
from megasim.model.config import ModelConfig
from megasim.model.factory import build_model
from megasim.model.fake_server import FakeServer
from megasim.model.openai_backend import OpenAIModel

SCHEMA = {"type": "object", "properties": {"guess": {"type": "number"}}, "required": ["guess"]}
MESSAGES = (
    ChatMessage("system", "You play a number game. Answer in JSON."),
    ChatMessage("user", 'Guess a number between 0 and 100. Reply as {"guess": <number>}.'),
)


CPU_READERS: dict[str, Callable[[], float]] = {}  # base URL -> its server's CPU seconds


@contextmanager
def server_process(slots: int, latency: float) -> Iterator[str]:
    """A fake server in its own process; yields its base URL (CPU time: CPU_READERS)."""
    command = [sys.executable, "-m", "megasim.model.fake_server"]
    command += ["--slots", str(slots), "--latency", str(latency)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.startswith("listening on "):
            raise RuntimeError(f"fake server did not start: {line!r}")
        url = line.split()[-1]
        server = psutil.Process(process.pid)
        started = sum(server.cpu_times()[:2])

        def cpu() -> float:
            return sum(server.cpu_times()[:2]) - started

        CPU_READERS[url] = cpu
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


class OneClientModel(OpenAIModel):
    """Each endpoint in one HTTP client, not split into clients of 16 connections."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["connections_per_client"] = sys.maxsize
        super().__init__(*args, **kwargs)


@contextmanager
def server_thread(slots: int, latency: float) -> Iterator[str]:
    with FakeServer(slots=slots, latency_s=latency) as server:
        yield server.base_url


async def one_run(args: argparse.Namespace, urls: list[str]) -> dict[str, Any]:
    config = TypeAdapter(ModelConfig).validate_python(
        {
            "backend": "openai",
            "endpoints": [{"base_url": url} for url in urls],
            "model": "fake-model",
            "api_key_env": None,
            "max_concurrency": args.concurrency or args.slots,
            "timeout_s": 60,
            "http_client": "fast" if args.http_client == "fast" else "httpx",
            "merge": False,  # identical prompts would be merged: measure raw calls
        }
    )
    with ExitStack() as patches:  # aiohttp: the httpx path, each HTTP client on aiohttp
        if args.http_client.startswith("aiohttp"):
            aio = openai.DefaultAioHttpClient
            patches.enter_context(mock.patch.object(openai, "DefaultAsyncHttpxClient", aio))
        if args.http_client == "aiohttp-one":
            pool = megasim.model.pool
            patches.enter_context(mock.patch.object(pool, "OpenAIModel", OneClientModel))
        model = build_model("fake", config)
    requests = [
        ChatRequest(messages=MESSAGES, max_tokens=32, seed=i, json_schema=SCHEMA)
        for i in range(args.requests)
    ]
    done_at: list[float] = []

    async def call(request: ChatRequest) -> ChatResponse:
        response = await model.complete(request)
        done_at.append(time.perf_counter())
        return response

    readers = [CPU_READERS[url] for url in urls if url in CPU_READERS]
    server_cpu = sum(read() for read in readers)
    cpu = time.process_time()
    started = time.perf_counter()
    responses = await asyncio.gather(*(call(r) for r in requests))
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu
    server_cpu = sum(read() for read in readers) - server_cpu if readers else math.nan
    snapshot: dict[str, Any] = getattr(model, "metrics_snapshot", dict)()
    await model.aclose()

    # steady state: completions after the first wave and before the last full one
    first, last = args.latency + 1.0, wall - args.latency - 1.0
    steady = sum(1 for t in done_at if first <= t - started < last)
    limit = len(urls) * args.slots / args.latency
    ideal_wall = math.ceil(args.requests / (len(urls) * args.slots)) * args.latency
    servers = [httpx.get(url.removesuffix("/v1") + "/stats").json() for url in urls]
    for server in servers:
        server["counts"].pop("health", None)
    return {
        "requests": args.requests,
        "ok": sum(1 for r in responses if r.ok),
        "failed": sum(1 for r in responses if not r.ok),
        "wall_s": wall,
        "throughput": args.requests / wall,
        "limit": limit,
        "of_limit": args.requests / wall / limit,
        "of_ideal": ideal_wall / wall,
        "steady_throughput": steady / (last - first) if last > first else None,
        "client_cpu_s": cpu,
        "client_cpu_ms_per_call": cpu / args.requests * 1e3,
        "server_cpu_ms_per_call": server_cpu / args.requests * 1e3,
        "server_max_concurrency": [s["max_concurrency"] for s in servers],
        "server_counts": [s["counts"] for s in servers],
        "latency_p50_s": snapshot.get("latency_p50_s"),
        "latency_p95_s": snapshot.get("latency_p95_s"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--slots", type=int, default=256, help="per server")
    parser.add_argument("--latency", type=float, default=1.0, help="seconds per request")
    parser.add_argument("--endpoints", type=int, default=1, help="fake servers in the pool")
    parser.add_argument("--concurrency", type=int, default=None, help="default: --slots")
    parser.add_argument("--server", choices=("process", "thread"), default="process")
    parser.add_argument(
        "--http-client",
        choices=("fast", "httpx", "aiohttp", "aiohttp-one"),
        default="httpx",
        help="the client's transport",
    )
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    if args.http_client.startswith("aiohttp") and importlib.util.find_spec("aiohttp") is None:
        parser.error("--http-client aiohttp needs aiohttp: pip install 'openai[aiohttp]'")
    start = server_process if args.server == "process" else server_thread
    runs = []
    for _ in range(args.repeat):
        with ExitStack() as stack:  # fresh servers per run: counters start at zero
            urls = [
                stack.enter_context(start(args.slots, args.latency)) for _ in range(args.endpoints)
            ]
            result = asyncio.run(one_run(args, urls))
        runs.append(result)
        print(json.dumps(result), flush=True)
    if args.repeat > 1:
        throughputs = [r["throughput"] for r in runs]
        median = statistics.median(throughputs)
        limit = runs[0]["limit"]
        print(
            f"median throughput {median:.1f} calls/s = {median / limit:.1%} of {limit:g} calls/s"
            f" (runs: {', '.join(f'{t:.1f}' for t in throughputs)})"
        )


if __name__ == "__main__":
    main()
