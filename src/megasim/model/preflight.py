"""Preflight: probe an OpenAI-compatible endpoint before a run spends anything on it.

A handful of tiny calls answer what a run needs to know: is the server there, does it
take the key, does it serve the model name, how many samples per call (``n``) it takes,
whether it honours a JSON schema, ``seed`` and ``max_tokens``, how long a small call
takes, and (on request) how many calls per second it sustains. Problems that would fail
every decision (unreachable, key refused or missing, model not served) are ``fail``;
what the model layer works around (a low ``n`` limit, an ignored schema) is ``warn``.

Plain httpx calls, not the model layer: preflight must see status codes and choices
exactly as the server sends them.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Awaitable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx

from megasim.model.base import ModelSetupError
from megasim.model.config import ModelConfig, OpenAIModelConfig
from megasim.model.features import blamed_field, parse_n_limit
from megasim.model.openai_backend import resolve_api_key

Status = Literal["ok", "warn", "fail", "skip"]
CHECKS = ("key", "reachable", "auth", "model", "n", "json_schema", "seed", "max_tokens")
_SCHEMA = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
_HELLO = [{"role": "user", "content": "Reply with the single word: ready"}]
_JSON = [{"role": "user", "content": 'Reply with the JSON object {"ok": true} and nothing else.'}]
_WORD = [{"role": "user", "content": "Write one random English word."}]


@dataclass(slots=True)
class Check:
    status: Status
    detail: str


@dataclass(slots=True)
class EndpointReport:
    """What one endpoint of one configured model can do."""

    model: str  # the config's name for the model
    served_name: str  # the name sent to the server
    base_url: str
    checks: dict[str, Check] = field(default_factory=dict)
    max_n: int | None = None  # samples per call the server takes (None: unknown)
    latency_s: float | None = None  # one small call, end to end
    throughput: dict[str, float] | None = None

    def set(self, name: str, status: Status, detail: str) -> None:
        self.checks[name] = Check(status, detail)

    @property
    def failed(self) -> list[str]:
        return [f"{name}: {c.detail}" for name, c in self.checks.items() if c.status == "fail"]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class _Probe:
    """One endpoint's client and report; each probe step fills in one or more checks."""

    def __init__(self, report: EndpointReport, client: httpx.AsyncClient) -> None:
        self.report = report
        self.client = client

    async def chat(self, **body: Any) -> tuple[int, dict[str, Any], float]:
        """``(status, JSON body, seconds)`` of one chat completion."""
        body.setdefault("model", self.report.served_name)
        started = time.perf_counter()
        response = await self.client.post("/chat/completions", json=body)
        elapsed = time.perf_counter() - started
        try:
            data = response.json()
        except ValueError:
            data = {"error": {"message": response.text[:200]}}
        return response.status_code, data if isinstance(data, dict) else {}, elapsed


def _message(data: dict[str, Any]) -> str:
    error = data.get("error", data.get("message", data))
    if isinstance(error, dict):
        error = error.get("message", error)
    return str(error)[:200]


def _texts(data: dict[str, Any]) -> list[str]:
    choices = data.get("choices")
    if not isinstance(choices, list):
        return []
    texts = []
    for choice in choices:
        message = choice.get("message") if isinstance(choice, dict) else None
        content = message.get("content") if isinstance(message, dict) else None
        texts.append(content if isinstance(content, str) else "")
    return texts


def _served_names(data: Any) -> list[str]:
    """Model ids from ``/v1/models`` (``data[].id``, llama.cpp's ``aliases``, Ollama's
    ``models[].name``)."""
    names: list[str] = []
    if isinstance(data, dict):
        for entry in data.get("data") or []:
            if isinstance(entry, dict):
                names.append(str(entry.get("id", "")))
                names.extend(str(a) for a in entry.get("aliases") or [])
        for entry in data.get("models") or []:
            if isinstance(entry, dict):
                names.append(str(entry.get("name", entry.get("model", ""))))
    return list(dict.fromkeys(n for n in names if n))


async def _basics(probe: _Probe) -> bool:
    """Reachable, key accepted, model served, one small call timed. False: stop here."""
    report = probe.report
    try:
        listed = await probe.client.get("/models")
    except httpx.HTTPError as exc:
        report.set("reachable", "fail", f"cannot connect: {type(exc).__name__}: {exc}"[:200])
        return False
    if listed.status_code in (401, 403):
        report.set("reachable", "ok", "answers")
        try:
            refusal = _message(listed.json())
        except ValueError:
            refusal = listed.text[:200]
        report.set("auth", "fail", f"key refused: HTTP {listed.status_code}: {refusal}")
        return False
    served: list[str] = []
    if listed.status_code == 200:
        try:
            served = _served_names(listed.json())
        except ValueError:
            served = []
    try:
        status, data, elapsed = await probe.chat(messages=_HELLO, max_tokens=4, temperature=0)
    except httpx.HTTPError as exc:
        report.set("reachable", "fail", f"no chat answer: {type(exc).__name__}: {exc}"[:200])
        return False
    report.set("reachable", "ok", f"HTTP {listed.status_code} on /models")
    if status in (401, 403):
        report.set("auth", "fail", f"key refused: HTTP {status}: {_message(data)}")
        return False
    report.set("auth", "ok", "accepted")
    name = report.served_name
    if status == 404 or (status == 400 and "model" in _message(data).lower()):
        known = f"; served: {', '.join(served[:5])}" if served else ""
        report.set("model", "fail", f"{name!r} not served: HTTP {status}: {_message(data)}{known}")
        return False
    if status != 200:
        problem = f"a plain call was refused: HTTP {status}: {_message(data)}"
        report.set("model", "fail" if status < 500 else "warn", problem)
        return status >= 500
    report.latency_s = elapsed
    if name in served:
        report.set("model", "ok", f"{name!r} listed in /models")
    else:
        listed_as = ", ".join(served[:3]) or "nothing listed"
        report.set("model", "warn", f"{name!r} not in /models ({listed_as}); answered anyway")
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
    out = usage.get("completion_tokens") if isinstance(usage, dict) else None
    if isinstance(out, int) and out > 4:
        report.set("max_tokens", "warn", f"ignored: {out} tokens for max_tokens 4")
    elif isinstance(out, int):
        report.set("max_tokens", "ok", "honoured")
    else:
        report.set("max_tokens", "warn", "no usage reported: cannot tell")
    return True


async def _n_limit(probe: _Probe, asked: int) -> None:
    """The most samples one call takes: ask ``asked``; a rejection names the limit (or it
    is halved); an answer with fewer choices is the limit (one: ``n`` ignored)."""
    report = probe.report
    n = asked
    for _ in range(8):
        status, data, _ = await probe.chat(messages=_HELLO, max_tokens=1, n=n)
        if status == 200:
            got = len(_texts(data))
            if got >= n:
                report.max_n = n
                how = "as asked" if n == asked else f"the server's limit (asked {asked})"
                report.set("n", "ok", f"n <= {n}, {how}")
            elif got <= 1:
                report.max_n = 1
                report.set("n", "warn", f"ignored: 1 choice for n={n}; merging sends one each")
            else:
                report.max_n = got
                report.set("n", "warn", f"caps: {got} choices for n={n}")
            return
        if n > 1 and blamed_field(_message(data), {"n": n}) == "n":
            limit = parse_n_limit(_message(data))
            n = limit if limit is not None and limit < n else max(1, n // 2)
            continue
        report.set("n", "warn", f"n={n} refused: HTTP {status}: {_message(data)}")
        return
    report.set("n", "warn", "no n accepted")  # pragma: no cover - 8 halvings reach 1


async def _json_schema(probe: _Probe) -> None:
    report = probe.report
    schema = {"type": "json_schema", "json_schema": {"name": "check", "schema": _SCHEMA}}
    for response_format, label in ((schema, "json_schema"), ({"type": "json_object"}, "json")):
        status, data, _ = await probe.chat(
            messages=_JSON, max_tokens=32, temperature=0, response_format=response_format
        )
        if status == 200:
            text = (_texts(data) or [""])[0]
            try:
                parsed = json.loads(text)
            except ValueError:
                parsed = None
            if isinstance(parsed, dict) and "ok" in parsed and label == "json_schema":
                report.set("json_schema", "ok", "honoured")
            elif isinstance(parsed, dict):
                report.set("json_schema", "warn", f"{label} honoured, json_schema not")
            else:
                report.set("json_schema", "warn", f"ignored ({label}): answered {text[:40]!r}")
            return
        if status >= 500 or blamed_field(_message(data), {"response_format": 1}) is None:
            break
    report.set("json_schema", "warn", f"rejected: HTTP {status}: {_message(data)}")


async def _seed(probe: _Probe) -> None:
    """Two identical seeded calls, one after the other: the same text means honoured."""
    answers = []
    for _ in range(2):
        status, data, _ = await probe.chat(messages=_WORD, max_tokens=12, temperature=1, seed=7)
        if status != 200:
            probe.report.set("seed", "warn", f"rejected: HTTP {status}: {_message(data)}")
            return
        answers.append((_texts(data) or [""])[0])
    if answers[0] == answers[1]:
        probe.report.set("seed", "ok", "honoured (same seed, same answer)")
    else:
        probe.report.set("seed", "warn", "ignored: same seed, different answers")


async def _throughput(probe: _Probe, concurrency: int, seconds: float) -> None:
    """Small calls from ``concurrency`` workers for ``seconds``: calls/s and tokens/s."""
    calls = tokens = errors = 0
    deadline = time.perf_counter() + seconds
    started = time.perf_counter()

    async def worker() -> None:
        nonlocal calls, tokens, errors
        while time.perf_counter() < deadline:
            status, data, _ = await probe.chat(messages=_WORD, max_tokens=16, temperature=1)
            if status != 200:
                errors += 1
                continue
            calls += 1
            usage = data.get("usage")
            if isinstance(usage, dict) and isinstance(usage.get("completion_tokens"), int):
                tokens += usage["completion_tokens"]

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    probe.report.throughput = {
        "concurrency": concurrency,
        "seconds": round(elapsed, 2),
        "calls_per_s": round(calls / elapsed, 2),
        "tokens_per_s": round(tokens / elapsed, 1),
        "errors": errors,
    }


async def probe_endpoint(
    model: str,
    served_name: str,
    base_url: str,
    api_key_env: str | None,
    *,
    max_n: int = 64,
    timeout_s: float = 30.0,
    throughput_s: float | None = None,
    concurrency: int = 16,
) -> EndpointReport:
    """Every check against one endpoint (a few small calls, one after the other)."""
    report = EndpointReport(model, served_name, base_url.rstrip("/"))
    try:
        key = resolve_api_key(model, api_key_env)
    except ModelSetupError as exc:
        report.set("key", "fail", str(exc))
        return report
    report.set("key", "ok", f"from ${api_key_env}" if api_key_env else "keyless endpoint")
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    timeout = httpx.Timeout(timeout_s, connect=min(timeout_s, 5.0))
    async with httpx.AsyncClient(
        base_url=report.base_url, headers=headers, timeout=timeout
    ) as client:
        probe = _Probe(report, client)
        try:
            if not await _basics(probe):
                return report
            await _n_limit(probe, max_n)
            await _json_schema(probe)
            await _seed(probe)
            if throughput_s:
                await _throughput(probe, concurrency, throughput_s)
        except httpx.HTTPError as exc:  # a check timed out or the server went away
            missing = [c for c in CHECKS if c not in report.checks]
            for name in missing:
                report.set(name, "warn", f"not checked: {type(exc).__name__}: {exc}"[:200])
    return report


@dataclass(slots=True)
class PreflightResult:
    """Every endpoint's report; ``problems`` are what would fail the run."""

    endpoints: list[EndpointReport]
    elapsed_s: float

    @property
    def problems(self) -> list[str]:
        found = []
        for report in self.endpoints:
            for problem in report.failed:
                found.append(f"model {report.model!r} at {report.base_url}: {problem}")
        return found

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "elapsed_s": round(self.elapsed_s, 3),
            "problems": self.problems,
            "endpoints": [r.to_json() for r in self.endpoints],
        }


def _spare_unreachable(reports: list[EndpointReport]) -> None:
    """In a pool, an unreachable endpoint is taken out and probed back while the others
    serve: a warning, not a failure, when at least one endpoint of the model works."""
    working = any(not r.failed for r in reports)
    if not working:
        return
    for report in reports:
        check = report.checks.get("reachable")
        if check is not None and check.status == "fail":
            report.set("reachable", "warn", check.detail + " (the pool runs without it)")


async def preflight(
    models: Mapping[str, ModelConfig],
    names: Iterable[str] | None = None,
    throughput_s: float | None = None,
) -> PreflightResult:
    """Probe every endpoint of the ``openai`` models among ``names`` (None: all), all
    endpoints at once; other backends need no network and are skipped."""
    started = time.perf_counter()
    wanted = sorted(models if names is None else set(names) & set(models))
    jobs: list[tuple[str, Awaitable[EndpointReport]]] = []
    for name in wanted:
        config = models[name]
        if not isinstance(config, OpenAIModelConfig):
            continue
        for (url, cap), max_n in zip(config.endpoint_list(), config.endpoint_max_n(), strict=True):
            probe = probe_endpoint(
                name,
                config.model,
                url,
                config.api_key_env,
                max_n=max_n,
                timeout_s=min(config.timeout_s, 30.0),
                throughput_s=throughput_s,
                concurrency=min(cap, 32),
            )
            jobs.append((name, probe))
    reports = list(await asyncio.gather(*(job for _, job in jobs)))
    for name in wanted:
        _spare_unreachable([r for r in reports if r.model == name])
    return PreflightResult(reports, time.perf_counter() - started)


def write_report(path: Path, report: Mapping[str, Any]) -> None:
    """The preflight report as JSON (``runs/<id>/preflight.json``), written atomically."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(tmp, path)
