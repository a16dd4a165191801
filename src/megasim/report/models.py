"""Which backend produced each model's answers, so no result reads as LLM behaviour when it
is not: ``surrogate`` and ``scripted`` are non-LLM stand-ins, and every table, plot and
summary.json of a report says so next to their numbers."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from megasim.report.summary import ReportError

STAND_IN_BACKENDS: dict[str, str] = {
    "surrogate": "seeded level-k answers",
    "scripted": "fixed test answers",
}
LLM_BACKENDS = ("local", "openai")


@dataclass(slots=True, frozen=True)
class ModelInfo:
    """One configured model as a report shows it."""

    name: str
    backend: str  # local | openai | surrogate | scripted | unknown (no config.yaml)
    detail: str  # the model file or served model, or what the stand-in answers with

    @property
    def stand_in(self) -> bool:
        return self.backend in STAND_IN_BACKENDS

    @property
    def kind(self) -> str:
        if self.stand_in:
            return "non-LLM stand-in"
        return "LLM" if self.backend in LLM_BACKENDS else "unknown"

    @property
    def label(self) -> str:
        """``fast (surrogate: non-LLM stand-in)``: the model name with what it is."""
        return f"{self.name} ({self.backend}: {self.kind})"

    def as_json(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "kind": self.kind,
            "llm": self.kind == "LLM",
            "stand_in": self.stand_in,
            "detail": self.detail,
        }


def _detail(backend: str, entry: Mapping[str, Any]) -> str:
    if backend in STAND_IN_BACKENDS:
        return STAND_IN_BACKENDS[backend]
    if backend == "local":
        return f"llama.cpp: {entry.get('path') or 'bundled SmolLM2-135M-Instruct'}"
    if backend == "openai":
        return f"OpenAI-compatible: {entry.get('model', '?')}"
    return "not in config.yaml"


def load_models(run_dir: Path, used: Iterable[str] = ()) -> dict[str, ModelInfo]:
    """Every model of the run's config.yaml plus any ``used`` one it lacks (as unknown)."""
    path = Path(run_dir) / "config.yaml"
    configured: Mapping[str, Any] = {}
    if path.is_file():
        try:
            config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (yaml.YAMLError, OSError, UnicodeDecodeError) as exc:
            raise ReportError(f"cannot read {path}: {exc}") from exc
        models = config.get("models") if isinstance(config, dict) else None
        configured = models if isinstance(models, dict) else {}
    infos: dict[str, ModelInfo] = {}
    for name in sorted({*map(str, configured), *used}):
        entry = configured.get(name)
        entry = entry if isinstance(entry, dict) else {}
        backend = str(entry.get("backend", "unknown"))
        infos[name] = ModelInfo(name, backend, _detail(backend, entry))
    return infos


def stand_in_warning(models: Iterable[ModelInfo]) -> str | None:
    """One sentence for the top of a report when some answers are not from an LLM."""
    stand_ins = [m for m in models if m.stand_in]
    if not stand_ins:
        return None
    names = ", ".join(f"{m.name} ({m.backend})" for m in stand_ins)
    return f"NOT LLM BEHAVIOUR: answers of {names} come from a non-LLM stand-in"
