"""The local Prefect stack for real: server, process pool, deployment, worker; runs that complete and fail."""

from __future__ import annotations

import json
import subprocess
import sys
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


def test_aws_ec2_deployment_renders_an_ec2_task_without_secrets(stack: dict) -> None:
    """The ECS pool and the aws-ec2 deployment on the real local server, rendered as the ECS worker would."""
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect_aws.workers.ecs_worker import ECSJobConfiguration

    env = {**stack["env"], **AWS_ENV, "WANDB_API_KEY": "secret-value-that-must-not-leak"}
    prefect = str(Path(sys.executable).parent / "prefect")
    for command in (
        ["work-pool", "create", "segmentation-ecs", "--type", "ecs", "--overwrite"],
        ["--no-prompt", "deploy", "--name", "train-segmentation/aws-ec2"],
    ):
        result = subprocess.run(
            [prefect, *command], env=env, capture_output=True, text=True, timeout=300, check=False
        )
        assert result.returncode == 0, result.stdout + result.stderr

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
