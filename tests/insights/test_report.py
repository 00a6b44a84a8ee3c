"""The run report: the verdict, content, a real headless-Chromium render, and `segment report DIR`."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pytest

from segmentation.bundle import bundle_digest, load_bundle
from segmentation.config import load_config
from segmentation.insights.render import Verdict, render_html, render_markdown
from segmentation.insights.report import Thresholds, report_verdict
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


def test_the_verdict_and_warnings_come_from_the_metrics() -> None:
    warning = {"code": "low_stability", "severity": "critical", "message": "do not reproduce", "value": 0.5}
    metrics = {"verdict": "weak", "warnings": [warning, {**warning, "severity": "caution", "message": "k"}]}
    verdict = report_verdict(metrics, Thresholds())
    assert verdict.verdict == "weak"
    assert verdict.items == ["Critical: do not reproduce", "k"]
    assert report_verdict({"verdict": "strong", "warnings": []}, Thresholds()).items == []
    markdown = render_markdown([verdict])
    assert markdown.startswith("**Verdict: weak**: not reliable enough to act on")
    assert "- **Warning:** Critical: do not reproduce" in markdown
    assert 'class="weak"' in render_html([verdict], Path())
    assert "No warnings." in render_markdown([Verdict("strong", "fine", [])])


def test_a_run_from_before_verdicts_is_judged_from_its_metrics() -> None:
    metrics = {
        "silhouette": 0.5,
        "segment_shares": {"0": 0.7, "1": 0.015, "2": 0.285},
        "noise_fraction": 0.0,
        "stability": {"ari_pairwise_mean": 0.97, "jaccard_per_segment": {"0": 0.9, "1": 0.9, "2": 0.9}},
    }
    verdict = report_verdict(metrics, Thresholds(small_segment=0.02, large_segment=0.6, noise=0.1))
    assert verdict.verdict == "usable"
    assert "predates verdicts" in verdict.meaning
    assert [item.split(":")[0] for item in verdict.items] == ["segment 1 (1.5%)", "segment 0 (70.0%)"]


def test_report_has_summary_one_section_per_segment_and_stability(trained_run: Path) -> None:
    profile = pd.read_csv(trained_run / "profile.csv")
    markdown = (trained_run / "report.md").read_text()
    assert "## Run summary" in markdown
    assert "## Stability" in markdown
    assert markdown.index("## Verdict") < markdown.index("## Run summary")  # the report opens with it
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert f"**Verdict: {metrics['verdict']}**" in markdown
    for warning in metrics["warnings"]:
        assert warning["message"] in markdown
    # The k rule is stated, with every k tried.
    k_selection = metrics["k_selection"]
    assert f"k = {k_selection['chosen_k']}, chosen over 3..6 by the best silhouette among" in markdown
    assert f"| {k_selection['chosen_k']} | " in markdown
    assert markdown.count(" | chosen |") == 1
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
