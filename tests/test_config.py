from __future__ import annotations

import pytest

from segmentation.config import AutoencoderConfig, HDBSCANConfig, KMeansConfig, PCAConfig, load_config
from segmentation.errors import ConfigError
from segmentation_workflows.cli import main


def test_defaults_are_valid_and_frozen() -> None:
    config = load_config()
    assert isinstance(config.featurize, PCAConfig)
    assert isinstance(config.cluster, KMeansConfig)
    with pytest.raises(Exception, match="frozen"):
        config.seed = 3  # type: ignore[misc]


def test_kind_switch_and_parameter_override_in_any_order() -> None:
    a = load_config(
        overrides=[
            "featurize.encoding_dim=3",
            "featurize=autoencoder",
            "cluster=hdbscan",
            "cluster.min_cluster_size=50",
        ]
    )
    assert isinstance(a.featurize, AutoencoderConfig)
    assert a.featurize.encoding_dim == 3
    assert isinstance(a.cluster, HDBSCANConfig)
    assert a.cluster.min_cluster_size == 50


def test_values_are_typed_from_yaml() -> None:
    config = load_config(
        overrides=[
            "featurize=autoencoder",
            "featurize.hidden_sizes=[16, 8]",
            "preprocess.clip_quantiles=null",
            "cluster.n_clusters=6",
        ]
    )
    assert config.featurize.hidden_sizes == (16, 8)
    assert config.preprocess.clip_quantiles is None
    assert config.cluster.n_clusters == 6


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("featurize.encodingdim=8", "featurize.encodingdim: unknown key"),
        ("nonsense=1", "nonsense: unknown key"),
        ("featurize=umap", "allowed: 'none', 'pca', 'autoencoder'"),
        ("preprocess.skew=box-cox", "preprocess.skew"),
        ("cluster.n_clusters=1", "cluster.n_clusters"),
        ("cluster.search.k_max=1", "cluster.search"),
        ("preprocess.clip_quantiles=[0.9, 0.1]", "clip_quantiles"),
        ("seed", "key=value"),
        # data.columns.NAME is as strict as every other section.
        ("data.columns.income.colour=red", "data.columns.income.colour: unknown key"),
        ("data.columns.income.kind=ordinl", "data.columns.income.kind: Input should be 'ignore'"),
        ("data.columns.income.order=[a, b]", "order is only for kind: ordinal"),
        ("data.columns.band.kind=ordinal", "kind: ordinal needs order"),
        ("data.columns.band.weight=-1", "data.columns.band.weight"),
    ],
)
def test_bad_overrides_name_the_key(override: str, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(overrides=[override])
    assert needle in str(info.value)


def test_bad_literal_lists_allowed_values() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(overrides=["preprocess.skew=box-cox"])
    assert "'none', 'log1p' or 'yeo-johnson'" in str(info.value)


def test_flat_keys_round_trip() -> None:
    config = load_config(overrides=["featurize=autoencoder"])
    flat = config.flat()
    assert flat["featurize.kind"] == "autoencoder"
    assert flat["cluster.search.k_max"] == 10
    again = load_config(overrides=[(k, v) for k, v in flat.items()])
    assert again == config


def test_cli_config_show(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "show", "-S", "featurize=pca", "-S", "featurize.n_components=3"]) == 0
    out = capsys.readouterr().out
    assert "kind: pca" in out
    assert "n_components: 3" in out


def test_cli_unknown_key_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "show", "-S", "cluster.k=4"]) == 2
    assert "cluster.k: unknown key" in capsys.readouterr().err


def test_cli_config_file(tmp_path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("seed: 3\nfeaturize: {kind: none}\n", encoding="utf-8")
    config = load_config(path)
    assert config.seed == 3
    assert config.featurize.kind == "none"
    path.write_text("seed: 3\nbogus: 1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="bogus: unknown key"):
        load_config(path)


def test_segment_names_from_overrides_and_files(tmp_path, capsys) -> None:
    config = load_config(overrides=["insights.names.0=Revolvers", "insights.names.-1=Unassigned"])
    assert config.insights.names == {0: "Revolvers", -1: "Unassigned"}
    for bad, message in [
        (["insights.names.1=x", "insights.names.2=x"], "must be unique"),
        (["insights.names.1='  '"], "empty"),
        (["insights.names.-3=x"], "IDs are 0, 1"),
        (["insights.embedding=umap"], "insights.embedding"),
    ]:
        with pytest.raises(ConfigError, match=message):
            load_config(overrides=bad)
    names = tmp_path / "names.yaml"
    names.write_text("0: Revolvers\n2: Transactors\n")
    assert main(["config", "show", "-S", "seed=1"]) == 0
    capsys.readouterr()
    names.write_text("- not a mapping\n")
    assert main(["train", "--names", str(names), "--out", str(tmp_path / "r")]) == 2
    assert "--names" in capsys.readouterr().err
