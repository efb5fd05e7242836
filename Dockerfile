# syntax=docker/dockerfile:1
# recsys images: one named target per job (the CronJob commands), all from one runtime stage.
#
#   docker build --target ingest-lmsys -t registry.example.com/recsys/ingest-lmsys:0.1.0 .
#
# Targets: ingest-lmsys ingest-mteb ingest-litellm score snapshot route-test telemetry-prune
# (the CronJobs), migrate (the migration Job) and serve (the Deployment). Each target only sets
# its CMD; the ENTRYPOINT is `recsys`. tests/test_dockerfile.py parses this file: it builds the
# wheel from exactly what the builder COPYs and runs every target's CMD with --help as an
# unprivileged user on a read-only install, and hadolint lints it.

# The base image, pinned by digest (a tag moves whenever Docker rebuilds it; the digest names one
# exact image, so every build of a release starts from the same bytes). This digest is the one
# public Dockerfiles pinned for python:3.11-slim-bookworm; recsys' CI has no registry access to
# re-check it. To bump it (monthly, or for a base-image CVE), on a machine with registry access:
#   docker buildx imagetools inspect python:3.11-slim-bookworm --format '{{json .Manifest.Digest}}'
# and replace the sha256 below with the digest printed (the multi-platform index digest), then
# rebuild every target and pin the new image digests in the overlays (docs/deploy.md).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:a36c24f9cbdf4fd0f52d67f0823eeac19c2028c637cecc392d97f980d4fec56b

# --- builder: turn the source tree into a wheel (pure Python, no compiler needed) --------------
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md constraints.txt ./
COPY cli ./cli
COPY recommender_core ./recommender_core
# setuptools, the build backend, comes pinned by constraints.txt.
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
# slim image has no compiler and gets none. Versions are pinned by constraints.txt.
# The venv is made without pip (so without the setuptools that ensurepip bundles): the base
# image's pip installs into it from outside (--python), and then pip, setuptools and wheel leave
# the base image too, so no installer is left for a scanner to flag or an attacker to use.
# The user exists in /etc/passwd too, for libraries that look the uid up (libpq does).
RUN python -m venv --without-pip /opt/recsys \
 && python -m pip --python /opt/recsys/bin/python install --constraint /tmp/constraints.txt /tmp/dist/*.whl \
 && python -m pip uninstall --yes pip setuptools wheel \
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
