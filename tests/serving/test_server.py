"""The real LitServe server over HTTP: answers, parity with batch scoring, every bad input, fuzzing."""

from __future__ import annotations

import concurrent.futures
import json
import math

import httpx
import numpy as np
import pandas as pd
import pytest
from numerics import CONFIDENCE_ATOL, assert_labels_equal_except_ties, assert_within

from segmentation.bundle import bundle_digest, load_bundle
from segmentation.data.io import sample_data_path

API_KEY = "test-key-123"  # the `server` fixture's key
HEADERS = {"X-API-Key": API_KEY}


def _customers(n: int, start: int = 0) -> list[dict]:
    frame = pd.read_csv(sample_data_path()).iloc[start : start + n]
    records = frame.to_dict("records")
    return [
        {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()} for r in records
    ]


def _post(server, body: object, **kwargs) -> httpx.Response:
    return httpx.post(f"{server.url}/predict", json=body, headers=HEADERS, timeout=30, **kwargs)


def test_one_and_many_customers_get_segment_name_and_confidence(server, cc_bundle) -> None:
    model = load_bundle(cc_bundle)
    response = _post(server, {"customers": _customers(3)})
    assert response.status_code == 200
    body = response.json()
    assert body["model"]["name"] == model.name
    assert [p["id"] for p in body["predictions"]] == ["C10001", "C10002", "C10003"]
    for prediction in body["predictions"]:
        assert prediction["segment_name"] == model.segment_names[prediction["segment"]]
        assert 0.0 <= prediction["confidence"] <= 1.0
        assert len(prediction["distances"]) == model.clusterer.n_clusters_


def test_endpoint_answers_like_batch_scoring_on_1000_customers(server, cc_bundle) -> None:
    """The served segment is the bundle's, and a customer alone gets what it gets in a batch.

    Another process and other product shapes (1 row vs 1,000) may sum float32 products in another order:
    segments agree except at ties, confidences to float32 rounding (tests/numerics.py).
    """
    customers = _customers(1000, start=3000)
    response = _post(server, {"customers": customers})
    assert response.status_code == 200
    predictions = response.json()["predictions"]
    served = np.array([p["segment"] for p in predictions])
    confidence = np.array([p["confidence"] for p in predictions])
    expected = load_bundle(cc_bundle).predict_details(pd.DataFrame(customers))
    expected_confidence = expected["confidence"].to_numpy()
    assert_labels_equal_except_ties(served, expected["segment"].to_numpy(), expected_confidence)
    assert_within(confidence, expected_confidence, CONFIDENCE_ATOL, "confidence")
    # One customer per request gives the same answers as one request for many.
    picked = list(range(0, 1000, 97))
    alone = [_post(server, {"customers": [customers[i]]}).json()["predictions"][0] for i in picked]
    assert_labels_equal_except_ties(
        np.array([p["segment"] for p in alone]), served[picked], confidence[picked], max_disagreements=1
    )
    assert_within([p["confidence"] for p in alone], confidence[picked], CONFIDENCE_ATOL, "confidence")


def test_health_and_info_are_open_and_describe_the_model(server, cc_bundle) -> None:
    assert httpx.get(f"{server.url}/health").status_code == 200
    info = httpx.get(f"{server.url}/info").json()
    model = load_bundle(cc_bundle)
    assert info["model"]["bundle_digest"] == bundle_digest(model.manifest)
    assert info["model"]["features"] == model.schema.feature_names
    assert info["model"]["id_column"] == "CUST_ID"
    assert info["model"]["code_version"] == model.manifest["code_version"]
    assert info["model"]["schema"]["kind"] == "cc_general"
    assert info["server"]["api_key"] is True  # the key itself is never shown


def test_the_server_images_healthcheck_command_passes(server) -> None:
    """The Dockerfile's HEALTHCHECK command, pointed at this server's port, exits 0 (and 1 when down)."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    text = (Path(__file__).parents[2] / "Dockerfile").read_text().replace("\\\n", " ")
    line = next(ln for ln in text.splitlines() if ln.strip().startswith("HEALTHCHECK"))
    command = json.loads(line[line.index("CMD") + 3 :].strip())
    command = [
        sys.executable if part == "python" else part.replace(":8000/", f":{server.port}/") for part in command
    ]
    assert subprocess.run(command, timeout=30, check=False).returncode == 0
    down = [part.replace(f":{server.port}/", ":1/") for part in command]
    assert subprocess.run(down, timeout=30, check=False, capture_output=True).returncode != 0


def test_api_key_is_required_for_predict(server) -> None:
    body = {"customers": _customers(1)}
    assert httpx.post(f"{server.url}/predict", json=body).status_code == 401
    assert httpx.post(f"{server.url}/predict", json=body, headers={"X-API-Key": "wrong"}).status_code == 401


def _detail_locations(response: httpx.Response) -> list[list]:
    return [error["loc"] for error in response.json()["detail"]]


@pytest.mark.parametrize(
    ("case", "field"),
    [
        ("missing_field", "BALANCE"),
        ("wrong_type", "PURCHASES"),
        ("negative_amount", "CREDIT_LIMIT"),
        ("frequency_above_one", "PURCHASES_FREQUENCY"),
        ("unknown_field", "LOYALTY_TIER"),
        ("nan", "BALANCE"),
        ("infinity", "PAYMENTS"),
    ],
)
def test_bad_customer_is_a_422_naming_index_and_field(server, case: str, field: str) -> None:
    customers = _customers(3)
    bad = customers[2]
    if case == "missing_field":
        del bad[field]
    elif case == "wrong_type":
        bad[field] = "lots"
    elif case == "negative_amount":
        bad[field] = -5.0
    elif case == "frequency_above_one":
        bad[field] = 1.7
    elif case == "unknown_field":
        bad[field] = "gold"
    if case in {"nan", "infinity"}:
        bad[field] = "__SPECIAL__"
        text = json.dumps({"customers": customers}).replace(
            '"__SPECIAL__"', "NaN" if case == "nan" else "Infinity"
        )
        response = httpx.post(
            f"{server.url}/predict", content=text, headers={**HEADERS, "content-type": "application/json"}
        )
    else:
        response = _post(server, {"customers": customers})
    assert response.status_code == 422
    assert ["body", "customers", 2, field] in _detail_locations(response)
    assert _post(server, {"customers": customers[:2]}).status_code == 200  # and it keeps serving


@pytest.mark.parametrize(
    ("content", "status"),
    [
        (b"{not json", 422),
        (b"", 422),
        (b'{"customers": []}', 422),
        (b'{"customers": {"a": 1}}', 422),
        (b'{"rows": []}', 422),
    ],
)
def test_malformed_and_empty_bodies_are_422(server, content: bytes, status: int) -> None:
    response = httpx.post(
        f"{server.url}/predict", content=content, headers={**HEADERS, "content-type": "application/json"}
    )
    assert response.status_code == status
    assert response.json()["detail"]


def test_too_many_customers_and_oversized_bodies_are_refused(server) -> None:
    one = _customers(1)[0]
    response = _post(server, {"customers": [one] * 1001})
    assert response.status_code == 422
    assert ["body", "customers"] in _detail_locations(response)
    huge = b'{"customers": [' + b" " * (9 * 2**20) + b"]}"
    assert httpx.post(f"{server.url}/predict", content=huge, headers=HEADERS).status_code == 413

    def chunks():
        yield b'{"customers": ['
        for _ in range(10):
            yield b" " * 2**20
        yield b"]}"

    assert httpx.post(f"{server.url}/predict", content=chunks(), headers=HEADERS).status_code == 413
    assert _post(server, {"customers": [one]}).status_code == 200


def test_bad_requests_never_fail_good_ones_in_the_same_batch(server) -> None:
    good, bad = {"customers": _customers(2)}, {"customers": [{**_customers(1)[0], "BALANCE": -1}]}
    bodies = [good if i % 2 else bad for i in range(64)]
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(lambda body: _post(server, body).status_code, bodies))
    assert statuses == [200 if i % 2 else 422 for i in range(64)]


def test_fuzzing_from_the_openapi_schema_finds_no_server_error(server) -> None:
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis import GenerationMode

    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    operation = schema["/predict"]["POST"]
    seen: list[int] = []
    # Valid bodies (every field, in range) and invalid ones (schemathesis breaks the schema on purpose).
    strategy = operation.as_strategy(GenerationMode.POSITIVE) | operation.as_strategy(GenerationMode.NEGATIVE)

    @settings(max_examples=300, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(case=strategy)
    def fuzz(case) -> None:
        response = case.call(base_url=server.url, headers=HEADERS, timeout=30)
        seen.append(response.status_code)
        assert response.status_code < 500, response.text

    fuzz()
    assert len(seen) >= 200
    assert 200 in seen
    assert any(400 <= s < 500 for s in seen)
