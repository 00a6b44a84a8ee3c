"""The ``segment`` commands: each takes the parsed arguments (with the settings) and returns an exit code.

:mod:`segmentation_workflows.cli` parses the command line and reads the environment once
(:class:`~segmentation.settings.Settings`, ``args.settings``); a command resolves the configuration and
calls the library, or runs a flow of this package (imported only by the commands that need Prefect).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from segmentation.config import SegmentConfig, load_config
from segmentation.errors import ConfigError, DataValidationError, requires_extra
from segmentation.settings import Settings

if TYPE_CHECKING:
    from segmentation.registry import LocalRegistry, ModelSource

logger = logging.getLogger("segmentation")

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2
EXIT_DRIFT = 5  # `segment drift`: a feature or the segment shares reached an alert threshold (report written)


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
    with requires_extra("train", "segment train"):
        from segmentation_workflows.train import run_training  # the orchestration layer (imports Prefect)

    settings: Settings = args.settings
    logger.info(
        "Prefect API: %s",
        settings.prefect_api_url or "temporary local API (set PREFECT_API_URL to use a Prefect server)",
    )
    try:
        result = run_training(data, out, config, settings=settings)
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
        *_verdict_lines(metrics),
    ]
    sys.stdout.write("\n".join(lines) + "\n")
    return EXIT_OK


def _verdict_lines(metrics: dict[str, Any]) -> list[str]:
    """The run's verdict and its warnings (from ``metrics.json``): the last lines ``segment train`` prints."""
    from segmentation.verdict import CRITICAL, MEANING

    verdict = str(metrics.get("verdict", "n/a"))
    warnings = metrics.get("warnings") or []
    return [
        f"verdict: {verdict}: {MEANING.get(verdict, 'not judged')}",
        *(
            f"  {'CRITICAL' if w.get('severity') == CRITICAL else 'warning'} [{w['code']}] {w['message']}"
            for w in warnings
        ),
    ]


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
    from segmentation.data.io import is_url, sample_data_path

    with requires_extra("train", "segment sweep"):
        from segmentation_workflows.sweep import run_sweep

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
        settings=args.settings,
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
    from segmentation.registry import LocalRegistry

    config = resolve_config(args)
    return config, LocalRegistry(
        args.settings.registry_dir(config.registry.dir), config.registry.name or config.model_name
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
    roots = args.roots or [Path("runs"), args.settings.sweeps_dir]
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
    from segmentation.registry import ModelSource

    if getattr(args, "bundle", None):
        return ModelSource(bundle=str(Path(args.bundle).resolve()))
    return ModelSource(
        registry_root=str(args.settings.registry_dir(config.registry.dir)),
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
            with requires_extra("dask", "segment score --dask/--dask-workers"):
                from segmentation_workflows.score import run_scoring

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

    roots = args.roots or [Path("runs"), args.settings.sweeps_dir]
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


COMMANDS = {
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
