"""The write-ahead log of model answers (model/journal.py): logged answers are replayed,
never re-asked; a changed request, a failed call or another shard's agent is not."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from pydantic import TypeAdapter

from megasim.model.base import ChatMessage, ChatRequest, ChatResponse
from megasim.model.config import ModelConfig
from megasim.model.factory import build_models
from megasim.model.journal import JournalingModel, StepJournal, request_digest
from megasim.model.merge import MergingModel, member_order
from megasim.model.wire import fan_out
from megasim.store.run_dir import RunDirectory


class Counting:
    """Answers f"{text}#{call}" and counts calls; ``fail`` answers with an error."""

    name = "m"
    immediate = False

    def __init__(self, fail: bool = False) -> None:
        self.calls = 0
        self.fail = fail

    async def complete(self, request: ChatRequest) -> ChatResponse:
        self.calls += 1
        if self.fail:
            return ChatResponse("", self.name, error="HTTP 503")
        text = request.messages[-1].content
        return ChatResponse(f"{text}#{self.calls}", self.name, 7, 3, 0.25, tokens_cached=2)

    async def aclose(self) -> None:
        return None


def req(text: str, agent: int | None, seed: int = 1) -> ChatRequest:
    return ChatRequest((ChatMessage("user", text),), seed=seed, agent_id=agent)


async def play(run: RunDirectory, requests: list[ChatRequest], **journal: object) -> Counting:
    """One process's step 1: the requests in order, through a fresh journal and model."""
    inner = Counting()
    log = StepJournal(run, "local", **journal)  # type: ignore[arg-type]
    model = JournalingModel(inner, log)
    log.begin(1)
    for request in requests:
        await model.complete(request)
    log.end()
    return inner


async def test_answers_are_replayed_by_a_rerun_of_the_step(tmp_path: Path) -> None:
    run = RunDirectory(tmp_path)
    inner = Counting()
    log = StepJournal(run, "local")
    model = JournalingModel(inner, log)
    log.begin(1)
    first = [await model.complete(r) for r in (req("a", 1), req("b", 1), req("a", 2))]
    log.end()
    assert inner.calls == 3
    assert len((run.journal_dir(1) / "local.jsonl").read_text().splitlines()) == 3

    again = Counting()  # a new process after a crash: nothing is asked again
    log2 = StepJournal(run, "shard=0")
    model2 = JournalingModel(again, log2)
    log2.begin(1)
    second = [await model2.complete(r) for r in (req("a", 1), req("b", 1), req("a", 2))]
    assert again.calls == 0
    assert log2.replayed == 3
    assert [(r.text, r.tokens_in, r.tokens_out, r.latency_s) for r in second] == [
        (r.text, r.tokens_in, r.tokens_out, r.latency_s) for r in first
    ]
    assert second[0].tokens_cached == 2
    assert model2.metrics_snapshot()["journal"]["replayed"] == 3


async def test_a_changed_request_or_another_step_is_asked(tmp_path: Path) -> None:
    run = RunDirectory(tmp_path)
    await play(run, [req("a", 1)])
    assert (await play(run, [req("a", 1, seed=2)])).calls == 1  # other seed: other digest
    assert (await play(run, [req("z", 1)])).calls == 1
    inner = Counting()
    log = StepJournal(run, "local")
    model = JournalingModel(inner, log)
    log.begin(2)
    await model.complete(req("a", 1))
    assert inner.calls == 1


async def test_only_the_nth_call_of_an_agent_matches(tmp_path: Path) -> None:
    """An agent's second identical call is its own call (a repair, an extraction)."""
    run = RunDirectory(tmp_path)
    await play(run, [req("a", 1)])
    assert (await play(run, [req("a", 1), req("a", 1)])).calls == 1
    assert (await play(run, [req("a", 1), req("a", 1), req("a", 1)])).calls == 1  # the 3rd


async def test_failed_calls_and_unattributed_requests_are_not_logged(tmp_path: Path) -> None:
    run = RunDirectory(tmp_path)
    log = StepJournal(run, "local")
    model = JournalingModel(Counting(fail=True), log)
    log.begin(1)
    assert (await model.complete(req("a", 1))).error == "HTTP 503"
    plain = JournalingModel(Counting(), log)
    await plain.complete(req("a", None))  # an interview: no agent id, passes through
    log.end()
    assert log.recorded == 0
    assert not run.journal_dir(1).exists()


async def test_a_cut_last_line_is_skipped_and_the_rest_replayed(tmp_path: Path) -> None:
    run = RunDirectory(tmp_path)
    await play(run, [req("a", 1), req("b", 2)])
    path = run.journal_dir(1) / "local.jsonl"
    with path.open("ab") as handle:
        handle.write(b'{"model":"m","agent_id":3,"ca')  # SIGKILL mid-line
    (run.journal_dir(1) / "garbage.jsonl").write_bytes(b"\xff\xfe not json\n[1]\n")
    log = StepJournal(run, "local")
    inner = Counting()
    model = JournalingModel(inner, log)
    log.begin(1)
    await model.complete(req("a", 1))
    await model.complete(req("b", 2))
    assert inner.calls == 0
    assert log.damaged_lines == 3


async def test_a_shard_keeps_only_its_own_agents(tmp_path: Path) -> None:
    run = RunDirectory(tmp_path)
    await play(run, [req("a", 1), req("b", 2)])
    log = StepJournal(run, "shard=1", agent_ids=frozenset({2}))
    log.begin(1)
    assert log.lookup(("m", 2, 0, request_digest(req("b", 2)))) is not None
    assert log.lookup(("m", 1, 0, request_digest(req("a", 1)))) is None


def test_drop_journals_removes_checkpointed_steps_only(tmp_path: Path) -> None:
    run = RunDirectory(tmp_path)
    for step in (1, 2, 3):
        run.journal_dir(step).mkdir(parents=True)
    (tmp_path / "wal" / "step=x").mkdir()
    run.drop_journals(2)
    assert sorted(p.name for p in (tmp_path / "wal").iterdir()) == ["step=3", "step=x"]
    (tmp_path / "wal" / "step=x").rmdir()
    run.drop_journals(3)
    assert not (tmp_path / "wal").exists()  # a finished run keeps no empty folder
    RunDirectory(tmp_path / "none").drop_journals(5)  # no wal/ folder: nothing to do


def test_only_llm_backends_are_journaled(tmp_path: Path) -> None:
    configs = TypeAdapter(dict[str, ModelConfig]).validate_python(
        {
            "s": {"backend": "surrogate"},
            "t": {"backend": "scripted", "responses": ["5"]},
            "o": {
                "backend": "openai",
                "base_url": "http://127.0.0.1:9/v1",
                "model": "m",
                "api_key_env": None,
            },
        }
    )
    log = StepJournal(RunDirectory(tmp_path), "local")
    models = build_models(configs, {"s", "t", "o"}, journal=log)
    assert isinstance(models["o"], JournalingModel)
    assert not isinstance(models["s"], JournalingModel)
    assert not isinstance(models["t"], JournalingModel)
    assert log.clients == 1
    assert not isinstance(build_models(configs, {"o"})["o"], JournalingModel)
    for model in models.values():
        asyncio.run(model.aclose())


def test_journal_lines_are_plain_json(tmp_path: Path) -> None:
    run = RunDirectory(tmp_path)
    asyncio.run(play(run, [req("a", 4)]))
    (line,) = (run.journal_dir(1) / "local.jsonl").read_text().splitlines()
    record = json.loads(line)
    assert (record["agent_id"], record["call"], record["text"]) == (4, 0, "a#1")


class NModel:
    """Answers choice i of a call with f"{seed}-{i}" (like a seeded server)."""

    name = "n"
    immediate = False

    async def complete(self, request: ChatRequest) -> ChatResponse:
        return (await self.complete_n(request, 1))[0]

    async def complete_n(self, request: ChatRequest, n: int) -> list[ChatResponse]:
        await asyncio.sleep(0.001)
        return fan_out([f"{request.seed}-{i}" for i in range(n)], self.name, 5, n, 0.001)

    async def aclose(self) -> None:
        return None


async def test_merged_samples_do_not_depend_on_arrival_order() -> None:
    """The same group in any arrival order: every agent gets the same sample."""
    requests = [req("same", agent, seed=1000 - agent) for agent in range(8)]
    answers = []
    for order in (requests, requests[::-1], requests[3:] + requests[:3]):
        model = MergingModel(NModel(), window_s=0.01, max_n=64)
        got = await asyncio.gather(*(model.complete(r) for r in order))
        answers.append({r.agent_id: g.text for r, g in zip(order, got, strict=True)})
    assert answers[0] == answers[1] == answers[2]
    assert answers[0][7] == "993-0"  # the lowest seed leads and gets choice 0
    assert member_order([req("x", 2, 5), req("x", 1, 5), req("x", 9, 1)]) == [2, 1, 0]
