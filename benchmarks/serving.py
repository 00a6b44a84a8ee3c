"""Serving throughput and latency: the LitServe endpoint next to a plain FastAPI endpoint, same bundle.

Run from the repository root::

    .venv/bin/python benchmarks/serving.py                 # 8 s per level
    .venv/bin/python benchmarks/serving.py --seconds 3     # quicker

Both servers run at once on 127.0.0.1 (free ports) and serve the same k-means bundle trained on the
bundled CC GENERAL data: (a) ``segment serve --bundle B`` (LitServe: one HTTP process, one inference worker,
no batching), (b) ``uvicorn plain_fastapi:app`` (FastAPI, prediction in the HTTP process, the same request
model and prediction code). A load client in this process (asyncio + httpx, one connection per concurrent
user) sends single-customer requests at concurrency 1, 8 and 32, then 1,000-customer requests at
concurrency 1 and 4, alternating between the servers level by level. Printed and written to
``benchmarks/out/serving.{md,json}``: requests/s, customers/s, p50 and p99 latency, and the ratio
LitServe / FastAPI (> 1: LitServe does more per second).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd

logger = logging.getLogger("benchmarks.serving")
ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out"
SERVE_ARGS: list[str] = []  # extra `segment serve` options (--serve-args); none = the serve defaults


def free_port() -> int:
    """An unused TCP port on 127.0.0.1."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def train_bundle(work: Path) -> Path:
    """The CC GENERAL k-means bundle both servers load (k = 5, as the defaults choose)."""
    from segmentation.bundle import save_bundle
    from segmentation.config import load_config
    from segmentation.data.io import sample_data_path
    from segmentation.stages.assemble import fit_model

    config = load_config(overrides=["cluster.n_clusters=5", "evaluate.stability_resamples=0"])
    model, _ = fit_model(pd.read_csv(sample_data_path()), config, source="cc")
    return save_bundle(model, work / "bundle")


def start(kind: str, bundle: Path, port: int, log: Path) -> subprocess.Popen:
    """Start one server and wait until it answers /health."""
    bin_dir = Path(sys.executable).parent
    if kind == "litserve":
        command = [
            str(bin_dir / "segment"),
            "serve",
            "--bundle",
            str(bundle),
            "--port",
            str(port),
            *SERVE_ARGS,
        ]
    else:
        command = [
            str(bin_dir / "uvicorn"),
            "plain_fastapi:app",
            "--app-dir",
            str(ROOT / "benchmarks"),
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ]
    env = {**os.environ, "BUNDLE": str(bundle)}
    process = subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{kind} exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    process.kill()
    raise RuntimeError(f"{kind} not healthy: {log.read_text()[-2000:]}")


async def load(url: str, bodies: list[bytes], concurrency: int, seconds: float) -> dict[str, Any]:
    """``concurrency`` users, each sending its next request as soon as the last one answered."""
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:

        async def user(offset: int) -> None:
            nonlocal errors
            i = offset
            while time.perf_counter() < deadline:
                body = bodies[i % len(bodies)]
                i += concurrency
                start = time.perf_counter()
                response = await client.post(
                    "/predict", content=body, headers={"content-type": "application/json"}
                )
                latencies.append(time.perf_counter() - start)
                if response.status_code != 200:
                    errors += 1

        began = time.perf_counter()
        await asyncio.gather(*(user(k) for k in range(concurrency)))
        elapsed = time.perf_counter() - began
    ms = np.array(latencies) * 1000
    return {
        "requests": len(latencies),
        "errors": errors,
        "seconds": elapsed,
        "requests_per_s": len(latencies) / elapsed,
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
    }


def bodies_for(size: int, count: int) -> list[bytes]:
    """Request bodies of ``size`` real customers each."""
    from segmentation.data.io import sample_data_path

    frame = pd.read_csv(sample_data_path())
    records = [
        {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
        for r in frame.to_dict("records")
    ]
    return [
        json.dumps({"customers": [records[(i * size + j) % len(records)] for j in range(size)]}).encode()
        for i in range(count)
    ]


def main(argv: list[str] | None = None) -> int:
    """Run every level against both servers and write the tables."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="duration of each level")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--serve-args", default="", help="extra `segment serve` options, e.g. '--workers 2'")
    args = parser.parse_args(argv)
    SERVE_ARGS.extend(args.serve_args.split())
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    args.out.mkdir(parents=True, exist_ok=True)
    levels = [
        ("1 customer", 1, 1),
        ("1 customer", 1, 8),
        ("1 customer", 1, 32),
        ("1,000 customers", 1000, 1),
        ("1,000 customers", 1000, 4),
    ]
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        bundle = train_bundle(work)
        ports = {"litserve": free_port(), "fastapi": free_port()}
        servers = {kind: start(kind, bundle, port, work / f"{kind}.log") for kind, port in ports.items()}
        try:
            bodies = {1: bodies_for(1, 500), 1000: bodies_for(1000, 8)}
            for label, size, concurrency in levels:
                row: dict[str, Any] = {
                    "request": label,
                    "customers_per_request": size,
                    "concurrency": concurrency,
                }
                for kind, port in ports.items():
                    url = f"http://127.0.0.1:{port}"
                    asyncio.run(load(url, bodies[size], concurrency, 1.0))  # warm connections and caches
                    measured = asyncio.run(load(url, bodies[size], concurrency, args.seconds))
                    measured["customers_per_s"] = measured["requests_per_s"] * size
                    row[kind] = measured
                    logger.info(
                        "%-16s c=%-3d %-9s %8.1f req/s  p50 %6.1f ms  p99 %6.1f ms  errors %d",
                        label,
                        concurrency,
                        kind,
                        measured["requests_per_s"],
                        measured["p50_ms"],
                        measured["p99_ms"],
                        measured["errors"],
                    )
                row["ratio_throughput"] = row["litserve"]["requests_per_s"] / row["fastapi"]["requests_per_s"]
                results.append(row)
        finally:
            for process in servers.values():
                process.terminate()
                process.wait(timeout=60)
    header = [
        "request",
        "concurrency",
        "LitServe req/s",
        "FastAPI req/s",
        "ratio",
        "LitServe cust/s",
        "FastAPI cust/s",
        "LitServe p50 / p99 ms",
        "FastAPI p50 / p99 ms",
    ]
    rows = [
        [
            r["request"],
            str(r["concurrency"]),
            f"{r['litserve']['requests_per_s']:,.0f}",
            f"{r['fastapi']['requests_per_s']:,.0f}",
            f"{r['ratio_throughput']:.2f}x",
            f"{r['litserve']['customers_per_s']:,.0f}",
            f"{r['fastapi']['customers_per_s']:,.0f}",
            f"{r['litserve']['p50_ms']:.1f} / {r['litserve']['p99_ms']:.1f}",
            f"{r['fastapi']['p50_ms']:.1f} / {r['fastapi']['p99_ms']:.1f}",
        ]
        for r in results
    ]
    table = "\n".join(
        [
            "| " + " | ".join(header) + " |",
            "|" + "---|" * len(header),
            *("| " + " | ".join(row) + " |" for row in rows),
        ]
    )
    meta = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "seconds_per_level": args.seconds,
    }
    errors = sum(r[k]["errors"] for r in results for k in ("litserve", "fastapi"))
    md = (
        f"## Serving benchmark: LitServe vs plain FastAPI (same bundle)\n\nMeasured {meta['date']} on "
        f"{meta['cpus']} CPU cores, {args.seconds:g} s per level, client and servers on the same machine; "
        f"non-200 answers: {errors}. Reproduce with `.venv/bin/python benchmarks/serving.py`.\n\n{table}\n"
    )
    (args.out / "serving.md").write_text(md, encoding="utf-8")
    (args.out / "serving.json").write_text(
        json.dumps({"meta": meta, "levels": results}, indent=2), encoding="utf-8"
    )
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
