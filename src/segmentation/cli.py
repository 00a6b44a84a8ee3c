"""``segment``: the single command-line entry point (people, sweeps, Docker and CI).

``main(argv) -> int`` is what the console script and the tests call. Configuration is parsed once
here; flows receive the validated, frozen model. The orchestration layer (``workflows``, which imports
Prefect) is imported only by the commands that run flows, so the library itself stays Prefect-free.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from segmentation import __version__
from segmentation.config import SegmentConfig, load_config
from segmentation.errors import ConfigError, DataValidationError, SegmentationError, requires_extra

if TYPE_CHECKING:
    from segmentation.registry import LocalRegistry, ModelSource

logger = logging.getLogger("segmentation")

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2
EXIT_DRIFT = 5  # `segment drift`: a feature or the segment shares reached an alert threshold (report written)


def _add_model_args(
    parser: argparse.ArgumentParser,
    model_help: str = "registry alias or version (default production)",
    bundle_help: str = "a bundle (or run directory) instead of the registry",
) -> None:
    """``--model ALIAS|VERSION`` or ``--bundle PATH``: the choice :func:`model_source` reads."""
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--model", default="production", help=model_help)
    which.add_argument("--bundle", type=Path, help=bundle_help)


def _add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-c", type=Path, help="YAML config replacing the packaged defaults")
    parser.add_argument(
        "-S",
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="dotted override, e.g. -S featurize=autoencoder -S featurize.encoding_dim=8",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for docs and tests)."""
    parser = argparse.ArgumentParser(prog="segment", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train a segmentation model (runs the train-segmentation flow)")
    train.add_argument("--data", help="CSV or Parquet customer table (default: bundled CC GENERAL sample)")
    train.add_argument("--out", type=Path, help="output directory (default: runs/<model>-<timestamp>)")
    train.add_argument(
        "params",
        nargs="*",
        metavar="KEY=VALUE",
        help="more overrides, as `wandb agent` passes sweep parameters (also accepted as --KEY=VALUE)",
    )
    train.add_argument("--id-column", help="customer ID column (default: auto-detected)")
    train.add_argument(
        "--names",
        type=Path,
        help="YAML mapping segment ID -> name (sets insights.names; stored in the bundle)",
    )
    train.add_argument(
        "--align-to",
        help="previous run directory or bundle: matched segments keep its IDs (sets insights.align_to)",
    )
    _add_config_args(train)

    report = sub.add_parser(
        "report", help="regenerate profile, plots and report of a finished run (no retraining)"
    )
    report.add_argument("run_dir", type=Path, help="a run directory written by `segment train`")
    report.add_argument("--data", help="the training table, if it moved since training (content is checked)")
    report.add_argument(
        "--names", type=Path, help="YAML mapping segment ID -> name, stored in the run's bundle"
    )

    make = sub.add_parser("make-data", help="write a synthetic customer table with planted segments")
    make.add_argument("--rows", type=int, default=10_000)
    make.add_argument("--features", type=int, default=20)
    make.add_argument("--segments", type=int, default=5)
    make.add_argument("--seed", type=int, default=0)
    make.add_argument(
        "--separation", type=float, default=3.0, help="closest segment centres, in SDs per informative column"
    )
    make.add_argument("--missing-rate", type=float, default=0.01, help="share of missing amounts")
    make.add_argument(
        "--out", type=Path, required=True, help=".csv or .parquet; truth goes to <stem>.truth.<ext>"
    )

    sweep = sub.add_parser("sweep", help="run a W&B sweep YAML offline with W&B's own search engine")
    sweep.add_argument(
        "sweep_file", type=Path, help="sweep YAML (W&B format), e.g. sweeps/featurizer_x_clusterer.yaml"
    )
    sweep.add_argument("--data", help="training table (default: bundled CC GENERAL sample)")
    sweep.add_argument(
        "--count", type=int, help="number of trials (required for random/bayes without run_cap)"
    )
    sweep.add_argument("--seed", type=int, default=0, help="seed of the random/bayes proposals")
    sweep.add_argument("--promote", action="store_true", help="register the best trial and run the gate")
    sweep.add_argument(
        "--deployment",
        help="run each trial as a flow run of this deployment on its work pool, e.g. "
        "train-segmentation/local (needs PREFECT_API_URL: `make server`)",
    )
    sweep.add_argument(
        "--parallel", type=int, default=1, help="trials in flight at once (with --deployment; default 1)"
    )
    _add_config_args(sweep)

    registry = sub.add_parser("registry", help="the model registry")
    registry_sub = registry.add_subparsers(dest="registry_command", required=True)
    listing = registry_sub.add_parser("list", help="versions with metrics, aliases, data hash, created-at")
    _add_config_args(listing)
    export = registry_sub.add_parser(
        "export", help="copy a version's bundle to a directory (e.g. for an image)"
    )
    export.add_argument("ref", help="version (v3) or alias (production)")
    export.add_argument("dest", type=Path, help="directory to write the bundle to (replaced atomically)")
    _add_config_args(export)

    report_pr = sub.add_parser(
        "experiment-report", help="Markdown report of local runs against production (for pull requests)"
    )
    report_pr.add_argument("roots", nargs="*", type=Path, help="run directories (default: runs/ and sweeps)")
    report_pr.add_argument("--out", type=Path, help="write the Markdown here (default: stdout)")
    _add_config_args(report_pr)

    promote = sub.add_parser("promote", help="move `production` to a version that passes the gate")
    which = promote.add_mutually_exclusive_group()
    which.add_argument("--version", help="version (v3, 3) or alias (default: candidate)")
    which.add_argument(
        "--best", metavar="METRIC", help="the version with the best METRIC (goal: registry.goal)"
    )
    promote.add_argument("--force", action="store_true", help="promote even if the gate refuses (recorded)")
    _add_config_args(promote)

    rollback = sub.add_parser("rollback", help="move `production` back to `previous`")
    _add_config_args(rollback)

    serve = sub.add_parser("serve", help="serve a model over HTTP (LitServe): /predict, /health, /info")
    _add_model_args(
        serve,
        model_help="registry alias or version to serve (default production)",
        bundle_help="serve this bundle (or run directory) instead of the registry",
    )
    serve.add_argument("--host", default="127.0.0.1", choices=["127.0.0.1", "0.0.0.0", "::"])  # noqa: S104
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1, help="inference worker processes")
    serve.add_argument("--max-batch-size", type=int, default=1, help="requests batched into one prediction")
    serve.add_argument("--batch-timeout", type=float, default=0.0, help="seconds to wait to fill a batch")
    serve.add_argument("--timeout", type=float, default=30.0, help="request timeout in seconds")
    serve.add_argument("--max-customers", type=int, default=1000, help="customers per request")
    serve.add_argument("--max-body-mb", type=float, default=8.0, help="largest request body")
    serve.add_argument(
        "--api-key-env", default="SEGMENT_API_KEY", help="env var holding the /predict API key"
    )
    _add_config_args(serve)

    drift = sub.add_parser(
        "drift", help=f"PSI of a customer snapshot vs the model's training data (exit {EXIT_DRIFT} on alert)"
    )
    _add_model_args(drift)
    drift.add_argument("--data", required=True, help="the new customer snapshot (CSV or Parquet)")
    drift.add_argument("--out", type=Path, help="report directory (default: runs/drift-<timestamp>)")
    _add_config_args(drift)

    score = sub.add_parser(
        "score", help="score a whole customer table in chunks into Parquet (restartable, with rejects)"
    )
    _add_model_args(score)
    score.add_argument("--data", required=True, help="customer table to score (CSV or Parquet)")
    score.add_argument("--out", type=Path, required=True, help="output Parquet file")
    score.add_argument("--rejects", type=Path, help="rejected rows (default <out stem>.rejects.parquet)")
    score.add_argument("--chunk-rows", type=int, default=262_144, help="rows per chunk (default 262144)")
    score.add_argument("--force", action="store_true", help="rescore even if the output is up to date")
    fan_out = score.add_mutually_exclusive_group()
    fan_out.add_argument("--threads", type=int, help="scoring threads in this process (default: CPUs, max 4)")
    fan_out.add_argument(
        "--dask", metavar="ADDRESS", help="run the score-customers flow on this Dask scheduler"
    )
    fan_out.add_argument(
        "--dask-workers", type=int, help="run the score-customers flow on a local Dask cluster of N workers"
    )
    _add_config_args(score)

    runs = sub.add_parser("runs", help="table of local runs: differing config and metrics")
    runs.add_argument("roots", nargs="*", type=Path, help="directories to search (default: runs/ and sweeps)")
    runs.add_argument("--sort", default="silhouette", help="metric or config key to sort by")
    runs.add_argument("--ascending", action="store_true", help="smallest first (default: largest first)")

    config = sub.add_parser("config", help="configuration commands")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    show = config_sub.add_parser("show", help="print the resolved, validated configuration")
    _add_config_args(show)
    return parser


def read_names(path: Path) -> dict[int, str]:
    """A segment-names file: a YAML mapping of segment ID to name (``0: Revolvers``).

    Raises:
        ConfigError: unreadable file, not a mapping, or keys that are not integers.
    """
    try:
        tree = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"--names: cannot read {path}: {exc}") from exc
    if not isinstance(tree, dict) or not tree:
        raise ConfigError(f"--names: {path} must hold a mapping of segment ID to name, e.g. `0: Revolvers`")
    try:
        return {int(key): str(value) for key, value in tree.items()}
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"--names: {path}: segment IDs must be integers ({exc})") from exc


def resolve_config(args: argparse.Namespace) -> SegmentConfig:
    """Defaults (or --config), then CLI shortcuts (--data, --id-column, ...), then -S overrides."""
    overrides: list[str | tuple[str, object]] = []
    if getattr(args, "data", None):
        overrides.append(("data.path", str(args.data)))
    if getattr(args, "id_column", None):
        overrides.append(("data.id_column", args.id_column))
    if getattr(args, "names", None):
        overrides.append(("insights.names", read_names(args.names)))
    if getattr(args, "align_to", None):
        overrides.append(("insights.align_to", str(args.align_to)))
    overrides.extend(getattr(args, "params", []) or [])
    overrides.extend(args.overrides)
    return load_config(args.config, overrides)


def _cmd_train(args: argparse.Namespace) -> int:
    config = resolve_config(args)
    from segmentation.data.io import is_url, sample_data_path

    data = config.data.path or str(sample_data_path())
    if not is_url(data) and not Path(data).exists():
        raise ConfigError(f"data.path: file not found: {data}")
    out = args.out or Path("runs") / f"{config.model_name}-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}"
    # Prefect's temporary server would otherwise try to send telemetry; runs here need no network.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    with requires_extra("train", "segment train"):
        from workflows.train import run_training  # the orchestration layer (imports Prefect)

    api = os.environ.get("PREFECT_API_URL")
    logger.info("Prefect API: %s", api or "temporary local API (set PREFECT_API_URL to use a Prefect server)")

    try:
        result = run_training(data, out, config)
    except DataValidationError as exc:
        sys.stderr.write(exc.report.to_text() + "\n")
        sys.stderr.write(
            f"validation failed: report written to {Path(out).resolve() / 'validation_report.txt'}; "
            "no model was trained.\n"
        )
        return exc.exit_code
    metrics = result["metrics"]
    lines = [
        f"trained on {metrics['n_rows']} customers: {metrics['n_clusters']} segments, "
        f"silhouette {_fmt(metrics['silhouette'])} (preprocessed space, "
        f"sample {metrics['silhouette_sample_size']}), noise {metrics['noise_fraction']:.1%}",
        "stages: " + ", ".join(f"{stage}={state}" for stage, state in result["stages"].items()),
        f"results in {result['out_dir']}:",
        *(f"  {name:<13} {path}" for name, path in result["paths"].items()),
    ]
    sys.stdout.write("\n".join(lines) + "\n")
    return EXIT_OK


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _cmd_make_data(args: argparse.Namespace) -> int:
    from segmentation.data.io import write_table
    from segmentation.data.synthetic import make_customers

    if args.out.suffix.lower() not in {".csv", ".parquet"}:
        raise ConfigError(f"--out must end in .csv or .parquet, got {args.out.suffix!r}")
    try:
        table, truth = make_customers(
            args.rows,
            args.features,
            args.segments,
            seed=args.seed,
            separation=args.separation,
            missing_rate=args.missing_rate,
        )
    except ValueError as exc:
        raise ConfigError(f"make-data: {exc}") from exc
    write_table(table, args.out)
    truth_path = args.out.with_name(f"{args.out.stem}.truth{args.out.suffix}")
    write_table(truth, truth_path)
    sys.stdout.write(
        f"wrote {len(table)} rows x {table.shape[1]} columns to {args.out}; truth in {truth_path}\n"
    )
    return EXIT_OK


def _cmd_sweep(args: argparse.Namespace) -> int:
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from segmentation.data.io import is_url, sample_data_path

    with requires_extra("train", "segment sweep"):
        from workflows.sweep import run_sweep

    data = args.data or str(sample_data_path())
    if not is_url(data) and not Path(data).exists():
        raise ConfigError(f"--data: file not found: {data}")
    result = run_sweep(
        args.sweep_file,
        data=data,
        config_path=args.config,
        overrides=args.overrides,
        count=args.count,
        seed=args.seed,
        promote=args.promote,
        parallel=args.parallel,
        deployment=args.deployment,
    )
    lines = [f"sweep {result.sweep_id}: {len(result.trials)} trials in {result.directory}"]
    for trial in result.trials:
        value = "" if trial.metric is None else f"{trial.metric:.4f}"
        lines.append(f"  trial {trial.index:3d} {trial.state:<8} {value:>8}  {trial.params}")
        if trial.error:
            lines.append(f"      {trial.error}")
    if result.best is not None:
        lines.append(
            f"best: trial {result.best.index} ({result.best.metric:.4f}) {result.best.registry or ''}"
        )
    if result.promoted is not None:
        lines.append(f"promoted {result.promoted.name} {result.promoted.tag} to production")
    if result.refused:
        lines.append("promotion refused: " + "; ".join(result.refused))
    sys.stdout.write("\n".join(lines) + "\n")
    if result.interrupted:
        return 130
    return 4 if result.refused else EXIT_OK


def _registry(args: argparse.Namespace) -> tuple[SegmentConfig, LocalRegistry]:
    from segmentation.registry import LocalRegistry, registry_root

    config = resolve_config(args)
    return config, LocalRegistry(
        registry_root(config.registry.dir), config.registry.name or config.model_name
    )


def _cmd_registry(args: argparse.Namespace) -> int:
    from segmentation.registry import metric_value

    config, registry = _registry(args)
    if args.registry_command == "export":
        entry = registry.export(args.ref, args.dest)
        sys.stdout.write(f"exported {registry.name} {entry.tag} to {args.dest}\n")
        return EXIT_OK
    versions = registry.versions()
    if not versions:
        sys.stdout.write(f"model {registry.name!r} has no registered versions ({registry.path})\n")
        return EXIT_OK
    metric = config.registry.metric
    header = (
        f"{'version':<8} {'aliases':<30} {metric:>11} {'stability':>9} {'segments':>8} {'data':<12} created"
    )
    lines = [f"model {registry.name} ({registry.path})", header]
    for v in versions:
        value = metric_value(v.metrics, metric)
        stability = metric_value(v.metrics, "stability.ari_pairwise_mean")
        lines.append(
            f"{v.tag:<8} {','.join(v.aliases) or '-':<30} {_fmt(value):>11} {_fmt(stability):>9} "
            f"{v.metrics.get('n_clusters', '?')!s:>8} {v.data_hash[:12]:<12} {v.created_at}"
        )
    sys.stdout.write("\n".join(lines) + "\n")
    return EXIT_OK


def _cmd_promote(args: argparse.Namespace) -> int:
    config, registry = _registry(args)
    if args.best:
        target = registry.best(args.best, config.registry.goal)
    else:
        target = registry.get(args.version or "candidate")
    promoted = registry.promote(target.version, config.registry, force=args.force)
    sys.stdout.write(
        f"{registry.name} {promoted.tag} is production (aliases: {', '.join(promoted.aliases)})\n"
    )
    return EXIT_OK


def _cmd_experiment_report(args: argparse.Namespace) -> int:
    from segmentation.runs import experiment_report

    config, registry = _registry(args)
    home = Path(os.environ.get("SEGMENT_HOME", ".segment"))
    roots = args.roots or [Path("runs"), home / "sweeps"]
    production = None
    if "production" in registry.aliases():
        entry = registry.get("production")
        manifest = registry.load(entry.version).manifest
        production = {"tag": entry.tag, "metrics": entry.metrics, "config": manifest.get("config", {})}
    text = experiment_report(roots, production, config.registry)
    if args.out:
        from segmentation.data.io import write_text

        write_text(text, args.out)
    else:
        sys.stdout.write(text)
    return EXIT_OK


def _cmd_rollback(args: argparse.Namespace) -> int:
    _, registry = _registry(args)
    restored = registry.rollback()
    sys.stdout.write(f"{registry.name} {restored.tag} is production again\n")
    return EXIT_OK


def _cmd_serve(args: argparse.Namespace) -> int:
    import signal
    import tempfile

    with requires_extra("serve", "segment serve"):
        from segmentation.serving.app import ServeSettings, build_server

    config = resolve_config(args)
    source = model_source(args, config)
    settings = ServeSettings(
        host=args.host,
        port=args.port,
        workers=args.workers,
        max_batch_size=args.max_batch_size,
        batch_timeout=args.batch_timeout,
        timeout=args.timeout,
        max_customers=args.max_customers,
        max_body_mb=args.max_body_mb,
        api_key=os.environ.get(args.api_key_env) or None,
    )
    with tempfile.TemporaryDirectory(prefix="segment-serve-") as ready_dir:
        server = build_server(source, settings, ready_dir)

        main_pid = os.getpid()

        def stop(signum: int, _frame: object) -> None:
            if os.getpid() != main_pid:
                # A forked HTTP process inherits this handler. LitServe stops it with SIGTERM (Ctrl-C also
                # sends it SIGINT); uvicorn shuts down gracefully, then re-raises the signal it captured:
                # a quiet exit, not the traceback a KeyboardInterrupt in a multiprocessing child prints.
                raise SystemExit(0)
            # LitServe shuts its workers down on KeyboardInterrupt only; SIGTERM takes the same path.
            raise KeyboardInterrupt(f"signal {signum}")

        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, stop)
        logger.info("serving on http://%s:%d (%s)", settings.host, settings.port, settings.as_dict())
        server.run(
            host=settings.host,
            port=settings.port,
            num_api_servers=1,
            generate_client_file=False,
            log_level="warning",
        )
    return EXIT_OK


def _cmd_drift(args: argparse.Namespace) -> int:
    from segmentation import drift
    from segmentation.data.io import is_url

    config = resolve_config(args)
    if not is_url(args.data) and not Path(args.data).exists():
        raise ConfigError(f"--data: file not found: {args.data}")
    model, meta = model_source(args, config).load()
    out = args.out or Path("runs") / f"drift-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}"
    try:
        report = drift.compare(model, args.data, config.drift, model_meta=meta)
    except DataValidationError as exc:
        sys.stderr.write(exc.report.to_text() + "\n")
        return exc.exit_code
    paths = drift.write_report(report, out)
    sys.stdout.write(report.summary() + f"\nreport: {paths['md']} (also drift.json, .csv, .png, .html)\n")
    return EXIT_DRIFT if report.alert else EXIT_OK


def model_source(args: argparse.Namespace, config: SegmentConfig) -> ModelSource:
    """``--bundle PATH`` or ``--model ALIAS|VERSION`` (in the configured registry) as a model source."""
    from segmentation.registry import ModelSource, registry_root

    if getattr(args, "bundle", None):
        return ModelSource(bundle=str(Path(args.bundle).resolve()))
    return ModelSource(
        registry_root=str(registry_root(config.registry.dir)),
        name=config.registry.name or config.model_name,
        alias=args.model,
    )


def _cmd_score(args: argparse.Namespace) -> int:
    config = resolve_config(args)
    if not Path(args.data).is_file():
        raise ConfigError(f"--data: file not found: {args.data}")
    if args.chunk_rows < 1:
        raise ConfigError(f"--chunk-rows must be >= 1, got {args.chunk_rows}")
    for flag, path in (("--out", args.out), ("--rejects", args.rejects)):
        if path is not None and path.suffix.lower() != ".parquet":
            raise ConfigError(f"{flag} must end in .parquet, got {path.name!r}")
    source = model_source(args, config)
    try:
        if args.dask or args.dask_workers:
            os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
            with requires_extra("dask", "segment score --dask/--dask-workers"):
                from workflows.score import run_scoring

            summary = run_scoring(
                source,
                args.data,
                args.out,
                rejects=args.rejects,
                chunk_rows=args.chunk_rows,
                dask_address=args.dask,
                dask_workers=args.dask_workers,
                force=args.force,
            )
        else:
            from segmentation.scoring import model_version_label, score_table

            model, meta = source.load()
            summary = score_table(
                model,
                args.data,
                args.out,
                model_version=model_version_label(model, meta.get("version")),
                rejects=args.rejects,
                chunk_rows=args.chunk_rows,
                threads=args.threads,
                force=args.force,
            )
    except DataValidationError as exc:
        sys.stderr.write(exc.report.to_text() + "\n")
        return exc.exit_code
    state = "up to date, nothing rescored" if summary.skipped else f"{summary.seconds:.1f} s"
    lines = [
        f"scored {summary.scored} of {summary.rows} rows with {summary.model_version} ({state}); "
        f"rejected {summary.rejected}",
        f"  output   {summary.out}",
        f"  rejects  {summary.rejects} ({summary.reject_lines} failed checks)",
        *(f"    {name}: {count}" for name, count in list(summary.rejects_by_check.items())[:20]),
        f"  summary  {Path(summary.out).with_name(Path(summary.out).stem + '.summary.json')}",
    ]
    sys.stdout.write("\n".join(lines) + "\n")
    return EXIT_OK


def _cmd_runs(args: argparse.Namespace) -> int:
    from segmentation.runs import collect_runs, format_table, runs_table

    home = Path(os.environ.get("SEGMENT_HOME", ".segment"))
    roots = args.roots or [Path("runs"), home / "sweeps"]
    try:
        table = runs_table(collect_runs(roots), sort=args.sort, ascending=args.ascending)
    except KeyError as exc:
        raise ConfigError(f"--sort: {exc.args[0]}") from exc
    sys.stdout.write(format_table(table, base=Path.cwd()) + "\n")
    return EXIT_OK


def _cmd_report(args: argparse.Namespace) -> int:
    from segmentation.stages.rebuild import rebuild_insights

    names = read_names(args.names) if args.names else None
    paths = rebuild_insights(args.run_dir, data=args.data, names=names)
    lines = [f"report of {args.run_dir} regenerated:", *(f"  {k:<13} {v}" for k, v in paths.items())]
    sys.stdout.write("\n".join(lines) + "\n")
    return EXIT_OK


def _cmd_config(args: argparse.Namespace) -> int:
    config = resolve_config(args)
    sys.stdout.write(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
    return EXIT_OK


_COMMANDS = {
    "train": _cmd_train,
    "sweep": _cmd_sweep,
    "registry": _cmd_registry,
    "promote": _cmd_promote,
    "rollback": _cmd_rollback,
    "runs": _cmd_runs,
    "experiment-report": _cmd_experiment_report,
    "serve": _cmd_serve,
    "score": _cmd_score,
    "drift": _cmd_drift,
    "report": _cmd_report,
    "make-data": _cmd_make_data,
    "config": _cmd_config,
}


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class TerminalFormatter(logging.Formatter):
    """The terminal's log format, without the tracebacks of errors the CLI reports itself.

    A :class:`SegmentationError` (bad data, bad config, a broken bundle) ends the command with a message
    and an exit code; Prefect's engine also logs it with its traceback, which on a terminal buries the
    message an analyst needs. Such records are shown as one line here and their full text is kept in
    ``held``, for :func:`main` to write to a debug log. Other exceptions (bugs) keep their tracebacks.
    """

    def __init__(self) -> None:
        super().__init__(LOG_FORMAT)
        self.held: list[str] = []

    def format(self, record: logging.LogRecord) -> str:
        """One line for a reported error (its traceback held back); the standard format otherwise."""
        error = record.exc_info[1] if record.exc_info else None
        if not isinstance(error, SegmentationError):
            return super().format(record)
        self.held.append(logging.Formatter(LOG_FORMAT).format(record))
        # The record is shared with other handlers (Prefect's API log keeps the traceback): restore it.
        saved = record.exc_info, record.exc_text
        record.exc_info, record.exc_text = None, None
        try:
            return super().format(record)
        finally:
            record.exc_info, record.exc_text = saved


def _write_debug_log(held: list[str]) -> Path | None:
    """Write held tracebacks to ``$SEGMENT_HOME/logs/``; the file, or None if it cannot be written."""
    logs = Path(os.environ.get("SEGMENT_HOME", ".segment")).resolve() / "logs"
    path = logs / f"segment-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}-{os.getpid()}.log"
    try:
        logs.mkdir(parents=True, exist_ok=True)
        path.write_text("\n\n".join(held) + "\n")
    except OSError:
        return None
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 2 bad config or data, 1/3 other errors, 5 drift alert)."""
    parser = build_parser()
    try:
        args, unknown = parser.parse_known_args(argv)
        if unknown:
            # `wandb agent` with ${args} passes sweep parameters as --key.path=value: overrides for train.
            dotted = [u.removeprefix("--") for u in unknown if u.startswith("--") and "=" in u]
            if args.command != "train" or len(dotted) != len(unknown):
                parser.error(f"unrecognized arguments: {' '.join(unknown)}")
            args.params = [*args.params, *dotted]
    except SystemExit as exc:  # argparse exits on --help and on usage errors
        return int(exc.code or 0)
    terminal = logging.StreamHandler()
    formatter = logging.Formatter(LOG_FORMAT) if args.verbose else TerminalFormatter()
    terminal.setFormatter(formatter)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, handlers=[terminal])
    if not args.verbose:
        logging.getLogger("httpx").setLevel(logging.WARNING)  # otherwise one line per Prefect API call
    try:
        code = _COMMANDS[args.command](args)
    except SegmentationError as exc:
        sys.stderr.write(f"error: {exc}\n")
        code = exc.exit_code
    if isinstance(formatter, TerminalFormatter) and formatter.held:
        where = _write_debug_log(formatter.held)
        sys.stderr.write(f"traceback (for a bug report): {where}\n" if where else "")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
