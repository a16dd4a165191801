"""GuessAgent and the scenario: one call per decision, failures recorded, prompts cached."""

from __future__ import annotations

import pyarrow as pa

from megasim.agent import PersonaTable
from megasim.env.guess_game import GuessGame
from megasim.model.base import ChatRequest, ChatResponse
from megasim.model.scripted import ScriptedModel
from megasim.scenarios.guess_two_thirds import REPAIR_SEPARATOR, GuessAgent, PromptBook


class FailingModel:
    name = "failing"
    immediate = True

    async def complete(self, request: ChatRequest) -> ChatResponse:
        return ChatResponse(text="", model=self.name, error="failed after 4 attempts: 503")

    async def aclose(self) -> None:
        return None


def make_agents(model: object, variants: list[str]) -> list[GuessAgent]:
    table = pa.table(
        {
            "agent_id": list(range(len(variants))),
            "group": [0] * len(variants),
            "background": [f"person {i}" for i in range(len(variants))],
        }
    )
    personas = PersonaTable(table)
    book = PromptBook(seed=1, max_tokens={"P1": 7})
    return [
        GuessAgent(i, i, personas, model, 0, v, book)  # type: ignore[arg-type]
        for i, v in enumerate(variants)
    ]


async def test_agent_parses_and_records() -> None:
    seen: list[ChatRequest] = []

    def responder(request: ChatRequest) -> str:
        seen.append(request)
        return '{"reasoning": "x", "guess": 22}' if request.agent_id else "I pick 250"

    game = GuessGame([2], rounds=2)
    agents = make_agents(ScriptedModel(responder=responder), ["P1", "P2"])
    bad = await agents[0].act(game.observe(agents[0]))
    good = await agents[1].act(game.observe(agents[1]))
    assert (good.value, good.valid, good.error) == (22.0, True, None)
    assert good.raw_text == '{"reasoning": "x", "guess": 22}'
    assert bad.valid is False
    assert bad.value is None
    assert bad.error is not None
    assert "out of range" in bad.error
    assert seen[0].max_tokens == 7  # config override for P1
    assert seen[1].max_tokens > 7
    assert seen[0].seed != seen[1].seed  # each agent samples independently


async def test_unusable_answer_gets_one_repair_call() -> None:
    answers = iter(["I refuse to play", '{"guess": 12}'])
    requests: list[ChatRequest] = []

    def responder(request: ChatRequest) -> str:
        requests.append(request)
        return next(answers)

    game = GuessGame([1], rounds=1)
    (agent,) = make_agents(ScriptedModel(responder=responder), ["P2"])
    decision = await agent.act(game.observe(agent))
    assert len(requests) == 2
    assert requests[1].messages[-2].content == "I refuse to play"  # the model sees its answer
    assert "could not be used" in requests[1].messages[-1].content
    assert (decision.value, decision.valid, decision.error) == (12.0, True, None)
    assert decision.raw_text == f"I refuse to play{REPAIR_SEPARATOR}" + '{"guess": 12}'
    assert decision.prompt_id.endswith("+repair")


async def test_repair_can_be_turned_off() -> None:
    model = ScriptedModel(responses=["nope"])
    game = GuessGame([1], rounds=1)
    (agent,) = make_agents(model, ["P1"])
    agent.book.repair = False
    decision = await agent.act(game.observe(agent))
    assert model.calls == 1
    assert decision.valid is False


async def test_model_failure_is_recorded_not_raised() -> None:
    game = GuessGame([1], rounds=1)
    (agent,) = make_agents(FailingModel(), ["P1"])
    decision = await agent.act(game.observe(agent))
    assert decision.valid is False
    assert decision.raw_text is None
    assert decision.error == "model: failed after 4 attempts: 503"


async def test_prompts_shared_except_p5() -> None:
    requests: list[ChatRequest] = []
    model = ScriptedModel(responder=lambda r: requests.append(r) or "1")  # type: ignore[func-returns-value]
    game = GuessGame([4], rounds=1)
    agents = make_agents(model, ["P1", "P1", "P5", "P5"])
    for agent in agents:
        await agent.act(game.observe(agent))
    assert requests[0].messages is requests[1].messages  # cached, not rebuilt
    assert requests[2].messages != requests[3].messages  # personal backgrounds
    assert "person 2" in requests[2].messages[0].content
    assert requests[0].meta is requests[1].meta


async def test_request_seeds_depend_on_agent_and_round_only() -> None:
    book = PromptBook(seed=5, max_tokens={})
    assert book.request_seed(3, 1) == PromptBook(seed=5, max_tokens={}).request_seed(3, 1)
    assert book.request_seed(3, 1) != book.request_seed(3, 2)
    assert book.request_seed(3, 1) != book.request_seed(4, 1)
    assert book.request_seed(3, 1) != PromptBook(seed=6, max_tokens={}).request_seed(3, 1)


async def test_prompt_cache_keeps_only_the_last_two_rounds() -> None:
    """A shard lives for the whole run: its shared prompts must not grow with the rounds."""
    game = GuessGame([2, 2, 2], rounds=50)
    agents = make_agents(ScriptedModel(responder=lambda r: '{"guess": 10}'), ["P1", "P2"])
    book = agents[0].book
    sizes = []
    for step in range(1, 21):
        game.state["step"] = step - 1
        game.prepare()
        observations = [game.observe(agent) for agent in agents]
        first = [
            book.prompt(agent, obs)[0] for agent, obs in zip(agents, observations, strict=True)
        ]
        again = [
            book.prompt(agent, obs)[0] for agent, obs in zip(agents, observations, strict=True)
        ]
        assert all(a is b for a, b in zip(first, again, strict=True))  # still cached
        sizes.append(book.cached_prompts)
    assert max(sizes) == sizes[-1] == 2 * 2  # 2 variants x 1 group, 2 rounds kept
