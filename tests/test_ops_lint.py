"""The Dockerfile and the GitHub Actions workflows pass their linters (hadolint, actionlint)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).parents[1]
BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    found = shutil.which(name, path=str(BIN)) or shutil.which(name)
    assert found, f"{name} is missing: it is a dev dependency (pip install -e '.[dev]')"
    return found


def test_dockerfile_passes_hadolint() -> None:
    result = subprocess.run(
        [_tool("hadolint"), "Dockerfile"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_is_multi_stage_non_root_with_a_healthcheck() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert all(f"AS {stage}" in text for stage in ("builder", "runtime", "server"))
    assert "USER 10001" in text
    assert "HEALTHCHECK" in text
    assert "/health" in text
    assert 'CMD ["segment", "serve"' in text  # exec form
    assert "torch==2.13.0" in text
    assert "download.pytorch.org/whl/cpu" in text
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", ".segment", "tests"} <= set(ignored)


def test_workflows_pass_actionlint_and_reference_secrets_only() -> None:
    workflows = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
    assert {w.name for w in workflows} >= {"ci.yml", "experiment.yml", "deploy.yml"}
    result = subprocess.run(
        [_tool("actionlint"), *map(str, workflows)], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for workflow in workflows:
        data = yaml.safe_load(workflow.read_text())
        assert "permissions" in data, f"{workflow.name}: least-privilege permissions must be explicit"
        for job in data["jobs"].values():
            assert "timeout-minutes" in job, f"{workflow.name}: every job needs a timeout"
        text = workflow.read_text()
        for name in ("WANDB_API_KEY", "PREFECT_API_KEY", "AWS_SECRET_ACCESS_KEY"):
            for line in text.splitlines():
                if f"{name}:" in line:
                    assert "${{ secrets." in line, f"{workflow.name}: {name} must come from secrets"


def _exec_form(instruction: str) -> list[list[str]]:
    """Every exec-form ``INSTRUCTION [...]`` of the Dockerfile, parsed (continuation lines joined)."""
    import json

    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    found = []
    for line in text.splitlines():
        words = line.strip().split(None, 1)
        if not words:
            continue
        rest = words[1] if len(words) > 1 else ""
        if words[0] == instruction:
            found.append(json.loads(rest[rest.index("[") :]))
        elif words[0] == "HEALTHCHECK" and instruction == "HEALTHCHECK" and "CMD" in rest:
            found.append(json.loads(rest[rest.index("CMD") + 3 :].strip()))
    return found


def test_the_commands_the_images_run_work_outside_docker() -> None:
    from segmentation.cli import build_parser

    runtime_cmd, server_cmd = _exec_form("CMD")
    assert runtime_cmd == ["segment", "--help"]
    result = subprocess.run(
        [str(BIN / runtime_cmd[0]), *runtime_cmd[1:]], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0
    assert "serve" in result.stdout
    args = build_parser().parse_args(server_cmd[1:])  # the server image's command parses as given
    assert (args.command, str(args.bundle), args.host, args.port) == ("serve", "/app/model", "0.0.0.0", 8000)
    (healthcheck,) = _exec_form("HEALTHCHECK")
    assert healthcheck[0] == "python"
    assert "http://127.0.0.1:8000/health" in healthcheck[-1]
