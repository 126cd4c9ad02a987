#!/usr/bin/env bash
# Build the test Kubernetes control plane (envtest model: kube-apiserver + etcd, no kubelet)
# plus kustomize from Go modules, and copy the Gateway API standard CRDs next to them.
#
#   tools/kube/build.sh              build if needed; last stdout line = the bin folder
#   tools/kube/build.sh --print-dir  only print the bin folder (no Go needed, builds nothing)
#   tools/kube/build.sh --check      exit 0 if the cache is complete, 1 if not (prints the bin folder)
#   tools/kube/build.sh helm [...]   the same for helm, in a cache folder of its own (tools/kube/helm/build.sh)
#
# Layout: ${SANDBOXD_TOOLS_CACHE:-$HOME/.cache/sandboxd}/kube-<hash>/{bin,crds}
#   bin/  kube-apiserver etcd kustomize
#   crds/ gateway-api config/crd/standard/*.yaml
# <hash> covers versions.env, every tool go.mod/go.sum and RECIPE below, so a version bump gets a
# fresh folder and an unchanged pin reuses the cached one without touching Go.
# Build logs go to stderr.
set -euo pipefail

RECIPE=1 # bump when the build commands below change in a way that changes the outputs

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"

if [[ "${1:-}" == helm ]]; then exec bash "$here/helm/build.sh" "${@:2}"; fi

mode="${1:-build}"
case "$mode" in build|--print-dir|--check) ;; *) echo "usage: $0 [--print-dir|--check]" >&2; exit 2 ;; esac

key="$(
  {
    echo "recipe=$RECIPE"
    grep -v '^HELM_VERSION=' "$here/versions.env" # helm has its own cache key; it never rebuilds these
    for f in apiserver/go.mod apiserver/go.sum etcd/go.mod etcd/go.sum kustomize/go.mod kustomize/go.sum \
             gateway-api/go.mod gateway-api/go.sum; do
      echo "== $f"; cat "$here/$f"
    done
  } | sha256sum | cut -c1-16
)"
cache_root="${SANDBOXD_TOOLS_CACHE:-$HOME/.cache/sandboxd}"
dest="$cache_root/kube-$key"
bin="$dest/bin"

complete() {
  [[ -f "$dest/.complete" && -x "$bin/kube-apiserver" && -x "$bin/etcd" && -x "$bin/kustomize" ]] &&
    compgen -G "$dest/crds/*.yaml" >/dev/null
}

case "$mode" in
  --print-dir) echo "$bin"; exit 0 ;;
  --check) echo "$bin"; complete && exit 0 || exit 1 ;;
esac

if complete; then
  echo "kube tools cached: $dest" >&2
  echo "$bin"
  exit 0
fi

# The go.mod files are generated from versions.env by sync-modules.sh; refuse to build on drift.
drift=0
grep -qE "^[[:space:]]*k8s\.io/kubernetes ${KUBERNETES_VERSION}( |$)" "$here/apiserver/go.mod" || drift=1
grep -qE "=> k8s\.io/api v0\.${KUBERNETES_VERSION#v1.}$" "$here/apiserver/go.mod" || drift=1
grep -qE "go\.etcd\.io/etcd/server/v3 ${ETCD_VERSION}( |$)" "$here/etcd/go.mod" || drift=1
grep -qE "sigs\.k8s\.io/kustomize/kustomize/v5 ${KUSTOMIZE_VERSION}( |$)" "$here/kustomize/go.mod" || drift=1
grep -qE "sigs\.k8s\.io/gateway-api ${GATEWAY_API_VERSION}( |$)" "$here/gateway-api/go.mod" || drift=1
if [[ $drift == 1 ]]; then
  echo "tools/kube: go.mod files do not match versions.env; run tools/kube/sync-modules.sh and commit" >&2
  exit 1
fi

command -v go >/dev/null || { echo "tools/kube/build.sh: 'go' not found on PATH (needs Go >= 1.26)" >&2; exit 1; }

mkdir -p "$cache_root"
# One builder at a time per cache folder (parallel pytest sessions, CI + developer shell).
exec 9>"$cache_root/.kube-$key.lock"
flock 9
if complete; then
  echo "kube tools cached: $dest" >&2
  echo "$bin"
  exit 0
fi

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false"
tmp="$(mktemp -d "$cache_root/.kube-$key.tmp.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/bin" "$tmp/crds"
start=$(date +%s)

kminor="${KUBERNETES_VERSION#v1.}"; kminor="${kminor%%.*}"
kver_ldflags=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  kver_ldflags+=" -X $pkg.gitVersion=${KUBERNETES_VERSION} -X $pkg.gitMajor=1 -X $pkg.gitMinor=${kminor}"
  kver_ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done

echo "building kube-apiserver ${KUBERNETES_VERSION} (takes several minutes on 2 cores)..." >&2
(cd "$here/apiserver" && go build -trimpath -ldflags="-s -w${kver_ldflags}" \
  -o "$tmp/bin/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver) >&2

echo "building etcd ${ETCD_VERSION}..." >&2
(cd "$here/etcd" && go build -trimpath -ldflags="-s -w" -o "$tmp/bin/etcd" go.etcd.io/etcd/server/v3) >&2

echo "building kustomize ${KUSTOMIZE_VERSION}..." >&2
(cd "$here/kustomize" && go build -trimpath \
  -ldflags="-s -w -X sigs.k8s.io/kustomize/api/provenance.version=kustomize/${KUSTOMIZE_VERSION}" \
  -o "$tmp/bin/kustomize" sigs.k8s.io/kustomize/kustomize/v5) >&2

echo "copying gateway-api ${GATEWAY_API_VERSION} standard CRDs..." >&2
gwdir="$(cd "$here/gateway-api" && go mod download -json sigs.k8s.io/gateway-api |
  sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
[[ -d "$gwdir/config/crd/standard" ]] || { echo "gateway-api CRDs not found under $gwdir" >&2; exit 1; }
cp "$gwdir"/config/crd/standard/*.yaml "$tmp/crds/"
chmod -R u+w "$tmp/crds"

{
  echo "KUBERNETES_VERSION=${KUBERNETES_VERSION}"
  echo "ETCD_VERSION=${ETCD_VERSION}"
  echo "KUSTOMIZE_VERSION=${KUSTOMIZE_VERSION}"
  echo "GATEWAY_API_VERSION=${GATEWAY_API_VERSION}"
  echo "GO=$(go env GOVERSION)"
  echo "BUILD_SECONDS=$(( $(date +%s) - start ))"
} > "$tmp/versions.txt"
touch "$tmp/.complete"

chmod 755 "$tmp"
rm -rf "$dest"
mv "$tmp" "$dest"
trap - EXIT
echo "kube tools built in $(( $(date +%s) - start ))s: $dest ($(du -sh "$dest" | cut -f1))" >&2
echo "$bin"
