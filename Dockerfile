# The sandboxd image: the reconciler (`sandboxd run`, the default), the scaler (`sandboxd scaler`) and sandboxctl.
#
#   docker build -t sandboxd:0.1.0 --build-arg VERSION=0.1.0 --build-arg REVISION=$(git rev-parse HEAD) .
#   docker run --rm sandboxd:0.1.0 --help
#
# Two stages: `build` installs the package into a virtualenv; the runtime stage copies only that virtualenv onto a
# fresh base with git (the GitOps applier runs it). Runs as uid/gid 65532 and works with a read-only root
# filesystem: everything it writes goes to /tmp (HOME) or /var/lib/sandboxd (the local GitOps repository or the
# directory applier's output, a volume in docker-compose.yml).
#
# BASE_IMAGE is the public Python image pinned by tag and by the digest of its multi-architecture index. The tests
# build this same file on a base made from Debian packages (tools/docker/engine.sh: python3, venv, git) where no
# registry answers; a base that already has git needs no apt-get. Builds without network: put the wheels of every
# dependency (and setuptools, wheel) in .wheelhouse/ and pass --build-arg PIP_NO_INDEX=1.

ARG BASE_IMAGE=python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d

FROM ${BASE_IMAGE} AS build
# pip reads these from the environment: an empty PIP_NO_INDEX means the index is used.
ARG PIP_NO_INDEX=""
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_FIND_LINKS=/src
RUN python3 -m venv /opt/sandboxd
WORKDIR /src
# The metadata first, so a code-only change does not invalidate the dependency layer. The wheels in .wheelhouse/
# land in /src (PIP_FIND_LINKS); `.wheelhous[e]` matches nothing without one, which COPY accepts while the other
# sources match.
COPY pyproject.toml README.md .wheelhous[e] ./
# The placeholder package and setuptools' build/ go again: build/lib would keep the empty __init__.py, newer than
# the real one COPY brings (COPY keeps the files' times), and the second install would package it.
RUN mkdir -p service/sandboxd && touch service/sandboxd/__init__.py \
    && /opt/sandboxd/bin/pip install . \
    && /opt/sandboxd/bin/pip uninstall --yes sandboxd \
    && rm -rf service build
COPY service ./service
RUN /opt/sandboxd/bin/pip install --no-deps . \
    && /opt/sandboxd/bin/sandboxd --help >/dev/null

FROM ${BASE_IMAGE}
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="sandboxd" \
      org.opencontainers.image.description="Sandbox reconciler: JetStream lifecycle events in, per-user sandboxes on Kubernetes out" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/openova-io/openova" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
RUN if ! command -v git >/dev/null; then \
        apt-get update \
        && apt-get install --yes --no-install-recommends git ca-certificates \
        && rm -rf /var/lib/apt/lists/*; \
    fi \
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
# /healthz, /readyz and /metrics (SANDBOXD_HEALTH_PORT). The check asks /readyz of `sandboxd run`; the scaler
# serves them on SANDBOXD_SCALER_METRICS_PORT, and docker-compose.yml and the chart set their own probes.
EXPOSE 8081
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=5 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/readyz' % os.environ.get('SANDBOXD_HEALTH_PORT', '8081'), timeout=3)"]
ENTRYPOINT ["sandboxd"]
CMD ["run"]
