"""``segment``: the single command-line entry point (people, sweeps, Docker and CI).

``main(argv) -> int`` is what the console script and the tests call. The command line is parsed and the
environment read (:class:`~segmentation.settings.Settings`) once, here; the commands
(:mod:`segmentation_workflows.commands`) resolve the configuration and pass both down. This package is
the app layer: it imports the library, never the other way round.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from segmentation import __version__
from segmentation.errors import SegmentationError
from segmentation.settings import Settings
from segmentation_workflows.commands import COMMANDS, EXIT_DRIFT


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
    _training_commands(sub)
    _registry_commands(sub)
    _model_commands(sub)
    _inspection_commands(sub)
    return parser


def _training_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``train``, ``report``, ``make-data``, ``sweep``."""
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


def _registry_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``registry list|export``, ``experiment-report``, ``promote``, ``rollback``."""
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


def _model_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """What a model does with customers: ``serve``, ``drift``, ``score``."""
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


def _inspection_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``runs``, ``config show``."""
    runs = sub.add_parser("runs", help="table of local runs: differing config and metrics")
    runs.add_argument("roots", nargs="*", type=Path, help="directories to search (default: runs/ and sweeps)")
    runs.add_argument("--sort", default="silhouette", help="metric or config key to sort by")
    runs.add_argument("--ascending", action="store_true", help="smallest first (default: largest first)")

    config = sub.add_parser("config", help="configuration commands")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    show = config_sub.add_parser("show", help="print the resolved, validated configuration")
    _add_config_args(show)


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


def _write_debug_log(held: list[str], logs: Path) -> Path | None:
    """Write held tracebacks to ``logs`` (``$SEGMENT_HOME/logs``); the file, or None if it cannot be."""
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
    # The one read of the environment; commands, flows and the library receive it.
    args.settings = Settings.from_environ(os.environ)
    # Prefect's temporary server would otherwise try to send telemetry; runs here need no network.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    try:
        code = COMMANDS[args.command](args)
    except SegmentationError as exc:
        sys.stderr.write(f"error: {exc}\n")
        code = exc.exit_code
    if isinstance(formatter, TerminalFormatter) and formatter.held:
        where = _write_debug_log(formatter.held, args.settings.logs_dir)
        sys.stderr.write(f"traceback (for a bug report): {where}\n" if where else "")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
