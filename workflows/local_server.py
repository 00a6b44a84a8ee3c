"""A real local Prefect stack: server (SQLite), the process work pool, the deployments, one worker.

``make server`` runs ``python -m segmentation_workflows.local_server start``; ``make server-stop`` runs
``stop``. State lives in ``$SEGMENT_HOME/prefect-server`` (database, logs, PID files). Every Prefect
command gets an explicit ``PREFECT_API_URL``: without it the CLI would silently start a temporary server
of its own.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from segmentation.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
LOCAL_POOL = "segmentation-local"
LOCAL_DEPLOYMENTS = (
    "train-segmentation/local",
    "sweep-segmentation/local",
    "monitor-drift/local",
    "score-customers/local",
)


def state_dir() -> Path:
    """``$SEGMENT_HOME/prefect-server``."""
    return Settings.from_environ(os.environ).home / "prefect-server"


def environment(port: int, state: Path) -> dict[str, str]:
    """The environment every process of the stack runs with."""
    return {
        **os.environ,
        "PREFECT_HOME": str(state / "home"),
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{state / 'prefect.db'}",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "SEGMENT_PROJECT_DIR": str(ROOT),
    }


def _prefect(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = [str(Path(sys.executable).parent / "prefect"), *args]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    return result


def _spawn(name: str, args: list[str], env: dict[str, str], state: Path) -> int:
    log = (state / f"{name}.log").open("ab")
    process = subprocess.Popen(  # its own session: stop() signals the whole group
        [str(Path(sys.executable).parent / "prefect"), *args],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    (state / f"{name}.pid").write_text(str(process.pid))
    return process.pid


def _wait_healthy(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:  # noqa: S310 (our own URL)
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"Prefect server at {url} not healthy after {timeout:.0f} s")


def start(port: int = 4200, state: Path | None = None, timeout: float = 120) -> dict[str, object]:
    """Start server, create the pool, deploy the local deployments, start a process worker.

    Returns:
        ``{"api_url", "server_pid", "worker_pid", "seconds"}``.
    """
    began = time.monotonic()
    state = state or state_dir()
    state.mkdir(parents=True, exist_ok=True)
    env = environment(port, state)
    server = _spawn("server", ["server", "start", "--host", "127.0.0.1", "--port", str(port)], env, state)
    try:
        _wait_healthy(env["PREFECT_API_URL"], timeout)
        _prefect("work-pool", "create", LOCAL_POOL, "--type", "process", "--overwrite", env=env)
        names = [arg for name in LOCAL_DEPLOYMENTS for arg in ("--name", name)]
        _prefect("--no-prompt", "deploy", *names, env=env)
        worker = _spawn("worker", ["worker", "start", "--pool", LOCAL_POOL, "--type", "process"], env, state)
    except BaseException:
        stop(state)
        raise
    info = {
        "api_url": env["PREFECT_API_URL"],
        "server_pid": server,
        "worker_pid": worker,
        "seconds": round(time.monotonic() - began, 1),
    }
    (state / "stack.json").write_text(json.dumps(info, indent=2))
    return info


def _reap(pid: int) -> None:
    """Collect ``pid``'s exit status if this process started it: a zombie leader keeps its group alive."""
    with contextlib.suppress(ChildProcessError):  # not our child (``make server-stop``): init reaps it
        os.waitpid(pid, os.WNOHANG)


def stop(state: Path | None = None, timeout: float = 30) -> list[int]:
    """Stop the worker, then the server (SIGTERM to each process group, SIGKILL after ``timeout``)."""
    state = state or state_dir()
    stopped = []
    for name in ("worker", "server"):
        pid_file = state / f"{name}.pid"
        if not pid_file.is_file():
            continue
        pid = int(pid_file.read_text())
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            pid_file.unlink()
            continue
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            _reap(pid)
            try:
                os.killpg(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.2)
        else:
            os.killpg(pid, signal.SIGKILL)
        pid_file.unlink()
        stopped.append(pid)
    return stopped


def main(argv: list[str] | None = None) -> int:
    """``start [--port N]`` or ``stop``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["start", "stop"])
    parser.add_argument("--port", type=int, default=int(os.environ.get("PREFECT_PORT", "4200")))
    args = parser.parse_args(argv)
    if args.action == "start":
        info = start(args.port)
        sys.stdout.write(
            f"Prefect server {info['api_url']} (pid {info['server_pid']}), worker on {LOCAL_POOL} "
            f"(pid {info['worker_pid']}), ready in {info['seconds']} s.\n"
            f"export PREFECT_API_URL={info['api_url']}\n"
            "prefect deployment run 'train-segmentation/local' --watch\n"
        )
    else:
        stopped = stop()
        sys.stdout.write(f"stopped {len(stopped)} process group(s)\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
