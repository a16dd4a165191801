"""Messages exchanged between agents, and between agents and environments."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Message:
    """One message. ``receiver`` None means broadcast within the sender's environment.

    Messages are plain data so that shards can ship them in bulk between processes.
    """

    sender: int
    content: str
    receiver: int | None = None
    step: int = 0
    metadata: dict[str, Any] = field(default_factory=dict)
