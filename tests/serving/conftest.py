"""A real `segment serve` process on a free 127.0.0.1 port, and the bundle it serves."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pandas as pd
import pytest

from segmentation.bundle import save_bundle
from segmentation.config import load_config
from segmentation.data.io import sample_data_path
from segmentation.stages.assemble import fit_model

API_KEY = "test-key-123"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    """Nothing listens on the port (connections in TIME_WAIT do not count, as for any server)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (from /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        children = {child for child, parent in parents.items() if parent in frontier}
        found |= children
        frontier = children
    return found


def alive(pids: set[int]) -> set[int]:
    """The processes of ``pids`` that still run (zombies excluded)."""
    out = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            out.add(pid)
    return out


def wait_gone(pids: set[int], timeout: float = 15) -> dict[int, str]:
    """Wait for ``pids`` to exit; return the survivors with their command lines.

    multiprocessing's resource tracker exits once the server's last pipe to it closes, a moment after the
    server itself: a short grace period, not an orphan.
    """
    deadline = time.monotonic() + timeout
    while alive(pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    survivors = {}
    for pid in alive(pids):
        try:
            survivors[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:200]
        except OSError:
            continue
    return survivors


@dataclass
class Server:
    """A running server process."""

    process: subprocess.Popen
    port: int
    log: Path

    @property
    def url(self) -> str:
        """Base URL."""
        return f"http://127.0.0.1:{self.port}"

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM, then wait; returns the exit code."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def interrupt(self, timeout: float = 60) -> int:
        """Ctrl-C in a terminal: SIGINT to the whole process group; returns the exit code."""
        os.killpg(self.process.pid, signal.SIGINT)
        return self.process.wait(timeout=timeout)


def _own_group() -> None:
    """In the child before exec: a process group of its own, SIGINT as a terminal delivers it.

    A shell that starts a job in the background without job control ignores SIGINT in it, and the ignore
    would be inherited; Python installs its KeyboardInterrupt handler only where SIGINT is not ignored.
    """
    os.setpgid(0, 0)
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_server(
    args: list[str],
    log: Path,
    env: dict[str, str] | None = None,
    timeout: float = 180,
    *,
    own_group: bool = False,
) -> Server:
    """Start `segment serve ARGS --port P` and wait until /health answers 200.

    ``own_group`` starts it as a terminal job would (its own process group, SIGINT not ignored), for
    :meth:`Server.interrupt`.
    """
    port = free_port()
    segment = Path(sys.executable).parent / "segment"
    handle = log.open("w")
    process = subprocess.Popen(
        [str(segment), "serve", *args, "--port", str(port)],
        stdout=handle,
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
        preexec_fn=_own_group if own_group else None,  # noqa: PLW1509 (no threads start servers)
    )
    server = Server(process, port, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{server.url}/health", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    process.kill()
    raise AssertionError(f"server not healthy after {timeout} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="session")
def cc_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A k-means bundle trained on CC GENERAL (k = 5, library calls only)."""
    config = load_config(overrides=["cluster.n_clusters=5", "evaluate.stability_resamples=0"])
    model, _ = fit_model(pd.read_csv(sample_data_path()), config, source="cc")
    return save_bundle(model, tmp_path_factory.mktemp("serve") / "bundle")


@pytest.fixture(scope="module")
def server(cc_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The bundle served with batching on (4 requests, 10 ms) and an API key."""
    log = tmp_path_factory.mktemp("server") / "server.log"
    running = start_server(
        [
            "--bundle",
            str(cc_bundle),
            "--max-batch-size",
            "4",
            "--batch-timeout",
            "0.01",
            "--max-customers",
            "1000",
        ],
        log,
        env={"SEGMENT_API_KEY": API_KEY},
    )
    children = descendants(running.process.pid)
    yield running
    if running.process.poll() is None:
        assert running.stop() == 0
    assert "Traceback" not in log.read_text(), log.read_text()[-3000:]
    assert children, "the server runs its workers as child processes"
    assert not wait_gone(children), "worker processes outlived the server"
    assert port_is_free(running.port)


@pytest.fixture(name="start_server")
def _start_server_fixture():
    """``start_server(args, log, env)``; servers still running at the end are killed."""
    started: list[Server] = []

    def start(
        args: list[str], log: Path, env: dict[str, str] | None = None, *, own_group: bool = False
    ) -> Server:
        started.append(start_server(args, log, env, own_group=own_group))
        return started[-1]

    yield start
    for server in started:
        if server.process.poll() is None:
            server.process.kill()


@pytest.fixture(name="descendants")
def _descendants_fixture():
    """The /proc-based process-tree helper."""
    return descendants


@pytest.fixture(name="wait_gone")
def _wait_gone_fixture():
    """Wait for processes to exit; returns survivors."""
    return wait_gone


@pytest.fixture(name="port_is_free")
def _port_is_free_fixture():
    """Whether 127.0.0.1:port can be bound."""
    return port_is_free
