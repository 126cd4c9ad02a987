#!/usr/bin/env bash
# Wheels for building the image without network (inside a build container here, TLS to the package index does
# not verify): every dependency of pyproject.toml plus the build backend (setuptools, wheel), for CPython 3.11 on
# glibc x86_64, the interpreter of both bases (python:3.11-slim-bookworm and Debian bookworm's python3).
#
#   tools/docker/wheelhouse.sh    download if needed; the last stdout line is the folder holding the wheels
#
# Use: copy the folder to .wheelhouse/ in the build context and pass --build-arg PIP_NO_INDEX=1 (see Dockerfile).
# nkeys (NKey and .creds logins) is published as a source archive only: it is pure Python, so its wheel is built
# here first (py3-none-any, any platform) and the download below finds it in the folder (--find-links).
# Cache: ${SANDBOXD_TOOLS_CACHE:-$HOME/.cache/sandboxd}/wheelhouse-<hash of pyproject.toml>. Logs go to stderr.
set -euo pipefail

RECIPE=2 # bump when the download command below changes
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
key="$({ echo "recipe=$RECIPE"; cat "$root/pyproject.toml"; } | sha256sum | cut -c1-16)"
cache_root="${SANDBOXD_TOOLS_CACHE:-$HOME/.cache/sandboxd}"
dest="$cache_root/wheelhouse-$key"
if [[ -f "$dest/.complete" ]]; then echo "$dest"; exit 0; fi

python="${PYTHON:-python3}"
mkdir -p "$cache_root"
exec 9>"$cache_root/.wheelhouse-$key.lock"
flock 9
if [[ -f "$dest/.complete" ]]; then echo "$dest"; exit 0; fi
tmp="$(mktemp -d "$cache_root/.wheelhouse-$key.tmp.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
# The runtime dependencies as pyproject.toml lists them (tomllib: Python 3.11+), then the build backend.
"$python" - "$root/pyproject.toml" >"$tmp/requirements.txt" <<'PY'
import sys, tomllib
with open(sys.argv[1], "rb") as f:
    project = tomllib.load(f)
print("\n".join([*project["project"]["dependencies"], *project["build-system"]["requires"]]))
PY
grep -E '^nkeys' "$tmp/requirements.txt" >"$tmp/sdist-only.txt"
"$python" -m pip wheel --quiet --disable-pip-version-check --no-deps --wheel-dir "$tmp" \
  --requirement "$tmp/sdist-only.txt" >&2
echo "[wheelhouse] downloading $(wc -l <"$tmp/requirements.txt") requirements and their dependencies..." >&2
"$python" -m pip download --quiet --disable-pip-version-check --dest "$tmp" --requirement "$tmp/requirements.txt" --find-links "$tmp" \
  --only-binary=:all: --implementation cp --python-version 3.11 --abi cp311 --abi abi3 --abi none \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform manylinux_2_5_x86_64 --platform manylinux1_x86_64 --platform any >&2
rm "$tmp/requirements.txt" "$tmp/sdist-only.txt"
touch "$tmp/.complete"
chmod 755 "$tmp"
rm -rf "$dest" && mv "$tmp" "$dest"
trap - EXIT
echo "[wheelhouse] $(ls "$dest" | wc -l) wheels in $dest ($(du -sh "$dest" | cut -f1))" >&2
echo "$dest"
