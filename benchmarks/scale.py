"""Millions of customers on one small machine: training, scoring and a naive baseline, side by side.

Run from the repository root::

    .venv/bin/python benchmarks/scale.py                      # 2,000,000 x 120 (about 15 minutes)
    .venv/bin/python benchmarks/scale.py --rows 200000        # a quick look
    .venv/bin/python benchmarks/scale.py --skip-autoencoder --skip-baseline

What runs, each in its own fresh process (so every peak RSS belongs to one thing only):

* **data**: ``segment make-data --rows N --features F`` (6 planted segments, seed 0), cached under
  ``benchmarks/out/scale/`` as Parquet, plus a CSV copy for the baseline.
* **stages**: the library's stages in order, each wrapped in :func:`segmentation.resources.measure`
  (wall time, rows/s and the stage's own peak RSS; Linux resets the peak between stages), for PCA +
  k-means and for the autoencoder + k-means, both with the default k search (k = 3..10).
* **end to end**: ``segment train --data FILE --out DIR`` as a user runs it (process start, Prefect's
  temporary API, validation, every stage, metrics, plots, report, bundle, registry, offline W&B run):
  wall time and peak RSS of the whole process. Then ``segment score`` with the trained bundle on the same
  file, and the steady-state scoring rate of the library (``scoring.score_chunk`` on every chunk,
  in-process) in rounds alternating with the raw ``pyarrow.parquet.read_table`` of the same file (the
  floor).
* **baseline**: the naive in-memory way: ``pd.read_csv`` of the whole CSV, ``SimpleImputer(median)`` on
  every numeric column (one-hot for text), ``KMeans(n_init=10)`` at the k our search chose, float64;
  the k range would cost that fit once per candidate (8 times), which is reported as an estimate.

Results are printed and written to ``benchmarks/out/scale.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "out"
ROOT = Path(__file__).resolve().parent.parent
SEED = 0
SEGMENTS = 6


# ------------------------------------------------------------------------------------------- workers
def worker_stages(spec: dict[str, Any]) -> dict[str, Any]:
    """Every training stage in this process, each measured on its own."""
    import numpy as np

    from segmentation.config import load_config
    from segmentation.resources import measure
    from segmentation.stages.assemble import assemble_model
    from segmentation.stages.evaluate import evaluate
    from segmentation.stages.fit import fit_features, fit_preprocessing, fit_segments
    from segmentation.stages.load import validate_source
    from segmentation.stages.outputs import write_insights, write_run_outputs

    config = load_config(overrides=spec["overrides"])
    path, work = spec["data"], Path(spec["work"])
    stages: list[dict[str, Any]] = []

    def record(meter: Any) -> None:
        stages.append({"stage": meter.name, "seconds": meter.seconds, "peak_rss_mib": meter.peak_rss_mib})

    with measure("validate") as meter:
        table = validate_source(path, config.data, source=path, seed=config.seed)
        meter.rows = table.n_rows
    record(meter)
    with measure("preprocess", rows=table.n_rows) as meter:
        pre, x = fit_preprocessing(
            table, config.preprocess, float32=True, seed=config.seed, out=work / "x.npy"
        )
    record(meter)
    with measure("featurize", rows=table.n_rows) as meter:
        featurizer, z = fit_features(x, config.featurize, seed=config.seed)
    record(meter)
    with measure("cluster", rows=table.n_rows) as meter:
        result = fit_segments(
            z, x, config.cluster, seed=config.seed, silhouette_sample=config.evaluate.silhouette_sample
        )
    record(meter)
    with measure("evaluate", rows=table.n_rows) as meter:
        metrics = evaluate(x, z, result, featurizer, config=config)
    record(meter)
    with measure("bundle + labels", rows=table.n_rows) as meter:
        model = assemble_model(
            table, pre, featurizer, result, x, metrics, config=config, data_hash="bench", source=path
        )
        write_run_outputs(work / "run", model, table, result.labels, featurizer)
    record(meter)
    with measure("plots + report", rows=table.n_rows) as meter:
        write_insights(work / "run", model, table, result.labels, x, featurizer.history, seed=config.seed)
    record(meter)
    return {
        "stages": stages,
        "chosen_k": int(result.model.n_clusters_),
        "output_dim": int(z.shape[1]),
        "silhouette": metrics["silhouette"],
        "labels_hash": int(np.asarray(result.labels).sum()),
    }


def worker_baseline(spec: dict[str, Any]) -> dict[str, Any]:
    """The naive way: the whole CSV in pandas, SimpleImputer, KMeans(n_init=10), float64."""
    import numpy as np
    import pandas as pd
    from sklearn.cluster import KMeans
    from sklearn.impute import SimpleImputer

    from segmentation.resources import measure

    stages: list[dict[str, Any]] = []
    with measure("read CSV (pandas)") as meter:
        frame = pd.read_csv(spec["csv"])
        meter.rows = len(frame)
    stages.append({"stage": meter.name, "seconds": meter.seconds, "peak_rss_mib": meter.peak_rss_mib})
    with measure("impute (SimpleImputer)", rows=len(frame)) as meter:
        frame = frame.drop(columns=[spec["id_column"]])
        text = [
            c for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c]) and frame[c].dtype != bool
        ]
        dates = [c for c in text if c.startswith("last_active")]
        for column in dates:
            frame[column] = (pd.Timestamp("2026-01-01") - pd.to_datetime(frame[column])).dt.days
        frame = pd.get_dummies(frame, columns=[c for c in text if c not in dates], dtype=float)
        x = SimpleImputer(strategy="median").fit_transform(frame.to_numpy(dtype=np.float64))
    stages.append({"stage": meter.name, "seconds": meter.seconds, "peak_rss_mib": meter.peak_rss_mib})
    with measure("KMeans(n_init=10)", rows=len(x)) as meter:
        KMeans(n_clusters=spec["k"], n_init=10, random_state=SEED).fit(x)
    stages.append({"stage": meter.name, "seconds": meter.seconds, "peak_rss_mib": meter.peak_rss_mib})
    return {"stages": stages}


def worker_score(spec: dict[str, Any]) -> dict[str, Any]:
    """Scoring in-process, next to the raw read of the same file, then ``score_table``.

    Rounds alternate the raw ``pyarrow.parquet.read_table`` of the scored columns (the floor) and the
    steady state (every chunk read, validated, transformed, assigned on two threads, nothing written), so
    both see the same machine: on a shared 2-core VM either can vary by 20 % from one minute to the next.
    The first round is a warm-up; best and median of the others are kept. ``score_table`` (hash, parts,
    combine) runs once at the end.
    """
    import statistics
    from concurrent.futures import ThreadPoolExecutor

    import pyarrow.parquet as pq
    from threadpoolctl import threadpool_limits

    from segmentation.bundle import load_bundle
    from segmentation.scoring import plan_scoring, score_chunk, score_table

    model = load_bundle(spec["bundle"])
    out = Path(spec["work"]) / "scored-lib.parquet"
    plan = plan_scoring(model, spec["data"], out, data_hash="benchmark")
    reads, scores = [], []
    with threadpool_limits(limits=1), ThreadPoolExecutor(2) as pool:
        for _ in range(spec.get("rounds", 7)):
            started = time.perf_counter()
            pq.read_table(spec["data"], columns=list(plan.columns))
            reads.append(time.perf_counter() - started)
            started = time.perf_counter()
            list(pool.map(lambda chunk: score_chunk(model, plan, chunk), plan.chunks))
            scores.append(time.perf_counter() - started)
    started = time.perf_counter()
    summary = score_table(model, spec["data"], out, threads=2, force=True)
    return {
        "rows": int(summary.rows),
        "seconds": min(scores[1:]),
        "median_seconds": statistics.median(scores[1:]),
        "read_seconds": min(reads[1:]),
        "read_median_seconds": statistics.median(reads[1:]),
        "median_ratio": statistics.median(s / r for s, r in zip(scores[1:], reads[1:], strict=True)),
        "score_table_seconds": time.perf_counter() - started,
    }


WORKERS = {"stages": worker_stages, "baseline": worker_baseline, "score": worker_score}


# ------------------------------------------------------------------------------------------- driver
def run_timed(command: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Run a command under ``/usr/bin/time -v`` style accounting (wait4) and return wall and peak RSS."""
    started = time.perf_counter()
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {
        "seconds": wall,
        "peak_rss_mib": usage.ru_maxrss / 1024,
        "returncode": proc.returncode,
        "tail": output[-3000:],
    }


def run_worker(kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    """One worker in a fresh interpreter; its JSON result."""
    with tempfile.NamedTemporaryFile("r", suffix=".json") as out:
        result = run_timed(
            [sys.executable, __file__, "--worker", kind, "--spec", json.dumps(spec), "--result", out.name],
            env=dict(os.environ),
        )
        if result["returncode"] != 0:
            raise RuntimeError(f"worker {kind} failed:\n{result['tail']}")
        data = json.loads(Path(out.name).read_text())
    data["process_peak_rss_mib"] = result["peak_rss_mib"]
    return data


def ensure_data(rows: int, features: int) -> tuple[Path, Path]:
    """The benchmark table (Parquet) and its CSV copy, generated once."""
    OUT.mkdir(parents=True, exist_ok=True)
    parquet = OUT / "scale" / f"customers_{rows}x{features}.parquet"
    csv = parquet.with_suffix(".csv")
    if not parquet.is_file():
        parquet.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                str(Path(sys.executable).with_name("segment")),
                "make-data",
                "--rows",
                str(rows),
                "--features",
                str(features),
                "--segments",
                str(SEGMENTS),
                "--seed",
                str(SEED),
                "--out",
                str(parquet),
            ],
            check=True,
        )
    if not csv.is_file():
        import pandas as pd

        pd.read_parquet(parquet).to_csv(csv, index=False)
    return parquet, csv


def stage_table(result: dict[str, Any]) -> list[list[str]]:
    """Rows of a per-stage table."""
    rows = []
    for stage in result["stages"]:
        rows.append([stage["stage"], f"{stage['seconds']:.1f}", f"{stage['peak_rss_mib']:,.0f}"])
    total = sum(s["seconds"] for s in result["stages"])
    rows.append(["total", f"{total:.1f}", f"{result['process_peak_rss_mib']:,.0f} (process)"])
    return rows


def md_table(header: list[str], rows: list[list[str]]) -> str:
    """A GitHub markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write ``benchmarks/out/scale.{json,md}``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--features", type=int, default=120)
    parser.add_argument("--skip-autoencoder", action="store_true")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--skip-stages", action="store_true", help="only the end-to-end commands")
    parser.add_argument("--resume", action="store_true", help="keep the results of an interrupted run")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        import logging

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
        Path(args.result).write_text(json.dumps(WORKERS[args.worker](json.loads(args.spec))))
        return 0

    parquet, csv = ensure_data(args.rows, args.features)
    segment = str(Path(sys.executable).with_name("segment"))
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "rows": args.rows,
        "features": args.features,
    }
    configs = {"pca": []} if args.skip_autoencoder else {"pca": [], "autoencoder": ["featurize=autoencoder"]}
    # A persistent work directory and results saved after every step: --resume carries on after a failure.
    work = OUT / "scale" / f"work_{args.rows}x{args.features}"
    saved = OUT / "scale" / f"results_{args.rows}x{args.features}.json"
    if args.resume and saved.is_file():
        results = {**json.loads(saved.read_text()), **{k: results[k] for k in ("date", "machine")}}
    elif work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)

    def save(key: str, value: Any) -> None:
        results[key] = value
        saved.write_text(json.dumps(results, indent=2) + "\n")

    env = dict(os.environ, SEGMENT_HOME=str(work / "home"), WANDB_MODE="offline")
    for name, overrides in configs.items():
        if not args.skip_stages and f"stages_{name}" not in results:
            stage_dir = work / f"stages-{name}"
            stage_dir.mkdir(exist_ok=True)
            spec = {"data": str(parquet), "work": str(stage_dir), "overrides": overrides}
            save(f"stages_{name}", run_worker("stages", spec))
            print(f"stages ({name}):", json.dumps(results[f"stages_{name}"]["stages"]), flush=True)
        if f"train_{name}" not in results:
            shutil.rmtree(work / f"run-{name}", ignore_errors=True)
            command = [segment, "train", "--data", str(parquet), "--out", str(work / f"run-{name}")]
            e2e = run_timed([*command, *[a for o in overrides for a in ("-S", o)]], env)
            if e2e["returncode"] != 0:
                raise RuntimeError(f"segment train ({name}) failed:\n{e2e['tail']}")
            save(f"train_{name}", {k: v for k, v in e2e.items() if k != "tail"})
            print(
                f"segment train ({name}): {e2e['seconds']:.1f} s, peak {e2e['peak_rss_mib']:,.0f} MiB",
                flush=True,
            )
    bundle = str(work / "run-pca" / "bundle")
    if "score_cli" not in results:
        out = work / "scored.parquet"
        score = run_timed(
            [segment, "score", "--bundle", bundle, "--data", str(parquet), "--out", str(out), "--force"], env
        )
        if score["returncode"] != 0:
            raise RuntimeError(f"segment score failed:\n{score['tail']}")
        save("score_cli", {k: v for k, v in score.items() if k != "tail"})
    if "score_library" not in results:
        save(
            "score_library", run_worker("score", {"bundle": bundle, "data": str(parquet), "work": str(work)})
        )
    if not args.skip_baseline and "baseline" not in results:
        chosen = json.loads((work / "run-pca" / "metrics.json").read_text())["k_selection"]["chosen_k"]
        spec = {"csv": str(csv), "id_column": "customer_id", "k": chosen}
        save("baseline", run_worker("baseline", spec))
    (OUT / "scale.json").write_text(json.dumps(results, indent=2) + "\n")
    text = render(results)
    (OUT / "scale.md").write_text(text)
    sys.stdout.write(text)
    return 0


def render(results: dict[str, Any]) -> str:
    """The markdown report."""
    rows, features = results["rows"], results["features"]
    parts = [f"#### {rows:,} x {features} on {results['machine']} ({results['date']})", ""]
    for name in ("pca", "autoencoder"):
        if f"stages_{name}" in results:
            parts += [f"Stages, {name} + k-means (k = 3..10):", ""]
            parts += [
                md_table(["stage", "seconds", "peak RSS (MiB)"], stage_table(results[f"stages_{name}"])),
                "",
            ]
    train_rows = [
        [f"`segment train` ({name} + k-means)", f"{r['seconds']:.1f}", f"{r['peak_rss_mib']:,.0f}"]
        for name in ("pca", "autoencoder")
        if (r := results.get(f"train_{name}"))
    ]
    score = results["score_cli"]
    train_rows.append(
        ["`segment score` (all rows)", f"{score['seconds']:.1f}", f"{score['peak_rss_mib']:,.0f}"]
    )
    parts += ["End to end (one process each, as a user runs them):", ""]
    parts += [md_table(["command", "seconds", "peak RSS (MiB)"], train_rows), ""]
    lib = results["score_library"]
    rows_scored = lib["rows"]
    parts += [
        f"Scoring, steady state ({rows_scored:,} rows; best / median of 6 rounds, each next to a raw "
        "`pyarrow.parquet.read_table` of the same columns):",
        "",
        md_table(
            ["", "best", "median"],
            [
                [
                    "scoring (s)",
                    f"{lib['seconds']:.2f}",
                    f"{lib['median_seconds']:.2f}",
                ],
                [
                    "customers/s",
                    f"{rows_scored / lib['seconds']:,.0f}",
                    f"{rows_scored / lib['median_seconds']:,.0f}",
                ],
                ["raw read (s)", f"{lib['read_seconds']:.2f}", f"{lib['read_median_seconds']:.2f}"],
                [
                    "scoring / read",
                    f"{lib['seconds'] / lib['read_seconds']:.1f}x",
                    f"{lib['median_ratio']:.1f}x (per round)",
                ],
            ],
        ),
        "",
    ]
    if "baseline" in results:
        base = results["baseline"]
        parts += [
            "Naive in-memory baseline (pandas CSV, SimpleImputer, KMeans(n_init=10) at the chosen k):",
            "",
        ]
        parts += [md_table(["step", "seconds", "peak RSS (MiB)"], stage_table(base)), ""]
        kmeans = next(s for s in base["stages"] if s["stage"].startswith("KMeans"))
        parts += [
            f"A k search over 3..10 this way would fit 8 such models: about {8 * kmeans['seconds']:.0f} s "
            "for the clustering alone (estimate).",
            "",
        ]
    return "\n".join(parts)


if __name__ == "__main__":
    sys.exit(main())
