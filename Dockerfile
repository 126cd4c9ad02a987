# syntax=docker/dockerfile:1
# The sandboxd image: the reconciler (`sandboxd run`, the default), the scaler (`sandboxd scaler`) and sandboxctl.
#
#   docker build -t sandboxd:0.1.0 .
#   docker run --rm sandboxd:0.1.0 --help
#
# Two stages: `build` installs the package into a virtualenv; the runtime stage copies only that virtualenv onto a
# fresh slim base with git (the GitOps applier runs it). Runs as uid/gid 65532 and works with a read-only root
# filesystem: everything it writes goes to /tmp (HOME) or /var/lib/sandboxd (the local GitOps repository or the
# directory applier's output, a volume in docker-compose.yml).

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/sandboxd
WORKDIR /src
# The metadata first, so a code-only change does not invalidate the dependency layer.
COPY pyproject.toml README.md ./
RUN mkdir -p service/sandboxd && touch service/sandboxd/__init__.py \
    && /opt/sandboxd/bin/pip install . \
    && /opt/sandboxd/bin/pip uninstall --yes sandboxd
COPY service ./service
RUN /opt/sandboxd/bin/pip install --no-deps . \
    && /opt/sandboxd/bin/sandboxd --help >/dev/null

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="sandboxd" \
      org.opencontainers.image.description="Sandbox reconciler: JetStream lifecycle events in, per-user sandboxes on Kubernetes out" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN apt-get update \
    && apt-get install --yes --no-install-recommends git ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 65532 sandboxd \
    && useradd --system --uid 65532 --gid 65532 --home-dir /tmp --no-create-home --shell /usr/sbin/nologin sandboxd \
    && install -d -o 65532 -g 65532 -m 0750 /var/lib/sandboxd
COPY --from=build /opt/sandboxd /opt/sandboxd
ENV PATH=/opt/sandboxd/bin:$PATH \
    HOME=/tmp \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SANDBOXD_DIRECTORY=/var/lib/sandboxd/rendered \
    SANDBOXD_GITOPS_REPO=/var/lib/sandboxd/gitops.git
WORKDIR /var/lib/sandboxd
USER 65532:65532
# /healthz, /readyz and /metrics (SANDBOXD_HEALTH_PORT).
EXPOSE 8081
ENTRYPOINT ["sandboxd"]
CMD ["run"]
