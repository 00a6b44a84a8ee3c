"""Compare featurizer x clusterer (x skew handling) configurations on the bundled CC GENERAL sample.

Runs the library's stage functions directly (``validate_table`` -> ``fit_preprocessing`` ->
``fit_features`` -> ``fit_segments`` -> ``evaluate``), not the Prefect flow. Loading, validation and
preprocessing happen once per preprocessing setting; each featurizer is fitted once per preprocessing
setting and reused by every clusterer.

All metrics are computed in the *preprocessed* space (as ``pipeline.evaluate`` does), so featurizers are
comparable. Across skew settings the preprocessed spaces differ, so the skew table additionally scores
every labelling in the default (yeo-johnson) preprocessed space.

Usage::

    cd /work/main && .venv/bin/python benchmarks/compare_configs.py            # full grid
    .venv/bin/python benchmarks/compare_configs.py --quick                     # smoke run
    .venv/bin/python benchmarks/compare_configs.py --ae-epochs 30

Writes ``benchmarks/out/compare_configs.md`` (Markdown tables for docs/models.md) and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from sklearn.metrics import adjusted_rand_score

from segmentation.config import SegmentConfig, load_config
from segmentation.data.io import read_table, sample_data_path
from segmentation.evaluation import evaluate_segments
from segmentation.stages.evaluate import evaluate
from segmentation.stages.fit import fit_features, fit_preprocessing, fit_segments
from segmentation.stages.load import ValidatedTable, validate_table

OUT_DIR = Path(__file__).resolve().parent / "out"
FIXED_KS = (2, 3, 4, 5, 6, 7)
STABILITY_SEEDS = (0, 1, 2, 3, 4)

# label -> overrides of the featurize section
FEATURIZERS: dict[str, list[str]] = {
    "none": ["featurize=none"],
    "pca(var=0.9)": ["featurize=pca", "featurize.variance=0.9"],
    "pca(n=2)": ["featurize=pca", "featurize.n_components=2"],
    "ae(dim=8)": ["featurize=autoencoder", "featurize.encoding_dim=8"],
    "ae(dim=4)": ["featurize=autoencoder", "featurize.encoding_dim=4"],
}
# label -> overrides of the cluster section
CLUSTERERS: dict[str, list[str]] = {
    "kmeans(k=sil 2..10)": ["cluster=kmeans"],
    "minibatch_kmeans(k=sil 2..10)": ["cluster=minibatch_kmeans"],
    "gmm-full(k=sil 2..10)": ["cluster=gmm", "cluster.covariance_type=full"],
    "agglomerative-ward(k=sil 2..10)": ["cluster=agglomerative"],
    "hdbscan(mcs=100)": ["cluster=hdbscan", "cluster.min_cluster_size=100"],
    "hdbscan(mcs=200)": ["cluster=hdbscan", "cluster.min_cluster_size=200"],
}
SKEWS = ("yeo-johnson", "log1p", "none")
# The baseline configuration is pinned here (written to out/baseline.yaml and passed to load_config in place
# of params.yaml), so the benchmark measures the same thing whatever the shipped defaults are: switching to
# the kind already in the base file keeps that file's parameters, other kinds get their library defaults.
BASELINE: dict[str, Any] = {
    "seed": 42,
    "model_name": "compare-configs",
    "data": {"path": None, "id_column": None, "schema_kind": "auto", "float32": True},
    "preprocess": {
        "impute": "median",
        "skew": "yeo-johnson",
        "skew_threshold": 0.75,
        "clip_quantiles": [0.005, 0.995],
        "scale": "standard",
    },
    "featurize": {"kind": "pca", "variance": 0.9, "n_components": None, "whiten": False},
    "cluster": {
        "kind": "kmeans",
        "n_clusters": None,
        "n_init": 4,
        "max_iter": 300,
        "search": {"k_min": 2, "k_max": 10, "criterion": "silhouette"},
    },
    "evaluate": {"silhouette_sample": 10_000},
}
SEARCHABLE = ("kmeans", "minibatch_kmeans", "gmm", "agglomerative")
# (featurizer, clusterer) pairs skipped unless --full, to keep the default run near 10 minutes on 2 cores
OPTIONAL = {
    ("none", "minibatch_kmeans(k=sil 2..10)"),
    ("pca(n=2)", "minibatch_kmeans(k=sil 2..10)"),
    ("pca(n=2)", "gmm-full(k=sil 2..10)"),
    ("pca(n=2)", "agglomerative-ward(k=sil 2..10)"),
    ("pca(n=2)", "hdbscan(mcs=200)"),
    ("ae(dim=8)", "minibatch_kmeans(k=sil 2..10)"),
    ("ae(dim=8)", "agglomerative-ward(k=sil 2..10)"),
    ("ae(dim=4)", "minibatch_kmeans(k=sil 2..10)"),
    ("ae(dim=4)", "gmm-full(k=sil 2..10)"),
    ("ae(dim=4)", "agglomerative-ward(k=sil 2..10)"),
    ("ae(dim=4)", "hdbscan(mcs=200)"),
}


@dataclass
class Run:
    """One configuration's outcome."""

    table: str
    config: str
    overrides: list[str]
    metrics: dict[str, Any] = field(default_factory=dict)
    featurize_s: float | None = None
    cluster_s: float | None = None
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        """JSON-able summary."""
        return {
            "table": self.table,
            "config": self.config,
            "overrides": self.overrides,
            "featurize_s": self.featurize_s,
            "cluster_s": self.cluster_s,
            "error": self.error,
            "metrics": self.metrics,
            **self.extra,
        }


class Bench:
    """Caches the loaded table, preprocessed matrices and fitted features across configurations."""

    def __init__(self, ae_epochs: int, base_file: Path) -> None:
        self.ae_epochs = ae_epochs
        self.base_file = base_file
        self.source = str(sample_data_path())
        self.frame = read_table(sample_data_path())
        self._table: ValidatedTable | None = None
        self._pre: dict[str, tuple[np.ndarray, float]] = {}
        self._feat: dict[tuple[str, str], tuple[Any, np.ndarray, float]] = {}
        self._done: dict[str, Run] = {}

    def config(self, overrides: list[str]) -> SegmentConfig:
        """Defaults + base overrides + the AE epoch cap (only applied when the featurizer is the AE)."""
        pinned: list[str] = []
        if "featurize=autoencoder" in overrides:
            pinned.append(f"featurize.max_epochs={self.ae_epochs}")
        if any(o in {f"cluster={kind}" for kind in SEARCHABLE} for o in overrides):
            pinned += ["cluster.search.k_min=2", "cluster.search.k_max=10"]
        return load_config(self.base_file, [*pinned, *overrides])  # later overrides win

    def table(self, cfg: SegmentConfig) -> ValidatedTable:
        """Validate once (the data section never changes here)."""
        if self._table is None:
            self._table = validate_table(self.frame, cfg.data, source=self.source, seed=cfg.seed)
        return self._table

    def preprocessed(self, cfg: SegmentConfig) -> np.ndarray:
        """Preprocessed matrix, fitted once per preprocess section."""
        key = cfg.section_json("preprocess")
        if key not in self._pre:
            t0 = time.perf_counter()
            _, x = fit_preprocessing(self.table(cfg), cfg.preprocess, float32=cfg.data.float32, seed=cfg.seed)
            self._pre[key] = (x, time.perf_counter() - t0)
        return self._pre[key][0]

    def features(self, cfg: SegmentConfig) -> tuple[Any, np.ndarray, float]:
        """Fitted featurizer, its output and its fit seconds, once per (preprocess, featurize)."""
        key = (cfg.section_json("preprocess"), cfg.section_json("featurize"))
        if key not in self._feat:
            x = self.preprocessed(cfg)
            t0 = time.perf_counter()
            featurizer, z = fit_features(x, cfg.featurize, seed=cfg.seed)
            self._feat[key] = (featurizer, z, time.perf_counter() - t0)
        return self._feat[key]

    def run(self, table: str, label: str, overrides: list[str]) -> Run:
        """Fit and evaluate one configuration; a crash is recorded, not raised."""
        result = Run(table=table, config=label, overrides=overrides)
        try:
            cfg = self.config(overrides)
            result.extra["resolved_config"] = cfg.flat()
            key = cfg.model_dump_json()
            if key in self._done:  # the very same resolved configuration already ran: reuse it
                done = self._done[key]
                result.metrics, result.featurize_s, result.cluster_s = (
                    done.metrics,
                    done.featurize_s,
                    done.cluster_s,
                )
                result.extra["labels"] = done.extra["labels"]
                result.extra["same_as"] = f"{done.table}: {done.config}"
                print(f"[{table}] {label}: same configuration as [{done.table}] {done.config}", flush=True)
                return result
            x = self.preprocessed(cfg)
            featurizer, z, result.featurize_s = self.features(cfg)
            t0 = time.perf_counter()
            clustered = fit_segments(
                z, x, cfg.cluster, seed=cfg.seed, silhouette_sample=cfg.evaluate.silhouette_sample
            )
            result.cluster_s = time.perf_counter() - t0
            result.metrics = evaluate(x, z, clustered, featurizer, config=cfg)
            result.extra["labels"] = clustered.labels
            self._done[key] = result
        except Exception:  # a crash is a library bug to report, the grid goes on
            result.error = traceback.format_exc()
            print(f"!! {table} / {label} crashed:\n{result.error}")
        status = (
            "ERROR"
            if result.error
            else (
                f"k={result.metrics.get('n_clusters')} sil={_fmt(result.metrics.get('silhouette'))} "
                f"clu={_fmt(result.cluster_s, 1)}s"
            )
        )
        print(f"[{table}] {label}: {status}", flush=True)
        return result


# ------------------------------------------------------------------------------------------ helpers
def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if np.isnan(value):
            return "nan"
        return f"{value:.{digits}f}"
    return str(value)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _md_table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _metric_cells(run: Run) -> list[str]:
    m = run.metrics
    if run.error:
        return ["**crash**"] + ["-"] * 8
    feat = m.get("featurizer", {})
    fit_s = (run.featurize_s or 0.0) + (run.cluster_s or 0.0)
    return [
        f"{m['n_clusters']}" + (f" (dim {feat['output_dim']})" if feat else ""),
        _fmt(m.get("silhouette")),
        _fmt(m.get("davies_bouldin")),
        _fmt(m.get("calinski_harabasz"), 0),
        _pct(m.get("min_segment_share")),
        _pct(m.get("max_segment_share")),
        _pct(m.get("noise_fraction")),
        _fmt(fit_s, 1),
        f"{_fmt(run.featurize_s, 1)} + {_fmt(run.cluster_s, 1)}",
    ]


METRIC_HEADERS = [
    "k (feature dim)",
    "silhouette ↑",
    "Davies-Bouldin ↓",
    "Calinski-Harabasz ↑",
    "min share",
    "max share",
    "noise",
    "fit s",
    "featurize + cluster s",
]


def _k_scores_table(runs: list[Run]) -> str:
    ks = list(range(2, 11))
    rows = []
    for run in runs:
        if run.error or not run.metrics.get("k_selection", {}).get("scores"):
            continue
        scores = run.metrics["k_selection"]["scores"]
        chosen = run.metrics["k_selection"]["chosen_k"]
        cells = []
        for k in ks:
            cell = _fmt(scores.get(str(k)))
            cells.append(f"**{cell}**" if k == chosen else cell)
        rows.append([run.config, *cells])
    return _md_table(["config", *(f"k={k}" for k in ks)], rows)


def _featurizer_rows(bench: Bench) -> list[list[str]]:
    rows = []
    for (pre_key, feat_key), (featurizer, z, seconds) in bench._feat.items():
        feat = json.loads(feat_key)
        if feat["kind"] == "pca":
            detail = f"explained variance {float(featurizer.explained_variance_ratio_.sum()):.3f}"
        elif feat["kind"] == "autoencoder":
            detail = (
                f"encoding_dim {feat['encoding_dim']}, {len(featurizer.history)} epochs (max "
                f"{feat['max_epochs']}), best val MSE {featurizer.best_val_loss_:.4f}"
            )
        else:
            detail = "identity"
        rows.append([feat["kind"], json.loads(pre_key)["skew"], str(z.shape[1]), detail, _fmt(seconds, 1)])
    return rows


def _restart_rows(fixed: list[Run], restarts: list[Run]) -> list[list[str]]:
    rows = []
    for f_label in ("none", "pca(var=0.9)"):
        cells = []
        for k in FIXED_KS[1:]:
            four = next((r for r in fixed if r.config == f"{f_label} + kmeans(k={k})"), None)
            ten = next((r for r in restarts if r.config == f"{f_label} + kmeans(k={k}, n_init=10)"), None)
            cells.append(
                f"{_fmt(four.metrics.get('silhouette') if four else None)} / "
                f"{_fmt(ten.metrics.get('silhouette') if ten else None)}"
            )
        seconds = sum(r.cluster_s or 0.0 for r in restarts if r.config.startswith(f"{f_label} +"))
        rows.append([f"{f_label} (n_init 4 / 10)", *cells, _fmt(seconds, 1)])
    return rows


def _derived_k_choices(runs: list[Run]) -> list[list[str]]:
    rows = []
    for run in runs:
        scores = run.metrics.get("k_selection", {}).get("scores") if not run.error else None
        if not scores or len(scores) < 2:
            continue
        cells = []
        for k_min in (2, 3, 4):
            valid = {int(k): v for k, v in scores.items() if v is not None and int(k) >= k_min}
            if not valid:
                cells.append("-")
                continue
            k = max(valid, key=lambda kk: (valid[kk], -kk))  # ties go to the smaller k, as in the library
            cells.append(f"k={k} ({valid[k]:.3f})")
        rows.append([run.config, *cells])
    return rows


def _stability(z: np.ndarray, k: int, n_init: int) -> float:
    """Mean pairwise ARI of k-means labellings across seeds (1 = the same partition every time)."""
    from sklearn.cluster import KMeans

    labels = [KMeans(n_clusters=k, n_init=n_init, random_state=s).fit_predict(z) for s in STABILITY_SEEDS]
    pairs = [adjusted_rand_score(a, b) for i, a in enumerate(labels) for b in labels[i + 1 :]]
    return float(np.mean(pairs))


# --------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    """Run the grid, print and write the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--ae-epochs", type=int, default=50, help="Autoencoder max_epochs (default: the library's 50)."
    )
    parser.add_argument("--quick", action="store_true", help="Smoke run: fewer configurations.")
    parser.add_argument("--full", action="store_true", help="Every featurizer x clusterer pair (slower).")
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore", category=FutureWarning)
    os.environ.setdefault("TQDM_DISABLE", "1")
    t_start = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    base_file = args.out / "baseline.yaml"
    base_file.write_text(yaml.safe_dump(BASELINE, sort_keys=False), encoding="utf-8")
    bench = Bench(ae_epochs=args.ae_epochs, base_file=base_file)
    featurizers = dict(list(FEATURIZERS.items())[:2]) if args.quick else FEATURIZERS
    clusterers = {k: v for k, v in CLUSTERERS.items() if "kmeans" in k} if args.quick else CLUSTERERS

    # 1. featurizer x clusterer on the default preprocessing (yeo-johnson)
    grid: list[Run] = []
    for f_label, f_over in featurizers.items():
        for c_label, c_over in clusterers.items():
            if args.full or (f_label, c_label) not in OPTIONAL:
                grid.append(bench.run("grid", f"{f_label} + {c_label}", [*f_over, *c_over]))

    # 2. k-means at fixed k (none and PCA 0.9), with seed stability
    fixed: list[Run] = []
    for f_label in ("none", "pca(var=0.9)"):
        for k in FIXED_KS:
            run = bench.run(
                "fixed_k",
                f"{f_label} + kmeans(k={k})",
                [*FEATURIZERS[f_label], "cluster=kmeans", f"cluster.n_clusters={k}"],
            )
            if not run.error:
                cfg = bench.config(run.overrides)
                _, z, _ = bench.features(cfg)
                run.extra["stability_ari"] = _stability(z, k, cfg.cluster.n_init)
            fixed.append(run)

    # 2b. k-means restarts: the same fixed-k fits with n_init=10 instead of the library default of 4
    restarts: list[Run] = []
    for f_label in ("none", "pca(var=0.9)"):
        for k in FIXED_KS[1:]:
            restarts.append(
                bench.run(
                    "restarts",
                    f"{f_label} + kmeans(k={k}, n_init=10)",
                    [*FEATURIZERS[f_label], "cluster=kmeans", f"cluster.n_clusters={k}", "cluster.n_init=10"],
                )
            )

    # 3. constrained k search. Every fit in a k search is deterministic (same seed, same data), so the
    #    k that a search over k_min..10 would pick is the argmax of the full search's scores over k >= k_min;
    #    one library run (PCA + k-means, k_min=4) checks that equivalence.
    constrained = [
        bench.run(
            "constrained",
            "pca(var=0.9) + kmeans(k=sil 4..10)",
            [*FEATURIZERS["pca(var=0.9)"], "cluster=kmeans", "cluster.search.k_min=4"],
        )
    ]
    derived = _derived_k_choices(grid)

    # 4. skew handling for the best grid configuration (and the shipped default), each scored in its
    #    own preprocessed space and in the default (yeo-johnson) space.
    ok = [
        r
        for r in grid
        if not r.error and r.metrics.get("silhouette") is not None and r.metrics["noise_fraction"] <= 0.10
    ]
    best = max(ok, key=lambda r: r.metrics["silhouette"]) if ok else None
    skew_bases: list[tuple[str, list[str]]] = [
        ("pca(var=0.9) + kmeans(k=sil 2..10)", [*FEATURIZERS["pca(var=0.9)"], "cluster=kmeans"]),
        (
            "pca(var=0.9) + kmeans(k=sil 3..10)",
            [*FEATURIZERS["pca(var=0.9)"], "cluster=kmeans", "cluster.search.k_min=3"],
        ),
        (
            "pca(var=0.9) + kmeans(k=sil 4..10)",
            [*FEATURIZERS["pca(var=0.9)"], "cluster=kmeans", "cluster.search.k_min=4"],
        ),
    ]
    # the best grid configuration too, unless it is k-means again (none vs PCA barely differ, see the grid)
    if best is not None and bench.config(best.overrides).cluster.kind != "kmeans":
        skew_bases.append((f"{best.config} [best grid silhouette]", best.overrides))
    reference_x = bench.preprocessed(bench.config([]))
    skew_runs: list[Run] = []
    for base_label, base_over in skew_bases:
        for skew in SKEWS:
            run = bench.run("skew", f"{base_label}, skew={skew}", [*base_over, f"preprocess.skew={skew}"])
            if not run.error:
                labels = run.extra["labels"]
                ref = evaluate_segments(reference_x, labels, silhouette_sample=10_000, seed=42)
                run.extra["reference_space"] = {
                    k: ref[k] for k in ("silhouette", "davies_bouldin", "calinski_harabasz")
                }
            skew_runs.append(run)

    total_s = time.perf_counter() - t_start

    # ---------------------------------------------------------------------------------- reporting
    all_runs = grid + fixed + restarts + constrained + skew_runs
    n_rows = len(bench.frame)
    preprocess_s = {json.loads(k)["skew"]: round(v[1], 2) for k, v in bench._pre.items()}
    header = [
        "# Configuration comparison on the bundled CC GENERAL sample",
        "",
        f"Generated by `benchmarks/compare_configs.py`; {n_rows} customers, "
        f"{reference_x.shape[1]} preprocessed columns; seed 42; {os.cpu_count()} CPU cores; "
        f"total wall time {total_s:.0f} s.",
        "All metrics are in the preprocessed space (as `pipeline.evaluate` computes them). Silhouette: "
        "10,000-row sample (i.e. all rows here), noise excluded. HDBSCAN metrics exclude noise rows, "
        "which flatters them. `fit s` = featurizer fit + clusterer fit including the k search "
        f"(preprocessing, done once per skew setting, is excluded: {preprocess_s} s). "
        f"Autoencoder: library defaults except `max_epochs={args.ae_epochs}` (early stopping, patience 5). "
        "Baseline (pinned in the script, not read from params.yaml): median imputation, 0.5%/99.5% "
        "clipping, yeo-johnson on columns with |skew| > 0.75, standard scaling, seed 42; k-means n_init 4, "
        "GMM n_init 2, agglomerative ward; k searched over 2..10 by silhouette unless stated. "
        + (
            "Grid: every featurizer x clusterer pair."
            if args.full
            else "Grid: some optional pairs skipped (run with `--full` for all)."
        ),
        "",
    ]
    sections = [
        "## Featurizer x clusterer (baseline preprocessing: yeo-johnson, standard scaling, clipping)",
        "",
        _md_table(["config", *METRIC_HEADERS], [[r.config, *_metric_cells(r)] for r in grid]),
        "",
        "### Featurizers fitted",
        "",
        _md_table(["featurizer", "skew", "output dim", "detail", "fit s"], _featurizer_rows(bench)),
        "",
        "## Silhouette per k during the k search (preprocessed space; bold = chosen)",
        "",
        _k_scores_table([r for r in grid + constrained if "hdbscan" not in r.config]),
        "",
        "## k-means at fixed k (stability = mean pairwise ARI over 5 seeds)",
        "",
        _md_table(
            ["config", *METRIC_HEADERS, "stability ARI"],
            [[r.config, *_metric_cells(r), _fmt(r.extra.get("stability_ari"))] for r in fixed],
        ),
        "",
        "## k-means restarts: silhouette at fixed k with n_init=4 (library default) vs n_init=10",
        "",
        _md_table(
            ["featurizer", *(f"k={k}" for k in FIXED_KS[1:]), "cluster s (n_init=10, all k)"],
            _restart_rows(fixed, restarts),
        ),
        "",
        "## Constrained k search",
        "",
        "k that a search over k_min..10 picks (argmax of the scores above over k >= k_min; every fit in a "
        "search is deterministic, checked by the library run below), with its silhouette.",
        "",
        _md_table(["search", "k_min=2", "k_min=3", "k_min=4"], derived),
        "",
        _md_table(
            ["config (library run)", *METRIC_HEADERS], [[r.config, *_metric_cells(r)] for r in constrained]
        ),
        "",
        "## Skew handling (own preprocessed space, then the baseline yeo-johnson space)",
        "",
        _md_table(
            ["config", *METRIC_HEADERS, "silhouette (YJ space)", "DB (YJ space)", "CH (YJ space)"],
            [
                [
                    r.config,
                    *_metric_cells(r),
                    *(
                        _fmt(r.extra.get("reference_space", {}).get(k), 0 if k == "calinski_harabasz" else 3)
                        for k in ("silhouette", "davies_bouldin", "calinski_harabasz")
                    ),
                ]
                for r in skew_runs
            ],
        ),
        "",
    ]
    errors = [r for r in all_runs if r.error]
    if errors:
        sections += ["## Crashes", ""]
        for r in errors:
            sections += [f"### {r.table}: {r.config}", "", "```", r.error.rstrip(), "```", ""]
    markdown = "\n".join(header + sections)
    print("\n" + markdown)

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "compare_configs.md").write_text(markdown, encoding="utf-8")
    payload = {
        "data": {
            "source": bench.source,
            "n_rows": n_rows,
            "n_preprocessed_columns": int(reference_x.shape[1]),
        },
        "settings": {
            "ae_max_epochs": args.ae_epochs,
            "seed": 42,
            "quick": args.quick,
            "full": args.full,
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
        },
        "preprocess_seconds": preprocess_s,
        "total_seconds": total_s,
        "best_grid_config": best.config if best else None,
        "derived_k_choices": derived,
        "runs": [{k: v for k, v in r.row().items() if k != "labels"} for r in all_runs],
    }
    (args.out / "compare_configs.json").write_text(
        json.dumps(payload, indent=2, default=_json_default), encoding="utf-8"
    )
    print(f"\nwrote {args.out / 'compare_configs.md'} and {args.out / 'compare_configs.json'}")
    return 1 if errors else 0


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


if __name__ == "__main__":
    raise SystemExit(main())
