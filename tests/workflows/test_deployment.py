"""The local Prefect stack for real: server, process pool, deployment, worker; runs that complete and fail."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pandas as pd
import pytest
import yaml

from segmentation.data.io import sample_data_path

ROOT = Path(__file__).parents[2]
pytestmark = pytest.mark.slow


def test_prefect_yaml_declares_local_and_aws_deployments() -> None:
    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    deployments = {(d["entrypoint"].split(":")[1], d["name"]): d for d in spec["deployments"]}
    assert set(deployments) == {
        ("train_segmentation", "local"),
        ("sweep_segmentation", "local"),
        ("monitor_drift", "local"),
        ("score_customers", "local"),
        ("train_segmentation", "aws-ec2"),
    }
    for flow in ("train_segmentation", "sweep_segmentation", "monitor_drift", "score_customers"):
        assert deployments[(flow, "local")]["work_pool"]["name"] == "segmentation-local"
        step = next(iter(deployments[(flow, "local")]["pull"][0]))
        assert step == "prefect.deployments.steps.set_working_directory"
    aws = deployments[("train_segmentation", "aws-ec2")]
    assert aws["work_pool"]["job_variables"]["launch_type"] == "EC2"
    assert aws["parameters"]["data_path"].startswith("s3://")
    for value in json.dumps(aws["work_pool"]["job_variables"]["env"]).split('"'):
        assert not value.startswith(("AKIA", "wandb_")), "no secret values in job variables"


def test_local_deployment_round_trip_completes_and_bad_data_fails(stack: dict, tmp_path: Path) -> None:
    info, env, port = stack["info"], stack["env"], stack["port"]
    assert info["api_url"] == f"http://127.0.0.1:{port}/api"
    prefect = str(Path(sys.executable).parent / "prefect")

    def run(*params: str) -> subprocess.CompletedProcess[str]:
        args = [arg for p in params for arg in ("-p", p)]
        return subprocess.run(
            [prefect, "deployment", "run", "train-segmentation/local", "--watch", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )

    good = tmp_path / "good-run"
    result = run(f"out_dir={good}", 'overrides=["evaluate.stability_resamples=2", "cluster.search.k_max=5"]')
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Completed" in result.stdout
    metrics = json.loads((good / "metrics.json").read_text())
    assert metrics["n_rows"] == 8950
    assert (good / "report.html").is_file()
    assert (good / "bundle" / "manifest.json").is_file()

    frame = pd.read_csv(sample_data_path())
    frame.loc[3, "BALANCE"] = -10.0
    bad_data = tmp_path / "bad.csv"
    frame.to_csv(bad_data, index=False)
    bad = tmp_path / "bad-run"
    result = run(f"data_path={bad_data}", f"out_dir={bad}")
    assert result.returncode != 0
    assert "Failed" in result.stdout
    assert "BALANCE" in (bad / "validation_report.txt").read_text()
    assert not (bad / "bundle").exists()


AWS_ENV = {
    "SEGMENT_IMAGE": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/customer-segmentation:runtime",
    "SEGMENT_ECS_CLUSTER": "segmentation",
    "SEGMENT_ECS_EXECUTION_ROLE_ARN": "arn:aws:iam::123456789012:role/segmentation-execution",
    "SEGMENT_ECS_TASK_ROLE_ARN": "arn:aws:iam::123456789012:role/segmentation-task",
    "SEGMENT_VPC_ID": "vpc-0123456789abcdef0",
    "SEGMENT_SUBNET_ID": "subnet-0123456789abcdef0",
    "SEGMENT_DATA_BUCKET": "acme-customer-data",
}


def deploy_aws_ec2(env: dict[str, str]) -> None:
    """The ECS pool, then `prefect deploy` of the aws-ec2 deployment from prefect.yaml, on this server."""
    prefect = str(Path(sys.executable).parent / "prefect")
    for command in (
        ["work-pool", "create", "segmentation-ecs", "--type", "ecs", "--overwrite"],
        ["--no-prompt", "deploy", "--name", "train-segmentation/aws-ec2"],
    ):
        result = subprocess.run(
            [prefect, *command], env=env, capture_output=True, text=True, timeout=300, check=False
        )
        assert result.returncode == 0, result.stdout + result.stderr


def test_aws_ec2_deployment_renders_an_ec2_task_without_secrets(stack: dict) -> None:
    """The ECS pool and the aws-ec2 deployment on the real local server, rendered as the ECS worker would."""
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect_aws.workers.ecs_worker import ECSJobConfiguration

    env = {**stack["env"], **AWS_ENV, "WANDB_API_KEY": "secret-value-that-must-not-leak"}
    deploy_aws_ec2(env)

    async def render() -> tuple[dict, ECSJobConfiguration]:
        async with get_client() as client:
            deployment = await client.read_deployment_by_name("train-segmentation/aws-ec2")
            pool = await client.read_work_pool("segmentation-ecs")
            assert pool.type == "ecs"
            config = await ECSJobConfiguration.from_template_and_values(
                pool.base_job_template, deployment.job_variables
            )
            return deployment.parameters, config

    # PREFECT_API_URL set explicitly: this stack's server, not any other this process knows.
    with temporary_settings(updates={PREFECT_API_URL: env["PREFECT_API_URL"]}):
        parameters, config = asyncio.run(render())
    assert parameters["data_path"] == "s3://acme-customer-data/customers/latest.parquet"
    run = config.task_run_request
    assert run["launchType"] == "EC2"
    assert run["cluster"] == "segmentation"
    assert run["overrides"]["taskRoleArn"] == AWS_ENV["SEGMENT_ECS_TASK_ROLE_ARN"]
    task = config.task_definition
    assert task["containerDefinitions"][0]["image"] == AWS_ENV["SEGMENT_IMAGE"]
    assert (task["cpu"], task["memory"]) == (2048, 8192)
    assert task["executionRoleArn"] == AWS_ENV["SEGMENT_ECS_EXECUTION_ROLE_ARN"]
    rendered = json.dumps({"run": run, "task": task, "env": config.env})
    assert "secret-value-that-must-not-leak" not in rendered
    assert "WANDB_API_KEY" not in rendered
    assert config.env["PREFECT_DEFAULT_RESULT_STORAGE_BLOCK"] == "s3-bucket/segmentation-results"


# ---------------------------------------------------------------------------------------------------------
# The aws-ec2 deployment as the runtime image runs it, without Docker.


def dockerfile_stages(path: Path) -> dict[str, dict]:
    """Each named stage of a Dockerfile: its WORKDIR, ENV and COPY instructions.

    Enough of the syntax for this project's Dockerfile (line continuations, ``ENV k=v ...``,
    ``COPY [--from=..] [--chown=..] SRC... DEST``); an instruction it does not know is kept out.
    """
    logical: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    stages: dict[str, dict] = {}
    stage: dict | None = None
    for line in logical:
        instruction, _, rest = line.partition(" ")
        words = shlex.split(rest)
        if instruction == "FROM":
            stage = {"from": words[0], "workdir": "/", "env": {}, "copy": []}
            stages[words[-1] if len(words) == 3 and words[1].upper() == "AS" else str(len(stages))] = stage
        elif stage is None:
            continue
        elif instruction == "WORKDIR":
            stage["workdir"] = words[0]
        elif instruction == "ENV":
            stage["env"].update(word.split("=", 1) for word in words)
        elif instruction == "COPY":
            flags = dict(w.removeprefix("--").split("=", 1) for w in words if w.startswith("--"))
            paths = [w for w in words if not w.startswith("--")]
            stage["copy"].append({"from": flags.get("from"), "sources": paths[:-1], "dest": paths[-1]})
    return stages


def _copy_into(sources: list[str], dest: str, root: Path) -> None:
    """``COPY SRC... DEST`` from the project, ``DEST`` relative to ``root`` (``.dockerignore``'s caches
    left out). As Docker does: a directory's contents go into ``DEST``; a file goes into ``DEST`` when it
    ends with ``/`` or there are several sources, else it becomes ``DEST``."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build", "dist")
    into = dest.endswith("/") or len(sources) > 1
    for source in sources:
        origin = ROOT / source
        target = root / dest / origin.name if origin.is_file() and into else root / dest
        if origin.is_dir():
            shutil.copytree(origin, target, ignore=ignore, dirs_exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(origin, target)


def image_environment(tmp_path: Path) -> dict[str, Path]:
    """The runtime image laid out in ``tmp_path``: the project built as a wheel from what the builder
    stage copies, installed non-editable into a fresh virtual environment (``/opt/venv``), and the
    runtime stage's working directory holding exactly what that stage copies into it (``/app``).

    The fresh environment's dependencies are this test environment's (a ``.pth`` file after its own
    site-packages), so nothing is downloaded; the project itself is found only in the wheel's install:
    the checkout is on no path.
    """
    stages = dockerfile_stages(ROOT / "Dockerfile")
    builder, runtime = stages["builder"], stages["runtime"]
    context = tmp_path / "build-context"
    for copy in builder["copy"]:
        assert copy["from"] is None
        _copy_into(copy["sources"], copy["dest"], context)
    wheels = tmp_path / "wheels"
    pip = [sys.executable, "-m", "pip"]
    subprocess.run(
        [
            *pip,
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-q",
            "-w",
            str(wheels),
            str(context),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = wheels.glob("customer_segmentation-*.whl")
    venv = tmp_path / "opt-venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run(
        [*pip, "--python", str(python), "install", "--no-deps", "--no-index", "-q", str(wheel)],
        check=True,
        capture_output=True,
    )
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    (Path(site) / "test-environment-dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")

    app = tmp_path / "app"
    app.mkdir()
    for copy in runtime["copy"]:
        if copy["from"] == "builder":
            assert copy["sources"] == ["/opt/venv"], "the runtime stage takes only the environment"
            continue
        dest = copy["dest"] if copy["dest"].startswith("/") else f"{runtime['workdir']}/{copy['dest']}"
        assert dest.startswith(runtime["workdir"])
        _copy_into(copy["sources"], dest.removeprefix(runtime["workdir"]).lstrip("/") or ".", app)
    return {"venv": venv, "python": python, "app": app, "workdir": Path(runtime["workdir"])}


def test_aws_ec2_deployment_runs_from_the_runtime_image_layout(stack: dict, tmp_path: Path) -> None:
    """The aws-ec2 deployment's own entrypoint and pull steps, executed the way its ECS task runs them
    (``prefect flow-run execute`` in the runtime image), complete a flow run against a real server.

    Only what cannot exist here is mapped: the image's ``/app`` is a temporary directory (in the pull
    step, the image's ``ENV``, the job's env and the ``out_dir`` parameter), and the S3 result storage
    block is left out (no AWS).
    """
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import DeploymentUpdate
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect_aws.workers.ecs_worker import ECSJobConfiguration

    image = image_environment(tmp_path)
    app, workdir = image["app"], str(image["workdir"])

    def mapped(value: str) -> str:
        return value.replace(workdir, str(app), 1) if value.startswith(workdir) else value

    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    aws = next(d for d in spec["deployments"] if d["name"] == "aws-ec2")
    assert aws["pull"] == [{"prefect.deployments.steps.set_working_directory": {"directory": workdir}}], (
        "the deployment's working directory is the runtime image's WORKDIR"
    )

    # Which code the image runs: the wheel's, from the entrypoint's module, with the checkout on no path.
    code = (
        "import segmentation, segmentation_workflows.train as train, sys; "
        "print(train.__file__, segmentation.__file__)"
    )
    probe = subprocess.run(
        [str(image["python"]), "-c", code + "; print(*sys.path, sep='\\n')"],
        cwd=app,
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    modules, *path = probe.stdout.splitlines()
    assert all(Path(m).is_relative_to(image["venv"]) for m in modules.split()), modules
    elsewhere = [p for p in path if p and not Path(p).is_relative_to(image["venv"])]
    assert not [
        p for p in elsewhere for pkg in ("segmentation", "segmentation_workflows") if (Path(p) / pkg).exists()
    ]

    env = {**stack["env"], **AWS_ENV}
    deploy_aws_ec2(env)

    data = tmp_path / "customers.csv"
    shutil.copy(sample_data_path(), data)
    parameters = {
        "data_path": str(data),
        "out_dir": mapped(aws["parameters"]["out_dir"]),
        "overrides": ["evaluate.stability_resamples=2", "cluster.search.k_max=4"],
    }

    async def submit() -> tuple[str, ECSJobConfiguration]:
        async with get_client() as client:
            deployment = await client.read_deployment_by_name("train-segmentation/aws-ec2")
            assert deployment.entrypoint == aws["entrypoint"]
            assert deployment.pull_steps == aws["pull"]
            # /app cannot be created here: the one change to the stored deployment.
            pull = [
                {step: {"directory": mapped(args["directory"])}}
                for s in aws["pull"]
                for step, args in s.items()
            ]
            await client.update_deployment(deployment.id, DeploymentUpdate(pull_steps=pull))
            flow_run = await client.create_flow_run_from_deployment(deployment.id, parameters=parameters)
            pool = await client.read_work_pool("segmentation-ecs")
            config = await ECSJobConfiguration.from_template_and_values(
                pool.base_job_template, deployment.job_variables
            )
            config.prepare_for_flow_run(flow_run, deployment=deployment)
            return str(flow_run.id), config

    async def final_state(flow_run_id: str) -> tuple[str, dict]:
        async with get_client() as client:
            run = await client.read_flow_run(flow_run_id)
            return run.state.type.value, run.parameters

    with temporary_settings(updates={PREFECT_API_URL: env["PREFECT_API_URL"]}):
        flow_run_id, config = asyncio.run(submit())

    # The container: the runtime stage's ENV and the task's env (the job variables and what the worker
    # adds: the API URL and the flow run's ID), nothing of this machine's environment.
    job_env = aws["work_pool"]["job_variables"]["env"]
    task_env = {
        key: value
        for key, value in config.env.items()
        if key in job_env or key.startswith("PREFECT__") or key == "PREFECT_API_URL"
    }
    assert task_env["PREFECT__FLOW_RUN_ID"] == flow_run_id
    assert task_env.pop("PREFECT_DEFAULT_RESULT_STORAGE_BLOCK") == "s3-bucket/segmentation-results"
    runtime_env = dockerfile_stages(ROOT / "Dockerfile")["runtime"]["env"]
    container_env = {
        **{key: mapped(value) for key, value in runtime_env.items()},
        **{key: mapped(value) for key, value in task_env.items()},
        "HOME": str(app),
        "PATH": f"{image['venv'] / 'bin'}:/usr/local/bin:/usr/bin:/bin",
    }
    assert config.command == "prefect flow-run execute"
    # `prefect` is /opt/venv/bin/prefect in the image; the same module through the fresh environment here.
    result = subprocess.run(
        [str(image["python"]), "-m", "prefect", *config.command.split()[1:]],
        cwd=app,
        env=container_env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    log = result.stdout[-4000:] + result.stderr[-4000:]
    assert result.returncode == 0, log
    with temporary_settings(updates={PREFECT_API_URL: env["PREFECT_API_URL"]}):
        state, ran_with = asyncio.run(final_state(flow_run_id))
    assert state == "COMPLETED", log
    assert ran_with["out_dir"] == str(app / "runs" / "latest")
    out = app / "runs" / "latest"
    assert json.loads((out / "metrics.json").read_text())["n_rows"] == 8950
    assert (out / "bundle" / "manifest.json").is_file()
    assert (app / ".segment" / "registry").is_dir(), "SEGMENT_HOME is the image's /app/.segment"
