"""``python -m megasim.model.fake_server``: the fake server in its own process."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal

from megasim.model.fake_quirks import Quirks
from megasim.model.fake_server import FakeServer


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m megasim.model.fake_server",
        description="An OpenAI-compatible fake model server for tests and benchmarks.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="other than loopback: --token")
    parser.add_argument("--token", default=None, help="bearer token clients must send")
    parser.add_argument("--port", type=int, default=0, help="0: a free port")
    parser.add_argument("--slots", type=int, default=None, help="requests processed at once")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per request")
    parser.add_argument("--fail-500", type=float, default=0.0, help="fraction answered 500")
    parser.add_argument("--fail-503", type=float, default=0.0, help="fraction answered 503")
    parser.add_argument("--fail-429", type=float, default=0.0, help="fraction answered 429")
    parser.add_argument("--retry-after", type=float, default=1.0, help="429 Retry-After, s")
    parser.add_argument("--malformed", type=float, default=0.0, help="fraction of broken JSON")
    parser.add_argument("--hang", type=float, default=0.0, help="fraction never answered")
    parser.add_argument(
        "--truncated", type=float, default=0.0, help="fraction whose body is cut off"
    )
    parser.add_argument("--model", default="fake-model")
    parser.add_argument("--rng-seed", type=int, default=0)
    quirks = parser.add_argument_group("behaviours of real servers (see fake_quirks.py)")
    quirks.add_argument("--max-n", type=int, default=None, help="reject n above (llama.cpp)")
    quirks.add_argument("--ignore-n", action="store_true", help="one choice always (Ollama)")
    quirks.add_argument(
        "--response-format",
        choices=["honour", "ignore", "reject_schema", "reject"],
        default="honour",
    )
    quirks.add_argument("--seed-mode", choices=["honour", "ignore", "reject"], default="honour")
    quirks.add_argument("--max-tokens-mode", choices=["honour", "reject"], default="honour")
    quirks.add_argument("--strict-model", action="store_true", help="404 for other model names")
    return parser.parse_args(argv)


async def _serve(args: argparse.Namespace) -> None:
    server = FakeServer(
        host=args.host,
        port=args.port,
        latency_s=args.latency,
        slots=args.slots,
        fail_500=args.fail_500,
        fail_503=args.fail_503,
        fail_429=args.fail_429,
        retry_after_s=args.retry_after,
        malformed=args.malformed,
        hang=args.hang,
        truncated=args.truncated,
        model=args.model,
        token=args.token,
        rng_seed=args.rng_seed,
        quirks=Quirks(
            max_n=args.max_n,
            ignore_n=args.ignore_n,
            response_format=args.response_format,
            seed=args.seed_mode,
            max_tokens=args.max_tokens_mode,
            strict_model=args.strict_model,
        ),
    )
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # not on every platform
            loop.add_signal_handler(sig, done.set)
    async with server:
        print(f"listening on {server.base_url}", flush=True)
        await done.wait()
        stats = server.stats()
    print(json.dumps(stats), flush=True)


def main(argv: list[str] | None = None) -> int:
    asyncio.run(_serve(_parse_args(argv)))
    return 0
