#!/usr/bin/env bash
# Build helm (helm.sh/helm/v3/cmd/helm) from this Go module, pinned by HELM_VERSION in ../versions.env, for the
# chart tests (tests/integration/deploy). Run it as `tools/kube/build.sh helm [--print-dir|--check]`:
#
#   build.sh helm              build if needed; last stdout line = the bin folder (holding `helm`)
#   build.sh helm --print-dir  only print the bin folder (no Go needed, builds nothing)
#   build.sh helm --check      exit 0 if the cached binary is there, 1 if not (prints the bin folder)
#
# Layout: ${SANDBOXD_TOOLS_CACHE:-$HOME/.cache/sandboxd}/helm-<hash>/bin/helm, <hash> over HELM_VERSION, this
# module's go.mod/go.sum and RECIPE, so a version bump builds afresh and an unchanged pin reuses the binary.
# A cache of its own (not kube-<hash>): adding or bumping helm never rebuilds kube-apiserver, and helm's
# Kubernetes libraries (a newer client-go) are never unified with the apiserver module's replaces.
# Build logs go to stderr.
set -euo pipefail

RECIPE=1 # bump when the build command below changes in a way that changes the output

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
HELM_VERSION="$(sed -n -E 's/^HELM_VERSION=([^[:space:]#]+).*/\1/p' "$here/../versions.env")"
[[ -n "$HELM_VERSION" ]] || { echo "tools/kube/versions.env: HELM_VERSION is not set" >&2; exit 1; }

mode="${1:-build}"
case "$mode" in build|--print-dir|--check) ;; *) echo "usage: tools/kube/build.sh helm [--print-dir|--check]" >&2; exit 2 ;; esac

key="$(
  { echo "recipe=$RECIPE"; echo "HELM_VERSION=$HELM_VERSION"; cat "$here/go.mod" "$here/go.sum"; } |
    sha256sum | cut -c1-16
)"
cache_root="${SANDBOXD_TOOLS_CACHE:-$HOME/.cache/sandboxd}"
dest="$cache_root/helm-$key"
bin="$dest/bin"

complete() { [[ -f "$dest/.complete" && -x "$bin/helm" ]]; }

case "$mode" in
  --print-dir) echo "$bin"; exit 0 ;;
  --check) echo "$bin"; complete && exit 0 || exit 1 ;;
esac

if complete; then
  echo "helm cached: $dest" >&2
  echo "$bin"
  exit 0
fi

if ! grep -qE "^[[:space:]]*helm\.sh/helm/v3 ${HELM_VERSION}( |$)" "$here/go.mod"; then
  echo "tools/kube/helm/go.mod does not require helm.sh/helm/v3 ${HELM_VERSION} (versions.env); regenerate it:" >&2
  echo "  cd tools/kube/helm && rm go.sum && GOFLAGS=-mod=mod go get helm.sh/helm/v3@${HELM_VERSION} && go mod tidy" >&2
  exit 1
fi
command -v go >/dev/null || { echo "tools/kube/build.sh helm: 'go' not found on PATH (needs Go >= 1.26)" >&2; exit 1; }

mkdir -p "$cache_root"
exec 9>"$cache_root/.helm-$key.lock" # one builder per cache folder (parallel pytest sessions, CI + a shell)
flock 9
if complete; then
  echo "helm cached: $dest" >&2
  echo "$bin"
  exit 0
fi

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false"
tmp="$(mktemp -d "$cache_root/.helm-$key.tmp.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/bin"
start=$(date +%s)

# As helm's Makefile does: the version `helm version` prints, and the Kubernetes version `helm template` and
# `helm lint` assume (.Capabilities.KubeVersion) = client-go's minor + 1.
client_go="$(cd "$here" && go list -m -f '{{.Version}}' k8s.io/client-go)" # v0.37.0 -> 1.37
kminor="${client_go#v0.}"; kminor="${kminor%%.*}"
ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=${HELM_VERSION} -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
  ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=${kminor}"
done

echo "building helm ${HELM_VERSION} (a few minutes on 2 cores)..." >&2
(cd "$here" && go build -trimpath -ldflags="$ldflags" -o "$tmp/bin/helm" helm.sh/helm/v3/cmd/helm) >&2
"$tmp/bin/helm" version --short >&2

{
  echo "HELM_VERSION=${HELM_VERSION}"
  echo "KUBE_VERSION=v1.${kminor}.0"
  echo "GO=$(go env GOVERSION)"
  echo "BUILD_SECONDS=$(( $(date +%s) - start ))"
} > "$tmp/versions.txt"
touch "$tmp/.complete"

chmod 755 "$tmp"
rm -rf "$dest"
mv "$tmp" "$dest"
trap - EXIT
echo "helm built in $(( $(date +%s) - start ))s: $bin/helm" >&2
echo "$bin"
