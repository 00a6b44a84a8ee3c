"""Batch scoring throughput vs the raw Parquet read of the same file (prints numbers, asserts nothing).

    python benchmarks/scoring.py --data c2m.parquet --bundle runs/x/bundle [--threads 2] [--repeat 2]

Prints: the raw ``pyarrow.parquet.read_table`` time of the feature columns, the steady-state scoring rate
(read + validate + transform + assign of every chunk on a thread pool, nothing written), the stage split of
one chunk on one thread, and ``score_table`` end to end (content hash, parts, combine).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow.parquet as pq
from threadpoolctl import threadpool_limits

from segmentation.bundle import load_bundle
from segmentation.contract.checks import check_columns
from segmentation.scoring import plan_scoring, read_chunk, score_chunk, score_table


def _best_of(repeat: int, run: Callable[[], object]) -> tuple[float, float]:
    """The smallest wall time and the smallest CPU time of ``repeat`` calls of ``run``."""
    walls, cpus = [], []
    for _ in range(repeat):
        began, cpu = time.perf_counter(), time.process_time()
        run()
        walls.append(time.perf_counter() - began)
        cpus.append(time.process_time() - cpu)
    return min(walls), min(cpus)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--bundle", required=True, type=Path)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()

    model = load_bundle(args.bundle)
    with tempfile.TemporaryDirectory() as tmp:
        plan = plan_scoring(model, args.data, Path(tmp) / "s.parquet", data_hash="benchmark")
        n = plan.n_rows
        print(f"{args.data}: {n:,} rows, {len(plan.columns)} columns read, {len(plan.chunks)} chunks")

        read_s, read_cpu = _best_of(args.repeat, lambda: pq.read_table(args.data, columns=list(plan.columns)))
        print(f"raw read_table:        {read_s:6.2f} s  {n / read_s:>12,.0f} rows/s  (CPU {read_cpu:.2f} s)")

        with threadpool_limits(limits=1):
            chunk = plan.chunks[0]
            began = time.perf_counter()
            data = read_chunk(plan, chunk)
            t_read = time.perf_counter() - began
            began = time.perf_counter()
            checked = check_columns(data.columns, model.schema, data.rows)
            t_valid = time.perf_counter() - began
            began = time.perf_counter()
            x = model.preprocessor.transform_columns(checked.columns, chunk.n_rows).T
            t_pre = time.perf_counter() - began
            began = time.perf_counter()
            z = model.featurizer.transform(x)
            t_feat = time.perf_counter() - began
            began = time.perf_counter()
            model.clusterer.predict_details(z)
            t_clu = time.perf_counter() - began
            print(
                f"one chunk ({chunk.n_rows:,} rows, 1 thread): read {t_read:.3f} s, "
                f"validate {t_valid:.3f} s, preprocess {t_pre:.3f} s, featurize {t_feat:.3f} s, "
                f"assign {t_clu:.3f} s"
            )

            with ThreadPoolExecutor(args.threads) as pool:
                score_s, score_cpu = _best_of(
                    args.repeat, lambda: list(pool.map(lambda c: score_chunk(model, plan, c), plan.chunks))
                )
        print(
            f"steady-state scoring:  {score_s:6.2f} s  {n / score_s:>12,.0f} rows/s  "
            f"(CPU {score_cpu:.2f} s; "
            f"{args.threads} threads; {score_s / read_s:.1f}x the raw read's wall time, "
            f"{score_cpu / read_cpu:.1f}x its CPU time)"
        )

        began = time.perf_counter()
        summary = score_table(model, args.data, Path(tmp) / "s.parquet", threads=args.threads, force=True)
        total = time.perf_counter() - began
        print(
            f"score_table end to end: {total:6.2f} s  {n / total:>12,.0f} rows/s "
            f"(scored {summary.scored:,}, rejected {summary.rejected:,}; includes the content hash)"
        )


if __name__ == "__main__":
    main()
