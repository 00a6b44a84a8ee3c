"""Serving the registry's production model: live pickup of a promotion, clean SIGTERM shutdown."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest

from segmentation.bundle import save_bundle
from segmentation.config import RegistryConfig, load_config
from segmentation.data.io import sample_data_path
from segmentation.registry import LocalRegistry
from segmentation.stages.assemble import fit_model


def _bundle(k: int, root: Path) -> Path:
    config = load_config(overrides=[f"cluster.n_clusters={k}", "evaluate.stability_resamples=0"])
    model, _ = fit_model(pd.read_csv(sample_data_path()), config, source="cc")
    return save_bundle(model, root / f"k{k}")


def test_promotion_is_picked_up_without_dropping_requests_and_sigterm_leaves_nothing(
    tmp_path: Path, start_server, descendants, wait_gone, port_is_free
) -> None:
    home = tmp_path / "home"
    registry = LocalRegistry(home / "registry", "customer-segments")
    first = registry.register(_bundle(5, tmp_path))
    second = registry.register(_bundle(4, tmp_path))
    gate = RegistryConfig(min_stability=None)
    registry.promote(first.version, gate, force=True)
    server = start_server(["--model", "production"], tmp_path / "server.log", env={"SEGMENT_HOME": str(home)})
    customer = pd.read_csv(sample_data_path()).iloc[:1].to_dict("records")
    body = {"customers": [{k: (None if pd.isna(v) else v) for k, v in customer[0].items()}]}
    answers: list[tuple[int, str | None, int]] = []
    stop = threading.Event()

    def client() -> None:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            while not stop.is_set():
                response = http.post("/predict", json=body)
                data = response.json() if response.status_code == 200 else {}
                version = data.get("model", {}).get("version")
                width = len(data["predictions"][0]["distances"]) if data else -1
                answers.append((response.status_code, version, width))

    threads = [threading.Thread(target=client) for _ in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(2)
    registry.promote(second.version, gate, force=True)
    promoted_at = len(answers)
    time.sleep(4)
    stop.set()
    for thread in threads:
        thread.join()
    assert all(status == 200 for status, _, _ in answers), "a request failed during the switch"
    assert answers[0][1] == first.tag
    assert answers[-1][1] == second.tag
    assert answers[-1][2] == 4  # the new model (4 segments) answered
    switch = next(i for i, (_, version, _) in enumerate(answers) if version == second.tag)
    assert switch >= promoted_at - 4  # never before the promotion
    info = httpx.get(f"{server.url}/info").json()["model"]
    assert (info["version"], info["alias"]) == (second.tag, "production")

    children = descendants(server.process.pid)
    assert server.stop() == 0
    assert not wait_gone(children)
    assert port_is_free(server.port)
    assert "Traceback" not in server.log.read_text()


@pytest.mark.parametrize("how", ["sigterm", "ctrl-c"])
def test_shutdown_is_quiet_and_leaves_nothing(
    how: str, cc_bundle: Path, tmp_path: Path, start_server, descendants, wait_gone, port_is_free
) -> None:
    """SIGTERM (a supervisor, `docker stop`) or Ctrl-C (SIGINT to the group): exit 0, no traceback, no
    process left, the port free; with two inference workers, batching on and requests served first."""
    server = start_server(
        ["--bundle", str(cc_bundle), "--workers", "2", "--max-batch-size", "4", "--batch-timeout", "0.01"],
        tmp_path / "server.log",
        own_group=how == "ctrl-c",
    )
    rows = pd.read_csv(sample_data_path()).iloc[:3].to_dict("records")
    body = {"customers": [{k: (None if pd.isna(v) else v) for k, v in row.items()} for row in rows]}
    with httpx.Client(base_url=server.url, timeout=30) as http:
        for _ in range(5):
            assert http.post("/predict", json=body).status_code == 200
    children = descendants(server.process.pid)
    assert len(children) >= 3, children  # the HTTP process and two inference workers at least
    code = server.stop() if how == "sigterm" else server.interrupt()
    log = server.log.read_text()
    assert code in (0, 128 + signal.SIGTERM), log[-3000:]
    assert "Traceback" not in log, log[-3000:]
    assert "KeyboardInterrupt" not in log, log[-3000:]
    assert not wait_gone(children), "a worker outlived the server"
    assert port_is_free(server.port)
