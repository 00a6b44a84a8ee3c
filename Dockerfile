# syntax=docker/dockerfile:1.7
# Two images from one file (CPU only):
#   docker build --target runtime -t customer-segmentation:runtime .   # flows, Prefect worker jobs, CLI
#   docker build --target server  -t customer-segmentation:server  .   # LitServe endpoint for a baked-in model
# The server target expects the model bundle to serve in ./model (deploy.yml exports the production version).
# Stages: builder -> runtime (every extra: requirements/runtime.txt), serve-builder -> server (the base and
# the `serve` extra only: requirements/serve.txt, no Prefect, AWS, Dask, W&B or torch). Each final stage
# copies one virtual environment from its builder and runs as uid 10001.
ARG PYTHON_IMAGE=python:3.11.10-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /build
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# The runtime dependencies at the versions the tests ran with (requirements/runtime.txt, pip-tools). torch
# alone comes from PyTorch's CPU index (PyPI's Linux wheel is a multi-GB CUDA build) and with --no-deps, so
# no other name can be taken from that index; everything else comes from PyPI, pinned, with --no-deps.
COPY requirements/runtime.txt requirements/
RUN pip install --no-deps --index-url https://download.pytorch.org/whl/cpu --constraint requirements/runtime.txt torch \
 && pip install --no-deps --requirement requirements/runtime.txt
COPY pyproject.toml README.md ./
COPY src ./src
COPY workflows ./workflows
# The package (code only, no dependency left to resolve), then proof that the lock was complete.
RUN pip install --no-deps . && pip check

FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --home-dir /app --create-home app
COPY --from=builder /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    SEGMENT_HOME=/app/.segment \
    WANDB_DIR=/app/.segment \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    MPLCONFIGDIR=/tmp/matplotlib
# The code lives in /opt/venv only: deployments name it by module (prefect.yaml's aws-ec2 entrypoint
# segmentation_workflows.train:train_segmentation); /app is the working directory for outputs and $SEGMENT_HOME.
WORKDIR /app
USER 10001:10001
CMD ["segment", "--help"]

# The serving environment: the base dependencies and the `serve` extra (requirements/serve.txt), nothing
# else. An autoencoder bundle needs torch (the `autoencoder` extra), which this image leaves out: the
# server stage refuses to build with one (the runtime image has torch and can `segment serve` it).
FROM ${PYTHON_IMAGE} AS serve-builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /build
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY requirements/serve.txt requirements/
RUN pip install --no-deps --requirement requirements/serve.txt
COPY pyproject.toml README.md ./
COPY src ./src
COPY workflows ./workflows
RUN pip install --no-deps . && pip check

FROM ${PYTHON_IMAGE} AS server
RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --home-dir /app --create-home app
COPY --from=serve-builder /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    SEGMENT_HOME=/app/.segment
WORKDIR /app
COPY --chown=10001:10001 model/ /app/model/
# Fail the build, not the deployment, on a bundle this image cannot load: digests that do not match, or
# an autoencoder (the error names the extra it needs).
RUN ["python", "-c", "from segmentation.bundle import find_bundle, load_bundle; load_bundle(find_bundle('/app/model'))"]
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=2).status == 200 else 1)"]
CMD ["segment", "serve", "--bundle", "/app/model", "--host", "0.0.0.0", "--port", "8000"]
