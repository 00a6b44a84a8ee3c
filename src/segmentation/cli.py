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

import yaml

from segmentation import __version__
from segmentation.config import SegmentConfig, load_config
from segmentation.errors import ConfigError, DataValidationError, SegmentationError

logger = logging.getLogger("segmentation")

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2


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
    overrides.extend(args.overrides)
    return load_config(args.config, overrides)


def _cmd_train(args: argparse.Namespace) -> int:
    config = resolve_config(args)
    from segmentation.data.io import sample_data_path

    data = config.data.path or str(sample_data_path())
    if not Path(data).exists():
        raise ConfigError(f"data.path: file not found: {data}")
    out = args.out or Path("runs") / f"{config.model_name}-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}"
    # Prefect's temporary server would otherwise try to send telemetry; runs here need no network.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
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


def _cmd_report(args: argparse.Namespace) -> int:
    from segmentation.pipeline import rebuild_insights

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
    "report": _cmd_report,
    "make-data": _cmd_make_data,
    "config": _cmd_config,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 2 bad config or data, 1/3 other errors)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help and on usage errors
        return int(exc.code or 0)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:
        logging.getLogger("httpx").setLevel(logging.WARNING)  # otherwise one line per Prefect API call
    try:
        return _COMMANDS[args.command](args)
    except SegmentationError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return exc.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
