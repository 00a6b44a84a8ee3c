"""The local Prefect stack (``make server``) on a free port: the deployment and parallel-sweep tests."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from segmentation_workflows import local_server


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z")


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """`make server` once per session: a Prefect server on a free port, the pool, deployments, a worker.

    ``home`` is the worker's ``SEGMENT_HOME``: its flow runs' stages, registry and W&B files stay in the
    session's tmp. Tests that read them set ``SEGMENT_HOME`` to it themselves.
    """
    tmp_path = tmp_path_factory.mktemp("stack")
    state = tmp_path / "prefect-server"
    home = tmp_path / "home"
    port = _free_port()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SEGMENT_HOME", str(home))  # inherited by the worker when it starts, and so its runs
        info = local_server.start(port, state)
        env = local_server.environment(port, state)
    try:
        yield {"info": info, "env": env, "port": port, "home": home}
    finally:
        local_server.stop(state)
    assert not _alive(int(info["server_pid"]))
    assert not _alive(int(info["worker_pid"]))
    with socket.socket() as sock:
        # Nothing listens any more (SO_REUSEADDR, as servers use it: closed connections in TIME_WAIT do not
        # count, a listening socket still would).
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
