"""Commands ``megasim studio``, ``megasim interview`` and ``megasim survey``."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

console = Console()
err_console = Console(stderr=True)


def _fail(message: str, code: int = 2) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def studio(
    runs: Annotated[Path, typer.Option(help="folder holding run directories")] = Path("runs"),
    host: Annotated[str, typer.Option(help="address to bind; off loopback a token is required")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(help="TCP port")] = 8765,
    token: Annotated[
        str | None, typer.Option(help="access token (generated and printed off loopback)")
    ] = None,
) -> None:
    """Web monitor and manager of the runs under RUNS (live and finished)."""
    from megasim.studio.server import resolve_token, serve

    runs.mkdir(parents=True, exist_ok=True)
    in_force, generated = resolve_token(host, token)
    shown = "localhost" if host in ("127.0.0.1", "::1") else host
    url = f"http://{shown}:{port}/" + (f"?token={in_force}" if in_force else "")
    if generated:
        console.print(f"generated access token: [bold]{in_force}[/]", highlight=False)
    console.print(f"megasim studio on {url}  (runs: {runs.resolve()})", highlight=False)
    serve(runs, host, port, in_force)


def _answers_table(rows: list[dict[str, object]]) -> Table:
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("agent_id", "model", "backend", "answer", "valid", "error"):
        table.add_column(column, overflow="fold")
    for row in rows:
        cells = [row.get(c) for c in ("agent_id", "model", "backend")]
        cells += [row.get("answer") or row.get("raw_text"), row.get("valid"), row.get("error")]
        table.add_row(*(escape("" if c is None else str(c)) for c in cells))
    return table


def _ask(run: Path, question: object, ids: list[int], seed: int) -> None:
    from megasim.config import ConfigError
    from megasim.inquiry.ask import ask_agents
    from megasim.inquiry.base import InquiryError, Question
    from megasim.model.base import ModelSetupError
    from megasim.run import load_run_config

    assert isinstance(question, Question)
    try:
        config = load_run_config(run)
        table = asyncio.run(ask_agents(run, config, question, ids, seed))
    except (ConfigError, InquiryError) as exc:
        raise _fail(str(exc)) from None
    except ModelSetupError as exc:
        raise _fail(f"model setup failed: {exc}", code=1) from None
    rows = table.to_pylist()
    console.print(_answers_table(rows))
    stand_in = {str(r["backend"]) for r in rows} & {"surrogate", "scripted"}
    if stand_in:
        console.print(
            f"answers by stand-in models ({', '.join(sorted(stand_in))}): not LLM behaviour"
        )
    console.print(f"saved: {run / 'inquiries' / (str(rows[0]['inquiry_id']) + '.parquet')}")


def interview(
    run: Annotated[Path, typer.Argument(help="a run directory")],
    question: Annotated[str, typer.Argument(help="the question")],
    agent: Annotated[int, typer.Option(help="agent id")],
) -> None:
    """Ask one agent a free question; its own model answers with its persona and memory."""
    from megasim.inquiry.base import InquiryError, Question

    try:
        asked = Question(question)
    except InquiryError as exc:
        raise _fail(str(exc)) from None
    _ask(run, asked, [agent], agent)


def survey(
    run: Annotated[Path, typer.Argument(help="a run directory")],
    question: Annotated[str, typer.Option(help="the question")],
    options: Annotated[list[str] | None, typer.Option("--option", help="a choice (repeat)")] = None,
    low: Annotated[float | None, typer.Option(help="number range: lowest")] = None,
    high: Annotated[float | None, typer.Option(help="number range: highest")] = None,
    filter_: Annotated[
        list[str] | None, typer.Option("--filter", help="e.g. age>=30, model=a|b (repeat)")
    ] = None,
    sample: Annotated[int, typer.Option(help="agents asked (a seeded sample)")] = 50,
    seed: Annotated[int, typer.Option(help="sample and call seed")] = 0,
) -> None:
    """Ask a seeded sample of agents matching filters a structured question."""
    from megasim.explore.agents import AgentIndex, completed_step
    from megasim.explore.filters import FilterError, parse_filter
    from megasim.inquiry.ask import sample_ids
    from megasim.inquiry.base import InquiryError, Question

    if not (run / "population.parquet").is_file():
        raise _fail(f"{run}: not a run directory (no population.parquet)")
    try:
        asked = Question(question, tuple(options or ()), low, high)
        index = AgentIndex(run, completed_step(run))
        ids = index.agent_ids([parse_filter(f) for f in filter_ or []])
    except (InquiryError, FilterError) as exc:
        raise _fail(str(exc)) from None
    _ask(run, asked, sample_ids(ids, sample, seed), seed)
