"""Train on the bundled CC GENERAL data and three generated tables of other schemas; screenshot each report.

    .venv/bin/python docs/examples/run_examples.py [--work DIR]

The tables: ``mixed`` (amounts, counts, flags, a channel, a date, plus what spreadsheets export: a postal
code, an empty trailing column, a constant, a duplicate), ``bands`` (a survey: income, age and
satisfaction as text bands, declared ordinal in ``bands.yaml``), ``small`` (200 customers). Each run's
report is opened in headless Chromium and its first screen saved as ``docs/images/report-<name>.png``;
the runs stay under ``--work`` (default: a temporary directory).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from segmentation.config import default_tree
from segmentation.data.io import sample_data_path
from segmentation.data.synthetic import make_customers

HERE = Path(__file__).resolve().parent
IMAGES = HERE.parent / "images"

INCOME = ["<20k", "20-50k", "50-100k", "100k+"]
AGE = ["18-29", "30-44", "45-59", "60+"]
SATISFACTION = ["very low", "low", "medium", "high", "very high"]


def mixed_table(path: Path) -> None:
    """Planted segments in every column kind, plus the columns a spreadsheet export adds."""
    table, _ = make_customers(3000, 16, 5, seed=11)
    rng = np.random.default_rng(11)
    table["postal_code"] = rng.integers(10_000, 99_999, len(table))
    table["Unnamed: 19"] = np.nan
    table["country"] = "NL"
    table["amount_00_copy"] = table["amount_00"]
    table.to_csv(path, index=False)


def bands_table(path: Path) -> None:
    """A survey: three planted groups seen only through text bands and a region."""
    rng = np.random.default_rng(5)
    n = 1500
    group = rng.integers(0, 3, n)
    centre = np.array([[0.5, 0.6, 3.5], [2.4, 2.2, 1.0], [1.6, 0.8, 2.5]])[group]
    income = np.clip(np.rint(centre[:, 0] + rng.normal(0, 0.45, n)), 0, 3).astype(int)
    age = np.clip(np.rint(centre[:, 1] + rng.normal(0, 0.45, n)), 0, 3).astype(int)
    satisfaction = np.clip(np.rint(centre[:, 2] + rng.normal(0, 0.5, n)), 0, 4).astype(int)
    frame = pd.DataFrame(
        {
            "respondent": [f"R{i:05d}" for i in range(n)],
            "income_band": np.array(INCOME)[income],
            "age_band": np.array(AGE)[age],
            "satisfaction": np.array(SATISFACTION)[satisfaction],
            "region": rng.choice(["north", "south", "east", "west"], n),
            "visits_per_year": rng.poisson(np.array([4, 12, 7])[group]),
        }
    )
    frame.to_csv(path, index=False)
    # The packaged defaults plus the three bands declared ordinal (a --config file replaces the defaults).
    config = default_tree()
    config.setdefault("data", {})["columns"] = {
        "income_band": {"kind": "ordinal", "order": INCOME},
        "age_band": {"kind": "ordinal", "order": AGE},
        "satisfaction": {"kind": "ordinal", "order": SATISFACTION},
    }
    path.with_suffix(".yaml").write_text(yaml.safe_dump(config, sort_keys=False))


def small_table(path: Path) -> None:
    """200 customers: where k may run to the edge of its range and stability decides."""
    table, _ = make_customers(200, 8, 3, seed=4)
    table.to_csv(path, index=False)


def screenshot(report: Path, target: Path) -> None:
    """The report's first screen (1280 x 1100) in headless Chromium."""
    chromium = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("no Chromium: apt-get install chromium, or set $CHROMIUM")
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-background-networking",
                "--no-first-run",
                f"--user-data-dir={profile}",
                "--hide-scrollbars",
                "--window-size=1280,1100",
                f"--screenshot={target}",
                report.as_uri(),
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )


def main() -> int:
    """Build the tables, train on each, screenshot each report; the exit code of the first failure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, help="where tables and runs go (default: a temporary directory)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="segment-examples-"))
    work.mkdir(parents=True, exist_ok=True)
    tables = {"cc-general": sample_data_path()}
    for name, make in (("mixed", mixed_table), ("bands", bands_table), ("small", small_table)):
        tables[name] = work / f"{name}.csv"
        make(tables[name])
    segment = Path(sys.executable).parent / "segment"
    env = {**os.environ, "SEGMENT_HOME": str(work / "home"), "WANDB_MODE": "disabled"}
    IMAGES.mkdir(exist_ok=True)
    for name, data in tables.items():
        out = work / "runs" / name
        command = [str(segment), "train", "--data", str(data), "--out", str(out), "-S", f"model_name={name}"]
        config = Path(data).with_suffix(".yaml")
        if config.is_file():
            command += ["--config", str(config)]
        result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        sys.stdout.write(f"== {name}\n{result.stdout[-1500:]}")
        if result.returncode != 0:
            sys.stderr.write(result.stderr[-3000:])
            return result.returncode
        screenshot(out / "report.html", IMAGES / f"report-{name}.png")
        metrics = json.loads((out / "metrics.json").read_text())
        image = IMAGES / f"report-{name}.png"
        sys.stdout.write(f"verdict {metrics['verdict']}, k {metrics['n_clusters']}: {image}\n")
    sys.stdout.write(f"runs in {work / 'runs'}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
