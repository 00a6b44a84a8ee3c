"""How a new table's columns are read: a kind and a reason for each, overrides, what the bundle keeps.

Tables of other schemas broke the product in ways these tests pin: a postal code used as a number, a
spreadsheet's header-less trailing column used as a feature (or, empty, failing the run), a store number
in the clustering space as a size.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from segmentation.config import ColumnOverride, DataConfig, load_config
from segmentation.contract.frame import validate_frame
from segmentation.contract.inference import infer_schema
from segmentation.contract.interpret import code_name, id_name
from segmentation.contract.notes import ColumnNote, columns_read_table, columns_read_text
from segmentation.contract.schema import ColumnSpec, TableSchema
from segmentation.data.synthetic import make_customers
from segmentation.errors import ConfigError, DataValidationError
from segmentation.serving.schema import request_models
from segmentation.stages.assemble import fit_model
from segmentation.stages.load import validate_source, validate_table

N = 3000


def _odd_columns(n: int = N, seed: int = 1) -> pd.DataFrame:
    """A planted table plus the columns real exports carry."""
    table, _ = make_customers(n, 12, 4, seed=seed)
    rng = np.random.default_rng(seed)
    extra: dict[str, Any] = {
        "Unnamed: 12": np.full(n, np.nan),  # a spreadsheet's empty trailing column
        "Unnamed: 13": rng.normal(size=n),  # ... and one that holds something
        "pin_code": rng.integers(100000, 999999, n),
        "branch": rng.integers(1, 9, n),
        "store_id": rng.integers(100, 400, n),
        "account_no": np.arange(n) + 5000,
        "serial": rng.permutation(n) + 1,
        "latitude": rng.uniform(8, 35, n),
        "longitude": rng.uniform(68, 97, n),
        "constant": 3,
        "amount_copy": table["amount_00"],
        "NumStorePurchases": rng.poisson(5, n),
        "zip": [f"{v:05d}" for v in rng.integers(0, 3000, n)],
        "gender": rng.choice(["F", "M"], n),
        "noise_text": np.array([f"L{i:03d}" for i in range(150)])[rng.integers(0, 150, n)],
        "is_vip": rng.integers(0, 2, n),
    }
    return table.assign(**extra)


EXPECTED: dict[str, tuple[str, bool]] = {
    "customer_id": ("id", False),
    "amount_00": ("numeric", True),
    "freq_00": ("ratio", True),
    "count_00": ("count", True),
    "flag_00": ("boolean", True),
    "channel_00": ("categorical", True),
    "last_active_00": ("date", True),
    "Unnamed: 12": ("empty", False),
    "Unnamed: 13": ("ignored", False),
    "pin_code": ("code", False),  # 6-digit codes: too many levels for categories
    "branch": ("code", True),  # 8 branches: categories, never a size
    "store_id": ("code", False),
    "account_no": ("id", False),
    "serial": ("id", False),  # 1..n shuffled: a sequence
    "latitude": ("coordinate", False),
    "longitude": ("coordinate", False),
    "constant": ("constant", False),
    "amount_copy": ("duplicate", False),
    "NumStorePurchases": ("count", True),  # "store" inside a name is not a code
    "zip": ("code", False),  # digits with leading zeros, kept as text
    "gender": ("categorical", True),
    "noise_text": ("text", False),
    "is_vip": ("boolean", True),  # 0/1 numbers
}


def _notes(schema: TableSchema) -> dict[str, ColumnNote]:
    return {note.name: note for note in schema.columns_read}


ID = DataConfig(id_column="customer_id")  # account_no is unique and named like an ID too: ambiguous


def test_every_column_gets_a_kind_a_reason_and_whether_it_is_used() -> None:
    frame = _odd_columns()
    schema = validate_table(frame, ID, source="t").schema
    notes = _notes(schema)
    assert list(notes) == list(frame.columns)  # every column, in table order
    for name, (kind, used) in EXPECTED.items():
        assert (notes[name].kind, notes[name].used) == (kind, used), (name, notes[name].reason)
        assert notes[name].reason
    features = {n.name for n in schema.columns_read if n.used}
    assert set(schema.feature_names) == features
    assert set(schema.ignored_columns) == set(frame.columns) - features - {"customer_id"}
    assert schema.column("branch").kind == "categorical"
    assert set(schema.column("branch").categories) == {str(b) for b in range(1, 9)}
    assert "amount_00" in notes["amount_copy"].reason
    assert "longitude" in notes["latitude"].reason


def test_streamed_inference_reads_every_column_as_in_memory(tmp_path: Path) -> None:
    frame = _odd_columns()
    frame["branch"] = frame["branch"].where(np.arange(N) % 97 != 0)  # floats with NaN: still the codes
    csv = tmp_path / "odd.csv"
    frame.to_csv(csv, index=False)
    in_memory = validate_table(pd.read_csv(csv), ID, source="t").schema
    streamed = validate_source(str(csv), ID, source="t", chunk_rows=700, staged=tmp_path / "s.parquet").schema
    assert streamed == in_memory
    assert _notes(streamed)["branch"].kind == "code"


def test_an_empty_column_is_ignored_on_an_inferred_schema_but_fails_a_declared_one(
    cc_general: pd.DataFrame,
) -> None:
    frame, _ = make_customers(500, 8, 3, seed=2)
    frame["Unnamed: 9"] = np.nan  # a spreadsheet's empty trailing column
    model, _ = fit_model(frame, load_config(overrides=["cluster.n_clusters=3"]))  # trains: no failed run
    assert "Unnamed: 9" not in model.schema.feature_names
    assert _notes(model.schema)["Unnamed: 9"].kind == "empty"
    with pytest.raises(DataValidationError) as info:
        validate_table(cc_general.head(300).assign(TENURE=np.nan), DataConfig(), source="cc")
    assert ("TENURE", "not_entirely_empty") in {(f.column, f.check) for f in info.value.report.failures}


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("zip", True),
        ("ZIPCode", True),
        ("postal_area", True),
        ("pin_code", True),
        ("StoreID", True),
        ("store", True),
        ("branch_no", True),
        ("region", True),
        ("NumStorePurchases", False),
        ("store_visits", False),
        ("spinning", False),
        ("shopping_amount", False),
        ("income", False),
    ],
)
def test_names_that_say_code(name: str, code: bool) -> None:
    assert code_name(name) is code


@pytest.mark.parametrize(
    ("name", "identifier"),
    [("account_no", True), ("CustomerID", True), ("member_key", True), ("paid", False), ("valid", False)],
)
def test_names_that_say_identifier(name: str, identifier: bool) -> None:
    assert id_name(name) is identifier


def test_overrides_set_kind_order_and_weight() -> None:
    frame = _odd_columns(1000)
    frame["band"] = np.random.default_rng(0).choice(["0-20k", "20-50k", "50k+"], len(frame))
    columns = {
        "band": ColumnOverride(kind="ordinal", order=("0-20k", "20-50k", "50k+")),
        "pin_code": ColumnOverride(kind="numeric"),
        "store_id": ColumnOverride(kind="code"),
        "amount_00": ColumnOverride(kind="ignore"),
        "count_00": ColumnOverride(weight=2.5),
        "is_vip": ColumnOverride(kind="boolean"),
        "channel_00": ColumnOverride(weight=0.0),
    }
    schema = infer_schema(frame, "customer_id", columns=columns)
    notes = _notes(schema)
    assert schema.column("band").kind == "ordinal"
    assert schema.column("band").categories == ("0-20k", "20-50k", "50k+")
    assert schema.column("pin_code").kind == "numeric"
    assert schema.column("store_id").kind == "categorical"
    assert len(schema.column("store_id").categories) == 20  # the 20 most frequent of 300 stores
    assert "amount_00" not in schema.feature_names
    assert notes["amount_00"].kind == "ignored"
    assert schema.column("count_00").weight == 2.5
    assert notes["count_00"].weight == 2.5
    assert schema.column("is_vip").kind == "boolean"
    assert schema.column("channel_00").weight == 0.0
    assert all("data.columns" in notes[n].reason for n in ("band", "pin_code", "store_id", "amount_00"))
    header, rows = columns_read_table(schema.columns_read)
    assert header == ["Column", "Read as", "Used", "Why"]
    assert next(r[:3] for r in rows if r[0] == "count_00") == ["count_00", "count", "yes, weight 2.5"]
    assert "ordinal" in columns_read_text(schema.columns_read)


def test_an_override_of_a_column_the_table_lacks_is_an_error_naming_it() -> None:
    frame, _ = make_customers(300, 8, 3, seed=2)
    config = load_config(overrides=["data.columns.incme.weight=2"]).data
    with pytest.raises(ConfigError, match="incme"):
        validate_table(frame, config, source="t")
    with pytest.raises(ConfigError, match="ID column"):
        validate_table(frame, DataConfig(columns={"customer_id": ColumnOverride(kind="numeric")}), source="t")


def test_a_declared_schema_takes_weights_and_ignore_only(cc_general: pd.DataFrame) -> None:
    frame = cc_general.head(400)
    config = DataConfig(
        columns={"TENURE": ColumnOverride(kind="ignore"), "BALANCE": ColumnOverride(weight=3.0)}
    )
    schema = validate_table(frame, config, source="cc").schema
    assert schema.kind == "cc_general"
    assert "TENURE" not in schema.feature_names
    assert schema.column("BALANCE").weight == 3.0
    notes = _notes(schema)
    assert notes["CUST_ID"].kind == "id"
    assert notes["PURCHASES_FREQUENCY"].kind == "ratio"
    # The column set aside is no longer part of the contract: in memory or streamed.
    _, report = validate_frame(frame.assign(TENURE=np.nan), schema, source="cc")
    assert report.ok
    with pytest.raises(ConfigError, match="declared"):
        validate_table(frame, DataConfig(columns={"TENURE": ColumnOverride(kind="code")}), source="cc")


def test_schemas_saved_before_column_notes_still_load() -> None:
    old = {
        "kind": "inferred",
        "id_column": "cid",
        "columns": [{"name": "a", "kind": "numeric", "integer": False, "nullable": True}],
        "ignored_columns": [],
        "reference_date": None,
    }
    schema = TableSchema.model_validate(old)
    assert schema.columns_read == ()
    assert schema.column("a").weight == 1.0
    assert columns_read_table(schema.columns_read)[1] == []


def test_the_request_model_accepts_only_an_ordinals_levels() -> None:
    schema = TableSchema(
        kind="inferred",
        id_column=None,
        columns=(
            ColumnSpec(name="band", kind="ordinal", categories=("low", "mid", "high")),
            ColumnSpec(name="score", kind="ordinal", categories=("1", "2", "3")),
            ColumnSpec(name="store", kind="categorical", categories=("12", "7")),
        ),
    )
    customer, _ = request_models(schema, 10)
    customer.model_validate({"band": "mid", "score": 2, "store": 12})
    customer.model_validate({"band": None, "score": "3", "store": "99"})
    with pytest.raises(ValueError, match="band"):
        customer.model_validate({"band": "top", "score": 2, "store": 12})
    with pytest.raises(ValueError, match="score"):
        customer.model_validate({"band": "low", "score": 4, "store": 12})
