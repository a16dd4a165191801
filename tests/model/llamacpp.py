"""llama.cpp's own OpenAI-compatible server (xllamacpp ``Server``) for tests and
benchmarks: the bundled SmolLM2 on 127.0.0.1, ``n_parallel`` slots."""

from __future__ import annotations

import gc
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from megasim.model.local import bundled_model_path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@contextmanager
def llama_server(
    n_parallel: int, context_per_slot: int = 1024, threads: int | None = 1
) -> Iterator[str]:
    """Yield the base URL (``http://127.0.0.1:<port>/v1``) of a healthy server.

    One thread by default: llama.cpp's threads wait for each other at every step, so on a
    2-core machine shared with other work two threads stall for seconds at a time."""
    import xllamacpp

    port = free_port()
    params = xllamacpp.CommonParams()
    params.model.path = str(bundled_model_path())
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
