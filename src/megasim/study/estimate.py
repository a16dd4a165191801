"""Cost before running (``megasim study --dry-run``): calls, tokens and, where measured,
time per cell.

Scripted models are computed from their fixed answers (exact up to rounding); the
surrogate makes no calls; for LLMs, input tokens come from the cell's composed round-1
prompt (about 4 characters a token, plus the growth of ``full`` memory), output tokens
from the prompt's ``max_tokens`` (an upper bound), calls from the answer mode (structured
1, extract 2: the least each needs). Cells of this study already finished replace the
guesses with their measured tokens and wall seconds per decision for the same model;
a surrogate's time is at least its configured latency per round.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import duckdb
import pyarrow.parquet as pq

from megasim.config import SimulationConfig
from megasim.env.guess_game import GuessObservation
from megasim.model.parsing import parse_guess
from megasim.scenarios.guess_answers import EXTRACT_MAX_TOKENS, EXTRACT_TRIES
from megasim.scenarios.guess_prompts import compose
from megasim.scenarios.guess_two_thirds import game_settings, style_of
from megasim.study.runner import cell_state
from megasim.study.spec import Cell, Study

CHARS_PER_TOKEN = 4
HISTORY_LINE_TOKENS = 16  # "Round k: you chose A; the winning number was W."


@dataclass(frozen=True, slots=True)
class Estimate:
    cell: str
    state: str
    decisions: int
    calls: int
    tokens_in: int
    tokens_out: int
    seconds: float | None  # None: nothing measured for this model yet
    basis: str  # how the numbers were obtained


def agents_of(config: SimulationConfig) -> int:
    if config.population is not None:
        return config.population.size
    return int(pq.ParquetFile(str(config.population_file)).metadata.num_rows)


def _model(cell: Cell) -> tuple[str, str]:
    config = cell.config
    name = config.force_model or config.default_model or next(iter(config.models))
    return name, config.models[name].backend


def _scripted(cell: Cell, name: str) -> tuple[float, float]:
    """Calls and output tokens per decision of a scripted model, from its answers."""
    model = cell.config.models[name]
    answers: list[str] = list(getattr(model, "responses", ["33"]))
    game = game_settings(cell.config)
    calls = tokens = 0.0
    for text in answers:
        parsed = parse_guess(text, game.low, game.high)
        out_of_range = (parsed.reason or "").startswith("out of range")
        if game.answer_mode == "extract":
            n = 2 if parsed.valid or out_of_range else 1 + EXTRACT_TRIES
        else:
            n = 1 if parsed.valid or not game.repair else 2
        calls += n
        tokens += n * len(text.split())
    return calls / len(answers), tokens / len(answers)


def _llm(cell: Cell) -> tuple[float, float, float]:
    """Calls, input and output tokens per decision of an LLM (see module docstring)."""
    config = cell.config
    game = game_settings(config)
    style = style_of(game)
    variant = str(cell.settings.get("prompt", "P1"))
    if variant not in style.known():
        variant = "P1"
    agents = agents_of(config)
    obs = GuessObservation(
        1, config.rounds, 0, agents, None, game.ratio, game.offset, game.low, game.high
    )
    tokens = style.max_tokens(variant, game.max_tokens)
    prompt = compose(variant, obs, tokens, style, "a background of a few words", None, "")
    chars = sum(len(m.content) for m in prompt.messages)
    tokens_in = chars / CHARS_PER_TOKEN
    if game.memory == "full":  # round r carries r - 1 history lines: mean (R - 1) / 2
        tokens_in += HISTORY_LINE_TOKENS * (config.rounds - 1) / 2
    tokens_out = float(tokens)
    calls = 1.0
    if game.answer_mode == "extract":
        calls = 2.0
        tokens_in += 60 + tokens_out  # the extraction prompt quotes the reply
        tokens_out += EXTRACT_MAX_TOKENS
    return calls, tokens_in, tokens_out


def _measured(study: Study) -> dict[str, tuple[float, float, float]]:
    """Per model of finished cells: wall seconds (the steps' own, so concurrent calls are
    not added up), input and output tokens per decision."""
    found: dict[str, tuple[float, float, float]] = {}
    for cell in study.cells:
        path = study.cells_dir / cell.id
        if cell_state(path) != "done":
            continue
        name, _ = _model(cell)
        files = str(path / "steps" / "*" / "*.parquet")
        row = (
            duckdb.connect()
            .execute(
                "SELECT count(*), sum(tokens_in), sum(tokens_out) "
                "FROM read_parquet(?, hive_partitioning = false)",
                [files],
            )
            .fetchone()
        )
        metrics = (path / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
        wall = sum(float(json.loads(line)["wall_s"]) for line in metrics if line.strip())
        if row and row[0]:
            found[name] = (wall / row[0], row[1] / row[0], row[2] / row[0])
    return found


def estimate(study: Study) -> list[Estimate]:
    measured = _measured(study)
    rows: list[Estimate] = []
    for cell in study.cells:
        config = cell.config
        name, backend = _model(cell)
        decisions = agents_of(config) * config.rounds
        seconds: float | None = None
        if backend == "surrogate":
            calls, t_in, t_out, basis = 0.0, 0.0, 0.0, "surrogate: a stand-in, no model calls"
            latency = float(getattr(config.models[name], "latency_s", 0.0))
            if latency > 0:  # its configured speed: every agent waits once a round, together
                seconds = latency * config.rounds
                basis += f"; time >= {latency:g} s a round (its latency)"
        elif backend == "scripted":
            calls, t_out = _scripted(cell, name)
            t_in, basis = 0.0, "scripted answers"
        else:
            calls, t_in, t_out = _llm(cell)
            basis = "prompt length, max_tokens"
        if name in measured and backend != "surrogate":  # its waits overlap: not linear
            per_s, m_in, m_out = measured[name]
            seconds = per_s * decisions
            if backend not in ("surrogate", "scripted"):
                t_in, t_out, basis = m_in, m_out, "measured in this study"
        state = cell_state(study.cells_dir / cell.id)
        rows.append(
            Estimate(
                cell.id,
                state,
                decisions,
                round(calls * decisions),
                round(t_in * decisions),
                round(t_out * decisions),
                seconds,
                basis,
            )
        )
    return rows
