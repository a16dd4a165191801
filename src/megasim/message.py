"""Messages exchanged between agents, and between agents and environments."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Message:
    """One message. ``receiver`` None broadcasts to the sender's ``group``.

    Messages are plain data so that shards can ship them in bulk between processes, and
    JSON-serialisable (``to_dict``) so that messages in flight are checkpointed.
    """

    sender: int
    content: str
    receiver: int | None = None
    step: int = 0
    metadata: dict[str, Any] = field(default_factory=dict)
    group: int | None = None  # broadcast scope (the sender's group) when receiver is None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Message:
        return cls(**data)
