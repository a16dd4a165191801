"""Tests for megasim.agent: columnar personas, lazy memory and the slotted Agent."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

import pyarrow as pa
import pytest

from megasim.agent import Agent, Decision, Persona, PersonaTable


class _StubModel:
    """Just enough of a ModelClient for agents that never call it."""

    name = "stub"
    immediate = True


@pytest.fixture
def table() -> PersonaTable:
    return PersonaTable(
        pa.table(
            {
                "age": [31, 45, 62],
                "occupation": ["nurse", "baker", "pilot"],
                "prompt_variant": ["P1", "P3", "P1"],
            }
        )
    )


def _agent(table: PersonaTable, row: int = 0, **kwargs: Any) -> Agent:
    return Agent(agent_id=100 + row, row=row, personas=table, model=_StubModel(), **kwargs)


# --- PersonaTable --------------------------------------------------------------------


def test_persona_table_names_and_len(table: PersonaTable) -> None:
    assert table.names == ("age", "occupation", "prompt_variant")
    assert table.name_set == frozenset(table.names)
    assert len(table) == 3


def test_persona_table_converts_columns_lazily(table: PersonaTable) -> None:
    assert table._columns == {}  # nothing converted up front
    assert table.value(1, "age") == 45
    assert set(table._columns) == {"age"}  # only the column that was read
    cached = table._columns["age"]
    assert table.value(2, "age") == 62
    assert table._columns["age"] is cached  # converted once, then reused
    assert table.value(0, "occupation") == "nurse"
    assert set(table._columns) == {"age", "occupation"}


def test_persona_table_values_are_python_objects(table: PersonaTable) -> None:
    value = table.value(0, "age")
    assert type(value) is int
    assert type(table.value(0, "occupation")) is str


# --- Persona ---------------------------------------------------------------------------


def test_persona_getitem(table: PersonaTable) -> None:
    persona = Persona(table, 2)
    assert persona["age"] == 62
    assert persona["occupation"] == "pilot"
    assert persona["prompt_variant"] == "P1"


def test_persona_unknown_key_raises_keyerror(table: PersonaTable) -> None:
    persona = Persona(table, 0)
    with pytest.raises(KeyError, match="income"):
        persona["income"]
    assert "income" not in table._columns  # no column was looked up for it


def test_persona_contains(table: PersonaTable) -> None:
    persona = Persona(table, 0)
    assert "age" in persona
    assert "income" not in persona
    assert 3 not in persona  # non-string keys are simply absent


def test_persona_iteration_and_len(table: PersonaTable) -> None:
    persona = Persona(table, 1)
    assert list(persona) == ["age", "occupation", "prompt_variant"]
    assert len(persona) == 3
    assert dict(persona) == {"age": 45, "occupation": "baker", "prompt_variant": "P3"}
    assert ("age", 45) in persona.items()


def test_persona_get(table: PersonaTable) -> None:
    persona = Persona(table, 0)
    assert persona.get("age") == 31
    assert persona.get("income") is None
    assert persona.get("income", 7) == 7


def test_persona_is_a_read_only_mapping(table: PersonaTable) -> None:
    persona = Persona(table, 0)
    assert isinstance(persona, Mapping)
    with pytest.raises(TypeError):
        persona["age"] = 1  # type: ignore[index]


def test_persona_of_empty_table() -> None:
    persona = Persona(PersonaTable(pa.table({})), 0)
    assert len(persona) == 0
    assert list(persona) == []
    assert persona.get("age") is None


# --- Agent -----------------------------------------------------------------------------


def test_agent_fields_and_persona(table: PersonaTable) -> None:
    agent = _agent(table, row=1, group=2, variant="P3")
    assert (agent.id, agent.row, agent.group, agent.variant) == (101, 1, 2, "P3")
    assert agent.persona["occupation"] == "baker"
    assert repr(agent) == "Agent(id=101, group=2, model=stub)"


def test_agent_memory_is_created_lazily(table: PersonaTable) -> None:
    agent = _agent(table)
    assert agent.state is None  # stateless agents pay nothing
    memory = agent.memory
    assert memory == {}
    assert agent.state is memory
    memory["last_guess"] = 33
    assert agent.memory is memory
    assert agent.memory["last_guess"] == 33


def test_agent_memory_is_per_agent(table: PersonaTable) -> None:
    a, b = _agent(table, 0), _agent(table, 1)
    a.memory["x"] = 1
    assert b.state is None
    assert b.memory == {}


async def test_base_agent_act_is_abstract(table: PersonaTable) -> None:
    with pytest.raises(NotImplementedError):
        await _agent(table).act({})


class _Halver(Agent):
    """Guesses half of the previous winner, remembering its guesses."""

    __slots__ = ()

    async def act(self, observation: Any) -> Decision:
        guess = observation["previous"] / 2
        self.memory.setdefault("guesses", []).append(guess)
        return Decision(value=guess, valid=True, prompt_id=str(self.persona["prompt_variant"]))


async def test_agent_subclass_act(table: PersonaTable) -> None:
    agent = _Halver(agent_id=7, row=1, personas=table, model=_StubModel())
    decision = await agent.act({"previous": 50.0})
    assert decision == Decision(value=25.0, valid=True, prompt_id="P3")
    await agent.act({"previous": 20.0})
    assert agent.memory["guesses"] == [25.0, 10.0]
    assert repr(agent).startswith("_Halver(id=7,")


def test_decision_defaults() -> None:
    decision = Decision(value=None, valid=False)
    assert decision.raw_text is None
    assert decision.error is None
    assert (decision.tokens_in, decision.tokens_out, decision.latency_ms) == (0, 0, 0.0)
    assert not hasattr(decision, "__dict__")


# --- memory footprint ----------------------------------------------------------------


def test_agent_is_slotted_and_small(table: PersonaTable) -> None:
    agent = _agent(table)
    assert not hasattr(agent, "__dict__")
    with pytest.raises(AttributeError):
        agent.mood = "happy"  # type: ignore[attr-defined]
    assert sys.getsizeof(agent) < 200


def test_slotted_subclass_stays_small(table: PersonaTable) -> None:
    agent = _Halver(agent_id=0, row=0, personas=table, model=_StubModel())
    assert not hasattr(agent, "__dict__")
    assert sys.getsizeof(agent) < 200


def test_agents_share_one_persona_table(table: PersonaTable) -> None:
    agents = [_agent(table, row) for row in range(3)]
    assert all(a._personas is table for a in agents)
    assert [a.persona["age"] for a in agents] == [31, 45, 62]
