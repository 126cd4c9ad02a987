#!/usr/bin/env bash
# A Docker engine for the docker tests (tests/integration/deploy, marker `docker`) on a machine that has none:
# what .ci/run calls before `make test`. `make test` itself never runs this: it uses whatever engine answers and
# skips the docker tests when none does.
#
#   tools/docker/engine.sh            make sure an engine, the compose plugin and the base image are there
#   tools/docker/engine.sh --stop     stop the dockerd this script started (its pid file), nothing else
#
# Idempotent; every step is skipped when its result is already there:
#   1. an engine: when `docker info` does not answer, install Debian's docker.io (root, apt-get) and start
#      dockerd with its data root in the cache (vfs storage driver, no iptables, no bridge: containers run on
#      the host network; this is what works inside a CI container without privileges for overlayfs/netfilter);
#   2. the compose plugin testcontainers drives (`docker compose ... up --wait`, `ps --format json`: the v2+
#      plugin, not Debian's Python docker-compose 1.29), built from the Go module in tools/docker/compose
#      (v5.6.0 talks to dockerd 20.10 at its API 1.41, as the docker CLI does by negotiating down);
#   3. the local base image (SANDBOXD_BASE_IMAGE, default sandboxd-base:bookworm) from Debian packages with
#      debootstrap, since registry images cannot be pulled here: python3, venv, git, busybox (wget for the
#      NATS health check).
#
# Cache: ${SANDBOXD_TOOLS_CACHE:-$HOME/.cache/sandboxd}/docker/ (data-root/, dockerd.log, dockerd.pid) and
# compose-<hash>/bin/docker-compose. Logs go to stderr; the last stdout line is the engine's server version.
set -euo pipefail

RECIPE=1 # bump when the compose build or the base image recipe changes in a way that changes the outputs

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache_root="${SANDBOXD_TOOLS_CACHE:-$HOME/.cache/sandboxd}"
state="$cache_root/docker"
base_image="${SANDBOXD_BASE_IMAGE:-sandboxd-base:bookworm}"
plugins="${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins"
COMPOSE_VERSION="$(sed -n -E 's#^[[:space:]]*github\.com/docker/compose/v5 (v[^ ]+).*#\1#p' "$here/compose/go.mod")"

log() { echo "[docker] $*" >&2; }
answers() { timeout 10 docker info >/dev/null 2>&1; }

if [[ "${1:-}" == --stop ]]; then
  if [[ -f "$state/dockerd.pid" ]] && kill "$(cat "$state/dockerd.pid")" 2>/dev/null; then
    log "stopped dockerd $(cat "$state/dockerd.pid")"
  fi
  exit 0
fi
[[ $# -eq 0 ]] || { echo "usage: $0 [--stop]" >&2; exit 2; }

# --- 1. the engine -----------------------------------------------------------------------------------------
# overlay2 where this kernel lets us mount overlayfs on the cache's filesystem, else vfs. vfs always works but
# copies the whole image for every build step and container: a build of the service image took 10 minutes on
# vfs and well under one on overlay2 here. SANDBOXD_DOCKER_STORAGE_DRIVER overrides the probe.
storage_driver() {
  if [[ -n "${SANDBOXD_DOCKER_STORAGE_DRIVER:-}" ]]; then echo "$SANDBOXD_DOCKER_STORAGE_DRIVER"; return; fi
  local probe ok=vfs
  probe="$(mktemp -d "$state/overlay-probe.XXXXXX")"
  mkdir "$probe/lower" "$probe/upper" "$probe/work" "$probe/merged"
  if mount -t overlay overlay -o "lowerdir=$probe/lower,upperdir=$probe/upper,workdir=$probe/work" \
    "$probe/merged" 2>/dev/null; then
    umount "$probe/merged" && ok=overlay2
  fi
  rm -rf "$probe"
  echo "$ok"
}

start_engine() {
  if ! command -v dockerd >/dev/null; then
    [[ $(id -u) == 0 ]] || { log "no Docker engine answers and installing one needs root"; exit 1; }
    log "installing Debian's docker.io..."
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends docker.io >&2 ||
      { apt-get update -qq >&2 && apt-get install -y -qq --no-install-recommends docker.io >&2; }
  fi
  mkdir -p "$state/data-root"
  local driver
  driver="$(storage_driver)"
  log "starting dockerd (data root $state/data-root, $driver, no iptables, no bridge)..."
  # setsid: the daemon outlives this script and the CI step that ran it.
  setsid dockerd --data-root "$state/data-root" --pidfile "$state/dockerd.pid" --storage-driver "$driver" \
    --iptables=false --ip-masq=false --bridge=none >>"$state/dockerd.log" 2>&1 </dev/null &
  for _ in $(seq 60); do
    answers && return 0
    sleep 1
  done
  log "dockerd did not answer within 60 s; its log:"
  tail -20 "$state/dockerd.log" >&2
  exit 1
}
answers || start_engine

# --- 2. the compose plugin ---------------------------------------------------------------------------------
build_compose() {
  local key dest tmp
  key="$({ echo "recipe=$RECIPE"; cat "$here/compose/go.mod" "$here/compose/go.sum"; } | sha256sum | cut -c1-16)"
  dest="$cache_root/compose-$key"
  if [[ ! -x "$dest/bin/docker-compose" ]]; then
    command -v go >/dev/null || { log "the compose plugin is missing and 'go' is not on PATH"; exit 1; }
    mkdir -p "$cache_root"
    exec 9>"$cache_root/.compose-$key.lock"
    flock 9
    if [[ ! -x "$dest/bin/docker-compose" ]]; then
      log "building docker compose ${COMPOSE_VERSION} (about 3 minutes on 2 cores)..."
      tmp="$(mktemp -d "$cache_root/.compose-$key.tmp.XXXXXX")"
      (cd "$here/compose" && GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false" \
        go build -trimpath -ldflags "-s -w -X github.com/docker/compose/v5/internal.Version=${COMPOSE_VERSION}" \
        -o "$tmp/bin/docker-compose" github.com/docker/compose/v5/cmd) >&2
      rm -rf "$dest" && mv "$tmp" "$dest"
    fi
    exec 9>&-
  fi
  mkdir -p "$plugins"
  ln -sfn "$dest/bin/docker-compose" "$plugins/docker-compose"
  log "compose plugin: $plugins/docker-compose -> $dest/bin/docker-compose"
}

# --- 3. the base image -------------------------------------------------------------------------------------
# The root filesystem is kept as a tarball, so a fresh data root (or another storage driver) imports in seconds.
make_base_image() {
  local root tarball="$state/base-bookworm-$RECIPE.tar.gz"
  if [[ ! -f "$tarball" ]]; then
    command -v debootstrap >/dev/null ||
      { log "installing debootstrap..."; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >&2; }
    root="$(mktemp -d "$state/rootfs.XXXXXX")"
    trap 'rm -rf "$root"' RETURN
    log "making the base root filesystem with debootstrap (about 70 s)..."
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates,git,busybox \
      bookworm "$root" >>"$state/debootstrap.log" 2>&1 ||
      { tail -20 "$state/debootstrap.log" >&2; exit 1; }
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    tar -C "$root" -cz . >"$tarball.tmp" && mv "$tarball.tmp" "$tarball"
  fi
  log "importing $base_image..."
  docker import --change 'CMD ["/bin/bash"]' "$tarball" "$base_image" >/dev/null
}
# The base image (mostly downloads) is made while the compose plugin compiles (CPU): a cold set-up in one go.
base_pid=""
if ! docker image inspect "$base_image" >/dev/null 2>&1; then
  make_base_image &
  base_pid=$!
fi
docker compose version >/dev/null 2>&1 || build_compose
[[ -z "$base_pid" ]] || wait "$base_pid"

docker version --format '{{.Server.Version}} (API {{.Server.APIVersion}})'
