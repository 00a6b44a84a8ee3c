"""The Dockerfile and the GitHub Actions workflows pass their linters; installs come from the lock files."""

from __future__ import annotations

import importlib.metadata
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

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


# ---------------------------------------------------------------------------------------------------------
# Reproducible installs: requirements/*.txt (pip-tools, `make lock`).


def _pins(name: str) -> dict[str, str]:
    """``{canonical name: version}`` of a lock file; every line is ``name==version``."""
    pins = {}
    for raw in (ROOT / "requirements" / name).read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            match = re.fullmatch(r"([A-Za-z0-9_.\-]+)==(\S+)", line)
            assert match, f"requirements/{name}: not an exact pin: {raw!r}"
            pins[canonicalize_name(match[1])] = match[2]
    return pins


def test_the_locks_pin_what_pyproject_declares() -> None:
    """Every dependency of pyproject.toml is locked at a version its range admits; runtime is dev's subset."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime, dev = _pins("runtime.txt"), _pins("dev.txt")
    for lock, declared in (
        (runtime, project["dependencies"]),
        (dev, project["optional-dependencies"]["dev"]),
    ):
        for spec in map(Requirement, declared):
            name = canonicalize_name(spec.name)
            assert name in lock, f"{spec.name} is declared but not locked: run `make lock`"
            assert spec.specifier.contains(lock[name], prereleases=True), (
                f"{spec.name}=={lock[name]} is locked, pyproject.toml asks for {spec.specifier}: `make lock`"
            )
    assert {name: dev.get(name) for name in runtime} == runtime, "runtime.txt must agree with dev.txt"
    # The CPU build: a CUDA one would bring nvidia-* packages into the lock.
    assert runtime["torch"].endswith("+cpu")
    assert not [name for name in dev if name.startswith("nvidia-")]


def test_the_suite_runs_on_the_locked_versions() -> None:
    """What these tests run with is what the lock says, so the image built from it is the one tested."""
    drift = {}
    for name, version in _pins("dev.txt").items():
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            installed = None
        if installed != version:
            drift[name] = (version, installed)
    assert not drift, f"installed versions differ from requirements/dev.txt (locked, installed): {drift}"


@pytest.mark.parametrize(
    "path",
    [
        "Dockerfile",
        "Makefile",
        *[f".github/workflows/{w}" for w in ("ci.yml", "deploy.yml", "experiment.yml")],
    ],
)
def test_only_torch_comes_from_the_pytorch_index(path: str) -> None:
    """An extra index next to PyPI lets whichever index has the higher version serve a name (dependency
    confusion): installs take torch alone, --no-deps, from PyTorch's index, and the rest from PyPI."""
    text = (ROOT / path).read_text().replace("\\\n", " ")
    assert "extra-index-url" not in text
    assert "EXTRA_INDEX_URL" not in text
    assert "PIP_INDEX_URL" not in text
    commands = [c for line in text.splitlines() for c in re.split(r"&&|\|\||;", line) if "pip install" in c]
    assert commands or "make setup" in text, "installs go through `make setup` or lock-based pip commands"
    for command in commands:
        if "--index-url" in command:
            words = command.replace("2>/dev/null", "").split()
            assert "--no-deps" in words, command
            assert words[-1] == "torch", command
            assert "--constraint" in words, "torch's version comes from the lock"


def test_the_image_and_ci_install_from_the_lock() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "COPY requirements/runtime.txt" in dockerfile
    assert "--requirement requirements/runtime.txt" in dockerfile
    assert "pip install --no-deps ." in dockerfile
    assert "pip check" in dockerfile
    makefile = (ROOT / "Makefile").read_text()
    assert "-r $(LOCK_DEV)" in makefile
    assert "pip check" in makefile
    for workflow in ("ci.yml", "deploy.yml", "experiment.yml"):
        text = (ROOT / ".github" / "workflows" / workflow).read_text()
        assert "make setup" in text
        assert "cache-dependency-path: requirements/dev.txt" in text
