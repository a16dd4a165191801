"""Settings of the chat-room opinion scenario (the run config's ``chat:`` section)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ChatConfig(BaseModel):
    """The chat-room opinion scenario: rooms (groups) discuss ``statement``."""

    model_config = ConfigDict(extra="forbid")

    statement: str = Field("Cities should make public transport free for everyone.", min_length=1)
    window: int = Field(8, ge=1, le=200, description="recent room posts each agent reads")
    max_tokens: int = Field(96, ge=8, le=4096)
