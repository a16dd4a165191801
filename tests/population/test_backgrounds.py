"""The background pipeline with scripted models: statuses, retries, duplicates, resume."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from megasim.model.base import ChatRequest, ChatResponse, ModelError
from megasim.model.scripted import ScriptedModel
from megasim.population import load_population_spec, sample_population
from megasim.population.backgrounds import (
    BackgroundModelError,
    BackgroundReport,
    generate_backgrounds,
    merge_backgrounds,
    pending_agents,
)
from megasim.population.backgrounds_prompt import compose_background
from megasim.population.backgrounds_sidecar import (
    BackgroundRecord,
    SidecarWriter,
    read_sidecar,
    write_parquet_atomic,
)
from megasim.seeding import derive_seed

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "populations"
WORDS = [
    a + b
    for a in ("ka", "lo", "mi", "su", "te", "ra")
    for b in ("ne", "po", "ri", "va", "zu", "do")
]
"""36 made-up words: stories drawn from them have no pronouns, ages or real occupations."""


@pytest.fixture(scope="module")
def census() -> pa.Table:
    spec = load_population_spec(EXAMPLES / "census.yaml")
    return sample_population(spec, seed=3, size=30, defaults={"model": "m", "prompt_variant": "P5"})


def unique_story(request: ChatRequest) -> str:
    """Words drawn with the request's seed: a different story per (agent, attempt)."""
    persona = request.persona or {}
    rng = random.Random(request.seed)
    words = " ".join(rng.choice(WORDS) for _ in range(25))
    return f"Works as a {persona.get('occupation')} with a {persona.get('education')}, {words}."


def valid(request: ChatRequest, story: str | None = None, **overrides: Any) -> str:
    persona = request.persona or {}
    data: dict[str, Any] = {
        "name": f"Person {request.agent_id}",
        "personality": "Calm, curious and kind.",
        "story": story if story is not None else unique_story(request),
        "age": persona.get("age"),
    }
    data.update(overrides)
    return json.dumps(data)


def attempt(request: ChatRequest) -> int:
    return int(request.meta["attempt"])


def run(
    table: pa.Table,
    responder: Callable[[ChatRequest], str],
    sidecar: Path,
    **kwargs: Any,
) -> tuple[BackgroundReport, ScriptedModel]:
    model = ScriptedModel(name="writer", responder=responder)
    options: dict[str, Any] = {"seed": 11, "retries": 2, "sidecar": sidecar}
    options.update(kwargs)
    return asyncio.run(generate_backgrounds(table, model, **options)), model


def rows_by_agent(table: pa.Table) -> dict[int, dict[str, Any]]:
    rows = table.to_pylist()
    ids = [int(r["agent_id"]) for r in rows]
    assert sorted(ids) == sorted(set(ids)), "an agent appears twice"
    return {int(r["agent_id"]): r for r in rows}


def test_valid_answers_are_all_accepted(census: pa.Table, tmp_path: Path) -> None:
    sidecar = tmp_path / "pop.parquet.backgrounds.jsonl"
    seen: list[tuple[int, int | None]] = []

    def responder(request: ChatRequest) -> str:
        seen.append((int(request.agent_id or 0), request.seed))
        assert request.json_schema is not None
        assert request.json_schema["properties"]["age"]["minimum"] == request.persona["age"] - 1  # type: ignore[index]
        return valid(request)

    report, model = run(census, responder, sidecar)
    assert (report.ok, report.rejected, report.retries, report.duplicates) == (30, 0, 0, 0)
    assert report.calls == model.calls == 30
    assert report.todo == 30
    assert report.pending == 0
    assert report.warnings == 0  # the stories name occupation and education
    assert seen == [(a, derive_seed(11, a, 0)) for a in census.column("agent_id").to_pylist()]
    assert len(list(read_sidecar(sidecar))) == 30
    merged = rows_by_agent(merge_backgrounds(census, sidecar))
    assert len(merged) == 30
    row = merged[0]
    data = json.loads(row["background_json"])
    assert row["background"] == compose_background(data["name"], data["personality"], data["story"])
    assert row["background_status"] == "ok"
    assert row["background_model"] == "writer"
    assert row["background_attempts"] == 1
    assert row["background_error"] is None
    assert data["age"] == row["age"]


def test_inconsistent_age_is_retried_with_a_new_seed(census: pa.Table, tmp_path: Path) -> None:
    seeds: dict[int, list[int | None]] = {}

    def responder(request: ChatRequest) -> str:
        seeds.setdefault(int(request.agent_id or 0), []).append(request.seed)
        age = (request.persona or {})["age"]
        return valid(request, age=age + 10) if attempt(request) == 0 else valid(request)

    report, _ = run(census, responder, tmp_path / "s.jsonl")
    assert (report.ok, report.rejected, report.retries, report.calls) == (30, 0, 30, 60)
    for agent, agent_seeds in seeds.items():
        assert agent_seeds == [derive_seed(11, agent, 0), derive_seed(11, agent, 1)]
    merged = rows_by_agent(merge_backgrounds(census, tmp_path / "s.jsonl"))
    assert {r["background_attempts"] for r in merged.values()} == {2}


def test_garbage_is_flagged_rejected_never_dropped(census: pa.Table, tmp_path: Path) -> None:
    report, model = run(census, lambda r: "I am a teapot.", tmp_path / "s.jsonl", retries=1)
    assert (report.ok, report.rejected, report.retries, model.calls) == (0, 30, 30, 60)
    merged = rows_by_agent(merge_backgrounds(census, tmp_path / "s.jsonl"))
    assert len(merged) == 30
    for row in merged.values():
        assert row["background_status"] == "rejected"
        assert row["background"] is None
        assert row["background_json"] == "I am a teapot."  # the last answer, for inspection
        assert row["background_attempts"] == 2
        assert row["background_error"] == (
            "attempt 1: parse: no JSON object in the answer | "
            "attempt 2: parse: no JSON object in the answer"
        )


def test_near_duplicates_are_regenerated(census: pa.Table, tmp_path: Path) -> None:
    same = "Grew up by the river in a quiet farm town, loved chess and books and music."

    def responder(request: ChatRequest) -> str:
        return valid(request, story=same) if attempt(request) == 0 else valid(request)

    report, _ = run(census, responder, tmp_path / "s.jsonl")
    assert (report.ok, report.rejected) == (30, 0)
    assert report.duplicates == 29  # the first agent's story is accepted, the others repeat it
    assert report.retries == 29
    merged = rows_by_agent(merge_backgrounds(census, tmp_path / "s.jsonl"))
    first = census.column("agent_id")[0].as_py()
    assert merged[first]["background_attempts"] == 1
    stories = [json.loads(r["background_json"])["story"] for r in merged.values()]
    assert stories.count(same) == 1


def test_duplicates_that_persist_end_rejected(census: pa.Table, tmp_path: Path) -> None:
    same = "Grew up by the river in a quiet farm town, loved chess and books and music."
    report, _ = run(census, lambda r: valid(r, story=same), tmp_path / "s.jsonl", retries=2)
    assert (report.ok, report.rejected, report.duplicates, report.retries) == (1, 29, 87, 58)
    merged = merge_backgrounds(census, tmp_path / "s.jsonl").to_pylist()
    errors = [r["background_error"] for r in merged if r["background_status"] == "rejected"]
    assert all(e.count("near-duplicate of agent") == 3 for e in errors)


def test_mixed_answers_every_row_exactly_once(census: pa.Table, tmp_path: Path) -> None:
    def responder(request: ChatRequest) -> str:
        kind = int(request.agent_id or 0) % 4
        if kind == 0:
            return "```json\n" + valid(request) + "\n```"
        if kind == 1:
            return valid(request, age=3)  # always the wrong age
        if kind == 2:
            return "no idea" if attempt(request) < 2 else valid(request)
        return valid(request, story="He sailed. " + unique_story(request))  # pronouns

    report, _ = run(census, responder, tmp_path / "s.jsonl")
    merged = rows_by_agent(merge_backgrounds(census, tmp_path / "s.jsonl"))
    assert len(merged) == 30
    for agent, row in merged.items():
        kind = agent % 4
        gender = row["gender"]
        if kind in (0, 2) or (kind == 3 and gender != "female"):
            assert row["background_status"] == "ok", row
            assert row["background_attempts"] == (3 if kind == 2 else 1)
        else:
            assert row["background_status"] == "rejected", row
            reason = "age: states 3" if kind == 1 else "only male pronouns"
            assert reason in row["background_error"]
    assert report.ok + report.rejected == 30


def test_resume_after_keyboard_interrupt(census: pa.Table, tmp_path: Path) -> None:
    sidecar = tmp_path / "s.jsonl"
    calls = [0]

    def interrupted(request: ChatRequest) -> str:
        calls[0] += 1
        if calls[0] > 12:
            raise KeyboardInterrupt
        return valid(request)

    with pytest.raises(KeyboardInterrupt):
        run(census, interrupted, sidecar)
    first = list(read_sidecar(sidecar))
    assert len(first) == 12
    assert int(pending_agents(census, sidecar).sum()) == 18
    report, model = run(census, valid, sidecar)
    assert (report.skipped, report.todo, report.ok, model.calls) == (12, 18, 18, 18)
    lines = list(read_sidecar(sidecar))
    assert sorted(r.agent_id for r in lines) == sorted(census.column("agent_id").to_pylist())
    merged = rows_by_agent(merge_backgrounds(census, sidecar))
    for agent, row in merged.items():  # the right text: attempt 1 of this agent, seed 11
        request = ChatRequest(messages=(), seed=derive_seed(11, agent, 0), persona=row)
        assert json.loads(row["background_json"])["story"] == unique_story(request)
        assert row["background_status"] == "ok"


class SlowModel:
    """An awaiting model (like a server): lets several agents be in flight at once."""

    def __init__(self) -> None:
        self.name = "slow"
        self.immediate = False
        self.calls = 0

    async def complete(self, request: ChatRequest) -> ChatResponse:
        self.calls += 1
        await asyncio.sleep(0.001 * (int(request.agent_id or 0) % 3))
        return ChatResponse(text=valid(request), model=self.name, tokens_in=5, tokens_out=7)

    async def aclose(self) -> None:
        return None


async def test_resume_after_cancellation(census: pa.Table, tmp_path: Path) -> None:
    sidecar = tmp_path / "s.jsonl"
    holder: list[asyncio.Task[BackgroundReport]] = []

    def cancel_after_ten(report: BackgroundReport) -> None:
        if report.finished == 10:
            holder[0].cancel()

    model = SlowModel()
    options: dict[str, Any] = {"seed": 11, "retries": 2, "sidecar": sidecar, "concurrency": 6}
    holder.append(
        asyncio.create_task(
            generate_backgrounds(census, model, progress=cancel_after_ten, **options)
        )
    )
    with pytest.raises(asyncio.CancelledError):
        await holder[0]
    done = len(list(read_sidecar(sidecar)))
    assert 10 <= done < 30
    report = await generate_backgrounds(census, model, **options)
    assert (report.skipped, report.ok) == (done, 30 - done)
    assert report.tokens_in == 5 * report.calls
    merged = rows_by_agent(merge_backgrounds(census, sidecar))
    assert {r["background_status"] for r in merged.values()} == {"ok"}
    assert len(list(read_sidecar(sidecar))) == 30


def test_model_errors_leave_agents_pending(census: pa.Table, tmp_path: Path) -> None:
    def broken(request: ChatRequest) -> str:
        raise ModelError("connection refused")

    sidecar = tmp_path / "s.jsonl"
    report, model = run(census, broken, sidecar, retries=1, give_up_after=100)
    assert (report.ok, report.rejected, report.no_answer, model.calls) == (0, 0, 30, 60)
    assert report.pending == 30
    assert list(read_sidecar(sidecar)) == []
    statuses = merge_backgrounds(census, sidecar).column("background_status").to_pylist()
    assert statuses == ["pending"] * 30
    with pytest.raises(BackgroundModelError, match="no answer for 5 agents in a row"):
        run(census, broken, sidecar, retries=0, give_up_after=5)


def test_limit_then_continue(census: pa.Table, tmp_path: Path) -> None:
    sidecar = tmp_path / "s.jsonl"
    report, _ = run(census, valid, sidecar, limit=10)
    assert (report.todo, report.ok, report.pending) == (10, 10, 20)
    merged = merge_backgrounds(census, sidecar)
    assert merged.column("background_status").to_pylist().count("pending") == 20
    # the merged table is a valid input: its ok rows are skipped, pending ones are done
    out = tmp_path / "out.parquet"
    write_parquet_atomic(merged, out)
    sidecar.unlink()
    report, model = run(merged, valid, sidecar)
    assert (report.skipped, report.ok, model.calls) == (10, 20, 20)
    final = rows_by_agent(merge_backgrounds(merged, sidecar))
    assert {r["background_status"] for r in final.values()} == {"ok"}
    stories = [json.loads(r["background_json"])["story"] for r in final.values()]
    assert len(set(stories)) == 30


def test_accepted_input_stories_count_for_duplicates(census: pa.Table, tmp_path: Path) -> None:
    story = "Grew up by the river in a quiet farm town, loved chess and books and music."
    texts = [story] + [None] * 29
    table = census.append_column("background", pa.array(texts, pa.string()))
    report, _ = run(table, lambda r: valid(r, story=story), tmp_path / "s.jsonl", retries=0)
    assert (report.skipped, report.ok, report.rejected) == (1, 0, 29)  # hand-written kept
    merged = merge_backgrounds(table, tmp_path / "s.jsonl").to_pylist()
    assert merged[0]["background"] == story
    assert merged[0]["background_status"] == "ok"


def test_torn_sidecar_line_is_repaired(tmp_path: Path) -> None:
    sidecar = tmp_path / "s.jsonl"
    record = BackgroundRecord(1, "ok", "Name: A.", "{}", None, "m", 1, story="A story.")
    with SidecarWriter(sidecar) as writer:
        writer.write(record)
    with sidecar.open("a") as f:
        f.write('{"agent_id": 2, "background_st')  # killed mid-line
    assert [r.agent_id for r in read_sidecar(sidecar)] == [1]
    with SidecarWriter(sidecar) as writer:
        writer.write(BackgroundRecord(3, "rejected", None, "x", "bad", "m", 3))
    assert [r.agent_id for r in read_sidecar(sidecar)] == [1, 3]
    assert sidecar.read_text().count("\n") == 2


def test_merge_keeps_columns_metadata_and_last_line(census: pa.Table, tmp_path: Path) -> None:
    sidecar = tmp_path / "s.jsonl"
    first = census.column("agent_id")[0].as_py()
    with SidecarWriter(sidecar) as writer:
        writer.write(BackgroundRecord(first, "rejected", None, "x", "bad", "m", 3))
        writer.write(BackgroundRecord(first, "ok", "Name: B.", "{}", None, "m", 2))
        writer.write(BackgroundRecord(10**9, "ok", "elsewhere", "{}", None, "m", 1))
    merged = merge_backgrounds(census, sidecar)
    assert merged.column_names[: census.num_columns] == census.column_names
    assert merged.schema.metadata == census.schema.metadata
    assert merged.num_rows == census.num_rows
    row = merged.slice(0, 1).to_pylist()[0]
    assert (row["background"], row["background_status"], row["background_attempts"]) == (
        "Name: B.",
        "ok",
        2,
    )
    assert merged.column("background_status").to_pylist()[1:] == ["pending"] * 29
    assert merged.schema.field("background_attempts").type == pa.int32()


CHILD = """
import asyncio, json, signal, sys
# a shell's background job starts with SIGINT ignored, and Python keeps it so: restore it
signal.signal(signal.SIGINT, signal.default_int_handler)
from pathlib import Path
import pyarrow.parquet as pq
from megasim.model.base import ChatResponse
from megasim.population.backgrounds import generate_backgrounds

class Slow:
    name = "slow"
    immediate = False
    async def complete(self, request):
        await asyncio.sleep(0.05)  # 300 agents take ~5 s: the signal comes well before the end
        story = "Agent number %d grew up in town %d and loves chess." % (
            request.agent_id, request.agent_id * 7)
        data = {"name": "P", "personality": "Calm.", "story": story, "age": request.persona["age"]}
        return ChatResponse(text=json.dumps(data), model="slow")
    async def aclose(self):
        pass

table = pq.read_table(sys.argv[1])
print("started", flush=True)
asyncio.run(generate_backgrounds(table, Slow(), seed=1, retries=0, sidecar=Path(sys.argv[2]),
                                 concurrency=3))
"""


@pytest.mark.parametrize("signal_name", ["SIGINT", "SIGKILL"])
def test_killed_process_loses_and_duplicates_nothing(
    census: pa.Table, tmp_path: Path, signal_name: str
) -> None:
    import signal
    import subprocess
    import sys
    import time

    import pyarrow.parquet as pq

    big = pa.concat_tables([census] * 10)  # 300 agents, ~5 s at 3 concurrent x 50 ms
    big = big.set_column(0, "agent_id", pa.array(range(300), pa.int64()))
    pop, sidecar = tmp_path / "pop.parquet", tmp_path / "pop.parquet.backgrounds.jsonl"
    pq.write_table(big, pop)
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(pop), str(sidecar)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60  # a loaded machine may start Python slowly
    while time.monotonic() < deadline:
        if sidecar.exists() and sidecar.read_text().count("\n") >= 20:
            break
        time.sleep(0.02)
    child.send_signal(getattr(signal, signal_name))
    _, stderr = child.communicate(timeout=30)
    assert child.returncode != 0, stderr
    if signal_name == "SIGINT":
        assert "KeyboardInterrupt" in stderr
    done = len(list(read_sidecar(sidecar)))
    assert 20 <= done < 300

    def story(request: ChatRequest) -> str:
        agent = int(request.agent_id or 0)
        text = f"Agent number {agent} grew up in town {agent * 7} and loves chess."
        return valid(request, story=text)

    report, model = run(big, story, sidecar, retries=0)
    assert (report.skipped, report.ok, model.calls) == (done, 300 - done, 300 - done)
    merged = rows_by_agent(merge_backgrounds(big, sidecar))
    assert len(merged) == 300
    for agent, row in merged.items():
        assert row["background_status"] == "ok"
        assert json.loads(row["background_json"])["story"] == (
            f"Agent number {agent} grew up in town {agent * 7} and loves chess."
        )
