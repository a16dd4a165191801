"""Interviews and surveys: prompts carry persona and memory, answers are checked and
stored, and the run itself is left untouched."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path

import pytest

from megasim.inquiry.ask import ask_agents, read_inquiries, sample_ids
from megasim.inquiry.base import InquiryError, Question
from megasim.model.base import ChatRequest
from megasim.model.scripted import ScriptedModel
from megasim.run import load_run_config
from tests.studio.conftest import make_run


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run(tmp_path_factory.mktemp("runs"), "inq", size=200, rounds=2)


def _digest(run: Path) -> str:
    files = sorted(p for p in run.rglob("*") if p.is_file() and "inquiries" not in p.parts)
    return hashlib.sha256(b"".join(p.read_bytes() for p in files)).hexdigest()


def test_survey_options_prompt_and_storage(run: Path) -> None:
    seen: list[ChatRequest] = []

    def responder(request: ChatRequest) -> str:
        seen.append(request)
        return ['{"answer": "Yes"}', "I would say no.", "maybe"][(request.agent_id or 0) % 3]

    model = ScriptedModel("scripted", responder=responder)
    config = load_run_config(run)
    before = _digest(run)
    ids = sample_ids(list(range(200)), 30, seed=3)
    assert ids == sample_ids(list(range(200)), 30, seed=3)
    assert len(ids) == 30
    question = Question("Do you trust the others?", ("yes", "no"))
    table = asyncio.run(
        ask_agents(run, config, question, ids, 3, models={"quick": model, "steady": model})
    )
    assert _digest(run) == before  # the run's own files are untouched
    rows = table.to_pylist()
    assert [r["agent_id"] for r in rows] == ids
    for row in rows:
        expected = {0: "yes", 1: "no", 2: None}[row["agent_id"] % 3]
        assert row["answer"] == expected
        assert row["valid"] == (expected is not None)
        assert row["backend"] == "surrogate"
        assert row["kind"] == "survey"
    system = seen[0].messages[0].content
    assert "age:" in system
    assert "education:" in system
    assert "in step 2 you answered" in system  # memory of its decisions
    assert seen[0].json_schema["properties"]["answer"]["enum"] == ["yes", "no"]  # type: ignore[index]
    stored = read_inquiries(run).to_pylist()
    assert len(stored) == 30
    assert json.loads(stored[0]["prompt"])[1]["content"].startswith("Do you")


def test_number_range_is_checked_and_interview_is_free_text(run: Path) -> None:
    answers = {1: '{"answer": 250}', 2: '{"answer": 42.5}'}
    model = ScriptedModel("s", responder=lambda r: answers.get(r.agent_id or 0, "Fine, thanks."))
    config = load_run_config(run)
    models = {"quick": model, "steady": model}
    rows = asyncio.run(
        ask_agents(run, config, Question("How sure?", (), 0, 100), [1, 2], 0, models)
    ).to_pylist()
    assert rows[0]["valid"] is False
    assert "out of range" in rows[0]["error"]
    assert rows[1]["value"] == 42.5
    one = asyncio.run(ask_agents(run, config, Question("How are you?"), [5], 0, models))
    assert one.to_pylist()[0]["answer"] == "Fine, thanks."
    assert one["kind"][0].as_py() == "interview"


def test_surrogate_answers_are_labelled(run: Path) -> None:
    config = load_run_config(run)
    rows = asyncio.run(
        ask_agents(run, config, Question("Pick", ("a", "b", "c")), [0, 1, 2, 3], 1)
    ).to_pylist()
    assert all(r["raw_text"].startswith("[surrogate]") and r["valid"] for r in rows)


def test_bad_questions_and_unknown_agents(run: Path) -> None:
    with pytest.raises(InquiryError, match="not both"):
        Question("q", ("a",), 0, 1)
    with pytest.raises(InquiryError, match="empty range"):
        Question("q", (), 5, 1)
    with pytest.raises(InquiryError, match="distinct"):
        Question("q", ("a", "a"))
    with pytest.raises(InquiryError, match="no agents"):
        asyncio.run(ask_agents(run, load_run_config(run), Question("q"), [10_000], 0))


def test_options_match_whole_words_and_json_answers_exactly() -> None:
    from megasim.inquiry.prompt import read_answer

    question = Question("Trust?", ("yes", "no"))
    assert read_answer(question, "No, never.").answer == "no"
    assert not read_answer(question, "I do not know").valid
    assert not read_answer(question, "Not sure").valid
    assert not read_answer(question, '{"answer": "unknown"}').valid
    assert read_answer(question, '{"answer": "YES"}').answer == "yes"
    assert not read_answer(question, "yes and no").valid
