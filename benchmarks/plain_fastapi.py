"""The baseline for benchmarks/serving.py: one plain FastAPI app serving the same bundle in-process.

Same request model (generated from the bundle's schema), same prediction code, no LitServe: the HTTP
process runs the model itself. Run: ``BUNDLE=path uvicorn benchmarks.plain_fastapi:app --port 8001``.
"""

from __future__ import annotations

import os

from fastapi import FastAPI, Response

from segmentation.bundle import load_bundle
from segmentation.serving.app import ModelSource, SegmentAPI
from segmentation.serving.schema import request_models

_api = SegmentAPI(ModelSource(bundle=os.environ["BUNDLE"]), ready_dir=os.environ.get("READY_DIR", "/tmp"))
_api._load()  # the same loading and prediction code LitServe's worker runs)
_, PredictRequest = request_models(load_bundle(os.environ["BUNDLE"]).schema, 1000)
app = FastAPI(title="plain FastAPI baseline")


@app.post("/predict")
def predict(request: PredictRequest) -> Response:  # type: ignore[valid-type]
    """Decode, score and encode with LitServe's code, in FastAPI's thread pool."""
    return _api.encode_response(_api._predict_frame(_api.decode_request(request)))


@app.get("/health")
def health() -> dict[str, str]:
    """Always ready once imported (the model loads at import)."""
    return {"status": "ok"}
