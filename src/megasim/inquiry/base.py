"""What an inquiry asks and what it records (``runs/<id>/inquiries/<inquiry>.parquet``)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa

INQUIRY_SCHEMA = pa.schema(
    [
        pa.field("inquiry_id", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),  # interview | survey
        pa.field("time", pa.float64(), nullable=False),
        pa.field("question", pa.string(), nullable=False),
        pa.field("options", pa.string()),  # JSON list of choices, if any
        pa.field("low", pa.float64()),  # number range, if any
        pa.field("high", pa.float64()),
        pa.field("agent_id", pa.int64(), nullable=False),
        pa.field("model", pa.string(), nullable=False),
        pa.field("backend", pa.string(), nullable=False),
        pa.field("prompt", pa.string(), nullable=False),  # JSON chat messages as sent
        pa.field("raw_text", pa.string()),
        pa.field("answer", pa.string()),  # the chosen option, the number, or the reply
        pa.field("value", pa.float64()),  # numeric answers
        pa.field("valid", pa.bool_(), nullable=False),
        pa.field("error", pa.string()),
        pa.field("tokens_in", pa.int32(), nullable=False),
        pa.field("tokens_out", pa.int32(), nullable=False),
        pa.field("latency_ms", pa.float32(), nullable=False),
    ]
)


class InquiryError(ValueError):
    """A question that cannot be asked (no such agent, bad options or range)."""


@dataclass(frozen=True, slots=True)
class Question:
    """A free question (interview) or a structured one (survey: options or a number range)."""

    text: str
    options: tuple[str, ...] = field(default_factory=tuple)
    low: float | None = None
    high: float | None = None

    def __post_init__(self) -> None:
        if not self.text.strip():
            raise InquiryError("the question is empty")
        if self.options and (self.low is not None or self.high is not None):
            raise InquiryError("a question has options or a number range, not both")
        if (self.low is None) != (self.high is None):
            raise InquiryError("a number range needs both low and high")
        if self.low is not None and self.high is not None and self.low >= self.high:
            raise InquiryError(f"empty range: low {self.low} >= high {self.high}")
        if len(set(self.options)) != len(self.options) or any(not o.strip() for o in self.options):
            raise InquiryError("options must be distinct and non-empty")

    @property
    def structured(self) -> bool:
        return bool(self.options) or self.low is not None
