"""The LitServe prediction endpoint: ``POST /predict``, ``GET /health``, ``GET /info``.

Processes: LitServe runs the HTTP layer (FastAPI/uvicorn) in one process and the model in ``workers``
inference processes. Requests are validated in the HTTP process against models generated from the bundle's
schema (:mod:`segmentation.serving.schema`), so bad input is a 422 naming the customer's index and the field
before it ever reaches a worker, and a batch in a worker only ever holds valid customers: one client's bad
input cannot fail another client's request.

Model source: a bundle directory, or a registry alias (``production``). With an alias, every worker checks
the registry's ``aliases.json`` at most once a second while serving; when the alias has moved, the new
version is loaded and verified first and then swapped in, so requests are never dropped during a promotion
(the trigger is the promotion itself: no signal or admin call is needed). Each response names the version
that answered it.

Readiness: a worker's ``setup`` loads the model and runs a warm-up prediction, then writes a marker file;
``health()`` runs in the HTTP process (where ``setup`` never ran) and reports ready only when a worker has
written its marker, on top of LitServe's own check that every worker finished ``setup``.
"""

from __future__ import annotations

import inspect
import json
import logging
import math
import os
import signal
import threading
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import litserve as ls
import numpy as np
import pandas as pd
from fastapi import HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from segmentation.bundle import SegmentationModel, bundle_digest, load_bundle
from segmentation.contract.schema import ColumnSpec
from segmentation.contract.validator import ChunkValidator
from segmentation.registry import ModelSource
from segmentation.serving.schema import columnar, request_models

logger = logging.getLogger("segmentation.serving")

_RELOAD_CHECK_S = 1.0


def describe(model: SegmentationModel, meta: dict[str, Any]) -> dict[str, Any]:
    """What ``/info`` reports about a loaded (or resolvable) model."""
    schema = model.schema
    return {
        **meta,
        "bundle_digest": bundle_digest(model.manifest),
        "code_version": model.manifest.get("code_version"),
        "trained_at": model.manifest.get("created_at"),
        "data_hash": model.manifest.get("data", {}).get("content_hash"),
        "clusterer": model.clusterer.kind,
        "featurizer": model.featurizer.kind,
        "segments": [_segment_info(s) for s in model.segments["segments"]],
        "verdict": model.manifest.get("metrics", {}).get("verdict"),
        "id_column": schema.id_column,
        "features": schema.feature_names,
        "schema": schema.model_dump(mode="json"),
    }


def _segment_info(segment: dict[str, Any]) -> dict[str, Any]:
    """A segment as ``/info`` shows it: ID, name, share, description and rule (when the bundle has them)."""
    info = {"id": int(segment["id"]), "name": segment["name"], "share": segment["share"]}
    for key in ("description", "rule", "rule_precision", "rule_recall"):
        if segment.get(key) is not None:
            info[key] = segment[key]
    return info


def _warmup_frame(model: SegmentationModel) -> pd.DataFrame:
    """One valid customer, missing wherever the contract allows: exercises every step of a prediction."""
    row: dict[str, Any] = {
        spec.name: None if spec.nullable else _valid_value(spec) for spec in model.schema.columns
    }
    if model.schema.id_column:
        row[model.schema.id_column] = "warm-up"
    return pd.DataFrame([row])


def _valid_value(spec: ColumnSpec) -> Any:
    """A value that satisfies a non-nullable column's checks."""
    if spec.kind == "numeric":
        if spec.min_value is not None:
            return spec.min_value + (1.0 if spec.min_exclusive else 0.0)
        return min(0.0, spec.max_value or 0.0)
    if spec.kind == "boolean":
        return False
    if spec.kind == "datetime":
        return "2000-01-01"
    return spec.categories[0] if spec.categories else ""


class SegmentAPI(ls.LitAPI):
    """Segment assignment for one or many customers per request."""

    def __init__(
        self,
        source: ModelSource,
        *,
        ready_dir: str,
        max_batch_size: int = 1,
        batch_timeout: float = 0.0,
    ) -> None:
        super().__init__(max_batch_size=max_batch_size, batch_timeout=batch_timeout)
        self.source = source
        self.ready_dir = ready_dir

    # ------------------------------------------------------------------------- worker process
    def setup(self, device: str) -> None:  # noqa: ARG002 (CPU only)
        """Load the model, predict once, then mark this worker ready."""
        if threading.current_thread() is threading.main_thread():
            # Ctrl-C reaches every process of the terminal's group. The server process decides the
            # shutdown and ends its workers with SIGTERM; a worker of its own would die mid-request and
            # print a KeyboardInterrupt traceback.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        self._load()
        self._next_check = time.monotonic() + _RELOAD_CHECK_S
        self._predict_frame(_warmup_frame(self.model))  # raises, so the worker never reports ready
        Path(self.ready_dir, f"worker-{os.getpid()}").write_text(json.dumps(self.meta), encoding="utf-8")

    def _load(self) -> None:
        path, meta = self.source.resolve()
        self.model = load_bundle(path)  # verifies every file against the manifest
        self.meta = {k: meta[k] for k in ("name", "version", "alias")}
        aliases = self.source.aliases_file()
        self._aliases_mtime = aliases.stat().st_mtime_ns if aliases and aliases.exists() else None
        logger.info("worker %d serves %s %s", os.getpid(), meta["name"], meta["version"] or meta["source"])

    def _maybe_reload(self) -> None:
        """Pick up a moved alias (checked at most once a second; the old model serves until then)."""
        now = time.monotonic()
        if now < self._next_check:
            return
        self._next_check = now + _RELOAD_CHECK_S
        aliases = self.source.aliases_file()
        if aliases is None or not aliases.exists() or aliases.stat().st_mtime_ns == self._aliases_mtime:
            return
        _, meta = self.source.resolve()
        if meta["version"] == self.meta["version"]:
            self._aliases_mtime = aliases.stat().st_mtime_ns
            return
        previous = self.meta["version"]
        self._load()  # the new model is complete and verified before it replaces the old one
        logger.info(
            "worker %d: %s moved from %s to %s",
            os.getpid(),
            self.meta["alias"],
            previous,
            self.meta["version"],
        )

    def decode_request(self, request: Any) -> pd.DataFrame:
        """The validated customers as a frame (LitServe replaces ``request``'s annotation, see build)."""
        if isinstance(request, dict) and "columns" in request:  # how WireModel crosses processes
            return pd.DataFrame(request["columns"])
        customers = (
            request["customers"]
            if isinstance(request, dict)
            else request.model_dump(by_alias=True)["customers"]
        )
        return pd.DataFrame(columnar(customers))

    def batch(self, inputs: list[pd.DataFrame]) -> list[pd.DataFrame]:
        """Keep requests apart; :meth:`predict` scores them together."""
        return inputs

    def unbatch(self, output: list[Any]) -> list[Any]:
        """One output per request."""
        return output

    def _predict_frame(self, frame: pd.DataFrame) -> dict[str, Any]:
        model = self.model
        # Fields, types, ranges and finiteness were validated by the request model, generated from the
        # same contract. The contract's own row checks (the one validator, vectorised: no pandera pass)
        # still stand between any input and the model.
        validator = ChunkValidator(model.schema, source="request", columns=list(frame.columns))
        if not validator.check(frame).all():
            raise HTTPException(status_code=422, detail=validator.report().to_dict()["failures"])
        x = model.preprocessor.transform(frame)
        labels, confidence, extra = model.clusterer.predict_details(model.featurizer.transform(x))
        names = model.segment_names
        id_column = model.schema.id_column
        ids = frame[id_column].tolist() if id_column and id_column in frame.columns else [None] * len(frame)
        details = {key: np.round(np.asarray(value, dtype=np.float64), 6) for key, value in extra.items()}
        predictions = []
        for i, segment in enumerate(labels.tolist()):
            item: dict[str, Any] = {
                "id": ids[i] if ids[i] is not None else i,
                "segment": int(segment),
                "segment_name": names.get(int(segment), "noise"),
                "confidence": round(float(confidence[i]), 6),
            }
            for key, values in details.items():
                item[key] = values[i].tolist()
            predictions.append(item)
        return {"model": dict(self.meta), "predictions": predictions}

    def predict(self, x: pd.DataFrame | list[pd.DataFrame]) -> Any:
        """Assign segments; with batching, all requests of the batch in one pass."""
        self._maybe_reload()
        if isinstance(x, pd.DataFrame):
            return self._predict_frame(x)
        sizes = [len(frame) for frame in x]
        combined = self._predict_frame(pd.concat(x, ignore_index=True))
        out, start = [], 0
        for size in sizes:
            out.append(
                {"model": combined["model"], "predictions": combined["predictions"][start : start + size]}
            )
            start += size
        return out

    def encode_response(self, output: dict[str, Any]) -> Response:
        """The JSON body, encoded here in the worker: the HTTP process passes the bytes through untouched."""
        return Response(content=json.dumps(output, separators=(",", ":")), media_type="application/json")

    # --------------------------------------------------------------------------- HTTP process
    def health(self) -> bool:
        """Ready when a worker has loaded the model and its warm-up prediction succeeded."""
        return any(Path(self.ready_dir).glob("worker-*"))


async def _respond(send: Any, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class Gatekeeper:
    """Pure ASGI middleware in front of the app: API key and body size on /predict, access log for all.

    * API key: when configured, ``/predict`` needs ``X-API-Key`` (401 otherwise); health and info stay open
      for load balancers.
    * Body size: more than ``max_body`` bytes is a 413, whether announced by Content-Length or streamed
      in chunks (read up to the limit, then replayed to the app).
    * One JSON access-log line per request: method, path, status, milliseconds, client.

    Pure ASGI (not ``BaseHTTPMiddleware``) so it adds microseconds, not a task hop, per request.
    """

    def __init__(
        self,
        app: Any,
        api_key: str | None = None,
        max_body: int = 8 * 2**20,
        protected: tuple[str, ...] = ("/predict",),
    ) -> None:
        self.app = app
        self.api_key = api_key
        self.max_body = max_body
        self.protected = protected

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Check, forward and log one request."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = {"code": 500}

        async def send_wrapper(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            if scope["path"] in self.protected:
                headers = dict(scope.get("headers") or [])
                if self.api_key and headers.get(b"x-api-key", b"").decode("latin-1") != self.api_key:
                    await _respond(send_wrapper, 401, "missing or wrong X-API-Key header")
                    return
                declared = headers.get(b"content-length")
                if declared is not None and declared.isdigit() and int(declared) > self.max_body:
                    await _respond(send_wrapper, 413, f"request body over {self.max_body} bytes")
                    return
                chunks, size, more = [], 0, True
                while more:
                    message = await receive()
                    if message["type"] != "http.request":
                        break
                    chunks.append(message.get("body", b""))
                    size += len(chunks[-1])
                    more = message.get("more_body", False)
                    if size > self.max_body:
                        await _respond(send_wrapper, 413, f"request body over {self.max_body} bytes")
                        return
                body, replayed = b"".join(chunks), False

                async def replay() -> dict[str, Any]:
                    nonlocal replayed
                    if replayed:
                        return await receive()  # later messages (disconnect) come from the client
                    replayed = True
                    return {"type": "http.request", "body": body, "more_body": False}

                await self.app(scope, replay, send_wrapper)
                return
            await self.app(scope, receive, send_wrapper)
        finally:
            logger.info(
                json.dumps(
                    {
                        "event": "access",
                        "method": scope.get("method"),
                        "path": scope.get("path"),
                        "status": status["code"],
                        "ms": round((time.perf_counter() - start) * 1000, 2),
                        "client": (scope.get("client") or ("", 0))[0],
                    }
                )
            )


@dataclass(frozen=True)
class ServeSettings:
    """How the server runs."""

    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    # No batching by default: LitServe's batch collector polls every millisecond while idle, which on two
    # cores costs single-request latency (benchmarks/serving.py, docs/performance.md); turn it on for
    # throughput.
    max_batch_size: int = 1
    batch_timeout: float = 0.0
    timeout: float = 30.0
    max_customers: int = 1000
    max_body_mb: float = 8.0
    api_key: str | None = None
    fast_queue: bool = True

    def as_dict(self) -> dict[str, Any]:
        """For logs and /info (without the key)."""
        data = asdict(self)
        data["api_key"] = bool(self.api_key)
        return data


def build_server(source: ModelSource, settings: ServeSettings, ready_dir: str) -> ls.LitServer:
    """The LitServer with typed /predict, our /health semantics and a live /info.

    Raises:
        BundleError / RegistryError: the model cannot be resolved or fails verification (before any
            worker starts).
    """
    path, _meta = source.resolve()
    model = load_bundle(path)  # fail fast in the parent, and build the request model from its schema
    _, request_model = request_models(model.schema, settings.max_customers)

    # LitServe takes the request body type from decode_request's annotation (untyped means a raw Request
    # and a 500 on bad JSON): give it the generated model. Only the HTTP process reads this signature.
    signature = inspect.signature(SegmentAPI.decode_request)
    parameters = [
        p if p.name != "request" else p.replace(annotation=request_model)
        for p in signature.parameters.values()
    ]
    SegmentAPI.decode_request.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]

    with warnings.catch_warnings():
        # batch/unbatch serve --max-batch-size > 1; with batching off LitServe warns that they are unused.
        warnings.filterwarnings("ignore", message="The LitServer has both batch and unbatch")
        api = SegmentAPI(
            source,
            ready_dir=ready_dir,
            max_batch_size=settings.max_batch_size,
            batch_timeout=settings.batch_timeout,
        )
    server = ls.LitServer(
        api,
        accelerator="cpu",
        workers_per_device=settings.workers,
        timeout=settings.timeout,
        info_path="/litserve-info",
        # ZeroMQ between the HTTP process and the workers instead of multiprocessing manager queues:
        # measured in benchmarks/serving.py (docs/performance.md) for large requests.
        fast_queue=settings.fast_queue,
        middlewares=[
            (Gatekeeper, {"api_key": settings.api_key, "max_body": int(settings.max_body_mb * 2**20)})
        ],
    )

    # The last model /info described: after a promotion the new bundle is loaded once, not on every call.
    described: dict[Path, SegmentationModel] = {path: model}

    async def info() -> dict[str, Any]:
        """Model name, version, alias, bundle digest, schema, features, code version."""
        current_path, current_meta = source.resolve()
        if current_path not in described:
            described.clear()
            described[current_path] = load_bundle(current_path)
        return {"model": describe(described[current_path], current_meta), "server": settings.as_dict()}

    server.app.add_api_route("/info", info, methods=["GET"])
    server.app.add_exception_handler(RequestValidationError, _validation_error)
    return server


def _safe_input(value: Any) -> Any:
    """The offending input when it is a small, JSON-safe scalar; omitted otherwise."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)  # NaN/inf have no JSON form
    if isinstance(value, str):
        return value[:200]
    return _OMIT


_OMIT = object()


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    """422 listing each problem as location (``body.customers.<index>.<field>``), type and message.

    FastAPI's default handler echoes every input back, which fails (a 500) when the input was NaN or
    infinity and can echo a whole megabyte of customers; this one echoes small scalars only.
    """
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    detail = []
    for error in errors:
        item = {"loc": list(error.get("loc", ())), "type": error.get("type"), "msg": error.get("msg")}
        value = _safe_input(error.get("input"))
        if value is not _OMIT:
            item["input"] = value
        detail.append(item)
    return JSONResponse(status_code=422, content={"detail": detail})
