"""The Dockerfile and the GitHub Actions workflows pass their linters; installs come from the lock files."""

from __future__ import annotations

import importlib.metadata
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import cast

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


def _dockerfile_stages() -> dict[str, dict[str, object]]:
    """Each stage of the Dockerfile: its base (``from``) and instructions (continuation lines joined)."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    stages: dict[str, dict[str, object]] = {}
    lines: list[str] = []
    for line in text.splitlines():
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if words[0] == "FROM":
            lines = []
            stages[words[-1]] = {"from": words[1], "lines": lines}
        elif stages:
            lines.append(" ".join(words))
    return stages


def test_dockerfile_is_multi_stage_non_root_with_a_healthcheck() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert all(f"AS {stage}" in text for stage in ("builder", "runtime", "serve-builder", "server"))
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
    from segmentation_workflows.cli import build_parser

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


# What a serving install (the base and the `serve` extra, requirements/serve.txt) must never hold: the
# stacks of the other extras (torch and Lightning, Prefect and its AWS and Dask integrations, W&B, plots).
NOT_SERVED = ("torch", "nvidia-", "lightning", "pytorch-lightning", "prefect", "dask", "distributed")
NOT_SERVED_EXACT = {"boto3", "botocore", "aiobotocore", "wandb", "sweeps", "matplotlib", "torchmetrics"}
COMPONENT_EXTRAS = ("serve", "autoencoder", "train", "aws", "dask")


def _extras() -> dict[str, set[str]]:
    """``{extra: {requirement as written}}`` from pyproject.toml, ``base`` for the dependencies."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = {
        name: set(map(str, map(Requirement, reqs))) for name, reqs in project["optional-dependencies"].items()
    }
    return {"base": set(map(str, map(Requirement, project["dependencies"]))), **extras}


def test_the_locks_pin_what_pyproject_declares() -> None:
    """Every dependency of pyproject.toml is locked at a version its range admits, in each lock that
    installs it; runtime and serve are subsets of dev at the same versions."""
    extras = _extras()
    runtime, dev, serve = _pins("runtime.txt"), _pins("dev.txt"), _pins("serve.txt")
    for lock_name, lock, groups in (
        ("runtime.txt", runtime, ("base", "all")),
        ("dev.txt", dev, ("base", "dev")),
        ("serve.txt", serve, ("base", "serve")),
    ):
        for spec in (Requirement(r) for group in groups for r in extras[group]):
            name = canonicalize_name(spec.name)
            assert name in lock, f"{spec.name} is declared but not in {lock_name}: run `make lock`"
            assert spec.specifier.contains(lock[name], prereleases=True), (
                f"{spec.name}=={lock[name]} is in {lock_name}, pyproject.toml asks for {spec.specifier}: "
                "`make lock`"
            )
    assert {name: dev.get(name) for name in runtime} == runtime, "runtime.txt must agree with dev.txt"
    assert {name: dev.get(name) for name in serve} == serve, "serve.txt must agree with dev.txt"
    # The CPU build: a CUDA one would bring nvidia-* packages into the lock.
    assert runtime["torch"].endswith("+cpu")
    assert not [name for name in dev if name.startswith("nvidia-")]


def test_all_is_every_extra_and_dev_holds_all() -> None:
    """``all`` spells out serve + autoencoder + train + aws + dask (pip-compile cannot lock a
    self-referencing extra), exactly; ``dev`` is all of it plus the tools."""
    extras = _extras()
    union = set().union(*(extras[name] for name in COMPONENT_EXTRAS))
    assert extras["all"] == union, f"`all` differs from the extras: {extras['all'] ^ union}"
    assert extras["dev"] >= union, f"`dev` lacks {union - extras['dev']}"
    names = {canonicalize_name(Requirement(r).name) for group in extras.values() for r in group}
    assert "customer-segmentation" not in names, "spell extras out: no self-reference"


def test_the_serve_lock_has_no_training_stack() -> None:
    """requirements/serve.txt: the base and `serve` only; none of the other extras' stacks."""
    serve = _pins("serve.txt")
    heavy = sorted(n for n in serve if n.startswith(NOT_SERVED) or n in NOT_SERVED_EXACT)
    assert not heavy, f"requirements/serve.txt must not hold {heavy}"
    assert {"litserve", "fastapi", "scikit-learn", "hdbscan", "pandera"} <= set(serve)
    extras = _extras()
    other = {
        canonicalize_name(Requirement(r).name)
        for name in COMPONENT_EXTRAS
        if name != "serve"
        for r in extras[name]
    }
    assert not other & set(serve), f"requirements/serve.txt holds other extras: {other & set(serve)}"


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
    for lock in ("LOCK_DEV", "LOCK_RUNTIME", "LOCK_SERVE"):
        assert f"--output-file $({lock})" in makefile, f"`make lock` writes {lock}"
    for workflow in ("ci.yml", "deploy.yml", "experiment.yml"):
        text = (ROOT / ".github" / "workflows" / workflow).read_text()
        assert "make setup" in text
        assert "cache-dependency-path: requirements/dev.txt" in text


def test_the_server_image_installs_only_the_serve_lock() -> None:
    """The server stage takes its environment from serve-builder, which installs requirements/serve.txt
    and the project, nothing else (no torch, no other lock); the runtime image keeps every extra."""
    stages = _dockerfile_stages()
    server, builder = stages["server"], stages["serve-builder"]
    assert server["from"] == builder["from"] == stages["builder"]["from"], "server is not built FROM runtime"
    server_lines = cast(list[str], server["lines"])
    assert [ln for ln in server_lines if ln.startswith("COPY --from=")] == [
        "COPY --from=serve-builder /opt/venv /opt/venv"
    ]
    assert not [ln for ln in server_lines if "pip install" in ln], "the server stage installs nothing"
    assert "USER 10001:10001" in server_lines
    installs = [ln for ln in cast(list[str], builder["lines"]) if "pip install" in ln]
    assert installs == [
        "RUN pip install --no-deps --requirement requirements/serve.txt",
        "RUN pip install --no-deps . && pip check",
    ]
    copies = [ln for ln in cast(list[str], builder["lines"]) if ln.startswith("COPY")]
    assert not [ln for ln in copies if "requirements/" in ln and "requirements/serve.txt" not in ln]
    runtime_copies = [ln for ln in cast(list[str], stages["runtime"]["lines"]) if ln.startswith("COPY")]
    assert runtime_copies == ["COPY --from=builder /opt/venv /opt/venv"]


def test_every_package_of_src_and_workflows_is_installed() -> None:
    """pyproject.toml lists the packages by hand (workflows/ installs as segmentation_workflows)."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert setuptools["package-dir"] == {"": "src", "segmentation_workflows": "workflows"}
    found = {
        ".".join(init.parent.relative_to(ROOT / "src").parts) for init in (ROOT / "src").rglob("__init__.py")
    } | {"segmentation_workflows"}
    assert set(setuptools["packages"]) == found
    assert (ROOT / "workflows" / "__init__.py").is_file()
    assert not list((ROOT / "workflows").glob("*/__init__.py")), "a subpackage of workflows/ needs listing"


def test_functions_stay_short_or_say_why() -> None:
    """No function of src/ or workflows/ over 80 lines of code (docstring aside), unless its docstring
    has a line starting ``Length:`` that says why (ruff's C901/PLR0912/PLR0915 bound the rest)."""
    import ast

    long = []
    for folder in ("src", "workflows"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    continue
                doc = ast.get_docstring(node) or ""
                first = node.body[0]
                docstring_lines = (
                    first.end_lineno - first.lineno + 1
                    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
                    else 0
                )
                lines = node.end_lineno - node.lineno + 1 - docstring_lines
                said = any(line.strip().startswith("Length:") for line in doc.splitlines())
                if lines > 80 and not said:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, long
