"""The studio at a million agents: agent-browser latency, dashboard cost, run slow-down.

1. Agent browser on a finished run of N agents: first open (the DuckDB table is built)
   and p50/p95 of filtered, sorted pages over HTTP from a real server.
2. A live N-agent surrogate run (steps of ``--rounds``), once alone and once watched by
   a dashboard client that does what the page does (the live channel, and on every new
   step the histogram, per-step medians and a breakdown): the server-side time of each
   dashboard request, and the run's mean step time with and without it (a ratio).

    python benchmarks/bench_studio.py --agents 1000000 --rounds 3 --repeat 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from megasim.config import load_config
from megasim.run import run_simulation
from megasim.studio.server import StudioThread, free_port


def game_config(name: str, agents: int, rounds: int) -> dict[str, Any]:
    """Surrogate agents with personas (age, education) and two model names."""
    weights = {"high school": 0.5, "bachelor": 0.3, "PhD": 0.2}
    attributes = {
        "prompt_variant": {"dist": "categorical", "weights": {"P1": 0.5, "P3": 0.5}},
        "age": {"dist": "uniform", "min": 18, "max": 80},
        "education": {"dist": "categorical", "weights": weights},
        "model": {"dist": "categorical", "weights": {"quick": 0.5, "steady": 0.5}},
    }
    surrogate = {"backend": "surrogate", "latency_s": 0.0}
    return {
        "name": name,
        "seed": 11,
        "rounds": rounds,
        "population": {"size": agents, "groups": 3, "attributes": attributes},
        "models": {"quick": surrogate, "steady": surrogate},
        "out_dir": ".",
    }


FILTERS = [
    ["education=PhD"],
    ["age>=40", "age<60"],
    ["model=quick", "value>=10"],
    ["prompt_variant=P3", "education=bachelor|PhD"],
    ["raw_text~guess", "age<30"],
]
SORTS = ["value", "age", "agent_id", "education"]


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def make_run(runs: Path, run_id: str, agents: int, rounds: int) -> float:
    """A finished surrogate run; returns its mean step wall time (s)."""
    source = runs / f"{run_id}.yaml"
    source.write_text(yaml.safe_dump(game_config(run_id, agents, rounds)))
    config = load_config(source, {"out": str(runs)})
    result = asyncio.run(run_simulation(config, run_id=run_id))
    return statistics.mean(float(s.metrics["wall_s"]) for s in result.steps)


def agent_browser(server: StudioThread, run_id: str, requests: int) -> dict[str, float]:
    url = f"{server.url}/api/runs/{run_id}/agents"
    client = httpx.Client(timeout=300)  # one kept-alive connection, as a browser does
    started = time.perf_counter()
    client.get(url, params={"limit": 50}).raise_for_status()
    first_open = time.perf_counter() - started
    rng = random.Random(1)
    times = []
    for _ in range(requests):
        params: dict[str, Any] = {"where": rng.choice(FILTERS), "sort": rng.choice(SORTS)}
        params |= {"desc": rng.choice(["true", "false"]), "limit": 50}
        params["offset"] = rng.choice([0, 50, 5000, 20000])
        t0 = time.perf_counter()
        client.get(url, params=params).raise_for_status()
        times.append(time.perf_counter() - t0)
    return {
        "first_open_s": round(first_open, 3),
        "page_p50_ms": round(quantile(times, 0.5) * 1000, 1),
        "page_p95_ms": round(quantile(times, 0.95) * 1000, 1),
        "requests": requests,
    }


class Dashboard(threading.Thread):
    """What an open dashboard page asks of the server, timed per request."""

    def __init__(self, server: StudioThread | StudioProcess, run_id: str) -> None:
        super().__init__(daemon=True)
        self.url = f"{server.url}/api/runs/{run_id}"
        self.timings: dict[str, list[float]] = {}
        self.stop = threading.Event()
        self.client = httpx.Client(timeout=300)

    def timed(self, name: str, path: str, **params: Any) -> None:
        t0 = time.perf_counter()
        self.client.get(f"{self.url}{path}", params=params).raise_for_status()
        self.timings.setdefault(name, []).append(time.perf_counter() - t0)

    def run(self) -> None:
        with httpx.stream("GET", f"{self.url}/live", timeout=None) as stream:
            last = time.perf_counter()
            kind = ""
            for line in stream.iter_lines():
                if self.stop.is_set():
                    return
                if line.startswith("event: "):
                    kind = line[7:]
                if kind == "status" and line.startswith("data: "):
                    now = time.perf_counter()
                    self.timings.setdefault("status_interval", []).append(now - last)
                    last = now
                if kind == "steps" and line.startswith("data: "):
                    steps = json.loads(line[6:])["steps"]
                    if not steps:  # a new connection before the first step: nothing yet
                        continue
                    step = steps[-1]["step"]
                    self.timed("values", "/values", step=step)
                    self.timed("quantiles", "/quantiles")
                    self.timed("breakdown", "/breakdown", by="model")


class StudioProcess:
    """``megasim studio`` in its own process, as a user runs it (a studio thread inside the
    benchmark's process would compete with the run for the GIL, which no user setup does)."""

    def __init__(self, root: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "megasim", "studio", "--runs", str(root)]
        self.process = subprocess.Popen(
            [*command, "--port", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def __enter__(self) -> StudioProcess:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{self.url}/api/runs", timeout=5)
                return self
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def __exit__(self, *_: object) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def watched_run(root: Path, run_id: str, agents: int, rounds: int) -> tuple[float, Dashboard]:
    """A run with a dashboard client attached from its first heartbeat on."""
    with StudioProcess(root) as server:
        dashboard = Dashboard(server, run_id)
        results: list[float] = []
        runner = threading.Thread(
            target=lambda: results.append(make_run(root, run_id, agents, rounds))
        )
        runner.start()
        while not (root / run_id / "status.json").exists():
            time.sleep(0.05)
        dashboard.start()
        runner.join()
        time.sleep(3)  # the last step's dashboard requests
        dashboard.stop.set()
    return results[0], dashboard


def live(agents: int, rounds: int, root: Path, repeat: int) -> dict[str, Any]:
    """Alternating unwatched and watched runs (ABAB...), medians of mean step times."""
    alone: list[float] = []
    watched: list[float] = []
    timings: dict[str, list[float]] = {}
    for index in range(repeat):
        alone.append(make_run(root, f"alone{index}", agents, rounds))
        step_s, dashboard = watched_run(root, f"watched{index}", agents, rounds)
        watched.append(step_s)
        for name, values in dashboard.timings.items():
            timings.setdefault(name, []).extend(values)
    per_update = {
        name: round(statistics.mean(v) * 1000, 1)
        for name, v in timings.items()
        if name != "status_interval"
    }
    intervals = timings.get("status_interval", [0.0])[1:] or [0.0]
    return {
        "step_alone_s": [round(x, 2) for x in alone],
        "step_watched_s": [round(x, 2) for x in watched],
        "slowdown_median": round(statistics.median(watched) / statistics.median(alone), 3),
        "dashboard_request_mean_ms": per_update,
        "dashboard_request_max_ms": {
            name: round(max(v) * 1000, 1)
            for name, v in timings.items()
            if name != "status_interval"
        },
        "status_interval_max_s": round(max(intervals), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--agents", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--repeat", type=int, default=2, help="unwatched/watched run pairs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_run(root, "browse", args.agents, 1)
        with StudioThread(root) as server:
            browse = agent_browser(server, "browse", args.requests)
        print(json.dumps({"agents": args.agents, "agent_browser": browse}), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        measured = live(args.agents, args.rounds, Path(tmp), args.repeat)
        print(json.dumps({"agents": args.agents, "live": measured}))


if __name__ == "__main__":
    main()
