from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from numeric_features import numeric_ranking

from segmentation.bundle import load_bundle, save_bundle
from segmentation.config import load_config
from segmentation.contract.schema import ColumnSpec, TableSchema
from segmentation.data.synthetic import make_customers
from segmentation.errors import ConfigError
from segmentation.insights.profiles import (
    MIN_EFFECT,
    build_profile,
    effect_floor,
    level_p_values,
    resolve_names,
    segment_effects,
    segment_names,
    standardized_differences,
    top_features,
)
from segmentation.stages.assemble import fit_model
from segmentation.stages.load import validate_table
from segmentation.stages.outputs import segment_insights
from segmentation.stages.rebuild import rename_segments


def _schema(**kinds: str | tuple[str, ...]) -> TableSchema:
    """A schema from ``name=kind`` (a tuple of levels for a categorical column)."""
    columns = [
        ColumnSpec(name=name, kind="categorical", categories=kind)
        if isinstance(kind, tuple)
        else ColumnSpec(name=name, kind=kind)
        for name, kind in kinds.items()
    ]
    return TableSchema(kind="inferred", id_column=None, columns=tuple(columns))


def _encode(
    numeric: pd.DataFrame, categorical: pd.DataFrame, schema: TableSchema, onehot_scale: float = 1.0
) -> tuple[np.ndarray, list[str]]:
    """A preprocessed-like matrix: standardized numeric columns, then one-hot levels x ``onehot_scale``."""
    blocks = [((numeric - numeric.mean()) / numeric.std(ddof=0)).to_numpy()]
    names = list(numeric.columns)
    for spec in schema.columns:
        if spec.kind == "categorical":
            for level in spec.categories:
                blocks.append(onehot_scale * (categorical[spec.name] == level).to_numpy(float)[:, None])
                names.append(f"{spec.name}={level}")
    return np.hstack(blocks).astype(np.float32), names


@pytest.fixture
def planted() -> tuple[pd.DataFrame, np.ndarray, np.ndarray, list[str]]:
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2, -1], [500, 300, 150, 50])
    spend = np.where(labels == 0, 100.0, np.where(labels == 1, 1000.0, 400.0)) + rng.normal(
        0, 10, len(labels)
    )
    cash = np.where(labels == 2, 900.0, 50.0) + rng.normal(0, 10, len(labels))
    raw = pd.DataFrame({"spend": spend, "CASH_ADVANCE": cash})
    x = ((raw - raw.mean()) / raw.std(ddof=0)).to_numpy(np.float32)
    return raw, x, labels, list(raw.columns)


def test_profile_sizes_shares_index_and_effects(planted) -> None:
    raw, x, labels, names = planted
    effects = segment_effects(x, labels, names, _schema(spend="numeric", CASH_ADVANCE="numeric"))
    profile = build_profile(
        raw,
        labels,
        effects.ranking(),
        segment_names(effects.ranking()),
        descriptions=effects.descriptions(),
        effects=effects.effects,
    )
    assert profile["size"].sum() == len(labels)
    assert profile["share"].sum() == pytest.approx(1.0)
    assert list(profile["segment"]) == [-1, 0, 1, 2]
    row = profile.set_index("segment").loc[1]
    assert row["spend__mean"] == pytest.approx(raw["spend"][labels == 1].mean())
    assert row["spend__median"] == pytest.approx(raw["spend"][labels == 1].median())
    assert row["spend__index"] == pytest.approx(row["spend__mean"] / raw["spend"].mean() * 100)
    assert row["top_features"].startswith("spend +")
    assert row["spend__effect"] == pytest.approx(effects.effects.loc[1, "spend"])
    assert row["description"].startswith("30% of customers; much higher spend (+")


def test_numeric_effect_is_cohens_d_and_a_level_is_cohens_h_from_original_values() -> None:
    rng = np.random.default_rng(1)
    labels = np.repeat([0, 1, 2], [400, 350, 250])
    numeric = pd.DataFrame({"spend": rng.normal(labels * 2.0, 1.0), "visits": rng.normal(0, 3, len(labels))})
    channel = np.where(rng.random(len(labels)) < np.array([0.6, 0.2, 0.3])[labels], "web", "store")
    categorical = pd.DataFrame({"channel": pd.array(channel, dtype="string")})
    categorical.loc[rng.random(len(labels)) < 0.05, "channel"] = pd.NA  # missing: a row at no level
    schema = _schema(spend="numeric", visits="numeric", channel=("web", "store"))
    results = []
    for scale in (1.0, 0.5, 7.0):  # how one-hot columns are scaled must not matter
        x, names = _encode(numeric, categorical, schema, onehot_scale=scale)
        results.append(segment_effects(x, labels, names, schema, lambda c: categorical[c]))
    for other in results[1:]:
        pd.testing.assert_frame_equal(other.effects, results[0].effects)
    effects = results[0].effects
    spend = numeric["spend"].to_numpy()
    d = (spend[labels == 0].mean() - spend.mean()) / spend.std()
    assert effects.loc[0, "spend"] == pytest.approx(d, abs=1e-5)
    web = categorical["channel"].eq("web").fillna(False).to_numpy()
    h = 2 * math.asin(math.sqrt(web[labels == 0].mean())) - 2 * math.asin(math.sqrt(web.mean()))
    assert effects.loc[0, "channel=web"] == pytest.approx(h)
    assert list(effects.columns) == ["spend", "visits", "channel=web", "channel=store"]
    feature = next(f for f in results[0].ranked[0] if f.name == "channel=web")
    assert feature.segment_share == pytest.approx(web[labels == 0].mean())
    assert feature.difference_pp == pytest.approx(100 * (web[labels == 0].mean() - web.mean()))
    assert feature.lift == pytest.approx(web[labels == 0].mean() / web.mean())


def test_effect_floor_is_cohens_small_or_the_noise_level_whichever_is_larger() -> None:
    assert effect_floor(5000, 20000, 500) == MIN_EFFECT
    small = effect_floor(100, 20000, 500)
    assert small == pytest.approx(3.88 * math.sqrt(1 / 100 - 1 / 20000), rel=0.01)
    assert effect_floor(25, 20000, 500) > small > MIN_EFFECT
    assert effect_floor(100, 20000, 5000) > small  # more tests, a higher bar
    assert effect_floor(0, 100, 10) == math.inf


_CARD = (0.9, 0.1, 0.5, 0.15)  # share of card holders planted in segments 0-3


def _with_extra_columns(seed: int, rows: int = 3000) -> tuple[pd.DataFrame, np.ndarray]:
    """Synthetic customers plus noise and planted categorical and boolean columns."""
    frame, truth = make_customers(rows, 12, 4, seed=seed)
    labels = truth["segment"].to_numpy()
    rng = np.random.default_rng(seed + 100)
    for i in range(4):  # pure noise: independent of the segment
        frame[f"colour_{i}"] = rng.choice(["red", "green", "blue", "grey", "pink"], rows)
        frame[f"newsletter_{i}"] = rng.choice(["yes", "no"], rows)  # a 50/50 yes/no flag
        frame[f"opt_in_{i}"] = rng.random(rows) < 0.5  # a 50/50 boolean flag
    # Codes: a store number with 12 levels (read as categories: its name says code) and a postal code
    # (too many levels: ignored); a 150-level category, forced into the model by _FORCED.
    frame["store_code"] = rng.integers(100, 112, rows)
    frame["postal_code"] = rng.integers(10_000, 99_999, rows)
    frame["noise_category"] = np.array([f"L{i:03d}" for i in range(150)])[rng.integers(0, 150, rows)]
    # Planted: the card's probability depends strongly on the segment.
    frame["card"] = np.where(rng.random(rows) < np.array(_CARD)[labels], "yes", "no")
    return frame, labels


_FORCED = ["data.columns.noise_category.kind=categorical"]


def _noise_columns(frame: pd.DataFrame) -> set[str]:
    prefixes = ("colour_", "newsletter_", "opt_in_", "store_code", "postal_code", "noise_category")
    return {c for c in frame.columns if c.startswith(prefixes)}


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_noise_columns_never_distinguish_a_segment_and_the_planted_one_does(seed: int) -> None:
    frame, _ = _with_extra_columns(seed)
    config = load_config(
        overrides=["cluster.n_clusters=4", "evaluate.stability_resamples=0", f"seed={seed}", *_FORCED]
    )
    model, result = fit_model(frame, config)
    read = {note.name: (note.kind, note.used) for note in model.schema.columns_read}
    assert read["store_code"] == ("code", True)  # a group label, in the model as categories
    assert read["postal_code"] == ("code", False)
    assert read["noise_category"][1]
    features = model.segment_features
    assert features is not None
    noise = _noise_columns(frame)
    for seg, listed in features.items():
        assert not noise & {f.column for f in listed}, (seg, [f.summary for f in listed])
    # The card follows the planted segments: where a segment's customers mostly hold one, it says so.
    card = frame["card"].eq("yes").to_numpy()
    for seg, listed in features.items():
        share = card[result.labels == seg].mean()
        found = {f.level: f for f in listed if f.column == "card"}
        if abs(share - card.mean()) > 0.3:
            assert found, (seg, share)
            yes = found.get("yes") or found["no"]
            assert (yes.effect > 0) == ((share > card.mean()) == (yes.level == "yes"))
    assert any("card = " in text for text in model.segment_descriptions.values())


def test_noise_columns_stay_out_on_the_true_segments_too() -> None:
    """With the planted labels (no clustering): small segments included, no noise column passes."""
    frame, labels = _with_extra_columns(7, rows=2000)
    config = load_config(overrides=["cluster.n_clusters=4", *_FORCED])
    model, _ = fit_model(frame, config)  # for its schema and preprocessing
    x = model.preprocessor.transform(model.validate(frame))
    effects = segment_effects(
        x, labels, model.preprocessor.feature_names_out_, model.schema, lambda c: frame[c].astype("string")
    )
    noise = _noise_columns(frame)
    overall = frame["card"].eq("yes").mean()
    for seg in effects.ranked:
        listed = effects.distinguishing(seg)
        assert not noise & {f.column for f in listed}, [f.summary for f in listed if f.column in noise]
        planted = _CARD[seg]
        if abs(planted - overall) > 0.25:  # strongly planted: listed, in the right direction
            yes = next(f for f in listed if f.name == "card=yes")
            assert (yes.effect > 0) == (planted > overall)
            assert yes.label == ("with card" if planted > 0.5 else "without card")


def test_the_two_levels_of_a_binary_column_never_both_read_higher() -> None:
    frame, _ = _with_extra_columns(4, rows=2000)
    config = load_config(overrides=["cluster.n_clusters=5", "evaluate.stability_resamples=0"])
    model, _ = fit_model(frame, config)
    effects = model.effects
    assert effects is not None
    for column in ["card", *(f"newsletter_{i}" for i in range(4))]:
        yes, no = effects[f"{column}=yes"], effects[f"{column}=no"]
        assert ((yes > 0) != (no > 0)).all() or ((yes == 0) & (no == 0)).all()
        assert np.allclose(yes, -no)
    for seg, text in model.segment_descriptions.items():
        assert not ("more often card = yes" in text and "more often card = no" in text), (seg, text)


def test_bundle_keeps_features_and_renaming_keeps_derived_names(tmp_path: Path) -> None:
    frame, _ = _with_extra_columns(5, rows=2000)
    model, _ = fit_model(frame, load_config(overrides=["cluster.n_clusters=4"]))
    loaded = load_bundle(save_bundle(model, tmp_path / "bundle"))
    assert loaded.segment_features == model.segment_features
    assert loaded.segment_descriptions == model.segment_descriptions
    assert loaded.effects is not None
    assert loaded.effects.shape[0] == 4
    entry = loaded.segments["segments"][0]
    assert {"effects", "effect_floor", "features", "description"} <= set(entry)
    assert {"feature", "kind", "effect", "measure", "difference_pp", "lift", "text"} <= set(
        entry["features"][0]
    )
    before = loaded.segment_names
    renamed = rename_segments(loaded, {2: "Card holders"}, tmp_path / "bundle")
    assert renamed.segment_names == {**before, 2: "Card holders"}


def test_names_are_deterministic_readable_and_unique(planted) -> None:
    _, x, labels, feature_names = planted
    effects = segment_effects(x, labels, feature_names, _schema(spend="numeric", CASH_ADVANCE="numeric"))
    names = segment_names(effects.ranking())
    assert names == segment_names(effects.ranking())
    assert names[-1] == "noise"
    assert names[1].startswith("high spend")
    assert names[2].startswith("high CASH ADVANCE")  # the column's own case; underscores read as spaces
    assert names[0].startswith("low spend")
    assert len(set(names.values())) == len(names)


def test_colliding_names_get_more_features_then_ids() -> None:
    # Standardized differences read as numeric features (from Cohen's small effect up).
    diffs = pd.DataFrame({"a": [1.0, 1.0, 1.0], "b": [0.5, 0.5, 0.5], "c": [0.1, -0.2, 0.1]}, index=[0, 1, 2])
    names = segment_names(numeric_ranking(diffs))
    assert len(set(names.values())) == 3
    assert names[1] == "high a, high b, low c"
    assert names[0].endswith("(segment 0)")


def test_standardized_differences_are_segment_means(planted) -> None:
    _, x, labels, names = planted
    diffs = standardized_differences(x, labels, names)
    assert diffs.loc[2, "spend"] == pytest.approx(x[labels == 2, 0].mean(), abs=1e-6)


def test_top_features_order_by_magnitude_then_name() -> None:
    diffs = pd.Series({"b": -2.0, "a": 2.0, "c": 0.1})
    assert top_features(diffs, 2) == [("a", 2.0), ("b", -2.0)]


def test_user_names_beat_carried_names_beat_derived_ones() -> None:
    derived = {0: "high spend", 1: "low spend", 2: "high visits"}
    names, sources = resolve_names(derived, {1: "Bargain hunters"}, {1: "old", 2: "Regulars"})
    assert names == {0: "high spend", 1: "Bargain hunters", 2: "Regulars"}
    assert sources == {0: "auto", 1: "user", 2: "previous"}
    # A derived name equal to a given one is disambiguated, never duplicated.
    names, _ = resolve_names(derived, {1: "high spend"})
    assert names[0] == "high spend (segment 0)"
    with pytest.raises(ConfigError, match="no segment 7"):
        resolve_names(derived, {7: "Ghosts"})


def test_small_segments_need_a_larger_effect_than_cohens_small() -> None:
    """Many pure-noise columns and segments down to 30 rows: the floor grows with the noise, so none
    passes, where Cohen's 0.2 alone would let dozens through."""
    rng = np.random.default_rng(11)
    labels = rng.permutation(np.repeat([0, 1, 2, 3, 4], [1500, 300, 120, 50, 30]))
    numeric = pd.DataFrame(rng.normal(size=(len(labels), 40)), columns=[f"n{i}" for i in range(40)])
    levels = ("a1", "b1", "c1")
    categorical = pd.DataFrame({f"c{i}": rng.choice(levels, len(labels)) for i in range(40)})
    schema = _schema(
        **dict.fromkeys(numeric.columns, "numeric"), **dict.fromkeys(categorical.columns, levels)
    )
    x, names = _encode(numeric, categorical, schema)
    effects = segment_effects(x, labels, names, schema, lambda c: categorical[c])
    assert all(effects.distinguishing(seg) == [] for seg in effects.ranked)
    naive = int((effects.effects.abs() >= MIN_EFFECT).to_numpy().sum())
    assert naive > 20
    derived = segment_names(effects.ranking())
    assert derived[4] == "typical customers (segment 4)"  # every segment is typical: IDs tell them apart
    assert len(set(derived.values())) == len(derived)


def test_bundles_that_predate_effects_get_them_recomputed_and_keep_their_names(tmp_path: Path) -> None:
    frame, _ = _with_extra_columns(6, rows=1500)
    model, result = fit_model(frame, load_config(overrides=["cluster.n_clusters=3"]))
    table = validate_table(frame, load_config().data, source="t")
    x = model.preprocessor.transform(model.validate(frame))
    stored = segment_insights(model, table, result.labels, x)
    old = load_bundle(save_bundle(model, tmp_path / "bundle"))
    old.segments.pop("effect_names")
    for entry in old.segments["segments"]:
        for key in ("effects", "effect_floor", "features", "description"):
            entry.pop(key)
        entry["name"] = f"old name {entry['id']}"
    assert old.segment_features is None
    assert old.effects is None
    features, effects, descriptions = segment_insights(old, table, result.labels, x)
    assert features == stored[0]
    pd.testing.assert_frame_equal(effects, stored[1])
    assert descriptions == stored[2]
    renamed = rename_segments(old, {0: "Savers"}, tmp_path / "bundle")
    assert renamed.segment_names == {0: "Savers", 1: "old name 1", 2: "old name 2"}


def test_a_rare_level_missing_from_a_segment_by_chance_does_not_distinguish_it() -> None:
    """1 % of customers hold a level; a segment of 500 happens to hold none: h = -0.2, but chance."""
    counts = np.array([[0.0], [20.0]])
    sizes = np.array([500, 1500])
    p = level_p_values(counts, sizes, counts.sum(axis=0), 2000)
    assert p[0, 0] == pytest.approx(2 * 0.75**20, rel=0.05)  # hypergeometric: no holder in 500 of 2,000
    assert p[0, 0] > 0.001
    # The same share gap on a common level is far beyond chance.
    common = np.array([[100.0], [900.0]])
    assert level_p_values(common, sizes, common.sum(axis=0), 2000)[0, 0] < 1e-30
