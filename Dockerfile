# syntax=docker/dockerfile:1
# recsys images: one named target per job (DESIGN.md section 9), all from one runtime stage.
#
#   docker build --target ingest-lmsys -t registry.example.com/recsys/ingest-lmsys:0.1.0 .
#
# Targets: ingest-lmsys ingest-mteb ingest-litellm score snapshot route-test telemetry-prune
# (the CronJobs), migrate (the migration Job) and serve (the Deployment). Each target only sets
# its CMD; the ENTRYPOINT is `recsys`. tests/test_deploy.py parses this file: it builds the wheel
# from exactly what the builder COPYs and runs every target's CMD with --help as an unprivileged
# user on a read-only install, and hadolint lints it.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- builder: turn the source tree into a wheel (pure Python, no compiler needed) --------------
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md constraints.txt ./
COPY cli ./cli
COPY recommender_core ./recommender_core
# setuptools comes pinned by constraints.txt (hadolint cannot see a pin made through -c, hence DL3013).
# hadolint ignore=DL3013
RUN python -m pip install --constraint constraints.txt setuptools \
 && python -m pip wheel --no-deps --no-build-isolation --wheel-dir /dist .

# --- runtime: the wheel and its pinned dependencies in a venv; nothing else ---------------------
FROM ${PYTHON_IMAGE} AS runtime
ARG RECSYS_UID=10001
# The root filesystem is read-only in Kubernetes: everything that writes goes to /tmp (an emptyDir
# there). litellm reads its price table from the package (LITELLM_LOCAL_MODEL_COST_MAP) and keeps
# its tokenizer cache inside the package, so it never needs to write or fetch at start.
ENV PATH=/opt/recsys/bin:$PATH \
    HOME=/tmp \
    TMPDIR=/tmp \
    XDG_CACHE_HOME=/tmp/.cache \
    XDG_CONFIG_HOME=/tmp/.config \
    XDG_DATA_HOME=/tmp/.local/share \
    XDG_STATE_HOME=/tmp/.local/state \
    HF_HOME=/tmp/.cache/huggingface \
    LITELLM_LOCAL_MODEL_COST_MAP=True \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
COPY --from=builder /dist/ /tmp/dist/
COPY constraints.txt /tmp/constraints.txt
# The compiled dependencies (psycopg[binary], pyarrow, pydantic-core) come as binary wheels: the
# slim image has no compiler and gets none.
# The user exists in /etc/passwd too, for libraries that look the uid up (libpq does).
# Versions are pinned by constraints.txt (hadolint cannot see a pin made through -c, hence DL3013).
# hadolint ignore=DL3013
RUN python -m venv /opt/recsys \
 && /opt/recsys/bin/python -m pip install --constraint /tmp/constraints.txt /tmp/dist/*.whl \
 && /opt/recsys/bin/python -m pip uninstall --yes pip \
 && rm -rf /tmp/dist /tmp/constraints.txt \
 && recsys --version \
 && groupadd --gid "${RECSYS_UID}" recsys \
 && useradd --uid "${RECSYS_UID}" --gid "${RECSYS_UID}" --no-create-home --home-dir /tmp \
      --shell /usr/sbin/nologin recsys
USER ${RECSYS_UID}:${RECSYS_UID}
WORKDIR /tmp
ENTRYPOINT ["recsys"]
CMD ["--help"]

# --- one target per job ----------------------------------------------------------------------
FROM runtime AS migrate
CMD ["db", "upgrade"]

FROM runtime AS ingest-lmsys
CMD ["ingest", "lmsys"]

FROM runtime AS ingest-mteb
CMD ["ingest", "mteb"]

FROM runtime AS ingest-litellm
CMD ["ingest", "litellm"]

FROM runtime AS score
CMD ["score"]

FROM runtime AS snapshot
CMD ["snapshot", "--json"]

FROM runtime AS route-test
CMD ["route-test", "/etc/recsys/route-tests.yaml"]

FROM runtime AS telemetry-prune
CMD ["telemetry", "prune"]

FROM runtime AS serve
EXPOSE 8080
CMD ["serve", "--host", "0.0.0.0", "--port", "8080"]
