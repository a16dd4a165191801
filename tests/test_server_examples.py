"""The model-server examples of the README (examples/servers/) load, and the llama.cpp
one passes ``megasim check`` and runs against llama.cpp's real server."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from megasim.cli import app
from megasim.config import load_config
from megasim.model.config import OpenAIModelConfig
from megasim.model.llama_server import free_port, llama_server

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "servers"


@pytest.mark.parametrize("name", ["llama_server", "vllm", "ollama"])
def test_server_examples_load(name: str) -> None:
    config = load_config(EXAMPLES / f"{name}.yaml")
    (model,) = config.models.values()
    assert isinstance(model, OpenAIModelConfig)
    assert model.base_url is not None
    assert model.base_url.startswith("http://127.0.0.1:")


@pytest.mark.slow
def test_llama_server_example_checks_and_runs(tmp_path: Path) -> None:
    pytest.importorskip("xllamacpp")
    document = yaml.safe_load((EXAMPLES / "llama_server.yaml").read_text())
    port = free_port()
    model = document["models"]["llama"]
    model["base_url"] = model["base_url"].replace(":8080/", f":{port}/")  # a free port
    document["out_dir"] = str(tmp_path / "runs")
    config = tmp_path / "llama_server.yaml"
    config.write_text(yaml.safe_dump(document))
    runner = CliRunner()
    with llama_server(4, port=port):
        check = runner.invoke(app, ["check", str(config)], env={"COLUMNS": "200"})
        run = runner.invoke(
            app, ["run", str(config), "--agents", "8", "--rounds", "1", "--run-id", "r", "--quiet"]
        )
    assert check.exit_code == 0, check.output
    assert "n <= 4, the server's limit" in check.output
    assert run.exit_code == 0, run.output
    assert (tmp_path / "runs" / "r" / "preflight.json").is_file()
