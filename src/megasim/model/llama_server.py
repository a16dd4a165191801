"""llama.cpp's own OpenAI-compatible HTTP server (xllamacpp ``Server``) in this process:
the bundled SmolLM2 (or any GGUF) on 127.0.0.1 with ``n_parallel`` slots. Tests and
benchmarks use it as the real server users run (``llama-server``)."""

from __future__ import annotations

import gc
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import httpx

from megasim.model.local import resolve_model_path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@contextmanager
def llama_server(
    n_parallel: int,
    context_per_slot: int = 1024,
    threads: int | None = 1,
    path: str | None = None,
    port: int | None = None,
) -> Iterator[str]:
    """Yield the base URL (``http://127.0.0.1:<port>/v1``) of a healthy server.

    One thread by default: llama.cpp's threads wait for each other at every step, so on a
    2-core machine shared with other work two threads stall for seconds at a time."""
    import xllamacpp

    port = port or free_port()
    params = xllamacpp.CommonParams()
    params.model.path = str(resolve_model_path(path))
    params.n_parallel = n_parallel
    params.n_ctx = n_parallel * context_per_slot
    params.verbosity = -1
    if threads is not None:
        params.cpuparams.n_threads = threads
        params.cpuparams_batch.n_threads = threads
    params.port = port
    params.hostnames = ["127.0.0.1"]
    server = xllamacpp.Server(params)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"llama.cpp server at {url} never became healthy")
            time.sleep(0.05)
        yield f"{url}/v1"
    finally:
        del server
        gc.collect()


def main(argv: list[str] | None = None) -> int:
    """``python -m megasim.model.llama_server --port 8080 --slots 4``: llama.cpp's server
    for the bundled model (or ``--model FILE.gguf``) until Ctrl-C, as ``llama-server``."""
    import argparse
    import signal
    import threading

    parser = argparse.ArgumentParser(prog="python -m megasim.model.llama_server")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--slots", type=int, default=4, help="parallel slots (n_parallel)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (all)")
    parser.add_argument("--model", default=None, help="a GGUF file (the bundled SmolLM2)")
    args = parser.parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with llama_server(args.slots, threads=args.threads, path=args.model, port=args.port) as url:
        print(f"serving on {url}", flush=True)
        with suppress(KeyboardInterrupt):
            stop.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
