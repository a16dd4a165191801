"""The studio's JSON API against a real server on 127.0.0.1: finished and live runs."""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import yaml

from megasim.config import load_config
from megasim.run import run_simulation
from megasim.store.run_dir import RunDirectory
from tests.studio.conftest import StudioServer, game_config, start_live_run


def test_runs_list_and_run_summary(studio_server: StudioServer) -> None:
    runs = httpx.get(f"{studio_server.url}/api/runs").json()
    assert [r["run_id"] for r in runs] == ["done1"]
    done = runs[0]
    assert done["state"] == "done"
    assert done["agents"] == 3000
    assert (done["steps_done"], done["steps_total"], done["calls"]) == (3, 3, 9000)
    assert {m["name"]: m["stand_in"] for m in done["models"]} == {"quick": True, "steady": True}
    detail = httpx.get(f"{studio_server.url}/api/runs/done1").json()
    assert detail["config"]["rounds"] == 3
    assert detail["status"]["state"] == "done"


def test_dashboard_numbers_match_the_decisions(
    studio_server: StudioServer, runs_copy: Path
) -> None:
    url = f"{studio_server.url}/api/runs/done1"
    steps = httpx.get(f"{url}/steps").json()
    assert [s["step"] for s in steps] == [1, 2, 3]
    assert "winner" in steps[0]["outcome"]
    values = httpx.get(f"{url}/values", params={"step": 2, "bins": 20, "exact": "true"}).json()
    decisions = RunDirectory(runs_copy / "done1").read_decisions(2)
    assert values["n"] == 3000
    assert sum(values["counts"]) == values["valid"] == 3000
    assert abs(values["mean"] - steps[1]["outcome"]["mean"]) < 1e-9
    assert values["quantiles"]["median"] == float(np.median(decisions["value"].to_numpy()))
    fast = httpx.get(f"{url}/values", params={"step": 2, "bins": 20}).json()  # shards' summary
    assert fast["approximate"]
    assert sum(fast["counts"]) == 3000
    exact_median = values["quantiles"]["median"]
    assert abs(fast["quantiles"]["median"] - exact_median) <= fast["bin_width"]
    by_model = httpx.get(f"{url}/breakdown", params={"by": "model"}).json()
    for row in by_model["rows"]:
        chosen = (
            decisions.filter(pc.equal(decisions["model"], row["key"])) if row["step"] == 2 else None
        )
        if chosen is not None:
            assert row["n"] == chosen.num_rows
            assert abs(row["mean"] - float(np.mean(chosen["value"].to_numpy()))) < 1e-9
    by_education = httpx.get(f"{url}/breakdown", params={"by": "education"}).json()
    keys = {r["key"] for r in by_education["rows"]}
    assert keys == {"high school", "bachelor", "PhD"}
    assert sum(r["n"] for r in by_education["rows"] if r["step"] == 1) == 3000
    by_age = httpx.get(f"{url}/breakdown", params={"by": "age"}).json()
    assert 1 < len({r["key"] for r in by_age["rows"]}) <= 11  # binned
    assert httpx.get(f"{url}/breakdown", params={"by": "nope"}).status_code == 422
    assert httpx.get(f"{url}/breakdown", params={"by": "raw_text"}).status_code == 422
    events = httpx.get(f"{url}/events").json()
    assert [e["event"] for e in events] == ["start", "done"]


def test_agent_browser_page_export_and_detail(studio_server: StudioServer) -> None:
    url = f"{studio_server.url}/api/runs/done1/agents"
    page = httpx.get(
        url,
        params={
            "where": ["education=PhD", "age>=50"],
            "sort": "value",
            "desc": "true",
            "limit": 20,
            "offset": 5,
        },
    ).json()
    assert page["agents"] == 3000
    assert 0 < page["matching"] < 3000
    assert len(page["rows"]) == 20
    assert all(r["education"] == "PhD" and r["age"] >= 50 for r in page["rows"])
    assert [r["value"] for r in page["rows"]] == sorted(
        (r["value"] for r in page["rows"]), reverse=True
    )
    bad = httpx.get(url, params={"where": "age>=old"})
    assert bad.status_code == 422
    assert "not a number" in bad.json()["detail"]
    csv = httpx.get(f"{url}/export", params={"where": "education=PhD", "format": "csv"})
    assert csv.status_code == 200
    exported = pacsv.read_csv(io.BytesIO(csv.content))
    assert set(exported["education"].to_pylist()) == {"PhD"}
    parquet = httpx.get(f"{url}/export", params={"format": "parquet"})
    assert pq.read_table(io.BytesIO(parquet.content)).num_rows == 3000
    agent = httpx.get(f"{url}/7").json()
    assert agent["persona"]["agent_id"] == 7
    assert [d["step"] for d in agent["decisions"]] == [
        1,
        2,
        3,
    ]
    prompt = agent["decisions"][0]["prompt"]
    assert prompt[0]["role"] == "system"
    assert "players" in prompt[0]["content"]
    assert httpx.get(f"{url}/999999").status_code == 404


def test_interview_survey_and_chart(studio_server: StudioServer) -> None:
    url = f"{studio_server.url}/api/runs/done1"
    one = httpx.post(f"{url}/interview", json={"agent_id": 3, "question": "Why?"}, timeout=30)
    assert one.status_code == 200
    assert one.json()["answers"][0]["raw_text"].startswith("[surrogate]")
    body = {"question": "Trust?", "options": ["yes", "no"], "where": ["model=quick"], "sample": 50}
    survey = httpx.post(f"{url}/survey", json=body, timeout=30).json()
    assert len(survey["answers"]) == 50
    assert all(a["model"] == "quick" for a in survey["answers"])
    listed = httpx.get(f"{url}/inquiries").json()
    assert {q["kind"] for q in listed} == {"interview", "survey"}
    chart = httpx.get(f"{url}/inquiries/{survey['inquiry_id']}", params={"by": "education"}).json()
    assert sum(c["count"] for c in chart["chart"]) == 50
    bad = httpx.post(f"{url}/survey", json={**body, "low": 0, "high": 1}, timeout=30)
    assert bad.status_code == 422
    assert "not both" in bad.json()["detail"]


def test_report_render_and_files(studio_server: StudioServer) -> None:
    url = f"{studio_server.url}/api/runs/done1/report"
    made = httpx.post(url, timeout=60).json()
    assert "convergence.png" in made["files"]
    assert "Rounds" in made["text"]
    assert "convergence.png" in httpx.get(url).json()
    png = httpx.get(f"{url}/convergence.png")
    assert png.status_code == 200
    assert png.content[:4] == b"\x89PNG"


def test_delete_finished_run_and_start_a_new_one(
    studio_server: StudioServer, runs_copy: Path
) -> None:
    from megasim.store.run_lock import RunLock

    with RunLock(runs_copy / "done1"):  # a driver still starting holds it: not deleted
        refused = httpx.delete(f"{studio_server.url}/api/runs/done1")
    assert refused.status_code == 409
    assert (runs_copy / "done1" / "config.yaml").is_file()
    assert httpx.delete(f"{studio_server.url}/api/runs/done1").status_code == 200
    assert not (runs_copy / "done1").exists()
    gone = httpx.get(f"{studio_server.url}/api/runs/done1")
    assert gone.status_code == 404
    assert gone.json()["detail"] == "no run 'done1' in the runs folder"
    page = httpx.get(f"{studio_server.url}/runs/done1/agents")  # a bookmark of the deleted run
    assert page.status_code == 404
    assert page.headers["content-type"].startswith("text/html")
    assert "no run &#x27;done1&#x27; in the runs folder" in page.text
    assert '<a href="/">All runs</a>' in page.text
    assert "text/html" in httpx.get(f"{studio_server.url}/nowhere").headers["content-type"]
    (runs_copy / "small.yaml").write_text(yaml.safe_dump(game_config("small", 50, 1)))
    assert httpx.get(f"{studio_server.url}/api/configs").json() == ["small.yaml"]
    bad = httpx.post(
        f"{studio_server.url}/api/runs", json={"config": "small.yaml", "model": "nope"}
    )
    assert bad.status_code == 422
    assert "nope" in bad.json()["detail"]
    started = httpx.post(
        f"{studio_server.url}/api/runs", json={"config": "small.yaml", "agents": 80}
    )
    run_id = started.json()["run_id"]
    deadline = time.monotonic() + 60
    state = None
    while time.monotonic() < deadline:
        runs = {r["run_id"]: r for r in httpx.get(f"{studio_server.url}/api/runs").json()}
        state = runs.get(run_id, {}).get("state")
        if state == "done":
            break
        time.sleep(0.3)
    assert state == "done"
    assert runs[run_id]["agents"] == 80
    events = httpx.get(f"{studio_server.url}/api/runs/{run_id}/events").json()
    assert events[0]["origin"].startswith("studio 127.0.0.1")


def _sse(url: str, seconds: float) -> list[tuple[float, str, object]]:
    """Events of the live channel received within ``seconds``, with their arrival time."""
    got: list[tuple[float, str, object]] = []
    deadline = time.time() + seconds
    with httpx.stream("GET", url, timeout=seconds + 5) as response:
        kind = ""
        for line in response.iter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                got.append((time.time(), kind, json.loads(line[6:])))
            if time.time() > deadline:
                break
    return got


def test_live_run_streams_and_obeys_pause_resume_stop(runs_copy: Path) -> None:
    process = start_live_run(runs_copy, "live1", size=2000, rounds=30, latency_s=0.3)
    try:
        with StudioServer(runs_copy) as server:
            url = f"{server.url}/api/runs/live1"
            received = _sse(f"{url}/live", 4.0)
            statuses = [d for _, k, d in received if k == "status"]
            assert len(statuses) >= 4
            assert statuses[-1]["summary"]["state"] == "running"
            step_events = [(t, d) for t, k, d in received if k == "steps"]
            assert step_events
            newest = step_events[-1][1]["steps"][-1]  # type: ignore[index]
            assert step_events[-1][0] - newest["time"] < 2.0  # a finished step shows within 2 s
            assert any(d["status"]["in_step"] for d in statuses if d["status"])  # type: ignore[index]
            assert httpx.post(f"{url}/control", json={"action": "pause"}).status_code == 200
            assert _wait_state(url, "paused")
            done_while_paused = httpx.get(url).json()["summary"]["steps_done"]
            asked = httpx.post(f"{url}/interview", json={"agent_id": 1, "question": "Now?"})
            assert asked.status_code == 200  # a live run can be interviewed
            assert asked.json()["answers"][0]["raw_text"].startswith("[surrogate]")
            time.sleep(1.0)
            assert httpx.get(url).json()["summary"]["steps_done"] == done_while_paused
            httpx.post(f"{url}/control", json={"action": "resume"})
            assert _wait_state(url, "running")
            httpx.post(f"{url}/control", json={"action": "stop"})
            assert _wait_state(url, "stopped")
            assert process.wait(timeout=30) == 0
            refused = httpx.post(f"{url}/control", json={"action": "pause"})
            assert refused.status_code == 409
            kinds = [e["event"] for e in httpx.get(f"{url}/events").json()]
            for kind in ("pause_requested", "paused", "unpaused", "stop_requested", "stopped"):
                assert kind in kinds
    finally:
        if process.poll() is None:
            process.kill()
    resumed = subprocess.run(
        [sys.executable, "-m", "megasim", "resume", str(runs_copy / "live1"), "--quiet"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    config = load_config(runs_copy / "live1.yaml", {"out": str(runs_copy / "whole")})
    asyncio.run(run_simulation(config, run_id="whole"))
    assert _decisions(runs_copy / "live1") == _decisions(runs_copy / "whole" / "whole")


def _decisions(run: Path) -> list[dict[str, object]]:
    table = RunDirectory(run).read_decisions().drop_columns(["latency_ms"])
    return table.sort_by([("step", "ascending"), ("agent_id", "ascending")]).to_pylist()


def _wait_state(url: str, state: str, seconds: float = 20) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if httpx.get(url).json()["summary"]["state"] == state:
            return True
        time.sleep(0.2)
    return False
