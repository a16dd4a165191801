"""Agents: a persona row, a little state, and an async ``act``.

Agents are kept small (slotted, persona stored columnar in the shard) so that one
process can hold a million of them; see docs/architecture.md.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from megasim.message import Message

if TYPE_CHECKING:
    import pyarrow as pa

    from megasim.model.base import ModelClient
    from megasim.runtime.mailbox import Mailbox


class PersonaTable:
    """Column-oriented personas of one shard; a column becomes Python values on first use."""

    __slots__ = ("_columns", "_table", "name_set", "names")

    def __init__(self, table: pa.Table) -> None:
        self._table = table
        self._columns: dict[str, list[Any]] = {}
        self.names: tuple[str, ...] = tuple(table.column_names)
        self.name_set = frozenset(self.names)

    def value(self, row: int, name: str) -> Any:
        column = self._columns.get(name)
        if column is None:
            column = self._table.column(name).to_pylist()
            self._columns[name] = column
        return column[row]

    def __len__(self) -> int:
        return int(self._table.num_rows)


class Persona(Mapping[str, Any]):
    """Read-only view of one agent's row in its shard's PersonaTable."""

    __slots__ = ("_row", "_table")

    def __init__(self, table: PersonaTable, row: int) -> None:
        self._table = table
        self._row = row

    def __getitem__(self, name: str) -> Any:
        if name not in self._table.name_set:
            raise KeyError(name)
        return self._table.value(self._row, name)

    def get(self, name: str, default: Any = None) -> Any:
        """Faster than Mapping.get: no KeyError raised for absent attributes."""
        if name not in self._table.name_set:
            return default
        return self._table.value(self._row, name)

    def __contains__(self, name: object) -> bool:
        return name in self._table.name_set

    def __iter__(self) -> Iterator[str]:
        return iter(self._table.names)

    def __len__(self) -> int:
        return len(self._table.names)


@dataclass(slots=True)
class Decision:
    """The outcome of one ``act``: what the agent answered and what it cost."""

    value: float | None
    valid: bool
    raw_text: str | None = None
    prompt_id: str = ""
    tokens_in: int = 0
    tokens_out: int = 0
    latency_ms: float = 0.0
    error: str | None = None
    text: str | None = None  # what the agent says to others (chat), parsed from raw_text
    prompt: tuple[Any, ...] | None = None  # the chat messages sent (shared, not copied)


class Agent:
    """Base agent. Subclasses implement ``act``; it may await I/O (model calls) or not.

    ``row`` indexes the shard's PersonaTable; ``state`` is created lazily so that
    stateless agents cost nothing for it.
    """

    __slots__ = ("_personas", "group", "id", "mailbox", "model", "row", "state", "variant")

    def __init__(
        self,
        agent_id: int,
        row: int,
        personas: PersonaTable,
        model: ModelClient,
        group: int = 0,
        variant: str = "",
    ) -> None:
        self.id = agent_id
        self.row = row
        self._personas = personas
        self.model = model
        self.group = group
        self.variant = variant
        self.state: dict[str, Any] | None = None
        self.mailbox: Mailbox | None = None  # set by the shard that holds the agent

    def send(self, content: str, to: int | None = None, **metadata: Any) -> None:
        """Message agent ``to`` (any shard), or broadcast to this agent's group if None;
        delivered at the start of the next step."""
        if self.mailbox is None:
            raise RuntimeError(f"agent {self.id} is not in a shard: it cannot send messages")
        group = self.group if to is None else None
        self.mailbox.post(Message(self.id, content, to, self.mailbox.step, metadata, group))

    @property
    def inbox(self) -> list[Message]:
        """Messages delivered to this agent for the current step."""
        return self.mailbox.inbox(self.id, self.group) if self.mailbox is not None else []

    @property
    def persona(self) -> Persona:
        return Persona(self._personas, self.row)

    @property
    def memory(self) -> dict[str, Any]:
        """Mutable per-agent state, allocated on first use and checkpointed with the agent."""
        if self.state is None:
            self.state = {}
        return self.state

    async def act(self, observation: Any) -> Decision:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(id={self.id}, group={self.group}, model={self.model.name})"
