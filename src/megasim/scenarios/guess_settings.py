"""Settings of the guessing game (the run config's ``game:`` section)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from megasim.scenarios.guess_prompt_spec import AnswerMode, Memory, PromptSpec, check_prompts


class GameConfig(BaseModel):
    """The p-beauty contest: winner = ratio x mean + offset, guesses in [low, high]."""

    model_config = ConfigDict(extra="forbid")

    ratio: float = Field(2 / 3, gt=0)
    offset: float = 0.0
    low: float = 0.0
    high: float = Field(100.0, validate_default=True)  # so that a lone `low: 150` is checked
    max_tokens: dict[str, int] = Field(
        default_factory=dict, description="per prompt variant; unset variants use defaults"
    )
    repair: bool = Field(True, description="one repair call when an answer is unusable")
    prompts: dict[str, PromptSpec] = Field(
        default_factory=dict, description="prompts beyond the presets P1-P5, from parts"
    )
    parts: dict[str, str] = Field(default_factory=dict, description="reworded or new parts")
    memory: Memory = Field("last_winner", description="none | last_winner | full history")
    answer_mode: AnswerMode = Field(
        "structured", description="structured: one JSON call; extract: free text + extraction"
    )
    disclose: str | None = Field(
        None, description="population column whose counts per group the makeup part states"
    )

    @model_validator(mode="after")
    def _prompts_compose(self) -> GameConfig:
        check_prompts(self.prompts, self.parts)  # ValueError naming prompts.X / parts.X
        return self

    @field_validator("high")
    @classmethod
    def _bounds(cls, high: float, info: ValidationInfo) -> float:
        low = info.data.get("low")  # absent when low itself is invalid
        if low is not None and high <= low:
            raise ValueError(f"high ({high}) must be greater than low ({low})")
        return high
