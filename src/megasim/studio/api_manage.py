"""JSON API that changes things: pause / resume / stop / restart a shard of a live run,
start a new run from a config in the runs folder, delete a finished run.

Commands reach the driver as files (``store/bus.py``); every action is logged in the
run's events.jsonl (deletions, whose run is gone, in ``<runs>/.studio/events.jsonl``)
with its time and origin.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, Field

from megasim.config import ConfigError, load_config
from megasim.store.bus import post_command
from megasim.store.run_dir import new_run_id
from megasim.store.run_lock import RunInUseError, RunLock
from megasim.studio.context import Studio, studio_of

router = APIRouter(prefix="/api", tags=["manage"])
StudioDep = Annotated[Studio, Depends(studio_of)]
LIVE = ("running", "paused", "stopping")
CONFIG_FILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,120}\.ya?ml$")


def origin_of(request: Request) -> str:
    client = request.client.host if request.client else "unknown"
    return f"studio {client}"


class ControlRequest(BaseModel):
    action: Literal["pause", "resume", "stop", "restart_shard"]
    shard: int | None = Field(default=None, ge=0, description="for restart_shard")


@router.post("/runs/{run_id}/control", summary="Pause, resume, stop, or restart a shard")
def control(
    run_id: str, body: ControlRequest, request: Request, studio: StudioDep
) -> dict[str, Any]:
    path = studio.catalog.path(run_id)
    state = studio.catalog.state(run_id)
    if state not in LIVE:
        raise HTTPException(409, f"run {run_id} is {state}, not live")
    if body.action == "restart_shard" and body.shard is None:
        raise HTTPException(422, "restart_shard needs a shard")
    args = {"shard": body.shard} if body.action == "restart_shard" else {}
    command = post_command(path, body.action, origin_of(request), **args)
    return {"queued": command.to_dict(), "state": state}


@router.delete("/runs/{run_id}", summary="Delete a run that is not live")
def delete_run(run_id: str, request: Request, studio: StudioDep) -> dict[str, Any]:
    path = studio.catalog.path(run_id)
    state = studio.catalog.state(run_id)
    if state in LIVE:
        raise HTTPException(409, f"run {run_id} is {state}: stop it first")
    try:
        with RunLock(path):  # a driver still starting or stalled holds it: never delete under it
            studio.indexes.forget(path)
            shutil.rmtree(path)
    except RunInUseError as exc:
        raise HTTPException(409, str(exc)) from None
    _studio_event(studio.root, "run_deleted", run_id=run_id, origin=origin_of(request))
    return {"deleted": run_id}


@router.get("/configs", summary="Run configs (YAML files) in the runs folder")
def configs(studio: StudioDep) -> list[str]:
    if not studio.root.is_dir():
        return []
    return sorted(
        p.name for p in studio.root.iterdir() if CONFIG_FILE.match(p.name) and p.is_file()
    )


class StartRequest(BaseModel):
    config: str = Field(description="a YAML file in the runs folder", max_length=130)
    agents: int | None = Field(default=None, ge=1, le=100_000_000)
    rounds: int | None = Field(default=None, ge=1, le=100_000)
    model: str | None = Field(default=None, max_length=100)
    runtime: Literal["local", "ray"] | None = None
    shards: int | None = Field(default=None, ge=1, le=10_000)
    seed: int | None = Field(default=None, ge=0)


@router.post("/runs", summary="Start a new run from a config in the runs folder")
def start_run(body: StartRequest, request: Request, studio: StudioDep) -> dict[str, Any]:
    if not CONFIG_FILE.match(body.config):
        raise HTTPException(422, f"not a config file name: {body.config!r}")
    source = studio.root / body.config
    if not source.is_file():
        raise HTTPException(404, f"no config {body.config} in the runs folder")
    overrides: dict[str, Any] = body.model_dump(exclude={"config"})
    overrides["out"] = str(studio.root)
    try:
        config = load_config(source, overrides)
    except ConfigError as exc:
        raise HTTPException(422, str(exc)) from None
    run_id = new_run_id(config.name) + f"-{int(time.time() * 1000) % 1000:03d}"
    command = [sys.executable, "-m", "megasim", "run", str(source), "--quiet", "--run-id", run_id]
    command += ["--out", str(studio.root)]
    for name in ("agents", "rounds", "model", "runtime", "shards", "seed"):
        value = overrides.get(name)
        if value is not None:
            command += [f"--{name}", str(value)]
    logs = studio.root / ".studio" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "MEGASIM_ORIGIN": origin_of(request)}
    with (logs / f"{run_id}.log").open("wb") as log:
        subprocess.Popen(  # our own CLI; every argument validated above
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env
        )
    _studio_event(studio.root, "run_started", run_id=run_id, origin=origin_of(request))
    return {"run_id": run_id, "command": command[1:]}


def _studio_event(root: Path, kind: str, **data: Any) -> None:
    folder = root / ".studio"
    folder.mkdir(exist_ok=True)
    line = json.dumps({"time": time.time(), "event": kind, **data}) + "\n"
    with (folder / "events.jsonl").open("a", encoding="utf-8") as handle:
        handle.write(line)
