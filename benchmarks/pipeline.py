"""Per-stage wall-clock timings of our training pipeline next to a naive scikit-learn baseline.

Run from the repository root::

    .venv/bin/python benchmarks/pipeline.py                  # CC GENERAL + synthetic 1,000,000 x 100
    .venv/bin/python benchmarks/pipeline.py --skip-large     # CC GENERAL only (seconds)
    .venv/bin/python benchmarks/pipeline.py --rows 200000 --features 40

Two datasets: the bundled CC GENERAL sample, and a synthetic table (``make_customers``, 6 planted
segments, seed 0) generated once and cached under ``benchmarks/out/`` as Parquet and CSV.

Every (dataset, side) pair runs in its own fresh subprocess, so peak RSS (``ru_maxrss``) is per side and
neither side inherits the other's heap, page-faulted arrays or warmed-up lazy imports. Imports are not
timed; the data file is read once before each side so both start with a warm page cache.

Stages (ours | baseline):

* read: ``read_table`` (Parquet for synthetic, pyarrow CSV for CC GENERAL) | ``pd.read_csv(path)`` (C engine)
* validate: ``stages.load.validate_table`` | none (``n/a``)
* preprocess: ``stages.fit.fit_preprocessing`` (defaults, float32) | SimpleImputer(median) +
  PowerTransformer(yeo-johnson) + StandardScaler on the numeric columns, float64
* featurize: ``stages.fit.fit_features`` (default PCA, 90 % variance) | ``PCA(n_components=0.9)`` float64
* cluster: ``stages.fit.fit_segments`` with ``cluster.n_clusters=6`` |
  ``KMeans(n_clusters=6, n_init=4)`` float64
* evaluate: ``stages.evaluate.evaluate`` (sampled silhouettes, Davies-Bouldin, Calinski-Harabasz) |
  full ``silhouette_score`` where it fits (n <= 50,000), else an estimate from a timed 20,000-row
  silhouette scaled by ``(n / 20,000) ** 2``.

Plots and report (not in the stage totals): after training, each side draws its plots. Ours is the flow's
visualize stage, ``stages.outputs.write_insights`` (profile.csv, every PNG from a 20,000-row sample,
report.html and report.md); the baseline draws the same kinds of plot naively from every row (scatter on
two principal components, box plots of four features, a per-segment mean heatmap) plus a groupby profile.
Time and the memory the step adds (peak current RSS during the step minus RSS before it, sampled every
10 ms) are reported side by side.

Quality is compared on the same rows: silhouettes of both label sets in both preprocessed spaces (all rows
of CC GENERAL; the evaluation's seeded 10,000-row sample on larger tables), ARI against the planted
segments (synthetic only) and ARI between the two label sets.

Results are printed as aligned tables and written to ``benchmarks/out/pipeline.json`` and
``benchmarks/out/pipeline.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import logging
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger("benchmarks.pipeline")

OUT = Path(__file__).resolve().parent / "out"
STAGES = ("read", "validate", "preprocess", "featurize", "cluster", "evaluate")
N_CLUSTERS = 6
SYNTH_SEGMENTS = 6
SYNTH_SEED = 0
FULL_SILHOUETTE_MAX_ROWS = 50_000  # above this the baseline's full silhouette is estimated, not run
SILHOUETTE_PROBE_ROWS = 20_000  # rows of the timed silhouette the quadratic estimate scales from


# ------------------------------------------------------------------------------------------- helpers
class StageTimer:
    """Collects wall-clock seconds per stage (``time.perf_counter``)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        gc.collect()  # do not bill one stage for the previous stage's garbage
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = time.perf_counter() - start
            logger.info("  %-10s %8.3f s", stage, self.seconds[stage])


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far, in MiB.

    On Linux this is ``VmHWM`` from ``/proc/self/status``: ``ru_maxrss`` survives ``execve`` and so would
    report the parent's peak for a freshly spawned worker. Elsewhere ``resource.getrusage().ru_maxrss``.
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text(encoding="utf-8").splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def current_rss_mib() -> float:
    """Resident set size now, in MiB (Linux ``/proc/self/statm``; peak RSS elsewhere)."""
    statm = Path("/proc/self/statm")
    if statm.exists():
        return int(statm.read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    return peak_rss_mib()


@contextlib.contextmanager
def memory_added(result: dict[str, float]) -> Iterator[None]:
    """Record the largest RSS increase over the starting RSS while the block runs (10 ms sampling)."""
    import threading

    gc.collect()
    start = current_rss_mib()
    peak = [start]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.01):
            peak[0] = max(peak[0], current_rss_mib())

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    began = time.perf_counter()
    try:
        yield
    finally:
        done.set()
        thread.join()
        result["seconds"] = time.perf_counter() - began
        result["added_mib"] = max(peak[0], current_rss_mib()) - start


def sample_index(n: int, size: int, seed: int) -> np.ndarray:
    """The seeded row sample ``segmentation.clustering.sampled_silhouette`` draws (all rows are clustered)."""
    if n <= size:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size, replace=False))


def warm_page_cache(path: Path) -> None:
    """Read a file once so every side's timed read starts from the same (warm) page cache."""
    with path.open("rb") as fh:
        while fh.read(16 * 2**20):
            pass


def save_quality_arrays(prefix: Path, labels: np.ndarray, x: np.ndarray, idx: np.ndarray) -> None:
    """Labels of all rows and the preprocessed rows of the shared evaluation sample, for cross-metrics."""
    np.save(prefix.with_name(prefix.name + "_labels.npy"), labels.astype(np.int16))
    np.save(prefix.with_name(prefix.name + "_xsample.npy"), np.asarray(x[idx], dtype=np.float64))


def _median_stages(runs: list[dict[str, float]]) -> dict[str, float]:
    return {stage: statistics.median(run[stage] for run in runs) for stage in runs[0]}


# ----------------------------------------------------------------------------------------- workers
def worker_generate(spec: dict[str, Any]) -> dict[str, Any]:
    """Generate the synthetic table once and write Parquet, CSV and the planted labels."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    from segmentation.data.io import atomic_path, write_table
    from segmentation.data.synthetic import SEGMENT_COLUMN, make_customers

    start = time.perf_counter()
    table, truth = make_customers(spec["rows"], spec["features"], SYNTH_SEGMENTS, seed=SYNTH_SEED)
    generated = time.perf_counter()
    write_table(table, spec["parquet"])
    parquet_done = time.perf_counter()
    # pyarrow's writer: ~10x faster than DataFrame.to_csv on a million rows; NaN -> empty cell.
    with atomic_path(Path(spec["csv"])) as tmp:
        pacsv.write_csv(pa.Table.from_pandas(table, preserve_index=False), tmp)
    csv_done = time.perf_counter()
    with atomic_path(Path(spec["truth"])) as tmp, tmp.open("wb") as fh:
        np.save(fh, truth[SEGMENT_COLUMN].to_numpy(np.int16))
    return {
        "generate_s": generated - start,
        "write_parquet_s": parquet_done - generated,
        "write_csv_s": csv_done - parquet_done,
    }


def worker_ours(spec: dict[str, Any]) -> dict[str, Any]:
    """Our pipeline, stage by stage, with the default config and ``cluster.n_clusters`` fixed."""
    from segmentation.clustering import sampled_silhouette
    from segmentation.config import load_config
    from segmentation.data.io import read_table
    from segmentation.stages.assemble import assemble_model
    from segmentation.stages.evaluate import evaluate
    from segmentation.stages.fit import fit_features, fit_preprocessing, fit_segments
    from segmentation.stages.load import validate_table
    from segmentation.stages.outputs import write_insights

    config = load_config(
        overrides=[f"cluster.n_clusters={spec['n_clusters']}", f"cluster.n_init={spec['n_init']}"]
    )
    path = spec["parquet"] or spec["csv"]
    rss_imports = peak_rss_mib()
    runs: list[dict[str, float]] = []
    for rep in range(spec["repeats"]):
        logger.info("ours, run %d/%d on %s", rep + 1, spec["repeats"], path)
        timer = StageTimer()
        with timer("read"):
            frame = read_table(path)
        with timer("validate"):
            table = validate_table(frame, config.data, source=str(path), seed=config.seed)
        del frame  # the workflow keeps only the validated table
        with timer("preprocess"):
            pre, x = fit_preprocessing(
                table, config.preprocess, float32=config.data.float32, seed=config.seed
            )
        with timer("featurize"):
            featurizer, z = fit_features(x, config.featurize, seed=config.seed)
        with timer("cluster"):
            result = fit_segments(
                z, x, config.cluster, seed=config.seed, silhouette_sample=config.evaluate.silhouette_sample
            )
        with timer("evaluate"):
            metrics = evaluate(x, z, result, featurizer, config=config)
        runs.append(timer.seconds)
        if rep + 1 < spec["repeats"]:
            del table, x, z, result, featurizer
    # Diagnostic (not in any stage): one sampled silhouette alone. fit_segments computes it (the k criterion)
    # and stages.evaluate reuses it, adding one more in PCA space.
    start = time.perf_counter()
    sampled_silhouette(x, result.labels, config.evaluate.silhouette_sample, config.seed)
    silhouette_s = time.perf_counter() - start
    idx = sample_index(len(x), config.evaluate.silhouette_sample, config.seed)
    save_quality_arrays(Path(spec["prefix"] + "_ours"), result.labels, x, idx)
    model = assemble_model(
        table, pre, featurizer, result, x, metrics, config=config, data_hash="benchmark", source=str(path)
    )
    insights: dict[str, float] = {}
    logger.info("ours: plots and report")
    with memory_added(insights):
        written = write_insights(
            Path(spec["prefix"] + "_ours_run"),
            model,
            table,
            result.labels,
            x,
            featurizer.history,
            seed=config.seed,
        )
    insights["plots"] = len(list(Path(written["plots"]).glob("*.png")))
    logger.info("  plots+report %8.3f s, +%.0f MiB", insights["seconds"], insights["added_mib"])
    return {
        "insights": insights,
        "stages": _median_stages(runs),
        "runs": runs,
        "peak_rss_mib": peak_rss_mib(),
        "rss_after_imports_mib": rss_imports,
        "n_rows": len(x),
        "x_dim": int(x.shape[1]),
        "x_dtype": str(x.dtype),
        "z_dim": int(z.shape[1]),
        "k": int(result.model.n_clusters_),
        "silhouette": metrics["silhouette"],
        "silhouette_sample_size": metrics["silhouette_sample_size"],
        "davies_bouldin": metrics["davies_bouldin"],
        "calinski_harabasz": metrics["calinski_harabasz"],
        "seed": config.seed,
        "diagnostics": {"one_sampled_silhouette_s": silhouette_s, "cluster_score": result.score},
        "silhouette_sample": config.evaluate.silhouette_sample,
        "schema_kind": table.schema.kind,
        "config": {
            "featurize": config.featurize.model_dump(mode="json"),
            "cluster": config.cluster.model_dump(mode="json"),
            "preprocess": config.preprocess.model_dump(mode="json"),
            "float32": config.data.float32,
        },
    }


def worker_baseline(spec: dict[str, Any]) -> dict[str, Any]:
    """The naive scikit-learn pipeline a notebook would write, all in float64 on every row."""
    import pandas as pd
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA
    from sklearn.impute import SimpleImputer
    from sklearn.metrics import silhouette_score
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import PowerTransformer, StandardScaler

    seed = spec["seed"]
    rss_imports = peak_rss_mib()
    runs: list[dict[str, float]] = []
    for rep in range(spec["repeats"]):
        logger.info("baseline, run %d/%d on %s", rep + 1, spec["repeats"], spec["csv"])
        timer = StageTimer()
        with timer("read"):
            frame = pd.read_csv(spec["csv"])
        with timer("preprocess"):
            numeric = frame.select_dtypes(include="number")
            prep = Pipeline(
                [
                    ("impute", SimpleImputer(strategy="median")),
                    ("unskew", PowerTransformer(method="yeo-johnson", standardize=False)),
                    ("scale", StandardScaler()),
                ]
            )
            x = prep.fit_transform(numeric.to_numpy(dtype=np.float64))
        del frame, numeric
        with timer("featurize"):
            pca = PCA(n_components=0.9, random_state=seed)
            z = pca.fit_transform(x)
        with timer("cluster"):
            km = KMeans(n_clusters=spec["n_clusters"], n_init=spec["n_init"], random_state=seed).fit(z)
            labels = km.labels_
        evaluate: dict[str, Any] = {}
        if len(x) <= FULL_SILHOUETTE_MAX_ROWS:
            with timer("evaluate"):
                evaluate["silhouette_full"] = float(silhouette_score(x, labels))
        runs.append(timer.seconds)
        if rep + 1 < spec["repeats"]:
            del x, z, km, labels
    if len(x) > FULL_SILHOUETTE_MAX_ROWS:
        probe = sample_index(len(x), SILHOUETTE_PROBE_ROWS, seed)
        logger.info("baseline: timing full silhouette on %d rows to extrapolate", len(probe))
        start = time.perf_counter()
        silhouette_score(x[probe], labels[probe])
        probe_s = time.perf_counter() - start
        evaluate.update(
            probe_rows=len(probe), probe_s=probe_s, estimated_full_s=probe_s * (len(x) / len(probe)) ** 2
        )
        logger.info(
            "  silhouette on %d rows: %.2f s -> full %d rows est. %.1f h",
            len(probe),
            probe_s,
            len(x),
            evaluate["estimated_full_s"] / 3600,
        )
    idx = sample_index(len(x), spec["silhouette_sample"], seed)
    save_quality_arrays(Path(spec["prefix"] + "_baseline"), labels, x, idx)
    insights: dict[str, float] = {}
    logger.info("baseline: naive plots from every row")
    with memory_added(insights):
        insights["plots"] = naive_plots(x, labels, Path(spec["prefix"] + "_baseline_plots"))
    logger.info("  plots      %8.3f s, +%.0f MiB", insights["seconds"], insights["added_mib"])
    return {
        "insights": insights,
        "stages": _median_stages(runs),
        "runs": runs,
        "peak_rss_mib": peak_rss_mib(),
        "rss_after_imports_mib": rss_imports,
        "n_rows": len(x),
        "x_dim": int(x.shape[1]),
        "x_dtype": str(x.dtype),
        "z_dim": int(z.shape[1]),
        "k": len(np.unique(labels)),
        "kmeans_n_iter": int(km.n_iter_),
        "evaluate": evaluate,
    }


def naive_plots(x: np.ndarray, labels: np.ndarray, out: Path) -> int:
    """What a notebook does: every row in the scatter and the box plots, a groupby profile."""
    import matplotlib as mpl

    mpl.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd
    from sklearn.decomposition import PCA

    out.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(x)
    profile = frame.groupby(labels).agg(["mean", "median"])
    profile.to_csv(out / "profile.csv")
    xy = PCA(n_components=2).fit_transform(x)
    fig, ax = plt.subplots(figsize=(8, 6))
    ax.scatter(xy[:, 0], xy[:, 1], c=labels, s=1, cmap="tab10")
    fig.savefig(out / "scatter.png", dpi=110)
    plt.close(fig)
    means = frame.groupby(labels).mean()
    fig, ax = plt.subplots(figsize=(12, 4))
    ax.imshow(means.to_numpy(), aspect="auto", cmap="RdBu_r")
    fig.savefig(out / "heatmap.png", dpi=110)
    plt.close(fig)
    segments = np.unique(labels)
    top = means.abs().max().sort_values(ascending=False).index[:4]
    fig, axes = plt.subplots(1, 4, figsize=(16, 4.5))
    for ax, column in zip(axes, top, strict=True):
        ax.boxplot([x[labels == seg, column] for seg in segments])
    fig.savefig(out / "boxplots.png", dpi=110)
    plt.close(fig)
    return 3


WORKERS = {"generate": worker_generate, "ours": worker_ours, "baseline": worker_baseline}


def run_worker(kind: str, spec: dict[str, Any], work: Path) -> dict[str, Any]:
    """Run one worker in a fresh interpreter; its stderr (progress logs) goes to ours."""
    spec_path = work / f"{spec['name']}_{kind}_spec.json"
    result_path = work / f"{spec['name']}_{kind}_result.json"
    spec_path.write_text(json.dumps(spec, default=str), encoding="utf-8")
    result_path.unlink(missing_ok=True)
    load_before = os.getloadavg()
    start = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            str(Path(__file__).resolve()),
            "--worker",
            kind,
            "--spec",
            str(spec_path),
            "--result",
            str(result_path),
        ],
        check=True,
    )
    elapsed = time.perf_counter() - start
    logger.info("%s/%s finished in %.1f s", spec["name"], kind, elapsed)
    result = json.loads(result_path.read_text(encoding="utf-8"))
    # Other processes on the machine distort timings: keep the 1-minute load average around each side.
    result.update(
        process_wall_s=elapsed, loadavg_1min_before=load_before[0], loadavg_1min_after=os.getloadavg()[0]
    )
    return result


# ------------------------------------------------------------------------------------------ quality
def cross_quality(prefix: Path, truth: np.ndarray | None, idx: np.ndarray) -> dict[str, Any]:
    """Silhouettes of both label sets in both preprocessed spaces on the shared sample ``idx``, and ARIs."""
    from sklearn.metrics import adjusted_rand_score, silhouette_score

    def load(side: str) -> tuple[np.ndarray, np.ndarray]:
        return (
            np.load(prefix.with_name(f"{prefix.name}_{side}_labels.npy")),
            np.load(prefix.with_name(f"{prefix.name}_{side}_xsample.npy")),
        )

    (lab_o, xs_o), (lab_b, xs_b) = load("ours"), load("baseline")
    return {
        "sample_rows": len(idx),
        "silhouette_ours_space": {
            "ours": float(silhouette_score(xs_o, lab_o[idx])),
            "baseline": float(silhouette_score(xs_o, lab_b[idx])),
        },
        "silhouette_baseline_space": {
            "ours": float(silhouette_score(xs_b, lab_o[idx])),
            "baseline": float(silhouette_score(xs_b, lab_b[idx])),
        },
        "ari_vs_truth": None
        if truth is None
        else {
            "ours": float(adjusted_rand_score(truth, lab_o)),
            "baseline": float(adjusted_rand_score(truth, lab_b)),
        },
        "ari_ours_vs_baseline": float(adjusted_rand_score(lab_o, lab_b)),
    }


# ----------------------------------------------------------------------------------------- reports
def fmt_s(value: float | None) -> str:
    """Seconds with precision that fits the magnitude."""
    if value is None:
        return "n/a"
    return f"{value:.3f}" if value < 10 else f"{value:.1f}"


def fmt_ratio(value: float | None, estimated: bool = False) -> str:
    """Baseline / ours, e.g. ``3.2x``."""
    if value is None:
        return "n/a"
    text = f"{value:.2f}x" if value < 10 else f"{value:,.0f}x"
    return f"~{text} (est.)" if estimated else text


def fmt_hours(seconds: float) -> str:
    """A long duration in the most readable unit."""
    if seconds >= 3600:
        return f"~{seconds / 3600:.1f} hours"
    return f"~{seconds / 60:.0f} min" if seconds >= 60 else f"~{seconds:.0f} s"


def build_rows(res: dict[str, Any]) -> tuple[list[list[str]], list[list[str]]]:
    """(timing rows, quality rows) as display strings."""
    ours, base = res["ours"], res["baseline"]
    rows: list[list[str]] = []
    for stage in STAGES:
        o = ours["stages"][stage]
        b = base["stages"].get(stage)
        if stage == "validate":
            rows.append([stage, fmt_s(o), "n/a (none)", "n/a"])
        elif stage == "evaluate" and b is None:
            est = base["evaluate"]["estimated_full_s"]
            rows.append(
                [
                    stage,
                    fmt_s(o),
                    f"skipped (O(n^2): {fmt_hours(est)} est.)",
                    fmt_ratio(est / o, estimated=True),
                ]
            )
        else:
            rows.append([stage, fmt_s(o), fmt_s(b), fmt_ratio(b / o)])
    t = res["totals"]
    rows.append(["total (measured)", fmt_s(t["ours_s"]), fmt_s(t["baseline_s"]), fmt_ratio(t["ratio"])])
    if t.get("baseline_with_estimate_s") is not None:
        rows.append(
            [
                "total incl. est.",
                fmt_s(t["ours_s"]),
                f"{fmt_hours(t['baseline_with_estimate_s'])} est.",
                fmt_ratio(t["baseline_with_estimate_s"] / t["ours_s"], estimated=True),
            ]
        )
    rows.append(
        [
            "peak RSS (MiB)",
            f"{ours['peak_rss_mib']:,.0f}",
            f"{base['peak_rss_mib']:,.0f}",
            fmt_ratio(base["peak_rss_mib"] / ours["peak_rss_mib"]),
        ]
    )

    q = res["quality"]
    n = q["sample_rows"]
    same_rows = f"same {n:,} rows" + (" (all)" if n == res["rows"] else " (seeded sample)")
    wider = "ours also encodes bool/date/categorical columns" if ours["x_dim"] != base["x_dim"] else ""
    rows_q: list[list[str]] = [
        ["k (segments)", str(ours["k"]), str(base["k"]), ""],
        [
            "matrix width (preprocessed)",
            f"{ours['x_dim']} ({ours['x_dtype']})",
            f"{base['x_dim']} ({base['x_dtype']})",
            wider,
        ],
        ["PCA components (90 % var.)", str(ours["z_dim"]), str(base["z_dim"]), ""],
        [
            "silhouette, own space",
            f"{q['silhouette_ours_space']['ours']:.4f}",
            f"{q['silhouette_baseline_space']['baseline']:.4f}",
            same_rows,
        ],
        [
            "silhouette, our space",
            f"{q['silhouette_ours_space']['ours']:.4f}",
            f"{q['silhouette_ours_space']['baseline']:.4f}",
            "both label sets, our preprocessing",
        ],
        [
            "silhouette, baseline space",
            f"{q['silhouette_baseline_space']['ours']:.4f}",
            f"{q['silhouette_baseline_space']['baseline']:.4f}",
            "both label sets, baseline preprocessing",
        ],
    ]
    if q["ari_vs_truth"] is not None:
        rows_q.append(
            [
                "ARI vs planted segments",
                f"{q['ari_vs_truth']['ours']:.4f}",
                f"{q['ari_vs_truth']['baseline']:.4f}",
                f"all {res['rows']:,} rows",
            ]
        )
    rows_q.append(
        ["ARI ours vs baseline", f"{q['ari_ours_vs_baseline']:.4f}", "", "agreement of the two label sets"]
    )
    return rows, rows_q


INSIGHTS_HEADER = ["plots and report", "ours", "baseline (every row)", "ratio (baseline/ours)"]


def insights_rows(res: dict[str, Any]) -> list[list[str]]:
    """Time and added memory of drawing the plots (ours: plus profile and report)."""
    ours, base = res["ours"]["insights"], res["baseline"]["insights"]
    return [
        [
            "seconds",
            fmt_s(ours["seconds"]),
            fmt_s(base["seconds"]),
            fmt_ratio(base["seconds"] / ours["seconds"]),
        ],
        [
            "memory added (MiB)",
            f"{ours['added_mib']:,.0f}",
            f"{base['added_mib']:,.0f}",
            fmt_ratio(base["added_mib"] / ours["added_mib"]) if ours["added_mib"] > 1 else "n/a",
        ],
        ["PNG files", str(int(ours["plots"])), str(int(base["plots"])), ""],
    ]


def text_table(header: list[str], rows: list[list[str]]) -> str:
    """Aligned plain-text table (first column left, others right-aligned)."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    return "\n".join([line(header), "  ".join("-" * w for w in widths), *(line(r) for r in rows)])


def md_table(header: list[str], rows: list[list[str]], left_last: bool = False) -> str:
    """GitHub Markdown table: first column left-aligned, numbers right-aligned (a text last column left)."""
    align = ["---", *["---:"] * (len(header) - 1)]
    if left_last:
        align[-1] = "---"
    return "\n".join("| " + " | ".join(cells) + " |" for cells in [header, align, *rows])


TIMING_HEADER = ["stage", "ours s", "baseline s", "ratio (baseline/ours)"]
QUALITY_HEADER = ["quality", "ours", "baseline", "note"]


def title(res: dict[str, Any]) -> str:
    """One-line dataset description."""
    reps = res["repeats"]
    how = f"median of {reps} runs" if reps > 1 else "single run"
    return f"{res['label']}: {res['rows']:,} rows x {res['features']} features, k={N_CLUSTERS}, {how}"


def notes(results: list[dict[str, Any]], n_init: int) -> list[str]:
    """Footnotes shared by the text, Markdown and JSON outputs."""
    return [
        "ratio = baseline seconds / our seconds (> 1: ours is faster). Each side runs in a fresh process; "
        "imports are not timed; the input file is in the page cache for both.",
        "read: ours reads Parquet (synthetic) or CSV with the pyarrow engine (CC GENERAL); the baseline "
        "reads the CSV with pd.read_csv (C engine).",
        "validate: ours runs schema inference + pandera checks; the baseline has no validation.",
        "preprocess: ours = impute, quantile-clip, Yeo-Johnson on skewed columns (medians, quantiles and "
        "scales from a 100,000-row sample, lambdas from 50,000 of them), standardise, one-hot, float32; "
        "baseline = SimpleImputer(median) + "
        "PowerTransformer(yeo-johnson, standardize=False) + StandardScaler on numeric columns, float64, "
        "all rows.",
        "featurize: ours = exact PCA to 90 % variance from the float64 covariance accumulated over all rows "
        "(one pass + a features x features eigendecomposition), float32 output; baseline = "
        "PCA(n_components=0.9), default solver, float64.",
        f"cluster: both KMeans k={N_CLUSTERS}, n_init={n_init}, same seed; ours runs on float32 and also "
        "computes its sampled silhouette (10,000 rows) and size-orders the segments.",
        "evaluate: ours = sampled silhouette (10,000 rows) in PCA space (the preprocessed-space one "
        "comes from the cluster stage) + Davies-Bouldin + "
        f"Calinski-Harabasz on all rows; baseline = full silhouette_score, run only up to "
        f"{FULL_SILHOUETTE_MAX_ROWS:,} rows, else estimated as t({SILHOUETTE_PROBE_ROWS:,} rows) x "
        f"(n / {SILHOUETTE_PROBE_ROWS:,})^2.",
        "plots and report (not in the totals): ours = the flow's visualize stage (profile.csv, every PNG "
        "from a 20,000-row sample, one card per segment, report.html with embedded images, report.md); "
        "baseline = scatter, box plots and heatmap drawn from every row, groupby mean/median profile. "
        "Memory added = peak current RSS during the step minus RSS before it (10 ms sampling).",
        "peak RSS: high-water mark (VmHWM) of each side's process, including the interpreter and imports ("
        + "; ".join(
            f"{r['label']}: ours {r['ours']['rss_after_imports_mib']:,.0f} MiB, baseline "
            f"{r['baseline']['rss_after_imports_mib']:,.0f} MiB after imports"
            for r in results
        )
        + ").",
    ]


def render_text(results: list[dict[str, Any]], n_init: int) -> str:
    """All tables as aligned plain text."""
    parts = []
    for res in results:
        rows, rows_q = build_rows(res)
        parts += [
            title(res),
            "",
            text_table(TIMING_HEADER, rows),
            "",
            text_table(QUALITY_HEADER, rows_q),
            "",
            text_table(INSIGHTS_HEADER, insights_rows(res)),
            "",
        ]
    parts += ["Notes:", *(f"  - {n}" for n in notes(results, n_init))]
    return "\n".join(parts)


def render_md(results: list[dict[str, Any]], meta: dict[str, Any], n_init: int) -> str:
    """All tables as Markdown, for docs/performance.md."""
    parts = [
        "## Pipeline benchmark: ours vs a naive scikit-learn baseline",
        "",
        f"Measured {meta['date']} on {meta['cpus']} CPU cores, Python {meta['python']}, "
        f"scikit-learn {meta['sklearn']}, pandas {meta['pandas']}, numpy {meta['numpy']}. "
        "Reproduce with `.venv/bin/python benchmarks/pipeline.py`.",
        "",
    ]
    for res in results:
        rows, rows_q = build_rows(res)
        parts += [
            f"### {title(res)}",
            "",
            md_table(TIMING_HEADER, rows),
            "",
            md_table(QUALITY_HEADER, rows_q, left_last=True),
            "",
            md_table(INSIGHTS_HEADER, insights_rows(res)),
            "",
        ]
    parts += ["Notes:", "", *(f"- {n}" for n in notes(results, n_init)), ""]
    return "\n".join(parts)


# -------------------------------------------------------------------------------------------- main
def bench_dataset(spec: dict[str, Any], work: Path, truth: np.ndarray | None) -> dict[str, Any]:
    """Run both sides on one dataset and put their results together."""
    res: dict[str, Any] = {
        "name": spec["name"],
        "label": spec["label"],
        "repeats": spec["repeats"],
        "files": {"ours": spec["parquet"] or spec["csv"], "baseline": spec["csv"]},
    }
    for side in ("ours", "baseline"):
        for path in {spec["csv"], spec["parquet"]} - {None}:
            warm_page_cache(Path(path))
        res[side] = run_worker(side, spec, work)
    ours, base = res["ours"], res["baseline"]
    res["rows"] = ours["n_rows"]
    res["features"] = spec["features"]
    idx = sample_index(ours["n_rows"], spec["silhouette_sample"], spec["seed"])
    res["quality"] = cross_quality(Path(spec["prefix"]), truth, idx)
    own = res["quality"]["silhouette_ours_space"]["ours"]
    if ours["silhouette"] is not None and abs(own - ours["silhouette"]) > 1e-4:
        logger.warning(
            "our silhouette recomputed on the shared sample (%.5f) differs from "
            "stages.evaluate's (%.5f): the samples do not match",
            own,
            ours["silhouette"],
        )
    ours_total = sum(ours["stages"].values())
    base_total = sum(base["stages"].values())
    est = base.get("evaluate", {}).get("estimated_full_s")
    res["totals"] = {
        "ours_s": ours_total,
        "baseline_s": base_total,
        "ratio": base_total / ours_total,
        "baseline_measured_stages": sorted(base["stages"]),
        "baseline_with_estimate_s": None if est is None else base_total + est,
    }
    res["ratios"] = {
        s: base["stages"][s] / ours["stages"][s] if s in base["stages"] else None for s in STAGES
    }
    if est is not None:
        res["ratios"]["evaluate_estimated"] = est / ours["stages"]["evaluate"]
    return res


def main(argv: list[str] | None = None) -> int:
    """Entry point (also the worker entry point, with ``--worker``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the synthetic table")
    parser.add_argument("--features", type=int, default=100, help="feature columns of the synthetic table")
    parser.add_argument("--skip-large", action="store_true", help="run CC GENERAL only")
    parser.add_argument(
        "--repeats", type=int, default=5, help="runs per side on CC GENERAL (median reported)"
    )
    parser.add_argument("--large-repeats", type=int, default=1, help="runs per side on the synthetic table")
    parser.add_argument("--n-init", type=int, default=4, help="KMeans restarts, the same for both sides")
    parser.add_argument("--out", type=Path, default=OUT, help="output folder (default benchmarks/out)")
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--spec", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr
    )

    if args.worker:
        spec = json.loads(args.spec.read_text(encoding="utf-8"))
        result = WORKERS[args.worker](spec)
        args.result.write_text(json.dumps(result, indent=2, default=float), encoding="utf-8")
        return 0

    import pandas as pd
    import sklearn

    from segmentation.config import load_config
    from segmentation.data.io import sample_data_path, write_json, write_text

    wall = time.perf_counter()
    out: Path = args.out
    work = out / "work"
    work.mkdir(parents=True, exist_ok=True)
    config = load_config()
    common = {
        "n_clusters": N_CLUSTERS,
        "n_init": args.n_init,
        "seed": config.seed,
        "silhouette_sample": config.evaluate.silhouette_sample,
    }
    cc = sample_data_path()
    specs: list[tuple[dict[str, Any], np.ndarray | None]] = [
        (
            {
                **common,
                "name": "cc_general",
                "label": "CC GENERAL sample",
                "csv": str(cc),
                "parquet": None,
                "features": 17,
                "repeats": args.repeats,
                "prefix": str(work / "cc_general"),
            },
            None,
        )
    ]
    generation: dict[str, Any] | None = None
    if not args.skip_large:
        stem = f"synthetic_{args.rows}x{args.features}_k{SYNTH_SEGMENTS}_seed{SYNTH_SEED}"
        files = {
            "parquet": out / f"{stem}.parquet",
            "csv": out / f"{stem}.csv",
            "truth": out / f"{stem}_truth.npy",
        }
        name = f"synthetic_{args.rows}x{args.features}"
        if not all(p.exists() for p in files.values()):
            logger.info("generating %s (cached for later runs)", stem)
            generation = run_worker(
                "generate",
                {
                    "name": name,
                    "rows": args.rows,
                    "features": args.features,
                    **{k: str(v) for k, v in files.items()},
                },
                work,
            )
        else:
            logger.info("using cached %s", stem)
        truth = np.load(files["truth"])
        specs.append(
            (
                {
                    **common,
                    "name": name,
                    "label": f"Synthetic ({SYNTH_SEGMENTS} planted segments)",
                    "csv": str(files["csv"]),
                    "parquet": str(files["parquet"]),
                    "features": args.features,
                    "repeats": args.large_repeats,
                    "prefix": str(work / name),
                    "file_mib": {k: files[k].stat().st_size / 2**20 for k in ("csv", "parquet")},
                },
                truth,
            )
        )

    results = []
    for spec, truth in specs:
        logger.info("=== %s", spec["name"])
        results.append(bench_dataset(spec, work, truth))

    meta = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "sklearn": sklearn.__version__,
        "pandas": pd.__version__,
        "numpy": np.__version__,
        "machine": platform.machine(),
        "n_init": args.n_init,
        "wall_s": time.perf_counter() - wall,
        "synthetic_generation": generation,
    }
    text = render_text(results, args.n_init)
    print(text)
    print(
        f"\nbenchmark wall time: {meta['wall_s']:.0f} s (including data generation: "
        f"{'yes' if generation else 'no, cached'})"
    )
    write_json(
        {"meta": meta, "notes": notes(results, args.n_init), "datasets": results}, out / "pipeline.json"
    )
    write_text(render_md(results, meta, args.n_init), out / "pipeline.md")
    logger.info("wrote %s and %s", out / "pipeline.json", out / "pipeline.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
