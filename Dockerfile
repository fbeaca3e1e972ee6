# syntax=docker/dockerfile:1
# The dataset-assets code location: the Dagster gRPC code server, and the image of every run and
# step pod it launches on Kubernetes (the same image serves the webserver and daemon in
# docker-compose.yaml). Runtime dependencies only: the package, plus the Dagster integrations a
# deployment needs for PostgreSQL instance storage and the Kubernetes run launcher and executor,
# pinned to the dagster-aws version in pyproject.toml.
#
#   docker build -t dataset-assets:0.1.0 .
#
# Pin the base by digest for reproducible builds:
#   docker build --build-arg PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:<digest> .
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
FROM ${PYTHON_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DAGSTER_HOME=/opt/dagster/dagster_home \
    DATASET_ASSETS_HOME=/tmp/dataset-assets

WORKDIR /opt/dagster/app
COPY pyproject.toml setup.py README.md workspace.yaml ./
COPY dataset_assets ./dataset_assets
RUN pip install . "dagster-postgres==0.29.27" "dagster-k8s==0.29.27" \
    && groupadd --gid 1000 dagster \
    && useradd --uid 1000 --gid 1000 --no-create-home --home-dir "$DAGSTER_HOME" dagster \
    && mkdir -p "$DAGSTER_HOME/storage" \
    && chown -R 1000:1000 "$DAGSTER_HOME"

USER 1000:1000
EXPOSE 3030
CMD ["dagster", "api", "grpc", "-m", "dataset_assets.definitions", "-h", "0.0.0.0", "-p", "3030"]
