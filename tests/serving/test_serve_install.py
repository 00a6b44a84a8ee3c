"""`pip install .[serve]` is a serving install without Prefect, AWS, Dask, W&B or torch, and it serves.

The slow tests install the project the way the Dockerfile's server image does, for real: a fresh virtual
environment (``python -m venv``), ``requirements/serve.txt`` with ``--no-deps`` (the base dependencies and
the ``serve`` extra, nothing else), then the project's wheel, built from a copy of what the
``serve-builder`` stage copies. Nothing of this test environment is on its path. The fast tests block torch
(or matplotlib, W&B) in a subprocess of this environment and check the message that names the extra.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest

from segmentation.bundle import load_bundle, save_bundle
from segmentation.config import load_config
from segmentation.data.io import sample_data_path
from segmentation.stages.assemble import fit_model

ROOT = Path(__file__).parents[2]
AUTOENCODER_HINT = "pip install 'customer-segmentation[autoencoder]'"
# Importable in a serving install: none of these (the heavy stacks of the other extras).
ABSENT = (
    "torch",
    "pytorch_lightning",
    "lightning",
    "lightning_fabric",
    "prefect",
    "prefect_aws",
    "prefect_dask",
    "dask",
    "distributed",
    "boto3",
    "wandb",
    "sweeps",
    "matplotlib",
)


def _run(command: list[str | Path], **kwargs) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(c) for c in command], capture_output=True, text=True, check=False, **kwargs)
    assert result.returncode == 0, f"{shlex.join(map(str, command))}:\n{result.stdout}\n{result.stderr}"
    return result


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _serve_builder_copies() -> list[list[str]]:
    """The ``COPY SRC... DEST`` sources of the Dockerfile's ``serve-builder`` stage."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    stage, sources = None, []
    for line in text.splitlines():
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if words[0] == "FROM":
            stage = words[-1]
        elif stage == "serve-builder" and words[0] == "COPY":
            assert not [w for w in words[1:] if w.startswith("--")], "serve-builder copies from the context"
            sources.append(words[1:-1])
    return sources


def _build_check(python: Path, bundle: Path, tmp: Path) -> subprocess.CompletedProcess[str]:
    """The server stage's build-time check of its baked-in bundle (``RUN ["python", ...]``), on ``bundle``,
    with ``python`` (the serve install's)."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    stage, checks = None, []
    for line in text.splitlines():
        words = line.split(None, 1)
        if words and words[0] == "FROM":
            stage = line.split()[-1]
        elif stage == "server" and words and words[0] == "RUN" and words[1].startswith("["):
            checks.append(json.loads(words[1]))
    (check,) = checks
    assert check[0] == "python"
    command = [str(python), *(part.replace("/app/model", str(bundle)) for part in check[1:])]
    env = _clean_env(tmp, python.parents[1])
    return subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp, env=env, check=False)


@pytest.fixture(scope="module")
def serve_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment with requirements/serve.txt and the project's wheel, as the image."""
    root = tmp_path_factory.mktemp("serve-install")
    copies = _serve_builder_copies()
    assert ["requirements/serve.txt"] in copies, "the server image installs from requirements/serve.txt"
    context = root / "context"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build", "dist")
    for source in (s for sources in copies for s in sources if not s.startswith("requirements/")):
        origin = ROOT / source
        if origin.is_dir():
            shutil.copytree(origin, context / source, ignore=ignore)
        else:
            context.mkdir(exist_ok=True)
            shutil.copy2(origin, context / source)
    wheels = root / "wheels"
    # The wheel is built here (no network: this environment has setuptools); it holds code only.
    build = ["wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index", "-w", wheels, context]
    _run([sys.executable, "-m", "pip", *build])
    (wheel,) = wheels.glob("customer_segmentation-*.whl")
    venv = root / "venv"
    _run([sys.executable, "-m", "venv", venv])
    # --no-compile: bytecode is written on first import instead (a third of the install time).
    pip = [venv / "bin" / "python", "-m", "pip", "install", "-q", "--no-deps", "--no-compile"]
    _run([*pip, "--requirement", ROOT / "requirements" / "serve.txt"])
    _run([*pip, "--no-index", wheel])
    _run([venv / "bin" / "python", "-m", "pip", "check"])
    return venv


def _clean_env(tmp: Path, venv: Path | None = None) -> dict[str, str]:
    """This process's environment less anything that would put another environment on the path."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYTHON", "VIRTUAL_ENV", "SEGMENT_", "WANDB_", "PREFECT_"))
    }
    env["SEGMENT_HOME"] = str(tmp / "segment-home")
    if venv is not None:
        env["PATH"] = f"{venv / 'bin'}:/usr/local/bin:/usr/bin:/bin"
        env["VIRTUAL_ENV"] = str(venv)
    return env


@pytest.fixture(scope="module")
def pca_bundle(cc_bundle: Path) -> Path:
    """conftest's CC GENERAL k-means bundle, trained in this process: on PCA features (the default)."""
    assert load_bundle(cc_bundle).featurizer.kind == "pca"
    return cc_bundle


@pytest.fixture(scope="module")
def autoencoder_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small autoencoder bundle (two epochs on 1,000 customers), trained in this process (torch here)."""
    config = load_config(
        overrides=[
            "featurize=autoencoder",
            "featurize.hidden_sizes=[8]",
            "featurize.encoding_dim=2",
            "featurize.max_epochs=2",
            "featurize.batch_size=256",
            "featurize.max_train_rows=1000",
            "cluster.n_clusters=3",
            "evaluate.stability_resamples=0",
        ]
    )
    model, _ = fit_model(pd.read_csv(sample_data_path()), config, source="cc")
    assert model.featurizer.kind == "autoencoder"
    return save_bundle(model, tmp_path_factory.mktemp("autoencoder") / "bundle")


# ---------------------------------------------------------------------------------------------------------
# Fast: torch (matplotlib, W&B) blocked in a subprocess of this environment.

_BLOCKER = textwrap.dedent(
    """
    import importlib.abc, sys

    BLOCKED = set(sys.argv.pop(1).split(","))

    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, Blocker())
    """
)


def _blocked(blocked: str, code: str, *args: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    """``python -c BLOCKER+code blocked args...`` with the named top-level packages not importable."""
    return subprocess.run(
        [sys.executable, "-c", _BLOCKER + textwrap.dedent(code), blocked, *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp,
        env=_clean_env(tmp),
        check=False,
    )


def test_serving_an_autoencoder_bundle_without_torch_names_the_extra(
    autoencoder_bundle: Path, tmp_path: Path
) -> None:
    """`segment serve` exits 1 before starting anything, with one line that names the extra."""
    code = "from segmentation_workflows.cli import main; sys.exit(main(sys.argv[1:]))"
    args = ["serve", "--bundle", str(autoencoder_bundle), "--port", str(_free_port())]
    result = _blocked("torch,pytorch_lightning,lightning", code, *args, tmp=tmp_path)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    (line,) = [ln for ln in result.stderr.splitlines() if ln.startswith("error: ")]
    assert str(autoencoder_bundle) in line
    assert "'autoencoder' extra" in line
    assert "no module named 'pytorch_lightning'" in line or "no module named 'torch'" in line
    assert line.endswith(AUTOENCODER_HINT)


def test_training_an_autoencoder_without_torch_names_the_extra(tmp_path: Path) -> None:
    code = """
        from segmentation.config import AutoencoderConfig
        from segmentation.errors import MissingExtraError, SegmentationError
        from segmentation.features import build_featurizer
        try:
            build_featurizer(AutoencoderConfig(), seed=0)
        except MissingExtraError as exc:
            assert isinstance(exc, SegmentationError) and exc.extra == "autoencoder", exc
            print(exc)
        """
    result = _blocked("pytorch_lightning", code, tmp=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "no module named 'pytorch_lightning'" in result.stdout
    assert result.stdout.strip().endswith(AUTOENCODER_HINT)


@pytest.mark.parametrize(
    ("blocked", "code"),
    [
        ("matplotlib", "import segmentation.insights.plots"),
        ("wandb", "from segmentation.tracking import read_offline_run; read_offline_run('.')"),
    ],
)
def test_plots_and_tracking_without_their_packages_name_the_train_extra(
    blocked: str, code: str, tmp_path: Path
) -> None:
    wrapped = f"""
        from segmentation.errors import MissingExtraError
        try:
            {code}
        except MissingExtraError as exc:
            print(exc)
        """
    result = _blocked(blocked, wrapped, tmp=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"no module named '{blocked}'" in result.stdout
    assert result.stdout.strip().endswith("pip install 'customer-segmentation[train]'")


# ---------------------------------------------------------------------------------------------------------
# Slow: the real serving install.


@pytest.mark.slow
def test_the_serve_install_has_no_heavy_stack_and_runs_from_its_own_environment(
    serve_venv: Path, tmp_path: Path
) -> None:
    code = textwrap.dedent(
        f"""
        import importlib.util, sys
        import segmentation, segmentation_workflows.cli, segmentation.serving.app, segmentation.scoring
        import segmentation.drift, segmentation.registry
        print(segmentation.__file__)
        print(",".join(m for m in {ABSENT!r} if importlib.util.find_spec(m) is not None))
        print(",".join(sorted({{m.partition(".")[0] for m in sys.modules}} & set({ABSENT!r}))))
        """
    )
    python = serve_venv / "bin" / "python"
    result = _run([python, "-I", "-c", code], cwd=tmp_path, env=_clean_env(tmp_path, serve_venv))
    where, installed, imported = result.stdout.splitlines()
    assert Path(where).is_relative_to(serve_venv), "the project comes from the serve install's wheel"
    assert installed == "", f"a serving install must not have: {installed}"
    assert imported == ""


@pytest.mark.slow
def test_the_serve_install_serves_a_pca_bundle_and_stops_cleanly(
    serve_venv: Path, pca_bundle: Path, tmp_path: Path
) -> None:
    port = _free_port()
    log = tmp_path / "server.log"
    env = _clean_env(tmp_path, serve_venv)
    with log.open("w") as handle:
        process = subprocess.Popen(
            [str(serve_venv / "bin" / "segment"), "serve", "--bundle", str(pca_bundle), "--port", str(port)],
            stdout=handle,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
            env=env,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        # The server stage's build-time check passes on this bundle (in the serve install).
        check = _build_check(serve_venv / "bin" / "python", pca_bundle, tmp_path)
        assert check.returncode == 0, check.stderr
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, f"server exited with {process.returncode}:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"server not healthy after 120 s:\n{log.read_text()}"
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)

        frame = pd.read_csv(sample_data_path()).iloc[:2]
        customers = [
            {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in record.items()}
            for record in frame.to_dict("records")
        ]
        response = httpx.post(f"{url}/predict", json={"customers": customers}, timeout=30)
        assert response.status_code == 200, response.text
        predictions = response.json()["predictions"]
        expected = load_bundle(pca_bundle).predict(frame)  # this environment, same bundle
        assert [p["id"] for p in predictions] == list(frame["CUST_ID"])
        assert [p["segment"] for p in predictions] == expected.tolist()

        info = httpx.get(f"{url}/info", timeout=10)
        assert info.status_code == 200
        assert info.json()["model"]["features"] == load_bundle(pca_bundle).schema.feature_names

        # The server image's HEALTHCHECK, with the serve install's Python.
        text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
        line = next(ln for ln in text.splitlines() if ln.strip().startswith("HEALTHCHECK"))
        python, *command = json.loads(line[line.index("CMD") + 3 :].strip())
        assert python == "python"
        command = [str(serve_venv / "bin" / "python"), *(c.replace(":8000/", f":{port}/") for c in command)]
        assert subprocess.run(command, timeout=30, check=False, env=env).returncode == 0
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    assert code == 0, log.read_text()
    assert "Traceback" not in log.read_text(), log.read_text()
    with socket.socket() as sock:  # nothing listens any more
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))


@pytest.mark.slow
def test_the_serve_install_refuses_an_autoencoder_bundle_naming_the_extra(
    serve_venv: Path, autoencoder_bundle: Path, tmp_path: Path
) -> None:
    segment = serve_venv / "bin" / "segment"
    args = ["serve", "--bundle", str(autoencoder_bundle), "--port", str(_free_port())]
    result = subprocess.run(
        [str(segment), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=_clean_env(tmp_path, serve_venv),
        check=False,
    )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    (line,) = [ln for ln in result.stderr.splitlines() if ln.startswith("error: ")]
    assert "no module named 'pytorch_lightning'" in line or "no module named 'torch'" in line
    assert line.endswith(AUTOENCODER_HINT)
    # `docker build --target server` with this bundle as model/ fails at the stage's check, with the extra.
    check = _build_check(serve_venv / "bin" / "python", autoencoder_bundle, tmp_path)
    assert check.returncode != 0
    assert AUTOENCODER_HINT in check.stderr
