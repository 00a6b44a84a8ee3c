"""The run report: warnings, content, a real headless-Chromium render, and `segment report DIR`."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pytest

from segmentation.bundle import bundle_digest, load_bundle
from segmentation.config import load_config
from segmentation.insights.report import Thresholds, report_warnings
from segmentation_workflows.cli import main
from segmentation_workflows.train import run_training


@pytest.fixture(scope="module")
def trained_run(
    prefect_api: None,
    synthetic_table: tuple[Path, pd.DataFrame],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Path]:
    """One flow run on the synthetic table (numeric, boolean, categorical and date columns)."""
    out = tmp_path_factory.mktemp("report-run") / "run"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SEGMENT_HOME", str(out.parent / "home"))
        config = load_config(overrides=["cluster.search.k_max=6", "evaluate.stability_resamples=3", "seed=3"])
        run_training(synthetic_table[0], out, config)
        yield out


def _segment(seg: int, share: float, name: str = "x") -> dict:
    return {"id": seg, "name": name, "share": share, "size": int(share * 1000)}


def test_warnings_for_tiny_dominant_segments_and_noise() -> None:
    limits = Thresholds(small_segment=0.02, large_segment=0.6, noise=0.1)
    assert report_warnings([_segment(0, 0.5), _segment(1, 0.5)], 0.0, limits) == []
    warnings = report_warnings([_segment(0, 0.7), _segment(1, 0.015), _segment(-1, 0.285)], 0.285, limits)
    assert len(warnings) == 3
    assert "segment 0" in warnings[0]
    assert "70.0%" in warnings[0]
    assert "segment 1" in warnings[1]
    assert "1.5%" in warnings[1]
    assert "28.5% of customers are noise" in warnings[2]
    # Noise is reported once, as noise, never as a tiny or a dominant segment.
    assert report_warnings([_segment(0, 0.95), _segment(-1, 0.05)], 0.05, limits)[0].startswith("segment 0")


def test_report_has_summary_one_section_per_segment_and_stability(trained_run: Path) -> None:
    profile = pd.read_csv(trained_run / "profile.csv")
    markdown = (trained_run / "report.md").read_text()
    assert "## Run summary" in markdown
    assert "## Stability" in markdown
    assert "## Warnings" in markdown
    for seg, name in zip(profile["segment"], profile["name"], strict=True):
        assert f"## Segment {seg}: {name}" in markdown
        assert f"![Profile of segment {seg}](plots/segment_{seg}.png)" in markdown
    for link in pd.Series(markdown.splitlines()).str.extract(r"\]\((plots/[^)]+)\)")[0].dropna():
        assert (trained_run / link).is_file(), link
    # Categorical levels are profiled as shares with an index vs the population.
    levels = [c for c in profile.columns if c.startswith("channel_00=") and c.endswith("__share")]
    assert len(levels) >= 2
    assert profile[levels].sum(axis=1).round(9).eq(1.0).all()


def test_html_report_renders_in_headless_chromium_with_every_image(
    trained_run: Path, render_in_chromium: Callable[[Path], dict]
) -> None:
    page = trained_run / "report.html"
    text = page.read_text()
    assert 'src="plots/' not in text
    assert "http://" not in text
    assert "https://" not in text
    seen = render_in_chromium(page)
    profile = pd.read_csv(trained_run / "profile.csv")
    n_plots = len(list((trained_run / "plots").glob("*.png")))
    assert seen["count"] == n_plots  # every plot is in the report
    assert seen["broken"] == []
    assert all(width > 300 and height > 100 for width, height in seen["sizes"])
    assert seen["title"].startswith("Customer segments")
    assert sum(h.startswith("Segment ") for h in seen["headings"]) == len(profile)


def test_chromium_check_catches_a_broken_image(
    trained_run: Path, render_in_chromium: Callable[[Path], dict], tmp_path: Path
) -> None:
    page = tmp_path / "broken.html"
    text = (trained_run / "report.html").read_text()
    page.write_text(text.replace("</body>", '<img src="data:image/png;base64,AAAA" alt="bogus"></body>'))
    assert render_in_chromium(page)["broken"] == ["bogus"]


def test_segment_report_regenerates_without_retraining_and_stores_names(
    trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "copy"
    shutil.copytree(trained_run, run)
    digest = bundle_digest(load_bundle(run / "bundle").manifest)
    shutil.rmtree(run / "plots")
    for name in ("report.html", "report.md", "profile.csv"):
        (run / name).unlink()
    assert main(["report", str(run)]) == 0
    assert (run / "report.html").is_file()
    assert (run / "profile.csv").is_file()
    assert (run / "plots" / "segments_2d.png").is_file()
    assert bundle_digest(load_bundle(run / "bundle").manifest) == digest  # nothing refit or rewritten
    # Exact: the profile is NumPy reductions of the same file's raw values over the saved labels, in the
    # same order (no BLAS, nothing refit).
    assert pd.read_csv(run / "profile.csv").equals(pd.read_csv(trained_run / "profile.csv"))

    names = tmp_path / "names.yaml"
    names.write_text("0: Loyal big spenders\n1: Window shoppers\n")
    assert main(["report", str(run), "--names", str(names)]) == 0
    model = load_bundle(run / "bundle")  # still verifies: rewritten atomically with new digests
    assert model.segment_names[0] == "Loyal big spenders"
    assert {s["id"]: s["name_source"] for s in model.segments["segments"]}[1] == "user"
    assert model.manifest["config"]["insights"]["names"] == {
        "0": "Loyal big spenders",
        "1": "Window shoppers",
    }
    assert "## Segment 0: Loyal big spenders" in (run / "report.md").read_text()
    assert pd.read_csv(run / "profile.csv")["name"].iloc[1] == "Window shoppers"

    capsys.readouterr()
    names.write_text("9: Nobody\n")
    assert main(["report", str(run), "--names", str(names)]) == 2
    assert "no segment 9" in capsys.readouterr().err


def test_segment_report_refuses_other_data(trained_run: Path, tmp_path: Path, capsys) -> None:
    other = tmp_path / "other.parquet"
    frame = pd.read_parquet(
        json.loads((trained_run / "bundle" / "manifest.json").read_text())["data"]["source"]
    )
    frame.iloc[:-1].to_parquet(other)
    assert main(["report", str(trained_run), "--data", str(other)]) == 2
    assert "not the training data" in capsys.readouterr().err
    assert main(["report", str(tmp_path)]) == 3  # no bundle there
