"""Request and response models generated from a bundle's schema, so OpenAPI documents the real fields.

Every feature column of the training schema becomes a required field (``null`` allowed: missing values are
imputed exactly as in training) with the schema's type and range; unknown fields are rejected; numbers must
be finite. The generated classes pickle as plain dicts, because LitServe hands the validated request to its
inference workers through a multiprocessing queue and a class built at runtime cannot be pickled by name.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from segmentation.contract.schema import ColumnSpec, TableSchema


def _restore(payload: dict[str, Any]) -> dict[str, Any]:
    return payload


def columnar(customers: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Customers as column -> values (what pandas builds a frame from fastest)."""
    keys = list(customers[0]) if customers else []
    return {key: [customer[key] for customer in customers] for key in keys}


class WireModel(BaseModel):
    """Base of generated models: strict about unknown fields, pickled as a JSON-ready dict."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    def __repr__(self) -> str:
        # LitServe formats every request into a debug f-string even when debug logging is off; pydantic's
        # full repr of 1,000 customers takes 50 ms, so requests print as a short summary instead.
        customers = getattr(self, "customers", None)
        return (
            f"{type(self).__name__}(customers={len(customers)})"
            if customers is not None
            else type(self).__name__
        )

    __str__ = __repr__

    def __reduce__(self) -> tuple[Any, tuple[dict[str, Any]]]:
        # Requests cross to the worker as plain columns (lists of floats pickle fast, and pandas builds a
        # frame from columns several times faster than from 1,000 dicts).
        data = self.model_dump(by_alias=True)
        if isinstance(data.get("customers"), list):
            return _restore, ({"columns": columnar(data["customers"])},)
        return _restore, (data,)


def _field(spec: ColumnSpec) -> tuple[Any, Any]:
    description = f"{spec.kind} feature"
    if spec.kind == "numeric":
        bounds = {}
        if spec.min_value is not None:
            bounds["gt" if spec.min_exclusive else "ge"] = spec.min_value
            description += f", {'>' if spec.min_exclusive else '>='} {spec.min_value:g}"
        if spec.max_value is not None:
            bounds["le"] = spec.max_value
            description += f", <= {spec.max_value:g}"
        kind: Any = Annotated[float, Field(allow_inf_nan=False, **bounds)]  # type: ignore[call-overload]
    elif spec.kind == "boolean":
        kind = bool
    elif spec.kind == "datetime":
        kind = dt.datetime | dt.date
    elif spec.kind == "ordinal":
        # The levels, and integer levels as JSON numbers too (a score 1-5 arrives as 1, not "1").
        numbers = [int(level) for level in spec.categories if _INTEGER.fullmatch(level)]
        kind = Literal[(*spec.categories, *numbers)]
        description += f" (levels in order: {' < '.join(spec.categories)}; any other value is rejected)"
    else:
        text: Any = Annotated[str, Field(max_length=200)]
        codes = bool(spec.categories) and all(_INTEGER.fullmatch(level) for level in spec.categories)
        kind = text | int if codes else text  # integer codes (a store number) may come as numbers
        if spec.categories:
            description += f" (known levels: {', '.join(spec.categories[:20])}; others encode as unseen)"
    # Required but nullable: a customer must state every feature, null meaning "missing" (imputed).
    return (kind | None, Field(..., description=description))


_INTEGER = re.compile(r"-?\d+")


def _identifier(name: str) -> str:
    return re.sub(r"\W", "_", name)


def request_models(schema: TableSchema, max_customers: int) -> tuple[type[WireModel], type[WireModel]]:
    """``(Customer, PredictRequest)`` for a bundle's schema.

    Field names are the table's column names (aliases where a column name is not a Python identifier).
    """
    fields: dict[str, Any] = {}
    if schema.id_column:
        fields[_identifier(schema.id_column)] = (
            Annotated[
                str | int | None, Field(alias=schema.id_column, description="customer ID (echoed back)")
            ],
            None,
        )
    for spec in schema.columns:
        kind, info = _field(spec)
        name = _identifier(spec.name)
        if name != spec.name:
            info.alias = spec.name
        fields[name] = (kind, info)
    customer = create_model(
        "Customer",
        __base__=WireModel,
        __doc__="One customer's raw features, as in the training table.",
        **fields,
    )
    customer.model_config["populate_by_name"] = True
    request = create_model(
        "PredictRequest",
        __base__=WireModel,
        __doc__=f"Customers to assign to segments (1 to {max_customers} per request).",
        customers=(list[customer], Field(..., min_length=1, max_length=max_customers)),
    )
    return customer, request
