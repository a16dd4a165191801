"""The study report: ``report.md``, ``cells.parquet`` and PNG figures in ``STUDY/report``.

Every number comes from ``tables.cells_table`` (DuckDB over the cells' decisions); the
published numbers come from ``reference.yaml`` and are shown beside ours, each labelled
with the model that produced it, ours with its backend (stand-ins flagged).
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from megasim.config import ConfigError
from megasim.study.breakdowns import attribute_rows, temperature_rows, win_rows
from megasim.study.html import markdown_to_html
from megasim.study.plots import convergence_plot, lines_plot
from megasim.study.reference import Reference, load_reference
from megasim.study.runner import STUDY_FILE, cell_state
from megasim.study.scalability import scalability_rows
from megasim.study.spec import Study, StudyError, load_study
from megasim.study.tables import cells_table


def _f(x: Any, digits: int = 2) -> str:
    if x is None:
        return "-"
    return f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_f(v) for v in row) + " |" for row in rows]
    return [*lines, ""]


def _shown(path: Path) -> str:
    """A path relative to the working directory when it is below it (portable reports)."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def open_study(folder: Path) -> Study:
    """The study a folder was made by (its study.json names the study file)."""
    stored = folder / STUDY_FILE
    if not stored.is_file():
        raise StudyError(f"{folder}: not a study folder (no {STUDY_FILE})")
    source = Path(json.loads(stored.read_text(encoding="utf-8"))["source"])
    if not source.is_file():
        raise StudyError(f"{folder}: its study file {source} is gone")
    try:
        study = load_study(source, write=False)
    except ConfigError as exc:
        raise StudyError(str(exc)) from exc
    if study.folder != folder.resolve():
        raise StudyError(f"{folder}: its study file {source} now points at {study.folder}")
    return study


def _reference_section(rows: list[dict[str, Any]], ref: Reference) -> list[str]:
    lines = ["## Beside the published numbers", ""]
    by_cell: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_cell[r["cell"]].append(r)
    found = False
    for cell, own in by_cell.items():
        first = own[0]
        entries = [
            e for e in ref.entries if e.matches(first["prompt"], first["ratio"], first["offset"])
        ]
        if not any(not e.baseline for e in entries):
            continue
        found = True
        ours = f"ours: {first['model']} ({first['backend']}" + (
            ", NOT an LLM)" if first["stand_in"] else ")"
        )
        header = ["round", ours] + [f"published: {e.model}" for e in entries]
        means = {r["round"]: r["mean"] for r in own}
        rounds = max(len(own), *(len(e.means) for e in entries))
        table = [
            [k, means.get(k)] + [e.means[k - 1] if k <= len(e.means) else None for e in entries]
            for k in range(1, rounds + 1)
        ]
        lines += [
            f"Cell `{cell}` (prompt {first['prompt']}, {first['agents']} agents, memory "
            f"{first['memory']}, answers {first['answer_mode']}):",
            "",
        ]
        lines += _table(header, table)
    if not found:
        lines += ["No cell of this study has a published counterpart in reference.yaml.", ""]
    lines += ["Sources:", ""]
    lines += [f"- {e.id} ({e.model}; {e.setting}): {e.source}" for e in ref.entries]
    lines += ["", "Where megasim differs from the released code:", ""]
    lines += [f"- {d}" for d in ref.differences] + [""]
    return lines


def _cost_section(rows: list[dict[str, Any]]) -> list[str]:
    """Per model and answer mode: calls and tokens per decision, invalid rate, latency."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[(r["model"], r["backend"], r["answer_mode"])].append(r)
    table = []
    for (model, backend, mode), rs in sorted(groups.items()):
        n = sum(r["n"] for r in rs)
        table.append([
            f"{model} ({backend})", mode, n, sum(r["calls"] for r in rs) / n,
            sum(r["tokens_in"] for r in rs) / n, sum(r["tokens_out"] for r in rs) / n,
            sum(r["invalid"] for r in rs) / n,
            sum(r["latency_total_ms"] for r in rs) / n / 1000,
            max(r["latency_p50_ms"] or 0.0 for r in rs),
            max(r["latency_p95_ms"] or 0.0 for r in rs),
        ])  # fmt: skip
    header = ["model", "answers", "decisions", "calls/decision", "tokens in/decision",
              "tokens out/decision", "invalid rate", "model s/decision", "p50 ms (max over rounds)",
              "p95 ms (max over rounds)"]  # fmt: skip
    return ["## Cost by model and answer mode", "", *_table(header, table)]


def _memory_section(rows: list[dict[str, Any]]) -> list[str]:
    """Input tokens per decision by round and memory setting (full memory grows)."""
    acc: dict[tuple[str, int], list[int]] = defaultdict(lambda: [0, 0])
    for r in rows:
        acc[(r["memory"], r["round"])][0] += r["tokens_in"]
        acc[(r["memory"], r["round"])][1] += r["n"]
    table = [[m, k, t / n] for (m, k), (t, n) in sorted(acc.items())]
    return [
        "## Input tokens per decision by memory and round",
        "",
        *_table(["memory", "round", "tokens in/decision"], table),
    ]


def _wins_section(wins: list[dict[str, Any]]) -> list[str]:
    if not wins:
        return []
    body = [[w["cell"], w["round"], w["group"], w["model"], w["wins"], w["number"],
             w["number_high"], w["target"]] for w in wins]  # fmt: skip
    header = ["cell", "round", "group", "model", "winners", "winning answer",
              "(highest, if tied)", "target"]  # fmt: skip
    return ["## Mixtures: who won each round", "", *_table(header, body)]


def _attribute_section(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    body = [[r["cell"], r["attribute"], r["value"], r["round"], r["n"], r["valid"], r["mean"],
             r["std"]] for r in rows]  # fmt: skip
    header = ["cell", "attribute", "value", "round", "N", "valid", "mean", "std"]
    return ["## Means by population attribute", "", *_table(header, body)]


def _temperature_section(rows: list[dict[str, Any]]) -> list[str]:
    if len({r["temperature"] for r in rows}) < 2:
        return []
    body = [[r["model"], r["temperature"], r["round"], r["cells"], r["valid"], r["mean"], r["std"]]
            for r in temperature_rows(rows)]  # fmt: skip
    header = ["model", "temperature", "round", "cells", "valid", "mean", "std"]
    return ["## By temperature (pooled over cells)", "", *_table(header, body)]


def _scalability_section(rows: list[dict[str, Any]]) -> list[str]:
    if not any(r["ratio"] is not None for r in rows):
        return []
    body = [[r["cell"], r["agents"], r["runtime"], r["shards"], r["rounds"], r["s_per_round"],
             r["asyncio_s_per_round"], r["ratio"]] for r in rows]  # fmt: skip
    header = ["cell", "agents", "runtime", "shards", "rounds", "s/round",
              "plain asyncio s/round", "ratio"]  # fmt: skip
    note = ("Surrogate agents (a stand-in that waits its latency, no LLM) against plain "
            "asyncio doing the same waiting on the same machine; the ratio is what carries "
            "to another machine, the seconds are this one's.")  # fmt: skip
    return ["## Scalability", "", note, "", *_table(header, body)]


def _extra_plots(
    rows: list[dict[str, Any]],
    attributes: list[dict[str, Any]],
    temperatures: list[dict[str, Any]],
    scaling: list[dict[str, Any]],
    out: Path,
) -> list[Path]:
    """Mean by round per attribute value (per cell and attribute), mean by temperature
    (per model, a line per round), and the scalability ratio by agent count."""
    info = {r["cell"]: r for r in rows}
    paths = []
    for cell, attribute in sorted({(a["cell"], a["attribute"]) for a in attributes}):
        series: dict[str, list[tuple[float, float]]] = defaultdict(list)
        for a in attributes:
            if (a["cell"], a["attribute"]) == (cell, attribute):
                series[str(a["value"])].append((a["round"], a["mean"]))
        row = info[cell]
        paths.append(lines_plot(
            series, f"Mean answer by round and {attribute}, cell {cell}", ("round", "mean"),
            row["stand_in"], [f"{row['model']} ({row['backend']})"],
            out / f"attribute-{cell}-{attribute}.png",
        ))  # fmt: skip
    for model in sorted({t["model"] for t in temperatures}):
        series = defaultdict(list)
        for t in temperatures:
            if t["model"] == model:
                series[f"round {t['round']}"].append((t["temperature"], t["mean"]))
        mine = [r for r in rows if r["model"] == model]
        paths.append(lines_plot(
            series, f"Mean answer by temperature, {model}", ("temperature", "mean"),
            any(r["stand_in"] for r in mine), sorted({f"{model} ({r['backend']})" for r in mine}),
            out / f"temperature-{model.replace('/', '_')}.png",
        ))  # fmt: skip
    if any(s["ratio"] is not None for s in scaling):
        series = defaultdict(list)
        for s in scaling:
            series[f"{s['runtime']}, {s['shards']} shards"].append((s["agents"], s["ratio"]))
        paths.append(lines_plot(
            series, "Seconds per round / plain asyncio's, by agents", ("agents", "ratio"),
            True, sorted({f"{r['model']} ({r['backend']})" for r in rows}),
            out / "scalability.png",
        ))  # fmt: skip
    return paths


def write_report(folder: Path, out: Path | None = None) -> list[Path]:
    study = open_study(folder)
    out = out or folder / "report"
    out.mkdir(parents=True, exist_ok=True)
    done = [(c, study.cells_dir / c.id) for c in study.cells]
    states = {c.id: cell_state(p) for c, p in done}
    table = cells_table([(c, p) for c, p in done if states[c.id] != "new"])
    pq.write_table(table, out / "cells.parquet")
    rows = table.to_pylist()
    started = [(c, p) for c, p in done if states[c.id] != "new"]
    mixed = {r["cell"] for r in rows if "+" in r["model"]}
    wins = [w for c, p in started if c.id in mixed for w in win_rows(c, p)]
    columns = study.spec.breakdowns
    attributes = [a for c, p in started for a in attribute_rows(c, p, columns)]
    swept = len({r["temperature"] for r in rows}) > 1
    temperatures = temperature_rows(rows) if swept else []
    scaling = scalability_rows(study) if study.spec.asyncio_reference else []
    extra = {
        "wins": wins,
        "attributes": attributes,
        "temperatures": temperatures,
        "scalability": scaling,
    }
    written = [out / "cells.parquet"]
    for name, found in extra.items():
        if found:
            pq.write_table(pa.Table.from_pylist(found), out / f"{name}.parquet")
            written.append(out / f"{name}.parquet")
    ref = load_reference()
    for by in ("prompt", "model"):
        for value in sorted({str(r[by]) for r in rows}):
            written.append(convergence_plot(rows, by, value, ref, out))
    written += _extra_plots(rows, attributes, temperatures, scaling, out)
    lines = [f"# Study {study.spec.name}", ""]
    stand_ins = sorted({f"{r['model']} ({r['backend']})" for r in rows if r["stand_in"]})
    if stand_ins:
        lines += [f"**NOT LLM BEHAVIOUR: {', '.join(stand_ins)} are non-LLM stand-ins.**", ""]
    unfinished = [k for k, s in states.items() if s != "done"]
    lines += [
        f"Study file: `{_shown(study.source)}`. Cells: {len(study.cells)}, finished: "
        f"{len(study.cells) - len(unfinished)}"
        + (f" (not finished: {', '.join(unfinished)})" if unfinished else "")
        + ".",
        "",
    ]
    header = ["cell", "model", "prompt", "rule", "T", "agents", "memory", "answers", "round", "N",
              "valid", "mean", "median", "std", "min", "max", "winner"]  # fmt: skip
    body = [
        [r["cell"], f"{r['model']} ({r['backend']})", r["prompt"],
         f"{r['ratio']:g}x mean" + (f" + {r['offset']:g}" if r["offset"] else ""),
         r["temperature"], r["agents"], r["memory"], r["answer_mode"], r["round"], r["n"],
         r["valid"], r["mean"], r["median"], r["std"], r["min"], r["max"], r["winner"]]
        for r in rows
    ]  # fmt: skip
    lines += ["## Every cell and round (valid answers only)", "", *_table(header, body)]
    lines += _reference_section(rows, ref) + _cost_section(rows) + _memory_section(rows)
    lines += _wins_section(wins) + _attribute_section(attributes) + _temperature_section(rows)
    lines += _scalability_section(scaling)
    lines += ["## Figures", ""]
    lines += [f"![{p.stem}]({p.name})" for p in written if p.suffix == ".png"] + [""]
    report = out / "report.md"
    report.write_text("\n".join(lines), encoding="utf-8")
    page = out / "report.html"
    page.write_text(markdown_to_html("\n".join(lines), out, f"Study {study.spec.name}"), "utf-8")
    return [report, page, *written]
